//! Reads: rows, queries (filter, order by, limit) and live-query subscriptions.

use core::cmp::Ordering;
use std::collections::BTreeMap;

use crate::schema::{Collection, FieldKind};
use crate::state::RecordState;
use crate::{OpId, Value};

/// What a read shows for one field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldValue {
    /// A register's value (the resolved one, for fields that keep siblings); `Null` if unset
    /// and without default.
    Value(Value),
    /// A counter's value.
    Counter(i128),
    /// A set's elements, ascending.
    Set(Vec<Value>),
    /// A text's content.
    Text(String),
    /// A list's elements, in order.
    List(Vec<Value>),
}

impl FieldValue {
    /// The register value, if this is a register.
    pub fn as_value(&self) -> Option<&Value> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// A snapshot of one live record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The record's primary key.
    pub key: String,
    /// Every field of the schema, by name.
    pub fields: BTreeMap<String, FieldValue>,
}

impl Row {
    /// The register value of `field` (`None` for unknown fields, counters and sets).
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field).and_then(FieldValue::as_value)
    }

    /// The value of counter `field`.
    pub fn counter(&self, field: &str) -> Option<i128> {
        match self.fields.get(field)? {
            FieldValue::Counter(c) => Some(*c),
            _ => None,
        }
    }

    /// The elements of set `field`.
    pub fn set(&self, field: &str) -> Option<&[Value]> {
        match self.fields.get(field)? {
            FieldValue::Set(s) => Some(s),
            _ => None,
        }
    }

    /// The content of text `field`.
    pub fn text(&self, field: &str) -> Option<&str> {
        match self.fields.get(field)? {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of list `field`.
    pub fn list(&self, field: &str) -> Option<&[Value]> {
        match self.fields.get(field)? {
            FieldValue::List(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn build(schema: &Collection, key: &str, record: &RecordState) -> Self {
        let fields = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let value = match f.kind() {
                    FieldKind::Register(_) => FieldValue::Value(
                        record
                            .register(i)
                            .or(f.default.as_ref())
                            .cloned()
                            .unwrap_or(Value::Null),
                    ),
                    FieldKind::Counter => FieldValue::Counter(record.counter(i)),
                    FieldKind::Set(_) => FieldValue::Set(record.set_elements(i)),
                    FieldKind::Text => FieldValue::Text(record.text(i)),
                    FieldKind::List(_) => FieldValue::List(record.list(i)),
                };
                (f.name().to_owned(), value)
            })
            .collect();
        Self {
            key: key.to_owned(),
            fields,
        }
    }
}

/// A comparison in a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cmp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// A set field contains the value, or a string field contains the string.
    Contains,
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// A query over one collection: filters (all must hold), sort keys, and a limit. Rows with
/// equal sort keys are ordered by primary key, so results are deterministic.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub(crate) collection: String,
    pub(crate) filters: Vec<(String, Cmp, Value)>,
    pub(crate) order: Vec<(String, Order)>,
    pub(crate) limit: Option<usize>,
}

impl Query {
    /// Every live record of `collection`, by primary key.
    pub fn new(collection: &str) -> Self {
        Self {
            collection: collection.to_owned(),
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
        }
    }

    /// Keeps rows whose `field` compares to `value` as `cmp` says. Counters compare as
    /// integers.
    pub fn filter(mut self, field: &str, cmp: Cmp, value: impl Into<Value>) -> Self {
        self.filters.push((field.to_owned(), cmp, value.into()));
        self
    }

    /// Sorts by `field` (after any earlier sort keys).
    pub fn order_by(mut self, field: &str, order: Order) -> Self {
        self.order.push((field.to_owned(), order));
        self
    }

    /// Returns at most `limit` rows.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The collection queried.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Checks field names against the schema.
    pub(crate) fn check(&self, schema: &Collection) -> Result<(), QueryError> {
        let names = self
            .filters
            .iter()
            .map(|(f, _, _)| f)
            .chain(self.order.iter().map(|(f, _)| f));
        for name in names {
            if schema.field_named(name).is_none() {
                return Err(QueryError::UnknownField {
                    collection: self.collection.clone(),
                    field: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Whether `row` passes every filter.
    pub(crate) fn matches(&self, row: &Row) -> bool {
        self.filters.iter().all(|(field, cmp, want)| {
            let Some(have) = row.fields.get(field) else {
                return false;
            };
            match (have, cmp) {
                (FieldValue::Set(elements), Cmp::Contains) => elements.contains(want),
                (FieldValue::Value(Value::String(s)) | FieldValue::Text(s), Cmp::Contains) => {
                    want.as_str().is_some_and(|w| s.contains(w))
                }
                (FieldValue::List(elements), Cmp::Contains) => elements.contains(want),
                (_, Cmp::Contains) => false,
                (FieldValue::Value(v), cmp) => compare(v.cmp(want), *cmp),
                (FieldValue::Counter(c), cmp) => match want {
                    Value::Int(w) => compare(c.cmp(&i128::from(*w)), *cmp),
                    _ => false,
                },
                (FieldValue::Text(s), cmp) => match want {
                    Value::String(w) => compare(s.as_str().cmp(w), *cmp),
                    _ => false,
                },
                (FieldValue::Set(_) | FieldValue::List(_), _) => false,
            }
        })
    }

    /// Sorts rows by the sort keys, then by key, and applies the limit.
    pub(crate) fn finish(&self, mut rows: Vec<Row>) -> Vec<Row> {
        rows.sort_by(|a, b| {
            for (field, order) in &self.order {
                let ord = a.fields.get(field).cmp(&b.fields.get(field));
                let ord = if *order == Order::Desc {
                    ord.reverse()
                } else {
                    ord
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            a.key.cmp(&b.key)
        });
        if let Some(limit) = self.limit {
            rows.truncate(limit);
        }
        rows
    }
}

fn compare(ord: Ordering, cmp: Cmp) -> bool {
    match cmp {
        Cmp::Eq => ord.is_eq(),
        Cmp::Ne => ord.is_ne(),
        Cmp::Lt => ord.is_lt(),
        Cmp::Le => ord.is_le(),
        Cmp::Gt => ord.is_gt(),
        Cmp::Ge => ord.is_ge(),
        Cmp::Contains => false,
    }
}

/// A query that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// No such collection.
    #[error("unknown collection `{0}`")]
    UnknownCollection(String),
    /// No such field.
    #[error("collection `{collection}` has no field `{field}`")]
    UnknownField {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
    },
}

/// The id of a live-query subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// A register field whose siblings await manual resolution, or a unique field that holds the
/// same value in several live records after concurrent writes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflict {
    /// Concurrent writes to one field.
    Siblings {
        /// The collection.
        collection: String,
        /// The record.
        key: String,
        /// The field.
        field: String,
        /// The concurrent values, in op id order; a write made after reading them replaces
        /// them all.
        siblings: Vec<(OpId, Value)>,
    },
    /// Several live records share a value of a unique field.
    Unique {
        /// The collection.
        collection: String,
        /// The field.
        field: String,
        /// The shared value.
        value: Value,
        /// The records holding it.
        keys: Vec<String>,
    },
}
