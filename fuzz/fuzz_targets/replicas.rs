//! Arbitrary histories on several replicas (writes of every field kind, partial, duplicated
//! and reordered delivery, clock moves), then a full heal: the replicas converge, lose no
//! op, and the merge handlers hold up. The histories run through `weft::testing`, on a schema
//! with every field kind and conflict policy.
#![no_main]

mod common;

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weft::testing::{Config, Harness, Step};

#[derive(Arbitrary, Debug)]
enum Action {
    Write { replica: u8, seed: u64 },
    Deliver { from: u8, to: u8, seed: u64 },
    Tick { replica: u8, ms: u16 },
}

#[derive(Arbitrary, Debug)]
struct History {
    seed: u64,
    actions: Vec<Action>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness::new(common::schema()).config(Config::default().replicas(5)))
}

fuzz_target!(|history: History| {
    let steps: Vec<Step> = history
        .actions
        .iter()
        .take(64)
        .map(|a| match *a {
            Action::Write { replica, seed } => Step::write(usize::from(replica % 5), seed),
            Action::Deliver { from, to, seed } => {
                Step::deliver(usize::from(from % 5), usize::from(to % 5), seed)
            }
            Action::Tick { replica, ms } => Step::tick(usize::from(replica % 5), u64::from(ms)),
        })
        .collect();
    if let Err(failure) = harness().check(history.seed, &steps) {
        panic!("seed {}: {failure}\nsteps: {steps:?}", history.seed);
    }
});
