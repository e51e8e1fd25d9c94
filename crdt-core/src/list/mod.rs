//! The sequence CRDT behind text and list fields.
//!
//! Every element has an id `(replica, seq)` from its replica's dense counter, a left origin
//! (the element it was typed after) and a right origin (the element that followed that one,
//! tombstones included). Concurrent inserts between the same origins are ordered by a scan
//! over the elements between the origins that orders siblings by replica id and keeps each
//! replica's run together: the Fugue order (its "maximal non-interleaving" variant), so that
//! two people typing at one place, forwards or backwards, never interleave character by
//! character.
//!
//! Storage is run-length encoded: a run is consecutive seqs of one replica where each element's
//! left origin is the previous element and all share a right origin, which is exactly what
//! typing produces, so a burst of keystrokes or a paste is one run. Runs live in the leaves of a
//! counted B+tree ([`tree`]) whose nodes cache their counts (elements, visible elements, UTF-16
//! units, UTF-8 bytes), so a position resolves in O(log n); an index from `(replica, seq of a
//! run's start)` to leaf resolves ids. Deleted elements stay as tombstones without content.

mod content;
mod image;
mod position;
#[cfg(test)]
mod tests;
mod tree;
#[cfg(test)]
mod tree_tests;
mod undo;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub(crate) use content::Content;
pub use position::{Anchor, Side, Unit};

use crate::ReplicaId;
use tree::Tree;

/// The id of one element of a text or list: its replica and that replica's counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ElemId {
    /// The replica that inserted it.
    pub replica: ReplicaId,
    /// Its number in that replica's dense counter.
    pub seq: u64,
}

/// An element reference inside one sequence: a local replica index and the seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ref {
    replica: u32,
    seq: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Run<C> {
    replica: u32,
    seq: u64,
    len: u64,
    deleted: bool,
    /// Left origin of the first element; element `i > 0`'s is element `i - 1`.
    left: Option<Ref>,
    /// Right origin of every element.
    right: Option<Ref>,
    /// The elements; empty once deleted.
    content: C,
}

impl<C: Content> Run<C> {
    fn visible(&self) -> u64 {
        if self.deleted { 0 } else { self.len }
    }

    /// Splits at `at` (0 < at < len), returning the right part.
    fn split(&mut self, at: u64) -> Self {
        let content = if self.deleted {
            C::default()
        } else {
            self.content.split_off(at as usize)
        };
        let right = Run {
            replica: self.replica,
            seq: self.seq + at,
            len: self.len - at,
            deleted: self.deleted,
            left: Some(Ref {
                replica: self.replica,
                seq: self.seq + at - 1,
            }),
            right: self.right,
            content,
        };
        self.len = at;
        right
    }
}

impl<C: Content> Run<C> {
    /// What this run adds to the counts of the nodes above it.
    fn counts(&self) -> Counts {
        if self.deleted {
            Counts {
                total: self.len,
                ..Counts::default()
            }
        } else {
            Counts {
                total: self.len,
                visible: self.len,
                utf16: self.content.utf16_len() as u64,
                utf8: self.content.utf8_len() as u64,
            }
        }
    }
}

/// Cached sizes of a run or a subtree of runs.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    /// Elements, tombstones included.
    total: u64,
    /// Visible elements.
    visible: u64,
    /// UTF-16 units of the visible elements.
    utf16: u64,
    /// UTF-8 bytes of the visible elements.
    utf8: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.total += other.total;
        self.visible += other.visible;
        self.utf16 += other.utf16;
        self.utf8 += other.utf8;
    }

    fn sub(&mut self, other: &Counts) {
        self.total -= other.total;
        self.visible -= other.visible;
        self.utf16 -= other.utf16;
        self.utf8 -= other.utf8;
    }
}

/// Where an element sits: leaf, run index in the leaf, offset in the run. `run` may be the
/// leaf's run count (the place after its last run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    leaf: u32,
    run: usize,
    offset: u64,
}

/// A change to the visible sequence, in the positions of the moment it happened: what an
/// editor binding applies to its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeqChange {
    /// `len` elements were inserted at `pos`.
    Insert {
        /// Position, in elements (code points for text).
        pos: u64,
        /// How many.
        len: u64,
    },
    /// `len` elements were deleted at `pos`.
    Delete {
        /// Position, in elements.
        pos: u64,
        /// How many.
        len: u64,
    },
}

/// A sequence of elements with content `C`.
#[derive(Clone, Debug)]
pub(crate) struct Sequence<C> {
    tree: Tree<C>,
    replicas: Vec<ReplicaId>,
    replica_index: HashMap<ReplicaId, u32>,
    /// Per local replica index: the first seq of each run -> its leaf.
    index: Vec<BTreeMap<u64, u32>>,
}

impl<C: Content> Default for Sequence<C> {
    fn default() -> Self {
        Self {
            tree: Tree::default(),
            replicas: Vec::new(),
            replica_index: HashMap::new(),
            index: Vec::new(),
        }
    }
}

impl<C: Content> PartialEq for Sequence<C> {
    /// Equal when the element sequences (ids, deletion) are equal, whatever the tree's shape
    /// and run boundaries.
    fn eq(&self, other: &Self) -> bool {
        self.elements().eq(other.elements())
    }
}

/// Why a position-based edit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("position {pos} is past the end of a sequence of {len} elements")]
pub struct OutOfBounds {
    /// The position asked for.
    pub pos: u64,
    /// The sequence's visible length.
    pub len: u64,
}

impl<C: Content> Sequence<C> {
    /// Visible elements.
    pub(crate) fn len(&self) -> u64 {
        self.counts().visible
    }

    /// All elements, tombstones included.
    pub(crate) fn total(&self) -> u64 {
        self.counts().total
    }

    fn counts(&self) -> &Counts {
        self.tree.counts()
    }

    /// The visible content, in order.
    pub(crate) fn visible_content(&self) -> impl Iterator<Item = &C> {
        self.tree.runs().filter(|r| !r.deleted).map(|r| &r.content)
    }

    /// `(id, deleted)` of every element in order, for equality checks.
    fn elements(&self) -> impl Iterator<Item = (ElemId, bool)> + '_ {
        self.tree.runs().flat_map(move |r| {
            let replica = self.replicas[r.replica as usize];
            (0..r.len).map(move |i| {
                (
                    ElemId {
                        replica,
                        seq: r.seq + i,
                    },
                    r.deleted,
                )
            })
        })
    }

    /// Whether the element exists (visible or deleted).
    pub(crate) fn contains(&self, id: ElemId) -> bool {
        self.find(id).is_some()
    }

    /// Whether every element of `[id, id + len)` exists.
    #[cfg(test)]
    pub(crate) fn contains_range(&self, id: ElemId, len: u64) -> bool {
        let mut seq = id.seq;
        let end = id.seq.saturating_add(len);
        while seq < end {
            let Some(loc) = self.find(ElemId { seq, ..id }) else {
                return false;
            };
            let run = self.run(loc);
            seq = run.seq + run.len;
        }
        true
    }

    /// The run `loc` points into (`loc.run` must be a run of the leaf).
    fn run(&self, loc: Loc) -> &Run<C> {
        &self.tree.leaf(loc.leaf).runs[loc.run]
    }

    /// Inserts `content` (of `count` elements) at visible position `pos`, as elements
    /// `replica`'s `seq..seq + count`. Returns the left and right origins to send.
    pub(crate) fn insert_local(
        &mut self,
        pos: u64,
        content: C,
        replica: ReplicaId,
        seq: u64,
    ) -> Result<(Option<ElemId>, Option<ElemId>), OutOfBounds> {
        if pos > self.len() {
            return Err(OutOfBounds {
                pos,
                len: self.len(),
            });
        }
        let r = self.local_replica(replica);
        // The insertion point: right after the visible element before `pos`.
        let (left, at) = if pos == 0 {
            (
                None,
                Loc {
                    leaf: self.tree.first(),
                    run: 0,
                    offset: 0,
                },
            )
        } else {
            let loc = self.find_visible(pos - 1);
            let run = self.run(loc);
            let left = Ref {
                replica: run.replica,
                seq: run.seq + loc.offset,
            };
            (Some(left), self.step(loc))
        };
        let right = self.element_at(at);
        let origins = (
            left.map(|l| self.elem_id(l)),
            right.map(|r| self.elem_id(r)),
        );
        self.place(at, r, seq, left, right, content);
        Ok(origins)
    }

    /// Integrates a remote insert whose origins are present. Returns the visible position of
    /// its first element.
    pub(crate) fn integrate(
        &mut self,
        id: ElemId,
        left: Option<ElemId>,
        right: Option<ElemId>,
        content: C,
    ) -> u64 {
        let r = self.local_replica(id.replica);
        let left = left.and_then(|l| self.to_ref(l));
        let right = right.and_then(|x| self.to_ref(x));
        let left_idx: Option<u64> = left.and_then(|l| self.index_of(l));
        let right_idx = right.and_then(|x| self.index_of(x)).unwrap_or(self.total());
        let mut i = left_idx.map_or(0, |l| l + 1);
        let mut dest = i;
        let mut scanning = false;
        while i < right_idx && i < self.total() {
            if !scanning {
                dest = i;
            }
            let loc = self.locate(i);
            let run = self.run(loc);
            let other_left = if loc.offset > 0 {
                Some(i - 1)
            } else {
                run.left.and_then(|l| self.index_of(l))
            };
            if other_left < left_idx {
                break;
            }
            if other_left == left_idx {
                let other_right = run
                    .right
                    .and_then(|x| self.index_of(x))
                    .unwrap_or(self.total());
                if other_right < right_idx {
                    scanning = true;
                } else if other_right == right_idx {
                    let other = ElemId {
                        replica: self.replicas[run.replica as usize],
                        seq: run.seq + loc.offset,
                    };
                    if id < other {
                        break;
                    }
                    scanning = false;
                } else {
                    scanning = false;
                }
                i += 1;
            } else {
                // Inside another element's subtree: skip the rest of its run at once (each
                // later element of the run has the previous one as left origin).
                i = (i + run.len - loc.offset).min(right_idx);
            }
        }
        if !scanning {
            dest = i;
        }
        let at = self.locate(dest);
        let visible_pos = self.visible_before(at);
        self.place(at, r, id.seq, left, right, content);
        visible_pos
    }

    /// Deletes `len` visible elements at `pos`. Returns the deleted id ranges with the
    /// content each held (for undo).
    pub(crate) fn delete_local(
        &mut self,
        pos: u64,
        len: u64,
    ) -> Result<Vec<(ElemId, u64, C)>, OutOfBounds> {
        if pos.saturating_add(len) > self.len() {
            return Err(OutOfBounds {
                pos: pos.saturating_add(len),
                len: self.len(),
            });
        }
        let mut ranges: Vec<(ElemId, u64, C)> = Vec::new();
        let mut left = len;
        while left > 0 {
            let loc = self.find_visible(pos);
            let run = self.run(loc);
            let take = (run.len - loc.offset).min(left);
            let id = ElemId {
                replica: self.replicas[run.replica as usize],
                seq: run.seq + loc.offset,
            };
            let content = self.mark_deleted(loc, take);
            match ranges.last_mut() {
                Some((last, n, c)) if last.replica == id.replica && last.seq + *n == id.seq => {
                    *n += take;
                    c.append(&content);
                }
                _ => ranges.push((id, take, content)),
            }
            left -= take;
        }
        Ok(ranges)
    }

    /// Deletes the elements of a remote delete (idempotent). Returns the visible changes.
    pub(crate) fn delete_remote(&mut self, id: ElemId, len: u64) -> Vec<SeqChange> {
        let mut changes = Vec::new();
        let mut seq = id.seq;
        let end = id.seq.saturating_add(len);
        while seq < end {
            let Some(loc) = self.find(ElemId { seq, ..id }) else {
                break;
            };
            let run = self.run(loc);
            let take = (run.len - loc.offset).min(end - seq);
            if !run.deleted {
                let pos = self.visible_before(loc);
                let _ = self.mark_deleted(loc, take);
                changes.push(SeqChange::Delete { pos, len: take });
            }
            seq += take;
        }
        changes
    }

    /// Marks `take` elements from `loc` (within one run) deleted; returns their content.
    fn mark_deleted(&mut self, loc: Loc, take: u64) -> C {
        let loc = self.split_at(loc);
        let leaf = self.tree.leaf_mut(loc.leaf);
        if leaf.runs[loc.run].len > take {
            let rest = leaf.runs[loc.run].split(take);
            let (r, s) = (rest.replica as usize, rest.seq);
            leaf.runs.insert(loc.run + 1, rest);
            self.index[r].insert(s, loc.leaf);
        }
        let run = &mut self.tree.leaf_mut(loc.leaf).runs[loc.run];
        let before = run.counts();
        run.deleted = true;
        let content = std::mem::take(&mut run.content);
        let after = run.counts();
        self.tree.sub_counts(loc.leaf, &before);
        self.tree.add_counts(loc.leaf, &after);
        self.maybe_split(loc.leaf);
        content
    }

    /// Places a new run at `at` (splitting the run there), or extends the run before it when
    /// the new elements continue it.
    fn place(
        &mut self,
        at: Loc,
        replica: u32,
        seq: u64,
        left: Option<Ref>,
        right: Option<Ref>,
        content: C,
    ) {
        let run = Run {
            replica,
            seq,
            len: content.count() as u64,
            deleted: false,
            left,
            right,
            content,
        };
        let added = run.counts();
        let at = self.split_at(at);
        // Extend the previous run if this continues it.
        if let Some(prev) = self.prev_loc(at) {
            let last = &mut self.tree.leaf_mut(prev.leaf).runs[prev.run];
            if last.replica == replica
                && !last.deleted
                && last.seq + last.len == seq
                && seq.checked_sub(1).map(|s| Ref { replica, seq: s }) == left
                && last.right == right
            {
                last.len += run.len;
                last.content.append(&run.content);
                self.tree.add_counts(prev.leaf, &added);
                return;
            }
        }
        self.tree.leaf_mut(at.leaf).runs.insert(at.run, run);
        self.index[replica as usize].insert(seq, at.leaf);
        self.tree.add_counts(at.leaf, &added);
        self.maybe_split(at.leaf);
    }

    /// Makes `loc` the start of a run, splitting the run it points into. Returns the location
    /// of that run start (which may be one past the last run of a leaf).
    fn split_at(&mut self, loc: Loc) -> Loc {
        if loc.offset == 0 {
            return loc;
        }
        let leaf = self.tree.leaf_mut(loc.leaf);
        let rest = leaf.runs[loc.run].split(loc.offset);
        let (r, s) = (rest.replica as usize, rest.seq);
        leaf.runs.insert(loc.run + 1, rest);
        self.index[r].insert(s, loc.leaf);
        Loc {
            leaf: loc.leaf,
            run: loc.run + 1,
            offset: 0,
        }
    }

    /// Splits a leaf that has grown past its capacity, pointing the index at the runs that
    /// moved.
    fn maybe_split(&mut self, leaf: u32) {
        if let Some(new) = self.tree.maybe_split(leaf) {
            for run in &self.tree.leaf(new).runs {
                self.index[run.replica as usize].insert(run.seq, new);
            }
        }
    }

    fn local_replica(&mut self, replica: ReplicaId) -> u32 {
        if let Some(&r) = self.replica_index.get(&replica) {
            return r;
        }
        let r = self.replicas.len() as u32;
        self.replicas.push(replica);
        self.replica_index.insert(replica, r);
        self.index.push(BTreeMap::new());
        r
    }

    fn to_ref(&self, id: ElemId) -> Option<Ref> {
        self.replica_index.get(&id.replica).map(|&replica| Ref {
            replica,
            seq: id.seq,
        })
    }

    fn elem_id(&self, r: Ref) -> ElemId {
        ElemId {
            replica: self.replicas[r.replica as usize],
            seq: r.seq,
        }
    }

    /// The element id at `loc`, if `loc` is not the end.
    fn element_at(&self, loc: Loc) -> Option<Ref> {
        let leaf = self.tree.leaf(loc.leaf);
        let (run, offset) = match leaf.runs.get(loc.run) {
            Some(run) => (run, loc.offset),
            None => {
                let next = self.tree.next(loc.leaf);
                if next == tree::NONE {
                    return None;
                }
                (self.tree.leaf(next).runs.first()?, 0)
            }
        };
        Some(Ref {
            replica: run.replica,
            seq: run.seq + offset,
        })
    }

    /// Checks the tree's invariants and that the id index points every run start at its
    /// leaf and holds nothing else.
    #[cfg(test)]
    fn check(&self) {
        let leaves = self.tree.check();
        let mut starts = 0;
        for leaf in leaves {
            for run in &self.tree.leaf(leaf).runs {
                let at = self.index[run.replica as usize].get(&run.seq);
                assert_eq!(at, Some(&leaf), "index entry of run {run:?}");
                starts += 1;
            }
        }
        let entries: usize = self.index.iter().map(BTreeMap::len).sum();
        assert_eq!(entries, starts, "stale index entries");
    }
}
