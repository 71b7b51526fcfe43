//! The metrics' own scratch pool: the large key and curve buffers of one report kept for the next.
//!
//! A report over 10^7 scores sorts its keys into buffers of tens of MB, and writes its curve into
//! buffers as large (three float64 arrays of up to one point per score). Freed, such buffers go
//! back to the kernel (glibc maps and unmaps blocks this large), and the next report page-faults
//! all of them in again: zeroing the fresh pages of a 5-million-point curve took a sixth of a
//! float32 report's time (measured). The pool keeps them instead, for the metrics alone: only the
//! buffers the metrics allocate through [`take`] and hand back through [`give`] pass through it
//! (a curve's arrays come back when the arrays handed out, and every view of them, are gone); the
//! process's allocator and its settings are never touched.
//!
//! Kept buffers are marked `MADV_FREE`: the kernel may take their pages whenever it needs memory,
//! and until it does a buffer is reused without a fault. Bounded: [`SLOTS`] buffers of each key
//! width, [`CURVE_SLOTS`] curve arrays and [`MAX_BYTES`] in all; a buffer idle for [`IDLE`] is
//! freed at the next hand-back; `mfr.release_cached_memory()` frees all of them ([`release`]);
//! `MFR_SCRATCH_POOL=0` turns keeping off.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::heap::{advise, with_capacity_huge, Advice};

/// Buffers from this size up are kept.
pub const MIN_BYTES: usize = 8 << 20;
/// At most this many buffers of one key width are kept.
pub const SLOTS: usize = 4;
/// At most this many curve arrays are kept: a report writes three, plus three for every part of
/// its walk after the first (one part per thread).
pub const CURVE_SLOTS: usize = 12;
/// At most this many bytes are kept, all element types together.
pub const MAX_BYTES: usize = 1 << 30;
/// A buffer unused this long is freed at the next hand-back.
pub const IDLE: Duration = Duration::from_secs(10);
/// Environment variable that turns keeping off when set to `0`, `false` or `no`.
pub const ENV_VAR: &str = "MFR_SCRATCH_POOL";

/// An element type the pool keeps buffers of (the score keys of either width, the curve's float64s).
pub trait Pooled: Copy + Send + 'static {
    /// How many buffers of this type are kept at most.
    const SLOTS: usize = SLOTS;
    fn pool() -> &'static Pool<Self>;
}

struct Kept<T> {
    buffer: Vec<T>,
    since: Instant,
    /// How many leading elements were written when it was handed back (0 once discarded): their
    /// pages are resident unless the kernel has taken them since.
    resident: usize,
}

/// The kept buffers of one element type.
pub struct Pool<T> {
    kept: Mutex<Vec<Kept<T>>>,
}

impl<T> Pool<T> {
    const fn new() -> Self {
        Pool { kept: Mutex::new(Vec::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept<T>>> {
        // Holders only push, pop and swap whole entries: a panic cannot leave the list torn.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bytes(&self) -> usize {
        self.lock().iter().map(|k| k.buffer.capacity() * std::mem::size_of::<T>()).sum()
    }

    fn release(&self) -> usize {
        let taken = std::mem::take(&mut *self.lock());
        taken.iter().map(|k| k.buffer.capacity() * std::mem::size_of::<T>()).sum()
    }
}

static WIDE: Pool<u64> = Pool::new();
static NARROW: Pool<u32> = Pool::new();
static CURVE: Pool<f64> = Pool::new();

impl Pooled for u64 {
    fn pool() -> &'static Pool<u64> {
        &WIDE
    }
}

impl Pooled for u32 {
    fn pool() -> &'static Pool<u32> {
        &NARROW
    }
}

impl Pooled for f64 {
    const SLOTS: usize = CURVE_SLOTS;
    fn pool() -> &'static Pool<f64> {
        &CURVE
    }
}

/// 0: not read yet, 1: keeping, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

fn keeping() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let off = std::env::var(ENV_VAR)
                .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no"))
                .unwrap_or(false);
            STATE.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// An empty vector with room for at least `n` elements: a kept buffer of between `n` and `2n`
/// (the smallest such: a small request does not pin a large buffer), else a new one.
pub(crate) fn take<T: Pooled>(n: usize) -> Vec<T> {
    take_resident(n).0
}

/// As [`take`], with how many leading elements of the buffer were written by its last user (0 for
/// a new one): writing them again faults no fresh page in, unless the kernel took it meanwhile.
pub(crate) fn take_resident<T: Pooled>(n: usize) -> (Vec<T>, usize) {
    if n * std::mem::size_of::<T>() >= MIN_BYTES && keeping() {
        let mut kept = T::pool().lock();
        let best = kept
            .iter()
            .enumerate()
            .filter(|(_, k)| k.buffer.capacity() >= n && k.buffer.capacity() / 2 <= n)
            .min_by_key(|(_, k)| k.buffer.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let Kept { mut buffer, resident, .. } = kept.swap_remove(i);
            buffer.clear();
            return (buffer, resident);
        }
    }
    (with_capacity_huge(n), 0)
}

/// Hands `v` back for a later [`take`] (or frees it, when small, over the bounds or keeping is off).
pub(crate) fn give<T: Pooled>(v: Vec<T>) {
    keep(v, Advice::Free)
}

/// Hands `v` back: as [`give`], or with `discard` its pages returned to the kernel now
/// (`MADV_DONTNEED`): they leave the process's resident memory at once, as a report needs when it
/// is about to write a large curve, while the address range stays kept (the next user faults
/// fresh zeroed pages into it).
pub(crate) fn hand_back<T: Pooled>(v: Vec<T>, discard: bool) {
    keep(v, if discard { Advice::DontNeed } else { Advice::Free })
}

fn keep<T: Pooled>(v: Vec<T>, advice: Advice) {
    let size = std::mem::size_of::<T>();
    let bytes = v.capacity() * size;
    if !(MIN_BYTES..=MAX_BYTES).contains(&bytes) || !keeping() {
        return;
    }
    let now = Instant::now();
    let resident = if matches!(advice, Advice::DontNeed) { 0 } else { v.len() };
    // SAFETY: the vector's own allocation; its contents are never read again (`take` clears it).
    unsafe { advise(v.as_ptr() as usize, bytes, advice) };
    let others = kept_bytes() - T::pool().bytes(); // the other types' buffers
    let mut freed = Vec::new();
    let mut kept = T::pool().lock();
    let mut i = 0;
    while i < kept.len() {
        if now.duration_since(kept[i].since) >= IDLE {
            freed.push(kept.swap_remove(i));
        } else {
            i += 1;
        }
    }
    loop {
        let mine: usize = kept.iter().map(|k| k.buffer.capacity() * size).sum();
        if kept.len() < T::SLOTS && others + mine + bytes <= MAX_BYTES {
            kept.push(Kept { buffer: v, since: now, resident });
            break;
        }
        let Some(oldest) = kept.iter().enumerate().min_by_key(|(_, k)| k.since).map(|(i, _)| i) else {
            break; // over the bound on its own: freed below
        };
        freed.push(kept.swap_remove(oldest));
    }
    drop(kept);
    drop(freed); // freed outside the lock
}

/// Frees every kept buffer now; returns the bytes freed.
pub fn release() -> usize {
    WIDE.release() + NARROW.release() + CURVE.release()
}

/// Bytes of the buffers kept now.
pub fn kept_bytes() -> usize {
    WIDE.bytes() + NARROW.bytes() + CURVE.bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the pool is process-wide, and parallel tests would see each other's buffers.
    #[test]
    fn buffers_are_kept_reused_bounded_and_released() {
        release();
        let n = (MIN_BYTES / 8) * 3; // 24 MB of u64
        let mut a: Vec<u64> = take(n);
        assert!(a.capacity() >= n && a.is_empty());
        a.resize(n, 7);
        let ptr = a.as_ptr();
        give(a);
        assert!(kept_bytes() >= 3 * MIN_BYTES);
        let b: Vec<u64> = take(n / 3); // under half of the kept one: a new buffer
        assert_ne!(b.as_ptr(), ptr);
        let (c, resident) = take_resident::<u64>(n - 5);
        assert_eq!(c.as_ptr(), ptr, "a kept buffer of about the size asked serves it");
        assert_eq!(resident, n, "its writer's length comes with it");
        assert!(c.is_empty() && kept_bytes() == 0);
        let small: Vec<u32> = vec![1; 100];
        give(small); // under MIN_BYTES: freed
        assert_eq!(kept_bytes(), 0);
        for _ in 0..SLOTS + 2 {
            give(take::<u32>(MIN_BYTES / 4));
            give(vec![0u32; MIN_BYTES / 4]);
        }
        assert_eq!(NARROW.lock().len(), SLOTS, "at most SLOTS buffers of a width");
        for _ in 0..CURVE_SLOTS + 2 {
            give(vec![0f64; MIN_BYTES / 8]);
        }
        assert_eq!(CURVE.lock().len(), CURVE_SLOTS, "at most CURVE_SLOTS curve arrays");
        let curve: Vec<f64> = take(MIN_BYTES / 8);
        assert!(curve.capacity() == MIN_BYTES / 8 && CURVE.lock().len() == CURVE_SLOTS - 1);
        give(curve);
        let mut d: Vec<u64> = take(n);
        d.resize(n, 1);
        hand_back(d, true);
        let (d, resident) = take_resident::<u64>(n);
        assert_eq!(resident, 0, "a discarded buffer's pages are gone");
        hand_back(d, true);
        assert!(kept_bytes() >= (SLOTS + CURVE_SLOTS) * MIN_BYTES + 3 * MIN_BYTES);
        let released = release();
        assert!(released >= (SLOTS + CURVE_SLOTS) * MIN_BYTES && kept_bytes() == 0);
        drop(b);
    }
}
