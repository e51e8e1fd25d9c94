//! Local mutations: transactions that commit as one unit.

use std::collections::HashMap;

use hlc::Clock;

use crate::codec::check_op_size;
use crate::error::{InvalidOp, WriteError};
use crate::list::{ElemId, SeqChange};
use crate::op::{SeqBaseline, SeqContent};
use crate::query::{QueryError, Row};
use crate::replica::Replica;
use crate::schema::{FieldKind, PrimaryKey};
use crate::state::{FieldState, RecordState};
use crate::validate::validate;
use crate::{CounterBaseline, Op, OpId, Payload, Storage, Value, VersionVector};

/// How to take back one local text or list edit.
enum SeqUndo {
    Inserted(ElemId, u64),
    DeletedText(Vec<(ElemId, u64, String)>),
    DeletedList(Vec<(ElemId, u64, Vec<Value>)>),
}

/// A batch of local mutations that commits as one unit: all of its ops are stored in one
/// append and become visible together, or none is.
///
/// Each mutation is applied to memory at once, so later mutations and reads in the same
/// transaction see it; if the closure given to [`Replica::transact`] fails or the store
/// fails, memory is rolled back and nothing is stored. A write that fails once it has changed
/// memory (a text or list edit or a record delete whose op is
/// [too large](crate::InvalidOp::TooLarge), or an exhausted clock) fails the whole
/// transaction, even if the closure handles its error and goes on.
pub struct Transaction<'r, S, C> {
    replica: &'r mut Replica<S, C>,
    ops: Vec<Op>,
    /// Records as they were before their first change, without their text and list fields.
    undo: HashMap<(String, String), Option<RecordState>>,
    /// Text and list edits, undone in reverse: (collection, key, field position, inverse).
    journal: Vec<(String, String, usize, SeqUndo)>,
    frontier: VersionVector,
    events: usize,
    /// A write that failed after it had changed the state (a text or list edit, a record
    /// delete): the transaction cannot commit, even if the closure goes on.
    broken: Option<WriteError>,
}

impl<S: Storage, C: Clock> Replica<S, C> {
    /// Runs `f` as one transaction and commits it: the ops are appended to storage in one
    /// step (durable on return, with a durable store) and stay applied. If `f` or the store
    /// fails, nothing is applied or stored and the error is returned.
    pub fn transact<R>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_, S, C>) -> Result<R, WriteError>,
    ) -> Result<R, WriteError> {
        let mut tx = Transaction {
            frontier: self.frontier.clone(),
            events: self.events.len(),
            replica: self,
            ops: Vec::new(),
            undo: HashMap::new(),
            journal: Vec::new(),
            broken: None,
        };
        let result = f(&mut tx);
        match result {
            Ok(value) => tx.commit().map(|()| value),
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        }
    }

    /// Inserts a record in a transaction of its own. See [`Transaction::insert`].
    pub fn insert<'a>(
        &mut self,
        collection: &str,
        key: Option<&str>,
        fields: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Result<String, WriteError> {
        self.transact(|tx| tx.insert(collection, key, fields))
    }

    /// Writes a register field in a transaction of its own. See [`Transaction::set`].
    pub fn set(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        value: impl Into<Value>,
    ) -> Result<(), WriteError> {
        self.transact(|tx| tx.set(collection, key, field, value))
    }
}

impl<S: Storage, C: Clock> Transaction<'_, S, C> {
    /// Inserts a record with the given field values. `key` is required for collections with
    /// given keys and must be `None` for generated keys; returns the key. Fields not given take
    /// their defaults; a required field without either is an error. Counter fields take an
    /// integer start value. Set fields are filled with [`Transaction::add`].
    pub fn insert<'a>(
        &mut self,
        collection: &str,
        key: Option<&str>,
        fields: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Result<String, WriteError> {
        let schema = self
            .replica
            .schema
            .get(collection)
            .ok_or_else(|| InvalidOp::UnknownCollection(collection.to_owned()))?
            .clone();
        let key_error = |reason| WriteError::Key {
            collection: collection.to_owned(),
            reason,
        };
        let key = match (&schema.primary_key, key) {
            (PrimaryKey::Given, Some("")) => return Err(key_error("the key is empty")),
            (PrimaryKey::Given, Some(k)) => k.to_owned(),
            (PrimaryKey::Given, None) => return Err(key_error("inserts must give a key")),
            (PrimaryKey::Generated, None) => {
                let ts = self.replica.hlc.now()?;
                format!("{:016x}{}", ts.as_u64(), self.replica.id)
            }
            (PrimaryKey::Generated, Some(_)) => {
                return Err(key_error("keys are generated; inserts must not give one"));
            }
        };
        if self.live(collection, &key).is_some() {
            return Err(WriteError::AlreadyExists {
                collection: collection.to_owned(),
                key,
            });
        }
        let mut given: Vec<(&str, Value)> = Vec::new();
        for (name, value) in fields {
            if given.iter().any(|(n, _)| *n == name) {
                return Err(InvalidOp::Malformed("an insert gives a field twice").into());
            }
            given.push((name, value));
        }
        for field in schema.fields() {
            if given.iter().any(|(n, _)| *n == field.name()) {
                continue;
            }
            match &field.default {
                Some(default) => given.push((field.name(), default.clone())),
                None if field.required => {
                    return Err(WriteError::MissingRequired {
                        collection: collection.to_owned(),
                        field: field.name().to_owned(),
                    });
                }
                None => {}
            }
        }
        if given.is_empty() {
            self.push(collection, &key, "", Vec::new(), Payload::Create)?;
        }
        for (name, value) in given {
            let kind = schema.field_named(name).map(|f| f.kind().clone());
            match (kind, value) {
                (Some(FieldKind::Counter), Value::Int(start)) => {
                    self.counter_op(collection, &key, name, start)?;
                }
                (_, value) => self.write(collection, &key, name, value)?,
            }
        }
        Ok(key)
    }

    /// Writes a register field of a live record. Under a manual or merge policy the write
    /// replaces every sibling the field shows now, which is how a conflict is resolved.
    pub fn set(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        value: impl Into<Value>,
    ) -> Result<(), WriteError> {
        self.require_live(collection, key)?;
        self.write(collection, key, field, value.into())
    }

    /// Adds `by` (negative to subtract) to a counter field of a live record.
    pub fn increment(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        by: i64,
    ) -> Result<(), WriteError> {
        self.require_live(collection, key)?;
        self.counter_op(collection, key, field, by)
    }

    /// Adds an element to a set field of a live record.
    pub fn add(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        element: impl Into<Value>,
    ) -> Result<(), WriteError> {
        self.require_live(collection, key)?;
        self.push(
            collection,
            key,
            field,
            Vec::new(),
            Payload::SetAdd(element.into()),
        )
    }

    /// Removes an element from a set field of a live record: the adds of it seen here. An
    /// add made concurrently elsewhere survives (adds win). Removing an absent element does
    /// nothing.
    pub fn remove(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        element: impl Into<Value>,
    ) -> Result<(), WriteError> {
        let element = element.into();
        let index = self.field_index(collection, field)?;
        let record = self.require_live(collection, key)?;
        let tags: Vec<OpId> = match record.field(index) {
            Some(FieldState::Set(set)) => set.live_tags(&element),
            _ => Vec::new(),
        };
        if tags.is_empty() {
            // Still type-check the element, so a wrong call is an error, not a no-op.
            let probe = self.op(
                collection,
                key,
                field,
                Vec::new(),
                Payload::SetRemove(element),
            );
            validate(&self.replica.schema, &probe)?;
            return Ok(());
        }
        self.push(collection, key, field, tags, Payload::SetRemove(element))
    }

    /// Deletes a live record. Writes made elsewhere concurrently with a higher op id revive
    /// it with just those writes.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<(), WriteError> {
        let record = self.require_live(collection, key)?;
        let schema = self.replica.collection(collection).map_err(query_error)?.0;
        let counters = schema
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match record.field(i) {
                Some(FieldState::Counter(c)) => Some(CounterBaseline {
                    field: f.name().to_owned(),
                    totals: c.all_totals().map(|(r, (p, n))| (r, p, n)).collect(),
                }),
                _ => None,
            })
            .collect();
        let sequence_fields: Vec<(usize, String)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| record.field(*i).is_some_and(FieldState::is_sequence))
            .map(|(i, f)| (i, f.name().to_owned()))
            .collect();
        // The delete removes the text and list elements it sees; do that through the journal
        // so that a rollback restores them.
        let mut sequences = Vec::new();
        for (index, name) in sequence_fields {
            let len = self.seq_len(collection, key, index);
            if len > 0 {
                let ranges = self.delete_elements(collection, key, index, 0, len)?;
                sequences.push(SeqBaseline {
                    field: name,
                    ranges,
                });
            }
        }
        self.push(
            collection,
            key,
            "",
            Vec::new(),
            Payload::Delete {
                counters,
                sequences,
            },
        )
    }

    /// Inserts `text` at code point `pos` of text `field` of a live record.
    pub fn insert_text(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        text: &str,
    ) -> Result<(), WriteError> {
        self.insert_elements(
            collection,
            key,
            field,
            pos,
            SeqContent::Text(text.to_owned()),
        )
    }

    /// Deletes `len` code points at `pos` of text `field` of a live record.
    pub fn delete_text(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        len: u64,
    ) -> Result<(), WriteError> {
        self.delete_range(collection, key, field, pos, len)
    }

    /// Inserts `values` at `pos` of list `field` of a live record.
    pub fn insert_list(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        values: Vec<Value>,
    ) -> Result<(), WriteError> {
        self.insert_elements(collection, key, field, pos, SeqContent::Values(values))
    }

    /// Deletes `len` elements at `pos` of list `field` of a live record.
    pub fn delete_list(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        len: u64,
    ) -> Result<(), WriteError> {
        self.delete_range(collection, key, field, pos, len)
    }

    fn insert_elements(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        content: SeqContent,
    ) -> Result<(), WriteError> {
        self.require_live(collection, key)?;
        let count = content.count();
        if count == 0 {
            return Ok(());
        }
        let index = self.field_index(collection, field)?;
        let me = self.replica.id;
        let seq = self.replica.next_seq;
        let payload = |left, right, content| Payload::SeqInsert {
            seq,
            left,
            right,
            content,
        };
        // Type-check before touching anything.
        let probe = self.op(
            collection,
            key,
            field,
            Vec::new(),
            payload(None, None, content.clone()),
        );
        validate(&self.replica.schema, &probe)?;
        self.save_undo(collection, key);
        let state = self.field_state(collection, key, index);
        let origins = match (state, content.clone()) {
            (Some(FieldState::Text(t)), SeqContent::Text(s)) => t.insert_local(pos, s, me, seq),
            (Some(FieldState::List(l)), SeqContent::Values(v)) => l.insert_local(pos, v, me, seq),
            _ => return Err(InvalidOp::Malformed("not a text or list field").into()),
        };
        let (left, right) = origins.map_err(|e| WriteError::Position {
            collection: collection.to_owned(),
            field: field.to_owned(),
            source: e,
        })?;
        self.replica.next_seq = seq + count;
        self.journal.push((
            collection.to_owned(),
            key.to_owned(),
            index,
            SeqUndo::Inserted(ElemId { replica: me, seq }, count),
        ));
        self.replica.seq_changed(
            collection,
            key,
            field,
            vec![SeqChange::Insert { pos, len: count }],
        );
        self.push(
            collection,
            key,
            field,
            Vec::new(),
            payload(left, right, content),
        )
    }

    fn delete_range(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        len: u64,
    ) -> Result<(), WriteError> {
        self.require_live(collection, key)?;
        let index = self.field_index(collection, field)?;
        if len == 0 {
            return Ok(());
        }
        let probe = self.op(
            collection,
            key,
            field,
            Vec::new(),
            Payload::SeqDelete { ranges: Vec::new() },
        );
        validate(&self.replica.schema, &probe)?;
        let ranges = self.delete_elements(collection, key, index, pos, len)?;
        self.replica
            .seq_changed(collection, key, field, vec![SeqChange::Delete { pos, len }]);
        self.push(
            collection,
            key,
            field,
            Vec::new(),
            Payload::SeqDelete { ranges },
        )
    }

    /// Deletes visible elements through the journal; the deleted id ranges.
    fn delete_elements(
        &mut self,
        collection: &str,
        key: &str,
        index: usize,
        pos: u64,
        len: u64,
    ) -> Result<Vec<(ElemId, u64)>, WriteError> {
        self.save_undo(collection, key);
        let field_name = self
            .replica
            .schema
            .get(collection)
            .and_then(|c| c.fields().get(index))
            .map(|f| f.name().to_owned())
            .unwrap_or_default();
        let position_error = |e, field: String| WriteError::Position {
            collection: collection.to_owned(),
            field,
            source: e,
        };
        let (undo, ranges) = match self.field_state(collection, key, index) {
            Some(FieldState::Text(t)) => match t.delete_local(pos, len) {
                Ok(r) => {
                    let ids = r.iter().map(|(id, n, _)| (*id, *n)).collect();
                    (SeqUndo::DeletedText(r), ids)
                }
                Err(e) => return Err(position_error(e, field_name)),
            },
            Some(FieldState::List(l)) => match l.delete_local(pos, len) {
                Ok(r) => {
                    let ids = r.iter().map(|(id, n, _)| (*id, *n)).collect();
                    (SeqUndo::DeletedList(r), ids)
                }
                Err(e) => return Err(position_error(e, field_name)),
            },
            _ => return Err(InvalidOp::Malformed("not a text or list field").into()),
        };
        self.journal
            .push((collection.to_owned(), key.to_owned(), index, undo));
        Ok(ranges)
    }

    /// Visible length of a text or list field.
    fn seq_len(&mut self, collection: &str, key: &str, index: usize) -> u64 {
        match self.field_state(collection, key, index) {
            Some(FieldState::Text(t)) => t.len(),
            Some(FieldState::List(l)) => l.len(),
            _ => 0,
        }
    }

    /// The state of field `index` of a record, created empty if it has none yet.
    fn field_state(
        &mut self,
        collection: &str,
        key: &str,
        index: usize,
    ) -> Option<&mut FieldState> {
        let schema = self.replica.schema.get(collection)?;
        let field = schema.fields().get(index)?;
        let keeps = schema.policy_of(field).keeps_siblings();
        let kind = field.kind().clone();
        let record = self
            .replica
            .collections
            .get_mut(collection)?
            .records
            .get_mut(key)?;
        Some(record.field_mut(index, || FieldState::new(&kind, keeps)))
    }

    /// Remembers the record as it is now, once per transaction.
    fn save_undo(&mut self, collection: &str, key: &str) {
        let undo_key = (collection.to_owned(), key.to_owned());
        if !self.undo.contains_key(&undo_key) {
            let before = self
                .replica
                .collections
                .get(collection)
                .and_then(|c| c.records.get(key))
                .map(RecordState::snapshot_without_sequences);
            self.undo.insert(undo_key, before);
        }
    }

    /// Reads a live record, including this transaction's writes.
    pub fn get(&self, collection: &str, key: &str) -> Result<Option<Row>, QueryError> {
        self.replica.get(collection, key)
    }

    /// The ops this transaction has made so far.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    fn write(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        value: Value,
    ) -> Result<(), WriteError> {
        let index = self.field_index(collection, field)?;
        let (schema, state) = self.replica.collection(collection).map_err(query_error)?;
        let field_schema = &schema.fields()[index];
        if value == Value::Null && field_schema.required {
            return Err(WriteError::MissingRequired {
                collection: collection.to_owned(),
                field: field.to_owned(),
            });
        }
        if let Some(holders) = state.unique.get(&index).and_then(|u| u.get(&value))
            && let Some(existing) = holders.iter().find(|k| k.as_str() != key)
        {
            return Err(WriteError::Unique {
                collection: collection.to_owned(),
                field: field.to_owned(),
                value,
                existing: existing.clone(),
            });
        }
        let deps = match state.records.get(key).and_then(|r| r.field(index)) {
            Some(FieldState::Mv(reg)) => reg.sibling_tags(),
            _ => Vec::new(),
        };
        self.push(collection, key, field, deps, Payload::Write(value))
    }

    fn counter_op(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        by: i64,
    ) -> Result<(), WriteError> {
        let index = self.field_index(collection, field)?;
        let me = self.replica.id;
        let (mut positive, mut negative) = match self
            .replica
            .collection(collection)
            .map_err(query_error)?
            .1
            .records
            .get(key)
            .and_then(|r| r.field(index))
        {
            Some(FieldState::Counter(c)) => c.totals(me),
            _ => (0, 0),
        };
        if by >= 0 {
            positive = positive.saturating_add(by.unsigned_abs());
        } else {
            negative = negative.saturating_add(by.unsigned_abs());
        }
        self.push(
            collection,
            key,
            field,
            Vec::new(),
            Payload::Counter { positive, negative },
        )
    }

    fn op(
        &self,
        collection: &str,
        key: &str,
        field: &str,
        deps: Vec<OpId>,
        payload: Payload,
    ) -> Op {
        Op {
            id: OpId::new(self.replica.hlc.last(), self.replica.id),
            schema_version: self.replica.schema.version(),
            collection: collection.to_owned(),
            key: key.to_owned(),
            field: field.to_owned(),
            deps,
            payload,
        }
    }

    /// Stamps, validates and applies one op.
    fn push(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        deps: Vec<OpId>,
        payload: Payload,
    ) -> Result<(), WriteError> {
        let mut op = self.op(collection, key, field, deps, payload);
        let index = validate(&self.replica.schema, &op)?;
        // A text or list edit or a record delete has changed the state by now, which without
        // its op must not commit: these failures break the transaction.
        op.id.ts = match self.replica.hlc.now() {
            Ok(ts) => ts,
            Err(e) => {
                self.broken = Some(WriteError::Clock(e));
                return Err(WriteError::Clock(e));
            }
        };
        // After stamping: the timestamp is part of the encoding. The clock's tick is harmless.
        if let Err(e) = check_op_size(&op) {
            self.broken = Some(e.clone().into());
            return Err(e.into());
        }
        self.save_undo(collection, key);
        self.replica.apply_to_state(&op, index);
        self.ops.push(op);
        Ok(())
    }

    fn field_index(&self, collection: &str, field: &str) -> Result<usize, WriteError> {
        let schema = self.replica.collection(collection).map_err(query_error)?.0;
        schema.field_index(field).ok_or_else(|| {
            InvalidOp::UnknownField {
                collection: collection.to_owned(),
                field: field.to_owned(),
            }
            .into()
        })
    }

    fn live(&self, collection: &str, key: &str) -> Option<&RecordState> {
        self.replica
            .collections
            .get(collection)?
            .records
            .get(key)
            .filter(|r| r.is_live())
    }

    fn require_live(&self, collection: &str, key: &str) -> Result<&RecordState, WriteError> {
        self.replica.collection(collection).map_err(query_error)?;
        self.live(collection, key)
            .ok_or_else(|| WriteError::NoSuchRecord {
                collection: collection.to_owned(),
                key: key.to_owned(),
            })
    }

    fn commit(mut self) -> Result<(), WriteError> {
        if let Some(e) = self.broken.take() {
            self.rollback();
            return Err(e);
        }
        if self.ops.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.replica.storage.append(&self.ops) {
            self.rollback();
            return Err(e.into());
        }
        let touched: Vec<(String, String)> = self.undo.drain().map(|(k, _)| k).collect();
        self.replica
            .notify(touched.iter().map(|(c, k)| (c.as_str(), k.as_str())));
        self.replica.maybe_snapshot();
        Ok(())
    }

    fn rollback(&mut self) {
        for (collection, key, index, undo) in self.journal.drain(..).rev() {
            let Some(state) = self
                .replica
                .collections
                .get_mut(&collection)
                .and_then(|c| c.records.get_mut(&key))
                .and_then(|r| r.fields.get_mut(index))
                .and_then(Option::as_mut)
            else {
                continue;
            };
            match (state, undo) {
                (FieldState::Text(t), SeqUndo::Inserted(id, n)) => t.unplace(id, n),
                (FieldState::List(l), SeqUndo::Inserted(id, n)) => l.unplace(id, n),
                (FieldState::Text(t), SeqUndo::DeletedText(ranges)) => {
                    for (id, n, content) in ranges.into_iter().rev() {
                        t.undelete(id, n, content);
                    }
                }
                (FieldState::List(l), SeqUndo::DeletedList(ranges)) => {
                    for (id, n, content) in ranges.into_iter().rev() {
                        l.undelete(id, n, content);
                    }
                }
                _ => {}
            }
        }
        for ((collection, key), before) in self.undo.drain() {
            let Some(state) = self.replica.collections.get_mut(&collection) else {
                continue;
            };
            state.unindex(&key);
            let current = state.records.remove(&key);
            if let Some(mut record) = before {
                // Text and list fields were undone in place above; keep them.
                if let Some(mut current) = current {
                    for (i, field) in current.fields.iter_mut().enumerate() {
                        if field.as_ref().is_some_and(FieldState::is_sequence) {
                            if record.fields.len() <= i {
                                record.fields.resize_with(i + 1, || None);
                            }
                            record.fields[i] = field.take();
                        }
                    }
                }
                state.records.insert(key.clone(), record);
            }
            state.index(&key);
        }
        self.replica.frontier = std::mem::take(&mut self.frontier);
        self.replica.events.truncate(self.events);
        self.ops.clear();
    }
}

fn query_error(e: QueryError) -> WriteError {
    match e {
        QueryError::UnknownCollection(c) => InvalidOp::UnknownCollection(c).into(),
        QueryError::UnknownField { collection, field } => {
            InvalidOp::UnknownField { collection, field }.into()
        }
    }
}
