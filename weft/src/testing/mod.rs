//! A harness that checks an application's schema, merge handlers and value types for
//! convergence, the way weft's own tests check weft.
//!
//! Give [`Harness::new`] the application's [`Schema`] and, with [`Harness::values`],
//! generators for the values its fields hold (closures drawing from a seeded [`Gen`]; fields
//! without one get small values of their type). [`Harness::run`] then plays many random
//! concurrent histories across 2 to [`Config::replicas`] in-memory replicas: random writes
//! to every field kind (registers, counters, sets, text, lists, record deletes), random
//! partial delivery with duplication and reordering, clocks that move apart, and at the end a
//! full heal. After the heal it checks that
//!
//! - no committed op is lost or still held back, and every replica shows the same records,
//!   values and conflicts ([`Failure::Diverged`]);
//! - no merge handler panicked or returned a value of the wrong type
//!   ([`Failure::HandlerFailed`]; weft falls back to last-writer-wins and reports it);
//! - each merge handler, called again on the siblings a replica holds, returns twice the value
//!   the replica shows ([`Failure::NotDeterministic`]).
//!
//! The first failing history is shrunk by dropping steps while it still fails the same way,
//! and comes back as a (boxed) [`Counterexample`] with its seed and a readable trace, so the harness
//! fits in an ordinary `#[test]`. Time and randomness are arguments: clocks are
//! [`hlc::ManualClock`]s starting at [`Config::start_ms`], everything random comes from
//! [`Config::seed`], and a seed replays the same history.
//!
//! Siblings reach a handler in op id order on every replica, so a handler need not be
//! commutative (keeping the first sibling is fine); it must be a pure function of them. This
//! one is not: it reads a global counter, and the harness catches it.
//!
//! ```
//! use std::sync::atomic::{AtomicI64, Ordering};
//! use weft::testing::{Config, Failure, Harness};
//! use weft::{Collection, ConflictPolicy, Field, Schema, Value};
//!
//! static CALLS: AtomicI64 = AtomicI64::new(0);
//! // "Keep the highest bid, plus a bonus": the bonus depends on how often it was called.
//! let flaky = ConflictPolicy::merge(|siblings| {
//!     let best = siblings.iter().filter_map(|v| v.as_int()).max().unwrap_or(0);
//!     Value::Int(best + CALLS.fetch_add(1, Ordering::Relaxed) % 2)
//! });
//! let schema = Schema::new(1).collection(
//!     Collection::new("lots").field(Field::int("bid").policy(flaky)),
//! )?;
//! let harness = Harness::new(schema.clone())
//!     .values("lots", "bid", |g| Value::Int(g.int(1, 100)))
//!     .config(Config::default().seed(7).histories(50));
//! let counterexample = harness.run().unwrap_err();
//! assert!(matches!(
//!     counterexample.failure,
//!     Failure::NotDeterministic { .. } | Failure::Diverged(_)
//! ));
//! assert!(counterexample.steps.len() <= 4, "{counterexample}");
//! println!("{counterexample}"); // the seed, what failed, and the shrunk history
//!
//! // The same schema with a deterministic handler passes.
//! let max = ConflictPolicy::merge(|siblings| {
//!     Value::Int(siblings.iter().filter_map(|v| v.as_int()).max().unwrap_or(0))
//! });
//! let schema = Schema::new(1).collection(
//!     Collection::new("lots").field(Field::int("bid").policy(max)),
//! )?;
//! let stats = Harness::new(schema)
//!     .values("lots", "bid", |g| Value::Int(g.int(1, 100)))
//!     .config(Config::default().seed(7).histories(50))
//!     .run()?;
//! assert!(stats.merges_checked > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod history;
mod values;

use core::fmt;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Once};

use crdt_core::{Collection, Field, FieldKind, ScalarType, Schema, Value};

pub use self::history::Step;
use self::history::World;
pub use self::values::Gen;

/// A generator of values for one field: draws a value from the seeded source.
pub type ValueFn = dyn Fn(&mut Gen) -> Value + Send + Sync;

/// How many histories the harness plays, and how big they are.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The first history's seed; history `i` has seed `seed + i`. Default 0.
    pub seed: u64,
    /// How many histories to play. Default 100.
    pub histories: u64,
    /// Each history has 2 to this many replicas (at most 8). Default 4.
    pub replicas: usize,
    /// Steps per history (writes, deliveries, clock moves), before the heal. Default 40.
    pub steps: usize,
    /// Records of a collection with given keys are drawn from this many keys (`k0`, `k1`,
    /// ...), so that writes collide. Default 3.
    pub keys: usize,
    /// Where the replicas' manual clocks start, in ms. Default 1,795,316,400,000.
    pub start_ms: u64,
    /// The most histories replayed while shrinking a counterexample. Default 2,000.
    pub max_shrink_runs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            seed: 0,
            histories: 100,
            replicas: 4,
            steps: 40,
            keys: 3,
            start_ms: 1_795_316_400_000,
            max_shrink_runs: 2_000,
        }
    }
}

impl Config {
    /// With this first seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With this many histories.
    pub fn histories(mut self, n: u64) -> Self {
        self.histories = n;
        self
    }

    /// With 2 to `n` replicas per history.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// With `n` steps per history.
    pub fn steps(mut self, n: usize) -> Self {
        self.steps = n;
        self
    }

    /// With `n` record keys per collection.
    pub fn keys(mut self, n: usize) -> Self {
        self.keys = n;
        self
    }
}

/// What the harness did, summed over the histories that passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Histories played.
    pub histories: u64,
    /// Steps run.
    pub steps: u64,
    /// Transactions tried.
    pub writes: u64,
    /// Transactions the replica refused (a missing record, a unique value taken...).
    pub writes_rejected: u64,
    /// Deliveries between replicas (before the heal).
    pub deliveries: u64,
    /// Ops delivered, duplicates included.
    pub ops_delivered: u64,
    /// Ops committed.
    pub ops: u64,
    /// Conflicts open at the end (siblings and unique violations), on one replica.
    pub conflicts: u64,
    /// Sibling sets on which a merge handler was called again and checked.
    pub merges_checked: u64,
}

impl Stats {
    fn add(&mut self, o: &Self) {
        self.histories += o.histories;
        self.steps += o.steps;
        self.writes += o.writes;
        self.writes_rejected += o.writes_rejected;
        self.deliveries += o.deliveries;
        self.ops_delivered += o.ops_delivered;
        self.ops += o.ops;
        self.conflicts += o.conflicts;
        self.merges_checked += o.merges_checked;
    }
}

/// What went wrong in a history.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Failure {
    /// After the heal the replicas disagree, or one lacks or holds back ops.
    Diverged(String),
    /// A merge handler panicked or returned a value of the wrong type on a replica.
    HandlerFailed {
        /// The replica, an index into the history's replicas.
        replica: usize,
        /// The collection.
        collection: String,
        /// The record.
        key: String,
        /// The field.
        field: String,
        /// The panic message or the type mismatch.
        reason: String,
    },
    /// A merge handler called again on the same siblings gave another value.
    NotDeterministic {
        /// The collection.
        collection: String,
        /// The record.
        key: String,
        /// The field.
        field: String,
        /// The siblings, in op id order.
        siblings: Vec<Value>,
        /// What the replica shows, then two more calls of the handler.
        results: Box<[Value; 3]>,
    },
    /// Something panicked outside a merge handler (a value generator, or weft itself).
    Panicked(String),
    /// A replica failed (its store, or opening it with this schema).
    Error(String),
}

impl Failure {
    fn same_kind(&self, other: &Self) -> bool {
        core::mem::discriminant(self) == core::mem::discriminant(other)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Diverged(what) => write!(f, "replicas diverge: {what}"),
            Self::HandlerFailed {
                replica,
                collection,
                key,
                field,
                reason,
            } => write!(
                f,
                "the merge handler of {collection}.{field} failed on replica {replica} \
                 (record {key}): {reason}"
            ),
            Self::NotDeterministic {
                collection,
                key,
                field,
                siblings,
                results,
            } => {
                let [shown, first, second] = &**results;
                write!(
                    f,
                    "the merge handler of {collection}.{field} is not deterministic: on siblings \
                 {siblings:?} (record {key}) the replica shows {shown:?}, and calling it again \
                 gives {first:?}, then {second:?}"
                )
            }
            Self::Panicked(message) => write!(f, "panicked: {message}"),
            Self::Error(message) => write!(f, "a replica failed: {message}"),
        }
    }
}

/// The smallest failing history found, with everything needed to replay it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Counterexample {
    /// The history's seed: `Config::default().seed(seed).histories(1)` plays it again, and
    /// [`Harness::check`] replays [`Counterexample::steps`] with it.
    pub seed: u64,
    /// How many replicas the history has.
    pub replicas: usize,
    /// What failed, in the shrunk history.
    pub failure: Failure,
    /// The shrunk history.
    pub steps: Vec<Step>,
    /// How many steps the history had before shrinking.
    pub original_steps: usize,
    /// What the shrunk history does, in words.
    pub trace: Vec<String>,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.failure)?;
        writeln!(
            f,
            "seed {} ({} replicas), shrunk from {} to {} steps:",
            self.seed,
            self.replicas,
            self.original_steps,
            self.steps.len()
        )?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(
            f,
            "replay: Harness::check({}, &steps) with steps {:?}",
            self.seed, self.steps
        )
    }
}

impl std::error::Error for Counterexample {}

/// Plays random concurrent histories against an application's schema (see the
/// [module docs](self)).
#[derive(Clone)]
pub struct Harness {
    schema: Schema,
    generators: BTreeMap<(String, String), Arc<ValueFn>>,
    config: Config,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("schema", &self.schema)
            .field("generators", &self.generators.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

impl Harness {
    /// A harness for `schema`, with the default [`Config`].
    pub fn new(schema: Schema) -> Self {
        Self {
            schema,
            generators: BTreeMap::new(),
            config: Config::default(),
        }
    }

    /// Draws the values of `collection.field` from `generator`: a register's values, a set's
    /// elements or a list's items. Fields without a generator get small values of their type.
    pub fn values(
        mut self,
        collection: &str,
        field: &str,
        generator: impl Fn(&mut Gen) -> Value + Send + Sync + 'static,
    ) -> Self {
        self.generators.insert(
            (collection.to_owned(), field.to_owned()),
            Arc::new(generator),
        );
        self
    }

    /// With this configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Plays [`Config::histories`] histories. On the first failure it shrinks the history and
    /// returns it; otherwise what the histories did.
    ///
    /// A panicking handler prints its message once; the replays while shrinking run with the
    /// panic messages of this thread silenced (through a panic hook installed once, which
    /// passes every other panic to the hook that was there before).
    pub fn run(&self) -> Result<Stats, Box<Counterexample>> {
        let mut total = Stats::default();
        for i in 0..self.config.histories {
            let seed = self.config.seed.wrapping_add(i);
            let steps = self.history(seed);
            match self.check(seed, &steps) {
                Ok(stats) => total.add(&stats),
                Err(failure) => {
                    return Err(Box::new(quietly(|| self.shrink(seed, steps, failure))));
                }
            }
        }
        Ok(total)
    }

    /// The history that seed `seed` plays: [`Config::steps`] random steps.
    pub fn history(&self, seed: u64) -> Vec<Step> {
        let mut g = Gen::new(seed);
        let replicas = self.replicas_for(seed);
        (0..self.config.steps)
            .map(|_| Step::random(&mut g, replicas))
            .collect()
    }

    /// How many replicas the history of `seed` has.
    pub fn replicas_for(&self, seed: u64) -> usize {
        let max = self.config.replicas.clamp(2, 8) as u64;
        2 + Gen::new(seed ^ 0x7265_706c).below(max - 1) as usize
    }

    /// Plays `steps` on the replicas of `seed` (see [`Harness::replicas_for`]; steps naming a
    /// replica beyond them do nothing), heals the network and checks the replicas.
    pub fn check(&self, seed: u64, steps: &[Step]) -> Result<Stats, Failure> {
        self.play(seed, steps, false).0
    }

    fn play(
        &self,
        seed: u64,
        steps: &[Step],
        trace: bool,
    ) -> (Result<Stats, Failure>, Vec<String>) {
        let mut lines = Vec::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut world = World::new(self, seed, self.replicas_for(seed))?;
            if trace {
                world.trace = Some(Vec::new());
            }
            let mut result = Ok(());
            for (i, step) in steps.iter().enumerate() {
                world.step_number = i + 1;
                result = world.step(*step);
                if result.is_err() {
                    break;
                }
            }
            let result = result
                .and_then(|()| world.heal())
                .and_then(|()| world.check());
            lines = world.trace.take().unwrap_or_default();
            result.map(|()| {
                let mut stats = world.stats;
                stats.histories = 1;
                stats
            })
        }));
        let result = result.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(Failure::Panicked(message))
        });
        (result, lines)
    }

    /// Drops steps while the history still fails the same way: halves first, then smaller
    /// and smaller runs of steps, down to single ones.
    fn shrink(&self, seed: u64, mut steps: Vec<Step>, mut failure: Failure) -> Counterexample {
        let original_steps = steps.len();
        let mut runs = 0;
        let mut chunk = steps.len().div_ceil(2).max(1);
        'outer: loop {
            let mut i = 0;
            let mut removed = false;
            while i < steps.len() {
                if runs >= self.config.max_shrink_runs {
                    break 'outer;
                }
                runs += 1;
                let mut candidate = steps.clone();
                candidate.drain(i..(i + chunk).min(steps.len()));
                match self.check(seed, &candidate) {
                    Err(f) if f.same_kind(&failure) => {
                        steps = candidate;
                        failure = f;
                        removed = true;
                    }
                    _ => i += chunk,
                }
            }
            if chunk == 1 && !removed {
                break;
            }
            chunk = (chunk / 2).max(1);
        }
        let (result, trace) = self.play(seed, &steps, true);
        if let Err(f) = result {
            failure = f;
        }
        Counterexample {
            seed,
            replicas: self.replicas_for(seed),
            failure,
            steps,
            original_steps,
            trace,
        }
    }

    /// The record keys of collections with given keys.
    pub(crate) fn keys(&self) -> Vec<String> {
        (0..self.config.keys.max(1))
            .map(|i| format!("k{i}"))
            .collect()
    }

    /// A value for `field` (of element type `ty`), from its generator or the default one.
    pub(crate) fn value(
        &self,
        collection: &Collection,
        field: &Field,
        ty: &ScalarType,
        g: &mut Gen,
        keys: &[String],
    ) -> Value {
        match self
            .generators
            .get(&(collection.name().to_owned(), field.name().to_owned()))
        {
            Some(generator) => generator(g),
            None => values::default_value(g, ty, keys),
        }
    }

    /// Values for the required register fields without a default, for an insert.
    pub(crate) fn required_values<'c>(
        &self,
        collection: &'c Collection,
        g: &mut Gen,
        keys: &[String],
    ) -> Vec<(&'c str, Value)> {
        collection
            .fields()
            .iter()
            .filter(|f| f.is_required() && f.default().is_none())
            .filter_map(|f| match f.kind() {
                FieldKind::Register(ty) => Some((f.name(), self.value(collection, f, ty, g, keys))),
                _ => None,
            })
            .collect()
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's panic messages silenced.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            QUIET.with(|q| q.set(self.0));
        }
    }
    let _reset = Reset(QUIET.with(|q| q.replace(true)));
    f()
}
