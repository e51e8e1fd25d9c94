//! Add-wins observed-remove set.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

/// An add-wins observed-remove set.
///
/// Every add carries a unique tag. A remove carries the tags of the adds of that element it
/// observed, and removes exactly those. An element is present while it has an add whose tag was
/// not removed, so an add concurrent with a remove (its tag unseen by the remove) wins.
///
/// Removed tags are kept forever as tombstones, so an add arriving after the remove that names
/// it stays hidden; the state depends only on the set of ops applied, not on their order or on
/// duplicates. The adds map is kept compact: it holds only live tags, and an element with none
/// is dropped from it, so equal sets compare equal with `==`.
///
/// Tags are unique per add (in weft a tag is the adding op's id), so a tag names exactly one
/// element.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(bound(
    serialize = "T: serde::Serialize, E: serde::Serialize",
    deserialize = "T: Ord + serde::Deserialize<'de>, E: Ord + serde::Deserialize<'de>"
))]
pub struct AwSet<T, E> {
    /// Element to the tags of its live adds. Invariant: no tag in `removed`, no empty set.
    adds: BTreeMap<E, BTreeSet<T>>,
    /// Tags of removed adds.
    removed: BTreeSet<T>,
}

impl<T, E> Default for AwSet<T, E> {
    fn default() -> Self {
        Self {
            adds: BTreeMap::new(),
            removed: BTreeSet::new(),
        }
    }
}

impl<T: Ord + Copy, E: Ord + Clone> AwSet<T, E> {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies an add, local or from the op log: `tag` adds `elem`.
    ///
    /// An add whose tag was already removed stays hidden. Returns `true` if `elem` was absent
    /// and is now present (a further add of a present element records its tag and returns
    /// `false`).
    pub fn add(&mut self, tag: T, elem: E) -> bool {
        if self.removed.contains(&tag) {
            return false;
        }
        match self.adds.get_mut(&elem) {
            Some(tags) => {
                tags.insert(tag);
                false
            }
            None => {
                self.adds.insert(elem, BTreeSet::from([tag]));
                true
            }
        }
    }

    /// The delta of [`add`](Self::add): a set holding only this add.
    ///
    /// `state.join(&state.delta_add(tag, elem))` equals the state after
    /// `state.add(tag, elem)`.
    #[must_use]
    pub fn delta_add(&self, tag: T, elem: E) -> Self {
        let mut delta = Self::new();
        delta.add(tag, elem);
        delta
    }

    /// Applies a local remove of `elem`: removes the adds of it observed here.
    ///
    /// Returns the removed tags in ascending order (what the op carries); empty if `elem` is
    /// absent.
    pub fn remove<Q>(&mut self, elem: &Q) -> Vec<T>
    where
        E: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.adds.remove(elem) {
            Some(tags) => {
                self.removed.extend(tags.iter().copied());
                tags.into_iter().collect()
            }
            None => Vec::new(),
        }
    }

    /// The delta of [`remove`](Self::remove): a set whose removed tags are the live tags of
    /// `elem` here.
    ///
    /// `state.join(&state.delta_remove(elem))` equals the state after `state.remove(elem)`.
    #[must_use]
    pub fn delta_remove<Q>(&self, elem: &Q) -> Self
    where
        E: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        Self {
            adds: BTreeMap::new(),
            removed: self.adds.get(elem).cloned().unwrap_or_default(),
        }
    }

    /// Applies a remove op from the op log: `tags` are the add tags of `elem` the remover
    /// observed.
    ///
    /// The tags are recorded as removed even if their adds have not arrived yet; those adds
    /// then stay hidden when they arrive. Returns `true` if the set's membership changed.
    ///
    /// Normally `O(k log n)` for `k` tags. A tag not found among `elem`'s adds (its add has not
    /// arrived, or the op names another element's add) costs a scan of all live tags, so that
    /// the state still depends only on the ops applied.
    pub fn apply_remove<Q>(&mut self, elem: &Q, tags: &[T]) -> bool
    where
        E: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let mut missing: BTreeSet<T> = tags
            .iter()
            .copied()
            .filter(|tag| self.removed.insert(*tag))
            .collect();
        if missing.is_empty() {
            return false;
        }
        let mut changed = false;
        if let Some(live) = self.adds.get_mut(elem) {
            missing.retain(|tag| !live.remove(tag));
            if live.is_empty() {
                self.adds.remove(elem);
                changed = true;
            }
        }
        if !missing.is_empty() {
            changed |= self.purge(&missing);
        }
        changed
    }

    /// Drops the tags in `gone` from every element; returns whether an element disappeared.
    fn purge(&mut self, gone: &BTreeSet<T>) -> bool {
        let before = self.adds.len();
        self.adds.retain(|_, live| {
            live.retain(|tag| !gone.contains(tag));
            !live.is_empty()
        });
        self.adds.len() != before
    }

    /// Whether `elem` is present.
    #[must_use]
    pub fn contains<Q>(&self, elem: &Q) -> bool
    where
        E: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.adds.contains_key(elem)
    }

    /// The present elements in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.adds.keys()
    }

    /// The number of present elements.
    #[must_use]
    pub fn len(&self) -> usize {
        self.adds.len()
    }

    /// Whether no element is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty()
    }

    /// The tags of the live adds of `elem` in ascending order: what removing it here would
    /// remove. Empty if `elem` is absent.
    #[must_use]
    pub fn live_tags<Q>(&self, elem: &Q) -> Vec<T>
    where
        E: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.adds
            .get(elem)
            .map(|tags| tags.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The removed tags in ascending order (the set's tombstones).
    pub fn removed_tags(&self) -> impl Iterator<Item = T> {
        self.removed.iter().copied()
    }

    /// Joins `other` into `self`: the union of the adds and of the removed tags, minus the
    /// removed adds.
    ///
    /// Idempotent, commutative and associative. Costs a pass over `self`'s live tags when
    /// `other` removes tags `self` had not seen removed.
    pub fn join(&mut self, other: &Self) {
        let gone: BTreeSet<T> = other.removed.difference(&self.removed).copied().collect();
        if !gone.is_empty() {
            self.removed.extend(gone.iter().copied());
            self.purge(&gone);
        }
        for (elem, tags) in &other.adds {
            let live = tags.iter().filter(|tag| !self.removed.contains(tag));
            match self.adds.get_mut(elem) {
                Some(mine) => mine.extend(live),
                None => {
                    let live: BTreeSet<T> = live.copied().collect();
                    if !live.is_empty() {
                        self.adds.insert(elem.clone(), live);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AwSet;

    fn elems(set: &AwSet<u64, &'static str>) -> Vec<&'static str> {
        set.iter().copied().collect()
    }

    #[test]
    fn add_and_remove() {
        let mut s = AwSet::new();
        assert!(s.add(1, "x"));
        assert!(!s.add(2, "x"));
        assert!(s.add(3, "y"));
        assert_eq!(elems(&s), vec!["x", "y"]);
        assert_eq!(s.len(), 2);
        assert_eq!(s.live_tags("x"), vec![1, 2]);
        assert_eq!(s.remove("x"), vec![1, 2]);
        assert!(!s.contains("x"));
        assert!(s.remove("x").is_empty());
        assert_eq!(s.removed_tags().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(elems(&s), vec!["y"]);
    }

    #[test]
    fn concurrent_add_wins() {
        let mut a = AwSet::new();
        a.add(1, "x");
        let mut b = a.clone();
        let removed = a.remove("x");
        b.add(2, "x");
        let mut ab = a.clone();
        ab.join(&b);
        let mut ba = b.clone();
        ba.join(&a);
        assert_eq!(ab, ba);
        assert!(ab.contains("x"));
        // The same through the op log.
        assert!(!b.apply_remove("x", &removed));
        assert!(b.contains("x"));
        assert_eq!(b, ab);
    }

    #[test]
    fn remove_before_add_hides_the_add() {
        let mut s = AwSet::new();
        assert!(!s.apply_remove("x", &[1]));
        assert!(!s.add(1, "x"));
        assert!(s.is_empty());
        assert!(s.add(2, "x"));
        let mut t = AwSet::new();
        t.add(1, "x");
        t.add(2, "x");
        t.apply_remove("x", &[1]);
        assert_eq!(s, t);
    }

    #[test]
    fn remove_naming_another_elements_tag_converges() {
        let mut s = AwSet::new();
        s.add(1, "x");
        assert!(s.apply_remove("y", &[1]));
        let mut t = AwSet::new();
        t.apply_remove("y", &[1]);
        t.add(1, "x");
        assert_eq!(s, t);
        assert!(s.is_empty());
    }

    #[test]
    fn deltas_match_mutators() {
        let mut s = AwSet::new();
        s.add(1, "x");
        s.add(2, "y");
        s.remove("y");
        let mut added = s.clone();
        added.add(3, "y");
        let mut joined = s.clone();
        joined.join(&s.delta_add(3, "y"));
        assert_eq!(added, joined);
        let mut removed = s.clone();
        removed.remove("x");
        let mut joined = s.clone();
        joined.join(&s.delta_remove("x"));
        assert_eq!(removed, joined);
        let mut joined = s.clone();
        joined.join(&s.delta_remove("absent"));
        assert_eq!(joined, s);
    }
}
