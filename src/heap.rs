//! Reuse of freed CPU heap between meta-steps.
//!
//! A CPU meta-step keeps every split's second-order graph alive until its single final backward
//! (that is what lets the splits share each domain's forward), so it allocates a working set of
//! hundreds of MB and frees all of it when the step ends. glibc's default policy then returns the
//! freed top of the heap to the kernel, and the next step page-faults every page back in: on the
//! benchmark's small CNN (leave-one-out over 3 domains) that was ~137,000 minor faults and 0.25 s
//! of system time per ~1 s step. Fixing glibc's thresholds keeps freed memory for reuse instead
//! (the same trade PyTorch's CUDA caching allocator makes on GPUs): the process keeps its peak
//! heap, up to [`TRIM_THRESHOLD`] of it unused.
//!
//! It is process-wide, so it is applied once, by the first CPU meta-step, and never by importing
//! `mfr`; `MFR_HEAP_REUSE=0` turns it off. Outside glibc (macOS, musl) nothing changes.

use std::sync::OnceLock;

/// Environment variable that turns heap reuse off when set to `0`, `false` or `no`.
pub const ENV_VAR: &str = "MFR_HEAP_REUSE";
/// Allocations up to this size come from the heap (glibc's largest allowed value on 64-bit, and
/// the ceiling its own dynamic threshold grows to); larger ones are still mapped and unmapped.
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// Freed memory at the top of the heap is kept up to this size (glibc takes an int).
pub const TRIM_THRESHOLD: i32 = i32::MAX;

static APPLIED: OnceLock<bool> = OnceLock::new();

fn disabled_by_env() -> bool {
    std::env::var(ENV_VAR)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no"))
        .unwrap_or(false)
}

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

/// Applies heap reuse once per process (unless `MFR_HEAP_REUSE=0`); returns whether it is active.
pub fn reuse_freed_heap() -> bool {
    *APPLIED.get_or_init(|| !disabled_by_env() && set_thresholds())
}

/// Whether an earlier [`reuse_freed_heap`] turned heap reuse on in this process.
pub fn heap_reuse_active() -> bool {
    APPLIED.get().copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_once_and_reported() {
        let first = reuse_freed_heap();
        assert_eq!(reuse_freed_heap(), first);
        assert_eq!(heap_reuse_active(), first);
        if cfg!(all(target_os = "linux", target_env = "gnu")) && !disabled_by_env() {
            assert!(first, "glibc accepts both thresholds");
        }
    }
}
