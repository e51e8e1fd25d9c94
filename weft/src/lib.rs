//! weft replicates application state between devices and peers.
//!
//! Each local mutation becomes a CRDT operation stamped with a hybrid logical clock and is
//! committed at once; peers compare Merkle trees of their op logs and exchange only the missing
//! operations. This is the one crate an application adds: it re-exports the pieces below.
//!
//! What exists so far is the hybrid logical clock:
//!
//! ```
//! use weft::hlc::{ClockedHlc, Config, SystemClock};
//!
//! let mut clock = ClockedHlc::new(SystemClock, Config::default());
//! let first = clock.now()?;
//! assert!(clock.now()? > first);
//! # Ok::<(), weft::hlc::ClockExhausted>(())
//! ```

pub use hlc;
pub use hlc::{Clock, ClockedHlc, Hlc, SystemClock, Timestamp};
