//! A deterministic simulation of 3 to 8 replicas that attacks convergence.
//!
//! Each seeded [`History`] makes random writes of every kind (records, counters, sets, text,
//! lists, conflicts under last-writer-wins, a merge handler and manual resolution) on replicas
//! that each run on the durable store ([`crdt_core::RedbStorage`]) over a simulated disk
//! ([`PowerLossDisk`]). The replicas sync through [`merkle_sync::Session`]s, one pair per link,
//! over a simulated network that loses, duplicates and delays (so reorders) messages and
//! partitions replicas, in virtual time. Their clocks are skewed, within and beyond the drift
//! limit, so some remote ops are rejected and later accepted. Replicas lose power (mid-commit
//! too) and restart from what the disk kept.
//!
//! At the end the network heals (no loss, no partition, clocks caught up, links back) and the
//! check is strict: every link settles, every replica shows the same state and the same Merkle
//! root, each index equals a fresh index of its log, the state equals a reference model (one
//! in-memory replica fed the union of all ops in a random order), no op waits for dependencies,
//! and no acknowledged op was lost (checked after every restart and at the end).
//!
//! Time and randomness are arguments: [`History::generate`] draws a history from a seed and
//! [`run`] replays it exactly. [`minimize`] removes steps of a failing history while it still
//! fails. The `weft simulate` command runs many seeds:
//!
//! ```sh
//! cargo run --release -p weft -- simulate --seeds 200 --start 0
//! ```
//!
//! ```
//! use weft::sim::{Config, History, run};
//!
//! let config = Config::default();
//! let history = History::generate(7, &config);
//! let summary = run(&history, &config)?;
//! assert!(summary.ops_written > 0);
//! # Ok::<(), weft::sim::Failure>(())
//! ```

mod net;
mod world;

use std::fmt;

use crdt_core::Storage;

/// The simulated disk under every replica; it lives in `crdt-core` beside the store.
pub use crdt_core::PowerLossDisk;

use net::World;
use world::Node;

/// Virtual time 0 on the replicas' clocks (an arbitrary instant in 2026, in ms).
pub(crate) const START_MS: u64 = 1_795_316_400_000;

/// splitmix64: the simulation's only source of randomness.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo.saturating_add(self.below(hi.saturating_sub(lo).saturating_add(1)))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    /// Shuffles `items` in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// A deliberate defect, to check that the simulation catches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mutation {
    /// None: the system as built.
    #[default]
    None,
    /// The merge handler keeps hidden state (a call counter), so its result depends on how
    /// often and in what order of arrival it ran: replicas must diverge.
    StatefulMergeHandler,
    /// The stores commit in relaxed mode (a commit returns before it is synced) while the
    /// simulation still counts commits as acknowledged: a power cut must lose some.
    RelaxedCommits,
}

/// What histories [`History::generate`] draws, and what [`run`] runs them with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Fewest replicas (at least 2).
    pub min_replicas: usize,
    /// Most replicas (at most 8).
    pub max_replicas: usize,
    /// Fewest steps of a history.
    pub min_steps: usize,
    /// Most steps of a history.
    pub max_steps: usize,
    /// The clocks' maximum drift, in ms (remote ops further ahead are rejected).
    pub max_drift_ms: u64,
    /// A deliberate defect (tests of the simulation itself).
    pub mutation: Mutation,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            min_replicas: 3,
            max_replicas: 8,
            min_steps: 40,
            max_steps: 160,
            max_drift_ms: hlc::Config::DEFAULT_MAX_DRIFT_MS,
            mutation: Mutation::None,
        }
    }
}

impl Config {
    /// With between `min` and `max` replicas (clamped to 2..=8).
    pub fn replicas(mut self, min: usize, max: usize) -> Self {
        self.min_replicas = min.clamp(2, 8);
        self.max_replicas = max.clamp(self.min_replicas, 8);
        self
    }

    /// With between `min` and `max` steps.
    pub fn steps(mut self, min: usize, max: usize) -> Self {
        self.min_steps = min;
        self.max_steps = max.max(min);
        self
    }

    /// With a deliberate defect.
    pub fn mutation(mut self, mutation: Mutation) -> Self {
        self.mutation = mutation;
        self
    }
}

/// The network's faults, fixed for a history.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message arrives twice.
    pub duplicate: f64,
    /// Latency of each message, uniformly in this range of ms (so messages reorder).
    pub latency: (u64, u64),
}

/// The sessions' settings, fixed for a history: from tiny frames and sketch messages (so
/// transfers and sketches span many messages) to the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSettings {
    /// [`merkle_sync::Config::max_frame_bytes`].
    pub max_frame_bytes: usize,
    /// [`merkle_sync::Config::symbols_per_message`].
    pub symbols_per_message: usize,
    /// [`merkle_sync::Config::retransmit_after`], in ms.
    pub retransmit_after: u64,
}

/// One step of a history. Every random choice is drawn when the history is generated, so a
/// history replays exactly and stays meaningful when steps are removed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// A local transaction on `replica`: `kind` picks the write, `a` and `b` its arguments
    /// (record, value, text position...), resolved against the replica's state.
    Write {
        /// The replica.
        replica: usize,
        /// Which write.
        kind: u32,
        /// First argument.
        a: u32,
        /// Second argument.
        b: u32,
    },
    /// Manual resolution on `replica`: pick a listed conflict and write one of its siblings.
    Resolve {
        /// The replica.
        replica: usize,
        /// Which conflict and sibling.
        pick: u32,
    },
    /// Virtual time passes: messages arrive, timers fire, links reconnect.
    Tick {
        /// How long, in ms.
        ms: u64,
    },
    /// `replica`'s clock is set `offset_ms` off virtual time (beyond the drift limit, its ops
    /// are rejected by the others until they catch up).
    Skew {
        /// The replica.
        replica: usize,
        /// The offset.
        offset_ms: i64,
    },
    /// The replicas in `mask` are cut off from the others for `ms`.
    Partition {
        /// Bit `i` set: replica `i` is on one side.
        mask: u64,
        /// How long.
        ms: u64,
    },
    /// `replica`'s power goes after `after` more disk operations (0: now, and even mid-commit
    /// later); it restarts from what the disk kept. `fate` decides which unsynced writes
    /// survive.
    Crash {
        /// The replica.
        replica: usize,
        /// Disk operations left.
        after: u64,
        /// Seed of the unsynced writes' fates.
        fate: u64,
    },
    /// `replica` saves a state snapshot (so a restart loads it).
    Snapshot {
        /// The replica.
        replica: usize,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Write {
                replica,
                kind,
                a,
                b,
            } => write!(f, "write r{replica} kind={kind} a={a} b={b}"),
            Step::Resolve { replica, pick } => write!(f, "resolve r{replica} pick={pick}"),
            Step::Tick { ms } => write!(f, "tick {ms} ms"),
            Step::Skew { replica, offset_ms } => write!(f, "skew r{replica} {offset_ms:+} ms"),
            Step::Partition { mask, ms } => write!(f, "partition {mask:#b} for {ms} ms"),
            Step::Crash {
                replica,
                after,
                fate,
            } => write!(f, "crash r{replica} after {after} disk ops (fate {fate})"),
            Step::Snapshot { replica } => write!(f, "snapshot r{replica}"),
        }
    }
}

/// A seeded history: the replicas, the network's faults and the steps.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// The seed it was drawn from (also seeds the network and the replica ids).
    pub seed: u64,
    /// How many replicas.
    pub replicas: usize,
    /// The network's faults.
    pub faults: Faults,
    /// The sessions' settings.
    pub sync: SyncSettings,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

impl History {
    /// Draws a history from `seed`.
    pub fn generate(seed: u64, config: &Config) -> Self {
        let mut rng = SimRng::new(seed);
        let replicas = rng.range(config.min_replicas as u64, config.max_replicas as u64) as usize;
        let faults = match rng.below(4) {
            0 => Faults {
                drop: 0.0,
                duplicate: 0.0,
                latency: (5, 5),
            },
            1 => Faults {
                drop: 0.02,
                duplicate: 0.05,
                latency: (5, 100),
            },
            2 => Faults {
                drop: 0.2,
                duplicate: 0.1,
                latency: (1, 300),
            },
            _ => Faults {
                drop: 0.05,
                duplicate: 0.3,
                latency: (20, 2000),
            },
        };
        let n = rng.range(config.min_steps as u64, config.max_steps as u64);
        let r = replicas as u64;
        let steps = (0..n)
            .map(|_| {
                let replica = rng.below(r) as usize;
                match rng.below(100) {
                    0..=54 => Step::Write {
                        replica,
                        kind: rng.below(u64::from(world::WRITE_KINDS)) as u32,
                        a: rng.u32(),
                        b: rng.u32(),
                    },
                    55..=58 => Step::Resolve {
                        replica,
                        pick: rng.u32(),
                    },
                    59..=79 => Step::Tick {
                        ms: rng.range(1, 3000),
                    },
                    // A long pause: sessions in a partition time out, clocks catch up.
                    80 => Step::Tick {
                        ms: rng.range(60_000, 900_000),
                    },
                    81..=85 => Step::Skew {
                        replica,
                        offset_ms: if rng.chance(0.7) {
                            rng.range(0, 40_000) as i64 - 20_000
                        } else {
                            (config.max_drift_ms + rng.range(1_000, 120_000)) as i64
                        },
                    },
                    86..=89 => Step::Partition {
                        mask: 1 + rng.below((1 << r) - 2),
                        ms: if rng.chance(0.8) {
                            rng.range(500, 30_000)
                        } else {
                            rng.range(60_000, 1_200_000)
                        },
                    },
                    90..=95 => Step::Crash {
                        replica,
                        after: if rng.chance(0.5) { 0 } else { rng.range(1, 80) },
                        fate: rng.next_u64(),
                    },
                    _ => Step::Snapshot { replica },
                }
            })
            .collect();
        // Drawn apart, so that adding them left every seed's other draws as they were.
        let mut pick = SimRng::new(seed ^ 0x636f_6e66_6967);
        let sync = SyncSettings {
            max_frame_bytes: [256, 2 << 10, 64 << 10][pick.below(3) as usize],
            symbols_per_message: [8, 64, 2048][pick.below(3) as usize],
            retransmit_after: [200, 1000][pick.below(2) as usize],
        };
        Self {
            seed,
            replicas,
            faults,
            sync,
            steps,
        }
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} replicas, drop {}, duplicate {}, latency {}-{} ms, frames {} B, \
             {} symbols a message, retransmit after {} ms, {} steps:",
            self.seed,
            self.replicas,
            self.faults.drop,
            self.faults.duplicate,
            self.faults.latency.0,
            self.faults.latency.1,
            self.sync.max_frame_bytes,
            self.sync.symbols_per_message,
            self.sync.retransmit_after,
            self.steps.len()
        )?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {i:>3}. {step}")?;
        }
        Ok(())
    }
}

/// What a passing history did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Ops committed locally.
    pub ops_written: u64,
    /// Ops in every log at the end.
    pub ops_total: u64,
    /// Ops received from peers (duplicates included).
    pub ops_received: u64,
    /// Remote ops rejected for drift (and later accepted: the history converged).
    pub drift_rejections: u64,
    /// Messages sent.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages lost (faults and partitions).
    pub dropped: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Sessions that timed out.
    pub timeouts: u64,
    /// Links (re)connected.
    pub connections: u64,
    /// Power cuts and restarts.
    pub crashes: u64,
    /// Network events handled.
    pub events: u64,
    /// Virtual time at the end, in ms.
    pub virtual_ms: u64,
}

impl Summary {
    /// Adds another history's counts to these.
    pub fn add(&mut self, other: &Summary) {
        self.ops_written += other.ops_written;
        self.ops_total += other.ops_total;
        self.ops_received += other.ops_received;
        self.drift_rejections += other.drift_rejections;
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.timeouts += other.timeouts;
        self.connections += other.connections;
        self.crashes += other.crashes;
        self.events += other.events;
        self.virtual_ms += other.virtual_ms;
    }
}

/// A history that failed: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The step it failed at (`None`: in the final check).
    pub step: Option<usize>,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(i) => write!(f, "seed {} failed at step {i}: {}", self.seed, self.reason),
            None => write!(
                f,
                "seed {} failed in the final check: {}",
                self.seed, self.reason
            ),
        }
    }
}

impl std::error::Error for Failure {}

/// How long the healed network may take to settle, in virtual ms.
const HEAL_LIMIT_MS: u64 = 30 * 60_000;

/// Runs `history` and checks the result. Deterministic: the same history and config give the
/// same outcome.
pub fn run(history: &History, config: &Config) -> Result<Summary, Failure> {
    let fail = |step: Option<usize>| {
        move |reason: String| Failure {
            seed: history.seed,
            step,
            reason,
        }
    };
    if !(1..=64).contains(&history.replicas) {
        return Err(fail(None)(format!(
            "a history needs 1 to 64 replicas, not {}",
            history.replicas
        )));
    }
    let schema = world::schema(config.mutation);
    let hlc = hlc::Config::default().with_max_drift_ms(config.max_drift_ms);
    let mut nodes = Vec::new();
    for i in 0..history.replicas {
        let clock = hlc::ManualClock::new(START_MS);
        let seed = history
            .seed
            .wrapping_mul(0x1000_0000_01b3)
            .wrapping_add(i as u64);
        let store = world::redb_config(config.mutation);
        nodes.push(Node::create(seed, clock, schema.clone(), hlc, store).map_err(fail(None))?);
    }
    let mut w = World::new(nodes, history.faults, history.sync, hlc, history.seed);
    w.set_clocks();
    for (i, step) in history.steps.iter().enumerate() {
        apply_step(&mut w, step).map_err(fail(Some(i)))?;
        w.reboot_dead().map_err(fail(Some(i)))?;
        let until = w.now + 5;
        w.advance(until).map_err(fail(Some(i)))?;
    }
    heal(&mut w).map_err(fail(None))?;
    check(&w, &schema, history.seed).map_err(fail(None))?;
    let mut summary = w.summary;
    summary.ops_total = w.nodes.first().map_or(0, |n| n.index.len());
    summary.virtual_ms = w.now;
    Ok(summary)
}

fn apply_step(w: &mut World, step: &Step) -> Result<(), String> {
    let count = w.nodes.len();
    match *step {
        Step::Write {
            replica,
            kind,
            a,
            b,
        } => {
            let n = w.nodes[replica % count].write(kind, a, b)?;
            w.summary.ops_written += n as u64;
        }
        Step::Resolve { replica, pick } => {
            let n = w.nodes[replica % count].resolve(pick)?;
            w.summary.ops_written += n as u64;
        }
        Step::Tick { ms } => {
            let until = w.now + ms;
            w.advance(until)?;
        }
        Step::Skew { replica, offset_ms } => {
            w.skew[replica % count] = offset_ms;
            w.set_clocks();
        }
        Step::Partition { mask, ms } => {
            w.partition = Some((mask, w.now + ms));
        }
        Step::Crash {
            replica,
            after,
            fate,
        } => {
            let i = replica % count;
            w.fates[i] = fate;
            if after == 0 {
                w.reboot(i)?;
            } else {
                w.nodes[i].disk.cut_after(after);
            }
        }
        Step::Snapshot { replica } => {
            let node = &mut w.nodes[replica % count];
            if let Err(e) = node.replica.save_snapshot()
                && !node.disk.is_dead()
            {
                return Err(format!("saving a snapshot failed: {e}"));
            }
        }
    }
    Ok(())
}

/// The network heals: no more loss or partitions, planned power cuts cancelled, every clock
/// caught up with the fastest, and time runs until every link has settled.
fn heal(w: &mut World) -> Result<(), String> {
    w.faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        latency: w.faults.latency,
    };
    w.partition = None;
    for node in &w.nodes {
        node.disk.keep_power();
    }
    let fastest = w.skew.iter().copied().max().unwrap_or(0).max(0);
    for s in &mut w.skew {
        *s = fastest;
    }
    w.set_clocks();
    let start = w.now;
    while !w.quiescent() {
        if w.now > start + HEAL_LIMIT_MS {
            return Err(format!(
                "the healed network did not settle in {} s: {}",
                HEAL_LIMIT_MS / 1000,
                w.describe()
            ));
        }
        let until = w.now + 1000;
        w.advance(until)?;
    }
    Ok(())
}

/// The final check: identical state and Merkle roots, indexes true to their logs, the
/// reference model, nothing waiting, no acknowledged op lost.
fn check(w: &World, schema: &crdt_core::Schema, seed: u64) -> Result<(), String> {
    let scope = w.scope();
    let mut all = std::collections::BTreeMap::new();
    let mut acked = std::collections::BTreeSet::new();
    for node in &w.nodes {
        for op in node.replica.storage().scan() {
            let op = op.map_err(|e| format!("reading a log: {e}"))?;
            all.insert(op.id, op);
        }
        acked.extend(node.acked.iter().copied());
    }
    let expected = world::reference(
        all.values().cloned().collect(),
        schema.clone(),
        &mut SimRng::new(seed ^ 0x6d6f_6465_6c00),
    )?;
    let root = merkle_sync::Index::from_ops(all.values()).root(scope);
    for (i, node) in w.nodes.iter().enumerate() {
        let state = world::observe(&node.replica)?;
        if state != expected {
            return Err(format!(
                "replica {i} differs from the reference model:\n{}",
                diff(&state, &expected)
            ));
        }
        if node.replica.buffered() != 0 {
            return Err(format!(
                "replica {i}: {} ops still wait for dependencies",
                node.replica.buffered()
            ));
        }
        let mut log = Vec::new();
        for op in node.replica.storage().scan() {
            log.push(op.map_err(|e| format!("reading a log: {e}"))?);
        }
        let fresh = merkle_sync::Index::from_ops(log.iter());
        if fresh.root(scope) != node.index.root(scope) || fresh.len() != node.index.len() {
            return Err(format!("replica {i}: its index does not match its log"));
        }
        if node.index.root(scope) != root {
            return Err(format!(
                "replica {i}: Merkle root differs ({} of {} ops)",
                node.index.len(),
                all.len()
            ));
        }
        if let Some(lost) = acked.iter().find(|id| !log.iter().any(|op| op.id == **id)) {
            return Err(format!("replica {i} lacks acknowledged op {lost}"));
        }
    }
    Ok(())
}

/// The first lines where two observations differ.
fn diff(got: &str, expected: &str) -> String {
    let mut out = String::new();
    for (g, e) in got.lines().zip(expected.lines()) {
        if g != e {
            out += &format!("  replica: {g}\n  model:   {e}\n");
        }
    }
    out
}

/// Shrinks a failing history: removes runs of steps (halving their length down to single
/// steps) while the history still fails, then tries fewer replicas. Returns the smallest
/// failing history found and its failure, or `None` if `history` passes.
pub fn minimize(history: &History, config: &Config) -> Option<(History, Failure)> {
    let mut failure = run(history, config).err()?;
    let mut best = history.clone();
    let mut budget = 4000u32;
    let mut chunk = (best.steps.len() / 2).max(1);
    loop {
        let mut removed = false;
        let mut i = 0;
        while i < best.steps.len() && budget > 0 {
            let mut candidate = best.clone();
            let end = (i + chunk).min(candidate.steps.len());
            candidate.steps.drain(i..end);
            budget -= 1;
            match run(&candidate, config) {
                Err(f) => {
                    best = candidate;
                    failure = f;
                    removed = true;
                }
                Ok(_) => i += chunk,
            }
        }
        if budget == 0 || (chunk == 1 && !removed) {
            break;
        }
        if !removed {
            chunk = (chunk / 2).max(1);
        }
    }
    while best.replicas > 2 && budget > 0 {
        let mut candidate = best.clone();
        candidate.replicas -= 1;
        // Steps name replicas modulo the count: write that down, so the history reads true.
        let n = candidate.replicas;
        for step in &mut candidate.steps {
            match step {
                Step::Write { replica, .. }
                | Step::Resolve { replica, .. }
                | Step::Skew { replica, .. }
                | Step::Crash { replica, .. }
                | Step::Snapshot { replica } => *replica %= n,
                Step::Partition { mask, .. } => *mask &= (1u64 << n) - 1,
                Step::Tick { .. } => {}
            }
        }
        budget -= 1;
        match run(&candidate, config) {
            Err(f) => {
                best = candidate;
                failure = f;
            }
            Ok(_) => break,
        }
    }
    Some((best, failure))
}
