//! The `weft` command-line tool.
//!
//! - `weft demo [--dir PATH]`: two replicas on the embedded store edit concurrently, sync
//!   through merkle-sync sessions, and reopen from disk.
//! - `weft simulate --seeds N --start S`: the deterministic simulation ([`weft::sim`]) over
//!   N seeded histories; exits non-zero at the first failure, printing the seed and a
//!   minimized history.

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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
