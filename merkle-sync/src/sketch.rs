//! A rateless invertible Bloom lookup table over op ids: the set-difference sketch.
//!
//! Coded symbol `i` sums every item that maps to `i`: a count, the XOR of the 16-byte keys and
//! the XOR of their 64-bit checksums. Every item maps to symbol 0, and to later symbols with a
//! density of about `1 / (1 + i/2)`, so any prefix of the (infinite) symbol stream is a valid
//! sketch and a difference of `d` items peels from about `1.4 d` to `2 d` symbols. Subtracting
//! the local symbols from the peer's leaves the symmetric difference, which peels: a symbol
//! with count ±1 whose checksum matches its key holds exactly one item.
//!
//! The checksum is not a security device: a hostile peer that makes peeling fail only wastes
//! the session's symbol budget. What decides that two logs are equal is the blake3 Merkle root.

use crate::trie::Key;

/// One coded symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub(crate) count: i64,
    pub(crate) key: Key,
    pub(crate) check: u64,
}

impl Symbol {
    /// Adds (`sign` = 1) or removes (`sign` = -1) an item.
    pub(crate) fn add(&mut self, key: &Key, check: u64, sign: i64) {
        self.count = self.count.wrapping_add(sign);
        for (a, b) in self.key.iter_mut().zip(key) {
            *a ^= b;
        }
        self.check ^= check;
    }

    /// `self + other`, symbol-wise (the sketch of a disjoint union).
    pub(crate) fn plus(&self, other: &Self) -> Self {
        let mut s = *self;
        s.count = s.count.wrapping_add(other.count);
        for (a, b) in s.key.iter_mut().zip(&other.key) {
            *a ^= b;
        }
        s.check ^= other.check;
        s
    }

    /// `self - other`, symbol-wise.
    pub(crate) fn minus(&self, other: &Self) -> Self {
        let mut s = *self;
        s.count = s.count.wrapping_sub(other.count);
        for (a, b) in s.key.iter_mut().zip(&other.key) {
            *a ^= b;
        }
        s.check ^= other.check;
        s
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64-bit checksum of a key.
pub(crate) fn checksum(key: &Key) -> u64 {
    let (hi, lo) = key.split_at(8);
    let hi = u64::from_be_bytes(hi.try_into().unwrap_or_default());
    let lo = u64::from_be_bytes(lo.try_into().unwrap_or_default());
    splitmix(splitmix(hi ^ 0x7765_6674_2d73_796e) ^ lo)
}

/// The increasing symbol indices an item maps to: 0, then gaps drawn so that index `j` is hit
/// with probability about `1 / (1 + j/2)`. Deterministic on every platform (IEEE `sqrt`).
#[derive(Clone, Debug)]
pub(crate) struct Mapping {
    state: u64,
    next: u64,
}

impl Mapping {
    pub(crate) fn new(check: u64) -> Self {
        Self {
            state: check,
            next: 0,
        }
    }
}

impl Mapping {
    /// The index [`Iterator::next`] yields next.
    pub(crate) fn peek(&self) -> u64 {
        self.next
    }
}

impl Iterator for Mapping {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let current = self.next;
        self.state = splitmix(self.state);
        let u = ((self.state >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let gap = ceil_u64((current as f64 + 1.5) * (1.0 / u.sqrt() - 1.0));
        // A gap is at least 1 so the sequence strictly increases.
        self.next = current.saturating_add(gap.max(1));
        Some(current)
    }
}

/// `x.ceil() as u64` for `x >= 0` (saturating, as `as` does), without the libm call that
/// `f64::ceil` costs where it is not inlined: bit for bit the same result.
fn ceil_u64(x: f64) -> u64 {
    let t = x as u64; // truncates toward zero and saturates
    if (t as f64) < x && t < u64::MAX {
        t + 1
    } else {
        t
    }
}

/// Adds `key` (with `sign`) to the symbols of `out`, which hold indices `start..start + len`.
pub(crate) fn add_item(out: &mut [Symbol], start: u64, key: &Key, sign: i64) {
    let check = checksum(key);
    let end = start + out.len() as u64;
    for i in Mapping::new(check) {
        if i >= end {
            break;
        }
        if i >= start {
            out[(i - start) as usize].add(key, check, sign);
        }
    }
}

/// The peeling decoder of `remote - local`, fed in consecutive chunks.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    diff: Vec<Symbol>,
    /// Items the peer has and this side lacks.
    pub(crate) remote_only: Vec<Key>,
    /// Items this side has and the peer lacks.
    pub(crate) local_only: Vec<Key>,
    /// Each recovered item with its sign and where its mapping stands (past the symbols
    /// received), so a later chunk takes it out without walking its mapping from 0 again.
    recovered: Vec<(Key, i64, Mapping)>,
}

/// The difference does not peel: a hostile or inconsistent peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inconsistent;

impl Decoder {
    /// Symbols received so far.
    pub(crate) fn len(&self) -> u64 {
        self.diff.len() as u64
    }

    /// Appends the next chunk (`remote` and `local` of equal length) and peels.
    pub(crate) fn extend(
        &mut self,
        remote: &[Symbol],
        local: &[Symbol],
    ) -> Result<(), Inconsistent> {
        let start = self.diff.len();
        self.diff
            .extend(remote.iter().zip(local).map(|(r, l)| r.minus(l)));
        let len = self.diff.len() as u64;
        // Take out what was already recovered, from where each item's mapping stopped.
        for (key, sign, mapping) in &mut self.recovered {
            let check = checksum(key);
            while mapping.peek() < len {
                let j = mapping.peek() as usize; // < len, a usize
                self.diff[j].add(key, check, -*sign);
                mapping.next();
            }
        }
        // Symbols received before only change when an item is peeled, which queues them.
        let mut work: Vec<usize> = (start..self.diff.len()).collect();
        let budget = 4 * self.diff.len() + 64;
        while let Some(i) = work.pop() {
            let s = self.diff[i];
            if !(s.count == 1 || s.count == -1) || checksum(&s.key) != s.check {
                continue;
            }
            if self.recovered.len() >= budget {
                return Err(Inconsistent);
            }
            let check = s.check;
            let mut mapping = Mapping::new(check);
            while mapping.peek() < len {
                let j = mapping.peek() as usize;
                self.diff[j].add(&s.key, check, -s.count);
                work.push(j);
                mapping.next();
            }
            if s.count == 1 {
                self.remote_only.push(s.key);
            } else {
                self.local_only.push(s.key);
            }
            self.recovered.push((s.key, s.count, mapping));
        }
        Ok(())
    }

    /// Whether the whole difference is recovered: every symbol peeled to zero.
    pub(crate) fn is_done(&self) -> bool {
        !self.diff.is_empty() && self.diff.iter().all(Symbol::is_zero)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        let mut k = [0; 16];
        k[..8].copy_from_slice(&splitmix(n).to_be_bytes());
        k
    }

    fn sketch(keys: &[Key], len: usize) -> Vec<Symbol> {
        let mut s = vec![Symbol::default(); len];
        for k in keys {
            add_item(&mut s, 0, k, 1);
        }
        s
    }

    #[test]
    fn recovers_the_symmetric_difference_in_chunks() {
        let common: Vec<Key> = (0..3000).map(key).collect();
        let mut a = common.clone();
        let mut b = common;
        a.extend((10_000..10_060).map(key));
        b.extend((20_000..20_040).map(key));
        let (sa, sb) = (sketch(&a, 1024), sketch(&b, 1024));
        let mut dec = Decoder::default();
        let mut used = 0;
        for chunk in [32usize, 32, 64, 128, 256, 512] {
            dec.extend(&sa[used..used + chunk], &sb[used..used + chunk])
                .unwrap();
            used += chunk;
            if dec.is_done() {
                break;
            }
        }
        assert!(dec.is_done(), "not decoded in {used} symbols");
        assert!(used <= 512, "needed {used} symbols for 100 items");
        let mut got_a = dec.remote_only.clone();
        let mut got_b = dec.local_only.clone();
        got_a.sort();
        got_b.sort();
        let mut want_a: Vec<Key> = (10_000..10_060).map(key).collect();
        let mut want_b: Vec<Key> = (20_000..20_040).map(key).collect();
        want_a.sort();
        want_b.sort();
        assert_eq!((got_a, got_b), (want_a, want_b));
    }

    #[test]
    fn ceil_matches_the_float_ceil() {
        let mut z = 1u64;
        for _ in 0..100_000 {
            z = splitmix(z);
            // Gaps as the mapping draws them, small and huge, plus exact integers.
            let x = ((z >> 11) as f64 / (1u64 << 53) as f64) * 2f64.powi((z % 80) as i32);
            for v in [x, x.floor(), x + 0.5] {
                assert_eq!(ceil_u64(v), v.ceil() as u64, "{v}");
            }
        }
        for v in [
            0.0,
            0.1,
            1.0,
            1e19,
            1.8446744073709552e19,
            1e300,
            f64::INFINITY,
        ] {
            assert_eq!(ceil_u64(v), v.ceil() as u64, "{v}");
        }
    }

    #[test]
    fn mapping_is_dense_at_the_start_and_sparse_later() {
        let hits = (0..10_000u64)
            .map(|n| {
                Mapping::new(checksum(&key(n)))
                    .take_while(|&i| i < 1000)
                    .count()
            })
            .sum::<usize>() as f64
            / 10_000.0;
        // Sum of 1/(1 + j/2) for j < 1000 is about 2 ln 500 + 1.
        assert!((10.0..16.0).contains(&hits), "{hits}");
    }
}
