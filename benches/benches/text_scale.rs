//! How the cost of a keystroke grows with the document: a text of N characters in many runs
//! (built by pasting 16-character pieces at random places, a transaction per 100 pieces, and
//! deleting a piece now and then), then, each its own transaction through the public API:
//! single-character inserts at random places, typing (bursts of 20 characters, each after the
//! previous one, at random places), and single-character deletes at random places. Prints one
//! line per size with the microseconds per keystroke. Seeded, so every run edits the same way.
//!
//! `cargo bench -p benches --bench text_scale [-- --max N]`: sizes 10^4 up to N (default
//! 1,000,000) characters; `--test` (cargo's smoke mode) stops at 10^4 and edits less.

use std::time::{Duration, Instant};

use crdt_core::{Collection, Field, MemoryStorage, Replica, Schema};
use hlc::SystemClock;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Mem = Replica<MemoryStorage, SystemClock>;

const PIECE: &str = "abcdefghijklmnop";

fn open() -> Mem {
    let schema = Schema::new(1)
        .collection(Collection::new("docs").field(Field::text("body")))
        .expect("schema");
    let mut rng = StdRng::seed_from_u64(1);
    let mut r = Replica::open(MemoryStorage::new(), SystemClock, schema, &mut rng).expect("open");
    r.insert("docs", Some("d"), []).expect("record");
    r
}

fn len(r: &Mem) -> u64 {
    r.text("docs", "d", "body").expect("text").chars().count() as u64
}

/// A document of at least `n` characters in about `n / 8` runs.
fn build(r: &mut Mem, rng: &mut StdRng, n: u64) {
    let mut have = 0u64;
    while have < n {
        r.transact(|tx| {
            for _ in 0..100 {
                if have >= 64 && rng.random_range(0..8) == 0 {
                    let at = rng.random_range(0..have - 16);
                    tx.delete_text("docs", "d", "body", at, 8)?;
                    have -= 8;
                } else {
                    let at = rng.random_range(0..=have);
                    tx.insert_text("docs", "d", "body", at, PIECE)?;
                    have += 16;
                }
            }
            Ok(())
        })
        .expect("build");
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn per_key(d: Duration, keys: u64) -> f64 {
    d.as_secs_f64() * 1e6 / keys as f64
}

fn main() {
    let mut max = 1_000_000u64;
    let mut smoke = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--test" => smoke = true,
            "--max" => {
                let v = args.next().expect("--max needs a value");
                max = v.replace('_', "").parse().expect("--max N");
            }
            _ => {}
        }
    }
    if smoke {
        max = 10_000;
    }
    let keys: u64 = if smoke { 200 } else { 20_000 };
    println!("| chars | build s | random insert µs/key | typing µs/key | random delete µs/key |");
    println!("|---:|---:|---:|---:|---:|");
    let mut n = 10_000;
    while n <= max {
        let mut r = open();
        let mut rng = StdRng::seed_from_u64(n);
        let build_time = timed(|| build(&mut r, &mut rng, n));
        let mut size = len(&r);
        let random = timed(|| {
            for _ in 0..keys {
                let at = rng.random_range(0..=size);
                r.transact(|tx| tx.insert_text("docs", "d", "body", at, "x"))
                    .expect("insert");
                size += 1;
            }
        });
        let typing = timed(|| {
            for _ in 0..keys / 20 {
                let at = rng.random_range(0..=size);
                for i in 0..20 {
                    r.transact(|tx| tx.insert_text("docs", "d", "body", at + i, "y"))
                        .expect("type");
                }
                size += 20;
            }
        });
        let delete = timed(|| {
            for _ in 0..keys {
                let at = rng.random_range(0..size);
                r.transact(|tx| tx.delete_text("docs", "d", "body", at, 1))
                    .expect("delete");
                size -= 1;
            }
        });
        assert_eq!(
            len(&r),
            size,
            "the document has the length the edits give it"
        );
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            size,
            build_time.as_secs_f64(),
            per_key(random, keys),
            per_key(typing, keys / 20 * 20),
            per_key(delete, keys),
        );
        n *= 10;
    }
}
