//! One history: the steps, the replicas they run on, and the checks at the end.

use core::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crdt_core::{
    Conflict, ConflictPolicy, FieldKind, MemoryStorage, Op, OpId, PrimaryKey, Query, Replica,
    Report, Row, Storage, Value,
};
use hlc::{Clock, ManualClock};

use super::values::Gen;
use super::{Failure, Harness, Stats};

/// One step of a history. A step carries a seed rather than concrete values, so that dropping
/// other steps (to shrink a counterexample) leaves what it does as close as the state allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// `replica` runs one transaction: a random mutation of a random field of a random record
    /// (inserting the record first if it is not live there), or deleting the record.
    Write {
        /// The writer, an index into the replicas.
        replica: usize,
        /// What the writes are drawn from.
        seed: u64,
    },
    /// `to` receives a random subset of `from`'s log, shuffled, in one to three batches, some
    /// of them twice: partial delivery, reordering and duplication.
    Deliver {
        /// The sender.
        from: usize,
        /// The receiver.
        to: usize,
        /// What the subset and its order are drawn from.
        seed: u64,
    },
    /// `replica`'s clock moves forward by `ms` milliseconds.
    Tick {
        /// The replica whose clock moves.
        replica: usize,
        /// How far.
        ms: u64,
    },
}

impl Step {
    /// A write step.
    pub fn write(replica: usize, seed: u64) -> Self {
        Self::Write { replica, seed }
    }

    /// A delivery step.
    pub fn deliver(from: usize, to: usize, seed: u64) -> Self {
        Self::Deliver { from, to, seed }
    }

    /// A clock step.
    pub fn tick(replica: usize, ms: u64) -> Self {
        Self::Tick { replica, ms }
    }

    /// A random step for `replicas` replicas.
    pub(crate) fn random(g: &mut Gen, replicas: usize) -> Self {
        let n = replicas.max(1) as u64;
        let replica = g.below(n) as usize;
        match g.below(10) {
            0..=4 => Self::write(replica, g.next_u64()),
            5..=8 => {
                let to = (replica + 1 + g.below(n - 1) as usize) % replicas.max(1);
                Self::deliver(replica, to, g.next_u64())
            }
            _ => Self::tick(replica, g.below(1_000)),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { replica, seed } => write!(f, "replica {replica} writes (seed {seed:#x})"),
            Self::Deliver { from, to, seed } => {
                write!(
                    f,
                    "replica {from} delivers to replica {to} (seed {seed:#x})"
                )
            }
            Self::Tick { replica, ms } => write!(f, "replica {replica}'s clock moves {ms} ms"),
        }
    }
}

type Peer = Replica<MemoryStorage, ManualClock>;

/// The replicas of one history and what happened to them.
pub(crate) struct World<'h> {
    harness: &'h Harness,
    replicas: Vec<Peer>,
    clocks: Vec<ManualClock>,
    /// Every op a replica committed: none may be missing after the heal.
    committed: Vec<OpId>,
    /// What each step did, in words, when a trace is wanted.
    pub(crate) trace: Option<Vec<String>>,
    /// The step being run, from 1, for the trace.
    pub(crate) step_number: usize,
    pub(crate) stats: Stats,
}

impl<'h> World<'h> {
    /// `replicas` fresh in-memory replicas, with ids and clocks derived from `seed`.
    pub(crate) fn new(harness: &'h Harness, seed: u64, replicas: usize) -> Result<Self, Failure> {
        let mut g = Gen::new(seed ^ 0x05ee_d1d5);
        let start = harness.config.start_ms;
        let mut world = Self {
            harness,
            replicas: Vec::new(),
            clocks: Vec::new(),
            committed: Vec::new(),
            trace: None,
            step_number: 0,
            stats: Stats::default(),
        };
        for _ in 0..replicas {
            let clock = ManualClock::new(start + g.below(1_000));
            let replica = Replica::open(
                MemoryStorage::new(),
                clock.clone(),
                harness.schema.clone(),
                &mut g,
            )
            .map_err(|e| Failure::Error(format!("opening a replica failed: {e}")))?;
            world.clocks.push(clock);
            world.replicas.push(replica);
        }
        Ok(world)
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(match self.step_number {
                0 => line(),
                n => format!("{n}. {}", line()),
            });
        }
    }

    /// Runs one step; a step naming a replica that does not exist does nothing.
    pub(crate) fn step(&mut self, step: Step) -> Result<(), Failure> {
        let n = self.replicas.len();
        self.stats.steps += 1;
        match step {
            Step::Write { replica, seed } if replica < n => {
                let mut g = Gen::new(seed);
                self.clocks[replica].advance(g.below(20));
                self.mutate(replica, &mut g);
            }
            Step::Deliver { from, to, seed } if from < n && to < n && from != to => {
                self.deliver(from, to, seed)?;
            }
            Step::Tick { replica, ms } if replica < n => {
                self.clocks[replica].advance(ms);
                self.note(|| format!("replica {replica}'s clock moves {ms} ms"));
            }
            _ => {}
        }
        self.drain_reports()
    }

    /// One random mutation as one transaction. Rejected writes (e.g. a unique value taken)
    /// are counted and otherwise ignored: they change nothing.
    fn mutate(&mut self, r: usize, g: &mut Gen) {
        let schema = &self.harness.schema;
        let collections: Vec<_> = schema.collections().collect();
        let Some(&collection) = g.pick(&collections) else {
            return;
        };
        let c = collection.name();
        let rows = self.replicas[r].query(&Query::new(c)).unwrap_or_default();
        let live: Vec<String> = rows.iter().map(|row| row.key.clone()).collect();
        let keys = self.harness.keys();
        let key = match collection.key_kind() {
            PrimaryKey::Generated if live.is_empty() || g.chance(1, 4) => None,
            PrimaryKey::Generated => g.pick(&live).cloned(),
            _ => g.pick(&keys).cloned(),
        };
        let exists = key.as_ref().is_some_and(|k| live.contains(k));
        let Some(field) = g.pick(collection.fields()) else {
            return;
        };
        let row = key
            .as_ref()
            .and_then(|k| rows.iter().find(|row| &row.key == k));
        let delete = exists && g.chance(1, 12);
        let harness = self.harness;
        let mut described = String::new();
        let frontier = self.replicas[r].version_vector().clone();
        let result = self.replicas[r].transact(|tx| {
            let key = match (&key, exists) {
                (Some(k), true) => k.clone(),
                _ => {
                    let values = harness.required_values(collection, g, &keys);
                    let k = tx.insert(
                        c,
                        key.as_deref(),
                        values.iter().map(|(f, v)| (*f, v.clone())),
                    )?;
                    described = format!("inserts {c}/{k} with {values:?}; then ");
                    k
                }
            };
            if delete {
                described += &format!("deletes {c}/{key}");
                return tx.delete(c, &key);
            }
            let f = field.name();
            match field.kind() {
                FieldKind::Register(ty) => {
                    let v = harness.value(collection, field, ty, g, &keys);
                    described += &format!("sets {c}/{key}.{f} = {v:?}");
                    tx.set(c, &key, f, v)
                }
                FieldKind::Counter => {
                    let by = g.int(-5, 5);
                    described += &format!("adds {by} to {c}/{key}.{f}");
                    tx.increment(c, &key, f, by)
                }
                FieldKind::Set(ty) => {
                    let current = row.and_then(|row| row.set(f)).unwrap_or_default();
                    match g.pick(current) {
                        Some(v) if g.chance(1, 3) => {
                            described += &format!("removes {v:?} from {c}/{key}.{f}");
                            tx.remove(c, &key, f, v.clone())
                        }
                        _ => {
                            let v = harness.value(collection, field, ty, g, &keys);
                            described += &format!("adds {v:?} to {c}/{key}.{f}");
                            tx.add(c, &key, f, v)
                        }
                    }
                }
                FieldKind::Text => {
                    let len = row
                        .and_then(|row| row.text(f))
                        .map_or(0, |t| t.chars().count());
                    let pos = g.below(len as u64 + 1);
                    if len > 0 && g.chance(1, 3) {
                        let n = 1 + g.below((len as u64 - pos.min(len as u64 - 1)).min(3));
                        let pos = pos.min(len as u64 - 1);
                        described += &format!("deletes {n} chars at {pos} of {c}/{key}.{f}");
                        tx.delete_text(c, &key, f, pos, n)
                    } else {
                        let s: String = (0..=g.below(2))
                            .filter_map(|_| g.pick(&['x', 'y', 'é']).copied())
                            .collect();
                        described += &format!("inserts {s:?} at {pos} of {c}/{key}.{f}");
                        tx.insert_text(c, &key, f, pos, &s)
                    }
                }
                FieldKind::List(ty) => {
                    let len = row.and_then(|row| row.list(f)).map_or(0, <[Value]>::len) as u64;
                    let pos = g.below(len + 1);
                    if len > 0 && g.chance(1, 3) {
                        let pos = pos.min(len - 1);
                        described += &format!("deletes element {pos} of {c}/{key}.{f}");
                        tx.delete_list(c, &key, f, pos, 1)
                    } else {
                        let values: Vec<Value> = (0..=g.below(2))
                            .map(|_| harness.value(collection, field, ty, g, &keys))
                            .collect();
                        described += &format!("inserts {values:?} at {pos} of {c}/{key}.{f}");
                        tx.insert_list(c, &key, f, pos, values)
                    }
                }
                _ => Ok(()),
            }
        });
        self.stats.writes += 1;
        match result {
            Ok(()) => {
                let id = self.replicas[r].id();
                let fresh = self.replicas[r].ops_since(&frontier).unwrap_or_default();
                self.committed.extend(
                    fresh
                        .iter()
                        .filter(|op| op.id.replica == id)
                        .map(|op| op.id),
                );
                self.note(|| format!("replica {r} {described}"));
            }
            Err(e) => {
                self.stats.writes_rejected += 1;
                self.note(|| format!("replica {r} tries: {described} (rejected: {e})"));
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, seed: u64) -> Result<(), Failure> {
        let mut g = Gen::new(seed);
        let all: Vec<Op> = self.replicas[from]
            .storage()
            .scan()
            .collect::<Result<_, _>>()
            .map_err(|e| Failure::Error(format!("replica {from} cannot read its log: {e}")))?;
        let everything = g.chance(1, 4);
        let mut ops: Vec<Op> = all
            .into_iter()
            .filter(|_| everything || g.chance(1, 2))
            .collect();
        // Shuffle (Fisher-Yates), then cut into batches; one batch may arrive twice.
        for i in (1..ops.len()).rev() {
            ops.swap(i, g.below(i as u64 + 1) as usize);
        }
        let batches = 1 + g.below(3) as usize;
        let per = ops.len().div_ceil(batches).max(1);
        let mut chunks: Vec<Vec<Op>> = ops.chunks(per).map(<[Op]>::to_vec).collect();
        if let Some(again) = g.pick(&chunks).filter(|_| g.chance(1, 4)).cloned() {
            let at = g.below(chunks.len() as u64 + 1) as usize;
            chunks.insert(at, again);
        }
        let total = ops.len();
        let mut applied = 0;
        for batch in chunks {
            self.stats.ops_delivered += batch.len() as u64;
            let outcome = self.replicas[to]
                .apply_remote(batch)
                .map_err(|e| Failure::Error(format!("replica {to} failed to apply ops: {e}")))?;
            applied += outcome.applied.len();
        }
        self.stats.deliveries += 1;
        self.note(|| {
            format!("replica {from} delivers {total} of its ops to replica {to} ({applied} new)")
        });
        Ok(())
    }

    /// A handler that failed on any replica fails the history.
    fn drain_reports(&mut self) -> Result<(), Failure> {
        for (i, r) in self.replicas.iter_mut().enumerate() {
            while let Some(event) = r.poll_event() {
                if let crdt_core::Event::Report(Report::MergeFailed {
                    collection,
                    key,
                    field,
                    reason,
                }) = event
                {
                    return Err(Failure::HandlerFailed {
                        replica: i,
                        collection,
                        key,
                        field,
                        reason,
                    });
                }
            }
        }
        Ok(())
    }

    /// The network heals: clocks catch up with the fastest, then every replica sends its whole
    /// log to every other until none learns anything.
    pub(crate) fn heal(&mut self) -> Result<(), Failure> {
        let now = self
            .clocks
            .iter()
            .map(hlc::Clock::now_ms)
            .max()
            .unwrap_or(0);
        for c in &self.clocks {
            c.set(now.max(c.now_ms()));
        }
        let n = self.replicas.len();
        for _round in 0..2 {
            for from in 0..n {
                let ops: Vec<Op> = self.replicas[from]
                    .storage()
                    .scan()
                    .collect::<Result<_, _>>()
                    .map_err(|e| Failure::Error(format!("replica {from}: {e}")))?;
                for to in (0..n).filter(|&to| to != from) {
                    self.replicas[to]
                        .apply_remote(ops.clone())
                        .map_err(|e| Failure::Error(format!("replica {to}: {e}")))?;
                }
            }
        }
        self.step_number = 0;
        self.note(|| "the network heals: every replica receives every op".to_owned());
        self.drain_reports()
    }

    /// The checks after the heal: no op lost or stuck, merge handlers deterministic, and every
    /// replica showing the same records, values and conflicts.
    pub(crate) fn check(&mut self) -> Result<(), Failure> {
        let logs: Vec<Vec<OpId>> = self
            .replicas
            .iter()
            .map(|r| {
                r.storage()
                    .scan()
                    .filter_map(Result::ok)
                    .map(|op| op.id)
                    .collect()
            })
            .collect();
        for (i, r) in self.replicas.iter().enumerate() {
            if let Some(lost) = self
                .committed
                .iter()
                .find(|id| logs[i].binary_search(id).is_err())
            {
                return Err(Failure::Diverged(format!(
                    "replica {i} lacks op {lost} after the heal ({} of {} ops)",
                    logs[i].len(),
                    self.committed.len()
                )));
            }
            if r.buffered() > 0 {
                return Err(Failure::Diverged(format!(
                    "replica {i} still holds {} ops back after the heal",
                    r.buffered()
                )));
            }
        }
        self.stats.ops += self.committed.len() as u64;
        for (i, r) in self.replicas.iter().enumerate() {
            self.stats.merges_checked += check_handlers(&self.harness.schema, i, r)?;
        }
        let views: Vec<_> = self
            .replicas
            .iter()
            .map(|r| view(&self.harness.schema, r))
            .collect();
        self.stats.conflicts += views[0].iter().map(|(_, _, c)| c.len() as u64).sum::<u64>();
        for (i, v) in views.iter().enumerate().skip(1) {
            if let Some(diff) = first_difference(&views[0], v) {
                return Err(Failure::Diverged(format!(
                    "replicas 0 and {i} differ: {diff}"
                )));
            }
        }
        Ok(())
    }
}

/// For each record of each collection: its row and its open conflicts.
type View = Vec<(String, Vec<Row>, Vec<Conflict>)>;

fn view(schema: &crdt_core::Schema, r: &Peer) -> View {
    schema
        .collections()
        .map(|c| {
            let mut rows = r.query(&Query::new(c.name())).unwrap_or_default();
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            let conflicts = r.conflicts(c.name()).unwrap_or_default();
            (c.name().to_owned(), rows, conflicts)
        })
        .collect()
}

fn first_difference(a: &View, b: &View) -> Option<String> {
    for ((name, rows_a, conf_a), (_, rows_b, conf_b)) in a.iter().zip(b) {
        let keys_a: Vec<&str> = rows_a.iter().map(|r| r.key.as_str()).collect();
        let keys_b: Vec<&str> = rows_b.iter().map(|r| r.key.as_str()).collect();
        if keys_a != keys_b {
            return Some(format!(
                "collection {name} has records {keys_a:?} and {keys_b:?}"
            ));
        }
        for (ra, rb) in rows_a.iter().zip(rows_b) {
            for (field, va) in &ra.fields {
                let vb = rb.fields.get(field);
                if vb != Some(va) {
                    return Some(format!("{name}/{}.{field} is {va:?} and {vb:?}", ra.key));
                }
            }
        }
        if conf_a != conf_b {
            return Some(format!(
                "collection {name} has conflicts {conf_a:?} and {conf_b:?}"
            ));
        }
    }
    None
}

/// Calls each merge handler again on the siblings a replica holds: it must give, twice, the
/// value the replica shows. Returns how many sibling sets were checked.
fn check_handlers(schema: &crdt_core::Schema, replica: usize, r: &Peer) -> Result<u64, Failure> {
    let mut checked = 0;
    for c in schema.collections() {
        for conflict in r.conflicts(c.name()).unwrap_or_default() {
            let Conflict::Siblings {
                key,
                field,
                siblings,
                ..
            } = conflict
            else {
                continue;
            };
            let Some(f) = c.field_named(&field) else {
                continue;
            };
            let ConflictPolicy::Merge(handler) = c.policy_of(f) else {
                continue;
            };
            let values: Vec<&Value> = siblings.iter().map(|(_, v)| v).collect();
            let call = || catch_unwind(AssertUnwindSafe(|| handler(&values))).ok();
            let (first, second) = (call(), call());
            let shown = r
                .get(c.name(), &key)
                .ok()
                .flatten()
                .and_then(|row| row.get(&field).cloned());
            checked += 1;
            let (Some(first), Some(second)) = (first, second) else {
                return Err(Failure::HandlerFailed {
                    replica,
                    collection: c.name().to_owned(),
                    key,
                    field,
                    reason: "the merge handler panicked when called again".to_owned(),
                });
            };
            if first != second || shown.as_ref() != Some(&first) {
                return Err(Failure::NotDeterministic {
                    collection: c.name().to_owned(),
                    key,
                    field,
                    siblings: values.into_iter().cloned().collect(),
                    results: Box::new([shown.unwrap_or(Value::Null), first, second]),
                });
            }
        }
    }
    Ok(checked)
}
