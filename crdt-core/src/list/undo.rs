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
            let chunk = &mut self.chunks[piece.chunk];
            let run = chunk.runs.remove(piece.run);
            if let Some(index) = self.index.get_mut(run.replica as usize) {
                index.remove(&run.seq);
            }
            seq = run.seq + run.len;
            self.recount_chunk(piece.chunk);
            if self.chunks[piece.chunk].runs.is_empty() {
                self.remove_chunk(piece.chunk);
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
            let chunk = &mut self.chunks[piece.chunk];
            let run = &mut chunk.runs[piece.run];
            let rest = content.split_off(run.len as usize);
            run.content = std::mem::replace(&mut content, rest);
            run.deleted = false;
            seq = run.seq + run.len;
            self.recount_chunk(piece.chunk);
        }
    }

    /// Splits so that the elements from `loc` on, at most `max` of them, are one run; returns
    /// its location.
    fn isolate(&mut self, loc: Loc, max: u64) -> Loc {
        let loc = self.split_at(loc);
        let run = &self.chunks[loc.chunk].runs[loc.run];
        if run.len > max {
            let after = Loc { offset: max, ..loc };
            self.split_at(after);
        }
        loc
    }

    fn recount_chunk(&mut self, chunk: usize) {
        let before = self.chunks[chunk].counts.clone();
        self.chunks[chunk].recount();
        let after = &self.chunks[chunk].counts;
        self.counts.total = self.counts.total - before.total + after.total;
        self.counts.visible = self.counts.visible - before.visible + after.visible;
        self.counts.utf16 = self.counts.utf16 - before.utf16 + after.utf16;
        self.counts.utf8 = self.counts.utf8 - before.utf8 + after.utf8;
    }

    fn remove_chunk(&mut self, pos: usize) {
        self.chunks.remove(pos);
        for (p, c) in self.chunks.iter().enumerate().skip(pos) {
            self.chunk_pos[c.id as usize] = p as u32;
        }
    }
}
