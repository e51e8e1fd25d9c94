//! Where the op log lives: the [`Storage`] trait and the in-memory store.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use hlc::Timestamp;

use crate::codec::{DecodeError, EncodedOps};
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
    /// An op given to [`Storage::append`] encodes to more than
    /// [`MAX_OP_BYTES`](crate::codec::MAX_OP_BYTES), so it could not be read back. Nothing of
    /// the append was stored. (A replica refuses such an op before it reaches the store.)
    #[error(
        "op {id} encodes to {bytes} bytes, more than the {}-byte limit of one op",
        crate::codec::MAX_OP_BYTES
    )]
    OpTooLarge {
        /// The op.
        id: OpId,
        /// The length of its encoding, the version byte included.
        bytes: usize,
    },
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

    /// Appends ops that a peer sent as bytes ([`EncodedOps`], as a sync session hands them
    /// over), all or nothing, as [`Storage::append`] does. The default decodes them and calls
    /// [`Storage::append`]; a store that keeps ops encoded copies their bytes instead, so that
    /// a peer which only stores and forwards ops never decodes one.
    fn append_encoded(&mut self, ops: &EncodedOps) -> Result<(), StorageError> {
        let ops = ops
            .iter()
            .map(|op| {
                // EncodedOps checked the bytes: this fails only if that check is wrong.
                op.decode().map_err(|e| {
                    StorageError::Backend(format!("op {} does not decode: {e}", op.id()).into())
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.append(&ops)
    }

    /// Whether the op is stored.
    fn contains(&self, id: OpId) -> Result<bool, StorageError>;

    /// The stored op with this id.
    fn get(&self, id: OpId) -> Result<Option<Op>, StorageError>;

    /// The stored op with this id in its encoding ([`crate::codec::encode_op`] without the
    /// leading format-version byte: postcard, as an op batch holds it), for a sync session
    /// that only copies ops onto the wire. The default encodes [`Storage::get`]'s op; a store
    /// that keeps ops encoded returns its bytes (after checking that they decode, if they may
    /// be corrupt: a peer must not be sent bad bytes from a bad disk).
    fn get_encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, StorageError> {
        Ok(self.get(id)?.map(|op| {
            let mut bytes = crate::codec::encode_op(&op);
            bytes.remove(0);
            Cow::Owned(bytes)
        }))
    }

    /// [`Storage::get_encoded`] for many ids: `f` is given each id `ids` yields with its
    /// bytes (`None` where the op is not stored), in turn, until it returns false or `ids`
    /// ends. Any order is read correctly; ascending ids, as a sync session asks for them, are
    /// read fastest. The default reads them one by one; the stores of this crate read a batch
    /// in one pass (one read transaction, and a step to the next key for ids that follow
    /// each other rather than a search from the root).
    fn get_encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), StorageError> {
        for id in ids {
            if !f(id, self.get_encoded(id)?) {
                break;
            }
        }
        Ok(())
    }

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

/// Point reads of keys in ascending order over an ordered map, by a walk along it where they
/// follow each other: from one key read to the next, a few steps to the following entries
/// instead of a search from the root. Where they are sparse, plain lookups, with a walk
/// tried again every [`PROBE_EVERY`] reads (a walk costs a little more to start than a
/// lookup). Keys in any order are read correctly.
pub(crate) struct SortedReads<K, V, I> {
    /// The walk: entries from some key on, in order.
    walk: Option<I>,
    /// The first entry of the walk above `last`, if any (taken from it already).
    ahead: Option<(K, V)>,
    /// The last key the walk read: every key between it and `ahead` is absent.
    last: Option<K>,
    mode: Mode,
}

#[derive(Clone, Copy)]
enum Mode {
    /// The last read was reached by walking: the next walks up to [`WALK_STEPS`] entries.
    Walking,
    /// A walk was just started: the next read takes one step, then looks up if it must.
    Probing,
    /// Lookups, this many since the last walk was started.
    Sparse(u32),
}

/// Entries [`SortedReads`] steps over before it gives up walking.
const WALK_STEPS: usize = 16;

/// Lookups [`SortedReads`] makes in a sparse stretch before it tries a walk again.
const PROBE_EVERY: u32 = 8;

impl<K: Ord + Copy, V, I: Iterator<Item = Result<(K, V), StorageError>>> SortedReads<K, V, I> {
    /// Nothing read yet: the first read starts a walk.
    pub(crate) fn new() -> Self {
        Self {
            walk: None,
            ahead: None,
            last: None,
            mode: Mode::Sparse(PROBE_EVERY),
        }
    }

    /// The value under `key`, if any. `seek(key)` starts a walk at the first entry at or
    /// after `key`; `lookup(key)` reads one key.
    pub(crate) fn get(
        &mut self,
        key: K,
        seek: impl FnOnce(K) -> Result<I, StorageError>,
        lookup: impl FnOnce(K) -> Result<Option<V>, StorageError>,
    ) -> Result<Option<V>, StorageError> {
        let most = match self.mode {
            Mode::Walking => WALK_STEPS,
            Mode::Probing => 1,
            Mode::Sparse(_) => 0,
        };
        if let (Some(last), Some(walk)) = (self.last, self.walk.as_mut())
            && last < key
            && most > 0
        {
            let mut steps = 0;
            while self.ahead.as_ref().is_some_and(|(k, _)| *k < key) && steps < most {
                self.ahead = walk.next().transpose()?;
                steps += 1;
            }
            if self.ahead.as_ref().is_none_or(|(k, _)| *k >= key) {
                self.mode = Mode::Walking;
                return self.take(key);
            }
        }
        match self.mode {
            Mode::Sparse(n) if n >= PROBE_EVERY => {
                let mut walk = seek(key)?;
                self.ahead = walk.next().transpose()?;
                self.walk = Some(walk);
                self.mode = Mode::Probing;
                return self.take(key);
            }
            Mode::Sparse(n) => self.mode = Mode::Sparse(n + 1),
            Mode::Walking | Mode::Probing => self.mode = Mode::Sparse(1),
        }
        self.walk = None;
        self.ahead = None;
        self.last = None;
        lookup(key)
    }

    /// The value under `key` when `ahead` is the walk's first entry at or after `key`.
    fn take(&mut self, key: K) -> Result<Option<V>, StorageError> {
        self.last = Some(key);
        match self.ahead.take() {
            Some((k, v)) if k == key => {
                self.ahead = match self.walk.as_mut() {
                    Some(walk) => walk.next().transpose()?,
                    None => None,
                };
                Ok(Some(v))
            }
            other => {
                self.ahead = other;
                Ok(None)
            }
        }
    }
}

/// The in-memory store, for tests and ephemeral replicas. Nothing survives the process.
///
/// Ops are kept encoded, back to back in one buffer, with an index from [`OpId`] to offset and
/// length and a per-replica index of timestamps (so [`Storage::ops_after`] reads only what it
/// returns): about the encoded size plus 60 bytes an op.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    replica_id: Option<ReplicaId>,
    bytes: Vec<u8>,
    index: BTreeMap<OpId, Span>,
    by_replica: BTreeMap<ReplicaId, BTreeSet<Timestamp>>,
    high_water: Option<Timestamp>,
    peers: BTreeMap<ReplicaId, VersionVector>,
    snapshot: Option<Snapshot>,
}

/// Where an op's encoding sits in [`MemoryStorage`]'s buffer.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u32,
    len: u32,
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

    fn bytes_at(&self, id: OpId, span: Span) -> Result<&[u8], StorageError> {
        let corrupt = || StorageError::Corrupt {
            id,
            source: DecodeError::Empty,
        };
        let start = usize::try_from(span.offset).map_err(|_| corrupt())?;
        let len = usize::try_from(span.len).map_err(|_| corrupt())?;
        self.bytes
            .get(start..start.saturating_add(len))
            .ok_or_else(corrupt)
    }

    /// Appends ops given as their ids and postcard bytes, all or nothing: every op is checked
    /// first, then the ops not yet held are copied in (a repeat within `ops` keeps the first).
    fn append_bodies<'b>(
        &mut self,
        ops: impl Iterator<Item = (OpId, &'b [u8])> + Clone,
    ) -> Result<(), StorageError> {
        let mut total = self.bytes.len();
        for (id, body) in ops.clone() {
            // Stored without the version byte, counted with it.
            let bytes = body.len() + 1;
            if bytes > crate::codec::MAX_OP_BYTES {
                return Err(StorageError::OpTooLarge { id, bytes });
            }
            total += body.len();
        }
        if u32::try_from(total).is_err() {
            return Err(StorageError::Backend(
                "the in-memory store is limited to 4 GiB of encoded ops".into(),
            ));
        }
        let mut high = None;
        for (id, body) in ops {
            high = high.max(Some(id.ts));
            if let std::collections::btree_map::Entry::Vacant(e) = self.index.entry(id) {
                // Both fit: the total above bounds every offset and length.
                let span = Span {
                    offset: self.bytes.len() as u32,
                    len: body.len() as u32,
                };
                self.bytes.extend_from_slice(body);
                e.insert(span);
                self.by_replica.entry(id.replica).or_default().insert(id.ts);
            }
        }
        if let Some(max) = high {
            self.set_high_water(max)?;
        }
        Ok(())
    }

    fn decode_at(&self, id: OpId, span: Span) -> Result<Op, StorageError> {
        let bytes = self.bytes_at(id, span)?;
        postcard::from_bytes::<Op>(bytes).map_err(|e| StorageError::Corrupt {
            id,
            source: e.into(),
        })
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
        let mut buf = Vec::new();
        let mut ends = Vec::with_capacity(ops.len());
        for op in ops {
            crate::codec::append_postcard(op, &mut buf);
            ends.push(buf.len());
        }
        let bodies = ends.iter().scan(0, |start, &end| {
            let body = &buf[*start..end];
            *start = end;
            Some(body)
        });
        self.append_bodies(ops.iter().map(|op| op.id).zip(bodies))
    }

    /// Copies the bytes as they are: no op is decoded or encoded.
    fn append_encoded(&mut self, ops: &EncodedOps) -> Result<(), StorageError> {
        self.append_bodies(ops.iter().map(|op| (op.id(), op.body())))
    }

    fn contains(&self, id: OpId) -> Result<bool, StorageError> {
        Ok(self.index.contains_key(&id))
    }

    fn get(&self, id: OpId) -> Result<Option<Op>, StorageError> {
        self.index
            .get(&id)
            .map(|&span| self.decode_at(id, span))
            .transpose()
    }

    /// The bytes this store encoded itself on [`Storage::append`], borrowed.
    fn get_encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, StorageError> {
        self.index
            .get(&id)
            .map(|&span| self.bytes_at(id, span).map(Cow::Borrowed))
            .transpose()
    }

    /// One walk along the index where the ids follow each other, lending the bytes.
    fn get_encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), StorageError> {
        let mut reads = SortedReads::new();
        let seek = |id: OpId| Ok(self.index.range(id..).map(|(&k, &v)| Ok((k, v))));
        let lookup = |id: OpId| Ok(self.index.get(&id).copied());
        for id in ids {
            let bytes = match reads.get(id, seek, lookup)? {
                Some(span) => Some(Cow::Borrowed(self.bytes_at(id, span)?)),
                None => None,
            };
            if !f(id, bytes) {
                break;
            }
        }
        Ok(())
    }

    fn scan(&self) -> OpIter<'_> {
        Box::new(
            self.index
                .iter()
                .map(|(&id, &span)| self.decode_at(id, span)),
        )
    }

    /// Reads only the ops it returns (plus a sort): O(k log k) for k ops above `vv`.
    fn ops_after(&self, vv: &VersionVector) -> OpIter<'_> {
        let mut ids: Vec<OpId> = Vec::new();
        for (&replica, stamps) in &self.by_replica {
            let above = match vv.get(replica) {
                Some(ts) => stamps.range((Bound::Excluded(ts), Bound::Unbounded)),
                None => stamps.range(..),
            };
            ids.extend(above.map(|&ts| OpId::new(ts, replica)));
        }
        ids.sort_unstable();
        Box::new(ids.into_iter().map(|id| {
            let span = self.index.get(&id).copied().ok_or(StorageError::Corrupt {
                id,
                source: DecodeError::Empty,
            })?;
            self.decode_at(id, span)
        }))
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
        let mut order: Vec<(u32, u32, OpId)> = self
            .index
            .iter()
            .map(|(&id, s)| (s.offset, s.len, id))
            .collect();
        order.sort_unstable();
        let skip = usize::try_from(position).unwrap_or(usize::MAX);
        Box::new(
            order
                .into_iter()
                .skip(skip)
                .map(|(offset, len, id)| self.decode_at(id, Span { offset, len })),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, Value};

    fn op(ms: u64, replica: u64) -> Op {
        Op {
            id: OpId::new(
                Timestamp::new(ms, 0).expect("in range"),
                ReplicaId::new(replica),
            ),
            schema_version: 1,
            collection: "c".into(),
            key: format!("k{ms}"),
            field: "f".into(),
            deps: vec![],
            payload: Payload::Write(Value::Int(ms as i64)),
        }
    }

    /// A store that implements only the required methods, to exercise the defaults.
    struct Plain(MemoryStorage);

    impl Storage for Plain {
        fn replica_id(&self) -> Result<Option<ReplicaId>, StorageError> {
            self.0.replica_id()
        }
        fn set_replica_id(&mut self, id: ReplicaId) -> Result<(), StorageError> {
            self.0.set_replica_id(id)
        }
        fn append(&mut self, ops: &[Op]) -> Result<(), StorageError> {
            self.0.append(ops)
        }
        fn contains(&self, id: OpId) -> Result<bool, StorageError> {
            self.0.contains(id)
        }
        fn get(&self, id: OpId) -> Result<Option<Op>, StorageError> {
            self.0.get(id)
        }
        fn scan(&self) -> OpIter<'_> {
            self.0.scan()
        }
        fn ops_after(&self, vv: &VersionVector) -> OpIter<'_> {
            self.0.ops_after(vv)
        }
        fn len(&self) -> Result<u64, StorageError> {
            self.0.len()
        }
    }

    /// Reads `keys` from `map` through [`SortedReads`]: the values, the walks started and the
    /// lookups made.
    fn sorted_reads(map: &BTreeMap<u64, u64>, keys: &[u64]) -> (Vec<Option<u64>>, usize, usize) {
        let (seeks, lookups) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        let seek = |k: u64| {
            seeks.set(seeks.get() + 1);
            Ok(map.range(k..).map(|(&k, &v)| Ok((k, v))))
        };
        let lookup = |k: u64| {
            lookups.set(lookups.get() + 1);
            Ok(map.get(&k).copied())
        };
        let mut reads = SortedReads::new();
        let got = keys
            .iter()
            .map(|&k| reads.get(k, seek, lookup).unwrap())
            .collect();
        (got, seeks.get(), lookups.get())
    }

    #[test]
    fn sorted_reads_walk_along_runs_and_look_up_sparse_keys() {
        let map: BTreeMap<u64, u64> = (0..20_000).map(|i| (2 * i, i)).collect();
        let want = |keys: &[u64]| -> Vec<Option<u64>> {
            keys.iter().map(|k| map.get(k).copied()).collect()
        };
        // A run of stored keys with the absent ones between them: one walk, no lookup.
        let run: Vec<u64> = (1_000..3_000).collect();
        let (got, seeks, lookups) = sorted_reads(&map, &run);
        assert_eq!(got, want(&run));
        assert_eq!((seeks, lookups), (1, 0));
        // Keys 200 entries apart: lookups, with a walk tried every few reads.
        let sparse: Vec<u64> = (0..100).map(|i| 400 * i + 2 * (i % 3)).collect();
        let (got, seeks, lookups) = sorted_reads(&map, &sparse);
        assert_eq!(got, want(&sparse));
        assert_eq!(seeks + lookups, 100);
        assert!(seeks <= 100 / PROBE_EVERY as usize + 1, "{seeks} walks");
        // Sparse, then a run: walking again within a few reads.
        let mixed: Vec<u64> = sparse.iter().copied().chain(39_700..40_100).collect();
        let (got, seeks_mixed, lookups_mixed) = sorted_reads(&map, &mixed);
        assert_eq!(got, want(&mixed));
        assert!(lookups_mixed <= lookups + PROBE_EVERY as usize + 1);
        assert!(seeks_mixed <= seeks + 2);
        // Any order reads right: back, repeated, past the end.
        let odd = [
            50,
            48,
            48,
            49,
            7,
            39_998,
            39_999,
            40_000,
            1 << 40,
            0,
            2,
            4,
            3,
        ];
        assert_eq!(sorted_reads(&map, &odd).0, want(&odd));
    }

    #[test]
    fn ops_after_and_encoded_reads_agree_with_a_scan() {
        let mut store = MemoryStorage::new();
        let ops: Vec<Op> = (0..300u64).map(|i| op(1000 + i * 7 % 300, i % 5)).collect();
        store.append(&ops[..200]).unwrap();
        store.append(&ops[150..]).unwrap(); // overlapping: the first copy stays
        assert_eq!(store.len().unwrap(), 300);
        let mut vv = VersionVector::new();
        vv.observe(OpId::new(
            Timestamp::new(1100, 0).unwrap(),
            ReplicaId::new(1),
        ));
        vv.observe(OpId::new(
            Timestamp::new(1250, 0).unwrap(),
            ReplicaId::new(3),
        ));
        vv.observe(OpId::new(
            Timestamp::new(9999, 0).unwrap(),
            ReplicaId::new(4),
        ));
        let want: Vec<Op> = store
            .scan()
            .map(Result::unwrap)
            .filter(|op| !vv.covers(op.id))
            .collect();
        let got: Vec<Op> = store.ops_after(&vv).map(Result::unwrap).collect();
        assert!(!want.is_empty() && want.len() < 300);
        assert_eq!(got, want);
        let plain = Plain(store.clone());
        for op in &ops {
            let encoded = crate::codec::encode_op(op);
            let borrowed = store.get_encoded(op.id).unwrap().unwrap();
            assert!(matches!(borrowed, Cow::Borrowed(_)));
            assert_eq!(&*borrowed, &encoded[1..]);
            assert_eq!(&*plain.get_encoded(op.id).unwrap().unwrap(), &encoded[1..]);
        }
        let absent = OpId::new(Timestamp::new(5, 0).unwrap(), ReplicaId::new(9));
        assert!(store.get_encoded(absent).unwrap().is_none());
        assert!(plain.get_encoded(absent).unwrap().is_none());
        // In a batch, from the store and through the default: both stop when told.
        let mut ids: Vec<OpId> = ops.iter().map(|op| op.id).collect();
        ids.sort();
        ids.insert(10, absent);
        for s in [&store as &dyn Storage, &plain] {
            let mut got = Vec::new();
            s.get_encoded_each(&mut ids.iter().copied(), &mut |id, bytes| {
                got.push((id, bytes.map(Cow::into_owned)));
                got.len() < 250
            })
            .unwrap();
            assert_eq!(got.len(), 250);
            for (&id, (got_id, bytes)) in ids.iter().zip(&got) {
                assert_eq!(id, *got_id);
                let want = store.get_encoded(id).unwrap().map(|b| b.into_owned());
                assert_eq!(bytes, &want);
            }
        }
    }

    #[test]
    fn encoded_appends_store_what_decoded_appends_store() {
        let ops: Vec<Op> = (1..=60).map(|ms| op(ms, 1 + ms % 3)).collect();
        let mut decoded = MemoryStorage::new();
        let mut encoded = MemoryStorage::new();
        let mut plain = Plain(MemoryStorage::new());
        // Batches that overlap and repeat an op within one: the first copy stays.
        let mut repeat = ops[30..40].to_vec();
        repeat.push(ops[31].clone());
        for batch in [&ops[..20], &ops[10..35], &repeat[..], &ops[35..]] {
            let bytes = EncodedOps::from_ops(batch).unwrap();
            decoded.append(batch).unwrap();
            encoded.append_encoded(&bytes).unwrap();
            plain.append_encoded(&bytes).unwrap();
        }
        assert_eq!(encoded.len().unwrap(), 60);
        assert_eq!(encoded.high_water().unwrap(), decoded.high_water().unwrap());
        // Each op stored once, not once per batch that held it.
        assert_eq!(
            encoded.encoded_bytes(),
            ops.iter()
                .map(|op| crate::codec::encoded_len(op) - 1)
                .sum::<usize>()
        );
        for s in [&encoded as &dyn Storage, &plain] {
            assert_eq!(s.len().unwrap(), decoded.len().unwrap());
            let got: Vec<Op> = s.scan().map(Result::unwrap).collect();
            assert_eq!(got, ops);
            for op in &ops {
                assert_eq!(
                    s.get_encoded(op.id).unwrap(),
                    decoded.get_encoded(op.id).unwrap()
                );
            }
        }
        let vv = encoded
            .by_replica
            .keys()
            .fold(VersionVector::new(), |mut vv, &r| {
                vv.observe(OpId::new(Timestamp::new(30, 0).unwrap(), r));
                vv
            });
        let after: Vec<Op> = encoded.ops_after(&vv).map(Result::unwrap).collect();
        assert_eq!(after, ops[30..].to_vec());
    }
}
