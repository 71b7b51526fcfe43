//! Heap tuning for CPU training, as an explicit opt-in, and advice to the kernel on large
//! buffers (huge pages for one-off buffers).
//!
//! A CPU meta-step keeps every split's second-order graph alive until its single final backward
//! (that is what lets the splits share each domain's forward), so it allocates a working set of
//! hundreds of MB and frees all of it when the step ends. glibc's default policy then returns the
//! freed top of the heap to the kernel, and the next step page-faults every page back in. Raising
//! glibc's thresholds keeps freed memory for reuse instead (the same trade PyTorch's CUDA caching
//! allocator makes on GPUs): the process keeps its peak heap, up to [`TRIM_THRESHOLD`] of it unused.
//!
//! That changes the whole process's malloc policy (the interpreter's, libtorch's, every other
//! library's), so the library never does it on its own: [`tune_heap`] is called by the `mfr`
//! command (an application, which says so in its log) or by a user who asks for it
//! (`mfr.tune_heap()`); glibc's own `MALLOC_TRIM_THRESHOLD_` / `MALLOC_MMAP_THRESHOLD_` environment
//! variables do the same from outside. Outside glibc (macOS, musl) nothing changes here.

use std::sync::OnceLock;

/// Allocations up to this size come from the heap (glibc's largest allowed value on 64-bit, and
/// the ceiling its own dynamic threshold grows to); larger ones are still mapped and unmapped.
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// Freed memory at the top of the heap is kept up to this size (glibc takes an int).
pub const TRIM_THRESHOLD: i32 = i32::MAX;

static APPLIED: OnceLock<bool> = OnceLock::new();

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    extern "C" {
        fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    // From glibc's malloc.h.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only updates allocator parameters under glibc's own lock.
    unsafe { mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 && mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

/// Sets glibc's mmap and trim thresholds for this whole process, once (later calls change
/// nothing); returns whether they are set (false outside glibc).
pub fn tune_heap() -> bool {
    *APPLIED.get_or_init(set_thresholds)
}

/// Whether an earlier [`tune_heap`] set the thresholds in this process.
pub fn heap_tuned() -> bool {
    APPLIED.get().copied().unwrap_or(false)
}

/// A vector with room for `n` elements whose pages the kernel may back with transparent huge
/// pages (`madvise(MADV_HUGEPAGE)`; Linux only, a no-op elsewhere or below 4 MiB). A 10^7-score
/// metric writes several such buffers of tens of MB once each: with 4 KiB pages every one costs
/// ~20,000 page faults (a third of the report's time measured), with 2 MiB pages ~40.
pub fn with_capacity_huge<T>(n: usize) -> Vec<T> {
    let v = Vec::with_capacity(n);
    let bytes = n * std::mem::size_of::<T>();
    if bytes >= 4 << 20 {
        // SAFETY: the vector's own (empty) allocation; this advice keeps contents.
        unsafe { advise(v.as_ptr() as usize, bytes, Advice::HugePages) };
    }
    v
}

/// What [`advise`] tells the kernel about a range of memory.
#[derive(Clone, Copy)]
pub(crate) enum Advice {
    /// `MADV_HUGEPAGE`: back it with transparent huge pages where possible.
    HugePages,
    /// `MADV_FREE`: its contents are not needed; take the pages whenever memory is short (until
    /// then a write reuses them without a fault).
    Free,
    /// `MADV_DONTNEED`: take the pages now; the next touch gets zeroed ones.
    DontNeed,
}

/// `madvise` on the whole pages inside `[start, start + len)` (Linux; a no-op elsewhere).
///
/// # Safety
/// The range must lie inside one allocation; with an advice that drops contents (`Free`,
/// `DontNeed`), nobody may read it afterwards expecting what was there.
#[cfg(target_os = "linux")]
pub(crate) unsafe fn advise(start: usize, len: usize, advice: Advice) {
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: std::os::raw::c_int) -> std::os::raw::c_int;
    }
    const PAGE: usize = 4096;
    let code = match advice {
        Advice::HugePages => 14,
        Advice::Free => 8,
        Advice::DontNeed => 4,
    };
    let (lo, hi) = (start.div_ceil(PAGE) * PAGE, (start + len) / PAGE * PAGE);
    if hi > lo {
        // SAFETY: the range lies inside the caller's allocation; madvise changes how the kernel
        // backs it (a failure, e.g. without THP, leaves it as it was).
        unsafe {
            madvise(lo as *mut std::ffi::c_void, hi - lo, code);
        }
    }
}

/// No-op outside Linux.
///
/// # Safety
/// None needed; the signature matches the Linux one.
#[cfg(not(target_os = "linux"))]
pub(crate) unsafe fn advise(_start: usize, _len: usize, _advice: Advice) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_vectors_are_ordinary_vectors() {
        for n in [0usize, 10, 1 << 20, (3 << 20) + 7] {
            let mut v: Vec<u64> = with_capacity_huge(n);
            assert!(v.capacity() >= n && v.is_empty());
            v.extend((0..n as u64).map(|i| i * 3));
            assert!(v.iter().enumerate().all(|(i, &x)| x == 3 * i as u64));
        }
    }

    #[test]
    fn applied_once_and_reported() {
        assert!(!heap_tuned(), "nothing tunes the heap unasked");
        let first = tune_heap();
        assert_eq!(tune_heap(), first);
        assert_eq!(heap_tuned(), first);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(first, "glibc accepts both thresholds");
        }
    }
}
