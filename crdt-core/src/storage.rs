//! Where the op log lives: the [`Storage`] trait and the in-memory store.

use std::collections::BTreeMap;

use crate::codec::DecodeError;
use crate::{Op, OpId, ReplicaId, VersionVector};

/// A storage backend failed or holds bad data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The stored bytes do not decode: corruption, truncation or a foreign file.
    #[error("stored op {id} is corrupt: {source}")]
    Corrupt {
        /// The op whose bytes are bad (as named by the store's index).
        id: OpId,
        /// Why they do not decode.
        source: DecodeError,
    },
    /// The backend itself failed (disk full, permission, IO).
    #[error("storage backend failed: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// Iterator over stored ops, in [`OpId`] order.
pub type OpIter<'a> = Box<dyn Iterator<Item = Result<Op, StorageError>> + 'a>;

/// A durable (or ephemeral) home for a replica's op log and its few pieces of metadata.
///
/// The log is a grow-only set of ops keyed by [`OpId`]. [`Storage::append`] is all-or-nothing
/// and returns only when the ops are as durable as the backend promises; a replica applies
/// ops to memory only after they are appended.
pub trait Storage {
    /// The id of the replica this store belongs to, once set.
    fn replica_id(&self) -> Result<Option<ReplicaId>, StorageError>;

    /// Records the replica id on first open.
    fn set_replica_id(&mut self, id: ReplicaId) -> Result<(), StorageError>;

    /// Appends ops that are not yet stored, all or nothing.
    fn append(&mut self, ops: &[Op]) -> Result<(), StorageError>;

    /// Whether the op is stored.
    fn contains(&self, id: OpId) -> Result<bool, StorageError>;

    /// The stored op with this id.
    fn get(&self, id: OpId) -> Result<Option<Op>, StorageError>;

    /// Every stored op, in [`OpId`] order (hydration).
    fn scan(&self) -> OpIter<'_>;

    /// The stored ops that `vv` does not cover, in [`OpId`] order: what a peer at `vv` is
    /// certainly missing.
    fn ops_after(&self, vv: &VersionVector) -> OpIter<'_>;

    /// How many ops are stored.
    fn len(&self) -> Result<u64, StorageError>;

    /// Whether no op is stored.
    fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.len()? == 0)
    }
}

/// The in-memory store, for tests and ephemeral replicas. Nothing survives the process.
///
/// Ops are kept encoded, back to back in one buffer, with an index from [`OpId`] to offset:
/// about the encoded size plus 30 bytes an op.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    replica_id: Option<ReplicaId>,
    bytes: Vec<u8>,
    index: BTreeMap<OpId, u32>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of encoded ops held.
    pub fn encoded_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn decode_at(&self, id: OpId, offset: u32) -> Result<Op, StorageError> {
        let corrupt = |source| StorageError::Corrupt { id, source };
        let start = usize::try_from(offset).map_err(|_| corrupt(DecodeError::Empty))?;
        let rest = self.bytes.get(start..).ok_or(corrupt(DecodeError::Empty))?;
        postcard::take_from_bytes::<Op>(rest)
            .map(|(op, _)| op)
            .map_err(|e| corrupt(e.into()))
    }
}

impl Storage for MemoryStorage {
    fn replica_id(&self) -> Result<Option<ReplicaId>, StorageError> {
        Ok(self.replica_id)
    }

    fn set_replica_id(&mut self, id: ReplicaId) -> Result<(), StorageError> {
        self.replica_id = Some(id);
        Ok(())
    }

    fn append(&mut self, ops: &[Op]) -> Result<(), StorageError> {
        let too_big = || {
            StorageError::Backend("the in-memory store is limited to 4 GiB of encoded ops".into())
        };
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(ops.len());
        for op in ops {
            let offset = u32::try_from(self.bytes.len() + buf.len()).map_err(|_| too_big())?;
            offsets.push(offset);
            buf = postcard::to_extend(op, buf).map_err(|e| StorageError::Backend(Box::new(e)))?;
        }
        u32::try_from(self.bytes.len() + buf.len()).map_err(|_| too_big())?;
        self.bytes.extend_from_slice(&buf);
        for (op, offset) in ops.iter().zip(offsets) {
            self.index.entry(op.id).or_insert(offset);
        }
        Ok(())
    }

    fn contains(&self, id: OpId) -> Result<bool, StorageError> {
        Ok(self.index.contains_key(&id))
    }

    fn get(&self, id: OpId) -> Result<Option<Op>, StorageError> {
        self.index
            .get(&id)
            .map(|&offset| self.decode_at(id, offset))
            .transpose()
    }

    fn scan(&self) -> OpIter<'_> {
        Box::new(
            self.index
                .iter()
                .map(|(&id, &offset)| self.decode_at(id, offset)),
        )
    }

    fn ops_after(&self, vv: &VersionVector) -> OpIter<'_> {
        let vv = vv.clone();
        Box::new(
            self.index
                .iter()
                .filter(move |(id, _)| !vv.covers(**id))
                .map(|(&id, &offset)| self.decode_at(id, offset)),
        )
    }

    fn len(&self) -> Result<u64, StorageError> {
        Ok(self.index.len() as u64)
    }
}
