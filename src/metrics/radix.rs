//! Parallel LSD radix sort of u64 or u32 keys (8-bit digits; 11-bit digits measured slower here).
//!
//! Comparison sorts cost O(n log n) branchy work; verification score sets reach 10^8, so the ROC's
//! one sort is a radix sort. Passes whose digit is the same for every key (common for scores in a
//! narrow range, whose high bytes barely vary) are skipped. Each pass splits the keys into one
//! chunk per thread: chunk histograms give every (digit, chunk) a disjoint output range, so threads
//! scatter without synchronisation and the result does not depend on the thread count.

use rayon::prelude::*;

use super::binary::SortKey;

const BITS: usize = 8;
const BUCKETS: usize = 1 << BITS;
/// Below this a single-threaded pass is faster than coordinating threads.
const PARALLEL_MIN: usize = 1 << 16;

#[inline]
fn digit<K: SortKey>(key: K, pass: usize) -> usize {
    ((key.to_u64() >> (pass * BITS)) as usize) & (BUCKETS - 1)
}

/// Sorts `keys` ascending. Uses the caller's rayon pool.
pub fn radix_sort<K: SortKey>(keys: &mut Vec<K>) {
    let passes = (K::BITS as usize).div_ceil(BITS);
    let n = keys.len();
    if n < 2 {
        return;
    }
    if n < 256 {
        keys.sort_unstable();
        return;
    }
    let chunks = if n >= PARALLEL_MIN { rayon::current_num_threads().max(1) } else { 1 };
    let chunk_len = n.div_ceil(chunks);
    let mut src = std::mem::take(keys);
    let mut dst: Vec<K> = crate::heap::with_capacity_huge(n);
    // SAFETY: every slot of `dst` is written by the scatter below before it is read.
    #[allow(clippy::uninit_vec)]
    unsafe {
        dst.set_len(n)
    };
    // One read of the data gives the histogram of every digit; it tells which passes can be skipped.
    let totals: Vec<[usize; BUCKETS]> = src
        .par_chunks(chunk_len)
        .map(|chunk| {
            let mut h = vec![[0usize; BUCKETS]; passes];
            for &k in chunk {
                for (pass, hp) in h.iter_mut().enumerate() {
                    hp[digit(k, pass)] += 1;
                }
            }
            h
        })
        .reduce(
            || vec![[0usize; BUCKETS]; passes],
            |mut a, b| {
                for (ha, hb) in a.iter_mut().zip(&b) {
                    for (x, y) in ha.iter_mut().zip(hb) {
                        *x += y;
                    }
                }
                a
            },
        );
    for (pass, total) in totals.iter().enumerate() {
        if total.contains(&n) {
            continue; // every key has the same digit: the pass would not move anything
        }
        // Chunk histograms of the current order (each pass permutes the keys).
        let hists: Vec<[usize; BUCKETS]> = src
            .par_chunks(chunk_len)
            .map(|chunk| {
                let mut h = [0usize; BUCKETS];
                for &k in chunk {
                    h[digit(k, pass)] += 1;
                }
                h
            })
            .collect();
        // offsets[c][b]: where chunk c writes its first key with digit b.
        let mut offsets = vec![[0usize; BUCKETS]; hists.len()];
        let mut running = 0;
        for b in 0..BUCKETS {
            for (c, h) in hists.iter().enumerate() {
                offsets[c][b] = running;
                running += h[b];
            }
        }
        debug_assert_eq!(running, n);
        let out = SharedOut(dst.as_mut_ptr());
        src.par_chunks(chunk_len).zip(offsets.into_par_iter()).for_each(|(chunk, mut off)| {
            let out = &out;
            for &k in chunk {
                let d = digit(k, pass);
                // SAFETY: the ranges given by `offsets` are disjoint across chunks and digits and
                // together cover 0..n exactly once.
                unsafe { *out.0.add(off[d]) = k };
                off[d] += 1;
            }
        });
        std::mem::swap(&mut src, &mut dst);
    }
    *keys = src;
}

/// Sorts `keys` ascending, in the caller's rayon pool: one read finds the keys' range, one
/// parallel scatter puts them into up to 2^16 buckets by the bits just below their common prefix
/// (chunk histograms give every thread disjoint output ranges), then every bucket, mostly a few
/// hundred keys that fit in L1, is sorted on its own, buckets in parallel. Two passes over memory
/// instead of one per radix digit; uneven buckets (scores piled on a few values) only cost their
/// own comparison sort.
pub fn sort_keys<K: SortKey>(keys: &mut Vec<K>) {
    let n = keys.len();
    if n < 1 << 14 {
        keys.sort_unstable();
        return;
    }
    let (lo, hi) = keys
        .par_iter()
        .fold(|| (u64::MAX, 0u64), |(a, b), &k| (a.min(k.to_u64()), b.max(k.to_u64())))
        .reduce(|| (u64::MAX, 0u64), |(a, b), (c, d)| (a.min(c), b.max(d)));
    if lo == hi {
        return;
    }
    // About 64 keys per bucket, between 2^8 and 2^16 buckets, over the bits where keys differ.
    let span_bits = 64 - (hi - lo).leading_zeros();
    let bucket_bits = (usize::BITS - n.leading_zeros()).saturating_sub(6).clamp(8, 16).min(span_bits);
    let shift = span_bits - bucket_bits;
    let buckets = 1usize << bucket_bits;
    let bucket = |k: K| ((k.to_u64() - lo) >> shift) as usize;
    let chunks = rayon::current_num_threads().max(1);
    let chunk_len = n.div_ceil(chunks);
    let hists: Vec<Vec<usize>> = keys
        .par_chunks(chunk_len)
        .map(|chunk| {
            let mut h = vec![0usize; buckets];
            for &k in chunk {
                h[bucket(k)] += 1;
            }
            h
        })
        .collect();
    let mut offsets = vec![vec![0usize; buckets]; hists.len()];
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut running = 0;
    for b in 0..buckets {
        starts.push(running);
        for (c, h) in hists.iter().enumerate() {
            offsets[c][b] = running;
            running += h[b];
        }
    }
    starts.push(running);
    debug_assert_eq!(running, n);
    // Keys piled into a few buckets (a far outlier stretches the range): one thread would sort most
    // of them by comparison; the digit-by-digit radix sort stays linear there.
    let largest = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    if largest > (n / 16).max(1 << 16) {
        radix_sort(keys);
        return;
    }
    let mut dst: Vec<K> = crate::heap::with_capacity_huge(n);
    // SAFETY: every slot of `dst` is written by the scatter below before it is read.
    #[allow(clippy::uninit_vec)]
    unsafe {
        dst.set_len(n)
    };
    let out = SharedOut(dst.as_mut_ptr());
    keys.par_chunks(chunk_len).zip(offsets.into_par_iter()).for_each(|(chunk, mut off)| {
        let out = &out;
        for &k in chunk {
            let b = bucket(k);
            // SAFETY: the ranges given by `offsets` are disjoint across chunks and buckets and
            // together cover 0..n exactly once.
            unsafe { *out.0.add(off[b]) = k };
            off[b] += 1;
        }
    });
    let mut slices = Vec::with_capacity(buckets);
    let mut rest: &mut [K] = &mut dst;
    for w in starts.windows(2) {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        if head.len() > 1 {
            slices.push(head);
        }
        rest = tail;
    }
    slices.into_par_iter().with_min_len(64).for_each(|s| s.sort_unstable());
    *keys = dst;
}

struct SharedOut<K>(*mut K);
// SAFETY: threads write disjoint indices only (see the scatter above).
unsafe impl<K> Sync for SharedOut<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed
    }

    #[test]
    fn sorts_like_std() {
        let mut seed = 7;
        for &n in &[0usize, 1, 5, 300, 70_000, 200_001] {
            for shift in [0u32, 40, 60] {
                let mut v: Vec<u64> = (0..n).map(|_| lcg(&mut seed) >> shift).collect();
                let mut expect = v.clone();
                expect.sort_unstable();
                let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
                pool.install(|| radix_sort(&mut v));
                assert_eq!(v, expect, "n={n} shift={shift}");
            }
        }
    }

    #[test]
    fn bucket_sort_sorts_like_std() {
        let mut seed = 11;
        for &n in &[0usize, 3, 16_383, 16_384, 70_000, 300_001] {
            for shift in [0u32, 13, 40, 60] {
                let mut v: Vec<u64> = (0..n).map(|_| lcg(&mut seed) >> shift).collect();
                if n > 10 {
                    v[n / 2] = u64::MAX; // one far outlier: a span of 64 bits, most keys in one bucket
                }
                let mut expect = v.clone();
                expect.sort_unstable();
                let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
                pool.install(|| sort_keys(&mut v));
                assert_eq!(v, expect, "n={n} shift={shift}");
            }
        }
        for &n in &[70_000usize, 300_001] {
            for shift in [0u32, 20] {
                let mut v: Vec<u32> = (0..n).map(|_| (lcg(&mut seed) >> 32) as u32 >> shift).collect();
                v[n / 3] = u32::MAX;
                let mut expect = v.clone();
                expect.sort_unstable();
                let mut r = v.clone();
                sort_keys(&mut v);
                radix_sort(&mut r);
                assert_eq!(v, expect, "u32 n={n} shift={shift}");
                assert_eq!(r, expect, "u32 radix n={n} shift={shift}");
            }
        }
        let mut same = vec![7u64; 50_000];
        sort_keys(&mut same);
        assert!(same.iter().all(|&x| x == 7));
        let mut two: Vec<u64> = (0..50_000u64).map(|i| if i % 3 == 0 { u64::MAX } else { 0 }).collect();
        sort_keys(&mut two);
        assert!(two.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn constant_and_two_valued_keys() {
        let mut v = vec![42u64; 100_000];
        radix_sort(&mut v);
        assert!(v.iter().all(|&x| x == 42));
        let mut w: Vec<u64> = (0..100_000u64).map(|i| if i % 3 == 0 { u64::MAX } else { 0 }).collect();
        radix_sort(&mut w);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
    }
}
