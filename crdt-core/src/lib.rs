//! The core of weft: operations, delta-state CRDT types, the op log and the `Replica`.
//!
//! This crate will hold the op model (`ReplicaId`, `OpId = (Timestamp, ReplicaId)`, `Op`,
//! `VersionVector`), the delta-state CRDT types (registers, counters, sets, maps, and the
//! Fugue text/list type), conflict handling (last-writer-wins, merge handlers, manual
//! resolution), the grow-only op log, the `Storage` trait with its in-memory and embedded
//! persistent (redb) implementations, and the `Replica` that applications read and write.
//!
//! It reads no ambient time or randomness: both are arguments, through [`hlc::Clock`] and
//! seeds. It never depends on an async runtime.
