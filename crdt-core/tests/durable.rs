//! The redb store: what it keeps across reopening, group commit, relaxed mode, snapshots,
//! and clear errors (never a panic) on corrupt, truncated and foreign files.

mod durable_util;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crdt_core::{
    CommitMode, MemoryStorage, Op, Payload, RedbConfig, RedbStorage, ReplicaId, Snapshot, Storage,
    StorageError, Value, VersionVector,
};
use durable_util::*;
use hlc::Timestamp;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn all(store: &RedbStorage) -> Vec<Op> {
    store.scan().collect::<Result<_, _>>().expect("scan")
}

#[test]
fn keeps_ops_and_metadata_across_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.file("store.redb");
    let (a, b) = (ReplicaId::new(7), ReplicaId::new(9));
    let frontier: VersionVector = [(a, Timestamp::new(5, 1).unwrap())].into_iter().collect();
    let first = ops(1_000, 7, 30);
    let second = ops(500, 9, 20);
    {
        let mut store = RedbStorage::open(&path).expect("create");
        assert_eq!(store.replica_id().unwrap(), None);
        store.set_replica_id(a).unwrap();
        store.append(&first).unwrap();
        store.append(&second).unwrap();
        // Appending stored ops again stores nothing and does not move the position.
        store.append(&first[..5]).unwrap();
        store.set_peer_frontier(b, &frontier).unwrap();
        store
            .set_high_water(Timestamp::new(9_999, 3).unwrap())
            .unwrap();
    }
    let store = RedbStorage::open(&path).expect("reopen");
    assert_eq!(store.replica_id().unwrap(), Some(a));
    assert_eq!(store.len().unwrap(), 50);
    assert_eq!(store.append_position().unwrap(), 50);
    let mut expected: Vec<Op> = first.iter().chain(&second).cloned().collect();
    expected.sort_by_key(|op| op.id);
    assert_eq!(all(&store), expected, "scan is in op id order");
    assert_eq!(store.get(first[3].id).unwrap().as_ref(), Some(&first[3]));
    assert!(store.contains(second[0].id).unwrap());
    assert!(!store.contains(op(1, 0, 1).id).unwrap());
    assert_eq!(store.peer_frontier(b).unwrap(), Some(frontier));
    assert_eq!(store.peer_frontier(a).unwrap(), None);
    assert_eq!(store.high_water().unwrap(), Timestamp::new(9_999, 3));

    // ops_after leaves out exactly what the version vector covers.
    let vv: VersionVector = [(ReplicaId::new(7), first[9].id.ts)].into_iter().collect();
    let after: Vec<Op> = store.ops_after(&vv).collect::<Result<_, _>>().unwrap();
    let want: Vec<Op> = expected
        .into_iter()
        .filter(|op| !vv.covers(op.id))
        .collect();
    assert_eq!(after, want);
}

#[test]
fn stored_bytes_for_sync_are_the_op_encoding_without_its_version_byte() {
    let dir = TempDir::new("encoded");
    let mut store = RedbStorage::open(dir.file("s.redb")).unwrap();
    let written = ops(3_000, 4, 5);
    store.append(&written).unwrap();
    for op in &written {
        let lent = store.get_encoded(op.id).unwrap().expect("stored");
        assert_eq!(
            &lent[..],
            &crdt_core::codec::encode_op(op)[1..],
            "{}",
            op.id
        );
    }
    let absent = op(9_000, 0, 4);
    assert!(store.get_encoded(absent.id).unwrap().is_none());
}

#[test]
fn ops_appended_as_bytes_are_stored_as_appended_ops_are() {
    let dir = TempDir::new("append-encoded");
    let (a, b) = (dir.file("a.redb"), dir.file("b.redb"));
    let first = ops(1_000, 7, 30);
    let second = ops(1_010, 9, 20);
    {
        let mut decoded = RedbStorage::open(&a).unwrap();
        let mut encoded = RedbStorage::open(&b).unwrap();
        // The second batch repeats stored ops: they are stored once, as by `append`.
        let again: Vec<Op> = first[20..].iter().chain(&second).cloned().collect();
        for batch in [&first[..25], &again[..]] {
            decoded.append(batch).unwrap();
            let bytes = crdt_core::codec::EncodedOps::from_ops(batch).unwrap();
            encoded.append_encoded(&bytes).unwrap();
        }
        encoded
            .append_encoded(&crdt_core::codec::EncodedOps::default())
            .unwrap();
    }
    let (decoded, encoded) = (
        RedbStorage::open(&a).unwrap(),
        RedbStorage::open(&b).unwrap(),
    );
    assert_eq!(encoded.len().unwrap(), 50);
    assert_eq!(encoded.len().unwrap(), decoded.len().unwrap());
    assert_eq!(
        encoded.append_position().unwrap(),
        decoded.append_position().unwrap()
    );
    assert_eq!(encoded.high_water().unwrap(), decoded.high_water().unwrap());
    assert_eq!(all(&encoded), all(&decoded));
    for op in first.iter().chain(&second) {
        assert_eq!(
            encoded.get_encoded(op.id).unwrap(),
            decoded.get_encoded(op.id).unwrap()
        );
    }
}

#[test]
fn a_second_op_with_a_stored_id_leaves_the_first_in_place() {
    let dir = TempDir::new("forged");
    let path = dir.file("s.redb");
    let written = ops(1_000, 7, 10);
    let forged: Vec<Op> = written
        .iter()
        .map(|op| Op {
            payload: Payload::Write(Value::String("forged".into())),
            ..op.clone()
        })
        .collect();
    let mut memory = MemoryStorage::new();
    {
        let mut store = RedbStorage::open(&path).unwrap();
        for s in [&mut store as &mut dyn Storage, &mut memory] {
            s.append(&written).unwrap();
            s.append(&forged[..5]).unwrap();
            let bytes = crdt_core::codec::EncodedOps::from_ops(&forged[5..]).unwrap();
            s.append_encoded(&bytes).unwrap();
        }
        assert_eq!(all(&store), written, "before reopening");
    }
    let store = RedbStorage::open(&path).unwrap();
    assert_eq!(all(&store), written);
    assert_eq!(store.append_position().unwrap(), 10);
    assert_eq!(
        memory.scan().collect::<Result<Vec<_>, _>>().unwrap(),
        written
    );
}

/// `ids` read through `get_encoded_each`, with the reads stopped after `stop` ids (when some).
fn read_each(
    store: &dyn Storage,
    ids: &[crdt_core::OpId],
    stop: Option<usize>,
) -> Vec<Option<Vec<u8>>> {
    let mut got = Vec::new();
    let mut asked = Vec::new();
    store
        .get_encoded_each(&mut ids.iter().copied(), &mut |id, bytes| {
            asked.push(id);
            got.push(bytes.map(|b| b.into_owned()));
            stop.is_none_or(|n| got.len() < n)
        })
        .unwrap();
    assert_eq!(asked, ids[..got.len()], "each id in turn");
    got
}

#[test]
fn batched_encoded_reads_agree_with_single_reads_in_any_order() {
    // Runs of neighbours, sparse ids, absent ids (between stored ones and past the end),
    // repeats and descents, on disk and in memory, against one read at a time.
    let dir = TempDir::new("each");
    let mut disk = RedbStorage::open(dir.file("s.redb")).unwrap();
    let mut memory = MemoryStorage::new();
    let written: Vec<Op> = (0..4_000)
        .map(|i| op(1_000 + 2 * i, 0, 1 + i % 3))
        .collect();
    let absent: Vec<crdt_core::OpId> = (0..4_100).map(|i| op(1_001 + 2 * i, 0, 1).id).collect();
    for store in [&mut disk as &mut dyn Storage, &mut memory] {
        store.append(&written).unwrap();
    }
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ids = Vec::new();
        while ids.len() < 600 {
            let at = rng.random_range(0..written.len());
            match rng.random_range(0..6) {
                // A run of neighbours.
                0 | 1 => ids.extend(written[at..written.len().min(at + 80)].iter().map(|o| o.id)),
                2 => ids.push(absent[rng.random_range(0..absent.len())]),
                3 => ids.push(ids.last().copied().unwrap_or(written[at].id)),
                _ => ids.push(written[at].id),
            }
        }
        if seed % 2 == 0 {
            // Mostly ascending, as a session asks; odd seeds keep the jumps back.
            ids.sort();
        }
        for store in [&disk as &dyn Storage, &memory] {
            let want: Vec<Option<Vec<u8>>> = ids
                .iter()
                .map(|&id| store.get_encoded(id).unwrap().map(|b| b.into_owned()))
                .collect();
            assert_eq!(read_each(store, &ids, None), want, "seed {seed}");
            let stop = rng.random_range(1..ids.len());
            assert_eq!(
                read_each(store, &ids, Some(stop)),
                want[..stop],
                "seed {seed}, stop {stop}"
            );
        }
    }
    // Every op, in order: a single walk from end to end.
    let ids: Vec<crdt_core::OpId> = written.iter().map(|o| o.id).collect();
    for store in [&disk as &dyn Storage, &memory] {
        let got = read_each(store, &ids, None);
        for (op, bytes) in written.iter().zip(&got) {
            assert_eq!(
                bytes.as_deref(),
                Some(&crdt_core::codec::encode_op(op)[1..])
            );
        }
    }
}

#[test]
fn the_high_water_mark_follows_appends_and_never_goes_back() {
    let dir = TempDir::new("hwm");
    let mut store = RedbStorage::open(dir.file("s.redb")).unwrap();
    assert_eq!(store.high_water().unwrap(), None);
    store.append(&ops(2_000, 1, 3)).unwrap();
    assert_eq!(store.high_water().unwrap(), Timestamp::new(2_002, 0));
    store
        .set_high_water(Timestamp::new(10, 0).unwrap())
        .unwrap();
    assert_eq!(store.high_water().unwrap(), Timestamp::new(2_002, 0));
    store.append(&ops(100, 2, 1)).unwrap();
    assert_eq!(store.high_water().unwrap(), Timestamp::new(2_002, 0));
}

#[test]
fn snapshots_and_the_log_in_append_order() {
    let dir = TempDir::new("snap");
    let path = dir.file("s.redb");
    let batches = [ops(5_000, 1, 10), ops(1_000, 2, 7), ops(9_000, 3, 1)];
    {
        let mut store = RedbStorage::open(&path).unwrap();
        assert_eq!(store.snapshot().unwrap(), None);
        store.append(&batches[0]).unwrap();
        store.append(&batches[1]).unwrap();
        let snap = Snapshot {
            position: store.append_position().unwrap(),
            bytes: b"state".to_vec(),
        };
        store.save_snapshot(&snap).unwrap();
        store.append(&batches[2]).unwrap();
        let ahead = Snapshot {
            position: 1_000,
            bytes: Vec::new(),
        };
        assert!(
            store.save_snapshot(&ahead).is_err(),
            "a snapshot ahead of the log"
        );
    }
    let store = RedbStorage::open(&path).unwrap();
    let snap = store.snapshot().unwrap().expect("saved");
    assert_eq!(snap.position, 17);
    assert_eq!(snap.bytes, b"state");
    let appended: Vec<Vec<Op>> = [0, 3, 10, 12, 17, 18, 99]
        .iter()
        .map(|&p| {
            store
                .ops_appended_after(p)
                .collect::<Result<_, _>>()
                .unwrap()
        })
        .collect();
    let in_order: Vec<Op> = batches.concat();
    assert_eq!(appended[0], in_order);
    assert_eq!(appended[1], in_order[3..]);
    assert_eq!(appended[2], in_order[10..]);
    assert_eq!(appended[3], in_order[12..]);
    assert_eq!(appended[4], in_order[17..]);
    assert!(appended[5].is_empty() && appended[6].is_empty());
    // The ops the snapshot covers stay available to peers.
    assert_eq!(store.len().unwrap(), 18);
}

#[test]
fn memory_storage_keeps_the_same_metadata() {
    let mut store = crdt_core::MemoryStorage::new();
    let b = ReplicaId::new(3);
    store.append(&ops(50, 1, 4)).unwrap();
    store.append(&ops(10, 2, 2)).unwrap();
    assert_eq!(store.high_water().unwrap(), Timestamp::new(53, 0));
    let vv: VersionVector = [(b, Timestamp::new(1, 0).unwrap())].into_iter().collect();
    store.set_peer_frontier(b, &vv).unwrap();
    assert_eq!(store.peer_frontier(b).unwrap(), Some(vv));
    let after: Vec<Op> = store
        .ops_appended_after(4)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(after, ops(10, 2, 2));
    let snap = Snapshot {
        position: 4,
        bytes: vec![1],
    };
    store.save_snapshot(&snap).unwrap();
    assert_eq!(store.snapshot().unwrap(), Some(snap));
}

/// Eight threads commit one op at a time through clones of one handle while each fsync takes
/// a few milliseconds: the commits that arrive during an fsync share the next one.
#[test]
fn concurrent_commits_share_fsyncs() {
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    let dir = TempDir::new("group");
    let backend = CountingBackend::open(&dir.file("s.redb"), Duration::from_millis(3));
    let (syncs, grows) = (backend.syncs.clone(), backend.grows.clone());
    let store = RedbStorage::with_backend(backend, RedbConfig::new()).unwrap();
    let before = (
        store.commits(),
        syncs.load(std::sync::atomic::Ordering::Relaxed),
    );
    append_from_threads(&store, THREADS, EACH);
    let commits = store.commits() - before.0;
    let fsyncs = syncs.load(std::sync::atomic::Ordering::Relaxed) - before.1;
    let appends = THREADS * EACH;
    eprintln!("{appends} concurrent appends: {commits} transactions, {fsyncs} fsyncs");
    assert_eq!(store.len().unwrap(), appends);
    assert!(
        commits * 2 <= appends,
        "{commits} transactions for {appends} concurrent appends: commits were not grouped"
    );
    // Appends one after another each cost a transaction and exactly one fsync (redb's
    // one-phase commit with checksums), nothing more.
    let mut alone = store.clone();
    let start = (
        alone.commits(),
        syncs.load(std::sync::atomic::Ordering::Relaxed),
    );
    for i in 0..5 {
        alone.append(&[op(9_000 + i, 0, 99)]).unwrap();
    }
    assert_eq!(alone.commits() - start.0, 5);
    assert_eq!(
        syncs.load(std::sync::atomic::Ordering::Relaxed) - start.1,
        5,
        "one fsync per durable commit"
    );
    // A batch of many ops, in order or late, is still one fsync, plus one each time redb
    // grows the file (it makes the new length durable first; the file doubles, so this is
    // rare).
    let load = |n: &AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let before = (load(&syncs), load(&grows));
    alone.append(&ops(20_000, 98, 2_000)).unwrap();
    alone.append(&ops(10, 97, 2_000)).unwrap();
    let grown = load(&grows) - before.1;
    eprintln!("two commits of 2,000 ops: the file grew {grown} times");
    assert_eq!(load(&syncs) - before.0, 2 + grown);
}

#[test]
fn relaxed_mode_commits_at_once_and_syncs_in_the_background() {
    let dir = TempDir::new("relaxed");
    let path = dir.file("s.redb");
    let config = RedbConfig::new().commit(CommitMode::Relaxed {
        interval: Duration::from_millis(5),
    });
    {
        let mut store = RedbStorage::open_with(&path, config.clone()).unwrap();
        for i in 0..20 {
            store.append(&[op(100 + i, 0, 1)]).unwrap();
        }
        store.flush().unwrap();
        assert_eq!(store.len().unwrap(), 20);
    }
    // Dropping the last handle syncs; everything is there.
    let store = RedbStorage::open_with(&path, config).unwrap();
    assert_eq!(store.len().unwrap(), 20);
}

#[test]
fn a_second_open_of_the_same_file_fails_cleanly() {
    let dir = TempDir::new("twice");
    let path = dir.file("s.redb");
    let _first = RedbStorage::open(&path).unwrap();
    let second = RedbStorage::open(&path);
    assert!(
        matches!(second, Err(StorageError::Backend(_))),
        "{second:?}"
    );
}

fn write_store(path: &std::path::Path, n: usize) -> Vec<Op> {
    let mut store = RedbStorage::open(path).unwrap();
    store.set_replica_id(ReplicaId::new(1)).unwrap();
    let written = ops(1_000, 1, n);
    for chunk in written.chunks(50) {
        store.append(chunk).unwrap();
    }
    written
}

/// Opening must give an error or exactly what was written: never a panic, never a part.
fn open_is_all_or_error(path: &std::path::Path, written: &[Op], what: &str) -> bool {
    match RedbStorage::open(path) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            false
        }
        Ok(store) => {
            let got: Result<Vec<Op>, _> = store.scan().collect();
            match got {
                Err(_) => false,
                Ok(got) => {
                    assert_eq!(got.len(), written.len(), "{what}: opened with ops missing");
                    assert_eq!(got, written, "{what}: opened with different ops");
                    true
                }
            }
        }
    }
}

#[test]
fn a_foreign_file_is_refused_with_a_clear_error() {
    let dir = TempDir::new("foreign");
    let text = dir.file("notes.txt");
    let content = "these are not the bytes you are looking for\n".repeat(200);
    std::fs::write(&text, &content).unwrap();
    let err = RedbStorage::open(&text).unwrap_err();
    assert!(matches!(err, StorageError::Unreadable(_)), "{err:?}");
    assert_eq!(
        std::fs::read(&text).unwrap(),
        content.as_bytes(),
        "a refused file is left alone"
    );

    // A redb database of someone else.
    let other = dir.file("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, u32, u32> = redb::TableDefinition::new("numbers");
            tx.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = RedbStorage::open(&other).unwrap_err();
    assert!(err.to_string().contains("not a weft store"), "{err}");

    // A weft store of a future format version.
    let future = dir.file("future.redb");
    drop(RedbStorage::open(&future).unwrap());
    {
        let db = redb::Database::open(&future).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = tx.open_table(def).unwrap();
            meta.insert("format", b"weft-store\x00\x09".as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let err = RedbStorage::open(&future).unwrap_err();
    assert!(err.to_string().contains("format version 9"), "{err}");
    // And one of the earlier format 1 (`appends` records, byte-array keys).
    {
        let db = redb::Database::open(&future).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("meta");
            let mut meta = tx.open_table(def).unwrap();
            meta.insert("format", b"weft-store\x00\x01".as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let err = RedbStorage::open(&future).unwrap_err();
    assert!(
        err.to_string()
            .contains("format version 1; this build reads versions 2 and 3"),
        "{err}"
    );

    // An empty file is a new store.
    let empty = dir.file("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(RedbStorage::open(&empty).unwrap().len().unwrap(), 0);
}

#[test]
fn a_truncated_file_gives_an_error_not_a_part() {
    let dir = TempDir::new("trunc");
    let path = dir.file("s.redb");
    let written = write_store(&path, 400);
    let bytes = std::fs::read(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut cuts: Vec<usize> = vec![1, 100, 512, 4096, bytes.len() / 2, bytes.len() - 1];
    cuts.extend((0..10).map(|_| rng.random_range(1..bytes.len())));
    let mut opened = 0;
    for cut in cuts {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        opened += usize::from(open_is_all_or_error(
            &path,
            &written,
            &format!("cut at {cut}"),
        ));
    }
    eprintln!("truncations that still opened whole: {opened}");
}

#[test]
fn a_corrupt_file_gives_an_error_not_garbage() {
    let dir = TempDir::new("corrupt");
    let path = dir.file("s.redb");
    let written = write_store(&path, 400);
    let bytes = std::fs::read(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut refused, mut harmless) = (0, 0);
    for round in 0..40 {
        let mut damaged = bytes.clone();
        // Flip a few bytes, sometimes in the header, mostly anywhere.
        for _ in 0..rng.random_range(1..4) {
            let at = if round % 4 == 0 {
                rng.random_range(0..4096.min(damaged.len()))
            } else {
                rng.random_range(0..damaged.len())
            };
            damaged[at] ^= rng.random_range(1..=255u8);
        }
        std::fs::write(&path, &damaged).unwrap();
        if open_is_all_or_error(&path, &written, &format!("round {round}")) {
            harmless += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("corruptions refused: {refused}, harmless (unused bytes): {harmless}");
    assert!(refused > 0);
}

/// A new store is created under a temporary name and renamed into place: a creation killed
/// half-way (here: a stale, unfinished temporary file) never leaves a file that cannot open.
#[test]
fn a_new_store_is_created_whole_or_not_at_all() {
    let dir = TempDir::new("create");
    let path = dir.file("s.redb");
    let creating = dir.file("s.redb.creating");
    std::fs::write(&creating, [0u8; 4096]).unwrap();
    {
        let mut store = RedbStorage::open(&path).unwrap();
        store.append(&ops(100, 1, 3)).unwrap();
    }
    assert!(!creating.exists(), "the temporary file is gone");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["s.redb", "s.redb-log"],
        "the store and its commit log"
    );
    assert_eq!(RedbStorage::open(&path).unwrap().len().unwrap(), 3);
}

/// The store fills the space redb adds to the file with zeros ahead of redb's writes (never
/// past redb's length), so after a crash a file can end in zeros redb never wrote. Such a
/// file, and one with zeros appended beyond redb's length, opens whole or with an error.
#[test]
fn trailing_zeros_beyond_the_data_open() {
    let dir = TempDir::new("zeros");
    let path = dir.file("s.redb");
    let written = write_store(&path, 3_000);
    let bytes = std::fs::read(&path).unwrap();
    for extra in [4096, 1 << 20, 12_345] {
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + extra, 0);
        std::fs::write(&path, &padded).unwrap();
        let opened = open_is_all_or_error(&path, &written, &format!("{extra} zeros appended"));
        if extra % 4096 == 0 {
            assert!(opened, "{extra} zeros appended: the store does not open");
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let mut store = RedbStorage::open(&path).unwrap();
    assert_eq!(all(&store), written);
    // Writes after reopening go through the fill again.
    store.append(&ops(100_000, 1, 5_000)).unwrap();
    drop(store);
    let store = RedbStorage::open(&path).unwrap();
    assert_eq!(store.len().unwrap(), 8_000);
}

/// An op whose encoding is `len` bytes long (version byte included).
fn op_of_len(len: usize) -> Op {
    let mut o = op(1, 0, 1);
    let base = crdt_core::codec::encoded_len(&o);
    let Payload::Write(Value::String(s)) = &mut o.payload else {
        unreachable!("the helper writes a string")
    };
    // The string's length prefix grows from 1 to 4 bytes on the way to `len`.
    s.push_str(&"x".repeat(len - base - 3));
    assert_eq!(crdt_core::codec::encoded_len(&o), len);
    o
}

#[test]
fn an_op_too_large_to_read_back_is_refused_and_the_store_stays_whole() {
    use crdt_core::codec::MAX_OP_BYTES;
    let dir = TempDir::new("too-large");
    let path = dir.file("s.redb");
    let small = op(2, 0, 1);
    let largest = op_of_len(MAX_OP_BYTES);
    let mut over = op_of_len(MAX_OP_BYTES + 1);
    over.id = op(3, 0, 1).id;
    assert_eq!(crdt_core::codec::encoded_len(&over), MAX_OP_BYTES + 1);
    let mut memory = MemoryStorage::new();
    {
        let mut store = RedbStorage::open(&path).unwrap();
        for store in [&mut store as &mut dyn Storage, &mut memory] {
            // Refused whole: the small op beside it is not stored either.
            let err = store.append(&[small.clone(), over.clone()]).unwrap_err();
            assert!(
                matches!(err, StorageError::OpTooLarge { id, bytes }
                    if id == over.id && bytes == MAX_OP_BYTES + 1),
                "{err}"
            );
            assert_eq!(store.len().unwrap(), 0);
            store.append(&[small.clone(), largest.clone()]).unwrap();
        }
    }
    // The largest op there may be reads back, from disk and from memory.
    let store = RedbStorage::open(&path).unwrap();
    for store in [&store as &dyn Storage, &memory] {
        let all: Vec<Op> = store.scan().collect::<Result<_, _>>().unwrap();
        assert_eq!(all, [largest.clone(), small.clone()]);
        let bytes = store.get_encoded(largest.id).unwrap().unwrap();
        assert_eq!(bytes.len() + 1, MAX_OP_BYTES);
    }
}
