//! `weft simulate`: many seeded histories of [`weft::sim`], stopping at the first failure.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use weft::sim::{Config, History, Mutation, Summary, minimize, run as run_history};

use super::{Outcome, out};

/// Options of `weft simulate`.
#[derive(clap::Args)]
pub(crate) struct Options {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replicas per history: `N` or `MIN-MAX` (2 to 8).
    #[arg(long, default_value = "3-8", value_parser = parse_range)]
    replicas: (usize, usize),
    /// Steps per history: `N` or `MIN-MAX`.
    #[arg(long, default_value = "40-160", value_parser = parse_range)]
    steps: (usize, usize),
    /// Print every history's summary.
    #[arg(long)]
    verbose: bool,
    /// Run with a deliberate defect, to see a failure being caught.
    #[arg(long, value_enum)]
    mutation: Option<MutationArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MutationArg {
    /// A merge handler with hidden state, so its result depends on the order of arrival.
    StatefulMerge,
    /// Commits return before they are synced, so a power cut loses acknowledged ops.
    RelaxedCommits,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|e| format!("{t:?} is not a count: {e}"))
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(format!("{lo} is more than {hi}"));
            }
            Ok((lo, hi))
        }
        None => parse(s).map(|n| (n, n)),
    }
}

pub(crate) fn run(options: &Options) -> Outcome {
    let mut config = Config::default()
        .replicas(options.replicas.0, options.replicas.1)
        .steps(options.steps.0, options.steps.1);
    match options.mutation {
        Some(MutationArg::StatefulMerge) => {
            config = config.mutation(Mutation::StatefulMergeHandler)
        }
        Some(MutationArg::RelaxedCommits) => config = config.mutation(Mutation::RelaxedCommits),
        None => {}
    }
    let progress = std::io::stderr().is_terminal() && !options.verbose;
    let mut total = Summary::default();
    let mut histories = 0u64;
    #[allow(
        clippy::disallowed_methods,
        reason = "the tool reports its own wall-clock throughput (histories per second)"
    )]
    let started = std::time::Instant::now();
    for seed in options.start..options.start.saturating_add(options.seeds) {
        let history = History::generate(seed, &config);
        match run_history(&history, &config) {
            Ok(s) => {
                histories += 1;
                total.add(&s);
                if options.verbose {
                    out!(
                        "seed {seed}: {} replicas, {} steps: {s:?}",
                        history.replicas,
                        history.steps.len()
                    );
                } else if progress {
                    eprint!("\r{histories}/{} histories", options.seeds);
                }
            }
            Err(failure) => {
                if progress {
                    eprintln!();
                }
                out!("FAILED: {failure}");
                out!("minimizing...");
                match minimize(&history, &config) {
                    Some((small, again)) => {
                        out!(
                            "minimized history ({} of {} steps):",
                            small.steps.len(),
                            history.steps.len()
                        );
                        write!(std::io::stdout().lock(), "{small}")?;
                        out!("it fails with: {again}");
                    }
                    None => {
                        out!("(the history did not fail again: the run is not deterministic)")
                    }
                }
                out!(
                    "replay: cargo run --release -p weft -- simulate --seeds 1 --start {seed} --replicas {}-{} --steps {}-{}{}",
                    options.replicas.0,
                    options.replicas.1,
                    options.steps.0,
                    options.steps.1,
                    match options.mutation {
                        Some(MutationArg::StatefulMerge) => " --mutation stateful-merge",
                        Some(MutationArg::RelaxedCommits) => " --mutation relaxed-commits",
                        None => "",
                    }
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    if progress {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    out!(
        "{histories} histories passed (seeds {}..{}) in {secs:.2} s: {:.1} histories/s",
        options.start,
        options.start.saturating_add(options.seeds),
        histories as f64 / secs.max(1e-9)
    );
    out!(
        "  ops written {}, ops received {} ({} rejected for drift, then accepted), power cuts {}",
        total.ops_written,
        total.ops_received,
        total.drift_rejections,
        total.crashes
    );
    out!(
        "  messages {} ({} bytes; {} lost, {} duplicated), session timeouts {}, connections {}",
        total.messages,
        total.bytes,
        total.dropped,
        total.duplicated,
        total.timeouts,
        total.connections
    );
    std::io::stdout().flush()?;
    Ok(ExitCode::SUCCESS)
}
