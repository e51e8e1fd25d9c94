//! Inverses of local edits, for rolling back a transaction: removing elements it inserted and
//! restoring elements it deleted. Only elements that never left this replica are touched.

use super::{Content, ElemId, Loc, Sequence};

impl<C: Content> Sequence<C> {
    /// Removes the elements `[id, id + len)` entirely, as if never inserted.
    pub(crate) fn unplace(&mut self, id: ElemId, len: u64) {
        let end = id.seq.saturating_add(len);
        let mut seq = id.seq;
        while seq < end {
            let Some(loc) = self.find(ElemId { seq, ..id }) else {
                return;
            };
            let piece = self.isolate(loc, end - seq);
            let run = self.tree.leaf_mut(piece.leaf).runs.remove(piece.run);
            if let Some(index) = self.index.get_mut(run.replica as usize) {
                index.remove(&run.seq);
            }
            seq = run.seq + run.len;
            self.tree.sub_counts(piece.leaf, &run.counts());
            if self.tree.leaf(piece.leaf).runs.is_empty() {
                self.tree.remove_leaf(piece.leaf);
            } else {
                self.maybe_split(piece.leaf);
            }
        }
    }

    /// Makes the elements `[id, id + len)` visible again with `content` (what their deletion
    /// took away).
    pub(crate) fn undelete(&mut self, id: ElemId, len: u64, mut content: C) {
        let end = id.seq.saturating_add(len);
        let mut seq = id.seq;
        while seq < end {
            let Some(loc) = self.find(ElemId { seq, ..id }) else {
                return;
            };
            let piece = self.isolate(loc, end - seq);
            let run = &mut self.tree.leaf_mut(piece.leaf).runs[piece.run];
            let before = run.counts();
            let rest = content.split_off(run.len as usize);
            run.content = std::mem::replace(&mut content, rest);
            run.deleted = false;
            seq = run.seq + run.len;
            let after = run.counts();
            self.tree.sub_counts(piece.leaf, &before);
            self.tree.add_counts(piece.leaf, &after);
            self.maybe_split(piece.leaf);
        }
    }

    /// Splits so that the elements from `loc` on, at most `max` of them, are one run; returns
    /// its location.
    fn isolate(&mut self, loc: Loc, max: u64) -> Loc {
        let loc = self.split_at(loc);
        if self.run(loc).len > max {
            let after = Loc { offset: max, ..loc };
            self.split_at(after);
        }
        loc
    }
}
