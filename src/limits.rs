//! Up-front memory limits. Rust aborts the process when an allocation fails, and Python cannot
//! catch an abort, so every buffer whose size an argument decides (bootstrap resamples, sampler
//! epochs, decoded images, pairs) is sized first and refused with the figure when it cannot fit.

use crate::error::{MfrError, Result};

/// Requests below this size are never refused: they cannot exhaust a machine that runs Python.
const ALWAYS_ALLOWED: u128 = 256 << 20;

/// Memory the kernel reports as available for new allocations now (`MemAvailable` of
/// `/proc/meminfo`); `None` where that is unknown (non-Linux), where only the address-space bound
/// applies.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// What the process may still map under its address-space limit (`RLIMIT_AS`, as `ulimit -v`
/// sets it): the soft limit of `/proc/self/limits` less the `VmSize` of `/proc/self/status`. `None`
/// where there is no such limit or it is unknown. Past it every allocation fails, and a failed Rust
/// allocation aborts the process: so requests are refused against this bound too.
pub fn address_space_left() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line.split_whitespace().nth(3)?.parse().ok()?; // "unlimited" does not parse
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let vm = status.lines().find(|l| l.starts_with("VmSize:"))?;
    let used = vm.split_whitespace().nth(1)?.parse::<u64>().ok()?.checked_mul(1024)?;
    Some(soft.saturating_sub(used))
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses a request of `bytes` (for `what`, e.g. "the bootstrap's 1000000000 resamples") that is
/// larger than the address space or than the memory available now.
pub fn check_memory(func: &str, what: &str, bytes: u128) -> Result<()> {
    if bytes <= ALWAYS_ALLOWED {
        return Ok(());
    }
    if bytes > isize::MAX as u128 {
        return Err(MfrError::out_of_memory(
            func,
            format!("{what} would need {}, more than any machine can address", gib(bytes)),
        ));
    }
    if let Some(free) = available_memory() {
        if bytes > u128::from(free) {
            return Err(MfrError::out_of_memory(
                func,
                format!(
                    "{what} would need {}, more than the {} of memory available",
                    gib(bytes),
                    gib(u128::from(free))
                ),
            ));
        }
    }
    if let Some(left) = address_space_left() {
        if bytes > u128::from(left) {
            return Err(MfrError::out_of_memory(
                func,
                format!(
                    "{what} would need {}, more than the {} this process may still allocate (its address-space limit, ulimit -v)",
                    gib(bytes),
                    gib(u128::from(left))
                ),
            ));
        }
    }
    Ok(())
}

/// `a * b * ...` without overflow (u128 holds any product of a few `usize`s that matters here;
/// saturates beyond).
pub fn product(factors: &[u128]) -> u128 {
    factors.iter().fold(1u128, |acc, &f| acc.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_pass_and_huge_ones_name_the_figure() {
        assert!(check_memory("f", "x", 1 << 20).is_ok());
        let err = check_memory("f", "the bootstrap's 10 resamples", product(&[1 << 40, 1 << 40])).unwrap_err();
        assert!(err.to_string().starts_with("f: the bootstrap's 10 resamples would need"), "{err}");
        if let Some(free) = available_memory() {
            let err = check_memory("f", "y", u128::from(free) + (1 << 30)).unwrap_err();
            assert!(err.to_string().contains("of memory available"), "{err}");
        }
    }

    #[test]
    fn product_saturates() {
        assert_eq!(product(&[2, 3, 7]), 42);
        assert_eq!(product(&[u128::MAX, 2]), u128::MAX);
    }
}
