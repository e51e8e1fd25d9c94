//! Op batches kept as their bytes: checked to be the one encoding of their ops without
//! decoding them, so that a store that keeps ops encoded, or an index that hashes them, can
//! take what a peer sent as it is.
//!
//! The check walks the postcard layout of [`Op`] field by field (`docs/wire-format.md`
//! writes it down) and accepts exactly the bytes that [`encode_ops`](super::encode_ops)
//! writes for some batch: what postcard decodes, less what it would encode differently. The
//! only slack postcard leaves is in varints, which it decodes in over-long forms too (`0x80
//! 0x00` for 0); the walk takes each varint in its shortest form only. An op's digest is
//! blake3 of its bytes, so two encodings of one op would give honest peers different roots.

use core::fmt;

use super::{DecodeError, check_header};
use crate::{Op, OpId};

/// A batch of ops as bytes ([`encode_ops`](super::encode_ops)'s), each op's extent, id and
/// collection found and its encoding checked to be canonical, none of them decoded.
///
/// What a sync session hands over from the wire: a store that keeps ops encoded (both of this
/// crate's do) appends the bytes as they are
/// ([`Storage::append_encoded`](crate::Storage::append_encoded)) and an index hashes them, so
/// a relay or a backup peer that never materializes state never decodes an op.
/// [`EncodedOps::to_ops`] decodes them for a replica that applies them.
#[derive(Clone)]
pub struct EncodedOps {
    /// The batch: version byte, count, then each op's postcard.
    bytes: Vec<u8>,
    ops: Vec<Entry>,
    /// The collections the ops name, each checked once, so that [`EncodedOp::collection`]
    /// costs no UTF-8 check; see [`Names`].
    names: Names,
}

/// Where one op of an [`EncodedOps`] lies in its bytes.
#[derive(Clone, Copy)]
struct Entry {
    id: OpId,
    /// The op's postcard, `start..end` of the batch.
    start: u32,
    end: u32,
    /// Its collection: a span of [`EncodedOps::names`].
    name: u32,
}

/// One op of an [`EncodedOps`].
#[derive(Clone, Copy, Debug)]
pub struct EncodedOp<'a> {
    id: OpId,
    collection: &'a str,
    /// The op's bytes with the one byte of the batch before them.
    framed: &'a [u8],
}

impl<'a> EncodedOp<'a> {
    /// The op's id.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// The op's collection.
    pub fn collection(&self) -> &'a str {
        self.collection
    }

    /// The op's postcard bytes: [`encode_op`](super::encode_op) without the version byte, as
    /// [`Storage::get_encoded`](crate::Storage::get_encoded) gives a stored op.
    pub fn body(&self) -> &'a [u8] {
        self.framed.get(1..).unwrap_or_default()
    }

    /// [`EncodedOp::body`] with the one byte of the batch before it (there always is one:
    /// the batch's version byte and count come first), as long as
    /// [`encode_op`](super::encode_op)'s encoding of the op. A caller that hashes that
    /// encoding can hash these bytes with their first read as the version byte, rather than
    /// copy the op out.
    pub fn with_byte_before(&self) -> &'a [u8] {
        self.framed
    }

    /// The op itself.
    pub fn decode(&self) -> Result<Op, DecodeError> {
        let (op, rest) = postcard::take_from_bytes::<Op>(self.body())?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        Ok(op)
    }
}

impl EncodedOps {
    /// Checks a batch encoded by [`encode_ops`](super::encode_ops) and keeps a copy of its
    /// bytes. Refuses, besides what [`decode_ops`](super::decode_ops) refuses, any varint
    /// (the count included) that is not in its shortest form ([`DecodeError::NotCanonical`]),
    /// so that every batch this accepts is the one encoding of its ops.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (ops, names) = walk_batch(bytes)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            ops,
            names,
        })
    }

    /// The batch of these ops, encoded ([`encode_ops`](super::encode_ops)). Refuses what
    /// [`EncodedOps::decode`] would refuse of those bytes: a batch larger than
    /// [`MAX_ENCODED_BYTES`](super::MAX_ENCODED_BYTES).
    pub fn from_ops(ops: &[Op]) -> Result<Self, DecodeError> {
        let bytes = super::encode_ops(ops);
        let (ops, names) = walk_batch(&bytes)?;
        Ok(Self { bytes, ops, names })
    }

    /// The batch's bytes, as [`encode_ops`](super::encode_ops) writes them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Ops in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops, in the batch's order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EncodedOp<'_>> + Clone + '_ {
        self.ops.iter().map(|e| self.op(e))
    }

    /// The ops' ids, in the batch's order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = OpId> + Clone + '_ {
        self.ops.iter().map(|e| e.id)
    }

    /// The collections the ops name, each at least once, in the order the batch first names
    /// them. A name may come again (a batch that names many collections can keep a later
    /// run's name anew), but never one that no op names: checking these is checking every
    /// op's, in one step for a batch of one collection.
    pub fn collections(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.names.spans.len()).map(|i| self.names.get(i))
    }

    /// The ops, decoded.
    pub fn to_ops(&self) -> Result<Vec<Op>, DecodeError> {
        self.iter().map(|op| op.decode()).collect()
    }

    fn op(&self, e: &Entry) -> EncodedOp<'_> {
        EncodedOp {
            id: e.id,
            collection: self.names.get(e.name as usize),
            // An op starts after the version byte and the count, at 2 or later.
            framed: &self.bytes[e.start as usize - 1..e.end as usize],
        }
    }
}

/// The empty batch, as [`encode_ops`](super::encode_ops) writes it.
impl Default for EncodedOps {
    fn default() -> Self {
        Self {
            bytes: vec![super::FORMAT_VERSION, 0],
            ops: Vec::new(),
            names: Names::default(),
        }
    }
}

impl PartialEq for EncodedOps {
    fn eq(&self, other: &Self) -> bool {
        // The entries are a function of the bytes.
        self.bytes == other.bytes
    }
}

impl Eq for EncodedOps {}

impl fmt::Debug for EncodedOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedOps")
            .field("len", &self.len())
            .field("bytes", &self.bytes.len())
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Each op of a batch, checked; see [`EncodedOps::decode`].
fn walk_batch(bytes: &[u8]) -> Result<(Vec<Entry>, Names), DecodeError> {
    let body = check_header(bytes)?;
    // The version byte is all the header check took.
    let mut walk = Walk { bytes, pos: 1 };
    let count = walk.len()?;
    // Each op takes at least MIN_OP_BYTES, so the count cannot ask for more entries than the
    // bytes hold.
    let mut ops = Vec::with_capacity(count.min(body.len() / MIN_OP_BYTES));
    let mut names = Namer::default();
    for _ in 0..count {
        ops.push(walk.op(&mut names)?);
    }
    if walk.pos != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - walk.pos));
    }
    Ok((ops, names.names))
}

/// The collection names of a batch, as its walk meets them, each checked to be UTF-8 once
/// and kept once where it can: a name equal to the one before (ops of one collection come
/// together) or to the last name kept in its slot of a small table (picked from its length
/// and end bytes) is not kept again, so a batch over a few collections, interleaved as a peer
/// sends them, keeps each once. Otherwise the name is kept anew. Either way an op costs two
/// comparisons of its name, at most, beside the walk, and the names kept are copies of bytes
/// the batch holds, in one buffer: never more bytes than the batch, and a span a name.
/// [`Namer`] keeps them as the walk goes.
#[derive(Clone, Default)]
struct Names {
    text: String,
    /// Each name, `start..end` of `text`.
    spans: Vec<(u32, u32)>,
}

impl Names {
    /// Name `i`; "" past the end (never asked for).
    fn get(&self, i: usize) -> &str {
        self.spans
            .get(i)
            .and_then(|&(start, end)| self.text.get(start as usize..end as usize))
            .unwrap_or_default()
    }

    /// Whether name `i` is `name` (bytes, so without `str`'s checks of char boundaries).
    #[inline]
    fn is(&self, i: u32, name: &[u8]) -> bool {
        self.spans
            .get(i as usize)
            .and_then(|&(start, end)| self.text.as_bytes().get(start as usize..end as usize))
            .is_some_and(|kept| same_bytes(kept, name))
    }
}

/// `a == b`, compared inline for names of up to 16 bytes (most are): `==` on slices calls
/// the C library's `memcmp`, which costs more than the few loads it takes here, and the walk
/// compares a name an op. Two loads of each cover the bytes from both ends (they overlap
/// when the name is shorter than twice their width).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn at<const N: usize>(s: &[u8], i: usize) -> Option<[u8; N]> {
        s.get(i..i.checked_add(N)?)?.try_into().ok()
    }
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        let last = a.len().saturating_sub(N);
        at::<N>(a, 0).is_some_and(|x| at::<N>(b, 0) == Some(x))
            && at::<N>(a, last).is_some_and(|x| at::<N>(b, last) == Some(x))
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..=3 => ends::<1>(a, b) && a.get(n / 2) == b.get(n / 2),
        4..=7 => ends::<4>(a, b),
        8..=16 => ends::<8>(a, b),
        _ => a == b,
    }
}

/// The [`Names`] of a batch as its walk finds them, with what finds a name kept before.
#[derive(Default)]
struct Namer<'a> {
    names: Names,
    /// Per slot, 1 + the last name kept there, or 0.
    slots: [u32; Namer::SLOTS],
    /// The number of the name the op before gave, and its bytes in the batch.
    last: Option<(u32, &'a [u8])>,
}

impl<'a> Namer<'a> {
    /// Slots of the table.
    const SLOTS: usize = 32;

    /// The slot of a name: from its length and its first and last bytes, which tell apart
    /// the names apps give (`items`, `c1`, `c2`, ...). Any function would be correct, as a
    /// slot's name is compared in full; a poor one only keeps more copies.
    fn slot(name: &[u8]) -> usize {
        let first = name.first().copied().unwrap_or(0);
        let last = name.last().copied().unwrap_or(0);
        let before = name
            .len()
            .checked_sub(2)
            .and_then(|i| name.get(i))
            .copied()
            .unwrap_or(0);
        let mix = (name.len() as u32)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(u32::from(first) << 16)
            .wrapping_add(u32::from(before) << 8)
            .wrapping_add(u32::from(last))
            .wrapping_mul(0x85EB_CA6B);
        (mix ^ (mix >> 16)) as usize % Self::SLOTS
    }

    /// The number of the collection whose bytes, at `at` of the batch, are `name`, kept if
    /// new; bytes equal to a kept name are UTF-8 without a check.
    #[inline]
    fn number(&mut self, name: &'a [u8], at: usize) -> Step<u32> {
        if let Some((i, last)) = self.last
            && same_bytes(last, name)
        {
            return Ok(i);
        }
        let slot = Self::slot(name);
        if let Some(i) = self.slots[slot].checked_sub(1)
            && self.names.is(i, name)
        {
            self.last = Some((i, name));
            return Ok(i);
        }
        let text = core::str::from_utf8(name)
            .map_err(|_| Bad::Malformed("a string that is not UTF-8", at))?;
        // The names are copies of the batch's bytes, which are fewer than 2^32 (see
        // `Walk::op`), and so are they.
        let offset =
            |n: usize| u32::try_from(n).map_err(|_| Bad::Malformed("an offset past 4 GiB", at));
        let names = &mut self.names;
        let start = offset(names.text.len())?;
        names.text.push_str(text);
        let end = offset(names.text.len())?;
        let i = offset(names.spans.len())?;
        names.spans.push((start, end));
        self.slots[slot] = i + 1;
        self.last = Some((i, name));
        Ok(i)
    }
}

/// The fewest bytes an op takes: its id (16), then one byte each for the schema version, the
/// three empty strings, the empty deps and the payload tag.
const MIN_OP_BYTES: usize = 16 + 6;

/// Why a walk stopped, and where: small and `Copy`, so that the walk's many results stay in
/// registers; made into a [`DecodeError`] once, at the end.
#[derive(Clone, Copy)]
enum Bad {
    NotCanonical(usize),
    Malformed(&'static str, usize),
}

impl From<Bad> for DecodeError {
    fn from(bad: Bad) -> Self {
        match bad {
            Bad::NotCanonical(at) => Self::NotCanonical(at),
            Bad::Malformed(what, at) => Self::Malformed(format!("{what} at byte {at}")),
        }
    }
}

type Step<T> = Result<T, Bad>;

#[inline]
fn at_most(value: u64, max: u64, at: usize) -> Step<u64> {
    if value > max {
        return Err(Bad::Malformed("a varint out of range", at));
    }
    Ok(value)
}

/// A pass over a batch's bytes.
struct Walk<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Walk<'a> {
    fn malformed(&self, what: &'static str) -> Bad {
        Bad::Malformed(what, self.pos)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let bytes = self.bytes;
        match bytes.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(taken) => {
                self.pos += n;
                Ok(taken)
            }
            None => Err(self.malformed("the input ends")),
        }
    }

    #[inline]
    fn byte(&mut self) -> Step<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.malformed("the input ends")),
        }
    }

    /// A varint of at most `max`, in its shortest form.
    #[inline]
    fn varint(&mut self, max: u64) -> Step<u64> {
        let at = self.pos;
        let first = self.byte()?;
        if first < 0x80 {
            return at_most(u64::from(first), max, at);
        }
        self.long_varint(first, max, at)
    }

    /// The rest of a varint of two bytes or more.
    #[inline(never)]
    fn long_varint(&mut self, first: u8, max: u64, at: usize) -> Step<u64> {
        let mut value = u64::from(first & 0x7f);
        for i in 1..10 {
            let b = self.byte()?;
            // At i = 9 only the lowest bit is left of a u64: more is out of range.
            if i == 9 && b > 1 {
                return Err(self.malformed("a varint out of range"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if b == 0 {
                    return Err(Bad::NotCanonical(at));
                }
                return at_most(value, max, at);
            }
        }
        Err(self.malformed("a varint longer than ten bytes"))
    }

    /// A length (postcard's `usize`).
    #[inline]
    fn len(&mut self) -> Step<usize> {
        let n = self.varint(u64::MAX)?;
        // A length past the address space cannot be followed by that many bytes.
        usize::try_from(n).map_err(|_| self.malformed("a length out of range"))
    }

    #[inline]
    fn u64(&mut self) -> Step<u64> {
        self.varint(u64::MAX)
    }

    /// A string: its length, then UTF-8.
    #[inline]
    fn str(&mut self) -> Step<()> {
        let (start, bytes) = self.str_bytes()?;
        // Names and most values are ASCII, which is quicker to check.
        if !bytes.is_ascii() && core::str::from_utf8(bytes).is_err() {
            return Err(Bad::Malformed("a string that is not UTF-8", start));
        }
        Ok(())
    }

    /// A string's bytes, not yet checked to be UTF-8, and where they start.
    #[inline]
    fn str_bytes(&mut self) -> Step<(usize, &'a [u8])> {
        let n = self.len()?;
        let start = self.pos;
        Ok((start, self.take(n)?))
    }

    /// A sequence: its length, then `each` that many times. Every element takes at least a
    /// byte, so a huge length fails when the bytes run out.
    fn seq(&mut self, mut each: impl FnMut(&mut Self) -> Step<()>) -> Step<()> {
        for _ in 0..self.len()? {
            each(self)?;
        }
        Ok(())
    }

    /// An enum's variant index (a `u32` varint), below `variants`.
    #[inline]
    fn tag(&mut self, variants: u64) -> Step<u64> {
        let at = self.pos;
        let tag = self.varint(u64::from(u32::MAX))?;
        if tag >= variants {
            return Err(Bad::Malformed("an unknown variant", at));
        }
        Ok(tag)
    }

    fn elem_id(&mut self) -> Step<()> {
        self.take(8)?;
        self.u64().map(drop)
    }

    fn option_elem_id(&mut self) -> Step<()> {
        match self.byte()? {
            0 => Ok(()),
            1 => self.elem_id(),
            _ => Err(self.malformed("an option tag other than 0 or 1")),
        }
    }

    fn value(&mut self) -> Step<()> {
        match self.tag(8)? {
            // Null
            0 => {}
            // Bool
            1 => {
                if self.byte()? > 1 {
                    return Err(self.malformed("a boolean other than 0 or 1"));
                }
            }
            // Int: zigzag, every u64 is one.
            2 => {
                self.u64()?;
            }
            // Float (any bits), Timestamp
            3 | 6 => {
                self.take(8)?;
            }
            // String, Ref
            4 | 7 => {
                self.str()?;
            }
            // Bytes: a sequence of raw bytes.
            _ => {
                let n = self.len()?;
                self.take(n)?;
            }
        }
        Ok(())
    }

    /// One op, from its first byte.
    fn op(&mut self, names: &mut Namer<'a>) -> Step<Entry> {
        let start = self.pos;
        let id: [u8; 16] = self.take(16)?.try_into().unwrap_or_default();
        self.varint(u64::from(u32::MAX))?; // schema_version
        let (at, collection) = self.str_bytes()?;
        let name = names.number(collection, at)?;
        self.str()?; // key
        self.str()?; // field
        self.seq(|w| w.take(16).map(drop))?; // deps
        match self.tag(8)? {
            // Write, SetAdd, SetRemove
            0 | 2 | 3 => self.value()?,
            // Counter
            1 => {
                self.u64()?;
                self.u64()?;
            }
            // Delete: counter baselines, then sequence baselines.
            4 => {
                self.seq(|w| {
                    w.str()?;
                    w.seq(|w| {
                        w.take(8)?;
                        w.u64()?;
                        w.u64().map(drop)
                    })
                })?;
                self.seq(|w| {
                    w.str()?;
                    w.seq(|w| {
                        w.elem_id()?;
                        w.u64().map(drop)
                    })
                })?;
            }
            // SeqInsert
            5 => {
                self.u64()?;
                self.option_elem_id()?;
                self.option_elem_id()?;
                match self.tag(2)? {
                    0 => {
                        self.str()?;
                    }
                    _ => self.seq(Self::value)?,
                }
            }
            // SeqDelete
            6 => self.seq(|w| {
                w.elem_id()?;
                w.u64().map(drop)
            })?,
            // Create
            _ => {}
        }
        // A batch is at most MAX_ENCODED_BYTES, so every offset fits.
        let offset =
            |at: usize| u32::try_from(at).map_err(|_| Bad::Malformed("an offset past 4 GiB", at));
        Ok(Entry {
            id: OpId::from_bytes(id),
            start: offset(start)?,
            end: offset(self.pos)?,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, ReplicaId, Value};
    use hlc::Timestamp;

    #[test]
    fn same_bytes_is_slice_equality() {
        for n in 0..40usize {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "len {n}");
            for i in 0..n {
                for flip in [1u8, 0x80] {
                    let mut b = a.clone();
                    b[i] ^= flip;
                    assert!(!same_bytes(&a, &b), "len {n}, byte {i} differs");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(
                !same_bytes(&a, &longer) && !same_bytes(&longer, &a),
                "len {n}"
            );
        }
    }

    /// Ops `0..n`, op `i` in collection `name(i)`.
    fn batch(n: u64, name: impl Fn(u64) -> String) -> Vec<u8> {
        let ops: Vec<crate::Op> = (0..n)
            .map(|i| crate::Op {
                id: OpId::new(
                    Timestamp::new(1_795_316_400_000 + i, 0).unwrap(),
                    ReplicaId::new(1),
                ),
                schema_version: 1,
                collection: name(i),
                key: "k".into(),
                field: "f".into(),
                deps: Vec::new(),
                payload: Payload::Write(Value::Int(1)),
            })
            .collect();
        super::super::encode_ops(&ops)
    }

    #[test]
    fn interleaved_collections_are_kept_once_and_many_within_the_batch() {
        // As a peer sends ops of an app with a few collections: interleaved by id.
        for names in [
            ["items"].as_slice(),
            &["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"],
        ] {
            let bytes = batch(4000, |i| names[i as usize % names.len()].to_owned());
            let got = EncodedOps::decode(&bytes).unwrap();
            assert_eq!(got.collections().collect::<Vec<_>>(), names);
        }
        // Many names, each used by a few ops in turn: names are kept again when their slot
        // was taken, but their bytes stay within the batch's and each op keeps its own.
        let name = |i: u64| format!("{:a>1$}", i % 500, 1 + (i % 7) as usize);
        let bytes = batch(20_000, name);
        let got = EncodedOps::decode(&bytes).unwrap();
        assert!(got.names.text.len() < bytes.len());
        assert!(got.names.spans.len() <= got.len());
        for (i, op) in got.iter().enumerate() {
            assert_eq!(op.collection(), name(i as u64));
        }
    }
}
