//! Reconciling op logs between peers, with no IO.
//!
//! Two peers that each hold a set of ops find and exchange exactly the ops the other lacks,
//! in few round trips and few bytes beyond the ops themselves. The one design decision that
//! shapes the crate: **the [`Index`] is a Merkle tree whose shape depends only on the set of
//! op ids** (a crit-bit trie over the 16 sortable `OpId` bytes, one per collection, blake3
//! over children), so equal sets have equal roots whatever the order of arrival, and a root
//! comparison settles identical logs in one round trip. Beside each tree the index caches the
//! first symbols of a rateless invertible Bloom lookup table, the set-difference sketch that
//! finds scattered gaps in one more round trip (built at the first sketch that needs them, so
//! a log that only ever catches up never pays for them).
//!
//! A [`Session`] is a state machine in the style of quinn-proto: inputs through
//! [`Session::handle_message`] and [`Session::handle_timeout`], outputs through
//! [`Session::poll_transmit`], [`Session::poll_event`] and [`Session::poll_timeout`]. Any
//! transport drives it by moving bytes; time is an argument and nothing is random. The flow
//! (`docs/design.md`, "Sync"):
//!
//! 1. Each side sends a first flight: root digest, op count, frontier (per-replica highest
//!    timestamp). Equal roots: done.
//! 2. Each side pushes at once every op above the other's frontier. If the rest of its log
//!    then equals the peer's root (checked without changing the tree), the push completes the
//!    peer and this side lacks nothing: one round trip for a peer that is only behind.
//! 3. Otherwise the side with more ops (the higher root on a tie) sends sketch symbols of the
//!    ops both frontiers
//!    cover; the other subtracts its own, peels the difference, pushes what the peer lacks and
//!    asks for what it lacks. More symbols are asked for if the difference does not peel;
//!    past the symbol budget the round falls back to a range-digest descent: each side sends
//!    digests of the sub-ranges (bit prefixes of the id bytes, several trie levels down at
//!    once) of every range where the two trees differ, and small ranges as their ids
//!    ([`Reconcile::Descent`] uses the descent from the start).
//! 4. Ops travel in id order in frames of bounded size. Each side announces its new root when
//!    it changes; equal roots end the session. A lost message is recovered by a timeout that
//!    restarts the round from step 1, which re-sends nothing already exchanged.
//!
//! A session is scoped to a set of collections ([`Scope`]): nothing outside it is offered,
//! not even an id or a digest covering it. Bytes from the peer are untrusted: messages have
//! size caps checked before allocating, and anything malformed ends the session with a
//! [`SessionError`].
//!
//! Two sessions converging, with the transport reduced to moving each message across:
//!
//! ```
//! use std::collections::BTreeMap;
//! use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
//! use merkle_sync::{Config, Event, Index, Scope, Session};
//!
//! fn op(ms: u64, replica: u64) -> Op {
//!     Op {
//!         id: OpId::new(hlc::Timestamp::new(ms, 0).unwrap(), ReplicaId::new(replica)),
//!         schema_version: 1,
//!         collection: "todos".into(),
//!         key: format!("k{ms}"),
//!         field: "title".into(),
//!         deps: vec![],
//!         payload: Payload::Write(Value::Int(ms as i64)),
//!     }
//! }
//!
//! // Alice holds ops 0..100 of replica 1; Bob holds every other one, and two of his own.
//! let mut logs = [BTreeMap::new(), BTreeMap::new()];
//! for ms in 0..100 {
//!     logs[0].insert(op(ms, 1).id, op(ms, 1));
//!     if ms % 2 == 0 {
//!         logs[1].insert(op(ms, 1).id, op(ms, 1));
//!     }
//! }
//! for ms in [7, 200] {
//!     logs[1].insert(op(ms, 2).id, op(ms, 2));
//! }
//! let mut indexes = logs.clone().map(|log| Index::from_ops(log.values()));
//! let scope = Scope::new(["todos"]);
//! let mut sessions = [0, 1].map(|i| Session::new(0, scope.clone(), Config::default(), &indexes[i]));
//!
//! let mut now = 0;
//! while !(sessions[0].is_synced() && sessions[1].is_synced()) {
//!     now += 10;
//!     for from in 0..2 {
//!         let to = 1 - from;
//!         while let Some(bytes) = sessions[from].poll_transmit(now, &indexes[from], &logs[from])? {
//!             sessions[to].handle_message(now, &bytes, &indexes[to])?;
//!             while let Some(event) = sessions[to].poll_event() {
//!                 if let Event::Ops(ops) = event {
//!                     for op in ops.to_ops()? {
//!                         indexes[to].insert_op(&op); // the application applies, then indexes
//!                         logs[to].insert(op.id, op);
//!                     }
//!                 }
//!             }
//!         }
//!     }
//!     assert!(now < 1000, "no convergence");
//! }
//! assert_eq!(logs[0], logs[1]);
//! assert_eq!(logs[0].len(), 102);
//! assert_eq!(indexes[0].root(&scope), indexes[1].root(&scope));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What this crate needs from the log is small: the application keeps the [`Index`] beside
//! it (inserting each op it stores) and lends the session an [`OpSource`] to read ops by id;
//! [`StorageSource`] adapts any [`crdt_core::Storage`]. Received ops come as their bytes
//! ([`Event::Ops`], a [`crdt_core::codec::EncodedOps`] checked to be the one encoding of its
//! ops): a replica decodes them to apply them, while a peer that only stores and forwards
//! ops appends and indexes the bytes as they are (`Storage::append_encoded`,
//! [`Index::insert_encoded`]) and, with a store that keeps ops encoded, never decodes one.

#![warn(missing_docs)]

mod arena;
mod batch_hash;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod message;
mod session;
mod sketch;
mod source;
#[cfg(test)]
mod test_rng;
mod trie;

pub use index::{Digest, Index, Scope, op_digest};
pub use message::{
    MAX_FRONTIER_REPLICAS, MAX_MESSAGE_BYTES, MAX_OPS_FRAME_BYTES, MessageError, PROTOCOL_VERSION,
};
pub use session::{Config, Event, Reconcile, Session, SessionError, Stats};
pub use source::{OpSource, SourceError, StorageSource};
