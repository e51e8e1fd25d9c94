//! Positive-negative counter with cumulative per-replica totals and a reset baseline.

use std::collections::BTreeMap;

/// A pair of cumulative totals: (positive, negative).
type Pair = (u64, u64);

/// A positive-negative counter whose ops carry cumulative per-replica totals.
///
/// Each replica counts its own increments in two grow-only totals, one per sign, and each op
/// carries the replica's new totals rather than the step. Joining takes the pointwise maximum,
/// so ops can arrive with gaps, out of order or twice: the latest totals of each replica win.
///
/// Deleting the record that holds a counter is a reset: it records the totals it observed as a
/// baseline (also joined by pointwise maximum), and [`value`](Self::value) counts, per replica
/// and sign, only what lies above the baseline. Increments concurrent with the reset were not
/// observed by it and still count, so a reset never loses a concurrent increment.
///
/// Totals saturate at `u64::MAX` per replica and sign; increments past that are lost.
/// The state keeps no all-zero entries, so equal counters compare equal with `==`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "R: serde::Serialize",
    deserialize = "R: Ord + serde::Deserialize<'de>"
))]
pub struct PnCounter<R> {
    /// Latest cumulative totals per replica. Invariant: no `(0, 0)` value.
    totals: BTreeMap<R, Pair>,
    /// Reset baseline per replica. Invariant: no `(0, 0)` value.
    baseline: BTreeMap<R, Pair>,
}

impl<R> Default for PnCounter<R> {
    fn default() -> Self {
        Self {
            totals: BTreeMap::new(),
            baseline: BTreeMap::new(),
        }
    }
}

/// What one replica adds to the value: its totals above its baseline, per sign.
fn contribution(total: Pair, base: Pair) -> i128 {
    i128::from(total.0.saturating_sub(base.0)) - i128::from(total.1.saturating_sub(base.1))
}

/// Raises `map[key]` to the pointwise maximum with `pair`; returns the old and new pairs.
fn raise<R: Ord>(map: &mut BTreeMap<R, Pair>, key: R, pair: Pair) -> (Pair, Pair) {
    let old = map.get(&key).copied().unwrap_or((0, 0));
    let new = (old.0.max(pair.0), old.1.max(pair.1));
    if new != old {
        map.insert(key, new);
    }
    (old, new)
}

impl<R: Ord + Copy> PnCounter<R> {
    /// A counter at zero with no increments.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a local increment of `by` (negative to decrement) by `replica`.
    ///
    /// Returns the replica's new totals `(positive, negative)`: what the op carries. The totals
    /// saturate at `u64::MAX`; `i64::MIN` counts as a negative step of `2^63`.
    pub fn increment(&mut self, replica: R, by: i64) -> (u64, u64) {
        let new = Self::stepped(self.totals(replica), by);
        raise(&mut self.totals, replica, new);
        new
    }

    /// The delta of [`increment`](Self::increment): a counter holding only the replica's new
    /// totals.
    ///
    /// `state.join(&state.delta_increment(replica, by))` equals the state after
    /// `state.increment(replica, by)`.
    #[must_use]
    pub fn delta_increment(&self, replica: R, by: i64) -> Self {
        let mut delta = Self::new();
        raise(
            &mut delta.totals,
            replica,
            Self::stepped(self.totals(replica), by),
        );
        delta
    }

    /// The totals after a step of `by` from `(positive, negative)`.
    fn stepped((positive, negative): Pair, by: i64) -> Pair {
        if by >= 0 {
            (positive.saturating_add(by.unsigned_abs()), negative)
        } else {
            (positive, negative.saturating_add(by.unsigned_abs()))
        }
    }

    /// Applies an increment op from the op log: raises the replica's totals to at least
    /// `(positive, negative)` (pointwise maximum).
    ///
    /// Returns `true` if [`value`](Self::value) changed. The totals may still have grown when
    /// it returns `false` (for example while they are under the reset baseline).
    pub fn apply_totals(&mut self, replica: R, positive: u64, negative: u64) -> bool {
        let base = self.baseline(replica);
        let (old, new) = raise(&mut self.totals, replica, (positive, negative));
        contribution(old, base) != contribution(new, base)
    }

    /// Applies a local reset: the baseline rises to the current totals, so the value becomes 0
    /// while increments this replica has not seen yet will still count.
    ///
    /// Returns `true` if [`value`](Self::value) changed.
    pub fn reset(&mut self) -> bool {
        let before = self.value();
        for (replica, total) in &self.totals {
            raise(&mut self.baseline, *replica, *total);
        }
        before != 0
    }

    /// The delta of [`reset`](Self::reset): a counter whose baseline is the current totals.
    ///
    /// `state.join(&state.reset_delta())` equals the state after `state.reset()`. The op log
    /// form of the reset is one [`apply_baseline`](Self::apply_baseline) per entry of
    /// [`all_baselines`](Self::all_baselines) of this delta.
    #[must_use]
    pub fn reset_delta(&self) -> Self {
        Self {
            totals: BTreeMap::new(),
            baseline: self.totals.clone(),
        }
    }

    /// Applies a reset op's entry from the op log: raises the replica's baseline to at least
    /// `(positive, negative)` (pointwise maximum).
    ///
    /// Returns `true` if [`value`](Self::value) changed.
    pub fn apply_baseline(&mut self, replica: R, positive: u64, negative: u64) -> bool {
        let total = self.totals(replica);
        let (old, new) = raise(&mut self.baseline, replica, (positive, negative));
        contribution(total, old) != contribution(total, new)
    }

    /// The counter's value: per replica and sign, the total above the baseline; positives
    /// minus negatives. An `i128`, so it never overflows.
    #[must_use]
    pub fn value(&self) -> i128 {
        self.totals
            .iter()
            .map(|(replica, total)| contribution(*total, self.baseline(*replica)))
            .fold(0, i128::saturating_add)
    }

    /// The replica's cumulative totals `(positive, negative)`; `(0, 0)` if none seen.
    #[must_use]
    pub fn totals(&self, replica: R) -> (u64, u64) {
        self.totals.get(&replica).copied().unwrap_or((0, 0))
    }

    /// The replica's reset baseline `(positive, negative)`; `(0, 0)` if no reset covers it.
    #[must_use]
    pub fn baseline(&self, replica: R) -> (u64, u64) {
        self.baseline.get(&replica).copied().unwrap_or((0, 0))
    }

    /// All non-zero totals, by ascending replica.
    pub fn all_totals(&self) -> impl Iterator<Item = (R, (u64, u64))> {
        self.totals
            .iter()
            .map(|(replica, total)| (*replica, *total))
    }

    /// All non-zero baselines, by ascending replica.
    pub fn all_baselines(&self) -> impl Iterator<Item = (R, (u64, u64))> {
        self.baseline
            .iter()
            .map(|(replica, base)| (*replica, *base))
    }

    /// Joins `other` into `self`: pointwise maximum of the totals and of the baselines.
    ///
    /// Idempotent, commutative and associative.
    pub fn join(&mut self, other: &Self) {
        for (replica, total) in &other.totals {
            raise(&mut self.totals, *replica, *total);
        }
        for (replica, base) in &other.baseline {
            raise(&mut self.baseline, *replica, *base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PnCounter;

    #[test]
    fn increments_and_decrements() {
        let mut c = PnCounter::new();
        assert_eq!(c.increment('a', 5), (5, 0));
        assert_eq!(c.increment('a', -2), (5, 2));
        assert_eq!(c.increment('b', 7), (7, 0));
        assert_eq!(c.value(), 10);
        assert_eq!(c.totals('a'), (5, 2));
        assert_eq!(c.totals('z'), (0, 0));
    }

    #[test]
    fn extreme_steps_saturate() {
        let mut c = PnCounter::new();
        assert_eq!(c.increment(0u8, i64::MIN), (0, 1 << 63));
        assert_eq!(c.value(), -(1i128 << 63));
        c.increment(0, i64::MIN);
        c.increment(0, i64::MIN);
        assert_eq!(c.totals(0), (0, u64::MAX));
        c.increment(1, i64::MAX);
        c.increment(1, i64::MAX);
        c.increment(1, i64::MAX);
        assert_eq!(c.totals(1), (u64::MAX, 0));
        assert_eq!(c.value(), 0);
        c.increment(2, i64::MIN);
        assert_eq!(c.value(), -(1i128 << 63));
    }

    #[test]
    fn zero_step_keeps_state_empty() {
        let mut c = PnCounter::new();
        assert_eq!(c.increment(3u8, 0), (0, 0));
        assert_eq!(c, PnCounter::new());
        assert!(!c.apply_totals(3, 0, 0));
        assert!(!c.apply_baseline(3, 0, 0));
        assert_eq!(c, PnCounter::new());
    }

    #[test]
    fn totals_tolerate_gaps_reordering_and_duplicates() {
        let mut c = PnCounter::new();
        assert!(c.apply_totals('a', 3, 1));
        assert!(!c.apply_totals('a', 2, 0));
        assert!(!c.apply_totals('a', 3, 1));
        assert!(c.apply_totals('a', 9, 1));
        assert_eq!(c.value(), 8);
    }

    #[test]
    fn reset_keeps_concurrent_increments() {
        let mut a = PnCounter::new();
        a.increment('a', 4);
        let mut b = a.clone();
        // `a` resets while `b` concurrently increments.
        assert!(a.reset());
        assert_eq!(a.value(), 0);
        assert!(!a.reset());
        b.increment('a', 3);
        b.increment('b', -1);
        a.join(&b);
        assert_eq!(a.value(), 2);
        let mut c = b.clone();
        c.join(&a.reset_delta());
        assert_eq!(c.value(), 0);
    }

    #[test]
    fn baseline_can_arrive_before_totals() {
        let mut c = PnCounter::new();
        assert!(!c.apply_baseline('a', 5, 2));
        assert!(!c.apply_totals('a', 5, 2));
        assert_eq!(c.value(), 0);
        assert!(c.apply_totals('a', 6, 2));
        assert_eq!(c.value(), 1);
        assert!(c.apply_baseline('a', 6, 0));
        assert_eq!(c.value(), 0);
        assert_eq!(c.baseline('a'), (6, 2));
    }

    #[test]
    fn deltas_match_mutators() {
        let mut c = PnCounter::new();
        c.increment(1u8, 3);
        c.increment(2, -8);
        let mut inc = c.clone();
        inc.increment(1, -4);
        let mut joined = c.clone();
        joined.join(&c.delta_increment(1, -4));
        assert_eq!(inc, joined);
        let mut reset = c.clone();
        reset.reset();
        let mut joined = c.clone();
        joined.join(&c.reset_delta());
        assert_eq!(reset, joined);
        assert_eq!(
            reset.all_baselines().collect::<Vec<_>>(),
            c.all_totals().collect::<Vec<_>>()
        );
    }
}
