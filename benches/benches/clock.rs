//! Timestamp generation: weft's `tick` on the system clock, a bare read of the system clock,
//! and uhlc's `new_timestamp`, measured in one run, then a table of ns per timestamp and ratios.
//!
//! `cargo bench -p benches --bench clock`

use std::hint::black_box;
use std::time::SystemTime;

use criterion::Criterion;
use hlc::{Clock, ClockedHlc, Config, SystemClock};

const GROUP: &str = "timestamp";
const BARE: &str = "bare SystemTime::now";
const MILLIS: &str = "SystemClock::now_ms";
const TICK: &str = "weft ClockedHlc::now";
const UHLC: &str = "uhlc HLC::new_timestamp";

#[allow(
    clippy::disallowed_methods,
    reason = "the bare system clock read is the baseline being measured"
)]
fn bare_read() -> SystemTime {
    SystemTime::now()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    group.bench_function(BARE, |b| b.iter(|| black_box(bare_read())));
    group.bench_function(MILLIS, |b| b.iter(|| black_box(SystemClock.now_ms())));
    let mut weft = ClockedHlc::new(SystemClock, Config::default());
    group.bench_function(TICK, |b| b.iter(|| black_box(weft.now())));
    let uhlc = uhlc::HLC::default();
    group.bench_function(UHLC, |b| b.iter(|| black_box(uhlc.new_timestamp())));
    group.finish();
}

/// Criterion keeps each benchmark's estimates in `<group>/<id>/new/estimates.json`, with the
/// characters that paths cannot hold replaced by `_`.
fn mean_ns(id: &str) -> Option<f64> {
    let dir: String = id
        .chars()
        .map(|c| if r#"?"/\*<>:|^"#.contains(c) { '_' } else { c })
        .collect();
    let path = benches::criterion_dir()
        .join(GROUP)
        .join(dir)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn report() {
    let Some(bare) = mean_ns(BARE) else {
        eprintln!(
            "no criterion estimates found under {}",
            benches::criterion_dir().display()
        );
        return;
    };
    println!();
    println!("| timestamp source | ns per timestamp | ratio to bare read |");
    println!("|---|---:|---:|");
    for id in [BARE, MILLIS, TICK, UHLC] {
        if let Some(ns) = mean_ns(id) {
            println!("| {id} | {ns:.2} | {:.3}x |", ns / bare);
        }
    }
    if let (Some(tick), Some(uhlc)) = (mean_ns(TICK), mean_ns(UHLC)) {
        println!("\nweft tick / uhlc new_timestamp = {:.3}x", tick / uhlc);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    if !benches::test_mode() {
        report();
    }
}
