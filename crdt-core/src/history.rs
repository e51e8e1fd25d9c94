//! A compact, column-oriented encoding of a sequence of ops: the history of a text-heavy log.
//!
//! [`crate::codec`] writes every op whole, about 55 bytes for a keystroke. A history batch
//! ([`encode_history`]) writes the same ops, in the same order and losslessly, in a few bytes
//! each: replica ids and targets (collection, key, field, schema version) are interned in
//! tables; timestamps are deltas; and consecutive keystrokes by one replica, each continuing
//! the previous (left origin the previous element, same right origin, consecutive seqs,
//! increasing timestamps), collapse into one *insert run* whose content is concatenated and
//! whose timestamps are a delta column. Consecutive single-range deletes by one replica form a
//! *delete run* in which a backspace or a forward delete costs one byte. Every other op is a
//! *general* record: its target and id through the tables, its deps and payload in the op
//! encoding's postcard form.
//!
//! The numbers live in columns: the records, the timestamps, the delete entries, the per-op
//! lengths of runs whose ops insert more than one character, the concatenated text, and the
//! general payloads. The timestamp and length columns are run-length encoded (a burst of
//! keystrokes within one millisecond is a run of zero steps). The byte layout is written down
//! in `docs/wire-format.md` ("History batch") and pinned by a golden fixture.
//!
//! Decoding takes untrusted bytes: it never panics, checks every count and length against the
//! bytes that remain before allocating, accepts at most one op per input byte (every op costs
//! at least one byte in some column that is not run-length encoded), and refuses a batch whose
//! decoded ops would take more than [`MAX_DECODED_BYTES`], or more than 256 bytes per input
//! byte leaving out each op's copy of its collection, key and field names. Those the batch
//! holds once, in its target table, while every decoded op owns them: typing into a record
//! whose key is 100 bytes long costs about one batch byte and 300 decoded bytes a keystroke,
//! which a legitimate batch must be able to carry.

use std::collections::HashMap;

use hlc::Timestamp;

use crate::codec::{DecodeError, MAX_ENCODED_BYTES};
use crate::{ElemId, Op, OpId, Payload, ReplicaId, SeqContent};

/// The first byte of every history batch: layout version 1 of the history encoding. It differs
/// from the op encoding's [`crate::codec::FORMAT_VERSION`] so a reader can tell them apart.
pub const HISTORY_FORMAT: u8 = 0x11;

/// A batch whose decoded ops would take more memory than this is refused: 1 GiB. Send a longer
/// history in several batches.
pub const MAX_DECODED_BYTES: usize = 1 << 30;

/// Decoded memory allowed per input byte (the tighter of this and [`MAX_DECODED_BYTES`]), not
/// counting the ops' copies of their target names, which only [`MAX_DECODED_BYTES`] bounds.
const DECODED_PER_INPUT_BYTE: usize = 256;

/// Record kinds, the low two bits of a record's first number.
const GENERAL: u64 = 0;
const INSERT_RUN: u64 = 1;
const DELETE_RUN: u64 = 2;

/// Delete entry shapes: one element before the previous range's first, one element after the
/// previous range, one element given explicitly, one range given explicitly, and
/// `RANGES + n` for `n` (not one) explicit ranges. Before a run's first entry the previous
/// range is the empty one at the end of the deleting replica's last insert run.
const BACKSPACE: u64 = 0;
const FORWARD: u64 = 1;
const ONE: u64 = 2;
const EXPLICIT: u64 = 3;
const RANGES: u64 = 4;

/// Header flags: the ops were in op id order and are grouped by replica.
const SORTED: u64 = 1;

/// Encodes `ops`, in this order, as one history batch. [`decode_history`] gives them back
/// exactly.
///
/// If `ops` are in strictly increasing op id order (as a log hands them out), the batch holds
/// each replica's ops together, so that keystrokes typed concurrently by several replicas still
/// form runs, and says so in its flags: the decoder sorts them back by op id.
pub fn encode_history(ops: &[Op]) -> Vec<u8> {
    let sorted = ops.windows(2).all(|w| w[0].id < w[1].id);
    let mut order: Vec<&Op> = ops.iter().collect();
    if sorted {
        let mut first_use: HashMap<ReplicaId, usize> = HashMap::new();
        for op in ops {
            let n = first_use.len();
            first_use.entry(op.id.replica).or_insert(n);
        }
        order.sort_by_key(|op| first_use[&op.id.replica]);
    }
    let mut enc = Encoder::default();
    let mut rest = &order[..];
    while !rest.is_empty() {
        let taken = enc.record(rest);
        rest = &rest[taken..];
    }
    enc.finish(ops.len(), sorted)
}

/// Decodes a batch encoded by [`encode_history`]: the ops, in the order they were encoded.
pub fn decode_history(bytes: &[u8]) -> Result<Vec<Op>, DecodeError> {
    if bytes.len() > MAX_ENCODED_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    let body = match bytes.split_first() {
        None => return Err(DecodeError::Empty),
        Some((&HISTORY_FORMAT, body)) => body,
        Some((&v, _)) => return Err(DecodeError::UnknownVersion(v)),
    };
    Decoder::new(body)?.run()
}

// ---------------------------------------------------------------------------------------------
// Encoding

#[derive(Default)]
struct Encoder<'a> {
    replicas: Vec<ReplicaId>,
    replica_index: HashMap<ReplicaId, u64>,
    /// Per replica index: the end of the last insert run it made in this batch.
    next_seq: Vec<u64>,
    targets: Vec<(&'a str, &'a str, &'a str, u32)>,
    target_index: HashMap<(&'a str, &'a str, &'a str, u32), u64>,
    prev_ts: u64,
    prev_replica: Option<u64>,
    records: Vec<u8>,
    times: Vec<u64>,
    deletes: Vec<u8>,
    lens: Vec<u64>,
    text: Vec<u8>,
    general: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn replica(&mut self, r: ReplicaId) -> u64 {
        if let Some(&i) = self.replica_index.get(&r) {
            return i;
        }
        let i = self.replicas.len() as u64;
        self.replicas.push(r);
        self.next_seq.push(0);
        self.replica_index.insert(r, i);
        i
    }

    fn target(&mut self, op: &'a Op) -> u64 {
        let t = (
            op.collection.as_str(),
            op.key.as_str(),
            op.field.as_str(),
            op.schema_version,
        );
        if let Some(&i) = self.target_index.get(&t) {
            return i;
        }
        let i = self.targets.len() as u64;
        self.targets.push(t);
        self.target_index.insert(t, i);
        i
    }

    /// Encodes one record from the front of `ops`; returns how many ops it holds.
    fn record(&mut self, ops: &[&'a Op]) -> usize {
        let op = ops[0];
        let target = self.target(op);
        let replica = self.replica(op.id.replica);
        let ts = op.id.ts.as_u64();
        self.times.push(zigzag(ts.wrapping_sub(self.prev_ts)));
        let taken = match &op.payload {
            Payload::SeqInsert {
                seq,
                left,
                right,
                content: SeqContent::Text(text),
            } if op.deps.is_empty() && !text.is_empty() => {
                self.insert_run(ops, target, replica, *seq, *left, *right)
            }
            Payload::SeqDelete { .. } if op.deps.is_empty() => {
                self.delete_run(ops, target, replica)
            }
            _ => {
                self.head(GENERAL, false, target, replica);
                crate::codec::append_postcard(&(&op.deps, &op.payload), &mut self.general);
                1
            }
        };
        self.prev_ts = ops[taken - 1].id.ts.as_u64();
        self.prev_replica = Some(replica);
        taken
    }

    /// A record's head: kind, whether every op inserts one char, target; then the replica
    /// index unless it is the previous record's.
    fn head(&mut self, kind: u64, single: bool, target: u64, replica: u64) {
        let same = self.prev_replica == Some(replica);
        put(
            &mut self.records,
            kind | u64::from(same) << 2 | u64::from(single) << 3 | target << 4,
        );
        if !same {
            put(&mut self.records, replica);
        }
    }

    fn insert_run(
        &mut self,
        ops: &[&'a Op],
        target: u64,
        replica: u64,
        seq: u64,
        left: Option<ElemId>,
        right: Option<ElemId>,
    ) -> usize {
        let mut lens = Vec::new();
        let mut end = seq;
        for (i, op) in ops.iter().enumerate() {
            let Payload::SeqInsert {
                seq: s,
                left: l,
                right: r,
                content: SeqContent::Text(text),
            } = &op.payload
            else {
                break;
            };
            if i > 0 {
                let prev = ops[i - 1];
                let continues = !text.is_empty()
                    && op.deps.is_empty()
                    && op.id.replica == prev.id.replica
                    && op.id.ts > prev.id.ts
                    && same_target(op, prev)
                    && *s == end
                    && *l
                        == Some(ElemId {
                            replica: op.id.replica,
                            seq: end - 1,
                        })
                    && *r == right;
                if !continues {
                    break;
                }
            }
            let n = text.chars().count() as u64;
            let Some(next) = end.checked_add(n) else {
                // The next op could not continue this one; this one still belongs here.
                lens.push(n);
                self.text.extend_from_slice(text.as_bytes());
                break;
            };
            lens.push(n);
            self.text.extend_from_slice(text.as_bytes());
            end = next;
        }
        let count = lens.len();
        let total: u64 = lens.iter().sum();
        let single = total == count as u64;
        self.head(INSERT_RUN, single, target, replica);
        put(&mut self.records, count as u64);
        if !single {
            put(&mut self.records, total);
        }
        put(
            &mut self.records,
            zigzag(seq.wrapping_sub(self.next_seq[replica as usize])),
        );
        self.origin(left, seq);
        self.origin(right, seq);
        if !single {
            self.lens.extend_from_slice(&lens);
        }
        for w in ops[..count].windows(2) {
            self.step(w[0].id.ts, w[1].id.ts);
        }
        self.next_seq[replica as usize] = seq.saturating_add(total);
        count
    }

    fn origin(&mut self, origin: Option<ElemId>, seq: u64) {
        match origin {
            None => put(&mut self.records, 0),
            Some(e) => {
                let r = self.replica(e.replica);
                put(&mut self.records, r + 1);
                put(&mut self.records, zigzag(e.seq.wrapping_sub(seq)));
            }
        }
    }

    fn delete_run(&mut self, ops: &[&'a Op], target: u64, replica: u64) -> usize {
        let mut count = 0;
        for (i, op) in ops.iter().enumerate() {
            if !matches!(op.payload, Payload::SeqDelete { .. }) {
                break;
            }
            if i > 0 {
                let last = ops[i - 1];
                let continues = op.deps.is_empty()
                    && op.id.replica == last.id.replica
                    && op.id.ts > last.id.ts
                    && same_target(op, last);
                if !continues {
                    break;
                }
            }
            count += 1;
        }
        self.head(DELETE_RUN, false, target, replica);
        put(&mut self.records, count as u64);
        // Before the first entry, the previous range is the empty one where this replica's
        // last insert run ended: a backspace right after typing is one byte.
        let mut prev: Option<(u64, u64, u64)> = Some((replica, self.next_seq[replica as usize], 0));
        for op in &ops[..count] {
            let Payload::SeqDelete { ranges } = &op.payload else {
                unreachable!("a delete run holds deletes");
            };
            if let [(id, n)] = ranges[..] {
                let r = self.replica(id.replica);
                let shape = match prev {
                    Some((pr, p, _)) if pr == r && n == 1 && p.checked_sub(1) == Some(id.seq) => {
                        BACKSPACE
                    }
                    Some((pr, p, pn)) if pr == r && n == 1 && p.checked_add(pn) == Some(id.seq) => {
                        FORWARD
                    }
                    _ if n == 1 => ONE,
                    _ => EXPLICIT,
                };
                put(&mut self.deletes, shape);
                if shape >= ONE {
                    self.range(r, id.seq, (shape == EXPLICIT).then_some(n));
                }
                prev = Some((r, id.seq, n));
            } else {
                put(&mut self.deletes, RANGES + ranges.len() as u64);
                for &(id, n) in ranges {
                    let r = self.replica(id.replica);
                    self.range(r, id.seq, Some(n));
                    prev = Some((r, id.seq, n));
                }
            }
        }
        for w in ops[..count].windows(2) {
            self.step(w[0].id.ts, w[1].id.ts);
        }
        count
    }

    /// An explicit deleted range: replica index, seq from that replica's `next_seq`, count.
    fn range(&mut self, r: u64, seq: u64, count: Option<u64>) {
        put(&mut self.deletes, r);
        put(
            &mut self.deletes,
            zigzag(seq.wrapping_sub(self.next_seq[r as usize])),
        );
        if let Some(n) = count {
            put(&mut self.deletes, n);
        }
    }

    /// The step from one timestamp of a run to the next, which is higher.
    fn step(&mut self, prev: Timestamp, cur: Timestamp) {
        if cur.millis() == prev.millis() {
            let d = u64::from(cur.logical() - prev.logical() - 1);
            self.times.push(d << 1);
        } else {
            let d = cur.millis() - prev.millis() - 1;
            if cur.logical() == 0 {
                self.times.push(d << 2 | 1);
            } else {
                self.times.push(d << 2 | 3);
                self.times.push(u64::from(cur.logical()));
            }
        }
    }

    fn finish(self, ops: usize, sorted: bool) -> Vec<u8> {
        let mut out = vec![HISTORY_FORMAT];
        put(&mut out, if sorted { SORTED } else { 0 });
        put(&mut out, self.replicas.len() as u64);
        for r in &self.replicas {
            out.extend_from_slice(&r.as_u64().to_be_bytes());
        }
        put(&mut out, self.targets.len() as u64);
        for (collection, key, field, version) in &self.targets {
            for s in [collection, key, field] {
                put(&mut out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            put(&mut out, u64::from(*version));
        }
        put(&mut out, ops as u64);
        let mut times = Vec::new();
        rle(&self.times, &mut times);
        let mut lens = Vec::new();
        rle(&self.lens, &mut lens);
        for column in [
            &self.records,
            &times,
            &self.deletes,
            &lens,
            &self.text,
            &self.general,
        ] {
            put(&mut out, column.len() as u64);
            out.extend_from_slice(column);
        }
        out
    }
}

fn same_target(a: &Op, b: &Op) -> bool {
    a.schema_version == b.schema_version
        && a.field == b.field
        && a.key == b.key
        && a.collection == b.collection
}

fn zigzag(delta: u64) -> u64 {
    let v = delta as i64;
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> u64 {
    ((u >> 1) as i64 ^ -((u & 1) as i64)) as u64
}

/// Appends `v` as a LEB128 varint.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Run-length encodes `values`: groups of a varint header `h`, then for an even `h` the
/// `h / 2 + 1` literal values, for an odd `h` one value that repeats `h / 2 + 2` times.
fn rle(values: &[u64], out: &mut Vec<u8>) {
    fn literal(values: &[u64], out: &mut Vec<u8>) {
        if let Some(n) = values.len().checked_sub(1) {
            put(out, (n as u64) << 1);
            for &v in values {
                put(out, v);
            }
        }
    }
    let mut start = 0;
    let mut i = 0;
    while i < values.len() {
        let mut j = i + 1;
        while j < values.len() && values[j] == values[i] {
            j += 1;
        }
        if j - i >= 3 {
            literal(&values[start..i], out);
            put(out, ((j - i - 2) as u64) << 1 | 1);
            put(out, values[i]);
            start = j;
        }
        i = j;
    }
    literal(&values[start..], out);
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn malformed(what: &str) -> DecodeError {
    DecodeError::Malformed(format!("history batch: {what}"))
}

/// A cursor over untrusted bytes.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err(malformed("a number is cut off"));
            };
            self.0 = rest;
            if i == 9 && b > 1 {
                return Err(malformed("a number overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("a number overflows 64 bits"))
    }

    fn slice(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= self.0.len())
            .ok_or_else(|| malformed("a length runs past the end"))?;
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.varint()?;
        let bytes = self.slice(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| malformed("a string is not UTF-8"))
    }

    /// A count of items that each take at least `min` bytes, checked against what remains.
    fn count(&mut self, min: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.0.len() / min)
            .ok_or_else(|| malformed("a count is larger than the input can hold"))
    }
}

/// A run-length encoded column (see [`rle`]), read lazily so a huge repeat costs nothing.
struct Rle<'a> {
    bytes: Bytes<'a>,
    literal: u64,
    repeat: u64,
    value: u64,
}

impl<'a> Rle<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes: Bytes(bytes),
            literal: 0,
            repeat: 0,
            value: 0,
        }
    }

    fn next(&mut self) -> Result<u64, DecodeError> {
        loop {
            if self.repeat > 0 {
                self.repeat -= 1;
                return Ok(self.value);
            }
            if self.literal > 0 {
                self.literal -= 1;
                return self.bytes.varint();
            }
            if self.bytes.0.is_empty() {
                return Err(malformed("a column ends early"));
            }
            let h = self.bytes.varint()?;
            if h & 1 == 0 {
                self.literal = (h >> 1) + 1;
            } else {
                self.value = self.bytes.varint()?;
                self.repeat = (h >> 1) + 2;
            }
        }
    }

    fn is_done(&self) -> bool {
        self.repeat == 0 && self.literal == 0 && self.bytes.0.is_empty()
    }
}

struct Target {
    collection: String,
    key: String,
    field: String,
    schema_version: u32,
    /// The bytes of the collection, key and field names each op of this target copies.
    names: usize,
}

struct Decoder<'a> {
    sorted: bool,
    replicas: Vec<ReplicaId>,
    next_seq: Vec<u64>,
    targets: Vec<Target>,
    ops: usize,
    /// What the decoded ops may still take, target names left out: 256 bytes an input byte.
    budget: usize,
    /// What they may still take in all: [`MAX_DECODED_BYTES`].
    total: usize,
    prev_ts: u64,
    prev_replica: Option<usize>,
    records: Bytes<'a>,
    times: Rle<'a>,
    deletes: Bytes<'a>,
    lens: Rle<'a>,
    text: &'a str,
    general: &'a [u8],
    out: Vec<Op>,
}

impl<'a> Decoder<'a> {
    fn new(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Bytes(body);
        let flags = r.varint()?;
        if flags & !SORTED != 0 {
            return Err(malformed("unknown flags"));
        }
        let n = r.count(8)?;
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            let b = r.slice(8)?;
            let mut raw = [0; 8];
            raw.copy_from_slice(b);
            replicas.push(ReplicaId::new(u64::from_be_bytes(raw)));
        }
        let n = r.count(4)?;
        let mut targets = Vec::with_capacity(n);
        for _ in 0..n {
            let collection = r.string()?;
            let key = r.string()?;
            let field = r.string()?;
            let schema_version = u32::try_from(r.varint()?)
                .map_err(|_| malformed("a schema version overflows 32 bits"))?;
            let names = collection.len() + key.len() + field.len();
            targets.push(Target {
                collection,
                key,
                field,
                schema_version,
                names,
            });
        }
        let ops = usize::try_from(r.varint()?)
            .ok()
            .filter(|&n| n <= body.len())
            .ok_or_else(|| malformed("more ops than input bytes"))?;
        let mut column = || -> Result<&'a [u8], DecodeError> {
            let len = r.varint()?;
            r.slice(len)
        };
        let records = Bytes(column()?);
        let times = Rle::new(column()?);
        let deletes = Bytes(column()?);
        let lens = Rle::new(column()?);
        let text =
            std::str::from_utf8(column()?).map_err(|_| malformed("the text is not UTF-8"))?;
        let general = column()?;
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing(r.0.len()));
        }
        let budget = MAX_DECODED_BYTES.min(body.len().saturating_mul(DECODED_PER_INPUT_BYTE));
        let reserve = ops.min(budget / size_of::<Op>());
        Ok(Self {
            sorted: flags & SORTED != 0,
            next_seq: vec![0; replicas.len()],
            replicas,
            targets,
            ops,
            budget,
            total: MAX_DECODED_BYTES,
            prev_ts: 0,
            prev_replica: None,
            records,
            times,
            deletes,
            lens,
            text,
            general,
            out: Vec::with_capacity(reserve),
        })
    }

    fn run(mut self) -> Result<Vec<Op>, DecodeError> {
        while self.out.len() < self.ops {
            self.record()?;
        }
        let done = self.records.0.is_empty()
            && self.times.is_done()
            && self.deletes.0.is_empty()
            && self.lens.is_done()
            && self.text.is_empty()
            && self.general.is_empty();
        if !done {
            return Err(malformed("a column holds more than the ops"));
        }
        if self.sorted {
            self.out.sort_by_key(|op| op.id);
        }
        Ok(self.out)
    }

    fn replica(&self, index: u64) -> Result<usize, DecodeError> {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < self.replicas.len())
            .ok_or_else(|| malformed("a replica index is out of range"))
    }

    fn ts(&mut self) -> Result<Timestamp, DecodeError> {
        let d = self.times.next()?;
        Ok(Timestamp::from_u64(self.prev_ts.wrapping_add(unzigzag(d))))
    }

    /// The timestamp after `prev` in a run.
    fn step(&mut self, prev: Timestamp) -> Result<Timestamp, DecodeError> {
        let v = self.times.next()?;
        let ts = if v & 1 == 0 {
            u16::try_from(v >> 1)
                .ok()
                .and_then(|d| prev.logical().checked_add(d)?.checked_add(1))
                .and_then(|logical| Timestamp::new(prev.millis(), logical))
        } else {
            let logical = if v & 2 == 0 { 0 } else { self.times.next()? };
            let d = v >> 2;
            d.checked_add(1)
                .and_then(|d| prev.millis().checked_add(d))
                .zip(u16::try_from(logical).ok())
                .and_then(|(ms, logical)| Timestamp::new(ms, logical))
        };
        ts.ok_or_else(|| malformed("a timestamp step overflows"))
    }

    /// How many ops a run holds: at least one, and no more than remain.
    fn run_len(&mut self) -> Result<usize, DecodeError> {
        let n = self.records.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n >= 1 && n <= self.ops - self.out.len())
            .ok_or_else(|| malformed("a run holds more ops than the batch"))
    }

    fn push(
        &mut self,
        target: usize,
        id: OpId,
        deps: Vec<OpId>,
        payload: Payload,
        extra: usize,
    ) -> Result<(), DecodeError> {
        let t = &self.targets[target];
        let own = size_of::<Op>() + extra + deps.len() * size_of::<OpId>();
        let too_large = || malformed("the decoded ops would be too large");
        self.budget = self.budget.checked_sub(own).ok_or_else(too_large)?;
        self.total = self
            .total
            .checked_sub(own + t.names)
            .ok_or_else(too_large)?;
        self.out.push(Op {
            id,
            schema_version: t.schema_version,
            collection: t.collection.clone(),
            key: t.key.clone(),
            field: t.field.clone(),
            deps,
            payload,
        });
        Ok(())
    }

    fn record(&mut self) -> Result<(), DecodeError> {
        let head = self.records.varint()?;
        let target = usize::try_from(head >> 4)
            .ok()
            .filter(|&t| t < self.targets.len())
            .ok_or_else(|| malformed("a target index is out of range"))?;
        let replica = if head & 4 != 0 {
            self.prev_replica
                .ok_or_else(|| malformed("the first record names no replica"))?
        } else {
            let index = self.records.varint()?;
            self.replica(index)?
        };
        self.prev_replica = Some(replica);
        let single = head & 8 != 0;
        if single && head & 3 != INSERT_RUN {
            return Err(malformed("a bad record head"));
        }
        let ts = self.ts()?;
        match head & 3 {
            GENERAL => {
                let before = self.general.len();
                let ((deps, payload), rest) =
                    postcard::take_from_bytes::<(Vec<OpId>, Payload)>(self.general)?;
                self.general = rest;
                let id = OpId::new(ts, self.replicas[replica]);
                self.prev_ts = ts.as_u64();
                // Decoded payloads take at most a few dozen bytes per encoded byte.
                self.push(target, id, deps, payload, 32 * (before - rest.len()))
            }
            INSERT_RUN => self.insert_run(target, replica, ts, single),
            DELETE_RUN => self.delete_run(target, replica, ts),
            _ => Err(malformed("unknown record kind")),
        }
    }

    fn origin(&mut self, seq: u64) -> Result<Option<ElemId>, DecodeError> {
        match self.records.varint()? {
            0 => Ok(None),
            r => {
                let replica = self.replicas[self.replica(r - 1)?];
                let d = self.records.varint()?;
                Ok(Some(ElemId {
                    replica,
                    seq: seq.wrapping_add(unzigzag(d)),
                }))
            }
        }
    }

    /// An explicit deleted range: replica index, seq, and the count if `counted` (else 1).
    fn range(&mut self, counted: bool) -> Result<(usize, Option<u64>, u64), DecodeError> {
        let index = self.deletes.varint()?;
        let r = self.replica(index)?;
        let d = self.deletes.varint()?;
        let len = if counted { self.deletes.varint()? } else { 1 };
        Ok((r, Some(self.next_seq[r].wrapping_add(unzigzag(d))), len))
    }

    fn insert_run(
        &mut self,
        target: usize,
        replica: usize,
        mut ts: Timestamp,
        single: bool,
    ) -> Result<(), DecodeError> {
        let n = self.run_len()?;
        let total = if single {
            n as u64
        } else {
            self.records.varint()?
        };
        let d = self.records.varint()?;
        let first = self.next_seq[replica].wrapping_add(unzigzag(d));
        let mut left = self.origin(first)?;
        let right = self.origin(first)?;
        let id = self.replicas[replica];
        let mut seq = first;
        let mut sum: u64 = 0;
        for i in 0..n {
            if i > 0 {
                ts = self.step(ts)?;
                left = Some(ElemId {
                    replica: id,
                    seq: seq - 1,
                });
            }
            let len = if single { 1 } else { self.lens.next()? };
            if len == 0 {
                return Err(malformed("an insert of nothing in a run"));
            }
            sum = sum
                .checked_add(len)
                .filter(|&s| s <= total)
                .ok_or_else(|| malformed("a run's lengths exceed its total"))?;
            let text = take_chars(&mut self.text, len)?;
            let payload = Payload::SeqInsert {
                seq,
                left,
                right,
                content: SeqContent::Text(text.to_owned()),
            };
            self.push(target, OpId::new(ts, id), Vec::new(), payload, text.len())?;
            if i + 1 < n {
                seq = seq
                    .checked_add(len)
                    .ok_or_else(|| malformed("element numbers overflow"))?;
            }
        }
        if sum != total {
            return Err(malformed("a run's lengths do not add up to its total"));
        }
        self.next_seq[replica] = first.saturating_add(total);
        self.prev_ts = ts.as_u64();
        Ok(())
    }

    fn delete_run(
        &mut self,
        target: usize,
        replica: usize,
        mut ts: Timestamp,
    ) -> Result<(), DecodeError> {
        let n = self.run_len()?;
        let id = self.replicas[replica];
        let mut prev: Option<(usize, u64, u64)> = Some((replica, self.next_seq[replica], 0));
        for i in 0..n {
            if i > 0 {
                ts = self.step(ts)?;
            }
            let shape = self.deletes.varint()?;
            let ranges = match (shape, prev) {
                (BACKSPACE, Some((r, s, _))) => vec![(r, s.checked_sub(1), 1)],
                (FORWARD, Some((r, s, n))) => vec![(r, s.checked_add(n), 1)],
                (ONE, _) => vec![self.range(false)?],
                (EXPLICIT, _) => vec![self.range(true)?],
                (BACKSPACE | FORWARD, None) => return Err(malformed("a bad delete entry")),
                (n, _) => {
                    let n = usize::try_from(n - RANGES)
                        .ok()
                        .filter(|&n| n <= self.deletes.0.len() / 3)
                        .ok_or_else(|| malformed("a delete names too many ranges"))?;
                    (0..n)
                        .map(|_| self.range(true))
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            let mut out = Vec::with_capacity(ranges.len());
            for (r, seq, len) in ranges {
                let seq = seq.ok_or_else(|| malformed("a delete entry overflows"))?;
                out.push((
                    ElemId {
                        replica: self.replicas[r],
                        seq,
                    },
                    len,
                ));
                prev = Some((r, seq, len));
            }
            let extra = 32 + out.len() * size_of::<(ElemId, u64)>();
            let payload = Payload::SeqDelete { ranges: out };
            self.push(target, OpId::new(ts, id), Vec::new(), payload, extra)?;
        }
        self.prev_ts = ts.as_u64();
        Ok(())
    }
}

/// Takes the first `n` characters of `text`.
fn take_chars<'a>(text: &mut &'a str, n: u64) -> Result<&'a str, DecodeError> {
    let mut count: u64 = 0;
    let mut end = text.len();
    for (i, _) in text.char_indices() {
        if count == n {
            end = i;
            break;
        }
        count += 1;
    }
    if count < n {
        return Err(malformed("the text ends early"));
    }
    let (head, rest) = text.split_at(end);
    *text = rest;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_every_delta() {
        for v in [0, 1, 2, u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(u64::MAX), 1); // -1
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn rle_round_trips_and_collapses_repeats() {
        let cases: [&[u64]; 5] = [
            &[],
            &[7],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[1, 2, 2, 3, 3, 3, 4, u64::MAX, u64::MAX, u64::MAX],
            &[5, 5, 1, 5, 5, 5, 5, 2],
        ];
        for values in cases {
            let mut out = Vec::new();
            rle(values, &mut out);
            let mut col = Rle::new(&out);
            for &v in values {
                assert_eq!(col.next().unwrap(), v, "{values:?}");
            }
            assert!(col.is_done(), "{values:?}");
            assert!(col.next().is_err());
        }
        let mut out = Vec::new();
        rle(&[0; 1000], &mut out);
        assert_eq!(out, [0xcd, 0x0f, 0x00]); // h = 998 << 1 | 1: 1000 zeros
    }

    #[test]
    fn varints_reject_overflow() {
        let mut b = Bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(b.varint().unwrap(), u64::MAX);
        let mut b = Bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert!(b.varint().is_err());
        let mut b = Bytes(&[0x80]);
        assert!(b.varint().is_err());
    }
}
