//! The `weft` command-line tool.
//!
//! - `weft demo [--dir PATH]`: two replicas on the embedded store edit concurrently, sync
//!   through merkle-sync sessions, and reopen from disk.
//! - `weft simulate --seeds N --start S`: the deterministic simulation ([`weft::sim`]) over
//!   N seeded histories; exits non-zero at the first failure, printing the seed and a
//!   minimized history.
//!
//! Output goes to stdout; if the reader closes it early (`weft demo | head`), the run stops
//! quietly with exit status 141, as a process ended by SIGPIPE would.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "weft: replicated state with CRDT ops and Merkle sync"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Two replicas on the embedded store edit concurrently, sync, and reopen from disk.
    Demo {
        /// Folder for the two store files (default: a fresh folder under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Runs seeded histories of the deterministic simulation; exits non-zero at the first
    /// failure, printing the seed and a minimized history.
    Simulate(cli::simulate::Options),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Demo { dir } => cli::demo::run(dir),
        Command::Simulate(options) => cli::simulate::run(&options),
    };
    match result {
        Ok(code) => code,
        // stdout was closed by the reader (`weft demo | head`): stop quietly, with the
        // status a shell gives a process that SIGPIPE ended, so a cut-off run never passes
        // for a successful one.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
