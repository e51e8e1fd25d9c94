//! weft replicates application state between devices and peers.
//!
//! Each local mutation becomes a CRDT operation stamped with a hybrid logical clock and is
//! committed at once; peers compare Merkle trees of their op logs and exchange only the missing
//! operations. This is the one crate an application adds: it re-exports the pieces below.
//!
//! - [`hlc`]: the hybrid logical clock.
//! - [`crdt_core`]: ops, field types (registers, counters, sets, text, lists), schema and
//!   conflict policies, the [`Replica`], storage.
//! - [`merkle_sync`]: the sans-IO reconciliation protocol (Merkle index, `Session`).
//! - [`sim`]: a deterministic simulation of 3 to 8 replicas on simulated disks and a faulty
//!   simulated network, with a strict convergence check at the end.
//! - [`testing`]: a harness that checks an application's schema and merge handlers for
//!   convergence over random concurrent histories.
//!
//! The `weft` command-line tool lives in this package too:
//!
//! ```sh
//! cargo run -p weft -- demo                                   # two replicas, sync, reopen
//! cargo run --release -p weft -- simulate --seeds 200 --start 0   # seeded histories
//! ```
//!
//! ```
//! use weft::{Collection, Field, MemoryStorage, Replica, Schema};
//! use weft::hlc::SystemClock;
//! use rand::SeedableRng;
//!
//! let schema = Schema::new(1).collection(Collection::new("docs").field(Field::text("body")))?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let mut a = Replica::open(MemoryStorage::new(), SystemClock, schema.clone(), &mut rng)?;
//! let mut b = Replica::open(MemoryStorage::new(), SystemClock, schema, &mut rng)?;
//! a.transact(|tx| {
//!     tx.insert("docs", Some("readme"), [])?;
//!     tx.insert_text("docs", "readme", "body", 0, "hello")
//! })?;
//! b.apply_remote(a.ops_since(b.version_vector())?)?;
//! assert_eq!(a.text("docs", "readme", "body")?, b.text("docs", "readme", "body")?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use crdt_core;
pub use crdt_core::{
    Anchor, Cmp, Collection, ConflictPolicy, Event, Field, FieldValue, MemoryStorage, Op, OpId,
    Order, Query, Replica, ReplicaId, Row, ScalarType, Schema, Side, Storage, Unit, Value,
    VersionVector,
};
pub use hlc;
pub use merkle_sync;

pub mod sim;
pub mod testing;
pub use hlc::{Clock, ClockedHlc, Hlc, SystemClock, Timestamp};
