//! Last-writer-wins register.

/// A last-writer-wins register: of all the writes it has seen, it holds the one with the
/// highest tag.
///
/// Tags are unique per write (in weft a tag is the writing op's id), so two writes with the
/// same tag are the same write and carry the same value. Under that assumption [`join`] is a
/// semilattice join on the whole state, not only on the visible value.
///
/// [`join`]: LwwRegister::join
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LwwRegister<T, V> {
    /// The winning write so far, if any.
    winner: Option<(T, V)>,
}

impl<T, V> Default for LwwRegister<T, V> {
    fn default() -> Self {
        Self { winner: None }
    }
}

impl<T: Ord + Copy, V: Clone> LwwRegister<T, V> {
    /// An empty register (no write seen yet).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a write, local or from the op log.
    ///
    /// Returns `true` if the write became the winner. A write whose tag is lower than or equal
    /// to the current winner's does nothing and returns `false`.
    pub fn write(&mut self, tag: T, value: V) -> bool {
        match &self.winner {
            Some((current, _)) if *current >= tag => false,
            _ => {
                self.winner = Some((tag, value));
                true
            }
        }
    }

    /// The delta of [`write`](Self::write): a register holding only this write.
    ///
    /// `state.join(&state.delta_write(tag, value))` equals the state after
    /// `state.write(tag, value)`.
    #[must_use]
    pub fn delta_write(&self, tag: T, value: V) -> Self {
        Self {
            winner: Some((tag, value)),
        }
    }

    /// The winning value, if any write was seen.
    #[must_use]
    pub fn value(&self) -> Option<&V> {
        self.winner.as_ref().map(|(_, value)| value)
    }

    /// The winning write's tag, if any write was seen.
    #[must_use]
    pub fn tag(&self) -> Option<T> {
        self.winner.as_ref().map(|(tag, _)| *tag)
    }

    /// The winning write (tag and value), if any write was seen.
    #[must_use]
    pub fn winner(&self) -> Option<(T, &V)> {
        self.winner.as_ref().map(|(tag, value)| (*tag, value))
    }

    /// Whether no write was seen yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.winner.is_none()
    }

    /// Joins `other` into `self`: the higher-tagged winner of the two wins.
    ///
    /// Idempotent, commutative and associative.
    pub fn join(&mut self, other: &Self) {
        if let Some((tag, value)) = &other.winner {
            self.write(*tag, value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LwwRegister;

    #[test]
    fn empty_register_has_no_value() {
        let reg: LwwRegister<u64, &str> = LwwRegister::new();
        assert_eq!(reg.value(), None);
        assert_eq!(reg.tag(), None);
        assert_eq!(reg.winner(), None);
        assert!(reg.is_empty());
    }

    #[test]
    fn highest_tag_wins_in_any_order() {
        let mut a = LwwRegister::new();
        assert!(a.write(1u64, "one"));
        assert!(a.write(3, "three"));
        assert!(!a.write(2, "two"));
        let mut b = LwwRegister::new();
        assert!(b.write(2u64, "two"));
        assert!(b.write(3, "three"));
        assert!(!b.write(1, "one"));
        assert_eq!(a, b);
        assert_eq!(a.value(), Some(&"three"));
        assert_eq!(a.tag(), Some(3));
        assert_eq!(a.winner(), Some((3, &"three")));
    }

    #[test]
    fn equal_tag_does_nothing() {
        let mut reg = LwwRegister::new();
        assert!(reg.write(5u64, 'a'));
        assert!(!reg.write(5, 'a'));
        assert_eq!(reg.value(), Some(&'a'));
    }

    #[test]
    fn join_takes_the_higher_winner() {
        let mut a = LwwRegister::new();
        a.write((1u64, 0u64), 10);
        let mut b = LwwRegister::new();
        b.write((1, 1), 20);
        let mut ab = a.clone();
        ab.join(&b);
        let mut ba = b.clone();
        ba.join(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab.value(), Some(&20));
        let empty = LwwRegister::new();
        let mut c = a.clone();
        c.join(&empty);
        assert_eq!(c, a);
    }

    #[test]
    fn delta_write_matches_write() {
        let mut reg = LwwRegister::new();
        reg.write(4u64, "x");
        for (tag, value) in [(3, "low"), (4, "x"), (9, "high")] {
            let mut written = reg.clone();
            written.write(tag, value);
            let mut joined = reg.clone();
            joined.join(&reg.delta_write(tag, value));
            assert_eq!(written, joined);
        }
    }
}
