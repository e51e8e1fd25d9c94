//! The embedded durable store: [`RedbStorage`], the op log in a redb file.
//!
//! Ops are keyed by their [`OpId`](crate::OpId) read as a big-endian `u128`, so the log reads
//! back in op id order; values are the codec's op encoding. Only ops appended below the highest
//! stored id are also recorded, with their append position: every other op's position follows
//! from the ops table, so a commit of ops in id order writes one table. Every write (ops, high-water mark, peer
//! frontiers, snapshot) goes through one group-commit queue: the first writer to find no commit
//! in progress commits everything queued at once, so concurrent commits share one fsync: that
//! of one record appended to the commit log beside the file (`log.rs`), which is folded into
//! redb with a durable transaction now and then. The file is opened through `ZeroFill` (`zero_fill.rs`), which writes zeros into the space
//! redb adds to the file just ahead of redb's writes, so that commits overwrite allocated blocks
//! and their fsync needs no filesystem metadata commit. `docs/design.md` ("Storage") has the
//! whole picture, `docs/wire-format.md` the bytes.

mod commit;
mod format;
mod log;
mod power_loss;
mod zero_fill;

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use hlc::Timestamp;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use self::commit::{Batch, Committer};
use self::format::{KEY_HIGH_WATER, KEY_REPLICA, LATE, META, OPS, PEERS, SNAPSHOT, backend};
use self::log::Log;
use self::zero_fill::ZeroFill;
use crate::codec::{self, EncodedOps};
use crate::{Op, OpId, OpIter, ReplicaId, Snapshot, Storage, StorageError, VersionVector};

pub use self::power_loss::PowerLossDisk;

/// When a commit returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CommitMode {
    /// A commit returns only once its ops are on disk (fsync). Concurrent commits share one
    /// fsync. The default.
    #[default]
    Durable,
    /// A commit returns once its ops are in the file but not yet synced; a background thread
    /// syncs every `interval` (and dropping the last handle syncs). A crash or power cut loses
    /// at most the commits of the last interval, never the file: it opens at the last sync.
    Relaxed {
        /// How often the background thread syncs.
        interval: Duration,
    },
}

/// How a [`RedbStorage`] opens its file.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedbConfig {
    /// When commits return.
    pub commit: CommitMode,
    /// Verify the checksum of every page on open, so that a file damaged on disk fails to open
    /// with [`StorageError::Unreadable`] rather than being trusted. Costs a read of the whole
    /// file. Default: on. (After a crash redb verifies the file whatever this says.) Turn it
    /// off only for files you trust: redb may panic on a damaged file it did not verify (the
    /// `storage_open` fuzz target finds such files within seconds).
    pub verify_on_open: bool,
    /// Bytes of redb's page cache. Default: 64 MiB (memory holds the materialized state; the
    /// store is read on open and when peers ask for ops).
    pub cache_bytes: usize,
    /// Capacity of the commit log beside the redb file, in bytes; 0: no log (the records of
    /// a log an earlier open left are still replayed first). Default: 1 MiB.
    ///
    /// With a log, a durable commit of ops appends one record to the log and syncs it (one
    /// small write), and the ops reach redb's file unsynced; redb is synced (a *fold*) when
    /// the log is full, on other writes (peer frontiers, snapshots), on `flush` and on close.
    /// Without one, every durable commit is a synced redb transaction (several pages). A
    /// group of commits bigger than the log folds at once. Up to 256 MiB; the log is read
    /// whole on open. Only durable mode writes it.
    pub log_bytes: u64,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self {
            commit: CommitMode::Durable,
            verify_on_open: true,
            cache_bytes: 64 << 20,
            log_bytes: log::DEFAULT_CAPACITY,
        }
    }
}

impl RedbConfig {
    /// The defaults: durable commits, verified on open.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this commit mode.
    pub fn commit(mut self, mode: CommitMode) -> Self {
        self.commit = mode;
        self
    }

    /// With or without the checksum verification on open.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// With this page cache size.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// With a commit log of this capacity (0: none).
    pub fn log_bytes(mut self, bytes: u64) -> Self {
        self.log_bytes = bytes;
        self
    }
}

/// The durable op log in a redb file: the default [`Storage`].
///
/// A cheap, cloneable handle: clones share the database and its group-commit queue, so
/// several threads (or a background snapshot writer) can commit at once and share fsyncs. At
/// most one process opens a file; a second open fails with [`StorageError::Backend`].
///
/// ```
/// use crdt_core::{RedbStorage, Storage};
/// let dir = std::env::temp_dir().join(format!("weft-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("store.redb");
/// let store = RedbStorage::open(&path)?;
/// assert_eq!(store.len()?, 0);
/// drop(store);
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RedbStorage {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Committer>,
    replica: Mutex<Option<ReplicaId>>,
    flusher: Option<Flusher>,
    /// The snapshot save running on another thread, if any: at most one at a time.
    background: Mutex<Option<JoinHandle<Result<(), StorageError>>>>,
}

struct Flusher {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl RedbStorage {
    /// Opens the store at `path`, creating it if the file does not exist or is empty, with the
    /// default [`RedbConfig`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(path, RedbConfig::default())
    }

    /// [`RedbStorage::open`] with a configuration.
    ///
    /// The commit log (unless [`RedbConfig::log_bytes`] is 0) is the file `<path>-log`,
    /// created beside the store; it belongs with the store file (copy or move both), and a
    /// store opened without it loses the commits it held since the last fold.
    ///
    /// A new store is created whole or not at all: it is built under a temporary name next to
    /// `path` (`<path>.creating`) and renamed into place once its tables exist, so a process
    /// killed while creating it leaves no half-made file that could never be opened.
    pub fn open_with(path: impl AsRef<Path>, config: RedbConfig) -> Result<Self, StorageError> {
        let path = path.as_ref();
        let fresh = match std::fs::metadata(path) {
            Ok(meta) => meta.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StorageError::Backend(Box::new(e))),
        };
        if fresh {
            create_whole(path, &config)?;
        }
        let builder = builder(&config);
        // Without a log of its own the store still replays one left by an earlier open.
        let log = Some(log_path(path)).filter(|p| config.log_bytes > 0 || p.exists());
        Self::start(
            || create_file(&builder, path),
            log.map(|p| move || open_log_file(&p)),
            config,
        )
    }

    /// Opens (or creates) the store on any redb [`StorageBackend`](redb::StorageBackend): a
    /// file, memory, or a fault-injecting backend in tests. With no commit log: every durable
    /// commit is a synced redb transaction ([`RedbStorage::with_backends`] has one).
    pub fn with_backend(
        backend: impl redb::StorageBackend,
        config: RedbConfig,
    ) -> Result<Self, StorageError> {
        let builder = builder(&config);
        Self::start(
            move || builder.create_with_backend(ZeroFill::new(backend)?),
            None::<fn() -> _>,
            config,
        )
    }

    /// [`RedbStorage::with_backend`] with the commit log on a second backend (of
    /// [`RedbConfig::log_bytes`]; with 0, the log's records are replayed and no more are
    /// written). Both must persist together: they are one store.
    pub fn with_backends(
        backend: impl redb::StorageBackend,
        log: impl redb::StorageBackend,
        config: RedbConfig,
    ) -> Result<Self, StorageError> {
        let builder = builder(&config);
        Self::start(
            move || builder.create_with_backend(ZeroFill::new(backend)?),
            Some(move || Ok(Box::new(log) as Box<dyn redb::StorageBackend>)),
            config,
        )
    }

    /// Opens the database, then the log (`log` gives its backend), and replays the log.
    fn start(
        open: impl FnOnce() -> Result<redb::Database, redb::DatabaseError>,
        log: Option<impl FnOnce() -> Result<Box<dyn redb::StorageBackend>, StorageError>>,
        config: RedbConfig,
    ) -> Result<Self, StorageError> {
        // redb is trusted to report damage as errors; a panic on a hostile file is caught too.
        let guarded = catch_unwind(AssertUnwindSafe(|| -> Result<_, StorageError> {
            let db = open().map_err(open_error)?;
            format::init_or_check(&db)?;
            let replica = read_meta(&db, KEY_REPLICA)?
                .map(|b| format::decode_replica(&b))
                .transpose()?;
            let state = format::log_state(&db)?;
            Ok((db, replica, state))
        }));
        let (db, replica, (generation, store_id)) = guarded.unwrap_or_else(|_| {
            Err(StorageError::Unreadable(
                "the file is damaged (the database panicked while opening it)".into(),
            ))
        })?;
        let (log, replay) = match log {
            None => (None, Vec::new()),
            Some(open_log) => {
                let (log, replay) = Log::open(open_log()?, config.log_bytes, generation, store_id)?;
                (Some(log), replay)
            }
        };
        let relaxed = matches!(config.commit, CommitMode::Relaxed { .. });
        let core = Arc::new(Committer::new(db, relaxed, log));
        core.replay(replay)?;
        let flusher = match config.commit {
            CommitMode::Durable => None,
            CommitMode::Relaxed { interval } => Some(Flusher::spawn(core.clone(), interval)?),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                core,
                replica: Mutex::new(replica),
                flusher,
                background: Mutex::new(None),
            }),
        })
    }

    /// Appends ops from a shared handle (what [`Storage::append`] does): all or nothing,
    /// durable on return in [`CommitMode::Durable`], sharing one transaction and one fsync
    /// with the appends of other threads that arrive while a commit is in progress.
    pub fn append_shared(&self, ops: &[Op]) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(ops.len() * 64);
        let mut keyed = Vec::with_capacity(ops.len());
        for op in ops {
            let start = encoded.len();
            codec::encode_op_into(op, &mut encoded);
            keyed.push(Self::keyed(op.id, start, encoded.len())?);
        }
        self.submit_ops(keyed, encoded)
    }

    /// [`RedbStorage::append_shared`] for ops a peer sent as bytes (what
    /// [`Storage::append_encoded`] does): their bytes are stored as they are (with the version
    /// byte of an encoded op before each), no op decoded or encoded.
    pub fn append_encoded_shared(&self, ops: &EncodedOps) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(ops.as_bytes().len() + ops.len());
        let mut keyed = Vec::with_capacity(ops.len());
        for op in ops.iter() {
            let start = encoded.len();
            encoded.push(codec::FORMAT_VERSION);
            encoded.extend_from_slice(op.body());
            keyed.push(Self::keyed(op.id(), start, encoded.len())?);
        }
        self.submit_ops(keyed, encoded)
    }

    /// An op's key and the end of its encoding, `start..end` of a batch; an op too large to
    /// read back is refused.
    fn keyed(id: OpId, start: usize, end: usize) -> Result<(u128, usize), StorageError> {
        let bytes = end - start;
        if bytes > codec::MAX_OP_BYTES {
            return Err(StorageError::OpTooLarge { id, bytes });
        }
        Ok((format::key(id), end))
    }

    fn submit_ops(&self, ops: Vec<(u128, usize)>, encoded: Vec<u8>) -> Result<(), StorageError> {
        self.inner.core.submit(Batch {
            ops,
            encoded,
            ..Batch::default()
        })
    }

    /// Saves a snapshot from a shared handle (what [`Storage::save_snapshot`] does), so that a
    /// background thread can write it while the replica goes on committing.
    pub fn save_snapshot_shared(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let position = self.append_position()?;
        if snapshot.position > position {
            return Err(StorageError::Backend(
                format!(
                    "a snapshot at position {} is ahead of the log ({position} ops)",
                    snapshot.position
                )
                .into(),
            ));
        }
        self.inner.core.submit(Batch {
            snapshot: Some(format::encode_snapshot(snapshot.position, &snapshot.bytes)),
            ..Batch::default()
        })
    }

    /// Waits for a snapshot being written in the background, then makes every commit so far
    /// durable now (needed only in [`CommitMode::Relaxed`]; in durable mode commits already
    /// are). Returns the background write's error, if it failed.
    pub fn flush(&self) -> Result<(), StorageError> {
        let previous = self
            .inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(previous) = previous {
            previous.join().map_err(|_| {
                StorageError::Backend("the background snapshot writer panicked".into())
            })??;
        }
        self.inner.core.flush()
    }

    /// How many redb write transactions this store has committed since it was opened,
    /// including those that replayed the commit log on open. In durable mode each commit's
    /// transaction costs one fsync, of the log or (a fold) of redb; concurrent commits share
    /// one.
    pub fn commits(&self) -> u64 {
        self.inner.core.commits.load(Ordering::Relaxed)
    }

    fn read(&self) -> Result<redb::ReadTransaction, StorageError> {
        self.inner.core.db.begin_read().map_err(backend)
    }
}

impl Storage for RedbStorage {
    fn replica_id(&self) -> Result<Option<ReplicaId>, StorageError> {
        Ok(*self
            .inner
            .replica
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn set_replica_id(&mut self, id: ReplicaId) -> Result<(), StorageError> {
        self.inner.core.submit(Batch {
            replica: Some(id.as_u64()),
            ..Batch::default()
        })?;
        *self
            .inner
            .replica
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(id);
        Ok(())
    }

    fn append(&mut self, ops: &[Op]) -> Result<(), StorageError> {
        self.append_shared(ops)
    }

    fn append_encoded(&mut self, ops: &EncodedOps) -> Result<(), StorageError> {
        self.append_encoded_shared(ops)
    }

    fn contains(&self, id: OpId) -> Result<bool, StorageError> {
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        Ok(table.get(format::key(id)).map_err(backend)?.is_some())
    }

    fn get(&self, id: OpId) -> Result<Option<Op>, StorageError> {
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        let key = format::key(id);
        let found = table.get(key).map_err(backend)?;
        found
            .map(|v| format::decode_stored(key, v.value()))
            .transpose()
    }

    /// The stored bytes after the version byte, once they have been checked to decode to the
    /// op this id names (a peer is never sent bytes from a damaged disk); saves re-encoding.
    fn get_encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, StorageError> {
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        let key = format::key(id);
        let Some(found) = table.get(key).map_err(backend)? else {
            return Ok(None);
        };
        Ok(Some(Cow::Owned(format::checked_encoding(
            key,
            found.value(),
        )?)))
    }

    /// One read transaction and one walk along the table for the batch (see
    /// [`Storage::get_encoded_each`]), each op checked as in [`Storage::get_encoded`].
    fn get_encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), StorageError> {
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        let seek = |key: u128| {
            let range = table.range::<u128>(key..).map_err(backend)?;
            Ok(range.map(|entry| {
                let (k, v) = entry.map_err(backend)?;
                Ok((k.value(), v))
            }))
        };
        let lookup = |key: u128| table.get(key).map_err(backend);
        let mut reads = crate::storage::SortedReads::new();
        for id in ids {
            let key = format::key(id);
            let bytes = match reads.get(key, seek, lookup)? {
                Some(found) => Some(Cow::Owned(format::checked_encoding(key, found.value())?)),
                None => None,
            };
            if !f(id, bytes) {
                break;
            }
        }
        Ok(())
    }

    fn scan(&self) -> OpIter<'_> {
        self.ops_filtered(None)
    }

    fn ops_after(&self, vv: &VersionVector) -> OpIter<'_> {
        self.ops_filtered(Some(vv.clone()))
    }

    fn len(&self) -> Result<u64, StorageError> {
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        table.len().map_err(backend)
    }

    /// The higher of the stored mark and the last op's timestamp (appends do not write the
    /// mark: the ops table's last key is the highest stored op).
    fn high_water(&self) -> Result<Option<Timestamp>, StorageError> {
        let stored = read_meta(&self.inner.core.db, KEY_HIGH_WATER)?
            .map(|b| format::decode_timestamp(&b))
            .transpose()?;
        let table = self.read()?.open_table(OPS).map_err(backend)?;
        let last = table.last().map_err(backend)?;
        Ok(stored.max(last.map(|(k, _)| format::timestamp_of(k.value()))))
    }

    fn set_high_water(&mut self, ts: Timestamp) -> Result<(), StorageError> {
        self.inner.core.submit(Batch {
            high_water: Some(ts),
            ..Batch::default()
        })
    }

    fn peer_frontier(&self, peer: ReplicaId) -> Result<Option<VersionVector>, StorageError> {
        let table = self.read()?.open_table(PEERS).map_err(backend)?;
        let found = table.get(peer.as_u64()).map_err(backend)?;
        found
            .map(|v| format::decode_frontier(peer, v.value()))
            .transpose()
    }

    fn set_peer_frontier(
        &mut self,
        peer: ReplicaId,
        vv: &VersionVector,
    ) -> Result<(), StorageError> {
        self.inner.core.submit(Batch {
            peers: vec![(peer.as_u64(), format::encode_frontier(vv))],
            ..Batch::default()
        })
    }

    fn append_position(&self) -> Result<u64, StorageError> {
        self.len()
    }

    fn ops_appended_after(&self, position: u64) -> OpIter<'_> {
        match self.appended_after(position) {
            Ok(iter) => iter,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        let table = self.read()?.open_table(SNAPSHOT).map_err(backend)?;
        let found = table.get(0).map_err(backend)?;
        found
            .map(|v| format::decode_snapshot(v.value()))
            .transpose()
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.save_snapshot_shared(snapshot)
    }

    /// Writes the snapshot on another thread through a shared handle (it joins the
    /// group-commit queue like any write), so the replica keeps committing meanwhile. At most
    /// one such write runs: this call first waits for the previous one and returns its error.
    fn save_snapshot_in_background(&mut self, snapshot: Snapshot) -> Result<(), StorageError> {
        let mut slot = self
            .inner
            .background
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = slot.take() {
            previous.join().map_err(|_| {
                StorageError::Backend("the background snapshot writer panicked".into())
            })??;
        }
        let handle = self.clone();
        *slot = Some(std::thread::spawn(move || {
            handle.save_snapshot_shared(&snapshot)
        }));
        Ok(())
    }
}

impl RedbStorage {
    /// Stored ops in op id order, those `vv` covers left out (decoded only when kept).
    fn ops_filtered(&self, vv: Option<VersionVector>) -> OpIter<'_> {
        let range = self
            .read()
            .and_then(|r| r.open_table(OPS).map_err(backend))
            .and_then(|t| t.range::<u128>(..).map_err(backend));
        let range = match range {
            Ok(range) => range,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(range.filter_map(move |entry| {
            let (k, v) = match entry {
                Ok(kv) => kv,
                Err(e) => return Some(Err(backend(e))),
            };
            let key = k.value();
            if let Some(vv) = &vv
                && vv.covers(format::id_of(key))
            {
                return None;
            }
            Some(format::decode_stored(key, v.value()))
        }))
    }

    /// The ops appended after the first `position`, in append order, rebuilt from the two
    /// tables: the late ops carry their positions; every other op was appended in id order
    /// and above everything stored before it, so the ones after `position` are the highest
    /// `count - position - late ones` ids outside the late set, in id order, filling the
    /// positions the late ops leave free. Costs a walk over the ops returned, not the log.
    fn appended_after(&self, position: u64) -> Result<OpIter<'_>, StorageError> {
        let read = self.read()?;
        let ops = read.open_table(OPS).map_err(backend)?;
        let count = ops.len().map_err(backend)?;
        let after = count.saturating_sub(position);
        let mut late = Vec::new();
        for entry in read
            .open_table(LATE)
            .map_err(backend)?
            .range(position..)
            .map_err(backend)?
        {
            let (p, key) = entry.map_err(backend)?;
            let p = p.value();
            // Checked before growing the list: a damaged table cannot make it outgrow the log.
            if p >= count || late.len() as u64 >= after {
                return Err(StorageError::Unreadable(format!(
                    "a late op at position {p} is outside the log of {count} ops"
                )));
            }
            late.push((p, key.value()));
        }
        let late_keys: std::collections::HashSet<u128> = late.iter().map(|&(_, k)| k).collect();
        let in_order = after - late.len() as u64;
        // The lowest of the ops appended in order after `position`.
        let mut first = None;
        if in_order > 0 {
            let mut seen = 0;
            for entry in ops.range::<u128>(..).map_err(backend)?.rev() {
                let key = entry.map_err(backend)?.0.value();
                if late_keys.contains(&key) {
                    continue;
                }
                seen += 1;
                if seen == in_order {
                    first = Some(key);
                    break;
                }
            }
            if first.is_none() {
                return Err(StorageError::Unreadable(format!(
                    "the log holds {count} ops but fewer in append order than its late \
                     records leave"
                )));
            }
        }
        let mut in_id_order = match first {
            Some(first) => Some(ops.range(first..).map_err(backend)?),
            None => None,
        };
        let mut late = late.into_iter().peekable();
        let mut next_position = position;
        Ok(Box::new(std::iter::from_fn(move || {
            if next_position >= count {
                return None;
            }
            let at = next_position;
            next_position += 1;
            if let Some((_, key)) = late.next_if(|&(p, _)| p == at) {
                return Some(match ops.get(key) {
                    Ok(Some(v)) => format::decode_stored(key, v.value()),
                    Ok(None) => Err(StorageError::Unreadable(format!(
                        "op {} is recorded as appended late but is not in the log",
                        format::id_of(key)
                    ))),
                    Err(e) => Err(backend(e)),
                });
            }
            loop {
                let Some(entry) = in_id_order.as_mut().and_then(Iterator::next) else {
                    next_position = count;
                    return Some(Err(StorageError::Unreadable(format!(
                        "the log ends before append position {at}"
                    ))));
                };
                let (k, v) = match entry {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(backend(e))),
                };
                let key = k.value();
                if !late_keys.contains(&key) {
                    return Some(format::decode_stored(key, v.value()));
                }
            }
        })))
    }
}

impl core::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("commits", &self.commits())
            .field("relaxed", &self.inner.flusher.is_some())
            .finish_non_exhaustive()
    }
}

impl Flusher {
    fn spawn(core: Arc<Committer>, interval: Duration) -> Result<Self, StorageError> {
        let (stop, stopped) = mpsc::channel::<()>();
        // The interval is a blocking wait on the stop channel: no clock is read here.
        let thread = std::thread::Builder::new()
            .name("weft-store-flush".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    // A failure leaves the commits dirty; the next round (or `flush`) retries.
                    let _ = core.flush();
                }
            })
            .map_err(|e| StorageError::Backend(Box::new(e)))?;
        Ok(Self { stop, thread })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(Flusher { stop, thread }) = self.flusher.take() {
            drop(stop);
            let _ = thread.join();
        }
        // Relaxed mode: a clean close loses nothing.
        let _ = self.core.flush();
    }
}

/// Creates an empty store at `path` under a temporary name, then renames it into place and
/// syncs the directory, so that the new name (and with it every later commit) survives a
/// power cut.
fn create_whole(path: &Path, config: &RedbConfig) -> Result<(), StorageError> {
    let io = |e: std::io::Error| StorageError::Backend(Box::new(e));
    let mut creating = path.as_os_str().to_owned();
    creating.push(".creating");
    let creating = std::path::PathBuf::from(creating);
    // Left by a creation that was killed: it never held a commit.
    match std::fs::remove_file(&creating) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    {
        let db = create_file(&builder(config), &creating).map_err(open_error)?;
        format::init_or_check(&db)?;
    }
    std::fs::rename(&creating, path).map_err(io)?;
    sync_parent(path)
}

/// Where [`RedbStorage::open_with`] keeps the commit log of the store at `path`.
fn log_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-log");
    std::path::PathBuf::from(name)
}

/// Opens (creating it if needed) the commit log file. A new file's directory entry is synced
/// at once, before [`Log::open`] fills the file and syncs its data (and with it its length).
fn open_log_file(path: &Path) -> Result<Box<dyn redb::StorageBackend>, StorageError> {
    let io = |e: std::io::Error| StorageError::Backend(Box::new(e));
    let created = match std::fs::metadata(path) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io(e)),
    };
    let file = open_rw(path).map_err(io)?;
    if created {
        sync_parent(path)?;
    }
    let backend = redb::backends::FileBackend::new(file).map_err(open_error)?;
    Ok(Box::new(backend))
}

/// Opens `path` for reading and writing, creating it if it does not exist, never truncating.
fn open_rw(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Syncs the directory holding `path`, so that a file created or renamed there survives a
/// power cut.
fn sync_parent(path: &Path) -> Result<(), StorageError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::Backend(Box::new(e)))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens (creating it if needed) the redb file at `path` through [`ZeroFill`], which fills the
/// space redb adds to the file before redb writes into it.
fn create_file(
    builder: &redb::Builder,
    path: &Path,
) -> Result<redb::Database, redb::DatabaseError> {
    let backend = redb::backends::FileBackend::new(open_rw(path)?)?;
    builder.create_with_backend(ZeroFill::new(backend)?)
}

fn builder(config: &RedbConfig) -> redb::Builder {
    let mut builder = redb::Builder::new();
    builder
        .set_cache_size(config.cache_bytes)
        .set_check_integrity_on_open(config.verify_on_open);
    builder
}

fn read_meta(db: &redb::Database, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
    let read = db.begin_read().map_err(backend)?;
    let meta = read.open_table(META).map_err(backend)?;
    let value = meta.get(key).map_err(backend)?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// An error opening the database: a file redb cannot read is [`StorageError::Unreadable`];
/// locking and plain IO failures stay backend errors.
fn open_error(e: redb::DatabaseError) -> StorageError {
    use std::io::ErrorKind;
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            StorageError::Unreadable(format!("truncated or malformed file: {io}"))
        }
        other => format::unreadable(other),
    }
}
