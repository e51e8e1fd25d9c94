//! Finding elements: by visible position, by index among all elements, by id; converting
//! positions between code points, UTF-16 units and UTF-8 bytes; anchors.

use serde::{Deserialize, Serialize};

use super::{Content, ElemId, Loc, Ref, Sequence};

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
        let (_, &cid) = self.index[r as usize].range(..=id.seq).next_back()?;
        let chunk = *self.chunk_pos.get(cid as usize)? as usize;
        let runs = &self.chunks.get(chunk)?.runs;
        runs.iter()
            .position(|run| run.replica == r && run.seq <= id.seq && id.seq < run.seq + run.len)
            .map(|run| Loc {
                chunk,
                run,
                offset: id.seq - runs[run].seq,
            })
    }

    /// If `id` is present, the seq just past the end of its run (so a range check can skip a
    /// run at a time).
    pub(crate) fn run_end(&self, id: ElemId) -> Option<u64> {
        let loc = self.find(id)?;
        let run = &self.chunks[loc.chunk].runs[loc.run];
        Some(run.seq + run.len)
    }

    /// The index among all elements (tombstones included) of `r`.
    pub(super) fn index_of(&self, r: Ref) -> Option<u64> {
        let loc = self.find(self.elem_id(r))?;
        Some(self.index_before(loc))
    }

    /// Elements (tombstones included) before `loc`.
    fn index_before(&self, loc: Loc) -> u64 {
        let chunks: u64 = self.chunks[..loc.chunk]
            .iter()
            .map(|c| c.counts.total)
            .sum();
        let runs: u64 = self.chunks.get(loc.chunk).map_or(0, |c| {
            c.runs[..loc.run.min(c.runs.len())]
                .iter()
                .map(|r| r.len)
                .sum()
        });
        chunks + runs + loc.offset
    }

    /// Visible elements before `loc`.
    pub(super) fn visible_before(&self, loc: Loc) -> u64 {
        let chunks: u64 = self.chunks[..loc.chunk]
            .iter()
            .map(|c| c.counts.visible)
            .sum();
        let Some(chunk) = self.chunks.get(loc.chunk) else {
            return chunks;
        };
        let runs: u64 = chunk.runs[..loc.run.min(chunk.runs.len())]
            .iter()
            .map(|r| r.visible())
            .sum();
        let within = chunk
            .runs
            .get(loc.run)
            .map_or(0, |r| if r.deleted { 0 } else { loc.offset });
        chunks + runs + within
    }

    /// The location of the element at index `i` among all elements; `i == total` gives the
    /// end (one past the last run of the last chunk).
    pub(super) fn locate(&self, mut i: u64) -> Loc {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if i < chunk.counts.total {
                for (r, run) in chunk.runs.iter().enumerate() {
                    if i < run.len {
                        return Loc {
                            chunk: c,
                            run: r,
                            offset: i,
                        };
                    }
                    i -= run.len;
                }
            }
            i -= chunk.counts.total.min(i);
        }
        self.end()
    }

    /// The location of the `p`-th visible element (`p < len`).
    pub(super) fn find_visible(&self, mut p: u64) -> Loc {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if p < chunk.counts.visible {
                for (r, run) in chunk.runs.iter().enumerate() {
                    let v = run.visible();
                    if p < v {
                        return Loc {
                            chunk: c,
                            run: r,
                            offset: p,
                        };
                    }
                    p -= v;
                }
            }
            p -= chunk.counts.visible.min(p);
        }
        self.end()
    }

    fn end(&self) -> Loc {
        match self.chunks.len() {
            0 => Loc {
                chunk: 0,
                run: 0,
                offset: 0,
            },
            n => Loc {
                chunk: n - 1,
                run: self.chunks[n - 1].runs.len(),
                offset: 0,
            },
        }
    }

    /// The location one element after `loc`.
    pub(super) fn step(&self, loc: Loc) -> Loc {
        let chunk = &self.chunks[loc.chunk];
        if loc.offset + 1 < chunk.runs[loc.run].len {
            return Loc {
                offset: loc.offset + 1,
                ..loc
            };
        }
        if loc.run + 1 < chunk.runs.len() || loc.chunk + 1 == self.chunks.len() {
            return Loc {
                chunk: loc.chunk,
                run: loc.run + 1,
                offset: 0,
            };
        }
        Loc {
            chunk: loc.chunk + 1,
            run: 0,
            offset: 0,
        }
    }

    /// The last element of the run before the run starting at `loc`, if any.
    pub(super) fn prev_loc(&self, loc: Loc) -> Option<Loc> {
        let (chunk, run) = if loc.run > 0 {
            (loc.chunk, loc.run - 1)
        } else {
            let c = loc.chunk.checked_sub(1)?;
            (c, self.chunks[c].runs.len().checked_sub(1)?)
        };
        let r = self.chunks.get(chunk)?.runs.get(run)?;
        Some(Loc {
            chunk,
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
        let measure = |c: &super::Counts, unit: Unit| match unit {
            Unit::CodePoint => c.visible,
            Unit::Utf16 => c.utf16,
            Unit::Utf8 => c.utf8,
        };
        let mut left = pos;
        let mut out = 0;
        for chunk in &self.chunks {
            let n = measure(&chunk.counts, from);
            if left >= n {
                left -= n;
                out += measure(&chunk.counts, to);
                continue;
            }
            for ch in chunk
                .runs
                .iter()
                .filter(|r| !r.deleted)
                .flat_map(|r| r.content.as_ref().chars())
            {
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
        let run = &self.chunks[loc.chunk].runs[loc.run];
        Some(match anchor.side {
            Side::After if !run.deleted => before + 1,
            _ => before,
        })
    }
}
