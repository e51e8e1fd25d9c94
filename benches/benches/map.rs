//! The map workload: last-writer-wins writes over a set of records, applied locally one committed
//! transaction each, then merged into a fresh replica as remote operations, on every system in
//! [`systems`] in one run; then a table of ops per second and heap bytes per op each way, with
//! ratios against the first system.
//!
//! `cargo bench -p benches --bench map [-- --writes N --records M --seed S]`: by default
//! 1,000,000 writes over 10,000 records. With `--test` (cargo's smoke mode), 20,000 writes over
//! 200 records.

use benches::alloc::CountingAlloc;
use benches::map_workload::{self, MapSystem};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The systems compared, the first one being the one the ratios are about.
fn systems() -> Vec<Box<dyn MapSystem>> {
    vec![
        Box::new(benches::weft_map::Weft::default()),
        Box::new(map_workload::Automerge::default()),
        Box::new(map_workload::Yrs::default()),
    ]
}

struct Args {
    writes: usize,
    records: u32,
    seed: u64,
}

/// `--writes N`, `--records M` and `--seed S`, with `--test` shrinking the defaults; anything
/// else (such as the `--bench` that cargo passes) is ignored.
fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = args.iter().any(|a| a == "--test");
    let mut parsed = Args {
        writes: if test { 20_000 } else { 1_000_000 },
        records: if test { 200 } else { 10_000 },
        seed: 0x5EED,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let name = arg.as_str();
        if !matches!(name, "--writes" | "--records" | "--seed") {
            continue;
        }
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{name} needs a value"));
        match name {
            "--writes" => parsed.writes = number(name, value),
            "--records" => parsed.records = number(name, value),
            _ => parsed.seed = number(name, value),
        }
    }
    assert!(parsed.writes > 0, "--writes must be above 0");
    assert!(parsed.records > 0, "--records must be above 0");
    parsed
}

/// `value` as a number, `_` separators allowed.
fn number<T: std::str::FromStr<Err = std::num::ParseIntError>>(name: &str, value: &str) -> T {
    value
        .replace('_', "")
        .parse()
        .unwrap_or_else(|e| panic!("{name} {value}: {e}"))
}

fn main() {
    let args = parse_args();
    let writes = map_workload::generate(args.writes, args.records, args.seed);
    println!(
        "map workload: {} writes over {} records (seed {:#x})",
        args.writes, args.records, args.seed
    );
    let mut results = Vec::new();
    // `WEFT_BENCH_ONLY=weft` runs only the systems whose name starts with it (for profiling).
    let only = std::env::var("WEFT_BENCH_ONLY").unwrap_or_default();
    for mut system in systems() {
        let name = system.name();
        if !name.starts_with(only.as_str()) {
            continue;
        }
        eprintln!("running {name} ...");
        let (local, remote) = map_workload::run(system.as_mut(), &writes, args.records);
        eprintln!(
            "  {name}: local {:.2} s, export {:.2} s, remote {:.2} s, {} cells checked",
            local.time.as_secs_f64(),
            remote.export_time.as_secs_f64(),
            remote.time.as_secs_f64(),
            remote.checked
        );
        results.push((name, local, remote));
    }
    map_workload::report(&results);
}
