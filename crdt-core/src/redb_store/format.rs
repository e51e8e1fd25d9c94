//! The disk format of the redb store: tables, keys and value encodings, and the mapping of
//! redb's errors. Written down in `docs/wire-format.md` ("Disk format").

use hlc::Timestamp;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};

use crate::codec::{self, DecodeError};
use crate::{Op, OpId, ReplicaId, StorageError, VersionVector};

/// Op id (its 16 sortable bytes read as one big-endian integer, so integer order is op id
/// order) -> the op in the codec's encoding (version byte, then postcard).
pub(super) const OPS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("ops");
/// Append position -> the id of the op appended there, for the ops appended *late*: below the
/// highest id already stored. Every other op was appended in id order, so its position follows
/// from the ops table alone.
pub(super) const LATE: TableDefinition<'static, u64, u128> = TableDefinition::new("late");
/// Small named values: format marker, replica id, high-water mark.
pub(super) const META: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("meta");
/// Peer replica id -> the frontier last exchanged with it (postcard `VersionVector`).
pub(super) const PEERS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("peers");
/// Key 0 -> the snapshot: position (8 bytes big-endian), then the replica's opaque bytes.
pub(super) const SNAPSHOT: TableDefinition<'static, u8, &[u8]> = TableDefinition::new("snapshot");

/// `META` key of the format marker.
pub(super) const KEY_FORMAT: &str = "format";
/// `META` key of the replica id (8 bytes big-endian).
pub(super) const KEY_REPLICA: &str = "replica_id";
/// `META` key of the store's random id (16 bytes), which every commit log record's checksum
/// covers, so a log beside another store never replays into this one.
pub(super) const KEY_STORE_ID: &str = "store_id";
/// `META` key of the commit log's generation (`u64` big-endian; absent: 0). Every fold
/// raises it, so the log's records of earlier generations no longer count.
pub(super) const KEY_LOG_GENERATION: &str = "log_generation";
/// `META` key of the clock's high-water mark (the timestamp's 8 bytes), as raised by
/// `set_high_water`; the mark in effect is the higher of it and the last op's timestamp.
pub(super) const KEY_HIGH_WATER: &str = "high_water";

/// The value of `META["format"]`: a magic string and the disk format version.
pub(super) const FORMAT_MARKER: &[u8] = b"weft-store\x00\x03";
/// The marker of format 2, which had no commit log; such a file is upgraded on open.
const FORMAT_MARKER_V2: &[u8] = b"weft-store\x00\x02";
/// What every marker of some version starts with.
const MARKER_PREFIX: &[u8] = b"weft-store\x00";

/// The `OPS` key of an op id.
pub(super) fn key(id: OpId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

/// The op id of an `OPS` key.
pub(super) fn id_of(key: u128) -> OpId {
    OpId::from_bytes(key.to_be_bytes())
}

/// The timestamp part of an `OPS` key.
pub(super) fn timestamp_of(key: u128) -> Timestamp {
    id_of(key).ts
}

/// Creates the tables, the marker and the store id in a new database, or checks the marker of
/// an existing one, upgrading a format-2 file (which only lacks the store id: it never had a
/// log). Returns an error naming what is wrong with a foreign or future file.
pub(super) fn init_or_check(db: &redb::Database) -> Result<(), StorageError> {
    if check(db)? {
        let tx = db.begin_write().map_err(backend)?;
        {
            let mut meta = tx.open_table(META).map_err(backend)?;
            meta.insert(KEY_FORMAT, FORMAT_MARKER).map_err(backend)?;
            meta.insert(KEY_STORE_ID, new_store_id().as_slice())
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

/// [`init_or_check`] but for the upgrade: whether the file is of format 2.
fn check(db: &redb::Database) -> Result<bool, StorageError> {
    let read = db.begin_read().map_err(backend)?;
    let tables: Vec<String> = read
        .list_tables()
        .map_err(backend)?
        .map(|t| t.name().to_owned())
        .collect();
    if tables.is_empty() {
        drop(read);
        let tx = db.begin_write().map_err(backend)?;
        {
            tx.open_table(OPS).map_err(backend)?;
            tx.open_table(LATE).map_err(backend)?;
            tx.open_table(PEERS).map_err(backend)?;
            tx.open_table(SNAPSHOT).map_err(backend)?;
            let mut meta = tx.open_table(META).map_err(backend)?;
            meta.insert(KEY_FORMAT, FORMAT_MARKER).map_err(backend)?;
            meta.insert(KEY_STORE_ID, new_store_id().as_slice())
                .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        return Ok(false);
    }
    let not_weft = || StorageError::Unreadable("a redb database, but not a weft store".into());
    let meta = read.open_table(META).map_err(|e| match e {
        redb::TableError::TableDoesNotExist(_) | redb::TableError::TableTypeMismatch { .. } => {
            not_weft()
        }
        other => backend(other),
    })?;
    let marker = meta
        .get(KEY_FORMAT)
        .map_err(backend)?
        .ok_or_else(not_weft)?;
    let marker = marker.value();
    let v2 = marker == FORMAT_MARKER_V2;
    if marker != FORMAT_MARKER && !v2 {
        return Err(match marker.strip_prefix(MARKER_PREFIX) {
            Some([v]) => StorageError::Unreadable(format!(
                "weft store format version {v}; this build reads versions 2 and {}",
                FORMAT_MARKER[FORMAT_MARKER.len() - 1]
            )),
            _ => not_weft(),
        });
    }
    for table in ["ops", "late", "peers", "snapshot"] {
        if !tables.iter().any(|t| t == table) {
            return Err(StorageError::Unreadable(format!(
                "table `{table}` is missing"
            )));
        }
    }
    // Opening each table with its types checks them.
    read.open_table(OPS).map_err(unreadable)?;
    read.open_table(LATE).map_err(unreadable)?;
    read.open_table(PEERS).map_err(unreadable)?;
    read.open_table(SNAPSHOT).map_err(unreadable)?;
    check_counts(&read)?;
    Ok(v2)
}

/// A new store's id: unique, not secret (it only keeps logs apart). The standard library's
/// randomly keyed hasher (keys from the OS at a thread's first use, then varied per instance)
/// gives the randomness, with the process id and a counter; no clock and no caller's seed are
/// involved, so simulations stay deterministic (the id only enters log checksums).
fn new_store_id() -> [u8; 16] {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut h = blake3::Hasher::new();
    h.update(b"weft-store id\0");
    for i in 0..2u64 {
        h.update(&RandomState::new().hash_one((n, i)).to_le_bytes());
    }
    h.update(&std::process::id().to_le_bytes());
    h.update(&n.to_le_bytes());
    let mut id = [0; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

/// The commit log's generation and the store id, from `meta`.
pub(super) fn log_state(db: &redb::Database) -> Result<(u64, [u8; 16]), StorageError> {
    let read = db.begin_read().map_err(backend)?;
    let meta = read.open_table(META).map_err(backend)?;
    let generation = match meta.get(KEY_LOG_GENERATION).map_err(backend)? {
        None => 0,
        Some(v) => u64::from_be_bytes(v.value().try_into().map_err(|_| {
            StorageError::Unreadable("the commit log generation is not 8 bytes".into())
        })?),
    };
    let id = meta
        .get(KEY_STORE_ID)
        .map_err(backend)?
        .ok_or_else(|| StorageError::Unreadable("the store id is missing".into()))?;
    let id = id
        .value()
        .try_into()
        .map_err(|_| StorageError::Unreadable("the store id is not 16 bytes".into()))?;
    Ok((generation, id))
}

/// Every late op's position must lie inside the log: a cheap structural check that catches
/// a damaged file early.
fn check_counts(read: &redb::ReadTransaction) -> Result<(), StorageError> {
    let ops = read
        .open_table(OPS)
        .map_err(backend)?
        .len()
        .map_err(backend)?;
    let late = read.open_table(LATE).map_err(backend)?;
    let entries = late.len().map_err(backend)?;
    if let Some((position, _)) = late.last().map_err(backend)? {
        let position = position.value();
        if position >= ops || entries > ops {
            return Err(StorageError::Unreadable(format!(
                "the log holds {ops} ops but records a late op at position {position}"
            )));
        }
    }
    Ok(())
}

/// Decodes a stored op and checks it is the one its key names.
pub(super) fn decode_stored(key: u128, bytes: &[u8]) -> Result<Op, StorageError> {
    let id = id_of(key);
    let op = codec::decode_op(bytes).map_err(|source| StorageError::Corrupt { id, source })?;
    if op.id != id {
        return Err(StorageError::Corrupt {
            id,
            source: DecodeError::Malformed(format!(
                "stored under the id of another op ({})",
                op.id
            )),
        });
    }
    Ok(op)
}

/// An op's stored bytes as sync sends them, after the version byte, once they have been checked
/// to decode to the op `key` names (a peer is never sent bytes from a damaged disk).
pub(super) fn checked_encoding(key: u128, bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
    decode_stored(key, bytes)?;
    Ok(bytes.get(1..).unwrap_or_default().to_vec())
}

pub(super) fn decode_replica(bytes: &[u8]) -> Result<ReplicaId, StorageError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::Unreadable("the replica id is not 8 bytes".into()))?;
    Ok(ReplicaId::new(u64::from_be_bytes(b)))
}

pub(super) fn decode_timestamp(bytes: &[u8]) -> Result<Timestamp, StorageError> {
    let b: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StorageError::Unreadable("the high-water mark is not 8 bytes".into()))?;
    Ok(Timestamp::from_bytes(b))
}

pub(super) fn encode_frontier(vv: &VersionVector) -> Vec<u8> {
    postcard::to_allocvec(vv).expect("postcard cannot fail to serialize into a Vec")
}

pub(super) fn decode_frontier(
    peer: ReplicaId,
    bytes: &[u8],
) -> Result<VersionVector, StorageError> {
    match postcard::take_from_bytes::<VersionVector>(bytes) {
        Ok((vv, [])) => Ok(vv),
        _ => Err(StorageError::Unreadable(format!(
            "the saved frontier of peer {peer} does not decode"
        ))),
    }
}

pub(super) fn encode_snapshot(position: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bytes.len());
    out.extend_from_slice(&position.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

pub(super) fn decode_snapshot(bytes: &[u8]) -> Result<crate::Snapshot, StorageError> {
    let (pos, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| StorageError::Unreadable("the snapshot record is truncated".into()))?;
    Ok(crate::Snapshot {
        position: u64::from_be_bytes(*pos),
        bytes: rest.to_vec(),
    })
}

/// A redb failure as a backend error; corruption reported by redb as [`StorageError::Unreadable`].
pub(super) fn backend(e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        redb::Error::Corrupted(msg) => StorageError::Unreadable(format!("corrupt file: {msg}")),
        redb::Error::UpgradeRequired(v) => StorageError::Unreadable(format!(
            "the file has redb format version {v}, which this build does not read"
        )),
        other => StorageError::Backend(Box::new(other)),
    }
}

/// Any redb failure at open as [`StorageError::Unreadable`] unless it is plainly IO or locking.
pub(super) fn unreadable(e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        e @ (redb::Error::Io(_)
        | redb::Error::DatabaseAlreadyOpen
        | redb::Error::LockPoisoned(_)) => StorageError::Backend(Box::new(e)),
        other => StorageError::Unreadable(other.to_string()),
    }
}
