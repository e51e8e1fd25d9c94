//! Properties of `PnCounter`.

use super::{
    Crdt, Step, candidates, check_join_laws, check_op_order, config, pick, picks, script, shuffle,
};
use crate::types::PnCounter;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type Counter = PnCounter<u64>;

/// A counter op as the op log holds it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Op {
    /// An increment: the replica's new cumulative totals.
    Totals(u64, u64, u64),
    /// One replica's entry of a reset: its baseline.
    Baseline(u64, u64, u64),
}

impl Crdt for Counter {
    type Op = Op;
    type View = i128;

    fn apply(&mut self, op: &Op) -> bool {
        match *op {
            Op::Totals(replica, p, n) => self.apply_totals(replica, p, n),
            Op::Baseline(replica, p, n) => self.apply_baseline(replica, p, n),
        }
    }

    fn merge(&mut self, other: &Self) {
        self.join(other);
    }

    fn view(&self) -> i128 {
        self.value()
    }
}

/// Mostly small steps, sometimes extreme ones (which saturate).
fn step_size() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -1000..1000i64,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

/// The simulation's outcome.
struct Sim {
    replicas: Vec<Counter>,
    ops: Vec<Op>,
    /// Each replica's own steps, in order.
    steps: Vec<Vec<i64>>,
    /// For each reset, how many steps of each replica it observed.
    resets: Vec<Vec<usize>>,
}

/// Runs a script: each step syncs from another replica (kind 0), resets (kind 1), or
/// increments by its argument through `increment` or `delta_increment`.
fn simulate(n: usize, script: &[Step<i64>]) -> Result<Sim, TestCaseError> {
    let mut replicas = vec![Counter::new(); n];
    // seen[i][r]: how many of r's steps replica i has seen.
    let mut seen = vec![vec![0usize; n]; n];
    let mut sim = Sim {
        replicas: Vec::new(),
        ops: Vec::new(),
        steps: vec![Vec::new(); n],
        resets: Vec::new(),
    };
    for step in script {
        let r = step.replica % n;
        let id = r as u64;
        match step.kind % 6 {
            0 => {
                let o = usize::from(step.other) % n;
                let source = replicas[o].clone();
                replicas[r].join(&source);
                let other_seen = seen[o].clone();
                for (mine, theirs) in seen[r].iter_mut().zip(other_seen) {
                    *mine = (*mine).max(theirs);
                }
            }
            1 => {
                let delta = replicas[r].reset_delta();
                sim.ops.extend(
                    delta
                        .all_baselines()
                        .map(|(replica, (p, n))| Op::Baseline(replica, p, n)),
                );
                replicas[r].reset();
                prop_assert_eq!(replicas[r].value(), 0);
                sim.resets.push(seen[r].clone());
            }
            kind => {
                let (p, n) = if kind == 2 {
                    let delta = replicas[r].delta_increment(id, step.arg);
                    replicas[r].join(&delta);
                    replicas[r].totals(id)
                } else {
                    replicas[r].increment(id, step.arg)
                };
                sim.ops.push(Op::Totals(id, p, n));
                sim.steps[r].push(step.arg);
                seen[r][r] += 1;
            }
        }
    }
    sim.replicas = replicas;
    Ok(sim)
}

/// The replica's (positive, negative) totals after its first `count` steps, saturated.
fn totals_after(steps: &[i64], count: usize) -> (u128, u128) {
    let (p, n) = steps.iter().take(count).fold((0u128, 0u128), |(p, n), by| {
        if *by >= 0 {
            (p + u128::from(by.unsigned_abs()), n)
        } else {
            (p, n + u128::from(by.unsigned_abs()))
        }
    });
    let max = u128::from(u64::MAX);
    (p.min(max), n.min(max))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn counter_join_laws((n, steps) in script(step_size()), (sel, masks) in picks()) {
        let sim = simulate(n, &steps)?;
        let states = candidates(&sim.replicas, &sim.ops, &masks);
        check_join_laws(&pick(&states, sel[0]), &pick(&states, sel[1]), &pick(&states, sel[2]))?;
    }

    #[test]
    fn counter_any_op_order_counts_the_steps_no_reset_saw(
        (n, steps) in script(step_size()),
        (keys, dups) in shuffle(),
    ) {
        let sim = simulate(n, &steps)?;
        let state = check_op_order(&sim.ops, &sim.replicas, &keys, &dups)?;
        let mut expected = 0i128;
        for (r, own) in sim.steps.iter().enumerate() {
            let observed = sim.resets.iter().map(|seen| seen[r]).max().unwrap_or(0);
            let (p, n) = totals_after(own, own.len());
            let (bp, bn) = totals_after(own, observed);
            expected += (p - bp) as i128 - (n - bn) as i128;
            prop_assert_eq!(state.totals(r as u64), (p as u64, n as u64));
        }
        prop_assert_eq!(state.value(), expected);
        if sim.resets.is_empty() && sim.steps.iter().flatten().all(|by| by.unsigned_abs() <= 1000) {
            let sum: i128 = sim.steps.iter().flatten().map(|by| i128::from(*by)).sum();
            prop_assert_eq!(state.value(), sum);
        }
    }

    #[test]
    fn counter_deltas_and_ops_match_mutators(
        (n, steps) in script(step_size()),
        masks in any::<[u64; 2]>(),
        (sel, replica, by) in (any::<u8>(), 0..5u64, step_size()),
    ) {
        let sim = simulate(n, &steps)?;
        let state = pick(&candidates(&sim.replicas, &sim.ops, &masks), sel);

        let mut incremented = state.clone();
        let (p, n) = incremented.increment(replica, by);
        prop_assert_eq!(incremented.totals(replica), (p, n));
        let mut joined = state.clone();
        joined.join(&state.delta_increment(replica, by));
        prop_assert_eq!(&joined, &incremented);
        let mut applied = state.clone();
        let changed = applied.apply_totals(replica, p, n);
        prop_assert_eq!(&applied, &incremented);
        prop_assert_eq!(changed, incremented.value() != state.value());
        let (op, on) = state.totals(replica);
        let (bp, bn) = state.baseline(replica);
        let unsaturated = p < u64::MAX && n < u64::MAX;
        if op >= bp && on >= bn && unsaturated {
            prop_assert_eq!(incremented.value(), state.value() + i128::from(by));
        }

        let mut reset = state.clone();
        let changed = reset.reset();
        prop_assert_eq!(reset.value(), 0);
        prop_assert_eq!(changed, state.value() != 0);
        let delta = state.reset_delta();
        let mut joined = state.clone();
        joined.join(&delta);
        prop_assert_eq!(&joined, &reset);
        let mut applied = state.clone();
        for (replica, (p, n)) in delta.all_baselines() {
            applied.apply_baseline(replica, p, n);
        }
        prop_assert_eq!(&applied, &reset);
    }
}
