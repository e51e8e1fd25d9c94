//! A redb [`StorageBackend`] wrapper that turns the holes redb leaves when it grows the file
//! into real, written blocks just before redb first writes into them.
//!
//! redb grows its file with `set_len`, which on ext4 (and most filesystems) makes a sparse
//! tail: no blocks behind it. Every commit that then writes pages into that tail makes the
//! filesystem allocate blocks, so the commit's `fdatasync` must also commit filesystem
//! metadata (a journal transaction: more writes and cache flushes, and on a busy disk a wait
//! for other files' data). A commit that only overwrites allocated blocks needs none of that.
//! So, the first time a write reaches past [`ZeroFill`]'s fill mark, the wrapper first writes
//! zeros from the mark up to a chunk boundary past the write (never past the file's end), then
//! the write itself: the blocks are allocated once per chunk rather than by every commit, and
//! the commit's own `fdatasync` makes them durable (no extra sync).
//!
//! Crash safety follows from two facts. The wrapper never changes the file's length (only
//! redb's `set_len` does, forwarded as is), and it only writes zeros over bytes that already
//! read as zeros: everything at or above the mark lies in space redb added and has not
//! written, because every write redb makes first moves the mark past its own end. So at every
//! instant, whichever of the zero writes reached the disk, the file holds exactly the bytes
//! it would hold without the wrapper. (On a power cut this also assumes the filesystem writes
//! a block's data before it commits the block's allocation, as ext4's default `data=ordered`
//! does; redb's own writes into holes rely on the same.)
//!
//! The fill mark lives in this process: the wrapper requires that no other process writes the
//! file, which holds because the store opens redb in its default single-writer mode, with the
//! file locked. A multi-writer mode would have to go without the wrapper.

use std::io;
use std::ops::Bound;
use std::sync::{Mutex, PoisonError};

use redb::{BackendError, StorageBackend};

/// How far ahead of redb's writes the file is filled with zeros, at most: a fill is rounded up
/// to a multiple of this past the write that triggers it.
pub(super) const CHUNK: u64 = 4 << 20;

/// The biggest zero buffer written at once.
const ZEROS: usize = 256 << 10;

/// See the module documentation.
#[derive(Debug)]
pub(super) struct ZeroFill<B> {
    inner: B,
    /// [`CHUNK`], smaller in tests.
    chunk: u64,
    /// Every byte below this is written (or was in the file when it was opened): writes below
    /// it go straight through.
    filled: Mutex<u64>,
}

impl<B: StorageBackend> ZeroFill<B> {
    /// Wraps `inner`; what the file holds now counts as filled.
    pub(super) fn new(inner: B) -> io::Result<Self> {
        Self::with_chunk(inner, CHUNK)
    }

    fn with_chunk(inner: B, chunk: u64) -> io::Result<Self> {
        let filled = inner.len()?;
        Ok(Self {
            inner,
            chunk: chunk.max(1),
            filled: Mutex::new(filled),
        })
    }
}

impl<B: StorageBackend> StorageBackend for ZeroFill<B> {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut filled = self.filled.lock().unwrap_or_else(PoisonError::into_inner);
        self.inner.set_len(len)?;
        // A shrink gives the blocks back; growing again leaves a hole to fill.
        *filled = (*filled).min(len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut filled = self.filled.lock().unwrap_or_else(PoisonError::into_inner);
        let end = offset.saturating_add(data.len() as u64);
        if end > *filled {
            let file_len = self.inner.len()?;
            let target = end
                .div_ceil(self.chunk)
                .saturating_mul(self.chunk)
                .min(file_len);
            let zeros = vec![0; ZEROS];
            let mut at = *filled;
            let mut whole = true;
            while at < target {
                // Skip the bytes this write covers anyway.
                if at >= offset && at < end {
                    at = end;
                    continue;
                }
                let stop = if at < offset {
                    offset.min(target)
                } else {
                    target
                };
                let n = usize::try_from(stop - at).unwrap_or(ZEROS).min(ZEROS);
                // The fill only saves later metadata commits: if it fails (a full disk, say),
                // give up on it and let redb's own write decide. What was not filled is still
                // a hole, which reads as zeros.
                if self
                    .inner
                    .write(at, zeros.get(..n).unwrap_or_default())
                    .is_err()
                {
                    whole = false;
                    break;
                }
                at += n as u64;
            }
            self.inner.write(offset, data)?;
            *filled = if whole {
                target.max(end)
            } else {
                (*filled).max(end)
            };
            return Ok(());
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fill chunk of these tests (the arithmetic is the same at any size).
    const CHUNK: u64 = 64 << 10;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use redb::backends::InMemoryBackend;

    /// A backend that counts the bytes written to it.
    #[derive(Debug, Default)]
    struct Counted {
        inner: InMemoryBackend,
        written: Mutex<u64>,
    }

    impl StorageBackend for Counted {
        fn len(&self) -> Result<u64, io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), io::Error> {
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            *self.written.lock().unwrap() += data.len() as u64;
            self.inner.write(offset, data)
        }
    }

    fn contents(b: &impl StorageBackend) -> Vec<u8> {
        let mut out = vec![0; usize::try_from(b.len().unwrap()).unwrap()];
        b.read(0, &mut out).unwrap();
        out
    }

    /// Random growth, shrinks and writes through the wrapper leave exactly the bytes and the
    /// length a plain backend gets, while the space redb adds is written ahead of it.
    #[test]
    fn the_file_holds_what_it_would_without_the_wrapper() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let wrapped = ZeroFill::with_chunk(Counted::default(), CHUNK).unwrap();
            let plain = InMemoryBackend::new();
            let mut user_bytes = 0;
            let mut len = 0u64;
            for _ in 0..200 {
                match rng.random_range(0..10) {
                    0 => {
                        len = rng.random_range(0..3 * CHUNK);
                        wrapped.set_len(len).unwrap();
                        plain.set_len(len).unwrap();
                    }
                    _ if len > 0 => {
                        let offset = rng.random_range(0..len);
                        let n = rng.random_range(1..=(len - offset).min(CHUNK / 4));
                        let data = vec![rng.random_range(1..=255u8); usize::try_from(n).unwrap()];
                        wrapped.write(offset, &data).unwrap();
                        plain.write(offset, &data).unwrap();
                        user_bytes += n;
                    }
                    _ => {}
                }
                assert_eq!(wrapped.len().unwrap(), plain.len().unwrap(), "seed {seed}");
            }
            assert!(
                contents(&wrapped) == contents(&plain),
                "seed {seed}: the contents differ"
            );
            let written = *wrapped.inner.written.lock().unwrap();
            assert!(written >= user_bytes, "seed {seed}");
        }
    }

    /// A backend on which every write of zeros fails, like a disk that is full for the fill.
    #[derive(Debug, Default)]
    struct RefusesZeros(InMemoryBackend);

    impl StorageBackend for RefusesZeros {
        fn len(&self) -> Result<u64, io::Error> {
            self.0.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
            self.0.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), io::Error> {
            self.0.set_len(len)
        }
        fn sync_data(&self) -> Result<(), io::Error> {
            self.0.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
            if data.iter().all(|&b| b == 0) {
                return Err(io::Error::other("no space for the fill"));
            }
            self.0.write(offset, data)
        }
    }

    /// The fill is an optimization: when it fails, redb's write still goes through and the
    /// file holds what it would without the wrapper.
    #[test]
    fn a_failing_fill_does_not_fail_the_write() {
        let wrapped = ZeroFill::with_chunk(RefusesZeros::default(), CHUNK).unwrap();
        wrapped.set_len(2 * CHUNK).unwrap();
        wrapped.write(100, &[7; 10]).unwrap();
        wrapped.write(CHUNK + 5, &[8; 3]).unwrap();
        let bytes = contents(&wrapped);
        assert_eq!(bytes.len() as u64, 2 * CHUNK);
        assert!(bytes[..100].iter().all(|&b| b == 0));
        assert_eq!(&bytes[100..110], &[7; 10]);
        assert!(bytes[110..(CHUNK + 5) as usize].iter().all(|&b| b == 0));
        assert_eq!(&bytes[(CHUNK + 5) as usize..(CHUNK + 8) as usize], &[8; 3]);
    }

    /// Space added by growing is filled, up to a chunk past the first write into it and never
    /// past the end of the file.
    #[test]
    fn growth_is_filled_a_chunk_ahead_of_the_writes() {
        let wrapped = ZeroFill::with_chunk(Counted::default(), CHUNK).unwrap();
        wrapped.set_len(3 * CHUNK).unwrap();
        wrapped.write(10, &[1; 100]).unwrap();
        assert_eq!(*wrapped.inner.written.lock().unwrap(), CHUNK);
        // Inside the filled chunk: only the write itself.
        wrapped.write(CHUNK - 50, &[2; 50]).unwrap();
        assert_eq!(*wrapped.inner.written.lock().unwrap(), CHUNK + 50);
        // Crossing into the next chunk fills the rest of it.
        wrapped.write(CHUNK - 10, &[3; 20]).unwrap();
        assert_eq!(*wrapped.inner.written.lock().unwrap(), 2 * CHUNK + 60);
        // A shrink gives space back; growing again fills it again, up to the file's end.
        wrapped.set_len(CHUNK / 2).unwrap();
        wrapped.set_len(CHUNK).unwrap();
        wrapped.write(CHUNK - 4, &[4; 4]).unwrap();
        assert_eq!(
            *wrapped.inner.written.lock().unwrap(),
            2 * CHUNK + 60 + CHUNK / 2
        );
        let bytes = contents(&wrapped);
        assert_eq!(bytes.len() as u64, CHUNK);
        assert!(bytes[..10].iter().all(|&b| b == 0));
        assert!(bytes[10..110].iter().all(|&b| b == 1));
        assert!(bytes[110..(CHUNK / 2) as usize].iter().all(|&b| b == 0));
        assert!(
            bytes[(CHUNK / 2) as usize..(CHUNK - 4) as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(&bytes[(CHUNK - 4) as usize..], &[4; 4]);
    }
}
