//! Hydration: a replica on the redb store, after random histories of every field type (local
//! writes and remote ops from a replica on the in-memory store), shows after closing and
//! reopening exactly the state it showed before, and the same as an in-memory replica given
//! the same ops.

mod common;
mod durable_util;

use common::*;
use crdt_core::{MemoryStorage, RedbStorage, Replica, Storage, VersionVector, WriteError};
use durable_util::TempDir;
use hlc::ManualClock;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

type Disk = Replica<RedbStorage, ManualClock>;

fn random_write<S: Storage>(rng: &mut StdRng, r: &mut Replica<S, ManualClock>) {
    let key = ["a", "b", "c"][rng.random_range(0..3)];
    let word = ["x", "y", "z"][rng.random_range(0..3)];
    let n = rng.random_range(-3i64..8);
    let action = rng.random_range(0..14);
    let tlen = r
        .text("notes", "n", "body")
        .map_or(0, |t| t.chars().count() as u64);
    let at = rng.random_range(0..=tlen);
    let ilen = r.list("notes", "n", "items").map_or(0, |l| l.len() as u64);
    let result = r.transact(|tx| match action {
        0 | 1 => tx
            .insert("users", Some(key), [("name", word.into())])
            .map(|_| ()),
        2 => tx.set("users", key, "email", format!("{word}@e")),
        3 => tx.set("users", key, "bio", word),
        4 => tx.set("users", key, "motto", word),
        5 => tx.increment("users", key, "karma", n),
        6 => tx.add("users", key, "tags", word),
        7 => tx.remove("users", key, "tags", word),
        8 => tx.delete("users", key),
        9 => tx
            .insert(
                "teams",
                None,
                [("title", word.into()), ("budget", (n as f64 / 3.0).into())],
            )
            .map(|_| ()),
        10 => tx
            .insert("notes", Some("n"), [("title", word.into())])
            .map(|_| ()),
        11 => tx.insert_text("notes", "n", "body", at, "hé😀"),
        12 => tx.delete_text("notes", "n", "body", at, (tlen - at).min(2)),
        _ => tx.insert_list(
            "notes",
            "n",
            "items",
            rng.random_range(0..=ilen),
            vec![n.into()],
        ),
    });
    match result {
        Ok(())
        | Err(
            WriteError::NoSuchRecord { .. }
            | WriteError::AlreadyExists { .. }
            | WriteError::Unique { .. }
            | WriteError::Position { .. },
        ) => {}
        Err(e) => panic!("unexpected write error: {e}"),
    }
}

fn open_disk(path: &std::path::Path, clock: &ManualClock, seed: u64) -> Disk {
    let mut rng = StdRng::seed_from_u64(seed);
    let store = RedbStorage::open(path).expect("store opens");
    Replica::open(store, clock.clone(), schema(), &mut rng).expect("replica opens")
}

fn run(seed: u64) {
    let dir = TempDir::new("hydrate");
    let path = dir.file("r.redb");
    let mut rng = StdRng::seed_from_u64(seed);
    let clock = ManualClock::new(START_MS);
    let other_clock = ManualClock::new(START_MS + rng.random_range(0..5_000));
    let mut other = replica(&other_clock, seed ^ 0xabc);
    let mut disk = open_disk(&path, &clock, seed);
    let id = disk.id();
    for step in 0..rng.random_range(30..90) {
        match rng.random_range(0..10) {
            0..=4 => random_write(&mut rng, &mut disk),
            5..=6 => random_write(&mut rng, &mut other),
            7 => {
                let ops = other.ops_since(disk.version_vector()).expect("ops");
                disk.apply_remote(ops).expect("apply");
            }
            8 => {
                let ops = disk.ops_since(other.version_vector()).expect("ops");
                other.apply_remote(ops).expect("apply");
            }
            _ => clock.advance(rng.random_range(0..20)),
        }
        if step % 25 == 24 {
            // Close and reopen in the middle of the history too.
            let before = snapshot(&disk);
            drop(disk);
            disk = open_disk(&path, &clock, seed);
            assert_eq!(
                snapshot(&disk),
                before,
                "seed {seed}: reopening changed the state"
            );
        }
    }
    let before = snapshot(&disk);
    let all = disk.ops_since(&VersionVector::new()).expect("ops");
    let vv = disk.version_vector().clone();
    drop(disk);

    let reopened = open_disk(&path, &clock, seed);
    assert_eq!(reopened.id(), id);
    assert_eq!(
        snapshot(&reopened),
        before,
        "seed {seed}: hydration changed the state"
    );
    assert_eq!(reopened.version_vector(), &vv);
    assert_eq!(reopened.ops_since(&VersionVector::new()).expect("ops"), all);

    // The in-memory reference, fed the same ops.
    let mut reference = Replica::open(
        MemoryStorage::new(),
        clock.clone(),
        schema(),
        &mut StdRng::seed_from_u64(seed ^ 1),
    )
    .expect("opens");
    reference.apply_remote(all).expect("apply");
    assert_eq!(
        snapshot(&reference),
        before,
        "seed {seed}: differs from the in-memory reference"
    );
}

#[test]
fn hydration_equals_the_state_before_close() {
    for seed in 0..12 {
        run(seed);
    }
}

#[test]
#[ignore]
fn hydration_many_seeds() {
    for seed in 100..1_100 {
        run(seed);
    }
}
