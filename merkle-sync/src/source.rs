//! Where a session reads the ops it sends: the one trait the op log implements.

use std::collections::BTreeMap;

use crdt_core::{Op, OpId, Storage};

/// Reading an op from the log failed.
#[derive(Debug, thiserror::Error)]
#[error("reading op {id} from the log failed: {source}")]
pub struct SourceError {
    /// The op being read.
    pub id: OpId,
    /// Why.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Read access to the ops of a log, by id. A session calls it only for ids its [`Index`]
/// holds, when it fills a frame.
///
/// [`Index`]: crate::Index
pub trait OpSource {
    /// The op with this id, or `None` if the log does not hold it.
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError>;
}

impl<T: OpSource + ?Sized> OpSource for &T {
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError> {
        (**self).op(id)
    }
}

/// An in-memory log: what tests and small tools use.
impl OpSource for BTreeMap<OpId, Op> {
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError> {
        Ok(self.get(&id).cloned())
    }
}

/// Reads ops from any [`crdt_core::Storage`] (for instance the one under a `Replica`).
#[derive(Debug, Clone, Copy)]
pub struct StorageSource<'a, S>(pub &'a S);

impl<S: Storage> OpSource for StorageSource<'_, S> {
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError> {
        self.0.get(id).map_err(|e| SourceError {
            id,
            source: Box::new(e),
        })
    }
}
