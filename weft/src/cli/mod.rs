//! The subcommands of the `weft` tool.

pub(crate) mod demo;
pub(crate) mod simulate;

/// What a subcommand returns: an exit code, or an error that ends the run.
pub(crate) type Outcome = Result<std::process::ExitCode, Box<dyn std::error::Error>>;

/// `println!` that hands a failed write (stdout closed, as in `weft demo | head`) to the
/// caller with `?` instead of panicking; `main` ends such a run quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}
pub(crate) use out;
