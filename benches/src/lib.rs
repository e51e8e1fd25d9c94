//! weft's benchmarks, and the side-by-side comparison with peer libraries measured in the same
//! run.
//!
//! - `cargo bench -p benches --bench clock`: the hybrid logical clock's `tick` on the system
//!   clock, against a bare read of the system clock and uhlc's timestamp generation, with ratios.
//! - `cargo bench -p benches --bench map`: 1,000,000 last-writer-wins writes over 10,000 records,
//!   applied locally one committed transaction each, then merged into a fresh replica as remote
//!   operations; ops per second and heap bytes per op each way, against automerge and yrs, with
//!   ratios ([`map_workload`]).
//! - `cargo bench -p benches --bench text`: the editing traces in `../shared/traces` replayed
//!   keystroke by keystroke, then loaded as a full history into a fresh document; time, encoded
//!   size and memory against automerge, yrs, loro and diamond-types, with ratios ([`text`]).
//!   `cargo run --release -p benches --bin trace -- FILE...` replays trace files through weft
//!   alone and checks their end content.
//!
//! Helpers shared by the benchmarks live here.

use std::path::PathBuf;

pub mod alloc;
pub mod map_workload;
pub mod sync_peers;
pub mod text;
pub mod weft_map;

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
