//! Operations: the deltas that make up the op log.

use serde::{Deserialize, Serialize};

use crate::{ElemId, OpId, ReplicaId, Value};

/// One operation: a delta to one field of one record, stamped with its [`OpId`].
///
/// Every local mutation becomes one op; the op log is the grow-only set of them, and the
/// materialized state is a pure function of that set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Identity and order.
    pub id: OpId,
    /// The schema version the writer had; a migration can interpret old ops by it.
    pub schema_version: u32,
    /// The collection of the record.
    pub collection: String,
    /// The record's primary key.
    pub key: String,
    /// The field the op changes; empty for a whole-record op ([`Payload::Delete`]).
    pub field: String,
    /// Ops that must be applied before this one. Their meaning depends on the payload: the
    /// siblings a register write replaces, the adds a set removal removes.
    pub deps: Vec<OpId>,
    /// What changes.
    pub payload: Payload,
}

/// What an op does to its field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Writes a register field. With a last-writer-wins field the highest [`OpId`] wins; with a
    /// multi-value field (merge handler or manual resolution) the write replaces the siblings
    /// named in `deps` and stays beside any it had not seen.
    Write(Value),
    /// Sets the issuing replica's cumulative totals of a counter field, so that counters join
    /// by maximum and survive duplicated or reordered delivery.
    Counter {
        /// Sum of the replica's increments so far.
        positive: u64,
        /// Sum of the replica's decrements so far (as a positive number).
        negative: u64,
    },
    /// Adds an element to a set field; the op's id tags the add.
    SetAdd(Value),
    /// Removes an element from a set field: the adds named in `deps`, which the remover had
    /// seen. A concurrent add (not seen) survives: adds win.
    SetRemove(Value),
    /// Deletes the record: hides every register write and set add with a lower [`OpId`], and
    /// resets counters to the totals the deleter had seen. A later write revives the record.
    Delete {
        /// For each counter field, the per-replica totals seen at deletion.
        counters: Vec<CounterBaseline>,
        /// For each text or list field, the elements visible at deletion, which it deletes.
        sequences: Vec<SeqBaseline>,
    },
    /// Inserts elements into a text or list field: the issuing replica's elements
    /// `seq..seq + n`, placed after `left` and before `right` (the neighbours its writer saw;
    /// `None` for the start and the end). Needs both to be present.
    SeqInsert {
        /// The first element's number in the issuing replica's counter.
        seq: u64,
        /// The element it was inserted after.
        left: Option<ElemId>,
        /// The element that followed `left` when it was inserted (tombstones included).
        right: Option<ElemId>,
        /// What is inserted.
        content: SeqContent,
    },
    /// Deletes elements of a text or list field, as id ranges `(first, count)`. Needs them to
    /// be present.
    SeqDelete {
        /// The deleted elements.
        ranges: Vec<(ElemId, u64)>,
    },
    /// Creates (or revives) a record without writing a field: an insert that gives no values,
    /// e.g. into a collection whose fields are all text, lists, sets or counters.
    Create,
}

/// The content of a [`Payload::SeqInsert`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeqContent {
    /// Characters of a text.
    Text(String),
    /// Values of a list.
    Values(Vec<Value>),
}

impl SeqContent {
    /// Elements inserted.
    pub fn count(&self) -> u64 {
        match self {
            Self::Text(s) => s.chars().count() as u64,
            Self::Values(v) => v.len() as u64,
        }
    }
}

/// The elements of one text or list field visible when a record was deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqBaseline {
    /// The text or list field.
    pub field: String,
    /// The visible elements, as id ranges `(first, count)`.
    pub ranges: Vec<(ElemId, u64)>,
}

/// The totals of one counter field seen when a record was deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterBaseline {
    /// The counter field.
    pub field: String,
    /// `(replica, positive, negative)` totals, by replica.
    pub totals: Vec<(ReplicaId, u64, u64)>,
}
