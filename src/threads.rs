//! The crate's single rayon pool.
//!
//! All parallel work goes through [`install`]; nothing uses rayon's global pool, because a pool
//! cannot be resized and its worker threads do not survive `fork()`. The pool remembers the pid
//! that built it: a forked child (DataLoader worker, notebook multiprocessing) finds a foreign pool,
//! abandons it without touching its dead threads, and builds its own on first use.

use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{MfrError, Result};

struct PoolSlot {
    pid: u32,
    threads: usize,
    pool: Option<Arc<rayon::ThreadPool>>,
}

static SLOT: Mutex<PoolSlot> = Mutex::new(PoolSlot { pid: 0, threads: 0, pool: None });
static REQUESTED: Mutex<Option<usize>> = Mutex::new(None);
static ENV_DEFAULT: OnceLock<Option<usize>> = OnceLock::new();

/// Environment variable that sets the default thread count.
pub const ENV_VAR: &str = "MFR_NUM_THREADS";

fn env_default() -> Option<usize> {
    *ENV_DEFAULT
        .get_or_init(|| std::env::var(ENV_VAR).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0))
}

fn hardware_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (plain value writes).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Number of threads parallel work uses: `set_num_threads`, else `MFR_NUM_THREADS`, else all cores.
pub fn num_threads() -> usize {
    lock(&REQUESTED).or_else(env_default).unwrap_or_else(hardware_threads)
}

/// Sets the thread count (0 restores the default). Takes effect for the next parallel call.
pub fn set_num_threads(n: usize) -> Result<()> {
    const MAX: usize = 4096;
    if n > MAX {
        return Err(MfrError::invalid("set_num_threads", format!("n must be between 0 and {MAX}, got {n}")));
    }
    *lock(&REQUESTED) = if n == 0 { None } else { Some(n) };
    Ok(())
}

fn current_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    let mut slot = lock(&SLOT);
    if slot.pid != pid {
        // Inherited across fork: its threads do not exist here. Leak it rather than drop it,
        // since dropping would signal threads that will never answer.
        if let Some(stale) = slot.pool.take() {
            std::mem::forget(stale);
        }
        slot.pid = pid;
    }
    if slot.threads != threads || slot.pool.is_none() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("mfr-worker-{i}"))
            .build()
            .map_err(|e| MfrError::Internal(format!("could not start {threads} worker threads: {e}")))?;
        slot.pool = Some(Arc::new(pool));
        slot.threads = threads;
    }
    Ok(slot.pool.as_ref().map(Arc::clone).expect("pool was just set"))
}

/// Runs `op` inside the mfr pool. With one thread configured that is a pool of one thread too:
/// run inline, `op`'s parallel iterators would start rayon's global pool, which a forked child
/// inherits without its threads.
pub fn install<R: Send>(op: impl FnOnce() -> R + Send) -> Result<R> {
    let pool = current_pool(num_threads().max(1))?;
    Ok(pool.install(op))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn pool_follows_requested_size() {
        set_num_threads(3).unwrap();
        assert_eq!(num_threads(), 3);
        assert_eq!(install(rayon::current_num_threads).unwrap(), 3);
        let total: u64 = install(|| (0..10_000u64).into_par_iter().sum()).unwrap();
        assert_eq!(total, 10_000 * 9_999 / 2);
        set_num_threads(1).unwrap();
        assert_eq!(install(|| 7).unwrap(), 7);
        // One thread means one: parallel iterators inside do not reach rayon's global pool.
        assert_eq!(install(rayon::current_num_threads).unwrap(), 1);
        assert!(install(|| rayon::current_thread_index().is_some()).unwrap());
        assert!(set_num_threads(1_000_000).is_err());
        set_num_threads(0).unwrap();
        assert!(num_threads() >= 1);
    }
}
