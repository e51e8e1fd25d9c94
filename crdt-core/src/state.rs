//! Materialized state: records and their fields, as a pure function of the applied ops.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::list::Sequence;
use crate::schema::{Collection, FieldKind};
use crate::types::{AwSet, LwwRegister, MvRegister, PnCounter};
use crate::{OpId, ReplicaId, Value};

/// The state of one field.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum FieldState {
    Lww(LwwRegister<OpId, Value>),
    Mv(MvRegister<OpId, Value>),
    Counter(PnCounter<ReplicaId>),
    Set(AwSet<OpId, Value>),
    Text(Sequence<String>),
    List(Sequence<Vec<Value>>),
}

impl FieldState {
    pub(crate) fn new(kind: &FieldKind, keeps_siblings: bool) -> Self {
        match kind {
            FieldKind::Register(_) if keeps_siblings => Self::Mv(MvRegister::default()),
            FieldKind::Register(_) => Self::Lww(LwwRegister::default()),
            FieldKind::Counter => Self::Counter(PnCounter::default()),
            FieldKind::Set(_) => Self::Set(AwSet::default()),
            FieldKind::Text => Self::Text(Sequence::default()),
            FieldKind::List(_) => Self::List(Sequence::default()),
        }
    }

    /// Whether this is a text or list field, whose undo is a journal rather than a copy.
    pub(crate) fn is_sequence(&self) -> bool {
        matches!(self, Self::Text(_) | Self::List(_))
    }
}

/// One record: its fields by schema position, the latest delete, and the latest other op.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct RecordState {
    pub(crate) fields: Vec<Option<FieldState>>,
    /// The highest delete op; writes below it are hidden.
    pub(crate) deleted: Option<OpId>,
    /// The highest op other than a delete.
    pub(crate) last_change: Option<OpId>,
    /// The resolved value of multi-value fields (merge handler output), by schema position.
    pub(crate) resolved: Vec<Option<Value>>,
}

impl RecordState {
    /// A record is live if something was written after its last delete.
    pub(crate) fn is_live(&self) -> bool {
        match (self.last_change, self.deleted) {
            (Some(change), Some(deleted)) => change > deleted,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Whether an op with this id is hidden by the latest delete.
    pub(crate) fn hidden(&self, id: OpId) -> bool {
        self.deleted.is_some_and(|d| id < d)
    }

    pub(crate) fn field(&self, index: usize) -> Option<&FieldState> {
        self.fields.get(index).and_then(Option::as_ref)
    }

    pub(crate) fn field_mut(
        &mut self,
        index: usize,
        init: impl FnOnce() -> FieldState,
    ) -> &mut FieldState {
        if self.fields.len() <= index {
            self.fields.resize_with(index + 1, || None);
        }
        self.fields[index].get_or_insert_with(init)
    }

    /// The visible register value of field `index`: the LWW winner, or for multi-value fields
    /// the resolved value, if not hidden by a delete.
    pub(crate) fn register(&self, index: usize) -> Option<&Value> {
        match self.field(index)? {
            FieldState::Lww(reg) => {
                let tag = reg.tag()?;
                if self.hidden(tag) { None } else { reg.value() }
            }
            FieldState::Mv(_) => self.resolved.get(index).and_then(Option::as_ref),
            _ => None,
        }
    }

    /// The visible siblings of a multi-value field, in op id order.
    pub(crate) fn siblings(&self, index: usize) -> Vec<(OpId, &Value)> {
        match self.field(index) {
            Some(FieldState::Mv(reg)) => reg
                .siblings()
                .filter(|(tag, _)| !self.hidden(*tag))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The visible elements of a set field, ascending.
    pub(crate) fn set_elements(&self, index: usize) -> Vec<Value> {
        match self.field(index) {
            Some(FieldState::Set(set)) => set
                .iter()
                .filter(|e| set.live_tags(*e).iter().any(|t| !self.hidden(*t)))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The content of a text field.
    pub(crate) fn text(&self, index: usize) -> String {
        match self.field(index) {
            Some(FieldState::Text(t)) => t.visible_content().map(String::as_str).collect(),
            _ => String::new(),
        }
    }

    /// The elements of a list field.
    pub(crate) fn list(&self, index: usize) -> Vec<Value> {
        match self.field(index) {
            Some(FieldState::List(l)) => l.visible_content().flatten().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// A copy of everything but text and list fields, which a transaction undoes from its
    /// journal instead (copying a long text on every keystroke would be quadratic).
    pub(crate) fn snapshot_without_sequences(&self) -> Self {
        Self {
            fields: self
                .fields
                .iter()
                .map(|f| f.as_ref().filter(|f| !f.is_sequence()).cloned())
                .collect(),
            deleted: self.deleted,
            last_change: self.last_change,
            resolved: self.resolved.clone(),
        }
    }

    /// The value of a counter field.
    pub(crate) fn counter(&self, index: usize) -> i128 {
        match self.field(index) {
            Some(FieldState::Counter(c)) => c.value(),
            _ => 0,
        }
    }
}

/// The records of one collection and the indexes of its unique fields.
#[derive(Clone, Debug, Default)]
pub(crate) struct CollectionState {
    /// Records by key. Unordered: readers that need an order sort (queries by their sort keys
    /// then key, conflicts by key).
    pub(crate) records: HashMap<String, RecordState>,
    /// For each unique field (by schema position): value -> keys of live records holding it.
    pub(crate) unique: HashMap<usize, BTreeMap<Value, BTreeSet<String>>>,
}

impl CollectionState {
    pub(crate) fn new(schema: &Collection) -> Self {
        let unique = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.unique)
            .map(|(i, _)| (i, BTreeMap::new()))
            .collect();
        Self {
            records: HashMap::new(),
            unique,
        }
    }

    /// Removes `key`'s entries from the unique indexes (before a change to the record).
    pub(crate) fn unindex(&mut self, key: &str) {
        let Some(record) = self.records.get(key) else {
            return;
        };
        for (&field, index) in &mut self.unique {
            if let Some(value) = record.register(field)
                && let Some(keys) = index.get_mut(value)
            {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(value);
                }
            }
        }
    }

    /// Adds `key`'s entries to the unique indexes (after a change to the record).
    pub(crate) fn index(&mut self, key: &str) {
        let Some(record) = self.records.get(key) else {
            return;
        };
        if !record.is_live() {
            return;
        }
        for (&field, index) in &mut self.unique {
            if let Some(value) = record.register(field) {
                index
                    .entry(value.clone())
                    .or_default()
                    .insert(key.to_owned());
            }
        }
    }
}
