//! Two replicas' hybrid logical clocks: causality survives a clock that jumps backwards, and a
//! peer whose clock runs too far ahead is refused.
//!
//! `cargo run -p examples --example clock`

use weft::hlc::{Clock, ClockedHlc, Config, ManualClock, ObserveError, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let laptop_time = ManualClock::new(1_795_316_400_000);
    let phone_time = ManualClock::new(1_795_316_400_000 - 2_500); // 2.5 s slow
    let mut laptop = ClockedHlc::new(laptop_time.clone(), Config::default());
    let mut phone = ClockedHlc::new(phone_time.clone(), Config::default());

    let edit = laptop.now()?;
    println!("laptop edits at        {edit}");
    let seen = phone.observe(edit)?;
    println!("phone receives it at   {seen} (after the edit, though its clock is slow)");

    phone_time.set(phone_time.now_ms() - 10_000);
    let reply = phone.now()?;
    println!("phone's clock jumps back 10 s; it still stamps {reply}");
    assert!(reply > seen);

    let an_hour_ahead = laptop_time.now_ms() + 3_600_000;
    let bogus = Timestamp::new(an_hour_ahead, 0).ok_or("time out of range")?;
    match laptop.observe(bogus) {
        Err(ObserveError::Drift(e)) => println!("laptop refuses a peer: {e}"),
        other => return Err(format!("expected a drift error, got {other:?}").into()),
    }
    println!("laptop's clock is unchanged at {}", laptop.last());
    Ok(())
}
