//! blake3 of many short inputs at once: inner-node digests (keyed mode over 64 bytes, one
//! compression each) and leaf digests (plain mode over an op's encoding, up to one 1 KiB
//! chunk), sixteen at a time in the lanes of AVX-512 registers where the CPU has them (F and
//! BW), else one at a time through the `blake3` crate. The two give the same bytes: the tests
//! compare them on every machine with AVX-512 (CI's VMs have it; elsewhere only the portable
//! path runs, and the tests say so), and the golden digests pin both.
//!
//! Why: a refresh after scattered inserts hashes tens of thousands of independent nodes (all
//! the dirty nodes that split at one bit are independent of each other), a batch of received
//! ops as many leaves, and the `blake3` crate hashes a short input one compression at a time
//! on one lane: about 80-170 ns a compression here. Its wide paths only serve the chunks of
//! one long input. Sixteen independent compressions in lockstep cost about as much as two.

/// One inner node to hash: the node's bit (the last byte of its key) and its two children's
/// digests, `left ‖ right`.
pub(crate) struct Job {
    pub(crate) bit: u8,
    pub(crate) input: [u8; 64],
}

/// `out[i]` = blake3 keyed by `key_of(jobs[i].bit)` over `jobs[i].input`, where `key_of`
/// replaces the last byte of `key` by the bit. `out` is as long as `jobs`.
pub(crate) fn keyed_many(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
    assert_eq!(jobs.len(), out.len(), "one digest a job");
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::keyed_available() {
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

/// Inputs up to this long are one blake3 chunk, which the wide path hashes; longer ones go
/// through the crate.
#[cfg(target_arch = "x86_64")]
const CHUNK_LEN: usize = 1024;

/// `out[i]` = blake3 (plain mode) of `inputs[i]`; `out` is as long as `inputs`.
pub(crate) fn hash_many(inputs: &[&[u8]], out: &mut [[u8; 32]]) {
    hash_many_as(inputs, None, out);
}

/// As [`hash_many`], but with the first byte of every input read as `first`: so that a
/// caller can hash a prefix byte and bytes that sit in a larger buffer (the byte before them
/// stands in for the prefix) without copying them out. An empty input hashes as empty.
pub(crate) fn hash_many_first(inputs: &[&[u8]], first: u8, out: &mut [[u8; 32]]) {
    hash_many_as(inputs, Some(first), out);
}

/// blake3 of `input`, its first byte read as `first` if given, through the crate.
fn hash_one(input: &[u8], first: Option<u8>) -> [u8; 32] {
    match (first, input.split_first()) {
        (Some(f), Some((_, rest))) => *blake3::Hasher::new()
            .update(&[f])
            .update(rest)
            .finalize()
            .as_bytes(),
        _ => *blake3::hash(input).as_bytes(),
    }
}

fn hash_many_as(inputs: &[&[u8]], first: Option<u8>, out: &mut [[u8; 32]]) {
    assert_eq!(inputs.len(), out.len(), "one digest an input");
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            // Lanes hash in lockstep, so inputs are grouped by their number of blocks.
            let mut groups: [Vec<usize>; CHUNK_LEN / 64] = Default::default();
            let flush = |group: &mut Vec<usize>, out: &mut [[u8; 32]]| {
                let mut lanes: [&[u8]; avx512::LANES] = [&[]; avx512::LANES];
                for (lane, &i) in lanes.iter_mut().zip(group.iter()) {
                    *lane = inputs[i];
                }
                let lanes = &lanes[..group.len()];
                let mut digests = [[0u8; 32]; avx512::LANES];
                avx512::hash16(lanes, first, &mut digests[..lanes.len()]);
                for (&i, d) in group.iter().zip(&digests) {
                    out[i] = *d;
                }
                group.clear();
            };
            for (i, input) in inputs.iter().enumerate() {
                if input.len() > CHUNK_LEN {
                    out[i] = hash_one(input, first);
                    continue;
                }
                let group = &mut groups[input.len().saturating_sub(1) / 64];
                group.push(i);
                if group.len() == avx512::LANES {
                    flush(group, out);
                }
            }
            for group in &mut groups {
                if group.len() >= MIN_WIDE {
                    flush(group, out);
                } else {
                    for &i in group.iter() {
                        out[i] = hash_one(inputs[i], first);
                    }
                }
            }
            return;
        }
    }
    for (input, o) in inputs.iter().zip(out) {
        *o = hash_one(input, first);
    }
}

/// One job through the `blake3` crate: keyed by `key` with its last byte replaced by `bit`.
pub(crate) fn keyed_one(key: &[u8; 32], bit: u8, input: &[u8; 64]) -> [u8; 32] {
    let mut k = *key;
    k[31] = bit;
    *blake3::keyed_hash(&k, input).as_bytes()
}

/// The portable path (and the reference the tests hold the wide one to).
pub(crate) fn one_by_one(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
    for (job, o) in jobs.iter().zip(out) {
        *o = keyed_one(key, job.bit, &job.input);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX-512 intrinsics: loads of in-bounds bytes (masked past an input's end) and \
              loads and stores of local, fully initialised arrays"
)]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_loadu_si512, _mm512_mask_set1_epi8,
        _mm512_maskz_loadu_epi8, _mm512_ror_epi32, _mm512_set1_epi32, _mm512_setzero_si512,
        _mm512_shuffle_i32x4, _mm512_storeu_si512, _mm512_unpackhi_epi32, _mm512_unpackhi_epi64,
        _mm512_unpacklo_epi32, _mm512_unpacklo_epi64, _mm512_xor_si512,
    };

    use super::Job;

    pub(super) const LANES: usize = 16;

    /// Whether this CPU runs the wide path for inner nodes: AVX-512 F.
    pub(super) fn keyed_available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// Whether this CPU runs the wide path for leaves: AVX-512 F, and BW for the byte-masked
    /// loads of an input's last block.
    pub(super) fn available() -> bool {
        keyed_available() && std::arch::is_x86_feature_detected!("avx512bw")
    }

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

    /// blake3's flags.
    const CHUNK_START: u32 = 1;
    const CHUNK_END: u32 = 2;
    const ROOT: u32 = 8;
    const KEYED_HASH: u32 = 16;

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

    /// Round `R`: its message word order is a constant, so once inlined every word is a
    /// fixed register or stack slot (a loop over the schedule read each round's sixteen
    /// indices from memory and bounds-checked them).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn round<const R: usize>(v: &mut [__m512i; 16], m: &[__m512i; 16]) {
        let s = &SCHEDULE[R];
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
    /// Panics on a CPU without the wide path (the callers check first).
    pub(super) fn keyed16(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
        assert!(jobs.len() <= LANES && out.len() == jobs.len());
        assert!(keyed_available());
        // SAFETY: the CPU has avx512f, checked just above.
        unsafe { keyed16_avx512(key, jobs, out) }
    }

    /// Up to 16 inputs of one chunk at most and the same number of 64-byte blocks (an empty
    /// input counts as one), in plain mode; `out` as long as `inputs`. Panics on a CPU
    /// without the wide path (the callers check first).
    /// With `first`, every non-empty input's first byte is read as it.
    pub(super) fn hash16(inputs: &[&[u8]], first: Option<u8>, out: &mut [[u8; 32]]) {
        assert!(inputs.len() <= LANES && out.len() == inputs.len());
        let blocks = |len: usize| len.saturating_sub(1) / 64 + 1;
        let n = inputs.first().map_or(1, |i| blocks(i.len()));
        assert!(n <= super::CHUNK_LEN / 64 && inputs.iter().all(|i| blocks(i.len()) == n));
        assert!(available());
        // SAFETY: the CPU has avx512f and avx512bw, checked just above.
        unsafe { hash16_avx512(inputs, first, n, out) }
    }

    /// One compression of every lane: the first 8 words of the output, which are the next
    /// chaining value and, for a root block, the digest.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn compress(
        cv: &[__m512i; 8],
        m: &[__m512i; 16],
        block_len: __m512i,
        flags: u32,
    ) -> [__m512i; 8] {
        let mut v: [__m512i; 16] = std::array::from_fn(|i| match i {
            0..=7 => cv[i],
            8..=11 => _mm512_set1_epi32(IV[i - 8] as i32),
            12 | 13 => _mm512_set1_epi32(0), // the counter: chunk 0
            14 => block_len,
            _ => _mm512_set1_epi32(flags as i32),
        });
        round::<0>(&mut v, m);
        round::<1>(&mut v, m);
        round::<2>(&mut v, m);
        round::<3>(&mut v, m);
        round::<4>(&mut v, m);
        round::<5>(&mut v, m);
        round::<6>(&mut v, m);
        std::array::from_fn(|i| _mm512_xor_si512(v[i], v[i + 8]))
    }

    /// Lane `l` of each of `words` into the 32 bytes of `out[l]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn store(words: &[__m512i; 8], out: &mut [[u8; 32]]) {
        let mut lanes = [[0u32; LANES]; 8];
        for (l, w) in lanes.iter_mut().zip(words) {
            // SAFETY: `l` is 64 writable bytes.
            unsafe { _mm512_storeu_si512(l.as_mut_ptr().cast(), *w) };
        }
        for (lane, o) in out.iter_mut().enumerate() {
            for (w, bytes) in o.chunks_exact_mut(4).enumerate() {
                bytes.copy_from_slice(&lanes[w][lane].to_le_bytes());
            }
        }
    }

    /// Word `w` of every row, for each `w` (row `l` is lane `l`'s block): the 16 × 16
    /// transpose of 32-bit words, in 64 shuffles within registers.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose(rows: &[__m512i; 16]) -> [__m512i; 16] {
        // Pairs of rows interleaved word by word, within each 128-bit lane: a[2i] holds words
        // 4k, 4k + 1 of rows 2i, 2i + 1 in lane k; a[2i + 1] words 4k + 2, 4k + 3.
        let a: [__m512i; 16] = std::array::from_fn(|i| {
            let (x, y) = (rows[i & !1], rows[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_epi32(x, y)
            } else {
                _mm512_unpackhi_epi32(x, y)
            }
        });
        // Then by pairs of words: b[4j + t] holds word 4k + t of rows 4j..4j + 4 in lane k.
        let b: [__m512i; 16] = std::array::from_fn(|i| {
            let (j, t) = (i / 4, i % 4);
            let (x, y) = (a[4 * j + t / 2], a[4 * j + 2 + t / 2]);
            if t % 2 == 0 {
                _mm512_unpacklo_epi64(x, y)
            } else {
                _mm512_unpackhi_epi64(x, y)
            }
        });
        // Then the 128-bit lanes: word 4k + t of all rows is lane k of b[t], b[4 + t],
        // b[8 + t] and b[12 + t], side by side.
        let mut out = [_mm512_setzero_si512(); 16];
        for t in 0..4 {
            let (x0, x1, x2, x3) = (b[t], b[4 + t], b[8 + t], b[12 + t]);
            let low01 = _mm512_shuffle_i32x4::<0x44>(x0, x1); // x0.0 x0.1 x1.0 x1.1
            let high01 = _mm512_shuffle_i32x4::<0xEE>(x0, x1); // x0.2 x0.3 x1.2 x1.3
            let low23 = _mm512_shuffle_i32x4::<0x44>(x2, x3);
            let high23 = _mm512_shuffle_i32x4::<0xEE>(x2, x3);
            out[t] = _mm512_shuffle_i32x4::<0x88>(low01, low23); // lanes 0
            out[4 + t] = _mm512_shuffle_i32x4::<0xDD>(low01, low23); // lanes 1
            out[8 + t] = _mm512_shuffle_i32x4::<0x88>(high01, high23); // lanes 2
            out[12 + t] = _mm512_shuffle_i32x4::<0xDD>(high01, high23); // lanes 3
        }
        out
    }

    /// Block `b` of `input` as one row: its 64 bytes, or what is left of them followed by
    /// zeros, read with a mask so that no byte past the input is touched.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn block_row(input: &[u8], b: usize) -> __m512i {
        let rest = input.get(64 * b..).unwrap_or(&[]);
        match rest.len() {
            0 => _mm512_setzero_si512(),
            // SAFETY: the 64 bytes read are in `rest`.
            64.. => unsafe { _mm512_loadu_si512(rest.as_ptr().cast()) },
            n => {
                let mask = (1u64 << n) - 1;
                // SAFETY: the mask selects the first n bytes, all in `rest`; masked-off bytes
                // are not read (and cannot fault).
                unsafe { _mm512_maskz_loadu_epi8(mask, rest.as_ptr().cast()) }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn load(a: &[u32; LANES]) -> __m512i {
        // SAFETY: reads one whole `[u32; 16]`, 64 bytes.
        unsafe { _mm512_loadu_si512(a.as_ptr().cast()) }
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    fn hash16_avx512(inputs: &[&[u8]], first: Option<u8>, blocks: usize, out: &mut [[u8; 32]]) {
        let mut cv: [__m512i; 8] = std::array::from_fn(|i| _mm512_set1_epi32(IV[i] as i32));
        for b in 0..blocks {
            let mut lens = [0u32; LANES];
            for (input, len) in inputs.iter().zip(&mut lens) {
                *len = input.len().saturating_sub(64 * b).min(64) as u32;
            }
            let rows: [__m512i; 16] = std::array::from_fn(|l| {
                let Some(input) = inputs.get(l) else {
                    return _mm512_setzero_si512();
                };
                let row = block_row(input, b);
                match first {
                    // Byte 0 of the first block, where there is one.
                    Some(f) if b == 0 && !input.is_empty() => {
                        _mm512_mask_set1_epi8(row, 1, f as i8)
                    }
                    _ => row,
                }
            });
            let m = transpose(&rows);
            let mut flags = 0;
            if b == 0 {
                flags |= CHUNK_START;
            }
            if b + 1 == blocks {
                flags |= CHUNK_END | ROOT;
            }
            cv = compress(&cv, &m, load(&lens), flags);
        }
        store(&cv, out);
    }

    #[target_feature(enable = "avx512f")]
    fn keyed16_avx512(key: &[u8; 32], jobs: &[Job], out: &mut [[u8; 32]]) {
        let mut last_key_word = [0u32; LANES];
        let mut k = *key;
        for (lane, job) in jobs.iter().enumerate() {
            k[31] = job.bit;
            last_key_word[lane] = u32::from_le_bytes([k[28], k[29], k[30], k[31]]);
        }
        let rows: [__m512i; 16] = std::array::from_fn(|l| {
            jobs.get(l).map_or_else(
                || _mm512_setzero_si512(),
                // SAFETY: reads one whole 64-byte input.
                |job| unsafe { _mm512_loadu_si512(job.input.as_ptr().cast()) },
            )
        });
        let m = transpose(&rows);
        let cv: [__m512i; 8] = std::array::from_fn(|i| {
            if i == 7 {
                load(&last_key_word)
            } else {
                let w = [key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]];
                _mm512_set1_epi32(u32::from_le_bytes(w) as i32)
            }
        });
        let flags = CHUNK_START | CHUNK_END | ROOT | KEYED_HASH;
        let digest = compress(&cv, &m, _mm512_set1_epi32(64), flags);
        store(&digest, out);
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

    #[test]
    fn many_inputs_hash_like_the_blake3_crate() {
        // Every length from 0 to past one chunk, in a mixed order, in batches of several
        // sizes, so that groups of every block count fill, flush and stay partial.
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for len in 0..1100 {
            inputs.push((0..len).map(|_| next() as u8).collect());
        }
        for _ in 0..600 {
            let len = 60 + next() as usize % 80;
            inputs.push((0..len).map(|_| next() as u8).collect());
        }
        for batch in [1, 5, 17, 300, inputs.len()] {
            for chunk in inputs.chunks(batch) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                assert_hashes_like_the_crate(&refs, 0xa5);
            }
        }
    }

    /// [`hash_many`] of `inputs` against the crate, and [`hash_many_first`] with `first`
    /// against the crate on the inputs with their first byte replaced (as a caller hashing
    /// a version byte and the op bytes after it has them).
    fn assert_hashes_like_the_crate(inputs: &[&[u8]], first: u8) {
        let mut out = vec![[0u8; 32]; inputs.len()];
        hash_many(inputs, &mut out);
        for (input, got) in inputs.iter().zip(&out) {
            assert_eq!(got, blake3::hash(input).as_bytes(), "{} bytes", input.len());
        }
        hash_many_first(inputs, first, &mut out);
        for (input, got) in inputs.iter().zip(&out) {
            let mut want = input.to_vec();
            if let Some(b) = want.first_mut() {
                *b = first;
            }
            let len = input.len();
            assert_eq!(
                got,
                blake3::hash(&want).as_bytes(),
                "{len} bytes, first byte read as {first}"
            );
        }
    }

    #[test]
    fn inputs_within_one_buffer_hash_only_their_own_bytes() {
        // Inputs as slices of one buffer, each followed by bytes of the next or by 0xff
        // filler, as a batch's ops are: a tail load that read one byte too many would take
        // them in.
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for len in 0..300usize {
            let start = buf.len();
            buf.extend((0..len).map(|i| (i * 7 + len) as u8));
            spans.push((start, buf.len()));
            if len % 3 == 0 {
                buf.extend([0xff; 70]);
            }
        }
        let inputs: Vec<&[u8]> = spans.iter().map(|&(a, b)| &buf[a..b]).collect();
        assert_hashes_like_the_crate(&inputs, 3);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_wide_path_matches_one_by_one_in_every_lane_count() {
        if !avx512::keyed_available() {
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
