//! The seeded draws of the unit tests: a failing seed replays the same run.

/// Draws from a xorshift generator seeded by `seed`: each call with `bound` (above 0) gives a
/// number below it.
pub(crate) fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |bound| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % bound
    }
}
