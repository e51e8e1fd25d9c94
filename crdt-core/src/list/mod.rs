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
//! typing produces, so a burst of keystrokes or a paste is one run. Runs live in chunks of at
//! most [`MAX_RUNS`] with cached counts (elements, visible elements, UTF-16 units, UTF-8 bytes),
//! so positions resolve by skipping chunks; an index from `(replica, seq)` to chunk resolves ids.
//! Deleted elements stay as tombstones without content.

mod content;
mod image;
mod position;
#[cfg(test)]
mod tests;
mod undo;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

pub(crate) use content::Content;
pub use position::{Anchor, Side, Unit};

use crate::ReplicaId;

/// The id of one element of a text or list: its replica and that replica's counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ElemId {
    /// The replica that inserted it.
    pub replica: ReplicaId,
    /// Its number in that replica's dense counter.
    pub seq: u64,
}

/// Runs per chunk before the chunk splits in two.
pub(crate) const MAX_RUNS: usize = 128;

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

#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    total: u64,
    visible: u64,
    utf16: u64,
    utf8: u64,
}

#[derive(Clone, Debug)]
struct Chunk<C> {
    id: u32,
    runs: Vec<Run<C>>,
    counts: Counts,
}

impl<C: Content> Chunk<C> {
    fn recount(&mut self) {
        let mut c = Counts::default();
        for run in &self.runs {
            c.total += run.len;
            if !run.deleted {
                c.visible += run.len;
                c.utf16 += run.content.utf16_len() as u64;
                c.utf8 += run.content.utf8_len() as u64;
            }
        }
        self.counts = c;
    }
}

/// Where an element sits: chunk position, run index, offset in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    chunk: usize,
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
    chunks: Vec<Chunk<C>>,
    /// Chunk id -> position in `chunks`.
    chunk_pos: Vec<u32>,
    replicas: Vec<ReplicaId>,
    replica_index: HashMap<ReplicaId, u32>,
    /// Per local replica index: the first seq of each run -> chunk id.
    index: Vec<BTreeMap<u64, u32>>,
    counts: Counts,
}

impl<C: Content> Default for Sequence<C> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            chunk_pos: Vec::new(),
            replicas: Vec::new(),
            replica_index: HashMap::new(),
            index: Vec::new(),
            counts: Counts::default(),
        }
    }
}

impl<C: Content> PartialEq for Sequence<C> {
    /// Equal when the element sequences (ids, deletion, content) are equal, whatever the
    /// chunking and run boundaries.
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
        self.counts.visible
    }

    /// All elements, tombstones included.
    pub(crate) fn total(&self) -> u64 {
        self.counts.total
    }

    /// The visible content, in order.
    pub(crate) fn visible_content(&self) -> impl Iterator<Item = &C> {
        self.chunks
            .iter()
            .flat_map(|c| &c.runs)
            .filter(|r| !r.deleted)
            .map(|r| &r.content)
    }

    /// `(id, deleted)` of every element in order, for equality checks.
    fn elements(&self) -> impl Iterator<Item = (ElemId, bool)> + '_ {
        self.chunks.iter().flat_map(|c| &c.runs).flat_map(move |r| {
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
            let run = &self.chunks[loc.chunk].runs[loc.run];
            seq = run.seq + run.len;
        }
        true
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
                    chunk: 0,
                    run: 0,
                    offset: 0,
                },
            )
        } else {
            let loc = self.find_visible(pos - 1);
            let run = &self.chunks[loc.chunk].runs[loc.run];
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
            let run = &self.chunks[loc.chunk].runs[loc.run];
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
            let run = &self.chunks[loc.chunk].runs[loc.run];
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
            let run = &self.chunks[loc.chunk].runs[loc.run];
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
        let chunk = &mut self.chunks[loc.chunk];
        if chunk.runs[loc.run].len > take {
            let rest = chunk.runs[loc.run].split(take);
            chunk.runs.insert(loc.run + 1, rest);
            let cid = chunk.id;
            let r = chunk.runs[loc.run + 1].replica as usize;
            let s = chunk.runs[loc.run + 1].seq;
            self.index[r].insert(s, cid);
        }
        let chunk = &mut self.chunks[loc.chunk];
        let run = &mut chunk.runs[loc.run];
        run.deleted = true;
        let content = std::mem::take(&mut run.content);
        self.counts.visible -= take;
        let before = chunk.counts.clone();
        chunk.recount();
        self.counts.utf16 -= before.utf16 - chunk.counts.utf16;
        self.counts.utf8 -= before.utf8 - chunk.counts.utf8;
        self.maybe_split(loc.chunk);
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
        let count = content.count() as u64;
        let added = Counts {
            total: count,
            visible: count,
            utf16: content.utf16_len() as u64,
            utf8: content.utf8_len() as u64,
        };
        if self.chunks.is_empty() {
            self.chunks.push(Chunk {
                id: 0,
                runs: Vec::new(),
                counts: Counts::default(),
            });
            self.chunk_pos = vec![0];
        }
        let at = self.split_at(at);
        // Extend the previous run if this continues it.
        if let Some(prev) = self.prev_loc(at) {
            let run = &mut self.chunks[prev.chunk].runs[prev.run];
            if run.replica == replica
                && !run.deleted
                && run.seq + run.len == seq
                && seq.checked_sub(1).map(|s| Ref { replica, seq: s }) == left
                && run.right == right
            {
                run.len += count;
                run.content.append(&content);
                self.add_counts(prev.chunk, &added);
                return;
            }
        }
        let run = Run {
            replica,
            seq,
            len: count,
            deleted: false,
            left,
            right,
            content,
        };
        let chunk = &mut self.chunks[at.chunk];
        chunk.runs.insert(at.run, run);
        let cid = chunk.id;
        self.index[replica as usize].insert(seq, cid);
        self.add_counts(at.chunk, &added);
        self.maybe_split(at.chunk);
    }

    fn add_counts(&mut self, chunk: usize, added: &Counts) {
        for c in [&mut self.chunks[chunk].counts, &mut self.counts] {
            c.total += added.total;
            c.visible += added.visible;
            c.utf16 += added.utf16;
            c.utf8 += added.utf8;
        }
    }

    /// Makes `loc` the start of a run, splitting the run it points into. Returns the location
    /// of that run start (which may be one past the last run of a chunk).
    fn split_at(&mut self, loc: Loc) -> Loc {
        if loc.offset == 0 {
            return loc;
        }
        let chunk = &mut self.chunks[loc.chunk];
        let rest = chunk.runs[loc.run].split(loc.offset);
        let (r, s) = (rest.replica as usize, rest.seq);
        chunk.runs.insert(loc.run + 1, rest);
        let cid = chunk.id;
        self.index[r].insert(s, cid);
        Loc {
            chunk: loc.chunk,
            run: loc.run + 1,
            offset: 0,
        }
    }

    /// Splits a chunk that has grown past [`MAX_RUNS`].
    fn maybe_split(&mut self, pos: usize) {
        if self.chunks[pos].runs.len() <= MAX_RUNS {
            return;
        }
        let id = self.chunk_pos.len() as u32;
        let half = self.chunks[pos].runs.len() / 2;
        let moved = self.chunks[pos].runs.split_off(half);
        for run in &moved {
            self.index[run.replica as usize].insert(run.seq, id);
        }
        let mut chunk = Chunk {
            id,
            runs: moved,
            counts: Counts::default(),
        };
        chunk.recount();
        self.chunks[pos].recount();
        self.chunks.insert(pos + 1, chunk);
        self.chunk_pos.push(0);
        for (p, c) in self.chunks.iter().enumerate().skip(pos) {
            self.chunk_pos[c.id as usize] = p as u32;
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
        let run = self.chunks.get(loc.chunk)?.runs.get(loc.run)?;
        Some(Ref {
            replica: run.replica,
            seq: run.seq + loc.offset,
        })
    }
}
