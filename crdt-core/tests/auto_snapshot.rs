//! Automatic snapshots: taken every N appended ops, written in the background by the durable
//! store, and used when the replica is opened again.

mod common;

use common::*;
use crdt_core::{MemoryStorage, RedbStorage, Replica, Storage};
use hlc::ManualClock;
use rand::SeedableRng;

fn writes(r: &mut Mem, n: usize) {
    for i in 0..n {
        r.set("users", "u", "age", i as i64).unwrap();
    }
}

#[test]
fn a_snapshot_is_taken_every_n_ops_and_used_on_open() {
    let clock = ManualClock::new(START_MS);
    let mut a = replica(&clock, 1);
    a.set_auto_snapshot(Some(10));
    a.insert("users", Some("u"), [("name", "Ann".into())])
        .unwrap();
    assert!(a.storage().snapshot().unwrap().is_none(), "2 ops: not yet");
    writes(&mut a, 25);
    let snap = a.storage().snapshot().unwrap().expect("taken");
    assert!(
        (20..=27).contains(&snap.position),
        "position {}",
        snap.position
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let b = Replica::open(a.storage().clone(), clock.clone(), schema(), &mut rng).unwrap();
    assert_eq!(snapshot(&b), snapshot(&a));

    // Turned off: no new snapshot.
    a.set_auto_snapshot(None);
    writes(&mut a, 30);
    assert_eq!(
        a.storage().snapshot().unwrap().unwrap().position,
        snap.position
    );
}

#[test]
fn the_durable_store_writes_snapshots_in_the_background() {
    let dir = std::env::temp_dir().join(format!("weft-auto-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("replica.redb");
    let _ = std::fs::remove_file(&path);
    let clock = ManualClock::new(START_MS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let store = RedbStorage::open(&path).unwrap();
    let mut a = Replica::open(store, clock.clone(), schema(), &mut rng).unwrap();
    a.set_auto_snapshot(Some(50));
    a.insert("users", Some("u"), [("name", "Ann".into())])
        .unwrap();
    for i in 0..120 {
        a.set("users", "u", "age", i).unwrap();
    }
    a.storage().flush().unwrap(); // waits for the background writer
    let expected = snapshot(&a);
    let position = a.storage().snapshot().unwrap().expect("written").position;
    assert!((100..=122).contains(&position), "position {position}");
    drop(a);
    let store = RedbStorage::open(&path).unwrap();
    let b = Replica::open(store, clock, schema(), &mut rng).unwrap();
    assert_eq!(snapshot(&b), expected);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memory_storage_saves_in_the_foreground_by_default() {
    let mut storage = MemoryStorage::new();
    let snap = crdt_core::Snapshot {
        position: 0,
        bytes: vec![1, 2, 3],
    };
    storage.save_snapshot_in_background(snap.clone()).unwrap();
    assert_eq!(storage.snapshot().unwrap(), Some(snap));
}
