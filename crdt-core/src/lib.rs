//! The core of weft: operations, delta-state CRDT types, conflicts, and the [`Replica`].
//!
//! Every local mutation becomes an [`Op`] stamped with the replica's hybrid logical clock and
//! is committed at once: appended to the [`Storage`] and applied to memory in one step. The
//! op log is a grow-only set keyed by [`OpId`], and the materialized state is a pure function
//! of that set, so replicas that hold the same ops show the same state, whatever the order of
//! delivery. That is the one design decision that shapes this crate: every field is a
//! delta-state CRDT whose ops are its deltas ([`LwwRegister`], [`MvRegister`], [`PnCounter`],
//! [`AwSet`]), and conflict policies (last-writer-wins, a merge handler, manual resolution)
//! are functions of the state, not of the arrival order.
//!
//! It reads no ambient time or randomness: the clock is an [`hlc::Clock`] and ids come from an
//! `rng` passed in. It never depends on an async runtime.
//!
//! ```
//! use crdt_core::{Collection, Field, MemoryStorage, Query, Replica, Schema, Cmp};
//! use hlc::ManualClock;
//! use rand::SeedableRng;
//!
//! let schema = Schema::new(1)
//!     .collection(
//!         Collection::new("todos")
//!             .field(Field::string("title").required())
//!             .field(Field::bool("done").default_value(false))
//!             .field(Field::counter("votes")),
//!     )?;
//! let clock = ManualClock::new(1_795_316_400_000);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//! let mut alice = Replica::open(MemoryStorage::new(), clock.clone(), schema.clone(), &mut rng)?;
//! let mut bob = Replica::open(MemoryStorage::new(), clock.clone(), schema, &mut rng)?;
//!
//! alice.transact(|tx| {
//!     tx.insert("todos", Some("milk"), [("title", "Buy milk".into())])?;
//!     tx.increment("todos", "milk", "votes", 1)
//! })?;
//! // Sync: Bob takes every op he has not seen.
//! bob.apply_remote(alice.ops_since(bob.version_vector())?)?;
//! bob.set("todos", "milk", "done", true)?;
//! alice.apply_remote(bob.ops_since(alice.version_vector())?)?;
//!
//! let open = Query::new("todos").filter("done", Cmp::Eq, false);
//! assert!(alice.query(&open)?.is_empty());
//! assert_eq!(alice.get("todos", "milk")?, bob.get("todos", "milk")?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod codec;
mod error;
pub mod history;
mod id;
mod list;
mod op;
mod query;
#[cfg(feature = "redb")]
mod redb_store;
mod replica;
mod replica_seq;
mod schema;
mod snapshot;
mod state;
mod storage;
mod txn;
mod types;
mod validate;
mod value;

pub use error::{ApplyError, Error, InvalidOp, OpenError, RejectReason, WriteError};
pub use id::{OpId, ReplicaId, VersionVector};
pub use list::{Anchor, ElemId, OutOfBounds, SeqChange, Side, Unit};
pub use op::{CounterBaseline, Op, Payload, SeqBaseline, SeqContent};
pub use query::{Cmp, Conflict, FieldValue, Order, Query, QueryError, Row, SubscriptionId};
#[cfg(feature = "redb")]
pub use redb_store::{CommitMode, PowerLossDisk, RedbConfig, RedbStorage};
pub use replica::{ApplyOutcome, Event, MAX_PENDING_OPS, Replica, Report};
pub use schema::{
    Collection, ConflictPolicy, Field, FieldKind, MergeFn, PrimaryKey, ScalarType, Schema,
    SchemaError,
};
pub use storage::{MemoryStorage, OpIter, Snapshot, Storage, StorageError};
pub use txn::Transaction;
pub use types::{AwSet, LwwRegister, MvRegister, PnCounter};
pub use value::Value;
