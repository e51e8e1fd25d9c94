//! The [`Replica`]: what an application reads and writes, and what sync feeds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use hlc::{Clock, ClockedHlc, Config as HlcConfig};

use crate::codec::check_op_size;
use crate::error::{ApplyError, OpenError, RejectReason};
use crate::list::{ElemId, SeqChange};
use crate::op::SeqContent;
use crate::query::{Conflict, Query, QueryError, Row, SubscriptionId};
use crate::replica_seq::Created;
use crate::schema::{Collection, Schema};
use crate::state::{CollectionState, FieldState, RecordState};
use crate::storage::Snapshot;
use crate::validate::{delete_in, refresh_resolved, validate};
use crate::{
    Op, OpId, Payload, ReplicaId, Storage, StorageError, VersionVector, codec, history, snapshot,
};

/// At most this many remote ops wait for missing dependencies; more are rejected, so that a
/// peer cannot make a replica buffer without bound.
pub const MAX_PENDING_OPS: usize = 1 << 20;

/// Something the application should know about, from [`Replica::poll_event`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The result of a subscribed query changed.
    QueryChanged {
        /// The subscription.
        id: SubscriptionId,
        /// The new result.
        rows: Vec<Row>,
    },
    /// A watched text or list field changed (locally or remotely): apply `changes` in order
    /// to a mirror of it, as an editor binding does.
    SeqChanged {
        /// The watch.
        id: SubscriptionId,
        /// The changes, in element positions (code points for text).
        changes: Vec<SeqChange>,
    },
    /// A problem that did not stop the replica.
    Report(Report),
}

/// A problem that did not stop the replica, delivered as [`Event::Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Report {
    /// A merge handler panicked or returned a value of the wrong type; the field shows the
    /// last writer's value instead.
    MergeFailed {
        /// The collection.
        collection: String,
        /// The record.
        key: String,
        /// The field.
        field: String,
        /// The panic message or type mismatch.
        reason: String,
    },
    /// Taking or saving an automatic snapshot failed; the commit that triggered it stands.
    SnapshotFailed {
        /// Why.
        reason: String,
    },
    /// Concurrent writes left several live records with one value of a unique field. Listed by
    /// [`Replica::conflicts`] until resolved.
    UniqueViolated {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The records holding the value.
        keys: Vec<String>,
    },
}

/// What [`Replica::apply_remote`] did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyOutcome {
    /// Ops applied and stored (including earlier buffered ops this batch released), in the
    /// order applied.
    pub applied: Vec<OpId>,
    /// Ops already stored or buffered, ignored.
    pub duplicates: usize,
    /// Ops now waiting for missing dependencies (not applied, not forwarded).
    pub buffered: usize,
    /// Ops refused, with the reason. They are not stored.
    pub rejected: Vec<(OpId, RejectReason)>,
}

/// A replica: the in-memory materialized state of a [`Storage`]'s op log, the clock that
/// stamps its mutations, and the surface that sync uses.
///
/// Reads are served from memory. A local mutation (a [`Transaction`](crate::Transaction)) is
/// stamped, appended to storage and applied to memory in one step; remote ops are checked,
/// deduplicated, buffered until their dependencies are present, stored, then applied.
pub struct Replica<S, C> {
    pub(crate) id: ReplicaId,
    pub(crate) hlc: ClockedHlc<C>,
    pub(crate) storage: S,
    pub(crate) schema: Schema,
    pub(crate) collections: HashMap<String, CollectionState>,
    pub(crate) frontier: VersionVector,
    pending: Pending,
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    pub(crate) next_subscription: u64,
    pub(crate) events: VecDeque<Event>,
    /// Watched text and list fields: (watch, collection, key, field).
    pub(crate) watches: Vec<(SubscriptionId, String, String, String)>,
    /// The next element number of this replica's dense counter (resumes above the highest
    /// stored one on open).
    pub(crate) next_seq: u64,
    /// Take a snapshot after this many ops were appended since the last one.
    auto_snapshot: Option<u64>,
    /// The append position of the last snapshot taken or loaded.
    snapshot_at: u64,
}

struct Subscription {
    query: Query,
    last: Vec<Row>,
}

/// Remote ops waiting for dependencies.
#[derive(Default)]
struct Pending {
    /// Buffered op -> (op, its field's schema position, how many deps are still missing).
    ops: HashMap<OpId, (Op, usize, usize)>,
    /// Missing dep -> buffered ops waiting for it.
    waiting: HashMap<OpId, Vec<OpId>>,
    /// Text and list ops waiting for elements (their origins or the elements they delete).
    elements: Vec<(Op, usize)>,
}

impl Pending {
    fn insert(&mut self, op: Op, field: usize, missing: &[OpId]) {
        for dep in missing {
            self.waiting.entry(*dep).or_default().push(op.id);
        }
        self.ops.insert(op.id, (op, field, missing.len()));
    }

    /// The buffered ops (with their field positions) that became ready now that `id` is
    /// present.
    fn release(&mut self, id: OpId) -> Vec<(Op, usize)> {
        let mut ready = Vec::new();
        for waiter in self.waiting.remove(&id).unwrap_or_default() {
            if let Some((_, _, missing)) = self.ops.get_mut(&waiter) {
                *missing = missing.saturating_sub(1);
                if *missing == 0
                    && let Some((op, field, _)) = self.ops.remove(&waiter)
                {
                    ready.push((op, field));
                }
            }
        }
        ready
    }
}

impl<S: Storage, C: Clock> Replica<S, C> {
    /// Opens a replica on `storage` and hydrates memory from its log. A new store gets a
    /// replica id drawn from `rng`; an existing one keeps its id. The clock resumes above the
    /// highest timestamp in the log.
    pub fn open<R: rand::Rng + ?Sized>(
        mut storage: S,
        clock: C,
        schema: Schema,
        rng: &mut R,
    ) -> Result<Self, OpenError> {
        Self::open_with(
            storage_id(&mut storage, rng)?,
            storage,
            clock,
            schema,
            HlcConfig::default(),
        )
    }

    /// [`Replica::open`] with a clock configuration (maximum drift).
    pub fn open_with_config<R: rand::Rng + ?Sized>(
        mut storage: S,
        clock: C,
        schema: Schema,
        hlc: HlcConfig,
        rng: &mut R,
    ) -> Result<Self, OpenError> {
        Self::open_with(storage_id(&mut storage, rng)?, storage, clock, schema, hlc)
    }

    fn open_with(
        id: ReplicaId,
        storage: S,
        clock: C,
        schema: Schema,
        hlc: HlcConfig,
    ) -> Result<Self, OpenError> {
        schema.validate()?;
        let collections = schema
            .collections()
            .map(|c| (c.name().to_owned(), CollectionState::new(c)))
            .collect();
        let mut replica = Self {
            id,
            hlc: ClockedHlc::new(clock, hlc),
            storage,
            schema,
            collections,
            frontier: VersionVector::new(),
            pending: Pending::default(),
            subscriptions: BTreeMap::new(),
            next_subscription: 0,
            events: VecDeque::new(),
            watches: Vec::new(),
            next_seq: 0,
            auto_snapshot: None,
            snapshot_at: 0,
        };
        let fingerprint = snapshot::fingerprint(&replica.schema);
        let image = match replica.storage.snapshot()? {
            Some(snap) => snapshot::decode(&snap.bytes, &fingerprint).map(|i| (i, snap.position)),
            None => None,
        };
        let replay: Vec<Op> = match image {
            Some((image, position)) => {
                replica.install(image);
                replica.snapshot_at = position;
                replica
                    .storage
                    .ops_appended_after(position)
                    .collect::<Result<_, _>>()?
            }
            None => replica.storage.scan().collect::<Result<_, _>>()?,
        };
        for op in &replay {
            let field = validate(&replica.schema, op).map_err(OpenError::Incompatible)?;
            replica.apply_to_state(op, field);
        }
        if let Some(max) = replica.frontier.max_timestamp() {
            replica.hlc.restore(max);
        }
        // The persisted high-water mark covers timestamps issued but not stored (a rolled-back
        // transaction's) and remote ones observed.
        if let Some(high_water) = replica.storage.high_water()? {
            replica.hlc.restore(high_water);
        }
        // Hydration reports (e.g. handler failures) are stale news; unique conflicts remain
        // listed by `conflicts()`.
        replica.events.clear();
        Ok(replica)
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The clock.
    pub fn clock(&self) -> &ClockedHlc<C> {
        &self.hlc
    }

    /// The live record `key` of `collection`.
    pub fn get(&self, collection: &str, key: &str) -> Result<Option<Row>, QueryError> {
        let (schema, state) = self.collection(collection)?;
        Ok(state
            .records
            .get(key)
            .filter(|r| r.is_live())
            .map(|r| Row::build(schema, key, r)))
    }

    /// The rows of `query`.
    pub fn query(&self, query: &Query) -> Result<Vec<Row>, QueryError> {
        let (schema, state) = self.collection(&query.collection)?;
        query.check(schema)?;
        let rows = state
            .records
            .iter()
            .filter(|(_, r)| r.is_live())
            .map(|(k, r)| Row::build(schema, k, r))
            .filter(|row| query.matches(row))
            .collect();
        Ok(query.finish(rows))
    }

    /// Subscribes to `query`: returns its current rows now, and an [`Event::QueryChanged`]
    /// whenever a local or remote change alters them.
    pub fn subscribe(&mut self, query: Query) -> Result<(SubscriptionId, Vec<Row>), QueryError> {
        let rows = self.query(&query)?;
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        self.subscriptions.insert(
            id,
            Subscription {
                query,
                last: rows.clone(),
            },
        );
        Ok((id, rows))
    }

    /// Ends a subscription. Returns whether it existed.
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        self.subscriptions.remove(&id).is_some()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The open conflicts of `collection`: fields with siblings under a manual or merge
    /// policy, and unique values held by several live records.
    pub fn conflicts(&self, collection: &str) -> Result<Vec<Conflict>, QueryError> {
        let (schema, state) = self.collection(collection)?;
        let mut out = Vec::new();
        for (key, record) in state.records.iter().filter(|(_, r)| r.is_live()) {
            for (i, field) in schema.fields().iter().enumerate() {
                let siblings = record.siblings(i);
                if siblings.len() > 1 {
                    out.push(Conflict::Siblings {
                        collection: collection.to_owned(),
                        key: key.clone(),
                        field: field.name().to_owned(),
                        siblings: siblings.into_iter().map(|(t, v)| (t, v.clone())).collect(),
                    });
                }
            }
        }
        out.sort_by(|a, b| match (a, b) {
            (
                Conflict::Siblings {
                    key: x, field: f, ..
                },
                Conflict::Siblings {
                    key: y, field: g, ..
                },
            ) => (x, f).cmp(&(y, g)),
            _ => core::cmp::Ordering::Equal,
        });
        let mut unique: Vec<_> = state.unique.iter().collect();
        unique.sort_by_key(|(field, _)| **field);
        for (&field, index) in unique {
            for (value, keys) in index.iter().filter(|(_, k)| k.len() > 1) {
                out.push(Conflict::Unique {
                    collection: collection.to_owned(),
                    field: schema.fields()[field].name().to_owned(),
                    value: value.clone(),
                    keys: keys.iter().cloned().collect(),
                });
            }
        }
        Ok(out)
    }

    /// A snapshot of the materialized state and the append position it covers, for
    /// [`Storage::save_snapshot`]: opening the store later loads it and replays only the ops
    /// appended since. Taking it costs a serialization of the state; saving it can happen on
    /// another thread through a shared store handle (`RedbStorage::save_snapshot_shared`).
    pub fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let collections = self
            .collections
            .iter()
            .map(|(name, c)| {
                let records = c
                    .records
                    .iter()
                    .map(|(k, r)| (k.clone(), r.clone()))
                    .collect();
                (name.clone(), records)
            })
            .collect();
        let image = snapshot::StateImage {
            fingerprint: snapshot::fingerprint(&self.schema),
            frontier: self.frontier.clone(),
            next_seq: self.next_seq,
            collections,
        };
        Ok(Snapshot {
            position: self.storage.append_position()?,
            bytes: snapshot::encode(&image),
        })
    }

    /// Takes a [`Replica::snapshot`] and saves it in the store.
    pub fn save_snapshot(&mut self) -> Result<(), StorageError> {
        let snapshot = self.snapshot()?;
        self.snapshot_at = snapshot.position;
        self.storage.save_snapshot(&snapshot)
    }

    /// Takes a snapshot by itself whenever `every` ops have been appended (locally or from
    /// peers) since the last one, and has the store write it in the background
    /// ([`Storage::save_snapshot_in_background`]); `None` (the default) turns that off. A
    /// snapshot that fails does not fail the commit that triggered it: it is reported as
    /// [`Report::SnapshotFailed`] and tried again after the next commit.
    pub fn set_auto_snapshot(&mut self, every: Option<u64>) {
        self.auto_snapshot = every.map(|n| n.max(1));
    }

    /// After a commit or a remote batch: takes and saves a snapshot if one is due.
    pub(crate) fn maybe_snapshot(&mut self) {
        let Some(every) = self.auto_snapshot else {
            return;
        };
        let result = self.storage.append_position().and_then(|position| {
            if position.saturating_sub(self.snapshot_at) < every {
                return Ok(());
            }
            let snapshot = self.snapshot()?;
            self.storage.save_snapshot_in_background(snapshot)?;
            self.snapshot_at = position;
            Ok(())
        });
        if let Err(e) = result {
            self.events.push_back(Event::Report(Report::SnapshotFailed {
                reason: e.to_string(),
            }));
        }
    }

    /// Installs a decoded snapshot into an empty replica: records, indexes, resolved values.
    fn install(&mut self, image: snapshot::StateImage) {
        self.frontier = image.frontier.clone();
        self.next_seq = image.next_seq;
        for (name, records) in snapshot::records(image) {
            let (Some(schema), Some(state)) =
                (self.schema.get(&name), self.collections.get_mut(&name))
            else {
                continue;
            };
            for (key, mut record) in records {
                // Merge handlers are code, not data: rerun them rather than trust stored output.
                for (i, f) in schema.fields().iter().enumerate() {
                    if matches!(record.field(i), Some(FieldState::Mv(_))) {
                        // A failure is stale news at open, as in a full replay.
                        let _ = refresh_resolved(schema.policy_of(f), f.kind(), &mut record, i);
                    }
                }
                state.records.insert(key.clone(), record);
                state.index(&key);
            }
        }
    }

    /// For each replica, the highest timestamp applied from it.
    pub fn version_vector(&self) -> &VersionVector {
        &self.frontier
    }

    /// The frontier last exchanged with `peer`, as saved by [`Replica::save_peer_frontier`],
    /// so that a reconnecting sync starts where it stopped.
    pub fn peer_frontier(&self, peer: ReplicaId) -> Result<Option<VersionVector>, StorageError> {
        self.storage.peer_frontier(peer)
    }

    /// Saves the frontier exchanged with `peer` (durably, with a durable store).
    pub fn save_peer_frontier(
        &mut self,
        peer: ReplicaId,
        frontier: &VersionVector,
    ) -> Result<(), StorageError> {
        self.storage.set_peer_frontier(peer, frontier)
    }

    /// The stored ops that a peer at `vv` certainly lacks, in [`OpId`] order.
    pub fn ops_since(&self, vv: &VersionVector) -> Result<Vec<Op>, StorageError> {
        self.storage.ops_after(vv).collect()
    }

    /// How many remote ops wait for missing dependencies.
    pub fn buffered(&self) -> usize {
        self.pending.ops.len() + self.pending.elements.len()
    }

    /// Decodes a batch from a peer and applies it: an op batch ([`codec::encode_ops`]) or a
    /// history batch ([`history::encode_history`]), told apart by the first byte.
    pub fn apply_encoded(&mut self, bytes: &[u8]) -> Result<ApplyOutcome, ApplyError> {
        let ops = match bytes.first() {
            Some(&history::HISTORY_FORMAT) => history::decode_history(bytes)?,
            _ => codec::decode_ops(bytes)?,
        };
        self.apply_remote(ops)
    }

    /// Applies ops from a peer: idempotent (known ops are ignored), checked against the drift
    /// limit and the schema (bad ops are rejected, not stored), and causally buffered (an op
    /// whose dependencies are missing waits, neither applied nor stored, until they arrive).
    ///
    /// If the store fails, nothing of the batch is applied and the error is returned.
    pub fn apply_remote(
        &mut self,
        ops: impl IntoIterator<Item = Op>,
    ) -> Result<ApplyOutcome, ApplyError> {
        let mut ops: Vec<Op> = ops.into_iter().collect();
        ops.sort_by_key(|op| op.id);
        let mut outcome = ApplyOutcome::default();
        let mut ready: Vec<(Op, usize)> = Vec::with_capacity(ops.len());
        let mut ready_ids: HashSet<OpId> = HashSet::new();
        let mut released: Vec<(Op, usize)> = Vec::new();
        let mut newly_buffered: Vec<OpId> = Vec::new();

        let mut candidates: VecDeque<(Op, usize)> = VecDeque::new();
        for op in ops {
            if ready_ids.contains(&op.id)
                || self.pending.ops.contains_key(&op.id)
                || self.pending.elements.iter().any(|(p, _)| p.id == op.id)
                || self.storage.contains(op.id)?
            {
                outcome.duplicates += 1;
                continue;
            }
            if let Err(e) = self.hlc.check(op.id.ts) {
                outcome.rejected.push((op.id, e.into()));
                continue;
            }
            match validate(&self.schema, &op).and_then(|f| check_op_size(&op).map(|()| f)) {
                Ok(field) => {
                    ready_ids.insert(op.id); // provisional: marks in-batch duplicates
                    candidates.push_back((op, field));
                }
                Err(e) => outcome.rejected.push((op.id, e.into())),
            }
        }
        for (op, _) in &candidates {
            ready_ids.remove(&op.id);
        }
        // Ops waiting for elements get another chance with this batch.
        let retried = std::mem::take(&mut self.pending.elements);
        let retried_ids: Vec<OpId> = retried.iter().map(|(op, _)| op.id).collect();
        candidates.extend(retried);
        let mut created = Created::default();
        let mut waiting_elements: Vec<(Op, usize)> = Vec::new();
        loop {
            let mut progress = false;
            while let Some((op, field)) = candidates.pop_front() {
                let mut missing = Vec::new();
                for dep in &op.deps {
                    if !ready_ids.contains(dep) && !self.storage.contains(*dep)? {
                        missing.push(*dep);
                    }
                }
                missing.sort();
                missing.dedup();
                if !missing.is_empty() {
                    if self.buffered() >= MAX_PENDING_OPS {
                        outcome.rejected.push((op.id, RejectReason::BufferFull));
                        continue;
                    }
                    newly_buffered.push(op.id);
                    self.pending.insert(op, field, &missing);
                    continue;
                }
                if !self.elements_ready(&op, &created) {
                    waiting_elements.push((op, field));
                    continue;
                }
                progress = true;
                ready_ids.insert(op.id);
                created.record(&op);
                for (op, field) in self.pending.release(op.id) {
                    released.push((op.clone(), field));
                    candidates.push_back((op, field));
                }
                ready.push((op, field));
            }
            if !progress || waiting_elements.is_empty() {
                break;
            }
            candidates.extend(waiting_elements.drain(..));
        }
        let room = MAX_PENDING_OPS.saturating_sub(self.buffered());
        for (i, (op, field)) in waiting_elements.into_iter().enumerate() {
            if i >= room {
                outcome.rejected.push((op.id, RejectReason::BufferFull));
                continue;
            }
            if !retried_ids.contains(&op.id) {
                newly_buffered.push(op.id);
            }
            self.pending.elements.push((op, field));
        }

        let (batch, fields): (Vec<Op>, Vec<usize>) = ready.into_iter().unzip();
        if let Err(e) = self.storage.append(&batch) {
            // Put released ops back and forget the ones buffered by this batch, so that the
            // replica is exactly as before.
            for id in &newly_buffered {
                self.pending.ops.remove(id);
            }
            self.pending
                .elements
                .retain(|(op, _)| !newly_buffered.contains(&op.id));
            for (op, field) in batch.into_iter().zip(fields) {
                if retried_ids.contains(&op.id) {
                    self.pending.elements.push((op, field));
                }
            }
            self.pending.waiting.retain(|_, waiters| {
                waiters.retain(|w| self.pending.ops.contains_key(w));
                !waiters.is_empty()
            });
            for (op, field) in released {
                let missing = op.deps.clone();
                self.pending.insert(op, field, &missing);
            }
            return Err(e.into());
        }
        for (op, &field) in batch.iter().zip(&fields) {
            self.apply_to_state(op, field);
            outcome.applied.push(op.id);
        }
        if let Some(max) = batch.iter().map(|op| op.id.ts).max() {
            // The drift check passed, so only exhaustion can fail; then stay at the maximum.
            if self.hlc.observe(max).is_err() {
                self.hlc.restore(max);
            }
        }
        outcome.buffered = newly_buffered
            .iter()
            .filter(|id| {
                self.pending.ops.contains_key(id)
                    || self.pending.elements.iter().any(|(op, _)| op.id == **id)
            })
            .count();
        self.notify(
            batch
                .iter()
                .map(|op| (op.collection.as_str(), op.key.as_str())),
        );
        if !batch.is_empty() {
            self.maybe_snapshot();
        }
        Ok(outcome)
    }

    pub(crate) fn collection(
        &self,
        name: &str,
    ) -> Result<(&Collection, &CollectionState), QueryError> {
        match (self.schema.get(name), self.collections.get(name)) {
            (Some(schema), Some(state)) => Ok((schema, state)),
            _ => Err(QueryError::UnknownCollection(name.to_owned())),
        }
    }

    /// Applies a validated op to memory. `field` is the schema position of its field.
    pub(crate) fn apply_to_state(&mut self, op: &Op, field: usize) {
        let mut seq_changes = Vec::new();
        self.apply_inner(op, field, &mut seq_changes);
        if !self.watches.is_empty() {
            self.seq_changed(&op.collection, &op.key, &op.field, seq_changes);
        }
    }

    fn apply_inner(&mut self, op: &Op, field: usize, seq_changes: &mut Vec<SeqChange>) {
        self.frontier.observe(op.id);
        let (Some(schema), Some(state)) = (
            self.schema.get(&op.collection),
            self.collections.get_mut(&op.collection),
        ) else {
            return;
        };
        state.unindex(&op.key);
        if !state.records.contains_key(&op.key) {
            state.records.insert(op.key.clone(), RecordState::default());
        }
        let Some(record) = state.records.get_mut(&op.key) else {
            return;
        };
        let field_schema = schema.fields().get(field);
        let init = || {
            field_schema
                .map(|f| FieldState::new(f.kind(), schema.policy_of(f).keeps_siblings()))
                .unwrap_or(FieldState::Lww(Default::default()))
        };
        match &op.payload {
            // Only marks the record as changed, below.
            Payload::Create => {}
            Payload::Write(value) => match record.field_mut(field, init) {
                FieldState::Lww(reg) => {
                    reg.write(op.id, value.clone());
                }
                FieldState::Mv(reg) => {
                    reg.write(op.id, value.clone(), &op.deps);
                }
                _ => {}
            },
            Payload::Counter { positive, negative } => {
                if let FieldState::Counter(c) = record.field_mut(field, init) {
                    c.apply_totals(op.id.replica, *positive, *negative);
                }
            }
            Payload::SetAdd(element) => {
                if let FieldState::Set(s) = record.field_mut(field, init) {
                    s.add(op.id, element.clone());
                }
            }
            Payload::SetRemove(element) => {
                if let FieldState::Set(s) = record.field_mut(field, init) {
                    s.apply_remove(element, &op.deps);
                }
            }
            Payload::SeqInsert {
                seq,
                left,
                right,
                content,
            } => {
                let id = ElemId {
                    replica: op.id.replica,
                    seq: *seq,
                };
                if op.id.replica == self.id {
                    self.next_seq = self.next_seq.max(seq.saturating_add(content.count()));
                }
                let count = content.count();
                let pos = match (record.field_mut(field, init), content) {
                    (FieldState::Text(t), SeqContent::Text(s)) if !t.contains(id) => {
                        Some(t.integrate(id, *left, *right, s.clone()))
                    }
                    (FieldState::List(l), SeqContent::Values(v)) if !l.contains(id) => {
                        Some(l.integrate(id, *left, *right, v.clone()))
                    }
                    _ => None,
                };
                if let Some(pos) = pos {
                    seq_changes.push(SeqChange::Insert { pos, len: count });
                }
            }
            Payload::SeqDelete { ranges } => {
                let state = record.field_mut(field, init);
                for (id, n) in ranges {
                    seq_changes.extend(delete_in(state, *id, *n));
                }
            }
            Payload::Delete {
                counters,
                sequences,
            } => {
                record.deleted = record.deleted.max(Some(op.id));
                for baseline in sequences {
                    let Some(i) = schema.field_index(&baseline.field) else {
                        continue;
                    };
                    if let Some(state) = record.fields.get_mut(i).and_then(Option::as_mut) {
                        for (id, n) in &baseline.ranges {
                            let _ = delete_in(state, *id, *n);
                        }
                    }
                }
                for baseline in counters {
                    let Some(i) = schema.field_index(&baseline.field) else {
                        continue;
                    };
                    if let FieldState::Counter(c) =
                        record.field_mut(i, || FieldState::Counter(Default::default()))
                    {
                        for &(replica, positive, negative) in &baseline.totals {
                            c.apply_baseline(replica, positive, negative);
                        }
                    }
                }
            }
        }
        if !matches!(op.payload, Payload::Delete { .. }) {
            record.last_change = record.last_change.max(Some(op.id));
        }
        // Multi-value fields show a resolved value; a write or a delete can change it.
        let mut reports = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if !matches!(record.field(i), Some(FieldState::Mv(_))) {
                continue;
            }
            if i != field && !matches!(op.payload, Payload::Delete { .. }) {
                continue;
            }
            if let Err(reason) = refresh_resolved(schema.policy_of(f), f.kind(), record, i) {
                reports.push(Report::MergeFailed {
                    collection: op.collection.clone(),
                    key: op.key.clone(),
                    field: f.name().to_owned(),
                    reason,
                });
            }
        }
        state.index(&op.key);
        self.events.extend(reports.into_iter().map(Event::Report));
    }

    /// Re-evaluates the subscriptions that `touched` records can affect and queues events
    /// for those whose result changed; reports unique values shared after the change.
    pub(crate) fn notify<'a>(&mut self, touched: impl IntoIterator<Item = (&'a str, &'a str)>) {
        if self.subscriptions.is_empty() && self.collections.values().all(|c| c.unique.is_empty()) {
            return;
        }
        let touched: BTreeSet<(&str, &str)> = touched.into_iter().collect();
        self.report_unique(&touched);
        let mut changed = Vec::new();
        for (&id, sub) in &self.subscriptions {
            let affected = touched.iter().any(|&(collection, key)| {
                collection == sub.query.collection
                    && (sub.last.iter().any(|row| row.key == key)
                        || self
                            .get(collection, key)
                            .ok()
                            .flatten()
                            .is_some_and(|row| sub.query.matches(&row)))
            });
            if !affected {
                continue;
            }
            let Ok(rows) = self.query(&sub.query) else {
                continue;
            };
            if rows != sub.last {
                changed.push((id, rows));
            }
        }
        for (id, rows) in changed {
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                sub.last = rows.clone();
            }
            self.events.push_back(Event::QueryChanged { id, rows });
        }
    }

    fn report_unique(&mut self, touched: &BTreeSet<(&str, &str)>) {
        let mut reports = Vec::new();
        for &(collection, key) in touched {
            let (Some(schema), Some(state)) = (
                self.schema.get(collection),
                self.collections.get(collection),
            ) else {
                continue;
            };
            let Some(record) = state.records.get(key) else {
                continue;
            };
            for (&field, index) in &state.unique {
                let Some(keys) = record.register(field).and_then(|v| index.get(v)) else {
                    continue;
                };
                if keys.len() > 1 {
                    reports.push(Report::UniqueViolated {
                        collection: collection.to_owned(),
                        field: schema.fields()[field].name().to_owned(),
                        keys: keys.iter().cloned().collect(),
                    });
                }
            }
        }
        self.events.extend(reports.into_iter().map(Event::Report));
    }
}

fn storage_id<S: Storage, R: rand::Rng + ?Sized>(
    storage: &mut S,
    rng: &mut R,
) -> Result<ReplicaId, StorageError> {
    match storage.replica_id()? {
        Some(id) => Ok(id),
        None => {
            let id = ReplicaId::random(rng);
            storage.set_replica_id(id)?;
            Ok(id)
        }
    }
}
