//! The map workload: many last-writer-wins writes spread over a set of records, applied locally
//! one committed transaction at a time, then the full history merged into a fresh replica as
//! remote operations.
//!
//! Each system under comparison implements [`MapSystem`]; [`run`] drives one through the
//! workload, timing each direction and counting heap bytes with [`crate::alloc`], and checks what
//! the fresh replica reads back against the workload before reporting anything. [`report`]
//! prints the side-by-side table. `cargo bench -p benches --bench map` runs it all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::alloc;

/// The fields every record has. A [`Write::field`] indexes this array.
pub const FIELDS: [&str; 4] = ["title", "status", "owner", "score"];

/// The key a record is stored under: `r` and the record number, zero-padded to five digits.
pub fn record_key(record: u32) -> String {
    format!("r{record:05}")
}

/// A value written to one field of one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WriteValue {
    /// A signed integer, within ±1,000,000,000 (so every peer's integer type holds it exactly).
    Int(i64),
    /// A short string of 8 to 16 ASCII lowercase letters and digits.
    Str(String),
}

/// One last-writer-wins write: set `FIELDS[field]` of record `record` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Write {
    /// The record, below the `records` the workload was generated for.
    pub record: u32,
    /// The field, an index into [`FIELDS`].
    pub field: u8,
    /// The value written.
    pub value: WriteValue,
}

/// splitmix64: small, fast, and good enough to spread writes; the workload only has to be the
/// same for every system and every run with the same seed.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`), by multiply-and-shift; the bias is below 2^-32 for the
    /// ranges used here.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

const STRING_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `writes` writes, each to a uniformly chosen record below `records` and a uniformly chosen
/// field, about half of them integers and half strings of 8 to 16 characters. The same
/// arguments give the same writes.
///
/// # Panics
///
/// If `records` is zero.
pub fn generate(writes: usize, records: u32, seed: u64) -> Vec<Write> {
    assert!(records > 0, "the workload needs at least one record");
    let mut rng = SplitMix64(seed);
    (0..writes)
        .map(|_| {
            let record = rng.below(u64::from(records)) as u32;
            let field = rng.below(FIELDS.len() as u64) as u8;
            let value = if rng.next_u64() & 1 == 0 {
                WriteValue::Int(rng.below(2_000_000_001) as i64 - 1_000_000_000)
            } else {
                let len = 8 + rng.below(9) as usize;
                let s = (0..len)
                    .map(|_| {
                        char::from(STRING_CHARS[rng.below(STRING_CHARS.len() as u64) as usize])
                    })
                    .collect();
                WriteValue::Str(s)
            };
            Write {
                record,
                field,
                value,
            }
        })
        .collect()
}

/// What each `(record, field)` holds once every write is applied: the value of the last write to
/// it.
pub fn final_values(writes: &[Write]) -> HashMap<(u32, u8), &WriteValue> {
    let mut map = HashMap::new();
    for w in writes {
        map.insert((w.record, w.field), &w.value);
    }
    map
}

/// A replicated map implementation under comparison.
///
/// [`run`] calls, in this order: [`local`](Self::local), [`export`](Self::export),
/// [`drop_source`](Self::drop_source), [`merge_into_fresh`](Self::merge_into_fresh),
/// [`read_fresh`](Self::read_fresh) for a sample of cells, and [`drop_fresh`](Self::drop_fresh).
/// It times `local`, `export` and `merge_into_fresh`, and counts the heap bytes live after
/// `local` and after `merge_into_fresh`, so an implementation does no measuring of its own.
pub trait MapSystem {
    /// The name shown in the report, e.g. `"automerge 0.12.0"`.
    fn name(&self) -> &'static str;

    /// Builds a new source replica, kept until [`drop_source`](Self::drop_source): sets up the
    /// `records` records the way an app would (for nested-map designs, one map per record
    /// created up front, `record_key(r)` under a root map), then applies every write in order,
    /// each through the public write path as its own committed transaction, as an app commits
    /// each mutation. No batching or pre-aggregating of writes.
    fn local(&mut self, writes: &[Write], records: u32);

    /// The source replica's full history, encoded as the messages the system's replication would
    /// send to a peer that has nothing: changes, updates or operations, one or more per message.
    fn export(&mut self) -> Vec<Vec<u8>>;

    /// Drops the source replica and everything [`local`](Self::local) kept.
    fn drop_source(&mut self);

    /// Decodes `messages` (from [`export`](Self::export)) and applies them, as remote
    /// operations, into a brand-new replica kept until [`drop_fresh`](Self::drop_fresh). The
    /// messages are handed over so that the replica may keep or free them as it would on receipt.
    fn merge_into_fresh(&mut self, messages: Vec<Vec<u8>>);

    /// What the fresh replica holds for `FIELDS[field]` of `record`, if anything.
    fn read_fresh(&self, record: u32, field: u8) -> Option<WriteValue>;

    /// Drops the fresh replica.
    fn drop_fresh(&mut self);
}

/// The local direction: building the source replica from the workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalRun {
    /// Writes applied.
    pub ops: usize,
    /// Wall time of [`MapSystem::local`], record setup included.
    pub time: Duration,
    /// Heap bytes live after `local`, over those live before it: the source replica, with the
    /// record handles `local` keeps. The workload itself was allocated before and is not counted.
    pub live_bytes: usize,
    /// The most heap bytes live at once during `local`, over those live before it.
    pub peak_bytes: usize,
}

/// The remote direction: exporting the full history and merging it into a fresh replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteRun {
    /// Writes in the workload that the history carries (the same count as [`LocalRun::ops`],
    /// whatever number of messages carries them).
    pub ops: usize,
    /// Wall time of [`MapSystem::export`], on the source replica.
    pub export_time: Duration,
    /// Messages exported.
    pub messages: usize,
    /// Encoded bytes of all the messages.
    pub wire_bytes: usize,
    /// Wall time of [`MapSystem::merge_into_fresh`]: decoding the messages and applying them to
    /// a new replica, including freeing the messages if the replica does not keep them.
    pub time: Duration,
    /// Heap bytes of the fresh replica alone: live after the merge, with the source replica
    /// dropped and the messages either freed or kept by the fresh replica, over those live
    /// before [`MapSystem::local`].
    pub live_bytes: usize,
    /// The most heap bytes live at once during the merge, over those live just before it (when
    /// the messages were live but the source replica was already dropped).
    pub peak_bytes: usize,
    /// `(record, field)` cells read back from the fresh replica and found equal to the last
    /// write to them.
    pub checked: usize,
}

impl LocalRun {
    /// Writes per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64()
    }

    /// Live heap bytes of the source replica per write.
    pub fn bytes_per_op(&self) -> f64 {
        self.live_bytes as f64 / self.ops as f64
    }
}

impl RemoteRun {
    /// Workload writes merged per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.time.as_secs_f64()
    }

    /// Live heap bytes of the fresh replica per workload write.
    pub fn bytes_per_op(&self) -> f64 {
        self.live_bytes as f64 / self.ops as f64
    }

    /// Encoded history bytes per workload write.
    pub fn wire_bytes_per_op(&self) -> f64 {
        self.wire_bytes as f64 / self.ops as f64
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark times itself")]
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Every 97th record (record 0, 97, 194, …), all fields.
fn sample(records: u32) -> impl Iterator<Item = (u32, u8)> {
    (0..records)
        .step_by(97)
        .flat_map(|r| (0..FIELDS.len() as u8).map(move |f| (r, f)))
}

/// Runs `system` through the workload: builds the source replica from `writes` (every `record`
/// below `records`), exports its history, drops it, merges the history into a fresh replica, and
/// checks a sample of the fresh replica's cells against the last write to each.
///
/// Heap bytes are only counted when [`alloc::CountingAlloc`] is the global allocator.
///
/// # Panics
///
/// If `writes` is empty, or if the fresh replica reads back anything but the last write to a
/// sampled cell (or something where nothing was written): a benchmark of a broken merge
/// measures nothing.
pub fn run(system: &mut dyn MapSystem, writes: &[Write], records: u32) -> (LocalRun, RemoteRun) {
    assert!(!writes.is_empty(), "the workload has no writes");
    let ops = writes.len();

    let base = alloc::live_bytes();
    alloc::reset_peak();
    let ((), time) = timed(|| system.local(writes, records));
    let local = LocalRun {
        ops,
        time,
        live_bytes: alloc::live_bytes().saturating_sub(base),
        peak_bytes: alloc::peak_bytes().saturating_sub(base),
    };

    let (messages, export_time) = timed(|| system.export());
    let message_count = messages.len();
    let wire_bytes = messages.iter().map(Vec::len).sum();
    system.drop_source();

    let before_merge = alloc::live_bytes();
    alloc::reset_peak();
    let ((), time) = timed(|| system.merge_into_fresh(messages));
    let peak_bytes = alloc::peak_bytes().saturating_sub(before_merge);
    let live_bytes = alloc::live_bytes().saturating_sub(base);

    let expected = final_values(writes);
    let mut checked = 0;
    for (record, field) in sample(records) {
        let want = expected.get(&(record, field)).copied();
        let got = system.read_fresh(record, field);
        assert_eq!(
            got.as_ref(),
            want,
            "{}: the fresh replica holds the wrong value for {}.{}",
            system.name(),
            record_key(record),
            FIELDS[usize::from(field)],
        );
        checked += usize::from(want.is_some());
    }
    assert!(
        checked > 0,
        "{}: no sampled cell was written, so nothing was checked",
        system.name()
    );
    system.drop_fresh();

    let remote = RemoteRun {
        ops,
        export_time,
        messages: message_count,
        wire_bytes,
        time,
        live_bytes,
        peak_bytes,
        checked,
    };
    (local, remote)
}

/// Prints the comparison as markdown tables, then one JSON line per system. The `×` columns
/// compare the first system in `results` with each row's: above 1 means the first system is
/// faster (its ops/s over the row's) or smaller (the row's bytes over its).
pub fn report(results: &[(&str, LocalRun, RemoteRun)]) {
    let Some((first, first_local, first_remote)) = results.first() else {
        return;
    };
    println!();
    println!(
        "| system | local ops/s | remote ops/s | local bytes/op | remote bytes/op \
         | {first} local speed × | {first} remote speed × \
         | {first} local memory × | {first} remote memory × |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, local, remote) in results {
        println!(
            "| {name} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |",
            local.ops_per_s(),
            remote.ops_per_s(),
            local.bytes_per_op(),
            remote.bytes_per_op(),
            first_local.ops_per_s() / local.ops_per_s(),
            first_remote.ops_per_s() / remote.ops_per_s(),
            local.bytes_per_op() / first_local.bytes_per_op(),
            remote.bytes_per_op() / first_remote.bytes_per_op(),
        );
    }
    println!();
    println!(
        "| system | local s | export s | remote s | messages | wire bytes/op \
         | local peak bytes/op | remote peak bytes/op | cells checked |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, local, remote) in results {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {:.1} | {:.1} | {} |",
            local.time.as_secs_f64(),
            remote.export_time.as_secs_f64(),
            remote.time.as_secs_f64(),
            remote.messages,
            remote.wire_bytes_per_op(),
            local.peak_bytes as f64 / local.ops as f64,
            remote.peak_bytes as f64 / remote.ops as f64,
            remote.checked,
        );
    }
    println!();
    for (name, local, remote) in results {
        println!(
            "{{\"bench\":\"map\",\"system\":\"{}\",\"writes\":{},\
             \"local_ops_per_s\":{:.1},\"remote_ops_per_s\":{:.1},\
             \"local_bytes_per_op\":{:.2},\"remote_bytes_per_op\":{:.2},\
             \"local_s\":{:.6},\"export_s\":{:.6},\"remote_s\":{:.6},\
             \"messages\":{},\"wire_bytes\":{},\"local_live_bytes\":{},\"remote_live_bytes\":{},\
             \"local_peak_bytes\":{},\"remote_peak_bytes\":{},\"cells_checked\":{}}}",
            name.escape_default(),
            local.ops,
            local.ops_per_s(),
            remote.ops_per_s(),
            local.bytes_per_op(),
            remote.bytes_per_op(),
            local.time.as_secs_f64(),
            remote.export_time.as_secs_f64(),
            remote.time.as_secs_f64(),
            remote.messages,
            remote.wire_bytes,
            local.live_bytes,
            remote.live_bytes,
            local.peak_bytes,
            remote.peak_bytes,
            remote.checked,
        );
    }
}

/// automerge: a root map holding one nested map per record, created up front in one change;
/// each write a `put` followed by a `commit`, so that each write is its own change. The history
/// is `get_changes(&[])`, one encoded change per message (`Change::bytes`, compressed where
/// automerge compresses); the fresh replica decodes them with `Change::from_bytes` and takes
/// them all in one `apply_changes`.
#[derive(Default)]
pub struct Automerge {
    source: Option<(automerge::AutoCommit, Vec<automerge::ObjId>)>,
    fresh: Option<automerge::AutoCommit>,
}

impl MapSystem for Automerge {
    fn name(&self) -> &'static str {
        "automerge 0.12.0"
    }

    fn local(&mut self, writes: &[Write], records: u32) {
        use automerge::transaction::Transactable;
        use automerge::{AutoCommit, ObjType, ROOT};

        let mut doc = AutoCommit::new();
        let objs: Vec<_> = (0..records)
            .map(|r| {
                doc.put_object(ROOT, record_key(r), ObjType::Map)
                    .expect("automerge: create record map")
            })
            .collect();
        doc.commit();
        for w in writes {
            let obj = &objs[w.record as usize];
            let field = FIELDS[usize::from(w.field)];
            match &w.value {
                WriteValue::Int(n) => doc.put(obj, field, *n),
                WriteValue::Str(s) => doc.put(obj, field, s.as_str()),
            }
            .expect("automerge: put");
            doc.commit();
        }
        self.source = Some((doc, objs));
    }

    fn export(&mut self) -> Vec<Vec<u8>> {
        let (doc, _) = self.source.as_mut().expect("local ran first");
        doc.get_changes(&[])
            .into_iter()
            .map(|mut change| change.bytes().into_owned())
            .collect()
    }

    fn drop_source(&mut self) {
        self.source = None;
    }

    fn merge_into_fresh(&mut self, messages: Vec<Vec<u8>>) {
        let changes: Vec<automerge::Change> = messages
            .into_iter()
            .map(|bytes| automerge::Change::from_bytes(bytes).expect("automerge: decode change"))
            .collect();
        let mut doc = automerge::AutoCommit::new();
        doc.apply_changes(changes)
            .expect("automerge: apply changes");
        self.fresh = Some(doc);
    }

    fn read_fresh(&self, record: u32, field: u8) -> Option<WriteValue> {
        use automerge::{ObjType, ROOT, ReadDoc, ScalarValue, Value};

        let doc = self.fresh.as_ref().expect("merge_into_fresh ran first");
        let (Value::Object(ObjType::Map), obj) = doc
            .get(ROOT, record_key(record))
            .expect("automerge: get record")?
        else {
            panic!("automerge: {} is not a map", record_key(record));
        };
        let (value, _) = doc
            .get(&obj, FIELDS[usize::from(field)])
            .expect("automerge: get field")?;
        match value {
            Value::Scalar(scalar) => match scalar.as_ref() {
                ScalarValue::Int(n) => Some(WriteValue::Int(*n)),
                ScalarValue::Str(s) => Some(WriteValue::Str(s.to_string())),
                other => panic!("automerge: unexpected scalar {other:?}"),
            },
            Value::Object(kind) => panic!("automerge: unexpected {kind:?} in a field"),
        }
    }

    fn drop_fresh(&mut self) {
        self.fresh = None;
    }
}

/// yrs: a root map `"records"` holding one nested map (`MapPrelim`) per record, created up front
/// in one transaction; each write an `insert` in its own `transact_mut` transaction, committed
/// when the transaction drops. The history is one v1 update against the empty state vector
/// (`encode_state_as_update_v1`); the fresh replica decodes it with `Update::decode_v1` and
/// applies it with `apply_update`.
#[derive(Default)]
pub struct Yrs {
    source: Option<(yrs::Doc, Vec<yrs::MapRef>)>,
    fresh: Option<(yrs::Doc, yrs::MapRef)>,
}

const YRS_ROOT: &str = "records";

impl MapSystem for Yrs {
    fn name(&self) -> &'static str {
        "yrs 0.28.1"
    }

    fn local(&mut self, writes: &[Write], records: u32) {
        use yrs::{Doc, Map, MapPrelim, Transact};

        let doc = Doc::new();
        let root = doc.get_or_insert_map(YRS_ROOT);
        let maps: Vec<_> = {
            let mut txn = doc.transact_mut();
            (0..records)
                .map(|r| root.insert(&mut txn, record_key(r), MapPrelim::default()))
                .collect()
        };
        for w in writes {
            let map = &maps[w.record as usize];
            let field = FIELDS[usize::from(w.field)];
            let mut txn = doc.transact_mut();
            match &w.value {
                WriteValue::Int(n) => map.insert(&mut txn, field, *n),
                WriteValue::Str(s) => map.insert(&mut txn, field, s.as_str()),
            };
        }
        self.source = Some((doc, maps));
    }

    fn export(&mut self) -> Vec<Vec<u8>> {
        use yrs::{ReadTxn, StateVector, Transact};

        let (doc, _) = self.source.as_ref().expect("local ran first");
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        vec![update]
    }

    fn drop_source(&mut self) {
        self.source = None;
    }

    fn merge_into_fresh(&mut self, messages: Vec<Vec<u8>>) {
        use yrs::updates::decoder::Decode;
        use yrs::{Doc, Transact, Update};

        let doc = Doc::new();
        let root = doc.get_or_insert_map(YRS_ROOT);
        for bytes in messages {
            let update = Update::decode_v1(&bytes).expect("yrs: decode update");
            doc.transact_mut()
                .apply_update(update)
                .expect("yrs: apply update");
        }
        self.fresh = Some((doc, root));
    }

    fn read_fresh(&self, record: u32, field: u8) -> Option<WriteValue> {
        use yrs::{Any, Map, Number, Out, Transact};

        let (doc, root) = self.fresh.as_ref().expect("merge_into_fresh ran first");
        let txn = doc.transact();
        let Out::YMap(map) = root.get(&txn, &record_key(record))? else {
            panic!("yrs: {} is not a map", record_key(record));
        };
        match map.get(&txn, FIELDS[usize::from(field)])? {
            Out::Any(Any::Number(Number::Int(n))) => Some(WriteValue::Int(n)),
            Out::Any(Any::String(s)) => Some(WriteValue::Str(s.to_string())),
            other => panic!("yrs: unexpected value {other:?}"),
        }
    }

    fn drop_fresh(&mut self) {
        self.fresh = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_in_range() {
        let a = generate(5_000, 50, 7);
        assert_eq!(a, generate(5_000, 50, 7));
        assert_ne!(a, generate(5_000, 50, 8));
        assert!(
            a.iter()
                .all(|w| w.record < 50 && usize::from(w.field) < FIELDS.len())
        );
        let strings = a
            .iter()
            .filter(|w| matches!(&w.value, WriteValue::Str(s) if (8..=16).contains(&s.len())))
            .count();
        let ints = a
            .iter()
            .filter(|w| matches!(w.value, WriteValue::Int(n) if n.abs() <= 1_000_000_000))
            .count();
        assert_eq!(strings + ints, a.len());
        assert!((2_000..3_000).contains(&strings), "{strings} strings");
    }

    #[test]
    fn final_values_keep_the_last_write() {
        let writes = [
            Write {
                record: 1,
                field: 0,
                value: WriteValue::Int(1),
            },
            Write {
                record: 1,
                field: 0,
                value: WriteValue::Str("later".into()),
            },
        ];
        let map = final_values(&writes);
        assert_eq!(map.len(), 1);
        assert_eq!(map[&(1, 0)], &WriteValue::Str("later".into()));
    }

    #[test]
    fn peers_merge_a_small_workload() {
        let writes = generate(2_000, 100, 1);
        let systems: [Box<dyn MapSystem>; 2] =
            [Box::new(Automerge::default()), Box::new(Yrs::default())];
        for mut system in systems {
            let (local, remote) = run(system.as_mut(), &writes, 100);
            assert_eq!(local.ops, 2_000);
            assert!(remote.checked > 0);
        }
    }
}
