//! The commit log: a small file beside the redb file that makes a durable commit one append
//! and one `fdatasync`.
//!
//! A durable commit of ops (and of the high-water mark) appends one *record* holding the
//! group's ops to the log and syncs it; then the group is committed to redb with
//! `Durability::None` (in redb's memory and file, not synced), which readers see at once.
//! Every so often, when the log is full, when a write other than ops arrives (a peer frontier,
//! a snapshot, the replica id), or when the store closes, the group is instead committed to
//! redb with `Durability::Immediate`: a *fold*, which makes every earlier commit durable in
//! redb and, in the same transaction, raises the log's *generation* in `meta`. Records carry
//! the generation they were written in, so the records of earlier generations, already in
//! redb, no longer count: the next record overwrites the log from its start, with no
//! truncation and no metadata change.
//!
//! Opening the store replays the records of the current generation, in order, up to the first
//! one that is torn or of another generation, then folds. A record is only written once the
//! one before it is synced, so after a power cut only the records of the last, unacknowledged
//! commit can be torn; a torn record fails its checksum. The checksum covers the store's
//! random id, so a log left beside a different store never replays into this one.
//!
//! The log file is filled with zeros up to its capacity when it is created (and synced once),
//! so every record overwrites written blocks and its `fdatasync` needs no filesystem metadata
//! commit, like the zero fill of the redb file (`zero_fill.rs`).
//!
//! Byte layout: `docs/wire-format.md`, "Commit log".

use std::io;

use redb::StorageBackend;

use super::commit::Batch;
use crate::StorageError;
use hlc::Timestamp;

/// Default capacity of the log: a fold at least every this many bytes of records.
pub(super) const DEFAULT_CAPACITY: u64 = 1 << 20;

/// The largest capacity accepted (the log is read whole on open).
pub(super) const MAX_CAPACITY: u64 = 256 << 20;

/// Bytes before a record's payload: length (`u32` LE), generation (`u64` LE), checksum (16).
pub(super) const HEADER: usize = 4 + 8 + 16;

/// Bytes of one op in a payload besides its encoding: key (16) and length (`u32` LE).
const OP_HEADER: usize = 16 + 4;

/// The smallest payload: an op count (4) and a high-water mark (9).
const MIN_PAYLOAD: usize = 4 + 9;

/// The biggest zero buffer written at once when filling the file.
const ZEROS: usize = 256 << 10;

/// The log of one store. Only the commit leader touches it.
pub(super) struct Log {
    file: Box<dyn StorageBackend>,
    /// The records of this generation are the live ones.
    generation: u64,
    /// The store's random id, covered by every checksum.
    store_id: [u8; 16],
    /// Where the next record goes: the end of this generation's records.
    end: u64,
    /// Records never reach past this.
    capacity: u64,
}

impl Log {
    /// Opens the log in `file`, filling it with zeros up to `capacity` (and syncing) if it is
    /// shorter, and returns it with the batches of its live records, in order. The log's end
    /// is after the last of them; a fold must follow before new records are written. With
    /// `capacity` 0 the log only replays: it takes no records, so every commit folds.
    pub(super) fn open(
        file: Box<dyn StorageBackend>,
        capacity: u64,
        generation: u64,
        store_id: [u8; 16],
    ) -> Result<(Self, Vec<Batch>), StorageError> {
        let io = |e: io::Error| StorageError::Backend(Box::new(e));
        let len = file.len().map_err(io)?;
        let capacity = match capacity {
            0 => 0,
            // Records written under a larger capacity may reach past this one: keep room.
            c => c
                .clamp(HEADER as u64, MAX_CAPACITY)
                .max(len.min(MAX_CAPACITY)),
        };
        let readable = len.min(MAX_CAPACITY);
        let mut bytes = vec![0; usize::try_from(readable).unwrap_or(0)];
        file.read(0, &mut bytes).map_err(io)?;
        let mut batches = Vec::new();
        let mut at = 0;
        while let Some((batch, next)) = read_record(&bytes, at, generation, &store_id)? {
            batches.push(batch);
            at = next;
        }
        // Only the last record written can be torn: a whole record of this generation further
        // on means the log was damaged, and replaying up to here would silently drop it.
        // Most offsets fail on the generation bytes: compare those first.
        let wanted = generation.to_le_bytes();
        let later = bytes
            .windows(4 + 8) // a header's length and generation
            .enumerate()
            .skip(at + 1)
            .filter(|(_, w)| w.get(4..) == Some(wanted.as_slice()))
            .map(|(o, _)| o)
            .find(|&o| {
                matches!(
                    read_record(&bytes, o, generation, &store_id),
                    Ok(Some(_)) | Err(_)
                )
            });
        if let Some(later) = later {
            return Err(StorageError::Unreadable(format!(
                "the commit log is damaged at byte {at}: a record of the current generation \
                 follows at byte {later}"
            )));
        }
        if len < capacity {
            let zeros = vec![0; ZEROS];
            let mut pos = len;
            while pos < capacity {
                let n = usize::try_from(capacity - pos).unwrap_or(ZEROS).min(ZEROS);
                file.write(pos, zeros.get(..n).unwrap_or_default())
                    .map_err(io)?;
                pos += n as u64;
            }
            file.sync_data().map_err(io)?;
        }
        let log = Self {
            file,
            generation,
            store_id,
            end: at as u64,
            capacity,
        };
        Ok((log, batches))
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether this generation holds any record (a fold must then raise the generation).
    pub(super) fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// The record of `group` (its ops in order, the highest mark), or `None` if it does not
    /// fit in what is left of the log: the group must fold instead.
    pub(super) fn record(&self, group: &[(u64, Batch)]) -> Option<Vec<u8>> {
        let payload: usize = group
            .iter()
            .map(|(_, b)| b.encoded.len() + b.ops.len() * OP_HEADER)
            .sum::<usize>()
            + MIN_PAYLOAD;
        let room = self.capacity.saturating_sub(self.end);
        if (HEADER + payload) as u64 > room {
            return None;
        }
        let mut out = Vec::with_capacity(HEADER + payload);
        out.resize(HEADER, 0);
        let count: usize = group.iter().map(|(_, b)| b.ops.len()).sum();
        out.extend_from_slice(&u32::try_from(count).ok()?.to_le_bytes());
        let mut high_water = None;
        for (_, batch) in group {
            let mut start = 0;
            for &(key, end) in &batch.ops {
                let bytes = batch.encoded.get(start..end)?;
                start = end;
                out.extend_from_slice(&key.to_be_bytes());
                out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            high_water = high_water.max(batch.high_water);
        }
        match high_water {
            Some(ts) => {
                out.push(1);
                out.extend_from_slice(&ts.to_bytes());
            }
            None => out.extend_from_slice(&[0; 9]),
        }
        let len = u32::try_from(out.len() - HEADER).ok()?;
        let sum = checksum(&self.store_id, self.generation, len, out.get(HEADER..)?);
        out.get_mut(..4)?.copy_from_slice(&len.to_le_bytes());
        out.get_mut(4..12)?
            .copy_from_slice(&self.generation.to_le_bytes());
        out.get_mut(12..HEADER)?.copy_from_slice(&sum);
        Some(out)
    }

    /// Appends a record made by [`Log::record`] and syncs it: on return the commit is durable.
    pub(super) fn append(&mut self, record: &[u8]) -> io::Result<()> {
        self.file.write(self.end, record)?;
        self.file.sync_data()?;
        self.end += record.len() as u64;
        Ok(())
    }

    /// After a fold raised the generation to `generation`: the log is empty.
    pub(super) fn folded(&mut self, generation: u64) {
        self.generation = generation;
        self.end = 0;
    }
}

/// The first 16 bytes of blake3 over the store id, generation, length and payload.
fn checksum(store_id: &[u8; 16], generation: u64, len: u32, payload: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(b"weft-store log record\0");
    h.update(store_id);
    h.update(&generation.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    let mut out = [0; 16];
    out.copy_from_slice(&h.finalize().as_bytes()[..16]);
    out
}

/// The record at `at`, if it is whole, of `generation` and checksums; with the offset after it.
/// A record that checksums but does not parse is an error: no tear or stale record does that.
fn read_record(
    bytes: &[u8],
    at: usize,
    generation: u64,
    store_id: &[u8; 16],
) -> Result<Option<(Batch, usize)>, StorageError> {
    let Some(header) = bytes.get(at..).and_then(|b| b.first_chunk::<HEADER>()) else {
        return Ok(None);
    };
    let (len, rest) = header.split_at(4);
    let (gen_bytes, sum) = rest.split_at(8);
    let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
    let record_generation = u64::from_le_bytes(gen_bytes.try_into().unwrap_or_default());
    // Every payload holds at least a count and a mark: zeros never get as far as a checksum.
    if record_generation != generation || (len as usize) < MIN_PAYLOAD {
        return Ok(None);
    }
    let start = at + HEADER;
    let Some(payload) = bytes.get(start..start.saturating_add(len as usize)) else {
        return Ok(None);
    };
    if checksum(store_id, generation, len, payload) != sum {
        return Ok(None);
    }
    let batch = parse_payload(payload).ok_or_else(|| {
        StorageError::Unreadable(format!(
            "the commit log record at byte {at} checksums but does not parse"
        ))
    })?;
    Ok(Some((batch, start + payload.len())))
}

fn parse_payload(payload: &[u8]) -> Option<Batch> {
    let (count, mut rest) = payload.split_first_chunk::<4>()?;
    let count = u32::from_le_bytes(*count) as usize;
    // Each op takes at least its header: a count the payload cannot hold is refused before
    // anything is sized by it.
    if count > rest.len() / OP_HEADER {
        return None;
    }
    let mut batch = Batch::default();
    batch.ops.reserve(count);
    batch.encoded.reserve(rest.len());
    for _ in 0..count {
        let (key, tail) = rest.split_first_chunk::<16>()?;
        let (len, tail) = tail.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let op = tail.get(..len)?;
        rest = tail.get(len..)?;
        batch.encoded.extend_from_slice(op);
        batch
            .ops
            .push((u128::from_be_bytes(*key), batch.encoded.len()));
    }
    let (flag, mark) = rest.split_first()?;
    let mark: [u8; 8] = mark.try_into().ok()?;
    batch.high_water = match flag {
        0 if mark == [0; 8] => None,
        1 => Some(Timestamp::from_bytes(mark)),
        _ => return None,
    };
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redb_store::PowerLossDisk;

    const ID: [u8; 16] = [7; 16];

    fn batch(ops: &[(u128, &[u8])], high_water: Option<Timestamp>) -> Batch {
        let mut b = Batch::default();
        for (key, bytes) in ops {
            b.encoded.extend_from_slice(bytes);
            b.ops.push((*key, b.encoded.len()));
        }
        b.high_water = high_water;
        b
    }

    fn same(a: &Batch, b: &Batch) -> bool {
        a.ops == b.ops && a.encoded == b.encoded && a.high_water == b.high_water
    }

    fn open(disk: &PowerLossDisk, capacity: u64, generation: u64) -> (Log, Vec<Batch>) {
        Log::open(Box::new(disk.clone()), capacity, generation, ID).expect("log opens")
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::new(ms, 1).unwrap()
    }

    #[test]
    fn records_round_trip_in_order_and_a_group_becomes_one_batch() {
        let disk = PowerLossDisk::new();
        let (mut log, found) = open(&disk, 4096, 3);
        assert!(found.is_empty() && log.is_empty());
        assert_eq!(disk.len().unwrap(), 4096, "filled to capacity");
        let a = batch(&[(5, b"five"), (9, b"")], None);
        let b = batch(&[(2, b"two")], Some(ts(10)));
        let c = batch(&[], Some(ts(20)));
        let record = log.record(&[(0, a), (1, b)]).unwrap();
        log.append(&record).unwrap();
        log.append(&log.record(&[(2, c)]).unwrap()).unwrap();
        let (reopened, found) = open(&disk, 4096, 3);
        assert_eq!(found.len(), 2);
        let merged = batch(&[(5, b"five"), (9, b""), (2, b"two")], Some(ts(10)));
        assert!(same(&found[0], &merged));
        assert!(same(&found[1], &batch(&[], Some(ts(20)))));
        assert_eq!(reopened.end, log.end);
    }

    /// The record's bytes, pinned (`docs/wire-format.md`, "Commit log").
    #[test]
    fn the_record_layout_is_pinned() {
        let disk = PowerLossDisk::new();
        let (log, _) = open(&disk, 4096, 0x0102);
        let record = log
            .record(&[(0, batch(&[(0x0a0b, b"xy")], Some(ts(3))))])
            .unwrap();
        let hex: String = record.iter().map(|b| format!("{b:02x}")).collect();
        let payload = "01000000\
                       00000000000000000000000000000a0b\
                       02000000\
                       7879\
                       01\
                       0000000000030001";
        let len = format!("{:02x}000000", payload.len() / 2);
        assert_eq!(&hex[..8], len);
        assert_eq!(&hex[8..24], "0201000000000000");
        assert_eq!(&hex[56..], payload);
        let sum = checksum(&ID, 0x0102, (payload.len() / 2) as u32, &record[HEADER..]);
        assert_eq!(&record[12..HEADER], sum);
    }

    #[test]
    fn a_new_generation_overwrites_from_the_start_and_stale_records_do_not_count() {
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 4096, 0);
        for key in 0..5 {
            let r = log
                .record(&[(0, batch(&[(key, b"old op")], None))])
                .unwrap();
            log.append(&r).unwrap();
        }
        log.folded(1);
        let r = log.record(&[(0, batch(&[(99, b"x")], None))]).unwrap();
        log.append(&r).unwrap();
        let (_, found) = open(&disk, 4096, 1);
        assert_eq!(
            found.len(),
            1,
            "the old generation's records after it are stale"
        );
        assert_eq!(found[0].ops, vec![(99, 1)]);
        // A store back at generation 0 (an old copy of the redb file beside this log) finds
        // whole records of its generation behind the new one: the log does not fit it.
        let err = Log::open(Box::new(disk.clone()), 4096, 0, ID)
            .err()
            .unwrap();
        assert!(err.to_string().contains("damaged at byte 0"), "{err}");
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_replay() {
        for cut in 1..40 {
            let disk = PowerLossDisk::new();
            let (mut log, _) = open(&disk, 4096, 0);
            let first = log.record(&[(0, batch(&[(1, b"kept")], None))]).unwrap();
            log.append(&first).unwrap();
            let second = log
                .record(&[(0, batch(&[(2, b"torn op bytes")], None))])
                .unwrap();
            let cut = cut.min(second.len() - 1);
            disk.write(first.len() as u64, &second[..cut]).unwrap();
            let (log, found) = open(&disk, 4096, 0);
            assert_eq!(found.len(), 1, "cut at {cut}");
            assert_eq!(log.end, first.len() as u64);
        }
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 4096, 0);
        let r = log.record(&[(0, batch(&[(1, b"op")], None))]).unwrap();
        log.append(&r).unwrap();
        let mut flipped = r.clone();
        flipped[HEADER + 3] ^= 1;
        disk.write(0, &flipped).unwrap();
        assert!(open(&disk, 4096, 0).1.is_empty());
    }

    /// A record damaged in the middle of the log, with whole records after it, is an error
    /// at open, not a silent end of the replay (only the last record can be torn).
    #[test]
    fn damage_before_whole_records_is_an_error() {
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 4096, 4);
        let mut offsets = Vec::new();
        for key in 0..3 {
            offsets.push(log.end);
            let r = log.record(&[(0, batch(&[(key, b"an op")], None))]).unwrap();
            log.append(&r).unwrap();
        }
        let mut byte = [0];
        disk.read(offsets[1] + HEADER as u64 + 2, &mut byte)
            .unwrap();
        disk.write(offsets[1] + HEADER as u64 + 2, &[byte[0] ^ 0x40])
            .unwrap();
        let err = Log::open(Box::new(disk.clone()), 4096, 4, ID)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains(&format!("damaged at byte {}", offsets[1])),
            "{err}"
        );
        // Damage to the last record is a tear: the replay ends before it.
        disk.write(offsets[1] + HEADER as u64 + 2, &byte).unwrap();
        disk.write(offsets[2] + 1, &[0xff]).unwrap();
        assert_eq!(open(&disk, 4096, 4).1.len(), 2);
    }

    #[test]
    fn another_store_s_log_never_replays() {
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 4096, 0);
        let r = log.record(&[(0, batch(&[(1, b"op")], None))]).unwrap();
        log.append(&r).unwrap();
        let (_, found) = Log::open(Box::new(disk.clone()), 4096, 0, [8; 16]).unwrap();
        assert!(found.is_empty());
    }

    #[test]
    fn a_group_that_does_not_fit_is_refused_and_the_capacity_holds() {
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 256, 0);
        let big = vec![0u8; 200];
        assert!(
            log.record(&[(0, batch(&[(1, big.as_slice())], None))])
                .is_none()
        );
        let small = log.record(&[(0, batch(&[(1, b"small")], None))]).unwrap();
        let mut n = 0;
        while log.record(&[(0, batch(&[(1, b"small")], None))]).is_some() {
            log.append(&small).unwrap();
            n += 1;
        }
        assert_eq!(n, 256 / small.len());
        assert_eq!(disk.len().unwrap(), 256, "the file never grows");
        assert_eq!(open(&disk, 256, 0).1.len(), n);
    }

    #[test]
    fn a_record_that_checksums_but_does_not_parse_is_an_error() {
        let disk = PowerLossDisk::new();
        let (mut log, _) = open(&disk, 4096, 0);
        // A payload whose count claims more ops than it holds, with a valid checksum.
        let payload = [9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut record = Vec::new();
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&0u64.to_le_bytes());
        record.extend_from_slice(&checksum(&ID, 0, payload.len() as u32, &payload));
        record.extend_from_slice(&payload);
        log.append(&record).unwrap();
        let err = Log::open(Box::new(disk.clone()), 4096, 0, ID)
            .err()
            .unwrap();
        assert!(matches!(err, StorageError::Unreadable(_)), "{err}");
    }

    /// Seeded: random groups round-trip through a record; random and mutated payloads (past
    /// the checksum, straight into the parser) never panic and never make more ops than bytes.
    #[test]
    fn payloads_round_trip_and_hostile_ones_are_refused() {
        use rand::{RngExt, SeedableRng};
        let seed = 29;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let disk = PowerLossDisk::new();
        let (log, _) = open(&disk, 1 << 16, 0);
        for case in 0..500 {
            let group: Vec<(u64, Batch)> = (0..rng.random_range(1..4))
                .map(|t| {
                    let ops: Vec<(u128, Vec<u8>)> = (0..rng.random_range(0..5))
                        .map(|_| {
                            let len = rng.random_range(0..40);
                            (rng.random(), (0..len).map(|_| rng.random()).collect())
                        })
                        .collect();
                    let ops: Vec<(u128, &[u8])> =
                        ops.iter().map(|(k, v)| (*k, v.as_slice())).collect();
                    let mark = rng
                        .random_bool(0.5)
                        .then(|| ts(rng.random_range(1..1 << 40)));
                    (t, batch(&ops, mark))
                })
                .collect();
            let record = log.record(&group).expect("fits");
            let parsed = parse_payload(&record[HEADER..])
                .unwrap_or_else(|| panic!("seed {seed} case {case}: a record does not parse"));
            let mut merged = Batch::default();
            for (_, b) in &group {
                let base = merged.encoded.len();
                merged.encoded.extend_from_slice(&b.encoded);
                merged
                    .ops
                    .extend(b.ops.iter().map(|&(k, end)| (k, base + end)));
                merged.high_water = merged.high_water.max(b.high_water);
            }
            assert!(same(&parsed, &merged), "seed {seed} case {case}");
            let mut hostile = record[HEADER..].to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..hostile.len());
                hostile[at] = rng.random();
            }
            hostile.truncate(rng.random_range(0..=hostile.len()));
            if let Some(b) = parse_payload(&hostile) {
                assert!(
                    b.ops.len() * OP_HEADER <= hostile.len(),
                    "seed {seed} case {case}"
                );
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_and_never_replay() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let len = rng.random_range(0..600);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let disk = PowerLossDisk::from_image(bytes);
            let (_, found) = open(&disk, 512, rng.random_range(0..3));
            assert!(found.is_empty());
        }
    }
}
