//! A crit-bit Merkle trie over 16-byte keys (sortable `OpId` bytes).
//!
//! The shape is a function of the set of keys alone: an inner node exists exactly where two
//! keys first differ, at that bit, so equal sets give equal digests whatever the insertion
//! order. A leaf's digest is the op digest it was given; an inner node's is blake3 keyed by
//! the bit (see [`inner_digest`]) over `left ‖ right`. Depth is bounded by the key width (128 bits) and is
//! about `log2 n` for keys spread like timestamps.

use crate::arena::Arena;
use crate::batch_hash::{self, Job};

/// A 32-byte blake3 digest.
pub(crate) type Hash = [u8; 32];

/// A trie key: the 16 sortable bytes of an `OpId`.
pub(crate) type Key = [u8; 16];

/// A child reference: leaves have the top bit set.
type Ref = u32;
const LEAF: Ref = 1 << 31;
const NONE: Ref = u32::MAX;

/// Walks done in lockstep by [`Trie::closest_many`].
const LANES: usize = 8;

/// Bit `i` (0 = most significant) of `key`.
pub(crate) fn bit(key: &Key, i: u8) -> usize {
    usize::from((key[usize::from(i / 8)] >> (7 - i % 8)) & 1)
}

/// The first bit where `a` and `b` differ, or `None` when they are equal.
fn crit_bit(a: &Key, b: &Key) -> Option<u8> {
    let (x, y) = (u128::from_be_bytes(*a), u128::from_be_bytes(*b));
    let diff = x ^ y;
    // At most 127, so the cast is lossless.
    (diff != 0).then(|| diff.leading_zeros() as u8)
}

/// Whether `a` and `b` agree on their first `bits` bits.
pub(crate) fn same_prefix(a: &Key, b: &Key, bits: u8) -> bool {
    crit_bit(a, b).is_none_or(|c| c >= bits)
}

/// `key` with every bit from `bits` on cleared.
pub(crate) fn mask(key: &Key, bits: u8) -> Key {
    let x = u128::from_be_bytes(*key);
    let m = if bits >= 128 {
        u128::MAX
    } else {
        !(u128::MAX >> bits)
    };
    (x & m).to_be_bytes()
}

/// `key` with bits `at..at + width` (width at most 8, `at + width` at most 128) set to `value`.
pub(crate) fn with_bits(key: &Key, at: u8, width: u8, value: u8) -> Key {
    if width == 0 {
        return *key;
    }
    let shift = 128 - u32::from(at) - u32::from(width);
    let field = (u128::from(value) & ((1u128 << width) - 1)) << shift;
    let clear = ((1u128 << width) - 1) << shift;
    ((u128::from_be_bytes(*key) & !clear) | field).to_be_bytes()
}

/// Asks the CPU to start loading the cache line of `value` (into L2), without waiting for it.
#[inline(always)]
#[allow(
    unsafe_code,
    reason = "a prefetch hint reads nothing and cannot fault, whatever the address"
)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has; it is a hint that
    // touches no memory visible to the program.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T1>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The blake3 key of inner-node digests; its last byte is replaced by the node's bit.
const INNER_KEY: [u8; 32] = *b"weft-sync/2 inner node, bit #\0\0\0";

/// The digest of an inner node: blake3 keyed by [`INNER_KEY`] with the bit in its last byte,
/// over the two child digests. 64 bytes of input are a single compression (twice as cheap as
/// hashing a bit and two digests in plain mode), and the keyed mode keeps inner digests apart
/// from leaf digests, which are plain blake3 of an op's bytes.
fn inner_digest(bit: u8, left: &Hash, right: &Hash) -> Hash {
    batch_hash::keyed_one(&INNER_KEY, bit, &pair(left, right))
}

/// `left ‖ right`, the input of an inner digest.
fn pair(left: &Hash, right: &Hash) -> [u8; 64] {
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(left);
    input[32..].copy_from_slice(right);
    input
}

/// The part of an inner node that a walk down reads: 12 bytes, so that the nodes of a large
/// trie stay in cache where a walk touches one per level.
#[derive(Clone, Copy, Debug)]
struct Node {
    children: [Ref; 2],
    bit: u8,
    /// The digest and count in [`Summary`] are out of date.
    dirty: bool,
}

/// The part of an inner node that only digest and count queries read.
#[derive(Clone, Copy, Debug)]
struct Summary {
    digest: Hash,
    /// Keys below (at most 2^31).
    count: u32,
}

/// The trie. Leaves and inner nodes live in parallel arenas (keys apart from digests, walk
/// data apart from summaries) that grow by chunks, so inserting never copies the trie;
/// nothing is ever removed (the log only grows).
///
/// Every insert but the first adds one leaf and one inner node, the new leaf's parent, so
/// inner node `i` came with leaf `i + 1`. A subtree only ever gains keys, so that leaf stays
/// below node `i`, and its key carries the prefix all keys below share: no node stores one.
#[derive(Clone, Debug)]
pub(crate) struct Trie {
    keys: Arena<Key>,
    leaf_digests: Arena<Hash>,
    nodes: Arena<Node>,
    sums: Arena<Summary>,
    root: Ref,
    /// The inner nodes marked dirty since the last [`Trie::refresh`], each once, so that a
    /// refresh need not search the trie for them.
    dirty: Vec<Ref>,
    /// Every key came above all keys before it, so the leaf arena is in key order, and
    /// [`Trie::for_each_from`] reads it in sequence instead of walking the trie. So it is for
    /// a log that only one replica wrote, and for an index filled from empty by a peer (a
    /// push comes in id order). The first key that comes below another clears it for good.
    in_order: bool,
    /// The largest key held (zeros while empty).
    largest: Key,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            keys: Arena::default(),
            leaf_digests: Arena::default(),
            nodes: Arena::default(),
            sums: Arena::default(),
            root: NONE,
            dirty: Vec::new(),
            in_order: true,
            largest: [0; 16],
        }
    }
}

impl Trie {
    /// Keys held.
    pub(crate) fn len(&self) -> u64 {
        self.keys.len() as u64
    }

    fn key_of(&self, r: Ref) -> &Key {
        if r & LEAF != 0 {
            &self.keys[(r & !LEAF) as usize]
        } else {
            // Inner node i came with leaf i + 1, which is below it (see `Trie`).
            &self.keys[r as usize + 1]
        }
    }

    fn digest_of(&self, r: Ref) -> &Hash {
        if r & LEAF != 0 {
            &self.leaf_digests[(r & !LEAF) as usize]
        } else {
            &self.sums[r as usize].digest
        }
    }

    fn count_of(&self, r: Ref) -> u64 {
        if r & LEAF != 0 {
            1
        } else {
            u64::from(self.sums[r as usize].count)
        }
    }

    /// The leaf a walk down after `key` ends at (the trie is not empty).
    fn closest(&self, key: &Key) -> Ref {
        let mut r = self.root;
        while r & LEAF == 0 {
            let n = &self.nodes[r as usize];
            r = n.children[bit(key, n.bit)];
        }
        r
    }

    /// For each of `keys`, the leaf a walk down ends at (the trie is not empty). Walks
    /// [`LANES`] keys in lockstep so that their loads, each one level down a different path,
    /// overlap instead of waiting on each other: a walk is a chain of dependent loads, most of
    /// them cache misses in a large trie.
    fn closest_many(&self, keys: &[Key]) -> Vec<Ref> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LANES) {
            let mut refs = [self.root; LANES];
            let refs = &mut refs[..chunk.len()];
            loop {
                let mut active = false;
                for (r, key) in refs.iter_mut().zip(chunk) {
                    if *r & LEAF == 0 {
                        let n = &self.nodes[*r as usize];
                        *r = n.children[bit(key, n.bit)];
                        active = true;
                    }
                }
                if !active {
                    break;
                }
            }
            out.extend_from_slice(refs);
        }
        out
    }

    /// The largest key held.
    pub(crate) fn last(&self) -> Option<&Key> {
        (self.root != NONE).then_some(&self.largest)
    }

    /// Whether `key` is held.
    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.root != NONE && self.key_of(self.closest(key)) == key
    }

    /// Whether each of `keys` is held, as [`Trie::contains`] but with the walks overlapped.
    pub(crate) fn contains_many(&self, keys: &[Key]) -> Vec<bool> {
        if self.root == NONE {
            return vec![false; keys.len()];
        }
        self.closest_many(keys)
            .into_iter()
            .zip(keys)
            .map(|(r, k)| self.key_of(r) == k)
            .collect()
    }

    /// Inserts `key` with its leaf digest. Returns false if it was already there. With
    /// `eager`, the digests and counts on the path are recomputed at once (O(depth) hashes);
    /// otherwise they are marked dirty, and stale until [`Trie::refresh`].
    pub(crate) fn insert(&mut self, key: Key, digest: Hash, eager: bool) -> bool {
        if self.root == NONE {
            self.push_first(key, digest);
            return true;
        }
        // Find the closest key, then where the new inner node goes.
        let Some(crit) = crit_bit(&key, self.key_of(self.closest(&key))) else {
            return false;
        };
        self.insert_below(key, digest, crit, &mut Vec::with_capacity(32), eager);
        true
    }

    /// Inserts a batch, as [`Trie::insert`] without `eager` (dirty paths, for
    /// [`Trie::refresh`]): `entries` must be sorted by key without duplicates. Calls `new` on
    /// each key that was not held.
    ///
    /// A key's split point in the growing trie is the later of its split from the closest
    /// key held before the batch and from the batch key inserted just before it (keys are
    /// sorted, so that one shares the longest prefix with it among the batch's). The closest
    /// held key of a batch key above every held key is the largest held key (the shared
    /// prefix only shrinks further down), so only the keys below it need a walk; those walks
    /// are done first, overlapped ([`Trie::closest_many`]), on the trie as it was. Each
    /// insert then starts its walk down where the previous key's path leaves its own: both
    /// take the same way through every node that splits before the bit where they differ.
    /// A batch that extends the log at its end thus costs a few node visits a key.
    pub(crate) fn insert_sorted(&mut self, entries: &[(Key, Hash)], mut new: impl FnMut(&Key)) {
        debug_assert!(
            entries.windows(2).all(|w| w[0].0 < w[1].0),
            "insert_sorted takes sorted keys without duplicates"
        );
        let mut rest = entries;
        let mut prev: Option<Key> = None;
        if self.root == NONE {
            let Some(((key, digest), tail)) = entries.split_first() else {
                return;
            };
            self.push_first(*key, *digest);
            new(key);
            prev = Some(*key);
            rest = tail;
        }
        let largest = self.largest;
        let below = rest.partition_point(|e| e.0 <= largest);
        let keys: Vec<Key> = rest[..below].iter().map(|e| e.0).collect();
        let closest = self.closest_many(&keys);
        let mut path = Vec::with_capacity(64);
        for (i, (key, digest)) in rest.iter().enumerate() {
            let held = closest.get(i).map_or(largest, |&r| *self.key_of(r));
            let Some(mut crit) = crit_bit(key, &held) else {
                continue; // held before the batch
            };
            match prev.as_ref().and_then(|p| crit_bit(key, p)) {
                Some(shared) => {
                    crit = crit.max(shared);
                    while path
                        .last()
                        .is_some_and(|&r: &Ref| self.nodes[r as usize].bit >= shared)
                    {
                        path.pop();
                    }
                }
                None => path.clear(),
            }
            self.insert_below(*key, *digest, crit, &mut path, false);
            new(key);
            prev = Some(*key);
        }
    }

    /// The first key of an empty trie.
    fn push_first(&mut self, key: Key, digest: Hash) {
        self.largest = key;
        self.keys.push(key);
        self.leaf_digests.push(digest);
        self.root = LEAF;
    }

    /// Inserts `key`, which is not held and first differs from the keys it would sit beside at
    /// bit `crit`, under a new inner node at that bit. `path` holds the first nodes of the
    /// key's way down from the root (every one splitting before `crit`, already marked dirty
    /// unless `eager`), possibly none; the walk goes on from the last of them, and leaves
    /// `path` holding the whole way down to the new inner node.
    fn insert_below(&mut self, key: Key, digest: Hash, crit: u8, path: &mut Vec<Ref>, eager: bool) {
        let leaf_index = u32::try_from(self.keys.len()).expect("fewer than 2^31 ops a trie");
        assert!(leaf_index < LEAF, "fewer than 2^31 ops a trie");
        // Every node on the way down gains the key.
        let mut r = match path.last() {
            Some(&p) => {
                let n = &self.nodes[p as usize];
                n.children[bit(&key, n.bit)]
            }
            None => self.root,
        };
        while r & LEAF == 0 {
            let n = &mut self.nodes[r as usize];
            if n.bit > crit {
                break;
            }
            if !n.dirty && !eager {
                self.dirty.push(r);
            }
            n.dirty = true;
            path.push(r);
            let side = bit(&key, n.bit);
            let (next, sibling) = (n.children[side], n.children[1 - side]);
            // The refresh reads this node's summary and the sibling's digest: ask for both
            // lines now, while the walk waits on its next node anyway.
            prefetch(self.digest_of(r));
            prefetch(self.digest_of(sibling));
            r = next;
        }
        prefetch(self.digest_of(r));
        // Not the first key (that one went in through `push_first`), so `largest` is a key.
        if key > self.largest {
            self.largest = key;
        } else {
            self.in_order = false;
        }
        self.keys.push(key);
        self.leaf_digests.push(digest);
        let new_leaf = leaf_index | LEAF;
        // Chosen in registers: two halves stored apart and read back as one node is a
        // store-forwarding stall, which was a third of this function's time.
        let children = if bit(&key, crit) == 0 {
            [new_leaf, r]
        } else {
            [r, new_leaf]
        };
        let new_inner = u32::try_from(self.nodes.len()).expect("fewer than 2^31 inner nodes");
        debug_assert_eq!(
            new_inner + 1,
            leaf_index,
            "inner node i comes with leaf i + 1"
        );
        self.nodes.push(Node {
            children,
            bit: crit,
            dirty: true,
        });
        self.sums.push(Summary {
            digest: [0; 32],
            count: 0,
        });
        match path.last() {
            None => self.root = new_inner,
            Some(&p) => {
                let n = &mut self.nodes[p as usize];
                n.children[bit(&key, n.bit)] = new_inner;
            }
        }
        if eager {
            self.recompute(new_inner);
            for &p in path.iter().rev() {
                self.recompute(p);
            }
        } else {
            self.dirty.push(new_inner);
        }
        path.push(new_inner);
    }

    /// Brings the digest and count of inner node `i` up to date from its children's.
    fn recompute(&mut self, i: u32) {
        let n = self.nodes[i as usize];
        let [a, b] = n.children;
        let digest = inner_digest(n.bit, self.digest_of(a), self.digest_of(b));
        self.set_summary(i, digest);
    }

    /// Stores inner node `i`'s new digest, brings its count up to date from its children's
    /// and clears its dirty flag.
    fn set_summary(&mut self, i: u32, digest: Hash) {
        let [a, b] = self.nodes[i as usize].children;
        // Both counts are below 2^31 (the leaf arena's bound), so the sum fits.
        let count = (self.count_of(a) + self.count_of(b)) as u32;
        let s = &mut self.sums[i as usize];
        s.digest = digest;
        s.count = count;
        self.nodes[i as usize].dirty = false;
    }

    /// Recomputes every dirty digest (after lazy inserts; an eager insert must not come
    /// between lazy ones and the refresh).
    pub(crate) fn refresh(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        // Children before parents: a child splits at a later bit than its parent, so ordering
        // by bit, latest first (a counting sort over the 128 bits), is enough.
        let dirty = std::mem::take(&mut self.dirty);
        let mut starts = [0usize; 129];
        for &i in &dirty {
            starts[usize::from(127 - self.nodes[i as usize].bit.min(127)) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut order = vec![0; dirty.len()];
        for &i in &dirty {
            let slot = &mut starts[usize::from(127 - self.nodes[i as usize].bit.min(127))];
            order[*slot] = i;
            *slot += 1;
        }
        // Each recompute reads its children's digests and writes its own summary, usually
        // cache misses after scattered inserts (which prefetch them; see `insert_below`, but
        // a line may have left the cache since). Touching the lines of a block of nodes first,
        // in a loop of loads that nothing else waits on, lets their misses overlap; the
        // recomputes then find them cached. A block, not the whole list: in a large batch the
        // first lines would leave the cache before their turn. (Touching a node a few steps
        // ahead inside the hashing loop does not help: a load that misses holds up the
        // hashing behind it until it completes.)
        //
        // Nodes that split at the same bit are independent (a node's children split later),
        // and the order keeps them together: each such run of a block is hashed as one batch,
        // sixteen nodes at a time where the CPU allows ([`batch_hash`]).
        const BLOCK: usize = 256;
        let mut jobs = Vec::with_capacity(BLOCK);
        let mut digests = vec![[0u8; 32]; BLOCK];
        for block in order.chunks(BLOCK) {
            let mut touched = 0u8;
            for &i in block {
                touched ^= self.sums[i as usize].digest[0];
                for c in self.nodes[i as usize].children {
                    touched ^= self.digest_of(c)[0];
                }
            }
            std::hint::black_box(touched);
            let mut rest = block;
            while let Some(&first) = rest.first() {
                let bit = self.nodes[first as usize].bit;
                let len = rest
                    .iter()
                    .position(|&i| self.nodes[i as usize].bit != bit)
                    .unwrap_or(rest.len());
                let (run, after) = rest.split_at(len);
                jobs.clear();
                jobs.extend(run.iter().map(|&i| {
                    let [a, b] = self.nodes[i as usize].children;
                    Job {
                        bit,
                        input: pair(self.digest_of(a), self.digest_of(b)),
                    }
                }));
                let out = &mut digests[..run.len()];
                batch_hash::keyed_many(&INNER_KEY, &jobs, out);
                for (&i, digest) in run.iter().zip(out.iter()) {
                    self.set_summary(i, *digest);
                }
                rest = after;
            }
        }
        // Keep the allocation for the next batch.
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// The root digest and count, `None` when empty. Requires no dirty nodes.
    pub(crate) fn root(&self) -> Option<(Hash, u64)> {
        (self.root != NONE).then(|| (*self.digest_of(self.root), self.count_of(self.root)))
    }

    /// The digest and count of the keys whose first `bits` bits equal `prefix`'s: the
    /// canonical digest of that subset, found in O(depth).
    pub(crate) fn range(&self, prefix: &Key, bits: u8) -> Option<(Hash, u64)> {
        let r = self.subtree(prefix, bits)?;
        Some((*self.digest_of(r), self.count_of(r)))
    }

    /// For the keys under the first `bits` bits of `prefix`: one of them, the first bit at
    /// which they differ (128 for a single key) and their count. O(depth).
    pub(crate) fn range_shape(&self, prefix: &Key, bits: u8) -> Option<(Key, u8, u64)> {
        let r = self.subtree(prefix, bits)?;
        let crit = if r & LEAF == 0 {
            self.nodes[r as usize].bit
        } else {
            128
        };
        Some((*self.key_of(r), crit, self.count_of(r)))
    }

    /// The node holding exactly the keys whose first `bits` bits equal `prefix`'s, if any:
    /// walk down while the node splits above `bits`, then check one key's prefix. O(depth).
    fn subtree(&self, prefix: &Key, bits: u8) -> Option<Ref> {
        let mut r = self.root;
        if r == NONE {
            return None;
        }
        while r & LEAF == 0 {
            let n = &self.nodes[r as usize];
            if n.bit >= bits {
                break;
            }
            r = n.children[bit(prefix, n.bit)];
        }
        same_prefix(self.key_of(r), prefix, bits).then_some(r)
    }

    /// The root digest of the set without `excluded` (sorted keys, all held), in
    /// O(|excluded| · depth) hashes, without changing the trie.
    pub(crate) fn root_without(&self, excluded: &[Key]) -> Option<Hash> {
        (self.root != NONE)
            .then(|| self.without(self.root, excluded))
            .flatten()
    }

    fn without(&self, r: Ref, excluded: &[Key]) -> Option<Hash> {
        if excluded.is_empty() {
            return Some(*self.digest_of(r));
        }
        if excluded.len() as u64 >= self.count_of(r) {
            // Every key below is excluded (they are all held): the whole subtree goes.
            return None;
        }
        // A leaf has a count of 1, so only inner nodes get here.
        let n = &self.nodes[r as usize];
        let split = excluded.partition_point(|k| bit(k, n.bit) == 0);
        let (l, rr) = excluded.split_at(split);
        match (
            self.without(n.children[0], l),
            self.without(n.children[1], rr),
        ) {
            (Some(a), Some(b)) => Some(inner_digest(n.bit, &a, &b)),
            (a, b) => a.or(b),
        }
    }

    /// Calls `f` on every key `>= start` in order, with its leaf digest, until it returns
    /// false. O(depth + keys visited).
    pub(crate) fn for_each_from(&self, start: &Key, mut f: impl FnMut(&Key, &Hash) -> bool) {
        if self.root == NONE {
            return;
        }
        if self.in_order {
            // The first key >= start, by bisection, then the arena in sequence.
            let (mut lo, mut hi) = (0, self.keys.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if self.keys[mid] < *start {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            for i in lo..self.keys.len() {
                if !f(&self.keys[i], &self.leaf_digests[i]) {
                    return;
                }
            }
            return;
        }
        // Subtrees whose keys are all >= start, still to visit: the later a subtree, the
        // deeper it was pushed.
        let mut later: Vec<Ref> = Vec::with_capacity(64);
        // Down the way `start` would go, to the first subtree wholly >= start, if any.
        let mut r = self.root;
        let first = loop {
            let key = self.key_of(r);
            if r & LEAF != 0 {
                break (*key >= *start).then_some(r);
            }
            let n = &self.nodes[r as usize];
            match crit_bit(key, start) {
                // The subtree's shared prefix differs from start's before this node's bit:
                // all of it is above start, or all below.
                Some(c) if c < n.bit => break (bit(key, c) == 1).then_some(r),
                _ if bit(start, n.bit) == 0 => {
                    later.push(n.children[1]);
                    r = n.children[0];
                }
                _ => r = n.children[1],
            }
        };
        // In order: the leftmost leaf of each subtree, with the right sides on the way down
        // left for later.
        let mut next = first.or_else(|| later.pop());
        while let Some(mut r) = next {
            while r & LEAF == 0 {
                let [left, right] = self.nodes[r as usize].children;
                later.push(right);
                r = left;
            }
            let i = (r & !LEAF) as usize;
            if !f(&self.keys[i], &self.leaf_digests[i]) {
                return;
            }
            next = later.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        let mut k = [0; 16];
        k[..8].copy_from_slice(&n.to_be_bytes());
        k[8..].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        k
    }

    fn digest(k: &Key) -> Hash {
        *blake3::hash(k).as_bytes()
    }

    #[test]
    fn order_independent_and_ranges_match_fresh_tries() {
        let keys: Vec<Key> = (0..500u64).map(|i| key(i * 7919 % 1000)).collect();
        let mut a = Trie::default();
        let mut b = Trie::default();
        for k in &keys {
            assert!(a.insert(*k, digest(k), true));
        }
        for k in keys.iter().rev() {
            b.insert(*k, digest(k), false);
        }
        b.refresh();
        assert!(!a.insert(keys[3], digest(&keys[3]), true));
        assert_eq!(a.root(), b.root());
        assert_eq!(a.len(), 500);
        // A range digest equals the root of a trie holding just that range.
        for bits in [0u8, 3, 9, 20, 64, 128] {
            let prefix = keys[17];
            let mut sub = Trie::default();
            for k in keys.iter().filter(|k| same_prefix(k, &prefix, bits)) {
                sub.insert(*k, digest(k), true);
            }
            assert_eq!(a.range(&prefix, bits), sub.root(), "bits {bits}");
        }
        // Removing keys virtually equals a trie without them.
        let mut excluded: Vec<Key> = keys.iter().step_by(3).copied().collect();
        excluded.sort();
        let mut rest = Trie::default();
        for k in keys.iter().filter(|k| !excluded.contains(k)) {
            rest.insert(*k, digest(k), true);
        }
        assert_eq!(a.root_without(&excluded), rest.root().map(|r| r.0));
        let mut all = keys.clone();
        all.sort();
        assert_eq!(a.root_without(&all), None);
        // In-order iteration from any start.
        for start in [key(0), all[250], [0xff; 16], [0; 16]] {
            let mut seen = Vec::new();
            a.for_each_from(&start, |k, _| {
                seen.push(*k);
                true
            });
            let want: Vec<Key> = all.iter().filter(|k| **k >= start).copied().collect();
            assert_eq!(seen, want);
        }
        assert!(a.contains(&keys[0]) && !a.contains(&key(5000)));
        // A range's shape: its keys share the prefix up to the crit bit and differ there.
        for bits in [0u8, 5, 30, 64, 100, 128] {
            let prefix = keys[42];
            let under: Vec<&Key> = all
                .iter()
                .filter(|k| same_prefix(k, &prefix, bits))
                .collect();
            let (any, crit, n) = a.range_shape(&prefix, bits).unwrap();
            assert_eq!(n, under.len() as u64, "bits {bits}");
            assert!(under.iter().all(|k| same_prefix(k, &any, crit)));
            if crit < 128 {
                assert!(under.iter().any(|k| bit(k, crit) != bit(&any, crit)));
            }
        }
        assert_eq!(a.range_shape(&[0xff; 16], 8), None);
    }

    /// A key from a small space, so that keys share long prefixes and batch keys split
    /// right beside each other and beside held keys.
    fn dense_key(x: u64) -> Key {
        let mut k = [0; 16];
        k[6..8].copy_from_slice(&((x >> 4) as u16).to_be_bytes());
        k[15] = (x & 0xf) as u8;
        k
    }

    #[test]
    fn sorted_batches_build_the_trie_that_single_inserts_build() {
        // Rounds after the first that read an arena in key order, and rounds that walk.
        let (mut in_order_reads, mut walk_reads) = (0, 0);
        for seed in 0..300u64 {
            let mut next = crate::test_rng::draws(seed);
            let space = 8 + next(4000);
            let mut batched = Trie::default();
            let mut single = Trie::default();
            let mut held = std::collections::BTreeSet::new();
            // Odd seeds move the window up each round, so that batches mostly extend the
            // trie past its largest key, as a log that grows at its end does; one seed in
            // four moves it past the last window, so that every key extends it.
            let climb = match seed % 4 {
                1 => space / 2,
                3 => space,
                _ => 0,
            };
            // Whether every key so far came above all keys before it.
            let mut ascending = true;
            for round in 0..1 + next(6) {
                let base = round * climb;
                let mut batch: Vec<(Key, Hash)> = (0..next(200))
                    .map(|_| {
                        let k = dense_key(base + next(space));
                        (k, digest(&k))
                    })
                    .collect();
                batch.sort();
                batch.dedup();
                let mut fresh = Vec::new();
                batched.insert_sorted(&batch, |k| fresh.push(*k));
                batched.refresh();
                let mut want = Vec::new();
                for (k, d) in &batch {
                    if single.insert(*k, *d, true) {
                        want.push(*k);
                        ascending &= held.last().is_none_or(|last| last < k);
                    }
                    held.insert(*k);
                }
                assert_eq!(fresh, want, "seed {seed}: keys reported new");
                // Which way `for_each_from` reads below.
                assert_eq!(batched.in_order, ascending, "seed {seed}: in order");
                assert_eq!(batched.last(), held.last(), "seed {seed}: largest");
                assert_eq!(single.last(), held.last(), "seed {seed}: largest");
                assert_eq!(single.in_order, ascending, "seed {seed}: in order");
                in_order_reads += u32::from(ascending && round > 0);
                walk_reads += u32::from(!ascending);
                assert_eq!(batched.root(), single.root(), "seed {seed}: roots");
                assert_eq!(batched.len(), held.len() as u64, "seed {seed}");
                for bits in [0u8, 50, 54, 58, 62, 124, 128] {
                    let p = dense_key(next(space));
                    assert_eq!(
                        batched.range(&p, bits),
                        single.range(&p, bits),
                        "seed {seed}: range {bits}"
                    );
                }
                // In order from any start, held or not, and stopping when told.
                for _ in 0..8 {
                    let mut start = dense_key(next(space + 50));
                    start[usize::try_from(next(16)).unwrap_or(0)] ^= 1 << next(8);
                    let stop = usize::try_from(next(held.len() as u64 + 2)).unwrap_or(0);
                    let mut seen = Vec::new();
                    batched.for_each_from(&start, |k, d| {
                        assert_eq!(*d, digest(k), "seed {seed}: leaf digest");
                        seen.push(*k);
                        seen.len() < stop
                    });
                    let want: Vec<Key> = held.range(start..).take(stop.max(1)).copied().collect();
                    assert_eq!(seen, want, "seed {seed}: for_each_from");
                }
                let probe: Vec<Key> = (0..64).map(|_| dense_key(next(space + 50))).collect();
                let many = batched.contains_many(&probe);
                for (k, got) in probe.iter().zip(many) {
                    assert_eq!(got, held.contains(k), "seed {seed}: contains_many");
                    assert_eq!(batched.contains(k), got, "seed {seed}: contains");
                }
            }
        }
        assert!(
            in_order_reads > 50 && walk_reads > 50,
            "{in_order_reads} rounds read in key order, {walk_reads} by walks"
        );
        assert_eq!(Trie::default().contains_many(&[[0; 16]]), [false]);
    }

    #[test]
    fn masks_and_bit_fields() {
        let k = [0xff; 16];
        assert_eq!(mask(&k, 0), [0; 16]);
        assert_eq!(mask(&k, 128), k);
        assert_eq!(mask(&k, 12)[..2], [0xff, 0xf0]);
        let z = [0; 16];
        assert_eq!(with_bits(&z, 6, 4, 0b1011)[..2], [0b0000_0010, 0b1100_0000]);
        assert_eq!(with_bits(&z, 124, 4, 0xf)[15], 0x0f);
        assert_eq!(with_bits(&k, 0, 8, 0)[0], 0);
        assert_eq!(with_bits(&k, 0, 0, 0), k);
    }
}
