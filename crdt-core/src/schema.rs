//! Collections, typed fields and conflict policies.

use core::fmt;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Value;

/// A merge handler: given the siblings of a field (concurrent values) in [`OpId`](crate::OpId)
/// order, returns the value to show. Every replica calls it with the same siblings in the same
/// order, so it need not be commutative; it must be deterministic. If it panics or returns a
/// value of the wrong type, the field falls back to last-writer-wins and a
/// [`Report`](crate::Report) says so.
pub type MergeFn = dyn Fn(&[&Value]) -> Value + Send + Sync;

/// How concurrent writes to a register field are resolved.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ConflictPolicy {
    /// The write with the highest [`OpId`](crate::OpId) wins. The default.
    #[default]
    LastWriterWins,
    /// The application's handler computes the value from the siblings.
    Merge(Arc<MergeFn>),
    /// The siblings are kept and listed by [`Replica::conflicts`](crate::Replica::conflicts)
    /// until a write that has seen them replaces them. Reads show the last writer's value.
    Manual,
}

impl ConflictPolicy {
    /// A merge policy from a handler.
    pub fn merge(handler: impl Fn(&[&Value]) -> Value + Send + Sync + 'static) -> Self {
        Self::Merge(Arc::new(handler))
    }

    /// Whether the field keeps siblings (anything but last-writer-wins).
    pub fn keeps_siblings(&self) -> bool {
        !matches!(self, Self::LastWriterWins)
    }
}

impl fmt::Debug for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LastWriterWins => f.write_str("LastWriterWins"),
            Self::Merge(_) => f.write_str("Merge(..)"),
            Self::Manual => f.write_str("Manual"),
        }
    }
}

/// The type of a scalar value, of a register field or of a set's elements.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScalarType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// Boolean.
    Bool,
    /// Raw bytes.
    Bytes,
    /// Hybrid timestamp.
    Timestamp,
    /// The key of a record in the named collection.
    Ref(String),
    /// Any value: a dynamically typed field, for schemaless data.
    Any,
}

impl ScalarType {
    /// Whether `value` has this type.
    pub fn admits(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Self::String, Value::String(_))
                | (Self::Int, Value::Int(_))
                | (Self::Float, Value::Float(_))
                | (Self::Bool, Value::Bool(_))
                | (Self::Bytes, Value::Bytes(_))
                | (Self::Timestamp, Value::Timestamp(_))
                | (Self::Ref(_), Value::Ref(_))
                | (Self::Any, _)
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "integer",
            Self::Float => "float",
            Self::Bool => "boolean",
            Self::Bytes => "bytes",
            Self::Timestamp => "timestamp",
            Self::Ref(_) => "reference",
            Self::Any => "value",
        }
    }
}

/// What kind of CRDT a field is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldKind {
    /// A register holding one value of the type (or siblings, under a non-LWW policy).
    Register(ScalarType),
    /// A positive-negative counter.
    Counter,
    /// An add-wins set of values of the type.
    Set(ScalarType),
    /// Collaborative text (a sequence CRDT of characters).
    Text,
    /// A list of values of the type (a sequence CRDT).
    List(ScalarType),
}

/// One field of a collection.
#[derive(Clone, Debug)]
pub struct Field {
    pub(crate) name: String,
    pub(crate) kind: FieldKind,
    pub(crate) required: bool,
    pub(crate) unique: bool,
    pub(crate) default: Option<Value>,
    pub(crate) policy: Option<ConflictPolicy>,
}

impl Field {
    fn new(name: &str, kind: FieldKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            required: false,
            unique: false,
            default: None,
            policy: None,
        }
    }

    /// A string register.
    pub fn string(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::String))
    }
    /// An integer register.
    pub fn int(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Int))
    }
    /// A float register.
    pub fn float(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Float))
    }
    /// A boolean register.
    pub fn bool(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Bool))
    }
    /// A bytes register.
    pub fn bytes(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Bytes))
    }
    /// A timestamp register.
    pub fn timestamp(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Timestamp))
    }
    /// A register holding the key of a record in `collection`.
    pub fn reference(name: &str, collection: &str) -> Self {
        Self::new(
            name,
            FieldKind::Register(ScalarType::Ref(collection.to_owned())),
        )
    }
    /// A register that holds a value of any type.
    pub fn any(name: &str) -> Self {
        Self::new(name, FieldKind::Register(ScalarType::Any))
    }
    /// Collaborative text: concurrent edits merge without interleaving.
    pub fn text(name: &str) -> Self {
        Self::new(name, FieldKind::Text)
    }
    /// A list of `element` values: concurrent inserts and deletes merge like text.
    pub fn list(name: &str, element: ScalarType) -> Self {
        Self::new(name, FieldKind::List(element))
    }
    /// A positive-negative counter.
    pub fn counter(name: &str) -> Self {
        Self::new(name, FieldKind::Counter)
    }
    /// An add-wins set of `element` values.
    pub fn set(name: &str, element: ScalarType) -> Self {
        Self::new(name, FieldKind::Set(element))
    }

    /// Records must have a value here: inserts must give it (or a default must exist).
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// No two live records may hold the same value here. Checked on local writes; a violation
    /// from concurrent writes on two replicas is listed as a conflict.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The value that reads show while none was written.
    pub fn default_value(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// The conflict policy of this field, overriding the collection's.
    pub fn policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The field's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field's kind.
    pub fn kind(&self) -> &FieldKind {
        &self.kind
    }

    /// Whether records must have a value here.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The value reads show while none was written, if any.
    pub fn default(&self) -> Option<&Value> {
        self.default.as_ref()
    }
}

/// How records of a collection get their primary key.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PrimaryKey {
    /// The application gives the key.
    #[default]
    Given,
    /// The replica generates a unique key (from its id and the op's timestamp) on insert.
    Generated,
}

/// A named set of records under one set of fields.
#[derive(Clone, Debug)]
pub struct Collection {
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) primary_key: PrimaryKey,
    pub(crate) policy: ConflictPolicy,
}

impl Collection {
    /// A collection with no fields yet, given keys and last-writer-wins.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            fields: Vec::new(),
            primary_key: PrimaryKey::Given,
            policy: ConflictPolicy::LastWriterWins,
        }
    }

    /// Adds a field.
    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// Sets how keys are made.
    pub fn primary_key(mut self, primary_key: PrimaryKey) -> Self {
        self.primary_key = primary_key;
        self
    }

    /// Sets the conflict policy of the register fields that do not set their own.
    pub fn policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its records get their keys.
    pub fn key_kind(&self) -> &PrimaryKey {
        &self.primary_key
    }

    /// The schema position of the field named `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The field named `name`.
    pub fn field_named(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The fields, in declaration order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The conflict policy in force for `field`.
    pub fn policy_of<'a>(&'a self, field: &'a Field) -> &'a ConflictPolicy {
        field.policy.as_ref().unwrap_or(&self.policy)
    }
}

/// The collections a replica holds, with a version number that travels with every op.
#[derive(Clone, Debug)]
pub struct Schema {
    version: u32,
    collections: BTreeMap<String, Collection>,
}

impl Schema {
    /// An empty schema of this version.
    pub fn new(version: u32) -> Self {
        Self {
            version,
            collections: BTreeMap::new(),
        }
    }

    /// Adds a collection, checking it: names unique and non-empty, references to collections
    /// of this schema, defaults of the field's type, unique only on register fields.
    pub fn collection(mut self, collection: Collection) -> Result<Self, SchemaError> {
        let bad = |reason: String| SchemaError {
            collection: collection.name.clone(),
            reason,
        };
        if collection.name.is_empty() {
            return Err(bad("the collection name is empty".into()));
        }
        if self.collections.contains_key(&collection.name) {
            return Err(bad("a collection of this name exists".into()));
        }
        for (i, field) in collection.fields.iter().enumerate() {
            if field.name.is_empty() {
                return Err(bad(format!("field {i} has an empty name")));
            }
            if collection.fields[..i].iter().any(|f| f.name == field.name) {
                return Err(bad(format!("field `{}` is declared twice", field.name)));
            }
            if let Some(default) = &field.default {
                let ok = match &field.kind {
                    FieldKind::Register(t) => t.admits(default),
                    FieldKind::Counter
                    | FieldKind::Set(_)
                    | FieldKind::Text
                    | FieldKind::List(_) => false,
                };
                if !ok {
                    return Err(bad(format!(
                        "the default of `{}` is not a {}",
                        field.name,
                        kind_name(&field.kind)
                    )));
                }
            }
            if field.unique && !matches!(field.kind, FieldKind::Register(_)) {
                return Err(bad(format!(
                    "`{}`: only register fields can be unique",
                    field.name
                )));
            }
        }
        self.collections.insert(collection.name.clone(), collection);
        Ok(self)
    }

    /// Checks that every reference names a collection of the schema.
    pub fn validate(&self) -> Result<(), SchemaError> {
        for c in self.collections.values() {
            for f in &c.fields {
                let target = match &f.kind {
                    FieldKind::Register(ScalarType::Ref(t))
                    | FieldKind::Set(ScalarType::Ref(t)) => t,
                    _ => continue,
                };
                if !self.collections.contains_key(target) {
                    return Err(SchemaError {
                        collection: c.name.clone(),
                        reason: format!("`{}` refers to unknown collection `{target}`", f.name),
                    });
                }
            }
        }
        Ok(())
    }

    /// The schema version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The collection named `name`.
    pub fn get(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// All collections, by name.
    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.values()
    }
}

pub(crate) fn kind_name(kind: &FieldKind) -> String {
    match kind {
        FieldKind::Register(t) => t.name().to_owned(),
        FieldKind::Counter => "counter".to_owned(),
        FieldKind::Set(t) => format!("set of {}", t.name()),
        FieldKind::Text => "text".to_owned(),
        FieldKind::List(t) => format!("list of {}", t.name()),
    }
}

/// A collection that cannot be part of a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid collection `{collection}`: {reason}")]
pub struct SchemaError {
    /// The collection.
    pub collection: String,
    /// What is wrong.
    pub reason: String,
}
