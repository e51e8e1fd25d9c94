//! The subcommands of the `weft` tool.

pub(crate) mod demo;
pub(crate) mod simulate;

/// What a subcommand returns: an exit code, or an error that ends the run.
pub(crate) type Outcome = Result<std::process::ExitCode, Box<dyn std::error::Error>>;
