//! Delta-state CRDT types: registers, a counter and a set.
//!
//! These types know nothing of the rest of weft. Writes and adds are identified by a tag `T`
//! (in weft an op id: hybrid timestamp and replica id, totally ordered and unique per op); the
//! counter is keyed by replica ids `R`. All state lives in `BTreeMap`s and `BTreeSet`s, so
//! iteration is deterministic.
//!
//! Every type has the same shape:
//!
//! - **State and join.** The state is a join-semilattice: `join(&mut self, other: &Self)` is
//!   idempotent, commutative and associative, on the whole internal state and not only on what
//!   the accessors show, so two replicas that have seen the same ops compare equal with `==`.
//!   Each type keeps its state in one canonical form to make that true (no zero counter
//!   entries, no superseded or removed tags among the live ones).
//! - **Mutators and deltas.** Each local mutator (`write`, `increment`, `reset`, `add`,
//!   `remove`) has a delta twin (`delta_write`, `delta_increment`, `reset_delta`, `delta_add`,
//!   `delta_remove`) that leaves the state alone and returns a small value of the same type:
//!   `state.join(&delta)` equals the state after the mutation. Deltas ship and join like states.
//! - **Ops.** An op as stored in the op log carries the same information as its delta, and each
//!   op kind has a method that applies it (`write`, `apply_totals`, `apply_baseline`, `add`,
//!   `apply_remove`). Applying the same set of ops in any order, with gaps filled later or with
//!   duplicates, gives the same state. Each returns whether the observable value changed, so
//!   the caller can skip work when it did not; the internal state may still have grown (a
//!   tombstone recorded, a tag added to a present element).
//! - **Reads.** Accessors for the observable value, plus read-only views of the tombstones.
//!
//! The types:
//!
//! - [`LwwRegister`]: last-writer-wins register; the highest tag wins.
//! - [`MvRegister`]: multi-value register; concurrent writes survive as siblings until a write
//!   that saw them replaces them.
//! - [`PnCounter`]: positive-negative counter whose ops carry cumulative per-replica totals,
//!   with a reset baseline for deleting the record that holds it.
//! - [`AwSet`]: add-wins observed-remove set.
//!
//! Tags must be unique per op: two ops with the same tag are taken to be the same op (with the
//! same value or element). No method panics, whatever its input.

mod counter;
mod lww;
mod mv;
mod set;

#[cfg(test)]
mod tests;

pub use counter::PnCounter;
pub use lww::LwwRegister;
pub use mv::MvRegister;
pub use set::AwSet;
