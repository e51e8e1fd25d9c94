//! Seeded convergence fuzzing: random histories of every kind of write on 2 to 5 replicas with
//! skewed clocks, synced by random partial, reordered and duplicated deliveries, then healed.
//! Checks: every replica shows the same state as every other; a fresh replica fed all ops in a
//! random order shows it too; reopening from storage shows it too.
//!
//! A failure prints its seed; replay it with `WEFT_SEED=<seed> cargo test -p crdt-core --test
//! convergence replay -- --nocapture`.

mod common;

use common::*;
use crdt_core::{MemoryStorage, Op, Replica, Storage, VersionVector, WriteError};
use hlc::ManualClock;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Prints the seed if the history panics.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "convergence failed with seed {} (replay: WEFT_SEED={} cargo test -p crdt-core --test convergence replay)",
                self.0, self.0
            );
        }
    }
}

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const WORDS: [&str; 5] = ["x", "y", "z", "w", "v"];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// One random local transaction; schema or state errors (a unique clash, a missing record)
/// are legitimate refusals and leave nothing behind.
fn random_write(rng: &mut StdRng, r: &mut Mem) {
    let key = *pick(rng, &KEYS);
    let word = *pick(rng, &WORDS);
    let action = rng.random_range(0..18);
    let n = rng.random_range(-5i64..10);
    let note = *pick(rng, &["n1", "n2"]);
    let len = |r: &Mem| {
        r.text("notes", note, "body")
            .map_or(0, |t| t.chars().count() as u64)
    };
    let items = |r: &Mem| r.list("notes", note, "items").map_or(0, |l| l.len() as u64);
    let (tlen, ilen) = (len(r), items(r));
    let at = rng.random_range(0..=tlen);
    let del = rng.random_range(0..=tlen - at).min(3);
    let iat = rng.random_range(0..=ilen);
    let text = *pick(rng, &["ab", "é", "😀x", "hello ", "z"]);
    let result = r.transact(|tx| match action {
        0 | 1 => tx
            .insert("users", Some(key), [("name", word.into())])
            .map(|_| ()),
        2 => tx.set("users", key, "name", word),
        3 => tx.set("users", key, "email", format!("{word}@e")),
        4 => tx.set("users", key, "bio", word),
        5 => tx.set("users", key, "motto", word),
        6 => tx.increment("users", key, "karma", n),
        7 => tx.add("users", key, "tags", word),
        8 => tx.remove("users", key, "tags", word),
        9 => tx.delete("users", key),
        10 => {
            tx.set("users", key, "age", n)?;
            tx.increment("users", key, "karma", 1)
        }
        11 => tx
            .insert("teams", None, [("title", word.into())])
            .map(|_| ()),
        12 => tx
            .insert("notes", Some(note), [("title", word.into())])
            .map(|_| ()),
        13 | 14 => tx.insert_text("notes", note, "body", at, text),
        15 => tx.delete_text("notes", note, "body", at, del),
        16 => tx.insert_list("notes", note, "items", iat, vec![n.into()]),
        _ => {
            tx.insert_text("notes", note, "body", at, text)?;
            if rng_flag(n) {
                tx.delete("notes", note)
            } else {
                tx.delete_list("notes", note, "items", 0, ilen.min(1))
            }
        }
    });
    if std::env::var("WEFT_DEBUG").is_ok() {
        eprintln!("action {action} -> {result:?}");
    }
    match result {
        Ok(()) => {}
        Err(
            WriteError::NoSuchRecord { .. }
            | WriteError::AlreadyExists { .. }
            | WriteError::Unique { .. },
        ) => {}
        Err(e) => panic!("unexpected write error: {e}"),
    }
}

/// A cheap coin from a value already drawn.
fn rng_flag(n: i64) -> bool {
    n % 4 == 0
}

/// Delivers a random subset of `from`'s ops to `to`, shuffled, some twice.
fn partial_sync(rng: &mut StdRng, from: &Mem, to: &mut Mem) {
    let mut ops: Vec<Op> = from
        .ops_since(&VersionVector::new())
        .expect("ops")
        .into_iter()
        .filter(|_| rng.random_bool(0.6))
        .collect();
    let dupes: Vec<Op> = ops
        .iter()
        .filter(|_| rng.random_bool(0.1))
        .cloned()
        .collect();
    ops.extend(dupes);
    shuffle(rng, &mut ops);
    let out = to.apply_remote(ops).expect("apply");
    assert!(
        out.rejected.is_empty(),
        "honest ops rejected: {:?}",
        out.rejected
    );
}

fn shuffle<T>(rng: &mut StdRng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// Runs one history; returns how many text characters the healed replicas show, so the
/// many-seeds test can check that text was exercised at all.
fn run(seed: u64) -> usize {
    let _guard = SeedGuard(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let n = rng.random_range(2..=5);
    let clocks: Vec<ManualClock> = (0..n)
        .map(|_| ManualClock::new(START_MS + rng.random_range(0..20_000)))
        .collect();
    let mut replicas: Vec<Mem> = clocks
        .iter()
        .enumerate()
        .map(|(i, c)| replica(c, seed.wrapping_mul(31).wrapping_add(i as u64)))
        .collect();

    for _ in 0..rng.random_range(20..120) {
        let i = rng.random_range(0..n);
        match rng.random_range(0..10) {
            0..=5 => random_write(&mut rng, &mut replicas[i]),
            6..=8 => {
                let j = (i + rng.random_range(1..n)) % n;
                let (from, to) = pair(&mut replicas, j, i);
                partial_sync(&mut rng, from, to);
            }
            9 if rng.random_bool(0.3) => replicas[i].save_snapshot().expect("snapshot"),
            _ => clocks[i].advance(rng.random_range(0..50)),
        }
    }

    // Heal: everyone sends everything to everyone (the "exchange everything" model).
    for _ in 0..2 {
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let (from, to) = pair(&mut replicas, i, j);
                    to.apply_remote(from.ops_since(&VersionVector::new()).expect("ops"))
                        .expect("apply");
                }
            }
        }
    }
    let expected = snapshot(&replicas[0]);
    for r in &replicas {
        assert_eq!(r.buffered(), 0, "ops still waiting after healing");
        assert_eq!(snapshot(r), expected, "replicas diverged");
    }

    // Order independence: all ops, shuffled, into a fresh replica, in random chunks.
    let mut all = replicas[0].ops_since(&VersionVector::new()).expect("ops");
    shuffle(&mut rng, &mut all);
    let late = ManualClock::new(START_MS + 100_000);
    let mut fresh = replica(&late, seed ^ 0xfeed);
    while !all.is_empty() {
        let take = rng.random_range(1..=all.len());
        fresh.apply_remote(all.drain(..take)).expect("apply");
    }
    assert_eq!(
        snapshot(&fresh),
        expected,
        "delivery order changed the state"
    );

    // Hydration: reopening each store (from its snapshot, if one was taken, plus the ops
    // appended since; else from the whole log) shows the same state.
    for r in &replicas {
        let storage: MemoryStorage = r.storage().clone();
        let had_snapshot = storage.snapshot().expect("snapshot").is_some();
        let reopened = Replica::open(storage, late.clone(), schema(), &mut rng).expect("reopen");
        assert_eq!(
            snapshot(&reopened),
            expected,
            "hydration (snapshot: {had_snapshot}) changed the state"
        );
    }
    if std::env::var("WEFT_DEBUG").is_ok() {
        eprintln!("{expected}");
    }
    ["n1", "n2"]
        .iter()
        .map(|k| {
            replicas[0]
                .text("notes", k, "body")
                .map_or(0, |t| t.chars().count())
        })
        .sum()
}

fn pair(replicas: &mut [Mem], from: usize, to: usize) -> (&Mem, &mut Mem) {
    assert_ne!(from, to);
    if from < to {
        let (a, b) = replicas.split_at_mut(to);
        (&a[from], &mut b[0])
    } else {
        let (a, b) = replicas.split_at_mut(from);
        (&b[0], &mut a[to])
    }
}

#[test]
fn converges_once() {
    let _ = run(1);
}

#[test]
fn converges_over_many_seeds() {
    let with_text = (0..300).filter(|&seed| run(seed) > 0).count();
    assert!(
        with_text > 100,
        "only {with_text} of 300 histories ended with text"
    );
}

/// `WEFT_SEED=<seed>` replays one history.
#[test]
fn replay() {
    if let Some(seed) = std::env::var("WEFT_SEED").ok().and_then(|s| s.parse().ok()) {
        let _ = run(seed);
    }
}

#[test]
#[ignore = "runs until it fails; start with `cargo test --release -- --ignored forever`"]
fn forever() {
    let start: u64 = std::env::var("WEFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    for seed in start.. {
        let _ = run(seed);
    }
}
