//! Golden fixtures of the disk format (`docs/wire-format.md`, "Disk format of the redb store").
//!
//! redb files are not byte-for-byte deterministic (page placement, free space), so the format
//! is pinned twice: `durable_fixtures/store-v3.dump` is the logical content, every table's keys
//! and values as the bytes redb stores, of a store built here from fixed ops (and closed, so
//! its commit log is folded in; the random store id is masked); and
//! `durable_fixtures/store-v3.redb` is a file written by this version, which must open and read
//! back the same content. `store-v2.redb`, written by format 2 (before the commit log), must
//! open too: it is upgraded in place. A change to either is a format decision: make it deliberately, with
//! the format version and the wire-format document changed alongside, and regenerate with
//! `WEFT_BLESS=1 cargo test -p crdt-core --test durable_golden` (the repository ignores
//! `*.redb`: add the regenerated file with `git add -f`).

mod durable_util;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crdt_core::{Op, OpId, RedbStorage, ReplicaId, Snapshot, Storage, VersionVector};
use durable_util::TempDir;
use hlc::Timestamp;
use redb::{ReadableDatabase, TableDefinition, TableHandle, Value};

const REPLICA: u64 = 0x0102_0304_0506_0708;
const PEER: u64 = 0x0a0b_0c0d_0e0f_1011;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/durable_fixtures")
        .join(name)
}

fn blessing() -> bool {
    std::env::var_os("WEFT_BLESS").is_some()
}

fn at(ms: u64, replica: u64) -> Op {
    let mut op = durable_util::op(1_700_000_000_000 + ms, 0, replica);
    op.key = format!("k{ms}");
    op.payload = crdt_core::Payload::Write(crdt_core::Value::String(format!("v{ms}")));
    op
}

/// The batches appended, in order: ops in id order, a late op, a repeat, a batch mixing a
/// late op with one above the rest.
fn batches() -> Vec<Vec<Op>> {
    vec![
        vec![at(10, REPLICA), at(20, REPLICA), at(30, REPLICA)],
        vec![at(15, PEER)],
        vec![at(20, REPLICA), at(40, REPLICA)],
        vec![at(50, PEER), at(5, PEER)],
    ]
}

fn frontier() -> VersionVector {
    [(
        ReplicaId::new(PEER),
        Timestamp::new(1_700_000_000_050, 0).unwrap(),
    )]
    .into_iter()
    .collect()
}

fn high_water() -> Timestamp {
    Timestamp::new(1_700_000_000_999, 3).unwrap()
}

fn snapshot() -> Snapshot {
    Snapshot {
        position: 4,
        bytes: b"state".to_vec(),
    }
}

/// The ops in append order (what `ops_appended_after(0)` gives).
fn appended() -> Vec<Op> {
    let mut seen = std::collections::BTreeSet::new();
    batches()
        .concat()
        .into_iter()
        .filter(|op| seen.insert(op.id))
        .collect()
}

fn build(path: &Path) {
    let mut store = RedbStorage::open(path).expect("create");
    store.set_replica_id(ReplicaId::new(REPLICA)).unwrap();
    let batches = batches();
    store.append(&batches[0]).unwrap();
    store.append(&batches[1]).unwrap();
    store.save_snapshot(&snapshot()).unwrap();
    store.append(&batches[2]).unwrap();
    store.append(&batches[3]).unwrap();
    store
        .set_peer_frontier(ReplicaId::new(PEER), &frontier())
        .unwrap();
    store.set_high_water(high_water()).unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every table of the file, its entries as the key and value bytes redb stores, in key order.
fn dump(path: &Path) -> String {
    fn table<K: redb::Key + 'static, V: Value + 'static>(
        out: &mut String,
        read: &redb::ReadTransaction,
        def: TableDefinition<'_, K, V>,
    ) {
        let _ = writeln!(
            out,
            "table {} ({} -> {})",
            def.name(),
            K::type_name().name(),
            V::type_name().name()
        );
        let table = read.open_table(def).expect("table opens");
        for entry in table.range::<K::SelfType<'_>>(..).expect("range") {
            let (k, v) = entry.expect("entry");
            let (key, value) = (k.value(), v.value());
            let (key, value) = (K::as_bytes(&key), V::as_bytes(&value));
            let value = if key.as_ref() == b"store_id" {
                format!("({} random bytes)", value.as_ref().len())
            } else {
                hex(value.as_ref())
            };
            let _ = writeln!(out, "  {} = {value}", hex(key.as_ref()));
        }
    }
    let db = redb::Database::open(path).expect("redb opens");
    let read = db.begin_read().unwrap();
    let mut out = String::from("weft store, logical dump (key = value, the bytes redb stores)\n");
    let mut names: Vec<String> = read
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_owned())
        .collect();
    names.sort();
    let _ = writeln!(out, "tables: {}", names.join(", "));
    table(&mut out, &read, TableDefinition::<&str, &[u8]>::new("meta"));
    table(&mut out, &read, TableDefinition::<u128, &[u8]>::new("ops"));
    table(&mut out, &read, TableDefinition::<u64, u128>::new("late"));
    table(&mut out, &read, TableDefinition::<u64, &[u8]>::new("peers"));
    table(
        &mut out,
        &read,
        TableDefinition::<u8, &[u8]>::new("snapshot"),
    );
    out
}

#[test]
fn the_logical_content_is_pinned() {
    let dir = TempDir::new("golden");
    let path = dir.file("store.redb");
    build(&path);
    let got = dump(&path);
    let pinned = fixture("store-v3.dump");
    if blessing() {
        std::fs::create_dir_all(pinned.parent().unwrap()).unwrap();
        std::fs::write(&pinned, &got).unwrap();
        std::fs::copy(&path, fixture("store-v3.redb")).unwrap();
        return;
    }
    let want =
        std::fs::read_to_string(&pinned).expect("the fixture exists (WEFT_BLESS=1 writes it)");
    assert_eq!(
        got, want,
        "the disk format changed: if deliberate, bump the format version, update \
         docs/wire-format.md and regenerate with WEFT_BLESS=1"
    );
}

#[test]
fn a_file_written_by_this_version_opens_and_reads() {
    if blessing() {
        return;
    }
    opens_and_reads("store-v3.redb");
}

/// A format-2 file (no commit log, no store id) opens, reads the same, and is upgraded: it
/// then holds format 3's marker and a store id, and takes commits through the log.
#[test]
fn a_file_of_format_2_is_upgraded() {
    if blessing() {
        return;
    }
    let dir = opens_and_reads("store-v2.redb");
    let path = dir.file("store.redb");
    let dump = dump(&path);
    assert!(
        dump.contains("666f726d6174 = 776566742d73746f72650003"),
        "{dump}"
    );
    assert!(
        dump.contains("73746f72655f6964 = (16 random bytes)"),
        "{dump}"
    );
    let mut store = RedbStorage::open(&path).unwrap();
    store.append(&[at(60, REPLICA)]).unwrap();
    drop(store);
    assert_eq!(
        RedbStorage::open(&path).unwrap().len().unwrap(),
        appended().len() as u64 + 1
    );
}

/// Opens a copy of the fixture `name` and checks it reads back what `build` wrote; returns the
/// directory holding the copy (`store.redb`).
fn opens_and_reads(name: &str) -> TempDir {
    let dir = TempDir::new("golden-open");
    let path = dir.file("store.redb");
    // Opening for writing may touch the header: work on a copy.
    std::fs::copy(fixture(name), &path).expect("the fixture exists");
    let store = RedbStorage::open(&path).expect("the committed file opens");
    assert_eq!(store.replica_id().unwrap(), Some(ReplicaId::new(REPLICA)));
    let appended = appended();
    assert_eq!(store.len().unwrap(), appended.len() as u64);
    let mut by_id = appended.clone();
    by_id.sort_by_key(|op| op.id);
    let scan: Vec<Op> = store.scan().collect::<Result<_, _>>().unwrap();
    assert_eq!(scan, by_id);
    for p in 0..=appended.len() {
        let after: Vec<Op> = store
            .ops_appended_after(p as u64)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(after, appended[p..], "ops appended after {p}");
    }
    assert_eq!(store.snapshot().unwrap(), Some(snapshot()));
    assert_eq!(
        store.peer_frontier(ReplicaId::new(PEER)).unwrap(),
        Some(frontier())
    );
    assert_eq!(store.high_water().unwrap(), Some(high_water()));
    let id = OpId::new(
        Timestamp::new(1_700_000_000_015, 0).unwrap(),
        ReplicaId::new(PEER),
    );
    assert_eq!(store.get(id).unwrap().map(|op| op.key), Some("k15".into()));
    drop(store);
    dir
}
