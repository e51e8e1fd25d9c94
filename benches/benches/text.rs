//! The text benchmark: every editing trace in `../shared/traces` replayed through weft,
//! automerge, yrs, loro and diamond-types in one run. For each (file, system): local replay
//! (each txn its own transaction through the public API, a replica per agent for concurrent
//! traces), remote merge (the encoded full history loaded into a fresh document), the encoded
//! size of that history, and the heap bytes of one replica after the replay. Every final text
//! is checked against the trace's `endContent` before anything is reported. Then a markdown
//! table per metric with the ratios weft/peer, and one JSON line per (file, system).
//!
//! `cargo bench -p benches --bench text [-- --trace NAME]... [--system NAME]... [--txns N]`:
//! `--trace` keeps the files whose name contains NAME, `--system` the systems whose name
//! starts with NAME, `--txns` replays only the first N txns of each file. With `--test`
//! (cargo's smoke mode) every file is cut to its first 2,000 txns. Other arguments (such as the
//! `--bench` that cargo passes) are ignored.

use benches::alloc::CountingAlloc;
use benches::text::measure::measure;
use benches::text::plan::Plan;
use benches::text::report::{FileResult, Outcome, render};
use benches::text::trace::{Trace, trace_files, traces_dir};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Txns per file in `--test` mode.
const TEST_TXNS: usize = 2_000;

#[derive(Default)]
struct Args {
    traces: Vec<String>,
    systems: Vec<String>,
    txns: Option<usize>,
}

fn parse_args() -> Args {
    let mut parsed = Args::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--test" => parsed.txns = parsed.txns.or(Some(TEST_TXNS)),
            "--trace" | "--system" | "--txns" => {
                let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
                match arg.as_str() {
                    "--trace" => parsed.traces.push(value),
                    "--system" => parsed.systems.push(value.to_lowercase()),
                    _ => {
                        let n = value
                            .replace('_', "")
                            .parse()
                            .unwrap_or_else(|e| panic!("--txns {value}: {e}"));
                        parsed.txns = Some(n);
                    }
                }
            }
            _ => {}
        }
    }
    parsed
}

fn main() {
    let args = parse_args();
    let dir = traces_dir();
    let files = trace_files(&dir).unwrap_or_else(|e| panic!("{e}"));
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            args.traces.is_empty() || args.traces.iter().any(|t| name.contains(t.as_str()))
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no trace file in {} matches",
        dir.display()
    );

    let mut results = Vec::new();
    for file in &files {
        let full = Trace::load(file).unwrap_or_else(|e| panic!("{e}"));
        let trace = match args.txns {
            Some(n) => full.prefix(n).unwrap_or_else(|e| panic!("{e}")),
            None => full,
        };
        let plan = Plan::new(&trace).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: {} txns, {} patches, {} agents",
            trace.name,
            trace.txns.len(),
            trace.patch_count(),
            trace.agents
        );
        let mut outcomes = Vec::new();
        // Where the end content is unknown (a prefix of a concurrent trace), the systems must
        // agree with each other.
        let mut reference: Option<(String, String)> = None;
        for mut system in benches::text::systems() {
            let name = system.name();
            let lower = name.to_lowercase();
            if !args.systems.is_empty() && !args.systems.iter().any(|s| lower.starts_with(s)) {
                continue;
            }
            if let Some(why) = system.skip_reason(&trace) {
                eprintln!("  {name}: skipped: {why}");
                outcomes.push((name, Outcome::Skipped(why)));
                continue;
            }
            let (m, text) =
                measure(system.as_mut(), &trace, &plan).unwrap_or_else(|e| panic!("{e}"));
            match &reference {
                Some((first, expected)) if trace.end_content.is_none() => assert!(
                    *expected == text,
                    "{name} and {first} end {} with different texts: {}",
                    trace.name,
                    benches::text::measure::diff_context(expected, &text)
                ),
                Some(_) => {}
                None => reference = Some((name.clone(), text)),
            }
            eprintln!(
                "  {name}: replay {:.3} s, merge {:.3} s, {} bytes encoded, {} bytes live",
                m.local.as_secs_f64(),
                m.remote.as_secs_f64(),
                m.encoded,
                m.memory
            );
            outcomes.push((name, Outcome::Measured(m)));
        }
        results.push(FileResult {
            file: trace.name.clone(),
            txns: trace.txns.len(),
            outcomes,
        });
    }
    print!("{}", render(&results));
}
