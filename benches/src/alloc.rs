//! A counting global allocator, so that a benchmark can tell how many heap bytes a data
//! structure holds.
//!
//! The counters count the sizes that callers asked for (`Layout::size`), not what the system
//! allocator hands out, so per-block overhead and fragmentation are not included. They only move
//! in a binary that installs [`CountingAlloc`] as its global allocator:
//!
//! ```
//! #[global_allocator]
//! static GLOBAL: benches::alloc::CountingAlloc = benches::alloc::CountingAlloc;
//!
//! fn main() {
//!     let before = benches::alloc::live_bytes();
//!     let block = vec![0u8; 4096];
//!     assert!(benches::alloc::live_bytes() >= before + 4096);
//!     drop(block);
//! }
//! ```
//!
//! Elsewhere [`live_bytes`] and [`peak_bytes`] stay at zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The highest [`LIVE`] has been since the start or the last [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes it has live and the most it has had live.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

/// Bytes currently allocated through [`CountingAlloc`] and not freed.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The most bytes live at once since the program started or since the last [`reset_peak`].
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(by: usize) {
    LIVE.fetch_sub(by, Ordering::Relaxed);
}

// SAFETY: every method passes its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract, and returns what `System` returned. The counting around the calls only
// touches atomics: it never allocates, never unwinds, and never touches the memory.
#[allow(unsafe_code, reason = "GlobalAlloc is an unsafe trait")]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `alloc`'s contract for `layout`, which we pass on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller guarantees `ptr` came from this allocator, hence from `System`, with
        // this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: our caller guarantees `ptr` came from this allocator, hence from `System`, with
        // this `layout`, and that `new_size` is valid for it.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let old_size = layout.size();
            if new_size >= old_size {
                grew(new_size - old_size);
            } else {
                shrank(old_size - new_size);
            }
        }
        new
    }
}
