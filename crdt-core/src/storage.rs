//! Where the op log lives: the [`Storage`] trait and the in-memory store.

use std::collections::BTreeMap;

use hlc::Timestamp;

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
    /// The store as a whole cannot be read: its file is corrupt or truncated, is not a weft
    /// store, or has a format version this build does not know. Nothing was changed.
    #[error("the store cannot be read: {0}")]
    Unreadable(String),
    /// The store does not implement this optional operation.
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
}

/// A materialized snapshot of a replica's state, as opaque bytes, and how much of the log it
/// covers: the first `position` ops appended (see [`Storage::append_position`]).
///
/// Opening a replica from a snapshot loads the bytes and replays only
/// [`Storage::ops_appended_after`] `position`. The ops the snapshot covers stay in the log, so
/// peers can still be sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// How many appended ops the state includes.
    pub position: u64,
    /// The serialized state; its format belongs to the replica.
    pub bytes: Vec<u8>,
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

    /// The clock's persisted high-water mark: at or above every timestamp in the log and every
    /// timestamp recorded with [`Storage::set_high_water`] that has become durable. A restarted
    /// clock resumes above it. `None` for a store that keeps none (the default).
    fn high_water(&self) -> Result<Option<Timestamp>, StorageError> {
        Ok(None)
    }

    /// Raises the high-water mark to `ts` (never lowers it). It becomes durable with the next
    /// [`Storage::append`] at the latest; a store that keeps none ignores it (the default).
    fn set_high_water(&mut self, ts: Timestamp) -> Result<(), StorageError> {
        let _ = ts;
        Ok(())
    }

    /// The frontier last exchanged with `peer`, so that reconnecting sync starts from there.
    /// `None` if none was saved (the default).
    fn peer_frontier(&self, peer: ReplicaId) -> Result<Option<VersionVector>, StorageError> {
        let _ = peer;
        Ok(None)
    }

    /// Saves the frontier last exchanged with `peer`, replacing the previous one. Durable on
    /// return for a durable store; ignored by a store that keeps none (the default).
    fn set_peer_frontier(
        &mut self,
        peer: ReplicaId,
        vv: &VersionVector,
    ) -> Result<(), StorageError> {
        let _ = (peer, vv);
        Ok(())
    }

    /// How many ops have been appended so far (ops already stored when appended again do not
    /// count): the position a [`Snapshot`] taken now covers. Defaults to [`Storage::len`].
    fn append_position(&self) -> Result<u64, StorageError> {
        self.len()
    }

    /// The ops appended after the first `position`, in append order (which respects each op's
    /// dependencies, since a replica appends an op only after them). The default supports only
    /// position 0 (the whole log, in [`OpId`] order).
    fn ops_appended_after(&self, position: u64) -> OpIter<'_> {
        if position == 0 {
            self.scan()
        } else {
            Box::new(std::iter::once(Err(StorageError::Unsupported(
                "reading the log in append order",
            ))))
        }
    }

    /// The saved snapshot, if any (the default: none).
    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(None)
    }

    /// Saves `snapshot`, replacing the previous one. A store that keeps none ignores it (the
    /// default), and the replica then replays the whole log on open.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let _ = snapshot;
        Ok(())
    }

    /// Saves `snapshot` without making the caller wait where the store can: a durable store
    /// writes it on another thread. The default saves it at once. A failure of an earlier
    /// background save is returned by the next call.
    fn save_snapshot_in_background(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        self.save_snapshot(&snapshot)
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
    high_water: Option<Timestamp>,
    peers: BTreeMap<ReplicaId, VersionVector>,
    snapshot: Option<Snapshot>,
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
        if let Some(max) = ops.iter().map(|op| op.id.ts).max() {
            self.set_high_water(max)?;
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

    fn high_water(&self) -> Result<Option<Timestamp>, StorageError> {
        Ok(self.high_water)
    }

    fn set_high_water(&mut self, ts: Timestamp) -> Result<(), StorageError> {
        self.high_water = self.high_water.max(Some(ts));
        Ok(())
    }

    fn peer_frontier(&self, peer: ReplicaId) -> Result<Option<VersionVector>, StorageError> {
        Ok(self.peers.get(&peer).cloned())
    }

    fn set_peer_frontier(
        &mut self,
        peer: ReplicaId,
        vv: &VersionVector,
    ) -> Result<(), StorageError> {
        self.peers.insert(peer, vv.clone());
        Ok(())
    }

    fn ops_appended_after(&self, position: u64) -> OpIter<'_> {
        // The buffer holds ops in append order; an op appended twice keeps its first offset.
        let mut order: Vec<(u32, OpId)> = self.index.iter().map(|(&id, &o)| (o, id)).collect();
        order.sort_unstable();
        let skip = usize::try_from(position).unwrap_or(usize::MAX);
        Box::new(
            order
                .into_iter()
                .skip(skip)
                .map(|(offset, id)| self.decode_at(id, offset)),
        )
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.snapshot.clone())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.snapshot = Some(snapshot.clone());
        Ok(())
    }
}
