//! Error types of the replica's operation families.

use hlc::{ClockExhausted, DriftError};

use crate::codec::DecodeError;
use crate::list::OutOfBounds;
use crate::schema::SchemaError;
use crate::{OpId, QueryError, StorageError, Value};

/// A local write that was refused. Nothing of the transaction was applied or stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The op does not fit the schema.
    #[error(transparent)]
    Invalid(#[from] InvalidOp),
    /// No live record has this key.
    #[error("collection `{collection}` has no record `{key}`")]
    NoSuchRecord {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// An insert names a key that a live record already has.
    #[error("collection `{collection}` already has a record `{key}`")]
    AlreadyExists {
        /// The collection.
        collection: String,
        /// The key.
        key: String,
    },
    /// An insert into a collection with given keys has no key, or one with generated keys
    /// has one.
    #[error("collection `{collection}`: {reason}")]
    Key {
        /// The collection.
        collection: String,
        /// What is wrong with the key.
        reason: &'static str,
    },
    /// A required field was not given and has no default.
    #[error("field `{collection}.{field}` is required")]
    MissingRequired {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
    },
    /// Another live record already holds this value of a unique field.
    #[error(
        "field `{collection}.{field}` is unique and record `{existing}` already holds {value:?}"
    )]
    Unique {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The value.
        value: Value,
        /// The record holding it.
        existing: String,
    },
    /// A text or list position past the end.
    #[error("field `{collection}.{field}`: {source}")]
    Position {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The position and the length.
        source: OutOfBounds,
    },
    /// The clock can issue no further timestamp.
    #[error(transparent)]
    Clock(#[from] ClockExhausted),
    /// The store failed; the transaction was not applied.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An op that does not fit the schema, naming what does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidOp {
    /// No such collection.
    #[error("unknown collection `{0}`")]
    UnknownCollection(String),
    /// No such field.
    #[error("collection `{collection}` has no field `{field}`")]
    UnknownField {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
    },
    /// The value or operation does not fit the field's kind.
    #[error("field `{collection}.{field}` is a {expected}, not {found}")]
    Type {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The field's kind.
        expected: String,
        /// What the op holds.
        found: String,
    },
    /// A whole-record op with a field, or a field op without one.
    #[error("malformed op: {0}")]
    Malformed(&'static str),
    /// The op encodes to more than [`MAX_OP_BYTES`](crate::codec::MAX_OP_BYTES): it could be
    /// neither read back from a store nor sent to a peer. Split the value (a long text in
    /// several inserts, a large blob in several fields or records). A record delete carries
    /// the elements of its text and list fields: empty a very long field in several deletes
    /// first. From a text or list edit or a record delete, it fails the whole transaction.
    #[error(
        "op {id} encodes to {bytes} bytes, more than the {}-byte limit of one op",
        crate::codec::MAX_OP_BYTES
    )]
    TooLarge {
        /// The op.
        id: OpId,
        /// The length of its encoding ([`encode_op`](crate::codec::encode_op)).
        bytes: usize,
    },
}

/// Why a remote op was rejected. Rejected ops are not stored, applied or forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// Its timestamp is too far ahead of local time.
    #[error(transparent)]
    Drift(#[from] DriftError),
    /// It does not fit the schema.
    #[error(transparent)]
    Invalid(#[from] InvalidOp),
    /// Too many ops already wait for missing dependencies.
    #[error("too many ops wait for missing dependencies")]
    BufferFull,
}

/// Opening a replica failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The schema is inconsistent.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The store failed or holds corrupt data.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored op does not fit the schema given to open.
    #[error("stored op does not fit the schema: {0}")]
    Incompatible(InvalidOp),
}

/// Encoded ops from a peer that could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The bytes do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The store failed; none of the batch's ready ops were applied.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The umbrella error of the crate, for applications that handle all alike.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`WriteError`].
    #[error(transparent)]
    Write(#[from] WriteError),
    /// See [`OpenError`].
    #[error(transparent)]
    Open(#[from] OpenError),
    /// See [`ApplyError`].
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// See [`QueryError`].
    #[error(transparent)]
    Query(#[from] QueryError),
    /// See [`StorageError`].
    #[error(transparent)]
    Storage(#[from] StorageError),
}
