//! Properties of `LwwRegister`.

use super::{
    Crdt, Step, Tag, candidates, check_join_laws, check_op_order, config, pick, picks, script,
    shuffle, tag,
};
use crate::types::LwwRegister;
use proptest::prelude::*;

type Reg = LwwRegister<Tag, u8>;

impl Crdt for Reg {
    type Op = (Tag, u8);
    type View = Option<(Tag, u8)>;

    fn apply(&mut self, (tag, value): &Self::Op) -> bool {
        self.write(*tag, *value)
    }

    fn merge(&mut self, other: &Self) {
        self.join(other);
    }

    fn view(&self) -> Self::View {
        self.winner().map(|(tag, value)| (tag, *value))
    }
}

/// Runs a script: each step writes its argument or (one in four) syncs from another replica.
fn simulate(n: usize, steps: &[Step<u8>]) -> (Vec<Reg>, Vec<(Tag, u8)>) {
    let mut replicas = vec![Reg::new(); n];
    let mut ops = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let r = step.replica % n;
        if step.kind % 4 == 0 {
            let source = replicas[usize::from(step.other) % n].clone();
            replicas[r].join(&source);
        } else {
            let t = tag(i, step.skew, r);
            replicas[r].write(t, step.arg);
            ops.push((t, step.arg));
        }
    }
    (replicas, ops)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lww_join_laws((n, steps) in script(any::<u8>()), (sel, masks) in picks()) {
        let (replicas, ops) = simulate(n, &steps);
        let states = candidates(&replicas, &ops, &masks);
        check_join_laws(&pick(&states, sel[0]), &pick(&states, sel[1]), &pick(&states, sel[2]))?;
    }

    #[test]
    fn lww_any_op_order_gives_the_max_tag(
        (n, steps) in script(any::<u8>()),
        (keys, dups) in shuffle(),
    ) {
        let (replicas, ops) = simulate(n, &steps);
        let state = check_op_order(&ops, &replicas, &keys, &dups)?;
        let max = ops.iter().copied().max_by_key(|(tag, _)| *tag);
        prop_assert_eq!(state.view(), max);
        prop_assert_eq!(state.tag(), max.map(|(tag, _)| tag));
        prop_assert_eq!(state.value().copied(), max.map(|(_, value)| value));
    }

    #[test]
    fn lww_delta_write_matches_write(
        (n, steps) in script(any::<u8>()),
        masks in any::<[u64; 2]>(),
        sel in any::<u8>(),
        (step, skew, replica, value) in (0..50usize, 0..4u8, 0..5usize, any::<u8>()),
    ) {
        let (replicas, ops) = simulate(n, &steps);
        let state = pick(&candidates(&replicas, &ops, &masks), sel);
        // Tags from a range that overlaps the script's, so equal and lower tags occur.
        let t = tag(step, skew, replica);
        let mut written = state.clone();
        let won = written.write(t, value);
        let mut joined = state.clone();
        joined.join(&state.delta_write(t, value));
        prop_assert_eq!(&joined, &written);
        prop_assert_eq!(won, state.tag().is_none_or(|current| current < t));
        if won {
            prop_assert_eq!(written.winner(), Some((t, &value)));
        } else {
            prop_assert_eq!(&written, &state);
        }
    }
}
