//! The text and list surface of the [`Replica`]: reads, positions, anchors, watches, and
//! whether a remote text or list op has the elements it needs.

use std::collections::{BTreeMap, HashMap};

use hlc::Clock;

use crate::list::{Anchor, ElemId, SeqChange, Sequence, Side, Unit};
use crate::query::{QueryError, SubscriptionId};
use crate::replica::{Event, Replica};
use crate::schema::FieldKind;
use crate::state::{FieldState, RecordState};
use crate::{Op, Payload, Storage, Value};

/// Elements inserted by ops made ready earlier in the same batch: by field (collection, key,
/// field joined by NUL), the ranges `first element -> end seq`.
#[derive(Default)]
pub(crate) struct Created(HashMap<String, BTreeMap<ElemId, u64>>);

fn field_key(collection: &str, key: &str, field: &str) -> String {
    format!("{collection}\0{key}\0{field}")
}

impl Created {
    pub(crate) fn record(&mut self, op: &Op) {
        if let Payload::SeqInsert { seq, content, .. } = &op.payload {
            let id = ElemId {
                replica: op.id.replica,
                seq: *seq,
            };
            self.0
                .entry(field_key(&op.collection, &op.key, &op.field))
                .or_default()
                .insert(id, seq.saturating_add(content.count()));
        }
    }

    /// The end of the created range holding `id`, if any.
    fn range_end(&self, op: &Op, field: &str, id: ElemId) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let ranges = self.0.get(&field_key(&op.collection, &op.key, field))?;
        let (start, &end) = ranges.range(..=id).next_back()?;
        (start.replica == id.replica && id.seq < end).then_some(end)
    }
}

impl<S: Storage, C: Clock> Replica<S, C> {
    /// Whether the elements a text or list op needs are present (stored, or inserted earlier
    /// in this batch).
    pub(crate) fn elements_ready(&self, op: &Op, created: &Created) -> bool {
        let record = self
            .collections
            .get(&op.collection)
            .and_then(|c| c.records.get(&op.key));
        let field_state = |field: &str| {
            let schema = self.schema.get(&op.collection)?;
            let index = schema.field_index(field)?;
            record?.field(index)
        };
        // Every element of [id, id + len) is in the field or was created in this batch.
        let present = |field: &str, id: ElemId, len: u64| {
            let state = field_state(field);
            let mut seq = id.seq;
            let end = id.seq.saturating_add(len);
            while seq < end {
                let probe = ElemId { seq, ..id };
                let in_state = match state {
                    Some(FieldState::Text(t)) => t.run_end(probe),
                    Some(FieldState::List(l)) => l.run_end(probe),
                    _ => None,
                };
                match in_state.or_else(|| created.range_end(op, field, probe)) {
                    Some(next) => seq = next,
                    None => return false,
                }
            }
            true
        };
        match &op.payload {
            Payload::SeqInsert { left, right, .. } => [left, right]
                .into_iter()
                .flatten()
                .all(|e| present(&op.field, *e, 1)),
            Payload::SeqDelete { ranges } => {
                ranges.iter().all(|(id, n)| present(&op.field, *id, *n))
            }
            Payload::Delete { sequences, .. } => sequences
                .iter()
                .all(|b| b.ranges.iter().all(|(id, n)| present(&b.field, *id, *n))),
            _ => true,
        }
    }

    /// The content of text `field` of a live record (empty if the record does not exist).
    pub fn text(&self, collection: &str, key: &str, field: &str) -> Result<String, QueryError> {
        let (index, record) = self.sequence_field(collection, key, field)?;
        Ok(record.map(|r| r.text(index)).unwrap_or_default())
    }

    /// The elements of list `field` of a live record (empty if the record does not exist).
    pub fn list(&self, collection: &str, key: &str, field: &str) -> Result<Vec<Value>, QueryError> {
        let (index, record) = self.sequence_field(collection, key, field)?;
        Ok(record.map(|r| r.list(index)).unwrap_or_default())
    }

    /// Converts a position in text `field` between code points, UTF-16 units and UTF-8 bytes.
    /// Past the end clamps to the end; inside a character rounds down to its start.
    pub fn convert_position(
        &self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        from: Unit,
        to: Unit,
    ) -> Result<u64, QueryError> {
        let (index, record) = self.sequence_field(collection, key, field)?;
        Ok(match record.and_then(|r| r.field(index)) {
            Some(FieldState::Text(t)) => t.convert(pos, from, to),
            Some(FieldState::List(l)) => pos.min(l.len()),
            _ => 0,
        })
    }

    /// A stable anchor at `pos` of a text or list field, for a cursor or a selection end.
    pub fn anchor(
        &self,
        collection: &str,
        key: &str,
        field: &str,
        pos: u64,
        side: Side,
    ) -> Result<Anchor, QueryError> {
        let (index, record) = self.sequence_field(collection, key, field)?;
        Ok(match record.and_then(|r| r.field(index)) {
            Some(FieldState::Text(t)) => t.anchor(pos, side),
            Some(FieldState::List(l)) => l.anchor(pos, side),
            _ => Anchor { elem: None, side },
        })
    }

    /// Where an anchor is now, in elements; `None` if its element is unknown here.
    pub fn resolve_anchor(
        &self,
        collection: &str,
        key: &str,
        field: &str,
        anchor: Anchor,
    ) -> Result<Option<u64>, QueryError> {
        let (index, record) = self.sequence_field(collection, key, field)?;
        Ok(match record.and_then(|r| r.field(index)) {
            Some(FieldState::Text(t)) => t.resolve(anchor),
            Some(FieldState::List(l)) => l.resolve(anchor),
            _ => Sequence::<String>::default().resolve(anchor),
        })
    }

    /// Watches a text or list field: every local or remote change to it is queued as an
    /// [`Event::SeqChanged`] with positions an editor can apply.
    pub fn watch(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
    ) -> Result<SubscriptionId, QueryError> {
        self.sequence_field(collection, key, field)?;
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        self.watches
            .push((id, collection.to_owned(), key.to_owned(), field.to_owned()));
        Ok(id)
    }

    /// Ends a watch. Returns whether it existed.
    pub fn unwatch(&mut self, id: SubscriptionId) -> bool {
        let before = self.watches.len();
        self.watches.retain(|(w, ..)| *w != id);
        self.watches.len() != before
    }

    /// Queues `changes` for the watches of a field.
    pub(crate) fn seq_changed(
        &mut self,
        collection: &str,
        key: &str,
        field: &str,
        changes: Vec<SeqChange>,
    ) {
        if changes.is_empty() {
            return;
        }
        for (id, c, k, f) in &self.watches {
            if c == collection && k == key && f == field {
                self.events.push_back(Event::SeqChanged {
                    id: *id,
                    changes: changes.clone(),
                });
            }
        }
    }

    /// The schema position of a text or list field and its live record, if any.
    fn sequence_field(
        &self,
        collection: &str,
        key: &str,
        field: &str,
    ) -> Result<(usize, Option<&RecordState>), QueryError> {
        let (schema, state) = self.collection(collection)?;
        let index = schema
            .fields()
            .iter()
            .position(|f| {
                f.name() == field && matches!(f.kind(), FieldKind::Text | FieldKind::List(_))
            })
            .ok_or_else(|| QueryError::UnknownField {
                collection: collection.to_owned(),
                field: field.to_owned(),
            })?;
        Ok((index, state.records.get(key).filter(|r| r.is_live())))
    }
}
