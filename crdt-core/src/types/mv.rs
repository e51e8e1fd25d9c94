//! Multi-value register.

use std::collections::{BTreeMap, BTreeSet};

/// A multi-value register: it keeps every write that no other write has replaced, so that
/// concurrent writes all survive as siblings until a later write replaces them.
///
/// Each write carries `pred`, the tags of the siblings its writer saw (for a local write,
/// [`sibling_tags`](Self::sibling_tags)); the write replaces exactly those. A write's own tag
/// can itself be replaced before the write arrives: its tag is then already in the superseded
/// set and the write stays hidden. So the state depends only on the set of writes applied, not
/// on their order or on duplicates.
///
/// Tags are unique per write (in weft a tag is the writing op's id): two writes with the same
/// tag are the same write and carry the same value.
///
/// The superseded set only grows: it is the tombstone set that makes late writes stay hidden.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "T: serde::Serialize, V: serde::Serialize",
    deserialize = "T: Ord + serde::Deserialize<'de>, V: serde::Deserialize<'de>"
))]
pub struct MvRegister<T, V> {
    /// Live writes: tag to value. Invariant: no key is in `superseded`.
    entries: BTreeMap<T, V>,
    /// Tags that some write has replaced.
    superseded: BTreeSet<T>,
}

impl<T, V> Default for MvRegister<T, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            superseded: BTreeSet::new(),
        }
    }
}

impl<T: Ord + Copy, V: Clone> MvRegister<T, V> {
    /// An empty register (no write seen yet).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a write, local or from the op log: `tag` writes `value` and replaces the
    /// siblings in `pred`.
    ///
    /// The `pred` tags are marked superseded (and dropped if live); the write itself is kept
    /// unless its tag was already superseded. Returns `true` if the siblings changed.
    pub fn write(&mut self, tag: T, value: V, pred: &[T]) -> bool {
        let mut changed = false;
        for p in pred {
            if self.superseded.insert(*p) {
                changed |= self.entries.remove(p).is_some();
            }
        }
        if !self.superseded.contains(&tag) && !self.entries.contains_key(&tag) {
            self.entries.insert(tag, value);
            changed = true;
        }
        changed
    }

    /// The delta of [`write`](Self::write): a register holding only this write.
    ///
    /// `state.join(&state.delta_write(tag, value, pred))` equals the state after
    /// `state.write(tag, value, pred)`.
    #[must_use]
    pub fn delta_write(&self, tag: T, value: V, pred: &[T]) -> Self {
        let mut delta = Self::new();
        delta.write(tag, value, pred);
        delta
    }

    /// The live writes (siblings) in ascending tag order.
    pub fn siblings(&self) -> impl Iterator<Item = (T, &V)> {
        self.entries.iter().map(|(tag, value)| (*tag, value))
    }

    /// The tags of the live writes in ascending order: what a local write passes as `pred`.
    #[must_use]
    pub fn sibling_tags(&self) -> Vec<T> {
        self.entries.keys().copied().collect()
    }

    /// The number of live writes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no live write (no write seen, or every write seen was replaced).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether concurrent writes are in conflict (more than one sibling).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        self.entries.len() > 1
    }

    /// The sibling with the highest tag: the last-writer-wins reading of the register.
    #[must_use]
    pub fn lww_value(&self) -> Option<(T, &V)> {
        self.entries
            .last_key_value()
            .map(|(tag, value)| (*tag, value))
    }

    /// Whether `tag` was replaced by some write seen so far.
    #[must_use]
    pub fn is_superseded(&self, tag: T) -> bool {
        self.superseded.contains(&tag)
    }

    /// The replaced tags in ascending order (the register's tombstones).
    pub fn superseded(&self) -> impl Iterator<Item = T> {
        self.superseded.iter().copied()
    }

    /// Joins `other` into `self`: the union of the live writes and of the superseded tags,
    /// minus the superseded writes.
    ///
    /// Idempotent, commutative and associative.
    pub fn join(&mut self, other: &Self) {
        for tag in &other.superseded {
            if self.superseded.insert(*tag) {
                self.entries.remove(tag);
            }
        }
        for (tag, value) in &other.entries {
            if !self.superseded.contains(tag) && !self.entries.contains_key(tag) {
                self.entries.insert(*tag, value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MvRegister;

    fn siblings(reg: &MvRegister<u64, char>) -> Vec<(u64, char)> {
        reg.siblings().map(|(t, v)| (t, *v)).collect()
    }

    #[test]
    fn concurrent_writes_are_siblings() {
        let mut reg = MvRegister::new();
        assert!(reg.write(1, 'a', &[]));
        assert!(reg.write(2, 'b', &[]));
        assert!(reg.is_conflict());
        assert_eq!(siblings(&reg), vec![(1, 'a'), (2, 'b')]);
        assert_eq!(reg.sibling_tags(), vec![1, 2]);
        assert_eq!(reg.lww_value(), Some((2, &'b')));
        assert_eq!(reg.len(), 2);
    }

    #[test]
    fn write_replaces_its_preds() {
        let mut reg = MvRegister::new();
        reg.write(1, 'a', &[]);
        reg.write(2, 'b', &[]);
        let pred = reg.sibling_tags();
        assert!(reg.write(3, 'c', &pred));
        assert!(!reg.is_conflict());
        assert_eq!(siblings(&reg), vec![(3, 'c')]);
        assert!(reg.is_superseded(1));
        assert_eq!(reg.superseded().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn late_write_stays_hidden() {
        let mut reg = MvRegister::new();
        // The write replacing 1 arrives before 1 itself.
        assert!(reg.write(2, 'b', &[1]));
        assert!(!reg.write(1, 'a', &[]));
        assert_eq!(siblings(&reg), vec![(2, 'b')]);
        let mut other = MvRegister::new();
        other.write(1, 'a', &[]);
        other.write(2, 'b', &[1]);
        assert_eq!(reg, other);
    }

    #[test]
    fn duplicate_write_changes_nothing() {
        let mut reg = MvRegister::new();
        assert!(reg.write(1, 'a', &[]));
        let before = reg.clone();
        assert!(!reg.write(1, 'a', &[]));
        assert_eq!(reg, before);
    }

    #[test]
    fn write_replacing_only_unknown_tags_reports_no_change_when_hidden() {
        let mut reg = MvRegister::new();
        reg.write(5, 'x', &[]);
        // A write whose own tag is in its pred is hidden; replacing unseen 4 changes nothing.
        assert!(!reg.write(6, 'y', &[4, 6]));
        assert_eq!(siblings(&reg), vec![(5, 'x')]);
    }

    #[test]
    fn join_and_delta() {
        let mut a = MvRegister::new();
        a.write(1, 'a', &[]);
        let mut b = MvRegister::new();
        b.write(2, 'b', &[]);
        let mut ab = a.clone();
        ab.join(&b);
        let mut ba = b.clone();
        ba.join(&a);
        assert_eq!(ab, ba);
        assert!(ab.is_conflict());
        let pred = ab.sibling_tags();
        let delta = ab.delta_write(3, 'c', &pred);
        let mut written = ab.clone();
        written.write(3, 'c', &pred);
        ab.join(&delta);
        assert_eq!(ab, written);
        // An older state joined later cannot resurrect replaced siblings.
        ab.join(&a);
        assert_eq!(siblings(&ab), vec![(3, 'c')]);
    }

    #[test]
    fn empty_register() {
        let reg: MvRegister<u64, char> = MvRegister::default();
        assert!(reg.is_empty());
        assert!(!reg.is_conflict());
        assert_eq!(reg.lww_value(), None);
        assert!(reg.sibling_tags().is_empty());
    }
}
