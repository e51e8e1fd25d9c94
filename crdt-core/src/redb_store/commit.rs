//! Group commit: every write of every handle goes through one queue, and whichever writer finds
//! no commit in progress becomes the leader and commits everything queued in one redb write
//! transaction (one fsync). The others wait for the leader to report their result.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use hlc::Timestamp;
use redb::{Durability, ReadableTable, ReadableTableMetadata};

use super::format::{self, KEY_HIGH_WATER, LATE, META, OPS, PEERS, SNAPSHOT, backend};
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
}

impl Committer {
    pub(super) fn new(db: redb::Database, relaxed: bool) -> Self {
        Self {
            db,
            relaxed,
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
        let mut tx = self.db.begin_write().map_err(backend)?;
        let durability = if self.relaxed {
            Durability::None
        } else {
            Durability::Immediate
        };
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
                    let stored = ops.insert(key, bytes).map_err(backend)?;
                    if stored.is_some() {
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
        }
        tx.commit().map_err(backend)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        if self.relaxed {
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Makes every earlier commit durable: in relaxed mode, commits an empty transaction with
    /// immediate durability if anything was committed since the last flush.
    pub(super) fn flush(&self) -> Result<(), StorageError> {
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
