//! Properties of `AwSet`.

use super::{
    Crdt, Step, Tag, candidates, check_join_laws, check_op_order, config, pick, picks, script,
    shuffle, tag,
};
use crate::types::AwSet;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;

type Set = AwSet<Tag, u8>;

/// A set op as the op log holds it.
#[derive(Clone, Debug)]
pub(super) enum Op {
    /// An add of an element.
    Add(Tag, u8),
    /// A remove of an element: the add tags it observed.
    Remove(u8, Vec<Tag>),
}

impl Crdt for Set {
    type Op = Op;
    type View = Vec<u8>;

    fn apply(&mut self, op: &Op) -> bool {
        match op {
            Op::Add(tag, elem) => self.add(*tag, *elem),
            Op::Remove(elem, tags) => self.apply_remove(elem, tags),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.join(other);
    }

    fn view(&self) -> Vec<u8> {
        self.iter().copied().collect()
    }
}

/// Runs a script over the elements 0 to 4: each step syncs from another replica (kind 0),
/// removes (kinds 1 and 2) or adds (kinds 3 and 4), through the mutator or its delta.
fn simulate(n: usize, steps: &[Step<()>]) -> Result<(Vec<Set>, Vec<Op>), TestCaseError> {
    let mut replicas = vec![Set::new(); n];
    let mut ops = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let r = step.replica % n;
        let elem = step.other % 5;
        match step.kind % 5 {
            0 => {
                let source = replicas[usize::from(step.other) % n].clone();
                replicas[r].join(&source);
            }
            1 => {
                let tags = replicas[r].remove(&elem);
                ops.push(Op::Remove(elem, tags));
            }
            2 => {
                let tags = replicas[r].live_tags(&elem);
                let delta = replicas[r].delta_remove(&elem);
                replicas[r].join(&delta);
                ops.push(Op::Remove(elem, tags));
            }
            kind => {
                let t = tag(i, step.skew, r);
                if kind == 3 {
                    replicas[r].add(t, elem);
                } else {
                    let delta = replicas[r].delta_add(t, elem);
                    replicas[r].join(&delta);
                }
                ops.push(Op::Add(t, elem));
            }
        }
        // A local add makes the element present; a local remove makes it absent.
        match step.kind % 5 {
            1 | 2 => prop_assert!(!replicas[r].contains(&elem)),
            3 | 4 => prop_assert!(replicas[r].contains(&elem)),
            _ => {}
        }
    }
    Ok((replicas, ops))
}

/// The observed-remove semantics: an element is present iff some add of it was not removed.
fn expected(ops: &[Op]) -> Vec<u8> {
    let removed: BTreeSet<Tag> = ops
        .iter()
        .flat_map(|op| match op {
            Op::Remove(_, tags) => tags.clone(),
            Op::Add(..) => Vec::new(),
        })
        .collect();
    let present: BTreeSet<u8> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Add(tag, elem) if !removed.contains(tag) => Some(*elem),
            _ => None,
        })
        .collect();
    present.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn set_join_laws((n, steps) in script(Just(())), (sel, masks) in picks()) {
        let (replicas, ops) = simulate(n, &steps)?;
        let states = candidates(&replicas, &ops, &masks);
        check_join_laws(&pick(&states, sel[0]), &pick(&states, sel[1]), &pick(&states, sel[2]))?;
    }

    #[test]
    fn set_any_op_order_keeps_exactly_the_unremoved_adds(
        (n, steps) in script(Just(())),
        (keys, dups) in shuffle(),
        mask in any::<u64>(),
    ) {
        let (replicas, ops) = simulate(n, &steps)?;
        let state = check_op_order(&ops, &replicas, &keys, &dups)?;
        prop_assert_eq!(state.view(), expected(&ops));
        prop_assert_eq!(state.len(), expected(&ops).len());
        prop_assert_eq!(state.is_empty(), expected(&ops).is_empty());
        // Any subset of the ops, too, even with removes whose adds are missing.
        let some = super::subset(&ops, mask);
        prop_assert_eq!(super::apply_all::<Set>(&some)?.view(), expected(&some));
    }

    #[test]
    fn set_deltas_and_ops_match_mutators(
        (n, steps) in script(Just(())),
        masks in any::<[u64; 2]>(),
        (sel, elem) in (any::<u8>(), 0..6u8),
        (step, skew, replica) in (0..50usize, 0..4u8, 0..5usize),
    ) {
        let (replicas, ops) = simulate(n, &steps)?;
        let state = pick(&candidates(&replicas, &ops, &masks), sel);

        // Tags from a range that overlaps the script's, so removed and known tags occur.
        let t = tag(step, skew, replica);
        let mut added = state.clone();
        let changed = added.add(t, elem);
        prop_assert_eq!(changed, added.view() != state.view());
        let mut joined = state.clone();
        joined.join(&state.delta_add(t, elem));
        prop_assert_eq!(&joined, &added);

        let mut removed = state.clone();
        let tags = removed.remove(&elem);
        prop_assert_eq!(&tags, &state.live_tags(&elem));
        prop_assert_eq!(tags.is_empty(), !state.contains(&elem));
        prop_assert!(!removed.contains(&elem));
        let mut rest = state.view();
        rest.retain(|e| *e != elem);
        prop_assert_eq!(removed.view(), rest);
        let mut joined = state.clone();
        joined.join(&state.delta_remove(&elem));
        prop_assert_eq!(&joined, &removed);
        let mut applied = state.clone();
        let changed = applied.apply_remove(&elem, &tags);
        prop_assert_eq!(&applied, &removed);
        prop_assert_eq!(changed, state.contains(&elem));
    }

    #[test]
    fn set_add_wins_over_a_concurrent_remove(
        (n, steps) in script(Just(())),
        masks in any::<[u64; 2]>(),
        (sel, elem) in (any::<u8>(), 0..6u8),
    ) {
        let (replicas, ops) = simulate(n, &steps)?;
        let state = pick(&candidates(&replicas, &ops, &masks), sel);
        let fresh = tag(1000, 0, 0);

        // Replica a removes the element while replica b concurrently adds it again.
        let mut a = state.clone();
        let observed = a.remove(&elem);
        let mut b = state.clone();
        b.add(fresh, elem);
        let mut ab = a.clone();
        ab.join(&b);
        let mut ba = b.clone();
        ba.join(&a);
        prop_assert_eq!(&ab, &ba);
        prop_assert!(ab.contains(&elem));
        prop_assert_eq!(ab.live_tags(&elem), vec![fresh]);
        // Through the op log, in both orders.
        let mut a_then = a.clone();
        a_then.add(fresh, elem);
        let mut b_then = b.clone();
        b_then.apply_remove(&elem, &observed);
        prop_assert_eq!(&a_then, &ab);
        prop_assert_eq!(&b_then, &ab);

        // Once the add is observed, a remove takes the element out everywhere it arrives.
        let mut c = ab.clone();
        let observed = c.remove(&elem);
        prop_assert_eq!(&observed, &vec![fresh]);
        prop_assert!(!c.contains(&elem));
        let mut late = b.clone();
        late.apply_remove(&elem, &observed);
        prop_assert_eq!(late.contains(&elem), state.contains(&elem));
        late.join(&c);
        prop_assert_eq!(&late, &c);
    }

    #[test]
    fn set_removes_naming_any_adds_commute(
        (n, steps) in script(Just(())),
        (keys, dups) in shuffle(),
        rogue in prop::collection::vec((0..6u8, any::<u64>()), 0..6),
    ) {
        // Removes as a faulty peer might send them: any element, any add tags.
        let (_, mut ops) = simulate(n, &steps)?;
        let tags: Vec<Tag> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Add(tag, _) => Some(*tag),
                Op::Remove(..) => None,
            })
            .collect();
        ops.extend(rogue.iter().map(|(elem, mask)| Op::Remove(*elem, super::subset(&tags, *mask))));
        let all = super::apply_all::<Set>(&ops)?;
        let state = check_op_order(&ops, &[all], &keys, &dups)?;
        prop_assert_eq!(state.view(), expected(&ops));
    }
}
