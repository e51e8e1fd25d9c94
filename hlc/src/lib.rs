//! Hybrid logical clock for weft.
//!
//! A [`Timestamp`] is one `u64`: 48 bits of Unix milliseconds above a 16-bit logical counter.
//! Timestamps are totally ordered, their big-endian bytes sort the same way, and a replica never
//! issues the same one twice, so that `(Timestamp, ReplicaId)` can name every operation.
//!
//! The design decision that shapes this crate: the clock is a pure state machine. [`Hlc`] takes
//! physical time as an argument (`tick(now)`, `observe(now, remote)`) and reads nothing
//! ambient, so that tests and simulations drive it with any time they like, including time that
//! jumps backwards. [`ClockedHlc`] pairs it with a [`Clock`]: the real [`SystemClock`] or a
//! [`ManualClock`].
//!
//! ```
//! use hlc::{ClockedHlc, Config, SystemClock, Timestamp};
//!
//! let mut local = ClockedHlc::new(SystemClock, Config::default());
//! let a = local.now()?;
//! let b = local.now()?;
//! assert!(b > a);
//!
//! // Timestamps travel as 8 bytes or as text, and come back equal.
//! assert_eq!(Timestamp::from_bytes(b.to_bytes()), b);
//! assert_eq!(b.to_string().parse::<Timestamp>()?, b);
//!
//! // A peer's timestamp moves the clock forward, so what we stamp next is later than it.
//! let remote = Timestamp::new(b.millis() + 5, 0).unwrap();
//! let c = local.observe(remote)?;
//! assert!(c > remote);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Policies (drift, counter overflow, restart) are described on [`Hlc`] and in the project's
//! `docs/design.md`.

#![warn(missing_docs)]

mod machine;
#[cfg(feature = "serde")]
mod serde_impl;
mod source;
mod timestamp;

pub use machine::{ClockExhausted, Config, DriftError, Hlc, ObserveError};
pub use source::{Clock, ClockedHlc, ManualClock, SystemClock};
pub use timestamp::{ParseTimestampError, Timestamp};
