//! Group commit: every write of every handle goes through one queue, and whichever writer finds
//! no commit in progress becomes the leader and commits everything queued at once: in durable
//! mode, one record appended to the commit log and synced, then one non-durable redb write
//! transaction, or, when the group is not only ops or the log is full, one durable redb
//! transaction (a fold, `log.rs`). One fsync either way. The others wait for the leader to
//! report their result.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use hlc::Timestamp;
use redb::{Durability, ReadableTable, ReadableTableMetadata};

use super::format::{
    self, KEY_HIGH_WATER, KEY_LOG_GENERATION, LATE, META, OPS, PEERS, SNAPSHOT, backend,
};
use super::log::Log;
use crate::StorageError;

/// One writer's request: all or nothing, and merged with the others of its group.
#[derive(Default)]
pub(super) struct Batch {
    /// `(ops key, end of its encoding in `encoded`)`, in append order.
    pub(super) ops: Vec<(u128, usize)>,
    /// The ops' encodings, back to back.
    pub(super) encoded: Vec<u8>,
    /// Raise the high-water mark to at least this.
    pub(super) high_water: Option<Timestamp>,
    /// `(peer, encoded frontier)`.
    pub(super) peers: Vec<(u64, Vec<u8>)>,
    /// Encoded snapshot record.
    pub(super) snapshot: Option<Vec<u8>>,
    /// The replica id to record (first open).
    pub(super) replica: Option<u64>,
    /// Commit the group durably to redb (a fold), even if it could go to the log.
    pub(super) fold: bool,
}

impl Batch {
    /// Whether the batch may go to the commit log: ops and the high-water mark only.
    fn loggable(&self) -> bool {
        !self.fold && self.peers.is_empty() && self.snapshot.is_none() && self.replica.is_none()
    }
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Batch)>,
    next_ticket: u64,
    /// Every ticket below this is finished.
    done_below: u64,
    /// A leader is committing.
    leading: bool,
    /// Tickets of failed groups, with the error.
    failed: HashMap<u64, String>,
}

/// The shared write path of one database.
pub(super) struct Committer {
    pub(super) db: redb::Database,
    relaxed: bool,
    queue: Mutex<Queue>,
    done: Condvar,
    /// Write transactions committed (each one fsync in durable mode).
    pub(super) commits: AtomicU64,
    /// Commits since the last durable one (relaxed mode).
    dirty: AtomicBool,
    /// Held while a relaxed-mode flush commits, so flushes do not overlap.
    flushing: Mutex<()>,
    /// The commit log (durable mode with a log); only the leader locks it.
    log: Option<Mutex<Log>>,
    /// Set when a commit failed halfway, between the log and redb: from then on every write
    /// fails (and the store does not fold on close), so nothing of that commit becomes durable
    /// in this process. Reopening the store recovers whatever reached the disk.
    broken: OnceLock<String>,
}

impl Committer {
    pub(super) fn new(db: redb::Database, relaxed: bool, log: Option<Log>) -> Self {
        Self {
            db,
            relaxed,
            log: log.map(Mutex::new),
            broken: OnceLock::new(),
            queue: Mutex::default(),
            done: Condvar::new(),
            commits: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            flushing: Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue holds no invariant a panicking thread could break halfway (the leader's
        // commit runs outside the lock and under catch_unwind).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `batch`, sharing the transaction with whatever other writers are queued.
    /// Returns when it is committed (durable, unless in relaxed mode).
    pub(super) fn submit(&self, batch: Batch) -> Result<(), StorageError> {
        let mut q = self.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push((ticket, batch));
        loop {
            if q.done_below > ticket {
                return match q.failed.remove(&ticket) {
                    None => Ok(()),
                    Some(msg) => Err(StorageError::Backend(msg.into())),
                };
            }
            if q.leading {
                q = self.done.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.leading = true;
            let group = std::mem::take(&mut q.waiting);
            drop(q);
            let result = catch_unwind(AssertUnwindSafe(|| self.commit_group(&group)))
                .unwrap_or_else(|_| Err(StorageError::Backend("the commit panicked".into())));
            q = self.lock();
            if let Err(e) = result {
                let msg = e.to_string();
                for (t, _) in &group {
                    q.failed.insert(*t, msg.clone());
                }
            }
            if let Some((last, _)) = group.last() {
                q.done_below = q.done_below.max(last + 1);
            }
            q.leading = false;
            self.done.notify_all();
        }
    }

    fn commit_group(&self, group: &[(u64, Batch)]) -> Result<(), StorageError> {
        if let Some(why) = self.broken.get() {
            return Err(StorageError::Backend(
                format!("an earlier commit failed ({why}); reopen the store").into(),
            ));
        }
        let fold = group.iter().any(|(_, b)| b.fold);
        let log = match &self.log {
            Some(log) if !self.relaxed || fold => log,
            _ => {
                let durability = if self.relaxed && !fold {
                    Durability::None
                } else {
                    Durability::Immediate
                };
                return self.write(group, durability, None);
            }
        };
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        let record = if group.iter().all(|(_, b)| b.loggable()) {
            log.record(group)
        } else {
            None
        };
        if let Some(record) = record {
            // Durable once the record is synced; only then does redb (and so any reader)
            // see the ops, so nothing unsynced is ever served to a peer.
            if let Err(e) = log.append(&record) {
                let _ = self.broken.set(format!("the commit log write failed: {e}"));
                return Err(StorageError::Backend(Box::new(e)));
            }
            if let Err(e) = self.write(group, Durability::None, None) {
                let _ = self
                    .broken
                    .set(format!("a logged commit failed in redb: {e}"));
                return Err(e);
            }
            return Ok(());
        }
        let next = (!log.is_empty()).then(|| log.generation() + 1);
        self.write(group, Durability::Immediate, next)?;
        if let Some(generation) = next {
            log.folded(generation);
        }
        Ok(())
    }

    /// Replays the commit log's records found on open, in order, into redb (not synced: they
    /// are in the log), then folds, so that the log starts empty.
    pub(super) fn replay(&self, batches: Vec<Batch>) -> Result<(), StorageError> {
        if batches.is_empty() {
            return Ok(());
        }
        for batch in batches {
            self.write(&[(0, batch)], Durability::None, None)?;
        }
        self.submit(Batch {
            fold: true,
            ..Batch::default()
        })
    }

    /// Folds the log into redb if it holds records, so that the next open replays nothing;
    /// for a clean close. Does nothing once a commit has failed.
    pub(super) fn close(&self) -> Result<(), StorageError> {
        let pending = self.log.as_ref().is_some_and(|log| {
            !log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        });
        if !pending || self.broken.get().is_some() {
            return Ok(());
        }
        self.submit(Batch {
            fold: true,
            ..Batch::default()
        })
    }

    /// One redb write transaction of `group`, with `durability`; `generation`: also raise the
    /// commit log's generation to it (a fold that empties the log).
    fn write(
        &self,
        group: &[(u64, Batch)],
        durability: Durability,
        generation: Option<u64>,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write().map_err(backend)?;
        tx.set_durability(durability)
            .map_err(|e| StorageError::Backend(Box::new(e)))?;
        {
            // Ops appended in id order (the usual case: local commits) touch only the ops
            // table; an op below the highest stored id is also recorded in `late` with its
            // position, so that append order can be rebuilt (`RedbStorage::appended_after`).
            let mut ops = tx.open_table(OPS).map_err(backend)?;
            let mut position = ops.len().map_err(backend)?;
            let mut max = ops.last().map_err(backend)?.map(|(k, _)| k.value());
            let mut late = Vec::new();
            let mut high_water = None;
            for (_, batch) in group {
                let mut start = 0;
                for &(key, end) in &batch.ops {
                    let bytes = &batch.encoded[start..end];
                    start = end;
                    // Held already: the first op of an id stays, as `append` promises (a second
                    // op with its id is a forgery or a broken peer's).
                    let replaced = ops
                        .insert(key, bytes)
                        .map_err(backend)?
                        .map(|old| (old.value() != bytes).then(|| old.value().to_vec()));
                    if let Some(replaced) = replaced {
                        if let Some(old) = replaced {
                            ops.insert(key, old.as_slice()).map_err(backend)?;
                        }
                        continue;
                    }
                    if max.is_some_and(|m| key < m) {
                        late.push((position, key));
                    } else {
                        max = Some(key);
                    }
                    position += 1;
                }
                high_water = high_water.max(batch.high_water);
            }
            drop(ops);
            if !late.is_empty() {
                let mut table = tx.open_table(LATE).map_err(backend)?;
                for (position, key) in late {
                    table.insert(position, key).map_err(backend)?;
                }
            }
            // The mark in effect is the higher of the stored one and the last op's timestamp,
            // so appends never write it; only a mark above both is stored.
            if let Some(ts) = high_water
                && max.map(format::timestamp_of) < Some(ts)
            {
                let mut meta = tx.open_table(META).map_err(backend)?;
                let current = match meta.get(KEY_HIGH_WATER).map_err(backend)? {
                    Some(v) => Some(format::decode_timestamp(v.value())?),
                    None => None,
                };
                if current < Some(ts) {
                    meta.insert(KEY_HIGH_WATER, ts.to_bytes().as_slice())
                        .map_err(backend)?;
                }
            }
            let replica = group.iter().find_map(|(_, b)| b.replica);
            if let Some(id) = replica {
                let mut meta = tx.open_table(META).map_err(backend)?;
                meta.insert(format::KEY_REPLICA, id.to_be_bytes().as_slice())
                    .map_err(backend)?;
            }
            let peers: BTreeMap<u64, &[u8]> = group
                .iter()
                .flat_map(|(_, b)| b.peers.iter().map(|(p, v)| (*p, v.as_slice())))
                .collect();
            if !peers.is_empty() {
                let mut table = tx.open_table(PEERS).map_err(backend)?;
                for (peer, vv) in peers {
                    table.insert(peer, vv).map_err(backend)?;
                }
            }
            if let Some(snap) = group.iter().rev().find_map(|(_, b)| b.snapshot.as_ref()) {
                let mut table = tx.open_table(SNAPSHOT).map_err(backend)?;
                table.insert(0, snap.as_slice()).map_err(backend)?;
            }
            if let Some(generation) = generation {
                let mut meta = tx.open_table(META).map_err(backend)?;
                meta.insert(KEY_LOG_GENERATION, generation.to_be_bytes().as_slice())
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        if self.relaxed && matches!(durability, Durability::None) {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Makes every earlier commit durable: in relaxed mode, commits an empty transaction with
    /// immediate durability if anything was committed since the last flush.
    pub(super) fn flush(&self) -> Result<(), StorageError> {
        if self.log.is_some() && !self.relaxed {
            // Durable mode: every commit already is; folding saves the next open a replay.
            return self.close();
        }
        let _one = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let result = (|| {
            let mut tx = self.db.begin_write().map_err(backend)?;
            tx.set_durability(Durability::Immediate)
                .map_err(|e| StorageError::Backend(Box::new(e)))?;
            tx.commit().map_err(backend)
        })();
        if result.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        result
    }
}
