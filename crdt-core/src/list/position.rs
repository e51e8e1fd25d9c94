//! Finding elements: by visible position, by index among all elements, by id; converting
//! positions between code points, UTF-16 units and UTF-8 bytes; anchors.

use serde::{Deserialize, Serialize};

use super::tree::NONE;
use super::{Content, Counts, ElemId, Loc, Ref, Sequence};

/// Which side of its element an anchor sticks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Stays before the element that follows the position (a cursor that keeps to the text
    /// after it).
    Before,
    /// Stays after the element that precedes the position (a cursor that keeps to the text
    /// before it).
    After,
}

/// A stable position in a text or list that keeps its place under remote edits: an element
/// and a side, or the start or end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Anchor {
    /// The element it sticks to; `None` is the start (for [`Side::After`]) or the end (for
    /// [`Side::Before`]).
    pub elem: Option<ElemId>,
    /// Which side of it.
    pub side: Side,
}

/// The unit of a position in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Unicode code points (the API's native unit).
    CodePoint,
    /// UTF-16 code units (browser editors).
    Utf16,
    /// UTF-8 bytes.
    Utf8,
}

impl<C: Content> Sequence<C> {
    /// The location of `id`.
    pub(super) fn find(&self, id: ElemId) -> Option<Loc> {
        let r = *self.replica_index.get(&id.replica)?;
        let (_, &leaf) = self.index.get(r as usize)?.range(..=id.seq).next_back()?;
        let runs = &self.tree.leaf(leaf).runs;
        runs.iter()
            .position(|run| run.replica == r && run.seq <= id.seq && id.seq < run.seq + run.len)
            .map(|run| Loc {
                leaf,
                run,
                offset: id.seq - runs[run].seq,
            })
    }

    /// If `id` is present, the seq just past the end of its run (so a range check can skip a
    /// run at a time).
    pub(crate) fn run_end(&self, id: ElemId) -> Option<u64> {
        let loc = self.find(id)?;
        let run = self.run(loc);
        Some(run.seq + run.len)
    }

    /// The index among all elements (tombstones included) of `r`.
    pub(super) fn index_of(&self, r: Ref) -> Option<u64> {
        let loc = self.find(self.elem_id(r))?;
        Some(self.index_before(loc))
    }

    /// Elements (tombstones included) before `loc`.
    fn index_before(&self, loc: Loc) -> u64 {
        let runs = &self.tree.leaf(loc.leaf).runs;
        let within: u64 = runs[..loc.run.min(runs.len())].iter().map(|r| r.len).sum();
        self.tree.before(loc.leaf).total + within + loc.offset
    }

    /// Visible elements before `loc`.
    pub(super) fn visible_before(&self, loc: Loc) -> u64 {
        let runs = &self.tree.leaf(loc.leaf).runs;
        let within: u64 = runs[..loc.run.min(runs.len())]
            .iter()
            .map(|r| r.visible())
            .sum();
        let offset = runs
            .get(loc.run)
            .map_or(0, |r| if r.deleted { 0 } else { loc.offset });
        self.tree.before(loc.leaf).visible + within + offset
    }

    /// The location of the element at index `i` among all elements; `i == total` gives the
    /// end (one past the last run of the last leaf).
    pub(super) fn locate(&self, i: u64) -> Loc {
        let Some((leaf, mut i, _)) = self.tree.seek(i, |c| c.total) else {
            return self.end();
        };
        for (r, run) in self.tree.leaf(leaf).runs.iter().enumerate() {
            if i < run.len {
                return Loc {
                    leaf,
                    run: r,
                    offset: i,
                };
            }
            i -= run.len;
        }
        self.end()
    }

    /// The location of the `p`-th visible element (`p < len`).
    pub(super) fn find_visible(&self, p: u64) -> Loc {
        let Some((leaf, mut p, _)) = self.tree.seek(p, |c| c.visible) else {
            return self.end();
        };
        for (r, run) in self.tree.leaf(leaf).runs.iter().enumerate() {
            let v = run.visible();
            if p < v {
                return Loc {
                    leaf,
                    run: r,
                    offset: p,
                };
            }
            p -= v;
        }
        self.end()
    }

    fn end(&self) -> Loc {
        let leaf = self.tree.last();
        Loc {
            leaf,
            run: self.tree.leaf(leaf).runs.len(),
            offset: 0,
        }
    }

    /// The location one element after `loc`.
    pub(super) fn step(&self, loc: Loc) -> Loc {
        let runs = &self.tree.leaf(loc.leaf).runs;
        if loc.offset + 1 < runs[loc.run].len {
            return Loc {
                offset: loc.offset + 1,
                ..loc
            };
        }
        let next = self.tree.next(loc.leaf);
        if loc.run + 1 < runs.len() || next == NONE {
            return Loc {
                leaf: loc.leaf,
                run: loc.run + 1,
                offset: 0,
            };
        }
        Loc {
            leaf: next,
            run: 0,
            offset: 0,
        }
    }

    /// The last element of the run before the run starting at `loc`, if any.
    pub(super) fn prev_loc(&self, loc: Loc) -> Option<Loc> {
        let (leaf, run) = if loc.run > 0 {
            (loc.leaf, loc.run - 1)
        } else {
            let leaf = self.tree.prev(loc.leaf);
            if leaf == NONE {
                return None;
            }
            (leaf, self.tree.leaf(leaf).runs.len().checked_sub(1)?)
        };
        let r = self.tree.leaf(leaf).runs.get(run)?;
        Some(Loc {
            leaf,
            run,
            offset: r.len - 1,
        })
    }

    /// Converts a visible position from one unit to another (text only; lists count elements
    /// in every unit). Positions past the end clamp to the end; a UTF-16 or UTF-8 position
    /// inside a character rounds down to its start.
    pub(crate) fn convert(&self, pos: u64, from: Unit, to: Unit) -> u64
    where
        C: AsRef<str>,
    {
        if from == to {
            return pos;
        }
        let measure = |c: &Counts, unit: Unit| match unit {
            Unit::CodePoint => c.visible,
            Unit::Utf16 => c.utf16,
            Unit::Utf8 => c.utf8,
        };
        let Some((leaf, mut left, before)) = self.tree.seek(pos, |c| measure(c, from)) else {
            return measure(self.counts(), to);
        };
        let mut out = measure(&before, to);
        for run in self.tree.leaf(leaf).runs.iter().filter(|r| !r.deleted) {
            let counts = run.counts();
            let n = measure(&counts, from);
            if left >= n {
                left -= n;
                out += measure(&counts, to);
                continue;
            }
            for ch in run.content.as_ref().chars() {
                let size = |unit: Unit| match unit {
                    Unit::CodePoint => 1,
                    Unit::Utf16 => ch.len_utf16() as u64,
                    Unit::Utf8 => ch.len_utf8() as u64,
                };
                if left < size(from) {
                    return out;
                }
                left -= size(from);
                out += size(to);
            }
            return out;
        }
        out
    }

    /// An anchor at visible position `pos` (clamped to the length).
    pub(crate) fn anchor(&self, pos: u64, side: Side) -> Anchor {
        let pos = pos.min(self.len());
        let elem = match side {
            Side::Before if pos < self.len() => Some(self.find_visible(pos)),
            Side::After if pos > 0 => Some(self.find_visible(pos - 1)),
            _ => None,
        };
        Anchor {
            elem: elem
                .and_then(|loc| self.element_at(loc))
                .map(|r| self.elem_id(r)),
            side,
        }
    }

    /// The visible position of an anchor now; `None` if its element is unknown here.
    pub(crate) fn resolve(&self, anchor: Anchor) -> Option<u64> {
        let Some(id) = anchor.elem else {
            return Some(match anchor.side {
                Side::After => 0,
                Side::Before => self.len(),
            });
        };
        let loc = self.find(id)?;
        let before = self.visible_before(loc);
        Some(match anchor.side {
            Side::After if !self.run(loc).deleted => before + 1,
            _ => before,
        })
    }
}
