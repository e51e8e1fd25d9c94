//! Identities: replicas, operations, and what a replica has seen.

use core::fmt;
use std::collections::BTreeMap;

use hlc::Timestamp;
use serde::{Deserialize, Serialize};

/// The random 64-bit id of one replica: one store on one device.
///
/// Made from a random number generator passed in ([`ReplicaId::random`]); two replicas that
/// share an id would break the uniqueness of [`OpId`], so never copy a store's id to another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(u64);

impl ReplicaId {
    /// The replica id with this numeric value.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// A fresh id from `rng`.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        Self(rng.next_u64())
    }

    /// The numeric value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// 8 big-endian bytes in binary formats (a random id gains nothing from a varint); 16 hex
/// digits in text formats.
impl Serialize for ReplicaId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.to_be_bytes().serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ReplicaId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            u64::from_str_radix(&text, 16)
                .map(Self)
                .map_err(serde::de::Error::custom)
        } else {
            <[u8; 8]>::deserialize(deserializer).map(|b| Self(u64::from_be_bytes(b)))
        }
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaId({self})")
    }
}

/// The identity of an operation: its timestamp, then the replica that made it.
///
/// Unique (a replica never issues a timestamp twice) and totally ordered; the order extends
/// happened-before, because a replica's clock moves past every timestamp it observes. Last-
/// writer-wins, the op log and sync all order by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId {
    /// When, by the issuing replica's hybrid logical clock.
    pub ts: Timestamp,
    /// Who.
    pub replica: ReplicaId,
}

impl OpId {
    /// The op id of `replica`'s op at `ts`.
    pub const fn new(ts: Timestamp, replica: ReplicaId) -> Self {
        Self { ts, replica }
    }

    /// 16 bytes whose byte order is the op id order: timestamp then replica, big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.ts.to_bytes());
        out[8..].copy_from_slice(&self.replica.0.to_be_bytes());
        out
    }

    /// The op id from the bytes of [`OpId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (ts, replica) = bytes.split_at(8);
        let mut t = [0; 8];
        t.copy_from_slice(ts);
        let mut r = [0; 8];
        r.copy_from_slice(replica);
        Self::new(Timestamp::from_bytes(t), ReplicaId(u64::from_be_bytes(r)))
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.ts, self.replica)
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({self})")
    }
}

/// For each replica, the highest timestamp seen from it: the frontier of a log.
///
/// Always sorted by replica. The ops of a log "above" another log's version vector are exactly
/// the ops that log is certainly missing; ops below it may still be missing where the other
/// log has gaps, which the Merkle comparison of sync finds.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<ReplicaId, Timestamp>);

impl VersionVector {
    /// The empty version vector: nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest timestamp seen from `replica`, if any.
    pub fn get(&self, replica: ReplicaId) -> Option<Timestamp> {
        self.0.get(&replica).copied()
    }

    /// Records `id` as seen. Returns whether the frontier moved.
    pub fn observe(&mut self, id: OpId) -> bool {
        let slot = self.0.entry(id.replica).or_insert(Timestamp::ZERO);
        if id.ts > *slot {
            *slot = id.ts;
            true
        } else {
            false
        }
    }

    /// Whether `id` is at or below the frontier of its replica.
    pub fn covers(&self, id: OpId) -> bool {
        self.get(id.replica).is_some_and(|ts| id.ts <= ts)
    }

    /// The pointwise maximum of both.
    pub fn join(&mut self, other: &Self) {
        for (&replica, &ts) in &other.0 {
            self.observe(OpId::new(ts, replica));
        }
    }

    /// `(replica, highest timestamp)` pairs in replica order.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, Timestamp)> + '_ {
        self.0.iter().map(|(&r, &t)| (r, t))
    }

    /// How many replicas it names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it names no replica.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The highest timestamp of any replica: where a restarted clock must resume above.
    pub fn max_timestamp(&self) -> Option<Timestamp> {
        self.0.values().copied().max()
    }
}

impl fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(ReplicaId, Timestamp)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (ReplicaId, Timestamp)>>(iter: I) -> Self {
        let mut vv = Self::new();
        for (replica, ts) in iter {
            vv.observe(OpId::new(ts, replica));
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, replica: u64) -> OpId {
        OpId::new(Timestamp::new(ms, 0).unwrap(), ReplicaId::new(replica))
    }

    #[test]
    fn op_id_orders_by_time_then_replica_and_bytes_agree() {
        let ids = [id(1, 9), id(2, 1), id(2, 3), id(3, 0)];
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_bytes() < w[1].to_bytes());
            assert_eq!(OpId::from_bytes(w[0].to_bytes()), w[0]);
        }
    }

    #[test]
    fn version_vector_covers_what_it_observed() {
        let mut vv = VersionVector::new();
        assert!(vv.observe(id(5, 1)));
        assert!(!vv.observe(id(3, 1)));
        assert!(vv.covers(id(5, 1)) && vv.covers(id(4, 1)));
        assert!(!vv.covers(id(6, 1)) && !vv.covers(id(1, 2)));
        let other: VersionVector = [(ReplicaId::new(2), Timestamp::new(7, 0).unwrap())]
            .into_iter()
            .collect();
        vv.join(&other);
        assert_eq!(vv.len(), 2);
        assert_eq!(vv.max_timestamp(), Timestamp::new(7, 0));
    }
}
