//! The replicas of a simulation: schema, random writes, crash and restart on a simulated disk.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crdt_core::{
    Collection, CommitMode, Conflict, ConflictPolicy, Field, MemoryStorage, Op, OpId, PrimaryKey,
    Query, RedbConfig, RedbStorage, Replica, ScalarType, Schema, Storage, Value, WriteError,
};
use hlc::ManualClock;
use merkle_sync::Index;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Mutation, PowerLossDisk, SimRng};

/// The collections of the simulated schema (the sync scope).
pub(crate) const COLLECTIONS: [&str; 3] = ["users", "teams", "notes"];

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const WORDS: [&str; 5] = ["x", "y", "z", "w", "v"];
const TEXTS: [&str; 5] = ["ab", "é", "😀x", "hello ", "z"];
const NOTES: [&str; 2] = ["n1", "n2"];

/// How many kinds of write [`write`] knows.
pub(crate) const WRITE_KINDS: u32 = 20;

/// A non-commutative merge handler: the siblings joined with `+` in the order given (op id
/// order, the same on every replica).
fn concat(values: &[&Value]) -> Value {
    let parts: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
    Value::String(parts.join("+"))
}

/// The schema: every field kind and every conflict policy.
pub(crate) fn schema(mutation: Mutation) -> Schema {
    let merge = match mutation {
        Mutation::None | Mutation::RelaxedCommits => ConflictPolicy::merge(concat),
        Mutation::StatefulMergeHandler => {
            // Hidden state: the result depends on how often, and so in what order of
            // arrival, the handler ran on this process. Replicas must diverge.
            let calls = Arc::new(AtomicU64::new(0));
            ConflictPolicy::merge(move |values: &[&Value]| {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                let Value::String(s) = concat(values) else {
                    return Value::Null;
                };
                Value::String(format!("{s}#{}", n % 3))
            })
        }
    };
    let users = Collection::new("users")
        .field(Field::string("name").required())
        .field(Field::string("email").unique())
        .field(Field::int("age").default_value(0))
        .field(Field::string("bio").policy(ConflictPolicy::Manual))
        .field(Field::string("motto").policy(merge))
        .field(Field::counter("karma"))
        .field(Field::set("tags", ScalarType::String));
    let teams = Collection::new("teams")
        .primary_key(PrimaryKey::Generated)
        .field(Field::string("title"))
        .field(Field::bool("active"));
    let notes = Collection::new("notes")
        .field(Field::string("title"))
        .field(Field::text("body"))
        .field(Field::list("items", ScalarType::Int));
    Schema::new(1)
        .collection(users)
        .and_then(|s| s.collection(teams))
        .and_then(|s| s.collection(notes))
        .unwrap_or_else(|e| unreachable!("the simulation's schema is valid: {e}"))
}

/// A replica on a simulated disk, with the index the application keeps beside its log.
pub(crate) struct Node {
    pub(crate) replica: Replica<RedbStorage, ManualClock>,
    /// The store's file; `log`, its commit log, is a second file of the same disk.
    pub(crate) disk: PowerLossDisk,
    log: PowerLossDisk,
    pub(crate) index: Index,
    pub(crate) clock: ManualClock,
    /// Ops this replica acknowledged (a commit or a remote batch that returned `Ok`).
    pub(crate) acked: BTreeSet<OpId>,
    /// The highest timestamp of an op this replica stored: every later local op must be
    /// stamped above it, also after a restart.
    high: Option<hlc::Timestamp>,
    store_config: RedbConfig,
}

pub(crate) fn redb_config(mutation: Mutation) -> RedbConfig {
    // A small commit log, so that runs fold it into redb often and crashes land in folds.
    let config = RedbConfig::new()
        .cache_bytes(256 << 10)
        .log_bytes(16 << 10)
        .verify_on_open(false);
    match mutation {
        // Commits return before they are synced, and the background sync never comes within
        // a run: a power cut loses commits the simulation counts as acknowledged.
        Mutation::RelaxedCommits => config.commit(CommitMode::Relaxed {
            interval: std::time::Duration::from_secs(3600),
        }),
        _ => config,
    }
}

impl Node {
    pub(crate) fn create(
        seed: u64,
        clock: ManualClock,
        schema: Schema,
        hlc: hlc::Config,
        store_config: RedbConfig,
    ) -> Result<Self, String> {
        let disk = PowerLossDisk::new();
        let log = disk.another_file();
        let store = RedbStorage::with_backends(disk.clone(), log.clone(), store_config.clone())
            .map_err(|e| format!("creating the store: {e}"))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let replica = Replica::open_with_config(store, clock.clone(), schema, hlc, &mut rng)
            .map_err(|e| format!("opening the replica: {e}"))?;
        // The new replica's id is on disk before the history starts (relaxed mode included).
        replica
            .storage()
            .flush()
            .map_err(|e| format!("syncing the new store: {e}"))?;
        Ok(Self {
            replica,
            disk,
            log,
            index: Index::new(),
            clock,
            acked: BTreeSet::new(),
            high: None,
            store_config,
        })
    }

    /// The power went (or goes now): reboot from what the disk kept, reopen, rebuild the
    /// index, and check that every acknowledged op survived.
    pub(crate) fn reboot(&mut self, fate: u64, hlc: hlc::Config) -> Result<(), String> {
        self.disk.cut_after(0);
        let mut fates = SimRng::new(fate);
        let image = self.disk.after_cut(|n| fates.below(n));
        let log_image = self.log.after_cut(|n| fates.below(n));
        let disk = PowerLossDisk::from_image(image);
        let log = disk.another_file_from_image(log_image);
        let store =
            RedbStorage::with_backends(disk.clone(), log.clone(), self.store_config.clone())
                .map_err(|e| format!("the store does not open after a power cut: {e}"))?;
        let schema = self.replica.schema().clone();
        let id = self.replica.id();
        let mut rng = StdRng::seed_from_u64(fate);
        let replica = Replica::open_with_config(store, self.clock.clone(), schema, hlc, &mut rng)
            .map_err(|e| format!("the replica does not open after a power cut: {e}"))?;
        if replica.id() != id {
            return Err(format!(
                "the replica id changed from {id} to {}",
                replica.id()
            ));
        }
        let mut ops = Vec::new();
        for op in replica.storage().scan() {
            ops.push(op.map_err(|e| format!("reading the log after a power cut: {e}"))?);
        }
        let present: BTreeSet<OpId> = ops.iter().map(|op| op.id).collect();
        if let Some(lost) = self.acked.difference(&present).next() {
            return Err(format!(
                "acknowledged op {lost} lost in a power cut ({} of {} lost)",
                self.acked.difference(&present).count(),
                self.acked.len()
            ));
        }
        self.high = self.high.max(ops.iter().map(|op| op.id.ts).max());
        self.index = Index::from_ops(ops.iter());
        self.replica = replica;
        self.disk = disk;
        self.log = log;
        Ok(())
    }

    /// Applies ops from a peer; returns how many were rejected for drift. Any other
    /// rejection of an honest op is a failure; a store that fails (power cut) is not.
    pub(crate) fn apply_remote(&mut self, ops: Vec<Op>) -> Result<u64, String> {
        match self.replica.apply_remote(ops) {
            Ok(outcome) => {
                let mut drift = 0;
                for (id, reason) in &outcome.rejected {
                    match reason {
                        crdt_core::RejectReason::Drift(_) => drift += 1,
                        other => return Err(format!("honest op {id} rejected: {other}")),
                    }
                }
                self.index
                    .insert_from(
                        &merkle_sync::StorageSource(self.replica.storage()),
                        &outcome.applied,
                    )
                    .map_err(|e| format!("indexing applied ops: {e}"))?;
                for id in outcome.applied {
                    self.acked.insert(id);
                    self.high = self.high.max(Some(id.ts));
                }
                Ok(drift)
            }
            Err(_) if self.disk.is_dead() => Ok(0),
            Err(e) => Err(format!("applying remote ops failed: {e}")),
        }
    }

    /// One local write, chosen by `kind` with its arguments drawn from `a` and `b`. Returns
    /// how many ops it committed. Refusals the state explains (no such record, a unique clash)
    /// and a store that lost power commit nothing and are not failures.
    pub(crate) fn write(&mut self, kind: u32, a: u32, b: u32) -> Result<usize, String> {
        let r = &mut self.replica;
        let pick = |items: &[&'static str], x: u32| items[x as usize % items.len()];
        let key = pick(&KEYS, a);
        let word = pick(&WORDS, a / 4);
        let note = pick(&NOTES, a / 20);
        let n = i64::from(b % 15) - 5;
        let text = pick(&TEXTS, b / 16);
        let tlen = r
            .text("notes", note, "body")
            .map_or(0, |t| t.chars().count() as u64);
        let ilen = r.list("notes", note, "items").map_or(0, |l| l.len() as u64);
        let at = u64::from(b / 128) % (tlen + 1);
        let del = (u64::from(a / 40) % 4).min(tlen - at);
        let iat = u64::from(b / 128) % (ilen + 1);
        // Most writes need their record: create it first, in the same transaction, unless
        // the draw says to try the write on a missing record (a refusal).
        let user_missing = r.get("users", key).ok().flatten().is_none();
        let note_missing = r.get("notes", note).ok().flatten().is_none();
        let create = !b.is_multiple_of(8);
        let result = r.transact(|tx| {
            if create && user_missing && (2..=11).contains(&kind) {
                tx.insert("users", Some(key), [("name", word.into())])?;
            }
            if create && note_missing && (14..=18).contains(&kind) {
                tx.insert("notes", Some(note), [("title", word.into())])?;
            }
            match kind {
                0 | 1 => tx
                    .insert("users", Some(key), [("name", word.into())])
                    .map(|_| ()),
                2 => tx.set("users", key, "name", word),
                3 => tx.set("users", key, "email", format!("{word}@e")),
                4 => tx.set("users", key, "bio", word),
                5 | 6 => tx.set("users", key, "motto", word),
                7 => tx.increment("users", key, "karma", n),
                8 => tx.add("users", key, "tags", word),
                9 => tx.remove("users", key, "tags", word),
                10 => tx.delete("users", key),
                11 => {
                    tx.set("users", key, "age", n)?;
                    tx.increment("users", key, "karma", 1)
                }
                12 => tx
                    .insert("teams", None, [("title", word.into())])
                    .map(|_| ()),
                13 => tx
                    .insert("notes", Some(note), [("title", word.into())])
                    .map(|_| ()),
                14 | 15 => tx.insert_text("notes", note, "body", at, text),
                16 => tx.delete_text("notes", note, "body", at, del),
                17 => tx.insert_list("notes", note, "items", iat, vec![n.into()]),
                18 => tx.delete_list(
                    "notes",
                    note,
                    "items",
                    iat.min(ilen.saturating_sub(1)),
                    ilen.min(1),
                ),
                _ => {
                    tx.insert_text("notes", note, "body", at, text)?;
                    tx.delete("notes", note)
                }
            }?;
            Ok(tx.ops().to_vec())
        });
        self.committed(result)
    }

    /// Manual resolution: picks one listed conflict of `users.bio` and writes one of its
    /// siblings, which replaces them all.
    pub(crate) fn resolve(&mut self, pick: u32) -> Result<usize, String> {
        let conflicts = self
            .replica
            .conflicts("users")
            .map_err(|e| format!("listing conflicts: {e}"))?;
        let manual: Vec<(String, Vec<(OpId, Value)>)> = conflicts
            .into_iter()
            .filter_map(|c| match c {
                Conflict::Siblings {
                    key,
                    field,
                    siblings,
                    ..
                } if field == "bio" => Some((key, siblings)),
                _ => None,
            })
            .collect();
        if manual.is_empty() {
            return Ok(0);
        }
        let (key, siblings) = &manual[pick as usize % manual.len()];
        let Some((_, chosen)) = siblings.get((pick / 8) as usize % siblings.len().max(1)) else {
            return Ok(0);
        };
        let result = self.replica.transact(|tx| {
            tx.set("users", key, "bio", chosen.clone())?;
            Ok(tx.ops().to_vec())
        });
        let n = self.committed(result)?;
        if n > 0 {
            let still = self
                .replica
                .conflicts("users")
                .map_err(|e| format!("listing conflicts: {e}"))?
                .into_iter()
                .any(|c| matches!(&c, Conflict::Siblings { key: k, field, .. } if k == key && field == "bio"));
            if still {
                return Err(format!(
                    "resolving users.{key}.bio left the conflict listed"
                ));
            }
        }
        Ok(n)
    }

    fn committed(&mut self, result: Result<Vec<Op>, WriteError>) -> Result<usize, String> {
        match result {
            Ok(ops) => {
                for op in &ops {
                    if self.high.is_some_and(|h| op.id.ts <= h) {
                        return Err(format!(
                            "local op {} is stamped at or below {:?}, a timestamp this replica \
                             already stored",
                            op.id, self.high
                        ));
                    }
                    self.high = Some(op.id.ts);
                    self.index.insert_op(op);
                    self.acked.insert(op.id);
                }
                Ok(ops.len())
            }
            Err(
                WriteError::NoSuchRecord { .. }
                | WriteError::AlreadyExists { .. }
                | WriteError::Unique { .. },
            ) => Ok(0),
            Err(_) if self.disk.is_dead() => Ok(0),
            Err(e) => Err(format!("unexpected write error: {e}")),
        }
    }
}

/// Everything a reader can observe, for comparing replicas.
pub(crate) fn observe<S: Storage, C: hlc::Clock>(r: &Replica<S, C>) -> Result<String, String> {
    let mut out = String::new();
    for c in COLLECTIONS {
        let rows = r.query(&Query::new(c)).map_err(|e| e.to_string())?;
        let conflicts = r.conflicts(c).map_err(|e| e.to_string())?;
        out.push_str(&format!("{c}: {rows:?}\nconflicts: {conflicts:?}\n"));
    }
    Ok(out)
}

/// The reference model: one in-memory replica fed the union of every replica's ops, in a
/// random order and random chunks.
pub(crate) fn reference(
    mut ops: Vec<Op>,
    schema: Schema,
    rng: &mut SimRng,
) -> Result<String, String> {
    rng.shuffle(&mut ops);
    let clock = ManualClock::new(super::START_MS + 10 * 365 * 86_400_000);
    let mut ids = StdRng::seed_from_u64(rng.next_u64());
    let mut model = Replica::open(MemoryStorage::new(), clock, schema, &mut ids)
        .map_err(|e| format!("opening the model: {e}"))?;
    while !ops.is_empty() {
        let take = 1 + rng.below(ops.len() as u64) as usize;
        let out = model
            .apply_remote(ops.drain(..take))
            .map_err(|e| format!("the model refused ops: {e}"))?;
        if let Some((id, reason)) = out.rejected.first() {
            return Err(format!("the model rejected op {id}: {reason}"));
        }
    }
    if model.buffered() != 0 {
        return Err(format!("{} ops wait in the model", model.buffered()));
    }
    observe(&model)
}
