//! The range-digest descent: the fallback when the sketch does not peel (and the only way with
//! [`Reconcile::Descent`](super::Reconcile::Descent)). Each side describes ranges of its ids
//! by sub-range digests, or by the ids themselves where few; the other answers each sub-range
//! that differs with its own view of it, pushes what the peer lacks and asks for what it
//! lacks.

use crdt_core::OpId;

use super::{RANGE_CHILDREN_PER_MESSAGE, Session, SessionError};
use crate::index::Index;
use crate::message::{Child, MAX_RANGE_WIDTH, Message, MessageError, RANGE_IDS, RangeEntry};
use crate::trie::{Key, mask, with_bits};

impl Session {
    /// Starts the descent: one entry for the whole of each collection in scope (an empty one
    /// too, so that the peer pushes a collection we lack).
    pub(super) fn start_descent(&mut self, index: &Index) {
        let entries: Vec<RangeEntry> = self
            .scope
            .iter()
            .enumerate()
            .map(|(i, name)| self.describe(index, name, i as u64, &[0; 16], 0))
            .collect();
        self.send_ranges(entries);
    }

    fn send_ranges(&mut self, entries: Vec<RangeEntry>) {
        let mut batch = Vec::new();
        let mut children = 0;
        for e in entries {
            if children + e.children.len() > RANGE_CHILDREN_PER_MESSAGE && !batch.is_empty() {
                self.send(&Message::Ranges(std::mem::take(&mut batch)));
                children = 0;
            }
            children += e.children.len();
            batch.push(e);
        }
        if !batch.is_empty() {
            self.send(&Message::Ranges(batch));
        }
    }

    /// Our view of the range `prefix[..bits]` of `name`: split at the first bit where our ids
    /// there differ, `descent_width` bits down (fewer near the end of the key).
    fn describe(
        &self,
        index: &Index,
        name: &str,
        collection: u64,
        prefix: &Key,
        bits: u8,
    ) -> RangeEntry {
        let Some((key, crit, _)) = index.range_shape(name, prefix, bits) else {
            return RangeEntry {
                collection,
                bits,
                split: bits,
                width: 0,
                prefix: mask(prefix, bits),
                children: vec![Child::Ids(Vec::new())],
            };
        };
        // At least one bit, or a reply would repeat the range it answers and never end.
        let width = self
            .config
            .descent_width
            .clamp(1, MAX_RANGE_WIDTH)
            .min(128 - bits);
        let split = crit.min(128 - width).max(bits);
        let prefix = mask(&key, split);
        let children = (0..1u16 << width)
            .map(|i| {
                let at = with_bits(&prefix, split, width, i as u8);
                match index.range_digest(name, at, split + width) {
                    None => Child::Ids(Vec::new()),
                    Some((d, n)) if n > RANGE_IDS => Child::Digest(n, d),
                    Some(_) => {
                        let mut ids = Vec::new();
                        index.for_each_in(name, &at, split + width, &at, |k| {
                            ids.push(OpId::from_bytes(*k));
                            true
                        });
                        Child::Ids(ids)
                    }
                }
            })
            .collect();
        RangeEntry {
            collection,
            bits,
            split,
            width,
            prefix,
            children,
        }
    }

    /// The peer's view of some ranges: push what it lacks, ask for what we lack, and answer
    /// each sub-range whose digest differs from ours with our own view of it.
    pub(super) fn on_ranges(
        &mut self,
        entries: &[RangeEntry],
        index: &Index,
    ) -> Result<(), SessionError> {
        let names: Vec<String> = self.scope.iter().map(str::to_owned).collect();
        let mut replies = Vec::new();
        let mut want = Vec::new();
        for e in entries {
            let name = usize::try_from(e.collection)
                .ok()
                .and_then(|i| names.get(i))
                .ok_or(MessageError::BadRange("collection outside the scope"))?;
            let mut push = Vec::new();
            if e.split > e.bits {
                // Every id the peer holds in the range is under the split prefix: ours
                // outside it are ours alone. They sort before or after it.
                let below = mask(&e.prefix, e.split);
                index.for_each_in(name, &e.prefix, e.bits, &[0; 16], |k| {
                    if *k < below {
                        push.push(*k);
                        true
                    } else {
                        false
                    }
                });
                // A split at bit 128 (allowed on the wire) names one key: nothing is under it
                // past `below`.
                let under = u128::MAX.checked_shr(u32::from(e.split)).unwrap_or(0);
                let above = u128::from_be_bytes(below) | under;
                if let Some(next) = above.checked_add(1) {
                    index.for_each_in(name, &e.prefix, e.bits, &next.to_be_bytes(), |k| {
                        push.push(*k);
                        true
                    });
                }
            }
            let bits = e.split + e.width;
            for (i, child) in e.children.iter().enumerate() {
                let at = e.child_prefix(i);
                match child {
                    Child::Ids(ids) => {
                        let mut theirs = ids.iter().map(|id| id.to_bytes()).peekable();
                        index.for_each_in(name, &at, bits, &at, |k| {
                            while let Some(t) = theirs.next_if(|t| t < k) {
                                want.push(OpId::from_bytes(t));
                            }
                            if theirs.next_if_eq(k).is_none() {
                                push.push(*k);
                            }
                            true
                        });
                        want.extend(theirs.map(OpId::from_bytes));
                    }
                    Child::Digest(_, d) => {
                        if index
                            .range_digest(name, at, bits)
                            .is_none_or(|(ours, _)| ours != *d)
                        {
                            replies.push(self.describe(index, name, e.collection, &at, bits));
                        }
                    }
                }
            }
            let (theirs, ours) = &self.pushed_above;
            self.outgoing.extend(
                push.into_iter()
                    .map(OpId::from_bytes)
                    .filter(|id| theirs.covers(*id) || !ours.covers(*id)),
            );
        }
        self.send_ranges(replies);
        // What is above our last frontier is on its way.
        want.retain(|id| self.hello_frontier.covers(*id));
        want.sort();
        want.dedup();
        for chunk in want.chunks(self.ids_per_want()) {
            self.send(&Message::Want {
                ids: chunk.to_vec(),
            });
        }
        Ok(())
    }
}
