//! The metrics' sort: score keys split by label and sorted, straight from the scores.
//!
//! Comparison sorts cost O(n log n) branchy work; verification score sets reach 10^8, so the
//! metrics' one sort is a bucket sort ([`split_sorted`], [`sort_keys`]): keys scattered by their
//! top bits into buckets of a few thousand, each bucket then sorted in cache. Chunk histograms give
//! every (bucket, chunk) a disjoint output range, so threads scatter without synchronisation and the
//! result does not depend on the thread count. When keys pile into a few buckets (a far outlier
//! stretches the range) the digit-by-digit LSD radix sort ([`radix_sort`], 8-bit digits; passes
//! whose digit is the same for every key skipped) stays linear instead.

use rayon::prelude::*;

use super::disjoint::Disjoint;
use super::keys::{Score, SortKey};

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
        let out = Disjoint::new(dst.as_mut_ptr());
        src.par_chunks(chunk_len).zip(offsets.into_par_iter()).for_each(|(chunk, mut off)| {
            for &k in chunk {
                let d = digit(k, pass);
                // SAFETY: the ranges given by `offsets` are disjoint across chunks and digits and
                // together cover 0..n exactly once.
                unsafe { out.write(off[d], k) };
                off[d] += 1;
            }
        });
        std::mem::swap(&mut src, &mut dst);
    }
    *keys = src;
}

/// Sorts `keys` ascending, in the caller's rayon pool: one read finds the keys' range, one
/// parallel scatter puts them into buckets by the bits just below their common prefix (chunk
/// histograms give every thread disjoint output ranges), then every bucket is sorted in cache on
/// its own ([`sort_bucket`]), buckets in parallel: the layout [`split_sorted`] uses. Uneven buckets
/// (a far outlier stretches the range) fall back to the digit-by-digit radix sort.
pub fn sort_keys<K: SortKey>(keys: &mut Vec<K>) {
    let n = keys.len();
    if n < 1 << 14 || n > u32::MAX as usize {
        if n < 1 << 14 {
            keys.sort_unstable();
        } else {
            radix_sort(keys);
        }
        return;
    }
    let (lo, hi) = keys
        .par_iter()
        .fold(|| (u64::MAX, 0u64), |(a, b), &k| (a.min(k.to_u64()), b.max(k.to_u64())))
        .reduce(|| (u64::MAX, 0u64), |(a, b), (c, d)| (a.min(c), b.max(d)));
    if lo == hi {
        return;
    }
    let layout = Layout::new(n, lo, hi);
    let chunk_len = n.div_ceil(rayon::current_num_threads().max(1));
    let hists: Vec<Vec<usize>> = keys
        .par_chunks(chunk_len)
        .map(|chunk| {
            let mut h = vec![0usize; layout.buckets];
            for &k in chunk {
                h[layout.bucket(k.to_u64())] += 1;
            }
            h
        })
        .collect();
    let (offsets, starts, largest) = offsets(&hists, layout.buckets);
    debug_assert_eq!(starts[layout.buckets], n);
    if piled_up(largest, n) {
        radix_sort(keys);
        return;
    }
    let mut dst: Vec<K> = crate::heap::with_capacity_huge(n);
    // SAFETY: every slot of `dst` is written by the scatter below before it is read.
    #[allow(clippy::uninit_vec)]
    unsafe {
        dst.set_len(n)
    };
    let out = Disjoint::new(dst.as_mut_ptr());
    keys.par_chunks(chunk_len).zip(offsets.into_par_iter()).for_each(|(chunk, mut off)| {
        for &k in chunk {
            let b = layout.bucket(k.to_u64());
            // SAFETY: the ranges given by `offsets` are disjoint across chunks and buckets and
            // together cover 0..n exactly once.
            unsafe { out.write(off[b], k) };
            off[b] += 1;
        }
    });
    sort_buckets(&mut dst, &starts, layout);
    *keys = dst;
}

/// Whether a bucket holds too many of `n` keys for a one-thread comparison sort of it.
fn piled_up(largest: usize, n: usize) -> bool {
    largest > (n / 16).max(1 << 16)
}

/// Sorts every bucket of `v` (bounded by `starts`, laid out by `layout`) that holds more than one
/// key on its own, in parallel, each with the range its keys lie in: `[base, base + 2^bits)`, or
/// `bits` = `u32::MAX` for the first and last buckets, which take the keys outside the layout's
/// range.
fn sort_buckets<K: SortKey>(v: &mut [K], starts: &[usize], layout: Layout) {
    let mut buckets = Vec::new();
    let mut rest = v;
    for (b, w) in starts.windows(2).enumerate() {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        if head.len() > 1 {
            let edge = b == 0 || b + 1 == layout.buckets;
            buckets.push((head, layout.lo + ((b as u64) << layout.shift), if edge { u32::MAX } else { layout.shift }));
        }
        rest = tail;
    }
    buckets.into_par_iter().with_min_len(8).for_each_init(
        || (Vec::new(), Vec::new()),
        |(scratch, counts), (s, base, bits)| sort_bucket(s, base, bits, scratch, counts),
    );
}

/// Where the keys of one class go: `[lo, lo + 2^(bits + shift))` in 2^bits buckets.
#[derive(Clone, Copy)]
struct Layout {
    lo: u64,
    shift: u32,
    buckets: usize,
}

impl Layout {
    /// About 2,000 keys per bucket, between 2^8 and 2^11 buckets, over the bits where keys differ:
    /// few enough buckets that the scatter's write streams stay in cache, small enough buckets
    /// that each is sorted in cache ([`sort_bucket`]).
    fn new(n: usize, lo: u64, hi: u64) -> Layout {
        if n == 0 || lo >= hi {
            return Layout { lo: lo.min(hi), shift: 0, buckets: 1 };
        }
        let span_bits = 64 - (hi - lo).leading_zeros();
        let bucket_bits = (usize::BITS - n.leading_zeros()).saturating_sub(11).clamp(8, 11).min(span_bits);
        Layout { lo, shift: span_bits - bucket_bits, buckets: 1 << bucket_bits }
    }

    /// The bucket of `key`; keys outside the layout's range go to the first or the last.
    #[inline]
    fn bucket(&self, key: u64) -> usize {
        ((key.saturating_sub(self.lo) >> self.shift) as usize).min(self.buckets - 1)
    }
}

/// Sorts one bucket, whose keys lie in `[base, base + 2^bits)`, in cache: a two-digit LSD radix
/// sort (one read for both digits' counts, two scatters through `scratch`) over the bucket's top
/// bits, about twice as many as the bucket has keys, which leaves keys that share those bits
/// (rare unless scores cluster) to an insertion sort; should that one find many, the bucket is
/// comparison-sorted instead.
fn sort_bucket<K: SortKey>(v: &mut [K], base: u64, bits: u32, scratch: &mut Vec<K>, counts: &mut Vec<u32>) {
    let n = v.len();
    if bits == u32::MAX {
        v.sort_unstable(); // an edge bucket: its keys' range is not known
        return;
    }
    if bits == 0 {
        return; // one key value
    }
    if n <= 32 || n > u32::MAX as usize {
        if n > 32 || !insertion_sort(v, usize::MAX) {
            v.sort_unstable();
        }
        return;
    }
    let digit = (usize::BITS - 1 - n.leading_zeros()).saturating_sub(1).clamp(4, 11);
    let window = bits.min(2 * digit);
    let (low, high) = (window / 2, window - window / 2);
    let shift = bits - window;
    let top = |k: K| ((k.to_u64() - base) >> shift) as usize;
    let mask = (1usize << low) - 1;
    counts.clear();
    counts.resize((1 << low) + (1 << high), 0);
    let (c1, c2) = counts.split_at_mut(1 << low);
    for &k in v.iter() {
        let r = top(k);
        c1[r & mask] += 1;
        c2[r >> low] += 1;
    }
    let exclusive = |c: &mut [u32]| {
        let mut sum = 0;
        for x in c.iter_mut() {
            (*x, sum) = (sum, sum + *x);
        }
    };
    exclusive(c1);
    exclusive(c2);
    scratch.clear();
    scratch.resize(n, K::default());
    for &k in v.iter() {
        let at = &mut c1[top(k) & mask];
        scratch[*at as usize] = k;
        *at += 1;
    }
    for &k in scratch.iter() {
        let at = &mut c2[top(k) >> low];
        v[*at as usize] = k;
        *at += 1;
    }
    if shift > 0 && !insertion_sort(v, 4 * n) {
        v.sort_unstable();
    }
}

/// Insertion sort, linear on nearly sorted keys; gives up (returning false, `v` still a
/// permutation) once it has moved keys `budget` times.
fn insertion_sort<K: SortKey>(v: &mut [K], budget: usize) -> bool {
    let mut moves = 0;
    for i in 1..v.len() {
        let k = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > k {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = k;
        moves += i - j;
        if moves > budget {
            return false;
        }
    }
    true
}

/// Per-chunk offsets of every bucket of one class, the buckets' starts, and its largest bucket.
fn offsets(hists: &[Vec<usize>], buckets: usize) -> (Vec<Vec<usize>>, Vec<usize>, usize) {
    let mut offsets = vec![vec![0usize; buckets]; hists.len()];
    let mut starts = Vec::with_capacity(buckets + 1);
    let (mut running, mut largest) = (0, 0);
    for b in 0..buckets {
        starts.push(running);
        let before = running;
        for (c, h) in hists.iter().enumerate() {
            offsets[c][b] = running;
            running += h[b];
        }
        largest = largest.max(running - before);
    }
    starts.push(running);
    (offsets, starts, largest)
}

/// What [`split_sorted`] found.
pub enum Split<K> {
    /// The genuine and impostor keys, each sorted ascending.
    Sorted(Vec<K>, Vec<K>),
    /// A score is not finite or a label not 0/1 (the caller's checks say which, and where).
    Invalid,
    /// The keys pile into a few buckets (a far outlier stretches a class's range): the caller
    /// splits and uses [`sort_keys`], whose digit-by-digit fallback stays linear there.
    PiledUp,
}

/// The genuine (label 1) and impostor keys of `scores`, each sorted ascending, straight from the
/// scores: buckets laid out from a sample of the keys, a read for each chunk's bucket histograms
/// (which also checks the input), one scatter of every key into its bucket's place, then every
/// bucket (a few thousand keys, in cache) sorted on its own. The keys are never written in input
/// order first, which saves a write and two reads of them against splitting and then sorting.
pub fn split_sorted<S: Score>(scores: &[S], labels: &[u8]) -> Split<S::Key> {
    let n = scores.len();
    if n > u32::MAX as usize {
        return Split::PiledUp; // 32-bit counts below; the general path takes any size
    }
    let chunk_len = n.div_ceil(rayon::current_num_threads().max(1)).max(1 << 14);
    // The buckets' layout from a sample: a full read just for the key ranges would cost as much
    // as the histograms. Keys outside a sampled range go to the class's first or last bucket,
    // which are comparison-sorted (see `ranged_buckets`); a sample that misses a large part of
    // the keys shows up as a piled-up bucket.
    let step = (n >> 14).max(1);
    let (mut sampled, mut sampled_pos) = (0usize, 0usize);
    let mut range = [(u64::MAX, 0u64); 2];
    for i in (0..n).step_by(step).chain([n - 1]) {
        let (x, y) = (scores[i], labels[i]);
        if x.is_finite() && y <= 1 {
            let (k, side) = (x.key().to_u64(), usize::from(y != 1));
            range[side] = (range[side].0.min(k), range[side].1.max(k));
            sampled += 1;
            sampled_pos += usize::from(y == 1);
        }
    }
    let pos_guess = (sampled_pos as f64 / sampled.max(1) as f64 * n as f64) as usize;
    let layout = [Layout::new(pos_guess, range[0].0, range[0].1), Layout::new(n - pos_guess, range[1].0, range[1].1)];
    // One flat histogram per chunk, genuine buckets first: a key's slot is found by arithmetic on
    // its label, never by a branch (the label is a coin flip for balanced pairs). The same read
    // checks the input.
    let split = layout[0].buckets;
    // Each class's first slot is read from its own layout, like its range: computed as
    // `side * split`, the compiler branched on the label to skip reading `split` for genuine
    // pairs, a mispredict per key at 50% genuine.
    let first = [0, split];
    let slot = |x: S, y: u8| {
        let side = usize::from(y != 1);
        first[side] + layout[side].bucket(x.key().to_u64())
    };
    let hists: Vec<(Vec<u32>, bool)> = scores
        .par_chunks(chunk_len)
        .zip(labels.par_chunks(chunk_len))
        .map(|(s, l)| {
            let mut h = vec![0u32; split + layout[1].buckets];
            let mut bad = false;
            for (&x, &y) in s.iter().zip(l) {
                bad |= (y > 1) | !x.is_finite();
                h[slot(x, y)] += 1;
            }
            (h, bad)
        })
        .collect();
    if hists.iter().any(|h| h.1) {
        return Split::Invalid;
    }
    let per_side = |side: usize| {
        let part = |h: &Vec<u32>| if side == 0 { h[..split].to_vec() } else { h[split..].to_vec() };
        let h: Vec<Vec<usize>> = hists.iter().map(|h| part(&h.0).into_iter().map(|c| c as usize).collect()).collect();
        offsets(&h, layout[side].buckets)
    };
    let ((off_pos, starts_pos, big_pos), (off_neg, starts_neg, big_neg)) = (per_side(0), per_side(1));
    let n_pos = starts_pos[layout[0].buckets];
    if piled_up(big_pos, n_pos) || piled_up(big_neg, n - n_pos) {
        return Split::PiledUp;
    }
    let offsets: Vec<Vec<u32>> =
        off_pos.into_iter().zip(off_neg).map(|(p, q)| p.into_iter().chain(q).map(|o| o as u32).collect()).collect();
    let mut pos: Vec<S::Key> = crate::heap::with_capacity_huge(n_pos);
    let mut neg: Vec<S::Key> = crate::heap::with_capacity_huge(n - n_pos);
    let out = [Disjoint::new(pos.as_mut_ptr()), Disjoint::new(neg.as_mut_ptr())];
    scores.par_chunks(chunk_len).zip(labels.par_chunks(chunk_len)).zip(offsets).for_each(|((s, l), mut off)| {
        for (&x, &y) in s.iter().zip(l) {
            let at = slot(x, y);
            // SAFETY: the ranges given by the offsets are disjoint across chunks and buckets and
            // together cover each class's vector exactly once.
            unsafe { out[usize::from(y != 1)].write(off[at] as usize, x.key()) };
            off[at] += 1;
        }
    });
    // SAFETY: every slot below the lengths was written by the scatter.
    unsafe {
        pos.set_len(n_pos);
        neg.set_len(n - n_pos);
    }
    rayon::join(|| sort_buckets(&mut pos, &starts_pos, layout[0]), || sort_buckets(&mut neg, &starts_neg, layout[1]));
    Split::Sorted(pos, neg)
}

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
    fn split_sorted_matches_split_then_sort() {
        let mut seed = 5;
        for &n in &[70_000usize, 300_001] {
            for spread in [1.0f64, 1e-6] {
                let scores: Vec<f64> =
                    (0..n).map(|_| (lcg(&mut seed) >> 11) as f64 / (1u64 << 53) as f64 * spread).collect();
                let labels: Vec<u8> = (0..n).map(|i| u8::from(lcg(&mut seed) % 10 < 3 || i % 7 == 0)).collect();
                let Split::Sorted(pos, neg) = split_sorted(&scores, &labels) else { panic!("even buckets") };
                let mut expect_pos: Vec<u64> =
                    scores.iter().zip(&labels).filter(|p| *p.1 == 1).map(|p| p.0.key()).collect();
                let mut expect_neg: Vec<u64> =
                    scores.iter().zip(&labels).filter(|p| *p.1 == 0).map(|p| p.0.key()).collect();
                expect_pos.sort_unstable();
                expect_neg.sort_unstable();
                assert_eq!((pos, neg), (expect_pos, expect_neg), "n={n} spread={spread}");
                let narrow: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
                let Split::Sorted(pos, _) = split_sorted(&narrow, &labels) else { panic!("even buckets") };
                assert!(pos.windows(2).all(|w| w[0] <= w[1]));
            }
        }
        let mut outlier: Vec<f64> = (0..100_000).map(|i| 1.0 + i as f64 * 1e-9).collect();
        outlier[3] = 1e300;
        // A far outlier the sample misses lands in the last bucket, which is comparison-sorted.
        let Split::Sorted(pos, neg) = split_sorted(&outlier, &vec![0u8; 100_000]) else { panic!("sorted") };
        let mut expect: Vec<u64> = outlier.iter().map(|x| x.key()).collect();
        expect.sort_unstable();
        assert!(pos.is_empty() && neg == expect);
        // A sample that misses most keys: they pile into an edge bucket and the caller falls back.
        let misled: Vec<f64> =
            (0..100_000).map(|i| if i % 6 == 0 { i as f64 * 1e-9 } else { 5.0 + i as f64 }).collect();
        assert!(matches!(split_sorted(&misled, &vec![0u8; 100_000]), Split::PiledUp));
        match split_sorted(&outlier[..70_000], &vec![1u8; 70_000]) {
            Split::Sorted(_, neg) => assert!(neg.is_empty()),
            Split::PiledUp => {}
            Split::Invalid => panic!("valid input"),
        }
        let mut bad = outlier.clone();
        bad[99_999] = f64::NAN;
        assert!(matches!(split_sorted(&bad, &vec![0u8; 100_000]), Split::Invalid));
        let mut labels = vec![0u8; 100_000];
        labels[5] = 2;
        assert!(matches!(split_sorted(&outlier, &labels), Split::Invalid));
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
