//! A growable array in fixed-size chunks: pushing never moves what is already there, so a
//! large index grows without the copy (and the pause) of a `Vec` doubling its buffer.

use std::ops::{Index, IndexMut};

/// Entries per chunk (a power of two).
const CHUNK_BITS: u32 = 14;
const CHUNK: usize = 1 << CHUNK_BITS;

/// An append-only array of `T`, stored as chunks of [`CHUNK`] entries.
#[derive(Debug)]
pub(crate) struct Arena<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> Clone for Arena<T> {
    fn clone(&self) -> Self {
        // Chunks after the first keep their full capacity, so the clone grows as cheaply as
        // the original.
        let chunks = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = Vec::with_capacity(if i == 0 { c.len() } else { CHUNK });
                v.extend_from_slice(c);
                v
            })
            .collect();
        Self {
            chunks,
            len: self.len,
        }
    }
}

impl<T> Arena<T> {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value`; it gets index `len()` as it was before the call.
    #[inline]
    pub(crate) fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(value),
            _ => {
                // The first chunk grows like a `Vec` (so a small trie stays small); later ones
                // are allocated whole, so that growth copies at most one chunk, once.
                let mut c = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                c.push(value);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }
}

impl<T> Index<usize> for Arena<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl<T> IndexMut<usize> for Arena<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_across_chunks_and_clones_keep_growing() {
        let mut a = Arena::default();
        let n = 3 * CHUNK + 17;
        for i in 0..n {
            a.push(i as u64);
        }
        assert_eq!(a.len(), n);
        assert_eq!(a[0], 0);
        assert_eq!(a[CHUNK - 1], (CHUNK - 1) as u64);
        assert_eq!(a[CHUNK], CHUNK as u64);
        assert_eq!(a[n - 1], (n - 1) as u64);
        a[CHUNK + 1] = 7;
        let mut b = a.clone();
        b.push(99);
        assert_eq!((b.len(), b[n], b[CHUNK + 1]), (n + 1, 99, 7));
        assert_eq!(a.len(), n);
        assert!(b.chunks.iter().skip(1).all(|c| c.capacity() == CHUNK));
        let mut small = Arena::default();
        small.push(1u64);
        assert!(
            small.chunks[0].capacity() < CHUNK,
            "a small arena stays small"
        );
    }
}
