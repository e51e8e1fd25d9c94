//! Where a session reads the ops it sends: the one trait the op log implements.

use std::borrow::Cow;
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

    /// The op with this id in its encoding: [`crdt_core::codec::encode_op`] without the
    /// leading format-version byte, as an ops frame carries it. The default encodes
    /// [`OpSource::op`]; a log that keeps ops encoded lends its bytes, and a session then only
    /// copies them onto the wire.
    fn encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, SourceError> {
        Ok(self.op(id)?.map(|op| {
            let mut bytes = crdt_core::codec::encode_op(&op);
            bytes.remove(0);
            Cow::Owned(bytes)
        }))
    }

    /// [`OpSource::encoded`] for the ids `ids` yields, which ascend: `f` is given each with its
    /// bytes (`None` if the log does not hold it), in turn, until it returns false. A session
    /// fills a frame this way. The default reads them one by one; a log that can read a run
    /// of ids in one pass (as [`StorageSource`] does) overrides it.
    fn encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), SourceError> {
        for id in ids {
            if !f(id, self.encoded(id)?) {
                break;
            }
        }
        Ok(())
    }
}

impl<T: OpSource + ?Sized> OpSource for &T {
    fn op(&self, id: OpId) -> Result<Option<Op>, SourceError> {
        (**self).op(id)
    }

    fn encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, SourceError> {
        (**self).encoded(id)
    }

    fn encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), SourceError> {
        (**self).encoded_each(ids, f)
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

    /// [`Storage::get_encoded`]: the stored bytes themselves where the store keeps them.
    fn encoded(&self, id: OpId) -> Result<Option<Cow<'_, [u8]>>, SourceError> {
        self.0.get_encoded(id).map_err(|e| SourceError {
            id,
            source: Box::new(e),
        })
    }

    /// [`Storage::get_encoded_each`]: the store reads the run in one pass. An error names the
    /// id being read when it came.
    fn encoded_each<'a>(
        &'a self,
        ids: &mut dyn Iterator<Item = OpId>,
        f: &mut dyn FnMut(OpId, Option<Cow<'a, [u8]>>) -> bool,
    ) -> Result<(), SourceError> {
        let mut ids = ids.peekable();
        // Nothing to read, nothing to fail; otherwise an error before the first read names it.
        let Some(mut current) = ids.peek().copied() else {
            return Ok(());
        };
        let mut ids = ids.inspect(|&id| current = id);
        let result = self.0.get_encoded_each(&mut ids, f);
        drop(ids);
        result.map_err(|e| SourceError {
            id: current,
            source: Box::new(e),
        })
    }
}
