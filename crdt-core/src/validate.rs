//! Checking ops against the schema, and resolving multi-value fields under their policy.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::InvalidOp;
use crate::list::{ElemId, SeqChange};
use crate::op::SeqContent;
use crate::schema::{ConflictPolicy, FieldKind, Schema, kind_name};
use crate::state::{FieldState, RecordState};
use crate::{Op, Payload, Value};

/// Checks an op against the schema; returns the schema position of its field (0 for a
/// whole-record op).
pub(crate) fn validate(schema: &Schema, op: &Op) -> Result<usize, InvalidOp> {
    let collection = schema
        .get(&op.collection)
        .ok_or_else(|| InvalidOp::UnknownCollection(op.collection.clone()))?;
    let field_named = |name: &str| {
        collection
            .field_index(name)
            .ok_or_else(|| InvalidOp::UnknownField {
                collection: op.collection.clone(),
                field: name.to_owned(),
            })
    };
    // Element ranges must not wrap around: the sequence does arithmetic on `seq + count`.
    let ranges_ok = |ranges: &[(ElemId, u64)]| {
        ranges
            .iter()
            .all(|(id, n)| *n > 0 && id.seq.checked_add(*n).is_some())
    };
    match &op.payload {
        Payload::SeqInsert { seq, content, .. } if seq.checked_add(content.count()).is_none() => {
            return Err(InvalidOp::Malformed("inserted elements' numbers overflow"));
        }
        Payload::SeqDelete { ranges } if !ranges_ok(ranges) => {
            return Err(InvalidOp::Malformed(
                "a deleted range is empty or overflows",
            ));
        }
        Payload::Delete { sequences, .. } if !sequences.iter().all(|b| ranges_ok(&b.ranges)) => {
            return Err(InvalidOp::Malformed(
                "a deleted range is empty or overflows",
            ));
        }
        _ => {}
    }
    if let Payload::Create = &op.payload {
        if !op.field.is_empty() {
            return Err(InvalidOp::Malformed("a record create names a field"));
        }
        return Ok(0);
    }
    if let Payload::Delete {
        counters,
        sequences,
    } = &op.payload
    {
        if !op.field.is_empty() {
            return Err(InvalidOp::Malformed("a record delete names a field"));
        }
        for baseline in counters {
            let i = field_named(&baseline.field)?;
            if collection.fields()[i].kind() != &FieldKind::Counter {
                return Err(type_error(
                    op,
                    &collection.fields()[i].kind,
                    "counter baseline",
                ));
            }
        }
        for baseline in sequences {
            let i = field_named(&baseline.field)?;
            if !matches!(
                collection.fields()[i].kind(),
                FieldKind::Text | FieldKind::List(_)
            ) {
                return Err(type_error(
                    op,
                    &collection.fields()[i].kind,
                    "text or list baseline",
                ));
            }
        }
        return Ok(0);
    }
    let index = field_named(&op.field)?;
    let kind = collection.fields()[index].kind();
    let fits = match (&op.payload, kind) {
        (Payload::Write(Value::Null), FieldKind::Register(_)) => true,
        (Payload::Write(v), FieldKind::Register(t)) => t.admits(v),
        (Payload::Counter { .. }, FieldKind::Counter) => true,
        (Payload::SetAdd(v) | Payload::SetRemove(v), FieldKind::Set(t)) => t.admits(v),
        (
            Payload::SeqInsert {
                content: SeqContent::Text(s),
                ..
            },
            FieldKind::Text,
        ) => !s.is_empty(),
        (
            Payload::SeqInsert {
                content: SeqContent::Values(v),
                ..
            },
            FieldKind::List(t),
        ) => !v.is_empty() && v.iter().all(|x| t.admits(x)),
        (Payload::SeqDelete { .. }, FieldKind::Text | FieldKind::List(_)) => true,
        _ => false,
    };
    if !fits {
        return Err(type_error(op, kind, payload_name(&op.payload)));
    }
    Ok(index)
}

/// Deletes `[id, id + n)` from a text or list field; the visible changes.
pub(crate) fn delete_in(state: &mut FieldState, id: ElemId, n: u64) -> Vec<SeqChange> {
    match state {
        FieldState::Text(t) => t.delete_remote(id, n),
        FieldState::List(l) => l.delete_remote(id, n),
        _ => Vec::new(),
    }
}

pub(crate) fn type_error(op: &Op, kind: &FieldKind, found: &str) -> InvalidOp {
    InvalidOp::Type {
        collection: op.collection.clone(),
        field: op.field.clone(),
        expected: kind_name(kind),
        found: found.to_owned(),
    }
}

pub(crate) fn payload_name(payload: &Payload) -> &'static str {
    match payload {
        Payload::Write(v) => v.kind(),
        Payload::Counter { .. } => "counter update",
        Payload::SetAdd(v) | Payload::SetRemove(v) => v.kind(),
        Payload::Delete { .. } => "record delete",
        Payload::SeqInsert {
            content: SeqContent::Text(_),
            ..
        } => "text insert",
        Payload::SeqInsert {
            content: SeqContent::Values(_),
            ..
        } => "list insert",
        Payload::SeqDelete { .. } => "sequence delete",
        Payload::Create => "record create",
    }
}

/// Recomputes and stores the value multi-value field `field` shows. If the merge handler
/// fails, the field shows the last writer's value and the reason is returned for a report.
pub(crate) fn refresh_resolved(
    policy: &ConflictPolicy,
    kind: &FieldKind,
    record: &mut RecordState,
    field: usize,
) -> Result<(), String> {
    let (value, failure) = match resolve(policy, kind, record, field) {
        Ok(value) => (value, None),
        Err(reason) => (
            record.siblings(field).last().map(|(_, v)| (*v).clone()),
            Some(reason),
        ),
    };
    if record.resolved.len() <= field {
        record.resolved.resize(field + 1, None);
    }
    record.resolved[field] = value;
    failure.map_or(Ok(()), Err)
}

/// The value a multi-value field shows: for a merge policy the handler's result over the
/// visible siblings in op id order, otherwise (manual) the last writer's. `Err` carries why
/// the handler failed; the caller then falls back to last-writer-wins.
fn resolve(
    policy: &ConflictPolicy,
    kind: &FieldKind,
    record: &RecordState,
    field: usize,
) -> Result<Option<Value>, String> {
    let siblings = record.siblings(field);
    let values: Vec<&Value> = siblings.iter().map(|(_, v)| *v).collect();
    match (policy, values.as_slice()) {
        (_, []) => Ok(None),
        (ConflictPolicy::Merge(handler), values) if values.len() > 1 => {
            let merged = catch_unwind(AssertUnwindSafe(|| handler(values))).map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                format!("merge handler panicked: {message}")
            })?;
            let fits = match kind {
                FieldKind::Register(t) => merged == Value::Null || t.admits(&merged),
                _ => false,
            };
            if fits {
                Ok(Some(merged))
            } else {
                Err(format!(
                    "merge handler returned a {}, but the field is a {}",
                    merged.kind(),
                    kind_name(kind)
                ))
            }
        }
        (_, values) => Ok(values.last().map(|v| (*v).clone())),
    }
}
