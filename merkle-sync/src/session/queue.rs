//! The ids a session has yet to send, in id order.

use std::collections::BTreeSet;
use std::iter::Peekable;

use crdt_core::OpId;

use crate::trie::Key;

/// The ids queued for sending, each once, read in ascending order.
///
/// Two parts: a sorted run of keys with a cursor, for the push of everything above the peer's
/// frontier (which can be the whole log: kept as the index listed it, it costs no tree of a
/// million nodes to build, walk and cut), and a set of single ids for the rest (what the peer
/// asks for, what a sketch or a descent finds it lacks). An id may be in both; it is read
/// once.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// Ascending, without repeats; `run[next..]` is still queued.
    run: Vec<Key>,
    next: usize,
    ids: BTreeSet<OpId>,
}

impl Outgoing {
    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.next == self.run.len() && self.ids.is_empty()
    }

    /// Drops everything queued.
    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Queues `id`.
    pub(super) fn insert(&mut self, id: OpId) {
        self.ids.insert(id);
    }

    /// Queues every id of `ids`.
    pub(super) fn extend(&mut self, ids: impl IntoIterator<Item = OpId>) {
        self.ids.extend(ids);
    }

    /// Queues `keys` (the bytes of op ids, ascending, without repeats) as a run. While an
    /// earlier run is still queued, the two are merged, in one pass.
    pub(super) fn push_run(&mut self, keys: Vec<Key>) {
        debug_assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "a run is ascending, without repeats"
        );
        if keys.is_empty() {
            return; // a Hello that finds nothing to push: the pending run stays as it is
        }
        let old = &self.run[self.next..];
        if old.is_empty() {
            self.run = keys;
        } else {
            let mut merged = Vec::with_capacity(old.len() + keys.len());
            let (mut a, mut b) = (old.iter().peekable(), keys.iter().peekable());
            while let (Some(&&x), Some(&&y)) = (a.peek(), b.peek()) {
                if x <= y {
                    merged.push(x);
                    a.next();
                    if x == y {
                        b.next();
                    }
                } else {
                    merged.push(y);
                    b.next();
                }
            }
            merged.extend(a.chain(b));
            self.run = merged;
        }
        self.next = 0;
    }

    /// The queued ids, ascending, each once.
    pub(super) fn iter(&self) -> Iter<'_> {
        Iter {
            run: self.run[self.next..].iter().peekable(),
            ids: self.ids.iter().peekable(),
        }
    }

    /// Drops every queued id below `id`.
    pub(super) fn drop_below(&mut self, id: OpId) {
        let key = id.to_bytes();
        self.next += self.run[self.next..].partition_point(|k| *k < key);
        if self.next == self.run.len() {
            // A push of the whole log is a large buffer; it goes once it is sent.
            self.run = Vec::new();
            self.next = 0;
        }
        self.ids = self.ids.split_off(&id);
    }
}

/// [`Outgoing::iter`]: the run and the set, merged.
pub(super) struct Iter<'a> {
    run: Peekable<std::slice::Iter<'a, Key>>,
    ids: Peekable<std::collections::btree_set::Iter<'a, OpId>>,
}

impl Iterator for Iter<'_> {
    type Item = OpId;

    fn next(&mut self) -> Option<OpId> {
        let from_run = self.run.peek().map(|k| OpId::from_bytes(**k));
        match (from_run, self.ids.peek().copied()) {
            (Some(a), Some(&b)) if b < a => {
                self.ids.next();
                Some(b)
            }
            (Some(a), b) => {
                self.run.next();
                if b == Some(&a) {
                    self.ids.next();
                }
                Some(a)
            }
            (None, b) => {
                self.ids.next();
                b.copied()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crdt_core::ReplicaId;
    use hlc::Timestamp;

    fn id(n: u64) -> OpId {
        // Few replicas and close timestamps, so that runs and sets share ids.
        OpId::new(Timestamp::from_u64(1 + n / 3), ReplicaId::new(1 + n % 3))
    }

    /// Random runs, single ids, cuts and clears, against a set of what is queued.
    #[test]
    fn reads_as_the_set_of_what_was_queued_and_not_dropped() {
        for seed in 0..2_000u64 {
            let mut next = crate::test_rng::draws(seed);
            let space = 1 + next(300);
            let mut queue = Outgoing::default();
            let mut model = BTreeSet::new();
            for _ in 0..1 + next(12) {
                match next(5) {
                    0 | 1 => {
                        let mut run: Vec<OpId> = (0..next(80)).map(|_| id(next(space))).collect();
                        run.sort();
                        run.dedup();
                        model.extend(run.iter().copied());
                        queue.push_run(run.into_iter().map(OpId::to_bytes).collect());
                    }
                    2 => {
                        let ids: Vec<OpId> = (0..next(20)).map(|_| id(next(space))).collect();
                        model.extend(ids.iter().copied());
                        if next(2) == 0 {
                            queue.extend(ids);
                        } else {
                            ids.into_iter().for_each(|i| queue.insert(i));
                        }
                    }
                    3 => {
                        let cut = id(next(space + 5));
                        model = model.split_off(&cut);
                        queue.drop_below(cut);
                    }
                    _ if next(4) == 0 => {
                        model.clear();
                        queue.clear();
                    }
                    _ => {}
                }
                let got: Vec<OpId> = queue.iter().collect();
                let want: Vec<OpId> = model.iter().copied().collect();
                assert_eq!(got, want, "seed {seed}");
                assert_eq!(queue.is_empty(), model.is_empty(), "seed {seed}");
            }
        }
    }

    #[test]
    fn a_sent_run_lets_its_buffer_go() {
        let mut queue = Outgoing::default();
        queue.push_run((0..1000).map(|n| id(n).to_bytes()).collect());
        queue.insert(id(5000));
        queue.drop_below(id(500));
        assert_eq!(queue.iter().next(), Some(id(500)));
        queue.drop_below(id(4000));
        assert_eq!(queue.run.capacity(), 0);
        assert_eq!(queue.iter().collect::<Vec<_>>(), [id(5000)]);
        assert!(!queue.is_empty());
    }
}
