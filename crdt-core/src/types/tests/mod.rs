//! Property tests shared by all the types.
//!
//! Each type's tests simulate 2 to 4 replicas running a random script of local mutations and
//! state syncs. The simulation yields the replicas' final states and the op log (every op in
//! the order it was made, so each op comes after the ops it refers to). Arbitrary states for
//! the join laws are the replicas' states and the states built from random subsets of the op
//! log (which may hold a superseding write or a remove without its target).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::fmt::Debug;

mod counter;
mod lww;
mod mv;
mod set;

/// A test tag: (counter, replica). Unique per op.
type Tag = (u64, u64);

/// The proptest configuration of every property.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The unique tag of the op made at script step `step` by `replica`. `skew` scrambles the tag
/// order against the script order, as skewed clocks would.
fn tag(step: usize, skew: u8, replica: usize) -> Tag {
    ((u64::from(skew) << 16) | step as u64, replica as u64)
}

/// One step of a replica script.
#[derive(Clone, Debug)]
struct Step<X> {
    /// Acting replica (taken modulo the number of replicas).
    replica: usize,
    /// Action selector.
    kind: u8,
    /// Other replica or element selector.
    other: u8,
    /// Tag skew.
    skew: u8,
    /// Action argument.
    arg: X,
}

/// A script: the number of replicas (2 to 4) and the steps.
fn script<X: Clone + Debug>(
    arg: impl Strategy<Value = X>,
) -> impl Strategy<Value = (usize, Vec<Step<X>>)> {
    let step = (0..4usize, any::<u8>(), any::<u8>(), 0..4u8, arg).prop_map(
        |(replica, kind, other, skew, arg)| Step {
            replica,
            kind,
            other,
            skew,
            arg,
        },
    );
    (2..=4usize, prop::collection::vec(step, 0..40))
}

/// Sort keys for a permutation, and selectors of ops to duplicate.
fn shuffle() -> impl Strategy<Value = (Vec<u32>, Vec<u8>)> {
    (
        prop::collection::vec(any::<u32>(), 1..100),
        prop::collection::vec(any::<u8>(), 0..10),
    )
}

/// A CRDT under test, with its op type and observable value.
trait Crdt: Clone + PartialEq + Debug + Default {
    /// An op as it comes from the op log.
    type Op: Clone + Debug;
    /// The observable value.
    type View: PartialEq + Debug;
    /// Applies an op; returns whether the observable value changed.
    fn apply(&mut self, op: &Self::Op) -> bool;
    /// The type's join.
    fn merge(&mut self, other: &Self);
    /// The observable value.
    fn view(&self) -> Self::View;
}

/// The join of two states.
fn joined<S: Crdt>(a: &S, b: &S) -> S {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// `items` permuted by sorting on `keys` (cycled), ties kept in order.
fn permuted<X: Clone>(items: &[X], keys: &[u32]) -> Vec<X> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|i| (keys.get(i % keys.len().max(1)).copied().unwrap_or(0), *i));
    order.into_iter().map(|i| items[i].clone()).collect()
}

/// The items whose index bit (modulo 64) is set in `mask`.
fn subset<X: Clone>(items: &[X], mask: u64) -> Vec<X> {
    items
        .iter()
        .enumerate()
        .filter(|(i, _)| mask >> (i % 64) & 1 == 1)
        .map(|(_, x)| x.clone())
        .collect()
}

/// Applies `ops` in order to an empty state, checking every reported change.
fn apply_all<S: Crdt>(ops: &[S::Op]) -> Result<S, TestCaseError> {
    let mut state = S::default();
    for op in ops {
        let before = state.view();
        let changed = state.apply(op);
        let after = state.view();
        prop_assert_eq!(
            changed,
            before != after,
            "apply({:?}) misreported the change {:?} -> {:?}",
            op,
            before,
            after
        );
    }
    Ok(state)
}

/// Candidate arbitrary states: the replicas, the empty state, and the op log's subsets picked
/// by `masks`.
fn candidates<S: Crdt>(replicas: &[S], ops: &[S::Op], masks: &[u64]) -> Vec<S> {
    let mut out = replicas.to_vec();
    out.push(S::default());
    for mask in masks {
        let mut state = S::default();
        for op in subset(ops, *mask) {
            state.apply(&op);
        }
        out.push(state);
    }
    out
}

/// Picks a candidate by selector.
fn pick<S: Clone>(states: &[S], selector: u8) -> S {
    states[usize::from(selector) % states.len()].clone()
}

/// Strategy for join-law inputs: three candidate selectors and three subset masks.
fn picks() -> impl Strategy<Value = ([u8; 3], [u64; 3])> {
    (any::<[u8; 3]>(), any::<[u64; 3]>())
}

/// Checks that join is idempotent, commutative and associative on `a`, `b`, `c`, and that the
/// empty state is its identity.
fn check_join_laws<S: Crdt>(a: &S, b: &S, c: &S) -> Result<(), TestCaseError> {
    prop_assert_eq!(&joined(a, a), a, "a ⊔ a != a");
    prop_assert_eq!(joined(a, b), joined(b, a), "a ⊔ b != b ⊔ a");
    prop_assert_eq!(
        joined(&joined(a, b), c),
        joined(a, &joined(b, c)),
        "(a ⊔ b) ⊔ c != a ⊔ (b ⊔ c)"
    );
    prop_assert_eq!(&joined(a, &S::default()), a, "a ⊔ ⊥ != a");
    prop_assert_eq!(&joined(&S::default(), a), a, "⊥ ⊔ a != a");
    let ab = joined(a, b);
    prop_assert_eq!(&joined(&ab, a), &ab, "(a ⊔ b) ⊔ a != a ⊔ b");
    Ok(())
}

/// Checks that `ops` give the same state in log order, in the permutation of `keys`, in
/// reverse order (every op before the ops it refers to), and with the duplicates picked by
/// `dups` mixed in; that re-applying any op reports no change; and that the join of the
/// `replicas`' states is that state. Returns the state.
fn check_op_order<S: Crdt>(
    ops: &[S::Op],
    replicas: &[S],
    keys: &[u32],
    dups: &[u8],
) -> Result<S, TestCaseError> {
    let reference = apply_all::<S>(ops)?;
    prop_assert_eq!(
        &apply_all::<S>(&permuted(ops, keys))?,
        &reference,
        "permuted"
    );
    let reversed: Vec<S::Op> = ops.iter().rev().cloned().collect();
    prop_assert_eq!(&apply_all::<S>(&reversed)?, &reference, "reversed");
    if !ops.is_empty() {
        let mut with_dups = ops.to_vec();
        with_dups.extend(
            dups.iter()
                .map(|d| ops[usize::from(*d) % ops.len()].clone()),
        );
        let rekeyed: Vec<u32> = keys.iter().map(|k| k.rotate_left(16)).collect();
        let with_dups = permuted(&with_dups, &rekeyed);
        prop_assert_eq!(&apply_all::<S>(&with_dups)?, &reference, "duplicated");
    }
    for op in ops {
        let mut again = reference.clone();
        prop_assert!(!again.apply(op), "re-applying {:?} reported a change", op);
        prop_assert_eq!(&again, &reference, "re-applying {:?} changed the state", op);
    }
    let mut all = S::default();
    for replica in replicas {
        all.merge(replica);
    }
    prop_assert_eq!(&all, &reference, "join of the replicas != all ops applied");
    Ok(reference)
}
