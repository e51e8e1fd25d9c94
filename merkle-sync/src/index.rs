//! The Merkle index over a log's op ids, one tree per collection, and sync scopes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use crdt_core::codec::EncodedOps;
use crdt_core::{Op, OpId, ReplicaId, VersionVector};
use hlc::Timestamp;

use crate::batch_hash;
use crate::sketch::{self, Symbol};
use crate::source::{OpSource, SourceError};
use crate::trie::{Key, Trie};

/// A 32-byte blake3 digest: of one op's encoding, of a range of ops, or of a scope's root.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// The digest of one op: blake3 of its encoding ([`crdt_core::codec::encode_op`]), which
/// covers its id, so it is also the op's leaf digest in the index.
pub fn op_digest(op: &Op) -> Digest {
    Digest(*blake3::hash(&crdt_core::codec::encode_op(op)).as_bytes())
}

/// Each op with its collection, id and digest, for [`Index::extend`]: ops are encoded into one
/// buffer and hashed [`DIGEST_BATCH`] at a time ([`batch_hash::hash_many`], sixteen at once
/// where the CPU allows).
fn digested<'a>(
    ops: impl IntoIterator<Item = &'a Op>,
) -> impl Iterator<Item = (&'a str, OpId, Digest)> {
    let mut ops = ops.into_iter();
    let mut batch: Vec<&'a Op> = Vec::with_capacity(DIGEST_BATCH);
    let mut buf = Vec::new();
    let mut ends = Vec::with_capacity(DIGEST_BATCH);
    let mut digests = Vec::with_capacity(DIGEST_BATCH);
    let mut next = 0;
    std::iter::from_fn(move || {
        if next == batch.len() {
            batch.clear();
            batch.extend(ops.by_ref().take(DIGEST_BATCH));
            if batch.is_empty() {
                return None;
            }
            buf.clear();
            ends.clear();
            for op in &batch {
                crdt_core::codec::encode_op_into(op, &mut buf);
                ends.push(buf.len());
            }
            hash_back_to_back(&buf, &ends, &mut digests);
            next = 0;
        }
        let op = batch[next];
        let digest = Digest(digests[next]);
        next += 1;
        Some((op.collection.as_str(), op.id, digest))
    })
}

/// Ops [`digested`] encodes and hashes at a time.
const DIGEST_BATCH: usize = 1024;

/// The blake3 digests of the inputs that lie back to back in `buf`, each ending at the next
/// of `ends`, into `digests` ([`batch_hash::hash_many`]).
fn hash_back_to_back(buf: &[u8], ends: &[usize], digests: &mut Vec<[u8; 32]>) {
    let inputs: Vec<&[u8]> = ends
        .iter()
        .scan(0, |start, &end| {
            let input = &buf[*start..end];
            *start = end;
            Some(input)
        })
        .collect();
    digests.clear();
    digests.resize(ends.len(), [0u8; 32]);
    batch_hash::hash_many(&inputs, digests);
}

/// Encodings of ops (the version byte, then an op's postcard bytes as a log stores them)
/// laid back to back, whose leaf digests are computed [`DIGEST_BATCH`] at a
/// time into the entries they were pushed with.
#[derive(Default)]
struct Leaves {
    buf: Vec<u8>,
    ends: Vec<usize>,
    digests: Vec<[u8; 32]>,
    /// Entries before this one have their digests.
    hashed: usize,
}

impl Leaves {
    /// Pushes the entry of an op whose postcard bytes are `body`, its digest to come.
    fn push<T>(&mut self, entries: &mut Vec<(T, OpId, Digest)>, of: T, id: OpId, body: &[u8]) {
        entries.push((of, id, Digest([0; 32])));
        self.buf.push(crdt_core::codec::FORMAT_VERSION);
        self.buf.extend_from_slice(body);
        self.ends.push(self.buf.len());
        if self.ends.len() == DIGEST_BATCH {
            self.finish(entries);
        }
    }

    /// Gives the entries pushed so far their digests.
    fn finish<T>(&mut self, entries: &mut [(T, OpId, Digest)]) {
        hash_back_to_back(&self.buf, &self.ends, &mut self.digests);
        for (entry, d) in entries[self.hashed..].iter_mut().zip(&self.digests) {
            entry.2 = Digest(*d);
        }
        self.hashed = entries.len();
        self.buf.clear();
        self.ends.clear();
    }
}

/// The collections a session may exchange: nothing outside is offered, not even an id or a
/// digest that covers it. Sorted and without duplicates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    names: Vec<String>,
}

impl Scope {
    /// The scope of these collections.
    pub fn new<I, S>(collections: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = collections.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    /// Whether `collection` is in scope.
    pub fn contains(&self, collection: &str) -> bool {
        self.names
            .binary_search_by(|n| n.as_str().cmp(collection))
            .is_ok()
    }

    /// The collections, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// 16 bytes that both sides compare in the first flight: blake3 of the sorted names.
    pub fn digest(&self) -> [u8; 16] {
        let mut h = blake3::Hasher::new();
        h.update(b"weft-sync/1 scope\0");
        for n in &self.names {
            h.update(&(n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        let mut out = [0; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }
}

/// Sketch symbols cached per collection, at most (1 MiB of symbols).
const MAX_CACHED_SYMBOLS: usize = 1 << 15;

/// Below this many ops a collection caches at most [`SMALL_CACHED_SYMBOLS`]; from it on, the
/// full [`MAX_CACHED_SYMBOLS`].
const FULL_CACHE_AT: u64 = 1 << 14;
const SMALL_CACHED_SYMBOLS: usize = 1 << 10;

/// The symbols cached for a collection of `n` ops: `n / 16` rounded up to a power of two,
/// between 64 and 1024, below [`FULL_CACHE_AT`] ops, and the full 32768 from there on. A
/// change of target drops the cache, which the next sketch rebuilds from every key, so the
/// target grows in few steps: the rebuilds of a collection that grows to `n` ops with
/// sketches all along cost about two passes over 16,384 keys, rather than a pass over
/// `n / 2` keys at every doubling.
fn cache_target(n: u64) -> usize {
    if n >= FULL_CACHE_AT {
        return MAX_CACHED_SYMBOLS;
    }
    usize::try_from(n / 16)
        .unwrap_or(usize::MAX)
        .next_power_of_two()
        .clamp(64, SMALL_CACHED_SYMBOLS)
}

#[derive(Clone, Debug, Default)]
struct CollectionIndex {
    trie: Trie,
    frontier: VersionVector,
    /// The first [`cache_target`] symbols of the collection's difference sketch: built from
    /// every key when a sketch first needs them ([`CollectionIndex::cached_sketch`]), then
    /// kept up to date on insert until the target grows, which drops them until the next
    /// sketch. A log that is only ever caught up never builds them.
    sketch: OnceLock<Vec<Symbol>>,
}

impl CollectionIndex {
    /// The cached symbols, built now if need be.
    fn cached_sketch(&self) -> &[Symbol] {
        self.sketch.get_or_init(|| sketch_cache_of(&self.trie))
    }

    /// After the trie took new keys, before they go into the cached symbols: drops them
    /// unless they are still the target (which only grows with the trie), so that what is
    /// left is brought up to date key by key.
    fn keep_sketch_if_target(sketch: &mut OnceLock<Vec<Symbol>>, trie: &Trie) {
        if sketch
            .get()
            .is_some_and(|s| s.len() != cache_target(trie.len()))
        {
            *sketch = OnceLock::new();
        }
    }

    /// Ids not covered by `vv`, in order.
    fn above(&self, vv: &VersionVector) -> Vec<Key> {
        let mut start: Option<Timestamp> = None;
        let mut any = false;
        for (replica, ts) in self.frontier.iter() {
            let theirs = vv.get(replica);
            if theirs.is_none_or(|t| t < ts) {
                any = true;
            }
            let from = theirs.unwrap_or(Timestamp::from_u64(0));
            start = Some(start.map_or(from, |s| s.min(from)));
        }
        let mut out = Vec::new();
        let Some(start) = start.filter(|_| any) else {
            return out;
        };
        let start = OpId::new(start, ReplicaId::new(0)).to_bytes();
        self.trie.for_each_from(&start, |k, _| {
            if !vv.covers(OpId::from_bytes(*k)) {
                out.push(*k);
            }
            true
        });
        out
    }
}

/// Records the ids `keys` holds (ascending) in `frontier`. Each replica's highest only comes
/// to the frontier's map: a small direct-mapped cache keeps the latest id of a few replicas
/// (by the last byte of the replica), and a slot's id is recorded when another replica takes
/// the slot, and at the end. So a batch of a few replicas costs a compare an id, not a map
/// lookup, and any other batch is still recorded whole.
fn observe_all(frontier: &mut VersionVector, keys: &[Key]) {
    let mut slots: [Option<OpId>; 8] = [None; 8];
    for key in keys {
        let id = OpId::from_bytes(*key);
        let slot = &mut slots[usize::from(key[15] & 7)];
        match slot {
            Some(held) if held.replica == id.replica => {
                if id.ts > held.ts {
                    held.ts = id.ts;
                }
            }
            _ => {
                if let Some(old) = slot.replace(id) {
                    frontier.observe(old);
                }
            }
        }
    }
    for id in slots.into_iter().flatten() {
        frontier.observe(id);
    }
}

/// The first [`cache_target`] sketch symbols of the keys of `trie`, in one pass over them.
fn sketch_cache_of(trie: &Trie) -> Vec<Symbol> {
    let mut s = vec![Symbol::default(); cache_target(trie.len())];
    trie.for_each_from(&[0; 16], |k, _| {
        sketch::add_item(&mut s, 0, k, 1);
        true
    });
    s
}

/// The Merkle index of an op log: for each collection, a tree over its op ids in `OpId` order
/// whose shape depends only on the set (a crit-bit trie over the 16 sortable id bytes), with
/// blake3 digests, the collection's frontier and the first symbols of its difference sketch.
///
/// The application keeps it beside its log and inserts every op that the log stores, from
/// local writes and from sync alike ([`Index::insert_op`]); sessions read it on every call.
/// Inserting costs O(log n) hashes; any range digest is O(log n).
///
/// The sketch symbols are cached per collection from the first sketch a session sends or
/// decodes over it, which builds them in one pass over the collection's ids (200-300 ns an id at the full
/// 32,768 symbols on a 2-core VM, about 20 symbol updates each); from then on an insert
/// keeps them up to date at about the same cost for its id. An index that is only ever
/// caught up (its peer's push completes it, so no sketch is sent) never pays for them.
/// [`Index::warm_sketches`] builds them ahead of time, off the path of a session.
#[derive(Clone, Debug, Default)]
pub struct Index {
    collections: BTreeMap<String, CollectionIndex>,
    len: u64,
    /// The largest key of any collection (zeros while empty): an id above it is in none, so
    /// a new op is checked against one key, not against every other collection.
    largest: Key,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes every op `ops` yields (for instance a store's scan), in bulk.
    pub fn from_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Self {
        let mut index = Self::new();
        index.extend(digested(ops));
        index
    }

    /// Builds the cached sketch symbols of every collection that lacks them, which the first
    /// sketch a session sends or decodes would otherwise build (see [`Index`]): for instance
    /// right after [`Index::from_ops`] at start-up, so that the first sync with scattered
    /// gaps does not wait on a pass over the log. Takes `&self`: the caches are built once,
    /// whichever thread asks first.
    pub fn warm_sketches(&self) {
        for c in self.collections.values() {
            c.cached_sketch();
        }
    }

    /// For tests: that every cached sketch is what a build from the collection's keys gives
    /// now, or the first collection whose cache is not. A stale cache would not show in
    /// roots or in synced logs, since a sketch that does not add up falls back to another
    /// round and then the descent.
    #[doc(hidden)]
    pub fn check_sketch_caches(&self) -> Result<(), String> {
        for (name, c) in &self.collections {
            let Some(cached) = c.sketch.get() else {
                continue;
            };
            if *cached != sketch_cache_of(&c.trie) {
                return Err(format!("collection {name:?}: the cached sketch is stale"));
            }
        }
        Ok(())
    }

    /// Indexes the op `id` of `collection` with its digest ([`op_digest`]). Returns false if it
    /// was already indexed.
    pub fn insert(&mut self, collection: &str, id: OpId, digest: Digest) -> bool {
        let key = id.to_bytes();
        if self.held_elsewhere(collection, id) {
            return false;
        }
        let c = Self::collection_in(&mut self.collections, collection);
        if !c.trie.insert(key, digest.0, true) {
            return false;
        }
        c.frontier.observe(id);
        self.largest = self.largest.max(key);
        CollectionIndex::keep_sketch_if_target(&mut c.sketch, &c.trie);
        if let Some(s) = c.sketch.get_mut() {
            sketch::add_item(s, 0, &key, 1);
        }
        self.len += 1;
        true
    }

    /// Indexes a stored op. Returns false if it was already indexed.
    pub fn insert_op(&mut self, op: &Op) -> bool {
        self.insert(&op.collection, op.id, op_digest(op))
    }

    /// Indexes many entries at once (a store's scan, or a batch received from a peer):
    /// digests are brought up to date once at the end, hashing each changed inner node once,
    /// so a batch of k ops costs about k hashes where they are adjacent in id order and at
    /// most k · depth where they are scattered. Returns how many were new.
    ///
    /// An id is one op: given twice, or already indexed in another collection (a forged or
    /// broken op), it stays where it was first indexed, as a log keeps the first op of an id.
    pub fn extend<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, OpId, Digest)>,
    ) -> u64 {
        // Per collection, sorted, so each trie takes its batch with overlapped walks.
        let mut batches: Vec<(&'a str, Vec<(Key, crate::trie::Hash)>)> = Vec::new();
        let mut position: BTreeMap<&'a str, usize> = BTreeMap::new();
        // Once a second collection comes, each entry's key and batch, in the order given.
        // While keys only rise (as a peer sends them, and as a scan reads them) no id can be
        // given twice, so `order` is not looked at.
        let mut order: Vec<(Key, usize)> = Vec::new();
        let mut rising = true;
        let mut previous: Option<Key> = None;
        for (collection, id, digest) in entries {
            let key = id.to_bytes();
            // Ops of one collection usually come together: try the last batch first.
            let at = match batches.last() {
                Some((c, _)) if *c == collection => batches.len() - 1,
                _ => *position.entry(collection).or_insert_with(|| {
                    batches.push((collection, Vec::new()));
                    batches.len() - 1
                }),
            };
            rising &= previous.is_none_or(|p| p < key);
            previous = Some(key);
            if batches.len() > 1 {
                if order.is_empty() {
                    // Until now every entry went to the first batch.
                    order = batches[0].1.iter().map(|e| (e.0, 0)).collect();
                }
                order.push((key, at));
            }
            batches[at].1.push((key, digest.0));
        }
        for (_, batch) in &mut batches {
            // Stable, so that of an id given twice the first digest wins, as in `insert`.
            batch.sort_by_key(|a| a.0);
            batch.dedup_by(|a, b| a.0 == b.0);
        }
        if !rising && batches.len() > 1 {
            Self::drop_given_elsewhere(&mut batches, order);
        }
        for (collection, batch) in &mut batches {
            // Against the index as it was before the batch.
            self.drop_held_elsewhere(collection, batch);
        }
        let mut added = 0;
        for (collection, batch) in batches {
            let c = Self::collection_in(&mut self.collections, collection);
            let CollectionIndex {
                trie,
                frontier,
                sketch,
            } = c;
            // The new keys go into the sketch after the trie's inserts, in one tight pass over
            // the cached symbols: interleaved with the trie's walks, the two evicted each
            // other's lines (one_side_empty's index_ms went from 1,077 to 893-947 ms).
            let mut fresh: Vec<Key> = Vec::new();
            trie.insert_sorted(&batch, |key| fresh.push(*key));
            observe_all(frontier, &fresh);
            if let Some(&last) = fresh.last() {
                // Sorted: the last is the batch's largest.
                self.largest = self.largest.max(last);
            }
            trie.refresh(); // nothing to do where no path is dirty
            CollectionIndex::keep_sketch_if_target(sketch, trie);
            if let Some(sketch) = sketch.get_mut() {
                for key in &fresh {
                    sketch::add_item(sketch, 0, key, 1);
                }
            }
            added += fresh.len() as u64;
        }
        self.len += added;
        added
    }

    /// Indexes a batch of stored ops (an [`Event::Ops`](crate::Event::Ops) once applied), as
    /// [`Index::extend`] does. Returns how many were new.
    pub fn insert_ops(&mut self, ops: &[Op]) -> u64 {
        self.extend(digested(ops))
    }

    /// Indexes a batch of ops as a peer sent them ([`Event::Ops`](crate::Event::Ops)), once
    /// stored, as [`Index::insert_ops`] does, but hashing their bytes as they are: no op is
    /// encoded (the batch's bytes are the one encoding of its ops, so the digests are those
    /// of [`op_digest`]). Returns how many were new.
    pub fn insert_encoded(&mut self, ops: &EncodedOps) -> u64 {
        // A digest is blake3 of the version byte, then the op's bytes. Each op's input is its
        // bytes with the batch's byte before them, read as the version byte, so nothing is
        // copied.
        let inputs: Vec<&[u8]> = ops.iter().map(|op| op.with_byte_before()).collect();
        let mut digests = vec![[0u8; 32]; inputs.len()];
        batch_hash::hash_many_first(&inputs, crdt_core::codec::FORMAT_VERSION, &mut digests);
        self.extend(
            ops.iter()
                .zip(digests)
                .map(|(op, d)| (op.collection(), op.id(), Digest(d))),
        )
    }

    /// Indexes the ops `ids` names from the log they were stored in (for instance the ids
    /// `Replica::apply_remote` reports applied, read through a
    /// [`StorageSource`](crate::StorageSource)): as [`Index::insert_ops`] on those ops, but
    /// from their stored bytes, read in one pass ([`OpSource::encoded_each`]) and hashed as
    /// they are, without decoding or encoding an op. Ids in any order, repeats allowed.
    /// Returns how many were new.
    ///
    /// An id the log does not hold, bytes that do not start like that op's, or a failed read
    /// is an error naming the op, and then nothing is indexed.
    pub fn insert_from(
        &mut self,
        source: &impl OpSource,
        ids: &[OpId],
    ) -> Result<u64, SourceError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        // Collections by number; ops of one collection usually come together.
        let mut names: Vec<String> = Vec::new();
        let mut numbers: BTreeMap<String, usize> = BTreeMap::new();
        let mut last = None;
        let mut entries: Vec<(usize, OpId, Digest)> = Vec::with_capacity(ids.len());
        let mut leaves = Leaves::default();
        let mut failed = None;
        let fail = |id: OpId, why: Box<dyn std::error::Error + Send + Sync>| SourceError {
            id,
            source: why,
        };
        source.encoded_each(&mut ids.iter().copied(), &mut |id, bytes| {
            let Some(bytes) = bytes else {
                failed = Some(fail(id, "the log does not hold it".into()));
                return false;
            };
            let collection = match crdt_core::codec::op_id_and_collection(&bytes) {
                Ok((got, collection)) if got == id => collection,
                Ok((got, _)) => {
                    failed = Some(fail(id, format!("the log gave the bytes of {got}").into()));
                    return false;
                }
                Err(e) => {
                    failed = Some(fail(id, Box::new(e)));
                    return false;
                }
            };
            let name = match last {
                Some(n) if names[n] == collection => n,
                _ => *numbers.entry(collection.to_owned()).or_insert_with(|| {
                    names.push(collection.to_owned());
                    names.len() - 1
                }),
            };
            last = Some(name);
            leaves.push(&mut entries, name, id, &bytes);
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        leaves.finish(&mut entries);
        Ok(self.extend(
            entries
                .iter()
                .map(|&(name, id, digest)| (names[name].as_str(), id, digest)),
        ))
    }

    /// Drops from the batches (each sorted, without repeats) every id given before in another
    /// batch: `order` holds each entry's key and batch as given. Stably sorted by key, the
    /// entries of an id come in the order given, so the first names the batch that keeps it.
    fn drop_given_elsewhere(
        batches: &mut [(&str, Vec<(Key, crate::trie::Hash)>)],
        mut order: Vec<(Key, usize)>,
    ) {
        order.sort_by_key(|e| e.0);
        let mut drop: Vec<(usize, Key)> = order
            .chunk_by(|a, b| a.0 == b.0)
            .flat_map(|run| {
                let first = run[0].1;
                run.iter().filter(move |e| e.1 != first).map(|e| (e.1, e.0))
            })
            .collect();
        if drop.is_empty() {
            return;
        }
        drop.sort_unstable();
        drop.dedup();
        for (at, (_, batch)) in batches.iter_mut().enumerate() {
            let lo = drop.partition_point(|d| d.0 < at);
            let hi = drop.partition_point(|d| d.0 <= at);
            let gone = &drop[lo..hi];
            if !gone.is_empty() {
                batch.retain(|e| gone.binary_search_by_key(&e.0, |d| d.1).is_err());
            }
        }
    }

    /// Whether a collection other than `collection` holds `id`: a second op with one id (a
    /// forgery, or a broken peer) that the log does not keep either. Only a collection whose
    /// frontier covers the id can hold it, and none can hold an id above the index's largest
    /// key, as a new local write is: that one compare spares the look at every collection.
    fn held_elsewhere(&self, collection: &str, id: OpId) -> bool {
        if id.to_bytes() > self.largest {
            return false;
        }
        self.collections.iter().any(|(name, c)| {
            name != collection && c.frontier.covers(id) && c.trie.contains(&id.to_bytes())
        })
    }

    /// Drops from `batch` (sorted keys of `collection`) the ids another collection holds, as
    /// [`Index::held_elsewhere`] for each, but looking up only the keys up to each other
    /// collection's largest: none, for a batch that extends the log at its tail, which the
    /// index's largest key tells without looking at any collection.
    fn drop_held_elsewhere(&self, collection: &str, batch: &mut Vec<(Key, crate::trie::Hash)>) {
        if batch.first().is_none_or(|e| e.0 > self.largest) {
            return;
        }
        for (name, c) in &self.collections {
            let Some(last) = c.trie.last().filter(|_| name != collection) else {
                continue;
            };
            let n = batch.partition_point(|e| e.0 <= *last);
            if n == 0 {
                continue;
            }
            let keys: Vec<Key> = batch[..n].iter().map(|e| e.0).collect();
            let held = c.trie.contains_many(&keys);
            let mut i = 0;
            batch.retain(|_| {
                i += 1;
                !held.get(i - 1).copied().unwrap_or(false)
            });
        }
    }

    /// `collection`'s index in `collections`, made empty if it has none.
    fn collection_in<'c>(
        collections: &'c mut BTreeMap<String, CollectionIndex>,
        collection: &str,
    ) -> &'c mut CollectionIndex {
        if !collections.contains_key(collection) {
            collections.insert(collection.to_owned(), CollectionIndex::default());
        }
        collections
            .get_mut(collection)
            .expect("inserted just above")
    }

    /// Ops indexed, in every collection.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether op `id` of `collection` is indexed.
    pub fn contains(&self, collection: &str, id: OpId) -> bool {
        self.collections
            .get(collection)
            .is_some_and(|c| c.trie.contains(&id.to_bytes()))
    }

    /// The collection in `scope` that holds `id`, if any.
    pub fn find<'a>(&self, scope: &'a Scope, id: OpId) -> Option<&'a str> {
        let key = id.to_bytes();
        scope.iter().find(|name| {
            self.collections
                .get(*name)
                .is_some_and(|c| c.trie.contains(&key))
        })
    }

    /// For each of `ids`, whether a collection in `scope` holds it: [`Index::find`] for many
    /// ids at once, with the trie walks overlapped (a walk is a chain of cache misses).
    pub fn held_in_scope(&self, scope: &Scope, ids: &[OpId]) -> Vec<bool> {
        let keys: Vec<Key> = ids.iter().map(|id| id.to_bytes()).collect();
        let mut held = vec![false; ids.len()];
        for name in scope.iter() {
            if let Some(c) = self.collections.get(name) {
                for (h, found) in held.iter_mut().zip(c.trie.contains_many(&keys)) {
                    *h |= found;
                }
            }
        }
        held
    }

    /// The digest and count of the ops of `collection` whose id bytes start with the first
    /// `bits` bits of `prefix` (`bits` at most 128): the root of the canonical tree of that
    /// range, found in O(log n). `None` when the range is empty.
    pub fn range_digest(
        &self,
        collection: &str,
        prefix: [u8; 16],
        bits: u8,
    ) -> Option<(Digest, u64)> {
        let c = self.collections.get(collection)?;
        c.trie
            .range(&prefix, bits.min(128))
            .map(|(d, n)| (Digest(d), n))
    }

    /// One key, the first differing bit (128 for one key) and the count of the ops of
    /// `collection` under the first `bits` bits of `prefix`.
    pub(crate) fn range_shape(
        &self,
        collection: &str,
        prefix: &Key,
        bits: u8,
    ) -> Option<(Key, u8, u64)> {
        self.collections
            .get(collection)?
            .trie
            .range_shape(prefix, bits.min(128))
    }

    /// Calls `f`, in order, on every id of `collection` that is `>= start` and under the first
    /// `bits` bits of `prefix`. O(depth + ids visited).
    pub(crate) fn for_each_in(
        &self,
        collection: &str,
        prefix: &Key,
        bits: u8,
        start: &Key,
        mut f: impl FnMut(&Key) -> bool,
    ) {
        let Some(c) = self.collections.get(collection) else {
            return;
        };
        let lo = crate::trie::mask(prefix, bits);
        let from = if *start > lo { *start } else { lo };
        c.trie.for_each_from(&from, |k, _| {
            if !crate::trie::same_prefix(k, prefix, bits) {
                return false;
            }
            f(k)
        });
    }

    /// Ops in scope.
    pub fn count(&self, scope: &Scope) -> u64 {
        self.in_scope(scope).map(|(_, c)| c.trie.len()).sum()
    }

    /// The root digest of the ops in scope: blake3 over each non-empty collection's name,
    /// count and tree root. Equal sets give equal roots, whatever the order of arrival.
    pub fn root(&self, scope: &Scope) -> Digest {
        self.root_with(scope, |_, c| c.trie.root())
    }

    /// The frontier of the ops in scope.
    pub fn frontier(&self, scope: &Scope) -> VersionVector {
        let mut vv = VersionVector::new();
        for (_, c) in self.in_scope(scope) {
            vv.join(&c.frontier);
        }
        vv
    }

    /// The collections of `scope` that the index holds, in name order. A scope of a few
    /// collections looks each up; a scope of many walks the scope and the index side by side
    /// (both sorted by name bytes), so that a scope of thousands of collections costs a
    /// step each, not a lookup of string compares each: sessions ask for the root after every
    /// message.
    fn in_scope<'a>(&'a self, scope: &'a Scope) -> InScope<'a> {
        // A lookup costs about log2(collections) compares; a step of the walk one.
        let lookups = scope.names.len() * (self.collections.len().max(2).ilog2() as usize);
        if lookups <= self.collections.len() + scope.names.len() {
            InScope::Lookups {
                names: scope.names.iter(),
                collections: &self.collections,
            }
        } else {
            InScope::Walk {
                names: scope.names.iter().peekable(),
                collections: self.collections.iter().peekable(),
            }
        }
    }

    fn root_with(
        &self,
        scope: &Scope,
        mut root: impl FnMut(&str, &CollectionIndex) -> Option<([u8; 32], u64)>,
    ) -> Digest {
        // The whole input first, then one hash: the crate hashes the chunks of one long input
        // several at a time, but the small updates of a stream one block at a time.
        const PREFIX: &[u8] = b"weft-sync/1 root\0";
        let mut input = Vec::with_capacity(PREFIX.len() + 64);
        input.extend_from_slice(PREFIX);
        for (name, c) in self.in_scope(scope) {
            if let Some((digest, count)) = root(name, c) {
                input.extend_from_slice(&(name.len() as u64).to_le_bytes());
                input.extend_from_slice(name.as_bytes());
                input.extend_from_slice(&count.to_le_bytes());
                input.extend_from_slice(&digest);
            }
        }
        Digest(*blake3::hash(&input).as_bytes())
    }

    /// The ops in scope that `vv` does not cover, by collection, each list in id order.
    pub(crate) fn above(&self, scope: &Scope, vv: &VersionVector) -> Vec<(String, Vec<Key>)> {
        self.in_scope(scope)
            .map(|(n, c)| (n.to_owned(), c.above(vv)))
            .filter(|(_, keys)| !keys.is_empty())
            .collect()
    }

    /// The root the scope would have without `excluded` (as [`Index::above`] returns it).
    pub(crate) fn root_without(&self, scope: &Scope, excluded: &[(String, Vec<Key>)]) -> Digest {
        self.root_with(scope, |name, c| {
            let ex = excluded
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&[][..], |(_, k)| k.as_slice());
            let (_, count) = c.trie.root()?;
            let digest = c.trie.root_without(ex)?;
            Some((digest, count - ex.len() as u64))
        })
    }

    /// The local side of one sketch over the ops in scope that `cut` covers, for
    /// [`Index::sketch`]: the ids above the cut, listed once.
    pub(crate) fn local_sketch(&self, scope: &Scope, cut: &VersionVector) -> LocalSketch {
        LocalSketch {
            above: self
                .in_scope(scope)
                .flat_map(|(_, c)| c.above(cut))
                .collect(),
            floor: self
                .in_scope(scope)
                .map(|(_, c)| c.cached_sketch().len() as u64)
                .min()
                .unwrap_or(0),
            tail: Vec::new(),
            walks: 0,
        }
    }

    /// Symbols `start..start + len` of the sketch `local` describes, at most `budget` symbols
    /// into the stream. Below `local.floor` (the shortest cache of the collections in scope)
    /// the symbols are the sum of the collections' caches; from there on they come from
    /// `local`'s tail, the sum over the scope, which a walk over every collection extends to
    /// at least twice its end when a request passes it (never past `budget`, unless the
    /// request does): a sketch costs a few walks however the peer slices its requests, and
    /// keeps at most `budget` symbols whatever the number of collections. The index must
    /// not change while `local` is in use.
    pub(crate) fn sketch(
        &self,
        scope: &Scope,
        local: &mut LocalSketch,
        start: u64,
        len: usize,
        budget: u64,
    ) -> Vec<Symbol> {
        let mut out = vec![Symbol::default(); len];
        let end = start.saturating_add(len as u64);
        let floor = local.floor;
        if start < floor {
            let upto = end.min(floor);
            for (_, c) in self.in_scope(scope) {
                // Every in-scope collection caches at least `floor` symbols.
                let cached = &c.cached_sketch()[start as usize..upto as usize];
                for (o, s) in out.iter_mut().zip(cached) {
                    *o = o.plus(s);
                }
            }
        }
        if end > floor {
            let have = floor + local.tail.len() as u64;
            if end > have {
                let target = end.max(have.saturating_mul(2)).min(budget.max(end));
                let mut block = vec![Symbol::default(); (target - have) as usize];
                for (_, c) in self.in_scope(scope) {
                    c.trie.for_each_from(&[0; 16], |k, _| {
                        sketch::add_item(&mut block, have, k, 1);
                        true
                    });
                }
                local.tail.extend(block);
                local.walks += 1;
            }
            let from = start.max(floor);
            let at = (from - floor) as usize;
            let take = (end - from) as usize;
            for (o, s) in out[(from - start) as usize..]
                .iter_mut()
                .zip(&local.tail[at..at + take])
            {
                *o = o.plus(s);
            }
        }
        for k in &local.above {
            sketch::add_item(&mut out, start, k, -1);
        }
        out
    }
}

/// What [`Index::sketch`] keeps for one sketch: the in-scope ids above its cut, and the
/// symbols from `floor` (the shortest cache in scope) on that walks computed.
#[derive(Clone, Debug, Default)]
pub(crate) struct LocalSketch {
    above: Vec<Key>,
    floor: u64,
    tail: Vec<Symbol>,
    /// Walks over the scope made to extend the tail.
    walks: u32,
}

/// The collections of a scope that an index holds ([`Index::in_scope`]).
enum InScope<'a> {
    /// Each name of the scope looked up.
    Lookups {
        names: std::slice::Iter<'a, String>,
        collections: &'a BTreeMap<String, CollectionIndex>,
    },
    /// The scope's names and the index's collections walked side by side.
    Walk {
        names: std::iter::Peekable<std::slice::Iter<'a, String>>,
        collections:
            std::iter::Peekable<std::collections::btree_map::Iter<'a, String, CollectionIndex>>,
    },
}

impl<'a> Iterator for InScope<'a> {
    type Item = (&'a str, &'a CollectionIndex);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            InScope::Lookups { names, collections } => names
                .by_ref()
                .find_map(|n| collections.get(n).map(|c| (n.as_str(), c))),
            InScope::Walk { names, collections } => loop {
                let (name, (held, c)) = (*names.peek()?, *collections.peek()?);
                match name.as_bytes().cmp(held.as_bytes()) {
                    std::cmp::Ordering::Less => {
                        names.next();
                    }
                    std::cmp::Ordering::Greater => {
                        collections.next();
                    }
                    std::cmp::Ordering::Equal => {
                        names.next();
                        collections.next();
                        return Some((held.as_str(), c));
                    }
                }
            },
        }
    }
}

/// The pointwise minimum of two frontiers: what both certainly cover.
pub(crate) fn meet(a: &VersionVector, b: &VersionVector) -> VersionVector {
    a.iter()
        .filter_map(|(r, ts)| b.get(r).map(|t| OpId::new(ts.min(t), r)))
        .fold(VersionVector::new(), |mut vv, id| {
            vv.observe(id);
            vv
        })
}

#[cfg(test)]
mod tests;
