//! weft's benchmarks, and the side-by-side comparison with peer libraries measured in the same
//! run.
//!
//! - `cargo bench -p benches --bench clock`: the hybrid logical clock's `tick` on the system
//!   clock, against a bare read of the system clock and uhlc's timestamp generation, with ratios.
//!
//! Helpers shared by the benchmarks live here.

use std::path::PathBuf;

/// Where criterion keeps its estimates: `$CRITERION_HOME`, else `criterion/` in the cargo
/// target directory.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Whether criterion was asked only to check that the benchmarks run (`-- --test`), so that
/// there are no fresh estimates to report.
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--list")
}
