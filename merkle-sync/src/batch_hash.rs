//! Inner-node digests in batches: blake3 in keyed mode over 64 bytes, one compression each,
//! sixteen at a time in the lanes of AVX-512 registers where the CPU has them, else one at a
//! time through the `blake3` crate. The two give the same bytes (the tests compare them on
//! every build, and the trie's golden digests pin both).
//!
//! Why: a refresh after scattered inserts hashes tens of thousands of independent nodes (all
//! the dirty nodes that split at one bit are independent of each other), and the `blake3`
//! crate hashes a 64-byte input with one compression on one lane: about 80-170 ns here. Its
//! wide paths only serve the chunks of one long input. Sixteen independent compressions in
//! lockstep cost about as much as two.

/// One inner node to hash: the node's bit (the last byte of its key) and its two children's
/// digests, `left ‖ right`.
pub(crate) struct Job {
    pub(crate) bit: u8,
    pub(crate) input: [u8; 64],
}

/// `out[i]` = blake3 keyed by `key_of(jobs[i].bit)` over `jobs[i].input`, where `key_of`
/// replaces the last byte of `key` by the bit. `out` is as long as `jobs`.
pub(crate) fn keyed_many(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
    debug_assert_eq!(jobs.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mut jobs = jobs;
            let mut out = &mut out[..];
            while jobs.len() >= MIN_WIDE {
                let n = jobs.len().min(avx512::LANES);
                let (now, rest) = out.split_at_mut(n);
                avx512::keyed16(key, &jobs[..n], now);
                jobs = &jobs[n..];
                out = rest;
            }
            return one_by_one(key, jobs, out);
        }
    }
    one_by_one(key, jobs, out);
}

/// Fewer jobs than this go one by one: a wide pass costs about what eight single ones do.
#[cfg(target_arch = "x86_64")]
const MIN_WIDE: usize = 6;

/// The portable path (and the reference the tests hold the wide one to).
pub(crate) fn one_by_one(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
    let mut k = *key;
    for (job, o) in jobs.iter().zip(out) {
        k[31] = job.bit;
        *o = *blake3::keyed_hash(&k, &job.input).as_bytes();
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics: loads and stores of local, fully initialised arrays"
)]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_ror_epi32, _mm512_set1_epi32,
        _mm512_storeu_si512, _mm512_xor_si512,
    };

    use super::Job;

    pub(super) const LANES: usize = 16;

    const IV: [u32; 8] = [
        0x6A09_E667,
        0xBB67_AE85,
        0x3C6E_F372,
        0xA54F_F53A,
        0x510E_527F,
        0x9B05_688C,
        0x1F83_D9AB,
        0x5BE0_CD19,
    ];

    /// blake3's flags for a whole input of one block in keyed mode: CHUNK_START, CHUNK_END,
    /// ROOT and KEYED_HASH.
    const FLAGS: u32 = 1 | 2 | 8 | 16;

    /// The message word order of each of the seven rounds: blake3's permutation applied
    /// `round` times.
    const SCHEDULE: [[usize; 16]; 7] = {
        const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
        let mut s = [[0; 16]; 7];
        let mut i = 0;
        while i < 16 {
            s[0][i] = i;
            i += 1;
        }
        let mut r = 1;
        while r < 7 {
            let mut i = 0;
            while i < 16 {
                s[r][i] = s[r - 1][PERMUTATION[i]];
                i += 1;
            }
            r += 1;
        }
        s
    };

    /// The quarter-round on lanes.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn g(v: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize, x: __m512i, y: __m512i) {
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), x);
        v[d] = _mm512_ror_epi32::<16>(_mm512_xor_si512(v[d], v[a]));
        v[c] = _mm512_add_epi32(v[c], v[d]);
        v[b] = _mm512_ror_epi32::<12>(_mm512_xor_si512(v[b], v[c]));
        v[a] = _mm512_add_epi32(_mm512_add_epi32(v[a], v[b]), y);
        v[d] = _mm512_ror_epi32::<8>(_mm512_xor_si512(v[d], v[a]));
        v[c] = _mm512_add_epi32(v[c], v[d]);
        v[b] = _mm512_ror_epi32::<7>(_mm512_xor_si512(v[b], v[c]));
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn round(v: &mut [__m512i; 16], m: &[__m512i; 16], s: &[usize; 16]) {
        g(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        g(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        g(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        g(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        g(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }

    /// Up to 16 jobs at once; `out` as long as `jobs`. Lanes past the jobs hash zeros.
    pub(super) fn keyed16(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
        assert!(jobs.len() <= LANES && out.len() == jobs.len());
        // SAFETY: the caller checked that the CPU has avx512f.
        unsafe { keyed16_avx512(key, jobs, out) }
    }

    #[target_feature(enable = "avx512f")]
    fn keyed16_avx512(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
        // Transpose into lanes: word w of every job's input, and of every job's key.
        let mut words = [[0u32; LANES]; 16];
        let mut last_key_word = [0u32; LANES];
        let mut k = *key;
        for (lane, job) in jobs.iter().enumerate() {
            for (w, bytes) in job.input.chunks_exact(4).enumerate() {
                words[w][lane] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            k[31] = job.bit;
            last_key_word[lane] = u32::from_le_bytes([k[28], k[29], k[30], k[31]]);
        }
        // SAFETY: each load reads one whole `[u32; 16]` (64 bytes), each store writes one.
        let load = |a: &[u32; LANES]| unsafe { _mm512_loadu_si512(a.as_ptr().cast()) };
        let m: [__m512i; 16] = std::array::from_fn(|w| load(&words[w]));
        let mut v: [__m512i; 16] = std::array::from_fn(|i| {
            let word = match i {
                0..=6 => {
                    u32::from_le_bytes([key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]])
                }
                7 => 0, // the key word holding the bit: per lane, below
                8..=11 => IV[i - 8],
                12 | 13 => 0, // the counter
                14 => 64,     // the block length
                _ => FLAGS,
            };
            _mm512_set1_epi32(word as i32)
        });
        v[7] = load(&last_key_word);
        for s in &SCHEDULE {
            round(&mut v, &m, s);
        }
        let mut lanes = [[0u32; LANES]; 8];
        for (i, l) in lanes.iter_mut().enumerate() {
            let word = _mm512_xor_si512(v[i], v[i + 8]);
            // SAFETY: `l` is 64 writable bytes.
            unsafe { _mm512_storeu_si512(l.as_mut_ptr().cast(), word) };
        }
        for (lane, o) in out.iter_mut().enumerate() {
            for (w, bytes) in o.chunks_exact_mut(4).enumerate() {
                bytes.copy_from_slice(&lanes[w][lane].to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: usize, seed: u64) -> Vec<Job> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                let mut input = [0u8; 64];
                for b in &mut input {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    *b = (x >> 56) as u8;
                }
                Job {
                    bit: (x >> 8) as u8,
                    input,
                }
            })
            .collect()
    }

    #[test]
    fn batches_hash_like_the_blake3_crate() {
        let key = *b"weft-sync/2 inner node, bit #\0\0\0";
        for n in (0..40).chain([100, 257]) {
            let jobs = jobs(n, n as u64);
            let mut wide = vec![[0u8; 32]; n];
            keyed_many(&key, &jobs, &mut wide);
            for (job, got) in jobs.iter().zip(&wide) {
                let mut k = key;
                k[31] = job.bit;
                assert_eq!(
                    got,
                    blake3::keyed_hash(&k, &job.input).as_bytes(),
                    "n = {n}"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_wide_path_matches_one_by_one_in_every_lane_count() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no avx512f here: only the portable path runs");
            return;
        }
        let key = [7u8; 32];
        for n in 1..=avx512::LANES {
            let jobs = jobs(n, 1000 + n as u64);
            let (mut wide, mut one) = (vec![[0u8; 32]; n], vec![[0u8; 32]; n]);
            avx512::keyed16(&key, &jobs, &mut wide);
            one_by_one(&key, &jobs, &mut one);
            assert_eq!(wide, one, "{n} lanes");
        }
    }
}
