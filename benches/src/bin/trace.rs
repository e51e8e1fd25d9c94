//! `cargo run --release -p benches --bin trace -- FILE...`: replays editing-trace files (the
//! formats of `../shared/traces/README.md`, `.json` or `.json.gz`; a directory stands for every
//! trace under it) through weft's public API, and prints one line per file: txns, ops in the op
//! log, replay time, peak heap during the replay, encoded size of the op log (as a history
//! batch, and beside it as per-op encodings), and the time to load the history batch into a
//! fresh replica.
//!
//! A sequential trace replays on one replica, each txn its own transaction. A concurrent trace
//! replays on a replica per agent, each txn on its agent's replica after it applied the ops of
//! the txn's transitive parents it lacked; at the end all replicas sync. Every replica, and the
//! fresh replica loaded from the encoded op log, must read the trace's `endContent`: if one does
//! not, or a file is malformed, the tool says why and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use benches::alloc::CountingAlloc;
use benches::text::measure::{Measurement, measure};
use benches::text::plan::Plan;
use benches::text::replay::Replicated;
use benches::text::trace::{Trace, trace_files};
use benches::text::weft::Weft;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const MIB: f64 = 1024.0 * 1024.0;

fn line(name: &str, m: &Measurement) -> String {
    format!(
        "{name:<28} {:>8} txns {:>9} ops  replay {:>8.3} s  peak {:>8.1} MiB  op log {:>9} bytes \
         (per-op {:>9})  (fresh replica loads it in {:.3} s)",
        m.txns,
        m.ops.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        m.local.as_secs_f64(),
        m.local_peak as f64 / MIB,
        m.encoded,
        m.alt_encoded
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        m.remote.as_secs_f64(),
    )
}

/// Replays one file; `Err` is the message to print.
fn run(path: &Path) -> Result<String, String> {
    let trace = Trace::load(path).map_err(|e| e.to_string())?;
    let plan = Plan::new(&trace).map_err(|e| e.to_string())?;
    let mut weft = Replicated::<Weft>::default();
    let (m, _) =
        measure(&mut weft, &trace, &plan).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(line(&trace.name, &m))
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: trace FILE_OR_DIR...   (e.g. ../shared/traces)");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for arg in args {
        if arg.is_dir() {
            match trace_files(&arg) {
                Ok(found) => files.extend(found),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            files.push(arg);
        }
    }
    let mut failed = 0;
    for file in &files {
        match run(file) {
            Ok(line) => println!("{line}"),
            Err(message) => {
                failed += 1;
                println!(
                    "{:<28} FAILED",
                    file.file_name().unwrap_or_default().to_string_lossy()
                );
                eprintln!("error: {message}");
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} files failed", files.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
