//! A rateless invertible Bloom lookup table over op ids: the set-difference sketch.
//!
//! Coded symbol `i` sums every item that maps to `i`: a count, the XOR of the 16-byte keys and
//! the XOR of the low 32 bits of their 64-bit checksums (the whole checksum seeds the
//! mapping). Every item maps to symbol 0, and to later symbols with a density of about
//! `1 / (1 + i/2)`, so any prefix of the (infinite) symbol stream is a valid sketch and a
//! difference of `d` items peels from about `1.4 d` to `2 d` symbols. Subtracting the local
//! symbols from the peer's leaves the symmetric difference, which peels: a symbol with count
//! ±1 (mod 256) whose check matches the low 32 bits of its key's checksum holds one item.
//!
//! The checksum is not a security device: a hostile peer that makes peeling fail only wastes
//! the session's symbol budget. What decides that two logs are equal is the blake3 Merkle root.

use crate::trie::Key;

/// One coded symbol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Symbol {
    /// Items added less items removed. On the wire only its low 8 bits travel: the decoder
    /// works on counts modulo 256 ([`residue`]), which is all peeling needs, since each symbol
    /// of the difference changes by ±1 a peel and the checksum tells one item from many.
    pub(crate) count: i64,
    pub(crate) key: Key,
    /// The XOR of the low 32 bits of the items' checksums.
    pub(crate) check: u32,
}

impl Symbol {
    /// Adds (`sign` = 1) or removes (`sign` = -1) an item whose checksum is `check`.
    pub(crate) fn add(&mut self, key: &Key, check: u64, sign: i64) {
        self.count = self.count.wrapping_add(sign);
        for (a, b) in self.key.iter_mut().zip(key) {
            *a ^= b;
        }
        self.check ^= check as u32;
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

    /// Whether the symbol of a difference is empty: no key, no check, a count of 0 mod 256.
    fn is_zero(&self) -> bool {
        residue(self.count) == 0 && self.key == [0; 16] && self.check == 0
    }
}

/// A count modulo 256, as a signed byte: the part of a count a `Sketch` message carries.
pub(crate) fn residue(count: i64) -> i8 {
    count as i8
}

/// splitmix64's output function. An item's mapping draws from it on a counter that starts at
/// the item's checksum and advances by [`GAMMA`], so that consecutive draws do not wait on
/// each other.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One splitmix64 step from `z`.
fn splitmix(z: u64) -> u64 {
    mix(z.wrapping_add(GAMMA))
}

/// The 64-bit checksum of a key.
pub(crate) fn checksum(key: &Key) -> u64 {
    let (hi, lo) = key.split_at(8);
    let hi = u64::from_be_bytes(hi.try_into().unwrap_or_default());
    let lo = u64::from_be_bytes(lo.try_into().unwrap_or_default());
    splitmix(splitmix(hi ^ 0x7765_6674_2d73_796e) ^ lo)
}

/// `ROOT[p][f] = isqrt(floor(2^(62 + p) · 512 / (513 + 2 f)))`: `2^31 / sqrt(u)` for a `u` of
/// `2^-p` times `1 + (f + 0.5) / 256`, in integers, so that every platform agrees to the bit.
static ROOT: [[u64; 256]; 2] = {
    let mut t = [[0; 256]; 2];
    let mut p = 0;
    while p < 2 {
        let mut f = 0;
        while f < 256 {
            let x = (1u128 << (62 + p)) * 512 / (513 + 2 * f as u128);
            t[p][f] = x.isqrt() as u64;
            f += 1;
        }
        p += 1;
    }
    t
};

/// The increasing symbol indices an item maps to: 0, then gaps drawn so that index `j` is hit
/// with probability about `1 / (1 + j/2)`: from index `c`, the gap is `(c + 1.5)(1/sqrt(u) -
/// 1)` rounded up (at least 1), for `u` uniform in (0, 1], computed in fixed point (see
/// `docs/wire-format.md`). Integer arithmetic only, so it is the same on every platform.
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

    /// The index [`Iterator::next`] yields next.
    pub(crate) fn peek(&self) -> u64 {
        self.next
    }
}

impl Iterator for Mapping {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        let current = self.next;
        self.state = self.state.wrapping_add(GAMMA);
        // u = r / 2^64 = 2^-e (1 + f / 256 + ...), with e = 1 + the leading zeros of r.
        let r = mix(self.state) | 1;
        let zeros = r.leading_zeros();
        let e = zeros + 1;
        let f = ((r << zeros) << 1) >> 56;
        // 2^31 (1/sqrt(u) - 1): the table gives 2^31 / sqrt(u) up to 2^(e >> 1); < 2^64.
        let w = (ROOT[(e & 1) as usize][f as usize] << (e >> 1)) - (1 << 31);
        self.next = if current >= 1 << 62 {
            u64::MAX
        } else {
            // ceil((2c + 3) w / 2^32) = ceil((c + 1.5) (1/sqrt(u) - 1)); < 2^127.
            let product = (2 * u128::from(current) + 3) * u128::from(w);
            let gap = u64::try_from((product + ((1 << 32) - 1)) >> 32).unwrap_or(u64::MAX);
            current.saturating_add(gap.max(1))
        };
        Some(current)
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
    /// Each recovered item with its checksum, its sign and where its mapping stands (past the
    /// symbols received), so a later chunk takes it out without walking its mapping from 0
    /// again.
    recovered: Vec<(Key, u64, i64, Mapping)>,
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
        for (key, check, sign, mapping) in &mut self.recovered {
            let check = *check;
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
            let sign = i64::from(residue(s.count));
            if !(sign == 1 || sign == -1) {
                continue;
            }
            let check = checksum(&s.key);
            if check as u32 != s.check {
                continue;
            }
            if self.recovered.len() >= budget {
                return Err(Inconsistent);
            }
            let mut mapping = Mapping::new(check);
            while mapping.peek() < len {
                let j = mapping.peek() as usize;
                self.diff[j].add(&s.key, check, -sign);
                work.push(j);
                mapping.next();
            }
            if sign == 1 {
                self.remote_only.push(s.key);
            } else {
                self.local_only.push(s.key);
            }
            self.recovered.push((s.key, check, sign, mapping));
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

    /// The first `len` symbols of two sides holding keys `0..common` and each its own range.
    fn sides(
        common: u64,
        a: std::ops::Range<u64>,
        b: std::ops::Range<u64>,
        len: usize,
    ) -> (Vec<Symbol>, Vec<Symbol>) {
        let with =
            |own: std::ops::Range<u64>| -> Vec<Key> { (0..common).chain(own).map(key).collect() };
        (sketch(&with(a), len), sketch(&with(b), len))
    }

    /// That `dec` recovered exactly the keys of `remote` as the peer's and of `local` as ours.
    fn assert_recovered(dec: &Decoder, remote: std::ops::Range<u64>, local: std::ops::Range<u64>) {
        let sorted = |mut v: Vec<Key>| {
            v.sort();
            v
        };
        assert_eq!(
            (
                sorted(dec.remote_only.clone()),
                sorted(dec.local_only.clone())
            ),
            (
                sorted(remote.map(key).collect()),
                sorted(local.map(key).collect())
            )
        );
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
        let (sa, sb) = sides(3000, 10_000..10_060, 20_000..20_040, 1024);
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
        assert_recovered(&dec, 10_000..10_060, 20_000..20_040);
    }

    #[test]
    fn counts_modulo_256_are_enough_to_peel() {
        // The peer's symbols arrive with only the low byte of each count. With 200,000 items
        // in common every symbol the decode needs counts far more than 127 items, and a
        // difference of 700 items on one side and 9 on the other puts 691 into symbol 0; it
        // must still peel, to the exact sets.
        let (sa, sb) = sides(200_000, 1_000_000..1_000_700, 2_000_000..2_000_009, 2048);
        let wire = |s: &[Symbol]| -> Vec<Symbol> {
            s.iter()
                .map(|s| Symbol {
                    count: i64::from(residue(s.count)),
                    ..*s
                })
                .collect()
        };
        assert_eq!(sa[0].count - sb[0].count, 691);
        assert!(sa[2047].count > 127 && sb[2047].count > 127);
        let mut dec = Decoder::default();
        let mut used = 0;
        while !dec.is_done() {
            assert!(used < 2048, "not decoded in 2,048 symbols");
            dec.extend(&wire(&sa[used..used + 64]), &sb[used..used + 64])
                .unwrap();
            used += 64;
        }
        assert_recovered(&dec, 1_000_000..1_000_700, 2_000_000..2_000_009);
    }

    #[test]
    fn fixed_point_gaps_follow_the_float_formula() {
        // The table, against 2^31 / sqrt(2^-p (1 + (f + 0.5) / 256)) in floats.
        for (p, row) in ROOT.iter().enumerate() {
            for (f, &t) in row.iter().enumerate() {
                let want =
                    2f64.powi(31) * (2f64.powi(p as i32) / (1.0 + (f as f64 + 0.5) / 256.0)).sqrt();
                assert!(
                    (t as f64 - want).abs() <= 1.0,
                    "ROOT[{p}][{f}] = {t}, want {want}"
                );
            }
        }
        // Each gap, against ceil((c + 1.5)(1/sqrt(u) - 1)) for the same draw. The table takes u
        // to 8 bits past its leading one, which moves 1/sqrt(u) by at most 0.1%: the gap, that
        // is (c + 1.5)/sqrt(u) less c + 1.5, by at most 0.1% of c + 1.5 + gap (plus rounding).
        let mut checked = 0;
        for n in 0..2000u64 {
            let check = checksum(&key(n));
            let mut m = Mapping::new(check);
            let mut state = check;
            let mut current = m.next().unwrap();
            while current < 1 << 40 {
                state = state.wrapping_add(GAMMA);
                let u = (mix(state) | 1) as f64 / 2f64.powi(64);
                let want = ((current as f64 + 1.5) * (1.0 / u.sqrt() - 1.0))
                    .ceil()
                    .max(1.0);
                let next = m.next().unwrap();
                let gap = (next - current) as f64;
                assert!(
                    (gap - want).abs() <= (current as f64 + 1.5 + want) * 0.001 + 1.0,
                    "from {current}: gap {gap}, the formula gives {want}"
                );
                current = next;
                checked += 1;
            }
        }
        assert!(checked > 50_000, "{checked}");
    }

    #[test]
    fn differences_peel_from_few_symbols() {
        // d items on one side only, many seeds: the symbols needed, relative to d.
        for d in [10u64, 100, 1000] {
            let mut total = 0;
            let seeds = 20;
            for seed in 0..seeds {
                let keys: Vec<Key> = (0..d).map(|i| key(seed << 32 | i)).collect();
                let full = sketch(&keys, (4 * d + 64) as usize);
                let empty = vec![Symbol::default(); full.len()];
                let mut dec = Decoder::default();
                let mut used = 0;
                while !dec.is_done() {
                    assert!(used < full.len(), "d = {d}, seed {seed}: no peel in {used}");
                    dec.extend(&full[used..used + 1], &empty[..1]).unwrap();
                    used += 1;
                }
                assert_eq!(dec.remote_only.len() as u64, d);
                total += used;
            }
            let ratio = total as f64 / (seeds * d) as f64;
            // Measured: 1.66 d, 1.48 d and 1.36 d symbols (rateless IBLTs need about 1.35 d for
            // large d, more for small).
            let bound = match d {
                10 => 2.2,
                100 => 1.65,
                _ => 1.5,
            };
            assert!(ratio < bound, "d = {d}: {ratio:.2} d symbols");
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
