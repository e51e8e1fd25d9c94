//! Helpers of the durable-store tests: temporary directories, synthetic ops, and a redb
//! storage backend that counts syncs. The power-loss disk is the crate's own
//! (`crdt_core::PowerLossDisk`).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crdt_core::{Op, OpId, Payload, ReplicaId, Value};
use hlc::Timestamp;
use redb::StorageBackend;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("weft-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A register write by `replica` at `(ms, counter)`.
pub fn op(ms: u64, counter: u16, replica: u64) -> Op {
    let id = OpId::new(
        Timestamp::new(ms, counter).expect("valid timestamp"),
        ReplicaId::new(replica),
    );
    Op {
        id,
        schema_version: 1,
        collection: "users".into(),
        key: format!("k{ms}-{counter}-{replica}"),
        field: "name".into(),
        deps: Vec::new(),
        payload: Payload::Write(Value::String(format!("value of {id}"))),
    }
}

/// `n` ops of one replica with increasing timestamps from `(ms, 0)`.
pub fn ops(ms: u64, replica: u64, n: usize) -> Vec<Op> {
    (0..n).map(|i| op(ms + i as u64, 0, replica)).collect()
}

/// `threads` threads append `each` ops apiece, one op per commit, through clones of `store`
/// (thread `t` writes as replica `t`).
pub fn append_from_threads(store: &crdt_core::RedbStorage, threads: u64, each: u64) {
    use crdt_core::Storage;
    std::thread::scope(|s| {
        for t in 0..threads {
            let mut store = store.clone();
            s.spawn(move || {
                for i in 0..each {
                    store.append(&[op(1_000 + i, 0, t)]).expect("append");
                }
            });
        }
    });
}

/// A file backend that counts `sync_data` calls and the times the file grows, and may sleep
/// in each sync (to make concurrent committers queue up deterministically enough).
#[derive(Debug)]
pub struct CountingBackend {
    pub inner: redb::backends::FileBackend,
    pub syncs: Arc<AtomicU64>,
    pub grows: Arc<AtomicU64>,
    pub sync_delay: std::time::Duration,
}

impl CountingBackend {
    /// The file at `path`, created if missing, with counters at zero and `sync_delay` in each
    /// sync.
    pub fn open(path: &Path, sync_delay: std::time::Duration) -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .expect("the test file opens");
        Self {
            inner: redb::backends::FileBackend::new(file).expect("the test file locks"),
            syncs: Arc::default(),
            grows: Arc::default(),
            sync_delay,
        }
    }
}

impl StorageBackend for CountingBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        if len > self.inner.len()? {
            self.grows.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(self.sync_delay);
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }
}
