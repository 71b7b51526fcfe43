//! Large freed blocks kept for the next large allocation: the extension's global allocator.
//!
//! A metric over 10^7 scores allocates a few blocks of tens of MB (sort keys, the curve's parts,
//! the curve) and frees them when it returns. Blocks this large are mapped and unmapped by glibc on
//! every call, so every call page-faults all of them in again: about a third of a 10M-score report
//! on the development machine (a VM whose host also reclaims freed guest memory, where a fresh page
//! costs several times more), and what made its time vary 2x between calls. Kept here instead, a
//! freed block serves the next allocation of about its size with its pages still mapped.
//!
//! The kept memory is marked `MADV_FREE`: the kernel may take its pages back whenever it needs
//! memory (no process is pushed towards swap or OOM for it), and a block it has not touched is
//! reused without a fault. Bounded: at most [`SLOTS`] blocks and [`MAX_BYTES`]; a block idle for
//! [`IDLE`] is unmapped at the next large free; `mfr.release_cached_memory()`
//! unmaps all of them; `MFR_HEAP_REUSE=0` turns keeping off (as it does glibc's heap reuse,
//! [`crate::heap`]). Never blocks: when another thread holds the cache (or a fork caught it held),
//! an allocation goes straight to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Blocks from this size up are kept when freed.
pub const MIN_BLOCK: usize = 8 << 20;
/// At most this many blocks are kept.
pub const SLOTS: usize = 12;
/// At most this many bytes are kept.
pub const MAX_BYTES: usize = 1 << 30;
/// A block unused this long is unmapped at the next large free.
pub const IDLE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
    since: Instant,
}

impl Block {
    /// Returns the block to the system allocator.
    fn unmap(&self) {
        // SAFETY: every block here came from System with at most this size (its usable size) and
        // an alignment of at most 16 (see `cacheable`); free() looks at neither.
        unsafe { System.dealloc(self.ptr as *mut u8, Layout::from_size_align_unchecked(self.size, 16)) };
    }
}

/// The allocator: the system allocator, with large freed blocks kept for reuse.
pub struct BlockCache {
    slots: Mutex<[Option<Block>; SLOTS]>,
    /// 0: not read yet, 1: keeping, 2: off (`MFR_HEAP_REUSE=0`).
    state: AtomicU8,
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    pub const fn new() -> Self {
        BlockCache { slots: Mutex::new([None; SLOTS]), state: AtomicU8::new(0) }
    }

    fn keeping(&self) -> bool {
        match self.state.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                // Reading the variable allocates only small strings, which never come here.
                let on = !crate::heap::disabled_by_env();
                self.state.store(if on { 1 } else { 2 }, Ordering::Relaxed);
                on
            }
        }
    }

    /// A kept block for `layout`: at least its size and at most twice it (a small request does
    /// not pin a large block), the smallest such.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let mut slots = self.slots.try_lock().ok()?;
        let mut best: Option<usize> = None;
        for (i, s) in slots.iter().enumerate() {
            if let Some(b) = s {
                let fits = b.size >= layout.size() && b.size / 2 <= layout.size();
                if fits && best.is_none_or(|j| slots[j].is_some_and(|c| c.size > b.size)) {
                    best = Some(i);
                }
            }
        }
        best.and_then(|i| slots[i].take()).map(|b| b.ptr as *mut u8)
    }

    /// Keeps a freed block, or returns it (and any block evicted for it) to the system.
    fn keep(&self, ptr: *mut u8, layout: Layout) {
        self.keep_at(ptr, layout, Instant::now())
    }

    fn keep_at(&self, ptr: *mut u8, layout: Layout, now: Instant) {
        // The block's whole size: one handed out for a smaller request is not kept as that.
        let block = Block { ptr: ptr as usize, size: usable_size(ptr, layout), since: now };
        let mut out: [Option<Block>; SLOTS + 1] = [None; SLOTS + 1];
        let mut n_out = 0;
        let mut kept = false;
        if let Ok(mut slots) = self.slots.try_lock() {
            for s in slots.iter_mut() {
                if s.is_some_and(|b| now.duration_since(b.since) >= IDLE) {
                    out[n_out] = s.take();
                    n_out += 1;
                }
            }
            if block.size <= MAX_BYTES {
                // Room: a free slot within the byte limit, made by dropping the oldest blocks.
                loop {
                    let bytes: usize = slots.iter().flatten().map(|b| b.size).sum();
                    if let (Some(i), true) = (slots.iter().position(|s| s.is_none()), bytes + block.size <= MAX_BYTES) {
                        slots[i] = Some(block);
                        kept = true;
                        break;
                    }
                    let oldest = slots.iter().enumerate().filter_map(|(i, s)| s.map(|b| (b.since, i))).min();
                    let (_, i) = oldest.expect("a full cache holds blocks");
                    out[n_out] = slots[i].take();
                    n_out += 1;
                }
            }
        }
        if kept {
            // The kernel may take the pages whenever it needs memory; untouched, they are reused.
            // SAFETY: the block is free: nobody reads it until it is handed out again, as new.
            unsafe { crate::heap::advise(block.ptr, block.size, crate::heap::Advice::Free) };
        } else {
            out[n_out] = Some(block);
            n_out += 1;
        }
        out[..n_out].iter().flatten().for_each(Block::unmap);
    }

    /// Unmaps every kept block; returns the bytes released.
    pub fn release(&self) -> usize {
        let Some(mut slots) = self.wait() else { return 0 };
        let taken = std::mem::replace(&mut *slots, [None; SLOTS]);
        drop(slots);
        taken.iter().flatten().for_each(Block::unmap);
        taken.iter().flatten().map(|b| b.size).sum()
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.wait().map_or(0, |s| s.iter().flatten().map(|b| b.size).sum())
    }

    /// The cache, once no other thread holds it (a few tries: a fork that caught it held leaves it
    /// held for good in the child, where this then gives up instead of hanging).
    fn wait(&self) -> Option<std::sync::MutexGuard<'_, [Option<Block>; SLOTS]>> {
        for _ in 0..1000 {
            if let Ok(slots) = self.slots.try_lock() {
                return Some(slots);
            }
            std::thread::yield_now();
        }
        None
    }
}

/// The size of the block at `ptr`, at least `layout.size()` (glibc's `malloc_usable_size`).
#[cfg(target_os = "linux")]
fn usable_size(ptr: *mut u8, layout: Layout) -> usize {
    extern "C" {
        fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
    }
    // SAFETY: ptr is a live block of the system allocator (malloc).
    unsafe { malloc_usable_size(ptr.cast()) }.max(layout.size())
}

#[cfg(not(target_os = "linux"))]
fn usable_size(_ptr: *mut u8, layout: Layout) -> usize {
    layout.size()
}

fn cacheable(layout: Layout) -> bool {
    layout.size() >= MIN_BLOCK && layout.align() <= 16
}

// SAFETY: every pointer handed out comes from System (directly or kept after a free) with a
// layout whose size it covers and whose alignment (<= 16) glibc's allocations satisfy.
unsafe impl GlobalAlloc for BlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if cacheable(layout) && self.keeping() {
            if let Some(p) = self.take(layout) {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Fresh mappings are zero already; a kept block would need clearing.
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if cacheable(layout) && self.keeping() {
            self.keep(ptr, layout);
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // glibc resizes large blocks in place (mremap); a kept block is an ordinary glibc block.
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    /// A cache that keeps blocks (or not), whatever `MFR_HEAP_REUSE` says.
    fn cache(keeping: bool) -> BlockCache {
        let cache = BlockCache::new();
        cache.state.store(if keeping { 1 } else { 2 }, Ordering::Relaxed);
        cache
    }

    /// Kept bytes count whole blocks: each at most a page over what was asked for.
    fn about(kept: usize, asked: usize, blocks: usize) -> bool {
        (asked..=asked + blocks * 4096).contains(&kept)
    }

    #[test]
    fn a_freed_block_serves_the_next_allocation_of_about_its_size() {
        let cache = cache(true);
        // SAFETY: pointers go back to the cache that made them, with their layouts.
        unsafe {
            let a = cache.alloc(layout(40 * MB));
            a.write_bytes(7, 40 * MB);
            cache.dealloc(a, layout(40 * MB));
            assert!(about(cache.kept_bytes(), 40 * MB, 1));
            let small = cache.alloc(layout(12 * MB)); // under half: not from the 40 MB block
            assert_ne!(small, a);
            let b = cache.alloc(layout(30 * MB));
            assert_eq!(b, a, "the kept block is reused");
            assert_eq!(cache.kept_bytes(), 0);
            b.write_bytes(1, 30 * MB);
            cache.dealloc(b, layout(30 * MB));
            cache.dealloc(small, layout(12 * MB));
            // Small blocks and over-aligned ones are never kept.
            let tiny = cache.alloc(layout(MB));
            cache.dealloc(tiny, layout(MB));
            let aligned = Layout::from_size_align(16 * MB, 4096).unwrap();
            let p = cache.alloc(aligned);
            cache.dealloc(p, aligned);
            // The 40 MB block goes back as that, though it served 30 MB.
            let kept = cache.kept_bytes();
            assert!(about(kept, 40 * MB + 12 * MB, 2), "{kept}");
            assert_eq!(cache.release(), kept);
            assert_eq!(cache.release(), 0);
        }
    }

    #[test]
    fn bounded_by_slots_bytes_and_idle_time() {
        let cache = cache(true);
        let t0 = Instant::now();
        // SAFETY: as above.
        unsafe {
            for k in 0..SLOTS + 3 {
                let p = System.alloc(layout(MIN_BLOCK));
                cache.keep_at(p, layout(MIN_BLOCK), t0 + Duration::from_millis(k as u64));
            }
            assert!(about(cache.kept_bytes(), SLOTS * MIN_BLOCK, SLOTS), "the oldest blocks make room");
            // A block larger than the byte limit is not kept; blocks under it evict the oldest.
            let big = System.alloc(layout(MAX_BYTES + 1));
            cache.keep_at(big, layout(MAX_BYTES + 1), t0);
            assert!(about(cache.kept_bytes(), SLOTS * MIN_BLOCK, SLOTS));
            let half = System.alloc(layout(MAX_BYTES / 2 + MB));
            cache.keep_at(half, layout(MAX_BYTES / 2 + MB), t0);
            assert!(cache.kept_bytes() <= MAX_BYTES);
            // Everything idle longer than IDLE goes at the next free.
            let p = System.alloc(layout(MIN_BLOCK));
            cache.keep_at(p, layout(MIN_BLOCK), t0 + IDLE + Duration::from_secs(1));
            assert!(about(cache.kept_bytes(), MIN_BLOCK, 1));
            cache.release();
        }
    }

    #[test]
    fn off_keeps_nothing() {
        let cache = cache(false);
        // SAFETY: as above.
        unsafe {
            let a = cache.alloc(layout(20 * MB));
            cache.dealloc(a, layout(20 * MB));
        }
        assert_eq!(cache.kept_bytes(), 0);
    }
}
