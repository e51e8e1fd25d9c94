//! Replaying a trace through a text CRDT: the seam between the systems and the measurements.
//!
//! [`TextSystem`] is what [`super::measure`] drives. Most systems are a set of independent
//! replicas, one per agent, that exchange updates: they implement [`TextReplica`] and get their
//! [`TextSystem`] from [`Replicated`], which replays with [`replay`] following the trace's
//! [`Plan`]. A system that replays concurrent histories its own way (diamond-types, with one op
//! log and a branch per agent) implements [`TextSystem`] directly.

use std::fmt;

use super::plan::Plan;
use super::trace::{Patch, Trace};

/// A replay that went wrong: a system refused an edit or an update, or a final text is not the
/// one expected. The message says which system, which txn and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError(pub String);

impl ReplayError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The same error, with `context` in front.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplayError {}

/// Turns any displayable error into a [`ReplayError`] saying what was being done.
pub(crate) fn fail<E: fmt::Display>(doing: &'static str) -> impl FnOnce(E) -> ReplayError {
    move |e| ReplayError(format!("{doing}: {e}"))
}

/// A text CRDT under comparison, driven through one trace by [`super::measure`].
///
/// The calls come in this order: [`replay`](Self::replay), [`texts`](Self::texts),
/// [`keep_one`](Self::keep_one), [`export`](Self::export), [`drop_source`](Self::drop_source),
/// [`load`](Self::load), [`fresh_text`](Self::fresh_text), [`drop_fresh`](Self::drop_fresh).
/// The measuring is done around the calls, so a system does none of its own.
pub trait TextSystem {
    /// The name shown in reports, with the crate version, e.g. `"yrs 0.28.1"`.
    fn name(&self) -> String;

    /// Why this system cannot replay `trace` sensibly, if it cannot.
    fn skip_reason(&self, trace: &Trace) -> Option<String> {
        let _ = trace;
        None
    }

    /// Replays every txn of `trace` as its own local transaction through the public API, on the
    /// replica of the txn's agent after it received what `plan` says; then brings every replica
    /// up to date. Keeps the replicas until [`drop_source`](Self::drop_source).
    fn replay(&mut self, trace: &Trace, plan: &Plan) -> Result<(), ReplayError>;

    /// The text each replica reads after the replay.
    fn texts(&self) -> Result<Vec<String>, ReplayError>;

    /// Drops every replica but one, and whatever the replay kept for exchanging, so that what is
    /// left is one document holding the full history.
    fn keep_one(&mut self);

    /// Ops in the kept replica's log, where the system counts them.
    fn op_count(&self) -> Option<usize> {
        None
    }

    /// Bytes of the kept replica's log in a second encoding worth showing beside
    /// [`export`](Self::export)'s (weft: every op encoded on its own), where there is one.
    fn alt_encoded(&self) -> Option<usize> {
        None
    }

    /// The kept replica's full history, encoded the way the system ships it to a peer that has
    /// nothing.
    fn export(&mut self) -> Result<Vec<u8>, ReplayError>;

    /// Drops the kept replica.
    fn drop_source(&mut self);

    /// Loads `bytes` (from [`export`](Self::export)) into a brand-new document, kept until
    /// [`drop_fresh`](Self::drop_fresh).
    fn load(&mut self, bytes: Vec<u8>) -> Result<(), ReplayError>;

    /// The text the fresh document reads.
    fn fresh_text(&self) -> Result<String, ReplayError>;

    /// Drops the fresh document.
    fn drop_fresh(&mut self);
}

/// One replica of a system that replicates by exchanging updates, for [`replay`].
pub trait TextReplica: Sized {
    /// What one local transaction produces for the other replicas.
    type Update;

    /// The name shown in reports, with the crate version.
    fn name() -> String;

    /// Why this system cannot replay `trace` sensibly, if it cannot.
    fn skip_reason(trace: &Trace) -> Option<String> {
        let _ = trace;
        None
    }

    /// Opens `agents` replicas (at least one) sharing one empty text, agent `a`'s at index `a`.
    fn open_all(agents: usize) -> Result<Vec<Self>, ReplayError>;

    /// Applies `patches` in order as one local transaction, and returns the update that carries
    /// it to other replicas if `keep_update` (otherwise `None`).
    fn local(
        &mut self,
        patches: &[Patch],
        keep_update: bool,
    ) -> Result<Option<Self::Update>, ReplayError>;

    /// Applies updates from other replicas, in causal order.
    fn receive(&mut self, updates: &[&Self::Update]) -> Result<(), ReplayError>;

    /// The current text.
    fn text(&self) -> Result<String, ReplayError>;

    /// Ops in this replica's log, where the system counts them.
    fn op_count(&self) -> Option<usize> {
        None
    }

    /// Bytes of this replica's log in a second encoding, where there is one worth showing.
    fn alt_encoded(&self) -> Option<usize> {
        None
    }

    /// The full history, encoded to ship to a peer that has nothing. (`&mut`, as some systems
    /// close their open transaction or fill a cache when they save.)
    fn export(&mut self) -> Result<Vec<u8>, ReplayError>;

    /// A brand-new replica holding what `bytes` (from [`export`](Self::export)) holds.
    fn load(bytes: Vec<u8>) -> Result<Self, ReplayError>;
}

/// Replays `trace` on fresh replicas of `R`, one per agent: before each txn its agent's
/// replica receives what `plan` says, then types the txn; at the end every replica receives
/// what it lacks. Returns the replicas.
pub fn replay<R: TextReplica>(trace: &Trace, plan: &Plan) -> Result<Vec<R>, ReplayError> {
    let mut replicas = R::open_all(trace.agents.max(1))?;
    let exchange = replicas.len() > 1;
    let mut updates: Vec<Option<R::Update>> = Vec::new();
    for (i, txn) in trace.txns.iter().enumerate() {
        let replica = &mut replicas[txn.agent];
        let missing = &plan.before[i];
        if !missing.is_empty() {
            let batch: Vec<&R::Update> = missing
                .iter()
                .filter_map(|&t| updates[t].as_ref())
                .collect();
            replica
                .receive(&batch)
                .map_err(|e| e.context(format_args!("txn {i}: receiving its parents")))?;
        }
        let update = replica
            .local(&txn.patches, exchange)
            .map_err(|e| e.context(format_args!("txn {i}")))?;
        if exchange {
            updates.push(update);
        }
    }
    for (agent, missing) in plan.finally.iter().enumerate() {
        if missing.is_empty() {
            continue;
        }
        let batch: Vec<&R::Update> = missing
            .iter()
            .filter_map(|&t| updates[t].as_ref())
            .collect();
        replicas[agent]
            .receive(&batch)
            .map_err(|e| e.context(format_args!("final sync of agent {agent}")))?;
    }
    Ok(replicas)
}

/// The [`TextSystem`] of a [`TextReplica`]: a replica per agent, exchanging updates.
pub struct Replicated<R> {
    source: Vec<R>,
    fresh: Option<R>,
}

impl<R> Default for Replicated<R> {
    fn default() -> Self {
        Self {
            source: Vec::new(),
            fresh: None,
        }
    }
}

impl<R: TextReplica> Replicated<R> {
    fn kept(&self) -> Result<&R, ReplayError> {
        self.source
            .first()
            .ok_or_else(|| ReplayError::new("no replica: replay did not run"))
    }
}

impl<R: TextReplica> TextSystem for Replicated<R> {
    fn name(&self) -> String {
        R::name()
    }

    fn skip_reason(&self, trace: &Trace) -> Option<String> {
        R::skip_reason(trace)
    }

    fn replay(&mut self, trace: &Trace, plan: &Plan) -> Result<(), ReplayError> {
        self.source = replay(trace, plan)?;
        Ok(())
    }

    fn texts(&self) -> Result<Vec<String>, ReplayError> {
        self.source.iter().map(R::text).collect()
    }

    fn keep_one(&mut self) {
        self.source.truncate(1);
        self.source.shrink_to_fit();
    }

    fn op_count(&self) -> Option<usize> {
        self.kept().ok()?.op_count()
    }

    fn alt_encoded(&self) -> Option<usize> {
        self.kept().ok()?.alt_encoded()
    }

    fn export(&mut self) -> Result<Vec<u8>, ReplayError> {
        self.source
            .first_mut()
            .ok_or_else(|| ReplayError::new("no replica: replay did not run"))?
            .export()
    }

    fn drop_source(&mut self) {
        self.source = Vec::new();
    }

    fn load(&mut self, bytes: Vec<u8>) -> Result<(), ReplayError> {
        self.fresh = Some(R::load(bytes)?);
        Ok(())
    }

    fn fresh_text(&self) -> Result<String, ReplayError> {
        self.fresh
            .as_ref()
            .ok_or_else(|| ReplayError::new("no fresh document: load did not run"))?
            .text()
    }

    fn drop_fresh(&mut self) {
        self.fresh = None;
    }
}
