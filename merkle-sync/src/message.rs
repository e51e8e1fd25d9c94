//! The wire messages and their byte codec (`docs/wire-format.md`, "Sync messages").
//!
//! Decoding takes untrusted bytes: every count is checked against the bytes that remain
//! before anything is allocated for it, and nothing panics.

use crdt_core::codec::EncodedOps;
use crdt_core::{OpId, ReplicaId, VersionVector};
use hlc::Timestamp;

use crate::index::Digest;
use crate::sketch::Symbol;
use crate::trie::{Key, mask, same_prefix, with_bits};

/// The sync protocol's version, the second byte of a Hello.
pub const PROTOCOL_VERSION: u8 = 4;

/// Messages larger than this are refused before decoding: 8 MiB. The one exception is an ops
/// frame that holds a single op, which may be as large as [`MAX_OPS_FRAME_BYTES`], so that
/// every op the op codec accepts can be synced.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// The largest ops frame of a single op that is accepted: the tag byte and an op batch of the
/// largest size the op codec decodes ([`crdt_core::codec::MAX_ENCODED_BYTES`]), 64 MiB + 1.
pub const MAX_OPS_FRAME_BYTES: usize = crdt_core::codec::MAX_ENCODED_BYTES + 1;

// That frame is the tag, the format version, a one-byte count and the largest op a replica
// writes without its version byte: the session sends every op within `MAX_OP_BYTES`.
const _: () = assert!(crdt_core::codec::MAX_OP_BYTES + 2 == MAX_OPS_FRAME_BYTES);

/// Replicas a frontier may name.
pub const MAX_FRONTIER_REPLICAS: usize = 1 << 16;

const TAG_HELLO: u8 = 1;
const TAG_STATUS: u8 = 2;
const TAG_SKETCH: u8 = 3;
const TAG_MORE: u8 = 4;
const TAG_WANT: u8 = 5;
const TAG_OPS: u8 = 6;
const TAG_RANGES: u8 = 7;

/// Sub-ranges all the entries of one `Ranges` message may carry together.
pub(crate) const MAX_RANGE_CHILDREN: usize = 1 << 15;

/// The widest split of one range: `2^8` sub-ranges.
pub(crate) const MAX_RANGE_WIDTH: u8 = 8;

/// A sub-range holding at most this many ids lists them instead of a digest.
pub(crate) const RANGE_IDS: u64 = 2;

/// The encoding of one symbol: the count's low byte, the key and the check.
const SYMBOL_BYTES: usize = 1 + 16 + 4;

/// Bytes from a peer that are not a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// The message is larger than [`MAX_MESSAGE_BYTES`] (and is not an ops frame of one op
    /// of at most [`MAX_OPS_FRAME_BYTES`]).
    #[error(
        "message of {0} bytes is larger than the {MAX_MESSAGE_BYTES}-byte limit \
         ({MAX_OPS_FRAME_BYTES} for an ops frame of one op)"
    )]
    TooLarge(usize),
    /// The first byte names no message.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// The peer speaks another protocol version.
    #[error("unknown sync protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnknownVersion(u8),
    /// The message ends early.
    #[error("message truncated")]
    Truncated,
    /// A varint is longer than 64 bits.
    #[error("varint overflows 64 bits")]
    Overflow,
    /// A varint is longer than its value needs (a last byte of zero).
    #[error("over-long varint")]
    OverlongVarint,
    /// A count is larger than its cap or than the bytes left could hold.
    #[error("{what}: count {count} is too large")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The count given.
        count: u64,
    },
    /// A range entry whose bit positions or ids do not fit together.
    #[error("bad range entry: {0}")]
    BadRange(&'static str),
    /// A `Want` whose ids are out of order or name their replicas wrongly.
    #[error("bad want list: {0}")]
    BadWant(&'static str),
    /// A frontier names its replicas out of increasing order, or one twice.
    #[error("frontier replicas are not in increasing order")]
    UnsortedFrontier,
    /// Bytes are left after the message.
    #[error("{0} unexpected bytes after the message")]
    Trailing(usize),
    /// The ops of an ops frame do not decode.
    #[error("bad ops frame: {0}")]
    Ops(#[from] crdt_core::codec::DecodeError),
}

/// The first flight: what a side holds in scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) scope: [u8; 16],
    pub(crate) epoch: u64,
    pub(crate) root: Digest,
    pub(crate) count: u64,
    pub(crate) frontier: VersionVector,
}

/// One sub-range of a [`RangeEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Child {
    /// At most [`RANGE_IDS`] ids (none: the sender holds nothing there), in order.
    Ids(Vec<OpId>),
    /// More ids than that: their count and the digest of their canonical tree.
    Digest(u64, Digest),
}

/// The sender's view of one range of a collection, split `width` bits down: all its ids in
/// the range `prefix[..bits]` share `prefix[..split]`, and `children[i]` describes those under
/// `prefix[..split]` followed by `i` in `width` bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RangeEntry {
    /// The collection's position in the sorted scope.
    pub(crate) collection: u64,
    pub(crate) bits: u8,
    pub(crate) split: u8,
    pub(crate) width: u8,
    /// Zero from bit `split` on.
    pub(crate) prefix: Key,
    pub(crate) children: Vec<Child>,
}

impl RangeEntry {
    /// The prefix of child `i` (its length is `split + width`).
    pub(crate) fn child_prefix(&self, i: usize) -> Key {
        with_bits(&self.prefix, self.split, self.width, i as u8)
    }
}

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// First flight, and each restart of a round.
    Hello(Hello),
    /// The sender's root changed (it applied ops).
    Status { root: Digest, count: u64 },
    /// Symbols `start..start + symbols.len()` of the sender's sketch of the ops `cut` covers;
    /// `end` is where this batch of chunks stops.
    Sketch {
        id: u64,
        cut: VersionVector,
        start: u64,
        end: u64,
        symbols: Vec<Symbol>,
    },
    /// A request for symbols `start..start + len` of sketch `id`.
    More { id: u64, start: u64, len: u64 },
    /// A request for these ops (encoded sorted, each once; see [`Message::encode`]).
    Want { ids: Vec<OpId> },
    /// Ops, in id order.
    Ops(EncodedOps),
    /// Range digests of the descent, several levels down at once.
    Ranges(Vec<RangeEntry>),
}

impl Message {
    /// The encoding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Hello(h) => {
                out.extend([TAG_HELLO, PROTOCOL_VERSION]);
                out.extend_from_slice(&h.scope);
                varint(&mut out, h.epoch);
                out.extend_from_slice(h.root.as_bytes());
                varint(&mut out, h.count);
                frontier(&mut out, &h.frontier);
            }
            Self::Status { root, count } => {
                out.push(TAG_STATUS);
                out.extend_from_slice(root.as_bytes());
                varint(&mut out, *count);
            }
            Self::Sketch {
                id,
                cut,
                start,
                end,
                symbols,
            } => {
                out.push(TAG_SKETCH);
                varint(&mut out, *id);
                frontier(&mut out, cut);
                varint(&mut out, *start);
                varint(&mut out, *end);
                varint(&mut out, symbols.len() as u64);
                for s in symbols {
                    out.push(crate::sketch::residue(s.count) as u8);
                    out.extend_from_slice(&s.key);
                    out.extend_from_slice(&s.check.to_be_bytes());
                }
            }
            Self::More { id, start, len } => {
                out.push(TAG_MORE);
                varint(&mut out, *id);
                varint(&mut out, *start);
                varint(&mut out, *len);
            }
            Self::Want { ids } => {
                out.push(TAG_WANT);
                want_list(&mut out, ids);
            }
            Self::Ops(ops) => {
                out.push(TAG_OPS);
                out.extend_from_slice(ops.as_bytes());
            }
            Self::Ranges(entries) => {
                out.push(TAG_RANGES);
                varint(&mut out, entries.len() as u64);
                for e in entries {
                    varint(&mut out, e.collection);
                    out.extend([e.bits, e.split, e.width]);
                    out.extend_from_slice(&e.prefix[..usize::from(e.split).div_ceil(8)]);
                    for c in &e.children {
                        match c {
                            Child::Ids(ids) => {
                                varint(&mut out, ids.len() as u64);
                                for id in ids {
                                    out.extend_from_slice(&id.to_bytes());
                                }
                            }
                            Child::Digest(n, d) => {
                                varint(&mut out, *n);
                                out.extend_from_slice(d.as_bytes());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Decodes one message.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES && !is_single_op_frame(bytes) {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let (&tag, body) = bytes.split_first().ok_or(MessageError::Empty)?;
        let mut r = Reader(body);
        let msg = match tag {
            TAG_HELLO => {
                let version = r.byte()?;
                if version != PROTOCOL_VERSION {
                    return Err(MessageError::UnknownVersion(version));
                }
                let scope = r.array::<16>()?;
                let epoch = r.varint()?;
                let root = Digest(r.array::<32>()?);
                let count = r.varint()?;
                let frontier = r.frontier()?;
                Self::Hello(Hello {
                    scope,
                    epoch,
                    root,
                    count,
                    frontier,
                })
            }
            TAG_STATUS => Self::Status {
                root: Digest(r.array::<32>()?),
                count: r.varint()?,
            },
            TAG_SKETCH => {
                let id = r.varint()?;
                let cut = r.frontier()?;
                let start = r.varint()?;
                let end = r.varint()?;
                let n = r.count("sketch symbols", SYMBOL_BYTES, usize::MAX)?;
                let mut symbols = Vec::with_capacity(n);
                for _ in 0..n {
                    let count = i64::from(r.byte()? as i8);
                    let key = r.array::<16>()?;
                    let check = u32::from_be_bytes(r.array::<4>()?);
                    symbols.push(Symbol { count, key, check });
                }
                Self::Sketch {
                    id,
                    cut,
                    start,
                    end,
                    symbols,
                }
            }
            TAG_MORE => Self::More {
                id: r.varint()?,
                start: r.varint()?,
                len: r.varint()?,
            },
            TAG_WANT => Self::Want {
                ids: r.want_list()?,
            },
            TAG_OPS => {
                let ops = EncodedOps::decode(r.0)?;
                r.0 = &[];
                Self::Ops(ops)
            }
            TAG_RANGES => Self::Ranges(r.ranges()?),
            other => return Err(MessageError::UnknownTag(other)),
        };
        if !r.0.is_empty() {
            return Err(MessageError::Trailing(r.0.len()));
        }
        Ok(msg)
    }
}

/// Whether `bytes` is an ops frame, of at most [`MAX_OPS_FRAME_BYTES`], that counts one op
/// (the tag, the op format version, then the count).
fn is_single_op_frame(bytes: &[u8]) -> bool {
    bytes.len() <= MAX_OPS_FRAME_BYTES
        && bytes.first() == Some(&TAG_OPS)
        && bytes
            .get(2..)
            .is_some_and(|rest| Reader(rest).varint() == Ok(1))
}

/// Builds an ops frame from ops already encoded one by one ([`crdt_core::codec::encode_op`]
/// without its version byte), so that a frame can be filled up to a size: one allocation of
/// the frame's size, one copy of each op.
pub(crate) fn ops_frame<B: AsRef<[u8]>>(ops: &[B]) -> Vec<u8> {
    let len: usize = ops.iter().map(|o| o.as_ref().len()).sum();
    let mut out = Vec::with_capacity(len + 12);
    out.extend([TAG_OPS, crdt_core::codec::FORMAT_VERSION]);
    varint(&mut out, ops.len() as u64);
    for op in ops {
        out.extend_from_slice(op.as_ref());
    }
    out
}

/// `vv` cut down to the [`MAX_FRONTIER_REPLICAS`] replicas with the latest timestamps (ties
/// to the smaller replica id), so that it can be sent. A frontier only says which ops the
/// peer should push unasked, so a replica left out costs bytes, never correctness: the peer
/// pushes all of that replica's ops, held ones included.
pub(crate) fn capped(vv: VersionVector) -> VersionVector {
    if vv.len() <= MAX_FRONTIER_REPLICAS {
        return vv;
    }
    let mut entries: Vec<(ReplicaId, Timestamp)> = vv.iter().collect();
    entries.select_nth_unstable_by(MAX_FRONTIER_REPLICAS - 1, |a, b| {
        b.1.cmp(&a.1).then(a.0.cmp(&b.0))
    });
    entries.truncate(MAX_FRONTIER_REPLICAS);
    let mut out = VersionVector::new();
    for (replica, ts) in entries {
        out.observe(OpId::new(ts, replica));
    }
    out
}

fn frontier(out: &mut Vec<u8>, vv: &VersionVector) {
    debug_assert!(
        vv.len() <= MAX_FRONTIER_REPLICAS,
        "a session caps the frontiers it sends (capped)"
    );
    varint(out, vv.len() as u64);
    for (replica, ts) in vv.iter() {
        out.extend_from_slice(&replica.as_u64().to_be_bytes());
        out.extend_from_slice(&ts.to_bytes());
    }
}

/// Appends `v` as a LEB128 varint.
pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of one id in a want list at most: a 48-bit millisecond delta (7 varint bytes), the
/// logical counter (3) and a replica's position (3: fewer than 2^21 replicas, since each is
/// named by an id of a message), plus its replica's 8 bytes in the table if it is new.
const MAX_WANT_ID_BYTES: usize = 7 + 3 + 3 + 8;

/// The most ids a want list holds: what fits in [`MAX_MESSAGE_BYTES`] at
/// [`MAX_WANT_ID_BYTES`] each beside the header. Senders stay within it; more is refused.
pub(crate) const MAX_WANT_IDS: usize = (MAX_MESSAGE_BYTES - 32) / MAX_WANT_ID_BYTES;

/// A want list: the id count, the replicas the ids name (a count, then each `ReplicaId`, in
/// increasing order), then the ids in increasing order, each as the millisecond delta from
/// the id before (the first from 0), the logical counter and the replica's position in the
/// table, all varints. Sorted, close ids of a few replicas take 3-5
/// bytes each rather than 16. Ids that are not sorted and distinct are sorted and deduplicated first.
fn want_list(out: &mut Vec<u8>, ids: &[OpId]) {
    let sorted;
    let ids = if ids.windows(2).all(|w| w[0] < w[1]) {
        ids
    } else {
        let mut v = ids.to_vec();
        v.sort_unstable();
        v.dedup();
        sorted = v;
        &sorted
    };
    let mut replicas: Vec<ReplicaId> = ids.iter().map(|id| id.replica).collect();
    replicas.sort_unstable();
    replicas.dedup();
    varint(out, ids.len() as u64);
    varint(out, replicas.len() as u64);
    for r in &replicas {
        out.extend_from_slice(&r.as_u64().to_be_bytes());
    }
    let mut ms = 0;
    for id in ids {
        varint(out, id.ts.millis() - ms);
        varint(out, u64::from(id.ts.logical()));
        let at = replicas.binary_search(&id.replica).unwrap_or_default();
        varint(out, at as u64);
        ms = id.ts.millis();
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, MessageError> {
        let (&b, rest) = self.0.split_first().ok_or(MessageError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(MessageError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    /// A varint in its shortest form: one that ends in a zero byte after the first (`80 00`
    /// for 0) is refused, so that every message has one encoding.
    fn varint(&mut self) -> Result<u64, MessageError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err(MessageError::Overflow);
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(MessageError::OverlongVarint);
                }
                return Ok(v);
            }
        }
        Err(MessageError::Overflow)
    }

    /// A count of items of at least `min_bytes` each, checked against the bytes left and `cap`.
    fn count(
        &mut self,
        what: &'static str,
        min_bytes: usize,
        cap: usize,
    ) -> Result<usize, MessageError> {
        let count = self.varint()?;
        match usize::try_from(count) {
            Ok(n) if n <= cap && n.saturating_mul(min_bytes) <= self.0.len() => Ok(n),
            _ => Err(MessageError::TooMany { what, count }),
        }
    }

    /// A want list ([`want_list`]): every count checked against the bytes left, ids strictly
    /// increasing, every position inside the table and every replica of the table named.
    fn want_list(&mut self) -> Result<Vec<OpId>, MessageError> {
        // An id is at least three bytes (delta, counter, position), and no sender puts more
        // in a message than `MAX_WANT_IDS`.
        let n = self.count("wanted ids", 3, MAX_WANT_IDS)?;
        let r = self.count("want replicas", 8, n)?;
        if n > 0 && r == 0 {
            return Err(MessageError::BadWant("ids without a replica table"));
        }
        let mut replicas = Vec::with_capacity(r);
        for _ in 0..r {
            let replica = ReplicaId::new(u64::from_be_bytes(self.array::<8>()?));
            if replicas.last().is_some_and(|&last| last >= replica) {
                return Err(MessageError::BadWant("replicas out of order"));
            }
            replicas.push(replica);
        }
        // Checked again past the table, before the ids are allocated for.
        if n.saturating_mul(3) > self.0.len() {
            return Err(MessageError::TooMany {
                what: "wanted ids",
                count: n as u64,
            });
        }
        let mut named = vec![false; r];
        let mut ids: Vec<OpId> = Vec::with_capacity(n);
        let mut ms = 0u64;
        for _ in 0..n {
            ms = ms
                .checked_add(self.varint()?)
                .ok_or(MessageError::BadWant("milliseconds overflow"))?;
            let logical = u16::try_from(self.varint()?)
                .map_err(|_| MessageError::BadWant("logical counter over 16 bits"))?;
            let ts = Timestamp::new(ms, logical)
                .ok_or(MessageError::BadWant("milliseconds over 48 bits"))?;
            let at = usize::try_from(self.varint()?)
                .ok()
                .filter(|&at| at < r)
                .ok_or(MessageError::BadWant("a replica position past the table"))?;
            named[at] = true;
            let id = OpId::new(ts, replicas[at]);
            if ids.last().is_some_and(|&last| last >= id) {
                return Err(MessageError::BadWant("ids out of order"));
            }
            ids.push(id);
        }
        if named.contains(&false) {
            return Err(MessageError::BadWant("a replica no id names"));
        }
        Ok(ids)
    }

    fn ranges(&mut self) -> Result<Vec<RangeEntry>, MessageError> {
        // An entry is at least a collection byte, three position bytes and one child.
        let n = self.count("range entries", 5, MAX_RANGE_CHILDREN)?;
        let mut entries = Vec::with_capacity(n);
        let mut children_left = MAX_RANGE_CHILDREN;
        for _ in 0..n {
            let collection = self.varint()?;
            let [bits, split, width] = self.array::<3>()?;
            if width > MAX_RANGE_WIDTH || bits > split || u16::from(split) + u16::from(width) > 128
            {
                return Err(MessageError::BadRange("bit positions"));
            }
            let mut prefix = [0u8; 16];
            let len = usize::from(split).div_ceil(8);
            let (head, rest) = self
                .0
                .split_at_checked(len)
                .ok_or(MessageError::Truncated)?;
            prefix[..len].copy_from_slice(head);
            self.0 = rest;
            if mask(&prefix, split) != prefix {
                return Err(MessageError::BadRange("prefix bits past the split"));
            }
            let fan = 1usize << width;
            // Each child is at least one byte: check before allocating for them.
            if fan > children_left || fan > self.0.len() {
                return Err(MessageError::TooMany {
                    what: "range children",
                    count: fan as u64,
                });
            }
            children_left -= fan;
            let mut entry = RangeEntry {
                collection,
                bits,
                split,
                width,
                prefix,
                children: Vec::with_capacity(fan),
            };
            for i in 0..fan {
                let count = self.varint()?;
                let child = if count <= RANGE_IDS {
                    let at = entry.child_prefix(i);
                    let mut ids: Vec<OpId> = Vec::with_capacity(count as usize);
                    for _ in 0..count {
                        let key = self.array::<16>()?;
                        if !same_prefix(&key, &at, split + width)
                            || ids.last().is_some_and(|l| l.to_bytes() >= key)
                        {
                            return Err(MessageError::BadRange("ids outside their range"));
                        }
                        ids.push(OpId::from_bytes(key));
                    }
                    Child::Ids(ids)
                } else {
                    Child::Digest(count, Digest(self.array::<32>()?))
                };
                entry.children.push(child);
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn frontier(&mut self) -> Result<VersionVector, MessageError> {
        let n = self.count("frontier replicas", 16, MAX_FRONTIER_REPLICAS)?;
        let mut vv = VersionVector::new();
        let mut last = None;
        for _ in 0..n {
            let replica = u64::from_be_bytes(self.array::<8>()?);
            if last.is_some_and(|l| l >= replica) {
                return Err(MessageError::UnsortedFrontier);
            }
            last = Some(replica);
            let ts = Timestamp::from_bytes(self.array::<8>()?);
            vv.observe(OpId::new(ts, ReplicaId::new(replica)));
        }
        Ok(vv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0, 1, 127, 128, 300, u64::MAX / 3, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(Reader(&out).varint(), Ok(v));
        }
        assert_eq!(Reader(&[0xff; 10]).varint(), Err(MessageError::Overflow));
        assert_eq!(Reader(&[0xff; 11]).varint(), Err(MessageError::Overflow));
        assert_eq!(Reader(&[0x80]).varint(), Err(MessageError::Truncated));
        // Over-long forms of 0 and 1 are refused: each value has one encoding.
        for bytes in [&[0x80, 0x00][..], &[0x81, 0x80, 0x00], &[0xff, 0x00]] {
            assert_eq!(Reader(bytes).varint(), Err(MessageError::OverlongVarint));
        }
        assert_eq!(Reader(&[0x00]).varint(), Ok(0));
    }

    fn id(ms: u64, logical: u16, replica: u64) -> OpId {
        OpId::new(
            Timestamp::new(ms, logical).unwrap(),
            ReplicaId::new(replica),
        )
    }

    #[test]
    fn want_lists_round_trip_sorted_and_small() {
        // Seeded lists of every shape: empty, one id, runs within a millisecond, large
        // gaps, the largest timestamps, many replicas; given in any order, with repeats.
        let mut z = 0x5eed_u64;
        let mut next = move || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        for case in 0..300u64 {
            let n = [0, 1, 2, 50, 700][(case % 5) as usize];
            let replicas = 1 + next() % [1, 8, 1000][(case % 3) as usize];
            let spread = [1, 1_000, 1 << 47][(case / 3 % 3) as usize];
            let mut ids: Vec<OpId> = (0..n)
                .map(|_| {
                    let ms = (1u64 << 48) - 1 - next() % spread;
                    id(ms, (next() % 3) as u16 * 30_000, 1 + next() % replicas)
                })
                .collect();
            if n > 2 {
                ids.push(ids[1]);
            }
            let bytes = Message::Want { ids: ids.clone() }.encode();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(
                Message::decode(&bytes),
                Ok(Message::Want { ids: ids.clone() }),
                "case {case}"
            );
            assert_eq!(
                Message::Want { ids }.encode(),
                bytes,
                "case {case}: canonical"
            );
        }
        // 1,000 ids a few milliseconds apart from 8 replicas: about 4 bytes an id, not 16.
        let ids: Vec<OpId> = (0..1000u64)
            .map(|i| id(1_795_316_400_000 + 3 * i, 0, 1 + i % 8))
            .collect();
        let bytes = Message::Want { ids }.encode();
        assert!(
            bytes.len() <= 1 + 2 + 1 + 8 * 8 + 1000 * 3 + 6,
            "{}",
            bytes.len()
        );
        assert!(bytes.len() <= MAX_WANT_ID_BYTES * 1000);
    }

    #[test]
    fn hostile_want_lists_are_refused() {
        let good = Message::Want {
            ids: vec![id(5, 0, 9), id(5, 1, 2), id(7, 0, 2)],
        }
        .encode();
        // 05, 3 ids, 2 replicas (2 and 9), then (delta, logical, position) per id.
        let mut want = vec![TAG_WANT, 3, 2];
        want.extend(2u64.to_be_bytes());
        want.extend(9u64.to_be_bytes());
        want.extend([5, 0, 1, 0, 1, 0, 2, 0, 0]);
        assert_eq!(good, want);
        let bad = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = want.clone();
            edit(&mut b);
            Message::decode(&b)
        };
        let bad_want = |why| Err(MessageError::BadWant(why));
        // Replicas out of order, or twice.
        assert_eq!(bad(&|b| b[10] = 10), bad_want("replicas out of order"));
        assert_eq!(bad(&|b| b[18] = 2), bad_want("replicas out of order"));
        // A position past the table; a replica no id names.
        assert_eq!(
            bad(&|b| b[21] = 2),
            bad_want("a replica position past the table")
        );
        assert_eq!(bad(&|b| b[21] = 0), bad_want("a replica no id names"));
        // The same id twice; an id below the one before.
        assert_eq!(
            bad(&|b| {
                b[23] = 0;
                b[24] = 1;
            }),
            bad_want("ids out of order")
        );
        assert_eq!(
            bad(&|b| {
                b[23] = 0;
                b[24] = 0;
            }),
            bad_want("ids out of order")
        );
        // A counter over 16 bits; milliseconds past 48 bits or past 64.
        let mut b = want.clone();
        b.splice(20..21, [0x80, 0x80, 0x04]);
        assert_eq!(
            Message::decode(&b),
            bad_want("logical counter over 16 bits")
        );
        let mut b = want.clone();
        b.splice(19..20, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert_eq!(Message::decode(&b), bad_want("milliseconds over 48 bits"));
        let mut b = want.clone();
        b.splice(
            22..23,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        assert_eq!(Message::decode(&b), bad_want("milliseconds overflow"));
        // A table with no ids, and ids with no table.
        assert_eq!(
            Message::decode(&[TAG_WANT, 0, 0]),
            Ok(Message::Want { ids: vec![] })
        );
        assert!(matches!(
            Message::decode(&[TAG_WANT, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(MessageError::TooMany { .. })
        ));
        assert_eq!(
            Message::decode(&[TAG_WANT, 1, 0, 0, 0, 0]),
            bad_want("ids without a replica table")
        );
        // Counts the bytes cannot back; a cut anywhere.
        assert!(matches!(
            bad(&|b| b[1] = 30),
            Err(MessageError::TooMany { .. })
        ));
        assert!(matches!(
            bad(&|b| b[2] = 3),
            Err(MessageError::TooMany { count: 3, .. })
        ));
        // One id more than the bytes past the table can hold; more ids than a sender puts in
        // a message; an over-long delta.
        assert!(matches!(
            bad(&|b| b[1] = 4),
            Err(MessageError::TooMany { count: 4, .. })
        ));
        let mut b = vec![TAG_WANT];
        varint(&mut b, MAX_WANT_IDS as u64 + 1);
        b.extend(vec![0; 3 * MAX_WANT_IDS + 16]);
        assert!(matches!(
            Message::decode(&b),
            Err(MessageError::TooMany { .. })
        ));
        let mut b = want.clone();
        b.splice(19..20, [0x85, 0x00]);
        assert_eq!(Message::decode(&b), Err(MessageError::OverlongVarint));
        for cut in 1..want.len() {
            assert!(Message::decode(&want[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_hello_of_another_protocol_version_is_refused() {
        let hello = Message::Hello(Hello {
            scope: [7; 16],
            epoch: 3,
            root: Digest([9; 32]),
            count: 12,
            frontier: VersionVector::new(),
        });
        let bytes = hello.encode();
        assert_eq!(bytes[..2], [TAG_HELLO, PROTOCOL_VERSION]);
        assert_eq!(Message::decode(&bytes), Ok(hello));
        for version in [0, 1, 2, PROTOCOL_VERSION + 1, u8::MAX] {
            let mut other = bytes.clone();
            other[1] = version;
            assert_eq!(
                Message::decode(&other),
                Err(MessageError::UnknownVersion(version))
            );
        }
    }
}
