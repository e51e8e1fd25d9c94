//! Properties of `MvRegister`.

use super::{
    Crdt, Step, Tag, candidates, check_join_laws, check_op_order, config, pick, picks, script,
    shuffle, subset, tag,
};
use crate::types::MvRegister;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;

type Reg = MvRegister<Tag, u8>;
type Write = (Tag, u8, Vec<Tag>);

impl Crdt for Reg {
    type Op = Write;
    type View = Vec<(Tag, u8)>;

    fn apply(&mut self, (tag, value, pred): &Self::Op) -> bool {
        self.write(*tag, *value, pred)
    }

    fn merge(&mut self, other: &Self) {
        self.join(other);
    }

    fn view(&self) -> Self::View {
        self.siblings().map(|(tag, value)| (tag, *value)).collect()
    }
}

/// Runs a script: each step syncs from another replica (one in four) or writes its argument,
/// replacing the siblings the writer sees, through `write` or through `delta_write`.
fn simulate(n: usize, steps: &[Step<u8>]) -> Result<(Vec<Reg>, Vec<Write>), TestCaseError> {
    let mut replicas = vec![Reg::new(); n];
    let mut ops = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let r = step.replica % n;
        let reg = &mut replicas[r];
        match step.kind % 4 {
            0 => {
                let source = replicas[usize::from(step.other) % n].clone();
                replicas[r].join(&source);
            }
            kind => {
                let t = tag(i, step.skew, r);
                let pred = reg.sibling_tags();
                if kind == 1 {
                    let delta = reg.delta_write(t, step.arg, &pred);
                    reg.join(&delta);
                } else {
                    prop_assert!(reg.write(t, step.arg, &pred));
                }
                // A local write replaces everything its writer saw.
                prop_assert_eq!(reg.view(), vec![(t, step.arg)]);
                prop_assert!(!reg.is_conflict());
                ops.push((t, step.arg, pred));
            }
        }
    }
    Ok((replicas, ops))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mv_join_laws((n, steps) in script(any::<u8>()), (sel, masks) in picks()) {
        let (replicas, ops) = simulate(n, &steps)?;
        let states = candidates(&replicas, &ops, &masks);
        check_join_laws(&pick(&states, sel[0]), &pick(&states, sel[1]), &pick(&states, sel[2]))?;
    }

    #[test]
    fn mv_any_op_order_keeps_exactly_the_unsuperseded_writes(
        (n, steps) in script(any::<u8>()),
        (keys, dups) in shuffle(),
        mask in any::<u64>(),
    ) {
        let (replicas, ops) = simulate(n, &steps)?;
        let state = check_op_order(&ops, &replicas, &keys, &dups)?;
        let superseded: BTreeSet<Tag> = ops.iter().flat_map(|(_, _, pred)| pred.clone()).collect();
        let mut expected: Vec<(Tag, u8)> = ops
            .iter()
            .filter(|(tag, _, _)| !superseded.contains(tag))
            .map(|(tag, value, _)| (*tag, *value))
            .collect();
        expected.sort_unstable();
        prop_assert_eq!(state.view(), expected.clone());
        prop_assert_eq!(state.sibling_tags(), expected.iter().map(|(t, _)| *t).collect::<Vec<_>>());
        prop_assert_eq!(state.is_conflict(), expected.len() > 1);
        prop_assert_eq!(state.lww_value().map(|(t, v)| (t, *v)), expected.last().copied());
        prop_assert_eq!(state.superseded().collect::<BTreeSet<_>>(), superseded);
        // Any subset of the writes, too: siblings are its writes no write of it superseded.
        let some = subset(&ops, mask);
        let partial = super::apply_all::<Reg>(&some)?;
        let gone: BTreeSet<Tag> = some.iter().flat_map(|(_, _, pred)| pred.clone()).collect();
        let mut expected: Vec<(Tag, u8)> = some
            .iter()
            .filter(|(tag, _, _)| !gone.contains(tag))
            .map(|(tag, value, _)| (*tag, *value))
            .collect();
        expected.sort_unstable();
        prop_assert_eq!(partial.view(), expected);
    }

    #[test]
    fn mv_delta_write_matches_write(
        (n, steps) in script(any::<u8>()),
        masks in any::<[u64; 2]>(),
        (sel, pred_mask, local) in (any::<u8>(), any::<u64>(), any::<bool>()),
        (step, skew, replica, value) in (0..50usize, 0..4u8, 0..5usize, any::<u8>()),
    ) {
        let (replicas, ops) = simulate(n, &steps)?;
        let state = pick(&candidates(&replicas, &ops, &masks), sel);
        let t = tag(step, skew, replica);
        let pred = if local {
            state.sibling_tags()
        } else {
            let tags: Vec<Tag> = ops.iter().map(|(tag, _, _)| *tag).collect();
            subset(&tags, pred_mask)
        };
        let mut written = state.clone();
        let changed = written.write(t, value, &pred);
        prop_assert_eq!(changed, written.view() != state.view());
        let mut joined = state.clone();
        joined.join(&state.delta_write(t, value, &pred));
        prop_assert_eq!(&joined, &written);
        for p in &pred {
            prop_assert!(written.is_superseded(*p));
        }
    }

    #[test]
    fn mv_writes_with_any_preds_commute(
        (n, steps) in script(any::<u8>()),
        (keys, dups) in shuffle(),
        masks in prop::collection::vec(any::<u64>(), 40),
    ) {
        // Writes as a faulty peer might send them: each replaces any tags, even its own.
        let (_, ops) = simulate(n, &steps)?;
        let tags: Vec<Tag> = ops.iter().map(|(tag, _, _)| *tag).collect();
        let ops: Vec<Write> = ops
            .iter()
            .zip(&masks)
            .map(|((tag, value, _), mask)| (*tag, *value, subset(&tags, *mask)))
            .collect();
        let all = super::apply_all::<Reg>(&ops)?;
        let state = check_op_order(&ops, &[all], &keys, &dups)?;
        let superseded: BTreeSet<Tag> = ops.iter().flat_map(|(_, _, pred)| pred.clone()).collect();
        let mut live: Vec<Tag> =
            tags.iter().copied().filter(|t| !superseded.contains(t)).collect();
        live.sort_unstable();
        prop_assert_eq!(state.sibling_tags(), live);
    }
}
