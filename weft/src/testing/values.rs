//! The seeded random source that generators draw from, and the default value generators.

use core::convert::Infallible;

use crdt_core::{ScalarType, Value};
use hlc::Timestamp;

/// A small seeded random source (splitmix64): what value generators draw from.
///
/// The same seed gives the same sequence on every platform, so a failing seed replays. It
/// implements [`rand::TryRng`] (and so [`rand::Rng`]), for generators that prefer `rand`'s
/// distributions.
#[derive(Clone, Debug)]
pub struct Gen {
    state: u64,
}

impl Gen {
    /// A source seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            // Multiply-shift: no modulo bias worth speaking of for test generators.
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo);
        if span == u64::MAX {
            return self.next_u64() as i64;
        }
        lo.wrapping_add(self.below(span + 1) as i64)
    }

    /// `true` with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items`, or `None` if it is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// A string of up to `max_len` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &str, max_len: usize) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let len = self.below(max_len as u64 + 1);
        (0..len)
            .filter_map(|_| self.pick(&chars).copied())
            .collect()
    }
}

impl rand::TryRng for Gen {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.next_u64() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// A value of type `ty` from a small domain, so that concurrent writes often collide.
/// `keys` are the record keys a reference may name.
pub(crate) fn default_value(g: &mut Gen, ty: &ScalarType, keys: &[String]) -> Value {
    match ty {
        ScalarType::String => Value::String(g.string("abcé", 3)),
        ScalarType::Int => Value::Int(g.int(-3, 3)),
        ScalarType::Float => Value::Float(g.int(-4, 4) as f64 / 2.0),
        ScalarType::Bool => Value::Bool(g.chance(1, 2)),
        ScalarType::Bytes => Value::Bytes((0..g.below(3)).map(|_| g.below(4) as u8).collect()),
        ScalarType::Timestamp => Timestamp::new(1_000 + g.below(4), g.below(2) as u16)
            .map_or(Value::Null, Value::Timestamp),
        ScalarType::Ref(_) => g.pick(keys).map_or(Value::Null, |k| Value::Ref(k.clone())),
        _ => match g.below(4) {
            0 => Value::Null,
            1 => Value::Int(g.int(-3, 3)),
            2 => Value::Bool(g.chance(1, 2)),
            _ => Value::String(g.string("ab", 2)),
        },
    }
}
