//! Crash test: a child process (this test binary, re-executed) opens a replica on a redb file
//! and commits records one after another, printing `ACK <key>` after each commit returns. The
//! parent kills it with SIGKILL at a random moment, reopens the replica, and checks that it
//! opens and holds every acknowledged record, and that the clock resumed above the log.
//!
//! A few cycles run in CI; `cargo test -p crdt-core --test durable_crash -- --ignored` runs
//! hundreds (`WEFT_CYCLES=n` to choose).

mod common;
mod durable_util;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{START_MS, schema};
use crdt_core::{RedbStorage, Replica, Storage, VersionVector};
use durable_util::{TempDir, ops};
use hlc::ManualClock;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const CHILD_ENV: &str = "WEFT_CRASH_CHILD";
const GROW_ENV: &str = "WEFT_CRASH_GROW_CHILD";
/// Ops per commit of the growing child: enough that the file grows (and the store fills the
/// new space with zeros) every few commits.
const GROW_BATCH: usize = 1_000;

/// The child's side: commit until killed. Does nothing unless started by [`cycle`].
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, cycle) = spec.split_once('|').expect("path|cycle");
    let clock = ManualClock::new(START_MS);
    let mut rng = StdRng::seed_from_u64(cycle.parse().expect("cycle"));
    let store = RedbStorage::open(path).expect("child opens the store");
    let mut replica = Replica::open(store, clock.clone(), schema(), &mut rng).expect("child opens");
    let mut out = std::io::stdout().lock();
    for i in 0..1_000_000u64 {
        let key = format!("c{cycle}-{i}");
        // Some commits carry several ops, some one.
        replica
            .transact(|tx| {
                tx.insert("users", Some(key.as_str()), [("name", key.as_str().into())])?;
                if i % 3 == 0 {
                    tx.increment("users", &key, "karma", 1)?;
                }
                Ok(())
            })
            .expect("commit");
        writeln!(out, "ACK {key}").expect("report");
        out.flush().expect("report");
        if i % 7 == 0 {
            clock.advance(1);
        }
    }
}

/// Runs the test `child` of this binary (which does nothing without `env_key`) in a child
/// process with `env_key=env_value`, SIGKILLs it after `delay_ms`, and returns what followed
/// `ACK ` on each line it printed.
fn run_and_kill(child: &str, env_key: &str, env_value: &str, delay_ms: u64) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([child, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_key, env_value)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ACK ").map(str::to_owned))
            .collect::<Vec<String>>()
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    child.kill().expect("SIGKILL the child");
    let _ = child.wait();
    reader.join().expect("reader")
}

/// One cycle: start the child, kill it after `delay_ms`, reopen, check. Returns the number of
/// acknowledged records of this cycle.
fn cycle(path: &std::path::Path, n: u64, delay_ms: u64) -> usize {
    let acked = run_and_kill(
        "crash_child",
        CHILD_ENV,
        &format!("{}|{n}", path.display()),
        delay_ms,
    );

    let clock = ManualClock::new(START_MS);
    let mut rng = StdRng::seed_from_u64(0);
    let store = RedbStorage::open(path)
        .unwrap_or_else(|e| panic!("cycle {n}: the store does not open after the kill: {e}"));
    let mut replica = Replica::open(store, clock, schema(), &mut rng)
        .unwrap_or_else(|e| panic!("cycle {n}: the replica does not open after the kill: {e}"));
    for key in &acked {
        assert!(
            replica.get("users", key).expect("get").is_some(),
            "cycle {n}: acknowledged record {key} is missing after the kill"
        );
    }
    // The clock resumes above everything stored, even though the manual clock restarted.
    let max = replica.version_vector().max_timestamp();
    replica
        .transact(|tx| {
            tx.insert(
                "users",
                Some(format!("after-{n}").as_str()),
                [("name", "x".into())],
            )
            .map(|_| ())
        })
        .expect("commit after reopening");
    let newest = replica
        .storage()
        .ops_after(&VersionVector::new())
        .map(|op| op.expect("decodes").id.ts)
        .max();
    assert!(newest > max, "cycle {n}: the clock reissued a timestamp");
    acked.len()
}

/// The growing child's side: large commits of ops numbered from where the store stands,
/// printing `ACK <index of the commit's first op>`, until killed.
#[test]
fn crash_grow_child() {
    let Ok(path) = std::env::var(GROW_ENV) else {
        return;
    };
    let mut store = RedbStorage::open(&path).expect("child opens the store");
    let mut next = store.len().expect("len");
    let mut out = std::io::stdout().lock();
    loop {
        store
            .append(&ops(1_000 + next, 1, GROW_BATCH))
            .expect("commit");
        writeln!(out, "ACK {next}").expect("report");
        out.flush().expect("report");
        next += GROW_BATCH as u64;
    }
}

/// Kills the growing child at random moments, so some kills land while redb grows the file
/// and the store fills the new space; every acknowledged commit must be there after each.
fn growing_cycles(count: u64, seed: u64) {
    let dir = TempDir::new("crash-grow");
    let path = dir.file("grow.redb");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0;
    for n in 0..count {
        let path_text = path.display().to_string();
        let acked: Vec<u64> = run_and_kill(
            "crash_grow_child",
            GROW_ENV,
            &path_text,
            rng.random_range(20..400),
        )
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect();
        let store = RedbStorage::open(&path)
            .unwrap_or_else(|e| panic!("cycle {n}: the store does not open after the kill: {e}"));
        for &first in &acked {
            for id in [first, first + GROW_BATCH as u64 - 1] {
                let op = &ops(1_000 + id, 1, 1)[0];
                assert!(
                    store.contains(op.id).expect("contains"),
                    "cycle {n}: op {id} of an acknowledged commit is missing after the kill"
                );
            }
        }
        let len = store.len().expect("len");
        assert_eq!(
            len % GROW_BATCH as u64,
            0,
            "cycle {n}: a commit is there in part"
        );
        total += acked.len();
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "{count} kill cycles of a growing store, {total} acknowledged commits checked, {size} bytes"
    );
}

fn cycles(count: u64, seed: u64) {
    let dir = TempDir::new("crash");
    let path = dir.file("replica.redb");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = 0;
    for n in 0..count {
        // Sometimes kill during start-up (open, hydration), usually in the middle of commits.
        let delay = if rng.random_bool(0.2) {
            rng.random_range(0..30)
        } else {
            rng.random_range(30..400)
        };
        total += cycle(&path, n, delay);
    }
    eprintln!("{count} kill cycles, {total} acknowledged commits checked");
}

#[test]
fn survives_kills() {
    cycles(3, 1);
}

#[test]
fn survives_kills_while_the_file_grows() {
    growing_cycles(4, 1);
}

#[test]
#[ignore]
fn survives_hundreds_of_kills() {
    let count = std::env::var("WEFT_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    cycles(count, 2);
    growing_cycles(count, 2);
}
