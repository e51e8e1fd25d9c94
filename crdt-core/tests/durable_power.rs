//! Power-loss simulation: the store runs on a simulated disk whose power goes after a random
//! number of operations; the writes not yet synced are then each lost, torn or kept. After the
//! cut the store must open, hold every op whose commit was acknowledged, and hold nothing that
//! was never appended. The redb file and the commit log are two files of the disk; the log's
//! capacity is drawn per run (down to a few records, so that cuts land in folds too), and some
//! runs have no log.
//!
//! A failure prints its seed; replay with `WEFT_SEED=<seed> cargo test -p crdt-core --test
//! durable_power replay -- --nocapture`.

mod durable_util;

use std::collections::BTreeSet;

use crdt_core::{OpId, PowerLossDisk, RedbConfig, RedbStorage, ReplicaId, Storage};
use durable_util::*;
use hlc::Timestamp;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "power-loss run failed with seed {0} (replay: WEFT_SEED={0})",
                self.0
            );
        }
    }
}

/// One run: commit batches until the power goes, reboot, check. Returns whether the cut
/// happened (rather than the run ending first).
fn run(seed: u64) -> bool {
    run_with(seed, false).0
}

/// With `growing`, the batches are large enough that redb grows the file several times
/// during the run, and the store fills the new space with zeros ahead of redb's writes, so
/// cuts land in the middle of growth and of the fill too. Also returns the length of the
/// image after the cut.
fn run_with(seed: u64, growing: bool) -> (bool, usize) {
    let _guard = SeedGuard(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let disk = PowerLossDisk::new();
    let log = disk.another_file();
    let log_bytes = [0, 2 << 10, 16 << 10, 64 << 10, 1 << 20][rng.random_range(0..5)];
    let config = RedbConfig::new().cache_bytes(1 << 20).log_bytes(log_bytes);
    let mut store =
        RedbStorage::with_backends(disk.clone(), log.clone(), config.clone()).expect("create");
    store.set_replica_id(ReplicaId::new(1)).expect("id");
    disk.cut_after(rng.random_range(0..if growing { 1_000 } else { 400 }));

    let mut acked: BTreeSet<OpId> = BTreeSet::new();
    let mut tried: BTreeSet<OpId> = BTreeSet::new();
    let mut high_water = None;
    let mut ms = 1_000;
    for _ in 0..if growing { 25 } else { 60 } {
        let n = if growing {
            rng.random_range(200..1_500)
        } else if rng.random_bool(0.2) {
            rng.random_range(20..200)
        } else {
            rng.random_range(1..4)
        };
        let batch = ops(ms, 1, n);
        ms += n as u64;
        tried.extend(batch.iter().map(|op| op.id));
        match store.append(&batch) {
            Ok(()) => {
                acked.extend(batch.iter().map(|op| op.id));
                high_water = batch.last().map(|op| op.id.ts);
            }
            Err(_) => break,
        }
    }
    let cut = disk.is_dead();
    let image = disk.after_cut(|n| rng.random_range(0..n));
    let log_image = log.after_cut(|n| rng.random_range(0..n));
    let image_len = image.len();
    drop(store);

    let rebooted = PowerLossDisk::from_image(image);
    let log = rebooted.another_file_from_image(log_image);
    let store = RedbStorage::with_backends(rebooted, log, config)
        .unwrap_or_else(|e| panic!("seed {seed}: the store does not open after the cut: {e}"));
    let present: BTreeSet<OpId> = store
        .scan()
        .map(|op| op.expect("stored ops decode").id)
        .collect();
    let lost: Vec<&OpId> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged ops lost: {lost:?}"
    );
    assert!(
        present.is_subset(&tried),
        "seed {seed}: ops that were never appended"
    );
    assert_eq!(store.len().unwrap(), present.len() as u64);
    if !acked.is_empty() {
        assert_eq!(store.replica_id().unwrap(), Some(ReplicaId::new(1)));
        assert!(store.high_water().unwrap() >= high_water);
    }
    let max = present.iter().map(|id| id.ts).max();
    assert!(
        store.high_water().unwrap() >= max,
        "seed {seed}: the high-water mark is below a stored op"
    );
    let _: Option<Timestamp> = max;
    (cut, image_len)
}

#[test]
fn power_loss_once() {
    run(1);
}

#[test]
fn power_loss_over_many_seeds() {
    let cuts = (0..60).filter(|&seed| run(seed)).count();
    eprintln!("60 runs, {cuts} cut mid-way");
    assert!(
        cuts > 30,
        "the budget should usually run out before the run ends"
    );
}

#[test]
fn power_loss_while_the_file_grows() {
    let runs: Vec<(bool, usize)> = (0..8).map(|seed| run_with(seed, true)).collect();
    let cuts = runs.iter().filter(|r| r.0).count();
    let largest = runs.iter().map(|r| r.1).max().unwrap_or(0);
    eprintln!("8 growing runs, {cuts} cut mid-way, images up to {largest} bytes");
    assert!(
        largest > 2 << 20,
        "the file should grow well past its first size"
    );
    assert!(
        cuts > 4,
        "the budget should usually run out before the run ends"
    );
}

#[test]
fn replay() {
    if let Ok(seed) = std::env::var("WEFT_SEED") {
        run(seed.parse().expect("WEFT_SEED is a number"));
    }
}

/// Thousands of cut points: `cargo test -p crdt-core --test durable_power -- --ignored`.
#[test]
#[ignore]
fn power_loss_thousands() {
    let runs = std::env::var("WEFT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000u64);
    let cuts = (1_000..1_000 + runs).filter(|&seed| run(seed)).count();
    eprintln!("{runs} runs, {cuts} cut mid-way");
    let growing = runs / 10;
    let cuts = (1_000..1_000 + growing)
        .filter(|&seed| run_with(seed, true).0)
        .count();
    eprintln!("{growing} growing runs, {cuts} cut mid-way");
}
