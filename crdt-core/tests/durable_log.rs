//! The commit log of the redb store: a durable commit of ops is one log record and one log
//! sync; the log folds into redb when it is full, on other writes and on close; the records
//! of a crashed process replay on open; a commit that fails halfway stops the store.

mod durable_util;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crdt_core::{
    Op, OpId, PowerLossDisk, RedbConfig, RedbStorage, ReplicaId, Storage, VersionVector,
};
use durable_util::*;
use redb::StorageBackend;

/// A file backend counting its syncs, with an optional delay in each.
fn counting(path: &std::path::Path, delay: Duration) -> (CountingBackend, Arc<AtomicU64>) {
    let backend = CountingBackend::open(path, delay);
    let syncs = backend.syncs.clone();
    (backend, syncs)
}

fn ids(store: &RedbStorage) -> Vec<OpId> {
    store.scan().map(|op| op.expect("decodes").id).collect()
}

#[test]
fn a_commit_is_one_log_sync_and_the_log_folds_when_full() {
    let dir = TempDir::new("log-syncs");
    let (db, db_syncs) = counting(&dir.file("s.redb"), Duration::ZERO);
    let (log, log_syncs) = counting(&dir.file("s.redb-log"), Duration::ZERO);
    let config = RedbConfig::new().log_bytes(8 << 10);
    let mut store = RedbStorage::with_backends(db, log, config).unwrap();
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let start = (load(&db_syncs), load(&log_syncs));
    for i in 0..5 {
        store.append(&[op(100 + i, 0, 1)]).unwrap();
    }
    assert_eq!(load(&log_syncs) - start.1, 5, "one log sync per commit");
    assert_eq!(load(&db_syncs) - start.0, 0, "redb is not synced");

    // 200 more: the 8 KiB log fills every few dozen records and folds (one redb sync, which
    // stands for that commit's log sync).
    let before = (load(&db_syncs), load(&log_syncs));
    for i in 0..200 {
        store.append(&[op(1_000 + i, 0, 1)]).unwrap();
    }
    let folds = load(&db_syncs) - before.0;
    let logged = load(&log_syncs) - before.1;
    eprintln!("200 commits into an 8 KiB log: {logged} log syncs, {folds} folds");
    assert!((2..=10).contains(&folds), "{folds} folds");
    assert!(logged + folds >= 200 && logged < 200, "{logged} log syncs");

    // A write other than ops folds; so does a batch bigger than the log.
    let before = (load(&db_syncs), load(&log_syncs));
    let vv: VersionVector = std::iter::once((ReplicaId::new(1), op(1, 0, 1).id.ts)).collect();
    store.set_peer_frontier(ReplicaId::new(2), &vv).unwrap();
    store.append(&ops(50_000, 2, 300)).unwrap();
    assert_eq!(load(&log_syncs) - before.1, 0);
    assert!(load(&db_syncs) - before.0 >= 2);
    assert_eq!(store.len().unwrap(), 505);
}

#[test]
fn concurrent_commits_share_log_syncs() {
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    let dir = TempDir::new("log-group");
    let (db, _) = counting(&dir.file("s.redb"), Duration::ZERO);
    let (log, log_syncs) = counting(&dir.file("s.redb-log"), Duration::from_millis(3));
    let store = RedbStorage::with_backends(db, log, RedbConfig::new()).unwrap();
    let before = (store.commits(), log_syncs.load(Ordering::Relaxed));
    append_from_threads(&store, THREADS, EACH);
    let commits = store.commits() - before.0;
    let syncs = log_syncs.load(Ordering::Relaxed) - before.1;
    let appends = THREADS * EACH;
    eprintln!("{appends} concurrent appends: {commits} transactions, {syncs} log syncs");
    assert_eq!(store.len().unwrap(), appends);
    assert_eq!(syncs, commits, "one log sync per group");
    assert!(
        commits * 2 <= appends,
        "commits were not grouped: {commits}"
    );
}

/// A process that dies with records in the log (no fold on close): the next open replays
/// them, in order, so append order and the late records come back too, even when it opens
/// without a log of its own; a clean close then leaves nothing to replay.
#[test]
fn records_of_a_crashed_process_replay_on_open() {
    let disk = PowerLossDisk::new();
    let log = disk.another_file();
    let config = RedbConfig::new();
    let mut store = RedbStorage::with_backends(disk.clone(), log.clone(), config.clone()).unwrap();
    store.set_replica_id(ReplicaId::new(1)).unwrap();
    let mut appended: Vec<Op> = Vec::new();
    for (ms, replica, n) in [(100, 1, 3), (50, 2, 2), (200, 1, 1), (10, 3, 4)] {
        let batch = ops(ms, replica, n);
        store.append(&batch).unwrap();
        appended.extend(batch);
    }
    // The process dies: what it wrote stays (the power stays on), nothing more is written.
    disk.cut_after(0);
    drop(store);
    let keep_all = |_| 1;
    let disk = PowerLossDisk::from_image(disk.after_cut(keep_all));
    let log = disk.another_file_from_image(log.after_cut(keep_all));
    let no_log = RedbConfig::new().log_bytes(0);
    let store = RedbStorage::with_backends(disk.clone(), log.clone(), no_log).unwrap();
    assert!(store.commits() >= 2, "the records were replayed and folded");
    let after: Vec<Op> = store
        .ops_appended_after(0)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(after, appended, "append order survives the replay");
    assert_eq!(store.replica_id().unwrap(), Some(ReplicaId::new(1)));
    drop(store);
    let store = RedbStorage::with_backends(disk, log, config).unwrap();
    assert_eq!(
        store.commits(),
        0,
        "a clean close folded the log: nothing to replay"
    );
    assert_eq!(store.len().unwrap(), appended.len() as u64);
}

/// A log backend whose syncs fail on demand (the disk reports an error).
#[derive(Debug)]
struct FailingSyncs {
    inner: PowerLossDisk,
    fail: Arc<AtomicBool>,
}

impl StorageBackend for FailingSyncs {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(io::Error::other("the disk reports an error"));
        }
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }
}

/// After a log sync fails, the store refuses every later write (a retried fsync can report
/// success for data the kernel dropped) and does not fold on close, so the failed commit never
/// becomes durable by the back door; reopening gives the acknowledged commits, and the failed
/// one either wholly or not at all.
#[test]
fn a_failed_log_sync_stops_the_store_until_it_is_reopened() {
    let disk = PowerLossDisk::new();
    let log = disk.another_file();
    let fail = Arc::new(AtomicBool::new(false));
    let failing = FailingSyncs {
        inner: log.clone(),
        fail: fail.clone(),
    };
    let mut store = RedbStorage::with_backends(disk.clone(), failing, RedbConfig::new()).unwrap();
    store.append(&ops(100, 1, 2)).unwrap();
    fail.store(true, Ordering::Relaxed);
    assert!(store.append(&ops(200, 1, 2)).is_err());
    fail.store(false, Ordering::Relaxed);
    let err = store.append(&ops(300, 1, 2)).unwrap_err();
    assert!(err.to_string().contains("reopen the store"), "{err}");
    assert!(store.set_high_water(op(400, 0, 1).id.ts).is_err());
    assert_eq!(
        store.len().unwrap(),
        2,
        "the failed commit is not visible either"
    );
    drop(store);
    let store = RedbStorage::with_backends(disk, log, RedbConfig::new()).unwrap();
    let present = ids(&store);
    let first: Vec<OpId> = ops(100, 1, 2).iter().map(|op| op.id).collect();
    let failed: Vec<OpId> = ops(200, 1, 2).iter().map(|op| op.id).collect();
    assert!(
        present == first || present == [first, failed].concat(),
        "{present:?}"
    );
}

/// `open` keeps the log in `<path>-log`, filled to its capacity; a store whose log was
/// removed opens with what redb holds (every commit before the last fold) and makes a new log.
#[test]
fn the_log_file_sits_beside_the_store() {
    let dir = TempDir::new("log-file");
    let path = dir.file("s.redb");
    let log = dir.file("s.redb-log");
    {
        let mut store = RedbStorage::open(&path).unwrap();
        store.append(&ops(100, 1, 3)).unwrap();
    }
    assert_eq!(
        std::fs::metadata(&log).unwrap().len(),
        RedbConfig::new().log_bytes,
        "the log is filled to its capacity"
    );
    std::fs::remove_file(&log).unwrap();
    let mut store = RedbStorage::open(&path).unwrap();
    assert_eq!(
        store.len().unwrap(),
        3,
        "closed cleanly: all of it was folded"
    );
    store.append(&ops(200, 1, 1)).unwrap();
    assert!(log.exists());
    drop(store);
    let store = RedbStorage::open_with(&path, RedbConfig::new().log_bytes(0)).unwrap();
    assert_eq!(
        store.len().unwrap(),
        4,
        "a store opens without its log once folded"
    );
}

/// Between folds redb takes commits without syncing them, and it cannot reuse a page freed
/// since the last durable commit: the file must still stay small, because each commit's
/// copied pages are freed by the next one (pages never synced are reused at once).
#[test]
fn the_redb_file_stays_small_between_folds() {
    let dir = TempDir::new("log-growth");
    let logged = dir.file("logged.redb");
    let plain = dir.file("plain.redb");
    let mut a = RedbStorage::open(&logged).unwrap();
    let mut b = RedbStorage::open_with(&plain, RedbConfig::new().log_bytes(0)).unwrap();
    for i in 0..2_000 {
        let batch = [op(1_000 + i, 0, 1)];
        a.append(&batch).unwrap();
        b.append(&batch).unwrap();
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let (with_log, without) = (size(&logged), size(&plain));
    eprintln!("2,000 one-op commits: {with_log} bytes with the log, {without} without");
    assert!(
        with_log <= 2 * without.max(1 << 20),
        "{with_log} bytes with the log, {without} without"
    );
}
