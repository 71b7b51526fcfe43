//! The metrics' sort: score keys split by label and sorted, straight from the scores.
//!
//! Comparison sorts cost O(n log n) branchy work; verification score sets reach 10^8, so the
//! metrics' one sort is a bucket sort ([`split_sorted`], [`sort_keys`]): keys scattered into
//! buckets of a few thousand, each bucket then sorted in cache. Verification scores are not
//! uniform (cosine similarities are bell-shaped, genuines shifted from impostors, often rounded,
//! now and then with a far outlier), so the buckets are laid out from a sample of the scores'
//! values, not by equal widths of the key range ([`Layout`]): even on any of those shapes. Chunk
//! histograms give every (bucket, chunk) a disjoint output range, so threads scatter without
//! synchronisation and the result does not depend on the thread count. A bucket the sample
//! misjudged is partitioned again from its own sample; a bucket of equal keys needs no sorting.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::disjoint::Disjoint;
use super::keys::{Score, SortKey};
use super::scratch;

/// Fine cells a class's value range is cut into before they are grouped into buckets.
const CELLS: usize = 1 << 14;
/// Keys a bucket is laid out to hold: sorted in cache on its own ([`sort_bucket`]).
const BUCKET_KEYS: usize = 2048;
/// Buckets per class at most: few enough write streams that the scatter stays in cache.
const MAX_BUCKETS: usize = 2048;
/// Values sampled to lay the buckets out.
const SAMPLE: usize = 1 << 15;
/// A bucket this much larger than laid out (the sample misjudged the keys) is partitioned again.
const LARGE_BUCKET: usize = 1 << 15;
/// How often a bucket is partitioned again before it is comparison-sorted.
const MAX_DEPTH: u32 = 4;

/// Where the keys of one class go, laid out from a sample of their values: the sample's range
/// (less its most extreme values, so one far outlier does not stretch it) cut into [`CELLS`]
/// equal cells, and a table giving each cell a bucket such that every bucket holds about as many
/// sampled values. Bell-shaped, shifted, bimodal or heavily tied scores thus fill the buckets
/// evenly (equal-width buckets overflow on them); a run of equal values the sample finds often
/// fills a bucket of its own, which needs no sorting. Values outside the range go to the first or
/// last cell. The map from value to bucket is monotone (IEEE subtraction, multiplication and the
/// saturating conversion all are), so sorted buckets concatenate to sorted keys.
struct Layout {
    lo: f64,
    scale: f64,
    /// The bucket of each cell, non-decreasing.
    table: Vec<u16>,
    buckets: usize,
}

impl Layout {
    /// The layout of `n` keys from `sample`, values drawn from them (reordered here).
    fn from_sample(sample: &mut [f64], n: usize) -> Layout {
        let buckets = (n / BUCKET_KEYS).clamp(1, MAX_BUCKETS);
        let m = sample.len();
        if buckets == 1 || m < 2 {
            return Layout { lo: 0.0, scale: 0.0, table: vec![0; CELLS], buckets: 1 };
        }
        // The range without the most extreme 1/4096 of the sample on either side.
        let trim = m / 4096;
        let lo = *sample.select_nth_unstable_by(trim, f64::total_cmp).1;
        let hi = *sample.select_nth_unstable_by(m - 1 - trim, f64::total_cmp).1;
        let span = hi - lo;
        let scale = if span > 0.0 && span.is_finite() {
            (CELLS as f64 / span).min(f64::MAX)
        } else if span > 0.0 {
            CELLS as f64 / f64::MAX // a range past f64: the cells still order the values
        } else {
            0.0 // one sampled value (outside the trim): a single cell
        };
        let mut layout = Layout { lo, scale, table: vec![0; CELLS], buckets };
        let mut counts = vec![0u32; CELLS];
        for &x in sample.iter() {
            counts[layout.cell(x)] += 1;
        }
        let mut before = 0u64;
        for (slot, &c) in layout.table.iter_mut().zip(&counts) {
            *slot = ((before * buckets as u64 / m as u64) as usize).min(buckets - 1) as u16;
            before += u64::from(c);
        }
        layout
    }

    #[inline(always)]
    fn cell(&self, x: f64) -> usize {
        cell(x, self.lo, self.scale) as usize
    }

    #[inline(always)]
    fn bucket(&self, x: f64) -> usize {
        self.table[self.cell(x)] as usize
    }
}

/// The cell of `x` in a range starting at `lo` with `scale` cells per unit: values below the range
/// give the first cell, above it (or an overflowing difference) the last. Clamped as floats, max
/// then min, so a NaN (an overflowing difference times a zero scale) becomes 0; the loops that
/// call it vectorize.
#[inline(always)]
fn cell(x: f64, lo: f64, scale: f64) -> u32 {
    let t = ((x - lo) * scale).max(0.0).min((CELLS - 1) as f64);
    // SAFETY: t is a number in [0, CELLS - 1] (not NaN, see above). Converted as a signed
    // integer: one instruction, where the unsigned conversion takes several before AVX-512.
    unsafe { t.to_int_unchecked::<i32>() as u32 }
}

/// Sorts `keys` (keys of finite scores, as [`SortKey`] says) ascending, in the caller's rayon
/// pool: buckets laid out from a sample of the keys' values ([`Layout`]), a parallel scatter into
/// them (chunk histograms give every thread disjoint output ranges, so the result does not depend
/// on the thread count), then every bucket sorted in cache on its own, buckets in parallel.
/// Returns whether the keys hold a run of [`LONG_RUN`] equal keys or more.
pub fn sort_keys<K: SortKey>(keys: &mut Vec<K>) -> bool {
    let n = keys.len();
    if n < 1 << 14 || n > u32::MAX as usize {
        keys.par_sort_unstable(); // 32-bit counts below
        return n > u32::MAX as usize || has_long_run(keys); // (beyond 2^32 keys: not looked for)
    }
    let mut dst: Vec<K> = scratch::take(n);
    // SAFETY: `partition` writes every slot of `dst` before anything reads it.
    #[allow(clippy::uninit_vec)]
    unsafe {
        dst.set_len(n)
    };
    let runs = partition(keys, &mut dst, 0);
    scratch::give(std::mem::replace(keys, dst));
    runs
}

/// Sorts `src` into `dst` (same length): laid out, scattered and each bucket sorted as
/// [`sort_keys`] describes; `depth` counts the partitions above this one. Returns whether the
/// keys hold a run of [`LONG_RUN`] equal keys or more.
fn partition<K: SortKey>(src: &[K], dst: &mut [K], depth: u32) -> bool {
    let n = src.len();
    let step = (n / SAMPLE).max(1);
    let mut sample: Vec<f64> = src.iter().step_by(step).map(|k| k.value()).collect();
    let layout = Layout::from_sample(&mut sample, n);
    let chunk_len = n.div_ceil(rayon::current_num_threads().max(1)).max(1 << 14);
    let hists: Vec<Vec<u32>> = src
        .par_chunks(chunk_len)
        .map(|chunk| {
            let mut h = vec![0u32; layout.buckets];
            for &k in chunk {
                h[layout.bucket(k.value())] += 1;
            }
            h
        })
        .collect();
    let (offsets, starts) = offsets(&hists, layout.buckets);
    let out = Disjoint::new(dst.as_mut_ptr());
    src.par_chunks(chunk_len).zip(offsets.into_par_iter()).for_each(|(chunk, mut off)| {
        for &k in chunk {
            let b = layout.bucket(k.value());
            // SAFETY: the ranges given by `offsets` are disjoint across chunks and buckets and
            // together cover 0..n exactly once.
            unsafe { out.write(off[b], k) };
            off[b] += 1;
        }
    });
    sort_buckets(dst, &starts, depth)
}

/// Sorts every bucket of `v` (bounded by `starts`) on its own, in parallel.
/// Sorts every bucket of `v` (bounded by `starts`) on its own, in parallel; returns whether one
/// holds a run of [`LONG_RUN`] equal keys or more (equal keys share a bucket: runs never span
/// two), looked for while the bucket is in cache.
fn sort_buckets<K: SortKey>(v: &mut [K], starts: &[usize], depth: u32) -> bool {
    let mut buckets = Vec::with_capacity(starts.len());
    let mut rest = v;
    for w in starts.windows(2) {
        let (head, tail) = rest.split_at_mut(w[1] - w[0]);
        if head.len() > 1 {
            buckets.push(head);
        }
        rest = tail;
    }
    buckets
        .into_par_iter()
        .with_min_len(8)
        .map_init(
            || (Vec::new(), Vec::new()),
            |(scratch, counts), s| {
                sort_bucket(s, scratch, counts, depth);
                has_long_run(s)
            },
        )
        .reduce(|| false, |a, b| a | b)
}

/// Runs of this many equal keys or more are what the report's walk skips by search: keys without
/// any are walked without looking for them (`summary::walk`). Runs this long are rare by chance:
/// 10^7 uniform float32 scores hold about a hundred runs of five (float32 steps are coarse near
/// 1), none of nine.
pub const LONG_RUN: usize = 9;

/// Whether sorted `v` holds a run of [`LONG_RUN`] equal keys or more: a comparison of every key
/// with the one `LONG_RUN - 1` after it, in blocks (the loop inside vectorizes).
pub fn has_long_run<K: SortKey>(v: &[K]) -> bool {
    let gap = LONG_RUN - 1;
    if v.len() <= gap {
        return false;
    }
    let (ahead, behind) = (&v[gap..], &v[..v.len() - gap]);
    ahead.chunks(256).zip(behind.chunks(256)).any(|(a, b)| a.iter().zip(b).fold(false, |r, (x, y)| r | (x == y)))
}

/// Sorts one bucket in cache: nothing to do when its keys are equal (a run of tied scores); one
/// counting pass when its keys span few values ([`DENSE_BITS`]); else a two-digit LSD radix sort
/// (one read for both digits' counts, two scatters through `scratch`) over the top bits of the
/// keys' range, about twice as many as the bucket has keys, which leaves keys that share those
/// bits (rare unless scores cluster) to an insertion sort; should that one find many, the bucket
/// is comparison-sorted instead. A bucket far larger than laid out is partitioned again from its
/// own sample.
fn sort_bucket<K: SortKey>(v: &mut [K], scratch: &mut Vec<K>, counts: &mut Vec<u32>, depth: u32) {
    let n = v.len();
    if n <= 32 {
        if !insertion_sort(v, usize::MAX) {
            v.sort_unstable();
        }
        return;
    }
    // In the key's own width, so the loop vectorizes.
    let (lo, hi) = v.iter().fold((K::MAX, K::default()), |(a, b), &k| (a.min(k), b.max(k)));
    let (lo, hi) = (lo.to_u64(), hi.to_u64());
    if lo == hi {
        return; // one key value
    }
    if n > LARGE_BUCKET {
        if depth < MAX_DEPTH {
            scratch.clear();
            scratch.extend_from_slice(v);
            partition(scratch, v, depth + 1);
        } else {
            v.sort_unstable();
        }
        return;
    }
    let span = hi - lo;
    let bits = 64 - span.leading_zeros();
    if bits <= DENSE_BITS.min(usize::BITS - n.leading_zeros()) {
        counting_pass(v, scratch, counts, lo, bits);
        return;
    }
    let digit = (usize::BITS - 1 - n.leading_zeros()).saturating_sub(1).clamp(4, 11);
    let window = bits.min(2 * digit);
    let (low, high) = (window / 2, window - window / 2);
    let shift = bits - window;
    let top = |k: K| ((k.to_u64() - lo) >> shift) as usize;
    let mask = (1usize << low) - 1;
    counts.clear();
    counts.resize((1 << low) + (1 << high), 0);
    let (c1, c2) = counts.split_at_mut(1 << low);
    for &k in v.iter() {
        let r = top(k);
        c1[r & mask] += 1;
        c2[r >> low] += 1;
    }
    running_sums(c1);
    running_sums(c2);
    scratch.clear();
    scratch.resize(n, K::default());
    // SAFETY (both): every digit indexes its table (`top(k) < 2^window`: k - lo <= span), whose
    // running sums count the n keys.
    unsafe {
        scatter_by(v, scratch, c1, |k| top(k) & mask);
        scatter_by(scratch, v, c2, |k| top(k) >> low);
    }
    if shift > 0 && !insertion_sort(v, 4 * n) {
        v.sort_unstable();
    }
}

/// A bucket whose key range spans at most this many bits (and no more than twice as many values
/// as it has keys) is sorted by one counting pass over every value of the range: dense buckets,
/// common in float32 scores (the real embeddings' scores: buckets of 2,048 keys spanning a few
/// thousand values). One scatter instead of two: the 10M float32 report of the real embeddings'
/// scores, half genuine, went from 64 to 51 ms.
const DENSE_BITS: u32 = 12;

/// Sorts `v`, whose keys lie in `[lo, lo + 2^bits)`, with one counting scatter through `scratch`:
/// counts per value, their running sums, every key to its place, copied back.
fn counting_pass<K: SortKey>(v: &mut [K], scratch: &mut Vec<K>, counts: &mut Vec<u32>, lo: u64, bits: u32) {
    counts.clear();
    counts.resize(1 << bits, 0);
    for &k in v.iter() {
        counts[(k.to_u64() - lo) as usize] += 1;
    }
    running_sums(counts);
    scratch.clear();
    scratch.resize(v.len(), K::default());
    // SAFETY: every key's value indexes `counts` (the keys lie in `[lo, lo + 2^bits)`), whose
    // running sums count the keys of `v`.
    unsafe { scatter_by(v, scratch, counts, |k| (k.to_u64() - lo) as usize) };
    v.copy_from_slice(scratch);
}

/// Writes every key of `src` to `dst` at its digit's next position (`starts`, advanced as it goes):
/// one pass of a counting or radix sort, stable, without bounds checks in the loop.
///
/// # Safety
/// Every key's `digit` indexes `starts`, and `starts` are the running sums of the digits' counts
/// over `src`, so that the positions written are distinct and below `dst.len() == src.len()`.
#[inline(always)]
unsafe fn scatter_by<K: Copy>(src: &[K], dst: &mut [K], starts: &mut [u32], digit: impl Fn(K) -> usize) {
    debug_assert_eq!(src.len(), dst.len());
    let (starts, out) = (starts.as_mut_ptr(), dst.as_mut_ptr());
    for &k in src {
        let at = starts.add(digit(k));
        *out.add(*at as usize) = k;
        *at += 1;
    }
}

/// Replaces each count by the sum of the counts before it: where its keys start.
fn running_sums(counts: &mut [u32]) {
    let mut sum = 0;
    for c in counts.iter_mut() {
        (*c, sum) = (sum, sum + *c);
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

/// Per-chunk offsets of every bucket, and the buckets' starts (one more than buckets).
fn offsets(hists: &[Vec<u32>], buckets: usize) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut offsets = vec![vec![0usize; buckets]; hists.len()];
    let mut starts = Vec::with_capacity(buckets + 1);
    let mut running = 0usize;
    for b in 0..buckets {
        starts.push(running);
        for (c, h) in hists.iter().enumerate() {
            offsets[c][b] = running;
            running += h[b] as usize;
        }
    }
    starts.push(running);
    (offsets, starts)
}

/// A chunk's write position of every bucket (`offsets`, into both classes' keys end to end) as an
/// index into its class's vector: the impostors' buckets, numbered from `split` on, index their
/// vector from 0, which starts `n_pos` keys in.
fn positions(offsets: Vec<usize>, split: usize, n_pos: usize) -> Vec<u32> {
    offsets.into_iter().enumerate().map(|(b, o)| (if b < split { o } else { o - n_pos }) as u32).collect()
}

/// Both classes' layouts as the kernels read them: one table of `2 * CELLS` slots, the
/// impostors' cells after the genuine ones' and their buckets numbered after the genuine ones'.
struct Classes {
    lo: [f64; 2],
    scale: [f64; 2],
    table: Vec<u16>,
    /// Buckets of both classes: every table entry is below it.
    slots: usize,
}

impl Classes {
    fn new(layout: &[Layout; 2]) -> Classes {
        let split = layout[0].buckets as u16;
        let table = layout[0].table.iter().copied().chain(layout[1].table.iter().map(|&b| b + split)).collect();
        let slots = layout[0].buckets + layout[1].buckets;
        Classes { lo: [layout[0].lo, layout[1].lo], scale: [layout[0].scale, layout[1].scale], table, slots }
    }

    /// The table index of every pair of a block (written to `out`), and whether one is invalid
    /// (a score not finite, a label not 0/1). Selects, not branches, on the label: the compiler
    /// vectorizes the loop.
    #[inline(always)]
    fn indices<S: Score>(&self, s: &[S], l: &[u8], out: &mut [u32; BLOCK]) -> bool {
        let mut bad = false;
        for ((o, &x), &y) in out.iter_mut().zip(s).zip(l) {
            bad |= (y > 1) | !x.is_finite();
            let impostor = y != 1;
            let (lo, scale) = if impostor { (self.lo[1], self.scale[1]) } else { (self.lo[0], self.scale[0]) };
            *o = cell(x.value(), lo, scale) + if impostor { CELLS as u32 } else { 0 };
        }
        bad
    }
}

/// Pairs classified at a time: a block's table indices come from one vectorized loop.
const BLOCK: usize = 256;

/// The scatter's 32-bit positions run up to a line's keys past the scores' count (offset by the
/// line phase of their vector): split_sorted leaves this much room below `u32::MAX`.
const POSITION_SLACK: u32 = 64;

/// The two passes over the scores, compiled three times on x86-64: for the baseline and, chosen
/// at run time where the CPU has them, for AVX2 and for AVX-512 (the index loop vectorizes four or
/// eight float64s wide).
mod kernels {
    use super::{Classes, Disjoint, MaybeUninit, Score, BLOCK};

    /// A build of the kernels: the baseline, or one for an instruction set the CPU may have.
    #[derive(Clone, Copy, Debug, PartialEq)]
    pub(super) enum Build {
        Baseline,
        Avx2,
        Avx512,
    }

    impl Build {
        /// The fastest build this CPU runs.
        pub(super) fn best() -> Build {
            *Build::available().last().expect("the baseline runs anywhere")
        }

        /// Every build this CPU runs, the baseline first.
        pub(super) fn available() -> Vec<Build> {
            let mut builds = vec![Build::Baseline];
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") {
                    builds.push(Build::Avx2);
                    if has!("avx512f") && has!("avx512vl") && has!("avx512dq") && has!("avx512bw") {
                        builds.push(Build::Avx512);
                    }
                }
            }
            builds
        }
    }

    /// Where the histogram notes each pair's bucket.
    pub(super) type Note = [MaybeUninit<u16>];

    /// Bucket counts of a chunk (`c.slots` of them) and whether it holds an invalid pair, by
    /// `build` (one of [`Build::available`]); every pair's bucket noted in `note`.
    pub(super) fn histogram<S: Score>(
        build: Build,
        c: &Classes,
        s: &[S],
        l: &[u8],
        note: &mut Note,
    ) -> (Vec<u32>, bool) {
        match build {
            // SAFETY: the CPU has the instruction set (`build` is one it runs).
            #[cfg(target_arch = "x86_64")]
            Build::Avx512 => unsafe { histogram_avx512(c, s, l, note) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Build::Avx2 => unsafe { histogram_avx2(c, s, l, note) },
            _ => histogram_any(c, s, l, note),
        }
    }

    /// Where a chunk's keys go: each bucket's next position (`at`), an index into `base[1]` for
    /// the buckets from `split` on (the impostors'), into `base[0]` for the others.
    pub(super) struct Destinations<'a, K> {
        pub(super) split: usize,
        pub(super) base: [Disjoint<K>; 2],
        pub(super) at: &'a mut [u32],
    }

    /// Writes every key of a chunk at its bucket's next position, by `build` (one of
    /// [`Build::available`]).
    ///
    /// # Safety
    /// Every position written is inside its vector and written by no other thread.
    pub(super) unsafe fn scatter<S: Score>(build: Build, buckets: &[u16], s: &[S], to: Destinations<'_, S::Key>) {
        assert_eq!(buckets.len(), s.len(), "a bucket per score");
        match build {
            #[cfg(target_arch = "x86_64")]
            Build::Avx512 => scatter_avx512(buckets, s, to),
            #[cfg(target_arch = "x86_64")]
            Build::Avx2 => scatter_avx2(buckets, s, to),
            _ => scatter_any(buckets, s, to),
        }
    }

    /// The two kernels compiled for one instruction set (`$features`), as `$histogram` and
    /// `$scatter`: the generic kernels inlined into functions built with it.
    macro_rules! build_for {
        ($features:literal, $histogram:ident, $scatter:ident) => {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            unsafe fn $histogram<S: Score>(c: &Classes, s: &[S], l: &[u8], note: &mut Note) -> (Vec<u32>, bool) {
                histogram_any(c, s, l, note)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            unsafe fn $scatter<S: Score>(b: &[u16], s: &[S], to: Destinations<'_, S::Key>) {
                scatter_any(b, s, to)
            }
        };
    }

    build_for!("avx512f,avx512vl,avx512dq,avx512bw,avx2", histogram_avx512, scatter_avx512);
    build_for!("avx2", histogram_avx2, scatter_avx2);

    #[inline(always)]
    fn histogram_any<S: Score>(c: &Classes, s: &[S], l: &[u8], note: &mut Note) -> (Vec<u32>, bool) {
        assert_eq!(note.len(), s.len(), "a bucket slot per pair");
        let slots = c.slots;
        // Four sets of counts, a key's set by its position: tied or clustered scores hit one
        // count many times in a row, and each increment would wait for the one before it.
        let mut h = vec![0u32; 4 * slots];
        let mut bad = false;
        let (mut idx, mut ids) = ([0u32; BLOCK], [0u16; BLOCK]);
        let table = c.table.as_ptr();
        let sets = [0, 1, 2, 3].map(|k| h[k * slots..].as_mut_ptr());
        for ((sb, lb), bb) in s.chunks(BLOCK).zip(l.chunks(BLOCK)).zip(note.chunks_mut(BLOCK)) {
            bad |= c.indices(sb, lb, &mut idx);
            for ((b, out), &i) in ids.iter_mut().zip(bb.iter_mut()).zip(&idx) {
                // SAFETY: every index is below the table's 2 * CELLS slots (`cell` clamps).
                *b = unsafe { *table.add(i as usize) };
                out.write(*b);
            }
            // SAFETY (both loops): every table entry is below `slots`, each set's length.
            let count = |set: *mut u32, b: u16| unsafe { *set.add(b as usize) += 1 };
            let mut quads = ids[..sb.len()].chunks_exact(4);
            for q in &mut quads {
                for k in 0..4 {
                    count(sets[k], q[k]);
                }
            }
            for &b in quads.remainder() {
                count(sets[0], b);
            }
        }
        let (first, rest) = h.split_at_mut(slots);
        for set in rest.chunks(slots) {
            for (a, b) in first.iter_mut().zip(set) {
                *a += b;
            }
        }
        h.truncate(slots);
        (h, bad)
    }

    #[inline(always)]
    unsafe fn scatter_any<S: Score>(buckets: &[u16], s: &[S], to: Destinations<'_, S::Key>) {
        #[cfg(target_arch = "x86_64")]
        scatter_lines(buckets, s, to);
        #[cfg(not(target_arch = "x86_64"))]
        scatter_keys(buckets, s, to);
    }

    /// Every key written straight to its place.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    unsafe fn scatter_keys<S: Score>(buckets: &[u16], s: &[S], to: Destinations<'_, S::Key>) {
        let Destinations { split, base, at } = to;
        for (&b, &x) in buckets.iter().zip(s) {
            let b = b as usize;
            let out = if b < split { base[0] } else { base[1] };
            out.write(at[b] as usize, x.key());
            at[b] += 1;
        }
    }

    /// Bytes of one bucket's keys gathered before they are written: two cache lines (one: the
    /// 10M float32 report, half genuine, took ~3 ms more; four: no better than two).
    #[cfg(target_arch = "x86_64")]
    const LINE: usize = 128;

    /// `LINE` bytes of one bucket's keys, gathered before they are written.
    #[cfg(target_arch = "x86_64")]
    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u64; LINE / 8]);

    /// Every key gathered into its bucket's line buffer, and each line written to memory whole,
    /// with non-temporal stores, once its last key is in. Thousands of buckets each advance one
    /// line at a time: a key stored straight to its place makes the core read that line first (a
    /// read for ownership) for each of them, which the streamed whole lines skip (measured on a
    /// 10^7-key scatter into 4,096 buckets, one thread: 40 ms stored straight, 27 ms streamed).
    /// Lines the chunk shares with a neighbouring range are written key by key.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn scatter_lines<S: Score>(buckets: &[u16], s: &[S], to: Destinations<'_, S::Key>) {
        use std::arch::x86_64::_mm_sfence;
        let Destinations { split, base, at } = to;
        let size = std::mem::size_of::<S::Key>();
        let mask = LINE / size - 1;
        // The slot in its line of each vector's position 0 (a position p sits in slot
        // (p + phase) & mask; slot 0 starts a line).
        let phase = base.map(|b| (b.ptr() as usize / size) & mask);
        let class = |b: usize| usize::from(b >= split);
        // Each bucket's next position plus its vector's phase: the low bits are then the slot,
        // and the loop below needs neither the bucket's class nor its phase.
        let first: Vec<u32> = at.to_vec();
        let mut next: Vec<u32> = at.iter().enumerate().map(|(b, &p)| p + phase[class(b)] as u32).collect();
        let mut lines = vec![Line([0; LINE / 8]); at.len()];
        let (next_at, line_keys) = (next.as_mut_ptr(), lines.as_mut_ptr() as *mut S::Key);
        let mut keys = [S::Key::default(); BLOCK];
        for (sb, bb) in s.chunks(BLOCK).zip(buckets.chunks(BLOCK)) {
            for (k, &x) in keys.iter_mut().zip(sb) {
                *k = x.key(); // vectorizes, where the loop below would convert key by key
            }
            for (&b, &key) in bb.iter().zip(&keys) {
                // SAFETY: buckets are below `slots` (see `histogram_any`); `next` and `lines`
                // have a slot per bucket.
                let b = b as usize;
                let q = *next_at.add(b);
                *next_at.add(b) = q + 1;
                let slot = q as usize & mask;
                *line_keys.add(b * (mask + 1) + slot) = key;
                if slot == mask {
                    let class = class(b);
                    let (p, start) = (q as usize - phase[class], first[b] as usize);
                    flush_line(line_keys.add(b * (mask + 1)), base[class], phase[class], start, p);
                }
            }
        }
        // Every bucket's unfinished last line.
        for (b, (&next, &start)) in next.iter().zip(&first).enumerate() {
            let class = class(b);
            let (end, start) = (next as usize - phase[class], start as usize);
            let line = lines.as_ptr().add(b) as *const S::Key;
            let from = end.saturating_sub((end + phase[class]) & mask).max(start);
            write_keys(line, base[class], phase[class], from..end);
        }
        // Streamed stores are weakly ordered: done before another thread reads the keys.
        _mm_sfence();
    }

    /// Writes the line of one bucket that position `p` (its last slot, just gathered) completes:
    /// streamed whole where the chunk's range of the bucket (from `start`) covers it, else key by
    /// key.
    ///
    /// # Safety
    /// `line` holds the line's gathered keys; the positions are this thread's to write.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn flush_line<K: Copy>(line: *const K, out: Disjoint<K>, phase: usize, start: usize, p: usize) {
        use std::arch::x86_64::{__m128i, _mm_load_si128, _mm_stream_si128};
        let mask = LINE / std::mem::size_of::<K>() - 1;
        if p >= start + mask {
            // The whole line is this chunk's (its slot 0 is LINE-byte aligned).
            let (dst, src) = (out.ptr().add(p - mask) as *mut __m128i, line as *const __m128i);
            for q in 0..LINE / 16 {
                _mm_stream_si128(dst.add(q), _mm_load_si128(src.add(q)));
            }
        } else {
            write_keys(line, out, phase, start..p + 1);
        }
    }

    /// Writes the positions `range` of one line from its buffer, key by key (the line's slot of
    /// position p is `(p + phase) & mask`, the buffer holding as many keys as a line).
    ///
    /// # Safety
    /// The positions lie in one line, were gathered into `line`, and are this thread's to write.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn write_keys<K: Copy>(line: *const K, out: Disjoint<K>, phase: usize, range: std::ops::Range<usize>) {
        let mask = LINE / std::mem::size_of::<K>() - 1;
        for q in range {
            out.write(q, *line.add((q + phase) & mask));
        }
    }
}

/// What [`split_sorted`] found.
pub enum Split<K> {
    /// The genuine and impostor keys, each sorted ascending, and whether either holds a run of
    /// [`LONG_RUN`] equal keys or more.
    Sorted(Vec<K>, Vec<K>, bool),
    /// A score is not finite or a label not 0/1 (the caller's checks say which, and where).
    Invalid,
    /// More scores than the 32-bit counts below take: the caller splits and uses [`sort_keys`].
    TooMany,
}

/// The genuine (label 1) and impostor keys of `scores`, each sorted ascending, straight from the
/// scores: each class's buckets laid out from a sample of its values ([`Layout`]), a read for
/// each chunk's bucket histograms (which also checks the input), one scatter of every key into
/// its bucket's place, then every bucket (a few thousand keys, in cache) sorted on its own. The
/// keys are never written in input order first, which saves a write and two reads of them against
/// splitting and then sorting.
pub fn split_sorted<S: Score>(scores: &[S], labels: &[u8]) -> Split<S::Key> {
    let n = scores.len();
    if n > (u32::MAX - POSITION_SLACK) as usize {
        return Split::TooMany; // 32-bit counts below; the general path takes any size
    }
    let chunk_len = n.div_ceil(rayon::current_num_threads().max(1)).max(1 << 14);
    let step = (n / SAMPLE).max(1);
    // Gathered on all threads: every value sampled is a cache miss of its own. The layouts depend
    // on the sampled values only, not on their order, so not on the thread count.
    let sampled = (0..n.div_ceil(step))
        .into_par_iter()
        .with_min_len(1 << 12)
        .fold(
            || [Vec::new(), Vec::new()],
            |mut sampled: [Vec<f64>; 2], k| {
                let (x, y) = (scores[k * step], labels[k * step]);
                if x.is_finite() && y <= 1 {
                    sampled[usize::from(y != 1)].push(x.value());
                }
                sampled
            },
        )
        .reduce(
            || [Vec::new(), Vec::new()],
            |mut a, b| {
                for (a, b) in a.iter_mut().zip(b) {
                    a.extend(b);
                }
                a
            },
        );
    let share = sampled[0].len() as f64 / (sampled[0].len() + sampled[1].len()).max(1) as f64;
    let pos_guess = (share * n as f64) as usize;
    let [mut genuine, mut impostor] = sampled;
    let layout = {
        let (g, i) = rayon::join(
            || Layout::from_sample(&mut genuine, pos_guess),
            || Layout::from_sample(&mut impostor, n - pos_guess),
        );
        [g, i]
    };
    // One table for both classes, the impostors' buckets after the genuine ones': a key's slot is
    // found by arithmetic on its label, never by a branch (the label is a coin flip for balanced
    // pairs).
    let split = layout[0].buckets;
    let classes = Classes::new(&layout);
    let build = kernels::Build::best();
    // The same read checks the input, and notes every pair's bucket for the scatter (which then
    // reads two bytes a pair instead of classifying it again: the 10M float32 report, 3-5 ms
    // faster). The note goes in a buffer of the size a report's curve asks the pool for next (its
    // first array, room for every score and the curve's start): a report writes its curve over
    // the same pages, so the note adds nothing to its peak (a buffer of its own added 20 MB for
    // 10^7 scores; handing its pages back to the kernel cost refaulting them on every report).
    let (mut room, resident) = scratch::take_resident::<f64>(n + 2);
    let spare = room.spare_capacity_mut();
    // SAFETY: a MaybeUninit<u16> has no invalid values, and four fit in every f64 slot.
    let note = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<MaybeUninit<u16>>(), n) };
    let hists: Vec<(Vec<u32>, bool)> = scores
        .par_chunks(chunk_len)
        .zip(labels.par_chunks(chunk_len))
        .zip(note.par_chunks_mut(chunk_len))
        .map(|((s, l), b)| kernels::histogram(build, &classes, s, l, b))
        .collect();
    // SAFETY: the histograms wrote every pair's bucket (and the slots of whole f64s kept below).
    let bucket_of = unsafe { std::slice::from_raw_parts(room.as_ptr().cast::<u16>(), n) };
    let give_room = |mut room: Vec<f64>| {
        // SAFETY: the first n / 4 slots hold noted buckets, and the `resident` ones (below the
        // capacity) an earlier user's values: the pool records them all as written, for the
        // curve written next to know which pages it need not fault in.
        unsafe { room.set_len((n / 4).max(resident)) };
        scratch::give(room);
    };
    if hists.iter().any(|h| h.1) {
        give_room(room);
        return Split::Invalid;
    }
    let hists: Vec<Vec<u32>> = hists.into_iter().map(|h| h.0).collect();
    let (offsets, starts) = offsets(&hists, classes.slots);
    let n_pos = starts[split];
    let mut pos: Vec<S::Key> = scratch::take(n_pos);
    let mut neg: Vec<S::Key> = scratch::take(n - n_pos);
    // Each class's keys go to their own vector; `positions` indexes them.
    let base = [Disjoint::new(pos.as_mut_ptr()), Disjoint::new(neg.as_mut_ptr())];
    scores.par_chunks(chunk_len).zip(bucket_of.par_chunks(chunk_len)).zip(offsets).for_each(|((s, b), off)| {
        let mut at = positions(off, split, n_pos);
        // SAFETY: the ranges given by the offsets are disjoint across chunks and buckets and
        // together cover each class's vector exactly once; `at` holds this chunk's.
        unsafe { kernels::scatter(build, b, s, kernels::Destinations { split, base, at: &mut at }) };
    });
    give_room(room);
    // SAFETY: every slot below the lengths was written by the scatter.
    unsafe {
        pos.set_len(n_pos);
        neg.set_len(n - n_pos);
    }
    let neg_starts: Vec<usize> = starts[split..].iter().map(|s| s - n_pos).collect();
    let runs = rayon::join(|| sort_buckets(&mut pos, &starts[..=split], 0), || sort_buckets(&mut neg, &neg_starts, 0));
    Split::Sorted(pos, neg, runs.0 | runs.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed
    }

    fn uniform(seed: &mut u64) -> f64 {
        (lcg(seed) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (a sum of uniforms): bell-shaped scores.
    fn bell(seed: &mut u64) -> f64 {
        (0..4).map(|_| uniform(seed)).sum::<f64>() - 2.0
    }

    /// An initialised slice as the histogram's output (which only writes it).
    fn uninit(v: &mut [u16]) -> &mut [std::mem::MaybeUninit<u16>] {
        // SAFETY: MaybeUninit<u16> has u16's layout, and every u16 is a valid MaybeUninit<u16>.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len()) }
    }

    fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    /// `k` made the key of a finite score (keys with the exponent bits all set are not).
    fn finite64(k: u64) -> u64 {
        if super::super::keys::key_value(k).is_finite() {
            k
        } else {
            k ^ (1 << 61)
        }
    }

    #[test]
    fn sort_keys_sorts_like_std() {
        let mut seed = 11;
        for &n in &[0usize, 3, 16_383, 16_384, 70_000, 300_001] {
            for shift in [0u32, 13, 40, 60] {
                let mut v: Vec<u64> = (0..n).map(|_| finite64(lcg(&mut seed) >> shift | 1 << 63)).collect();
                if n > 10 {
                    v[n / 2] = f64::MAX.key(); // one far outlier
                    v[n / 4] = (-f64::MAX).key();
                }
                let mut expect = v.clone();
                expect.sort_unstable();
                let runs = in_pool(3, || sort_keys(&mut v));
                assert_eq!(v, expect, "n={n} shift={shift}");
                assert_eq!(runs, has_long_run(&expect), "n={n} shift={shift}: long runs");
            }
        }
        for &n in &[70_000usize, 300_001] {
            for shift in [0u32, 20] {
                let mut v: Vec<u32> =
                    (0..n).map(|_| (uniform(&mut seed) as f32 * 2f32.powi(-(shift as i32))).key()).collect();
                v[n / 3] = f32::MAX.key();
                let mut expect = v.clone();
                expect.sort_unstable();
                let runs = sort_keys(&mut v);
                assert_eq!(v, expect, "u32 n={n} shift={shift}");
                assert_eq!(runs, has_long_run(&expect), "u32 n={n} shift={shift}: long runs");
            }
        }
        let mut same = vec![7u64; 50_000];
        assert!(sort_keys(&mut same), "one long run");
        assert!(same.iter().all(|&x| x == 7));
        let mut two: Vec<u64> =
            (0..50_000u64).map(|i| if i % 3 == 0 { f64::MAX.key() } else { 1.0f64.key() }).collect();
        sort_keys(&mut two);
        assert!(two.windows(2).all(|p| p[0] <= p[1]));
    }

    /// The keys of each class, sorted the plain way.
    fn expected<S: Score>(scores: &[S], labels: &[u8]) -> (Vec<S::Key>, Vec<S::Key>) {
        let side = |want: u8| {
            let mut v: Vec<S::Key> = scores.iter().zip(labels).filter(|p| *p.1 == want).map(|p| p.0.key()).collect();
            v.sort_unstable();
            v
        };
        (side(1), side(0))
    }

    fn check<S: Score + std::fmt::Debug>(name: &str, scores: &[S], labels: &[u8]) {
        for threads in [1, 3] {
            let Split::Sorted(pos, neg, runs) = in_pool(threads, || split_sorted(scores, labels)) else {
                panic!("{name}: valid input")
            };
            assert_eq!(runs, has_long_run(&pos) || has_long_run(&neg), "{name}: long runs");
            assert!((pos, neg) == expected(scores, labels), "{name}, {threads} threads");
        }
    }

    #[test]
    fn split_sorted_sorts_every_score_shape() {
        let mut seed = 5;
        for &n in &[70_000usize, 300_001] {
            let labels: Vec<u8> = (0..n).map(|i| u8::from(lcg(&mut seed) % 10 < 3 || i % 7 == 0)).collect();
            let rare: Vec<u8> = (0..n).map(|_| u8::from(lcg(&mut seed).is_multiple_of(100))).collect();
            let shapes: Vec<(&str, Vec<f64>)> = vec![
                ("uniform", (0..n).map(|_| uniform(&mut seed)).collect()),
                ("narrow", (0..n).map(|_| 1.0 + uniform(&mut seed) * 1e-9).collect()),
                ("bell", (0..n).map(|_| 0.1 * bell(&mut seed)).collect()),
                ("ties", (0..n).map(|_| (bell(&mut seed) * 100.0).round() / 1000.0).collect()),
                ("outlier", (0..n).map(|i| if i == n / 3 { 1e30 } else { bell(&mut seed) }).collect()),
                ("far outlier", (0..n).map(|i| if i == n / 3 { 1e300 } else { bell(&mut seed) }).collect()),
                ("outliers", (0..n).map(|i| if i % 50 == 0 { -1e6 } else { bell(&mut seed) }).collect()),
                // Buckets spanning fewer key values than twice their keys (sorted by one
                // counting pass): float32 steps, then float64 steps, from 0.5.
                ("dense", (0..n).map(|_| 0.5 + (lcg(&mut seed) % 20_000) as f64 * 2f64.powi(-24)).collect()),
                ("dense64", (0..n).map(|_| 0.5 + (lcg(&mut seed) % 20_000) as f64 * 2f64.powi(-53)).collect()),
                ("two values", (0..n).map(|i| if i % 3 == 0 { 0.25 } else { -0.5 }).collect()),
                ("constant", vec![0.5; n]),
                ("signed zeros", (0..n).map(|i| if i % 2 == 0 { 0.0 } else { -0.0 }).collect()),
                ("extremes", (0..n).map(|i| [f64::MAX, f64::MIN, 5e-324, -1.0][i % 4]).collect()),
                // Sorted input with a period the sample's stride hits: the sample misjudges the
                // keys, and the buckets it makes too large are partitioned again.
                ("periodic", (0..n).map(|i| if i % 9 == 0 { i as f64 } else { 1e9 + (i % 9) as f64 * 1e-7 }).collect()),
            ];
            for (name, scores) in &shapes {
                for labels in [&labels, &rare] {
                    check(name, scores, labels);
                    let narrow: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
                    if narrow.iter().all(|x| x.is_finite()) {
                        check(name, &narrow, labels);
                    }
                }
            }
        }
    }

    /// Scatters `scores` chunk by chunk into output vectors starting `shift` keys into their
    /// allocation, and checks every class holds its keys in bucket order, input order within.
    /// Both classes' layouts from every score of each class, and the kernels' view of them.
    fn layouts<S: Score>(scores: &[S], labels: &[u8]) -> ([Layout; 2], Classes) {
        let mut samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for (&x, &y) in scores.iter().zip(labels) {
            samples[usize::from(y != 1)].push(x.value());
        }
        let counts = [samples[0].len(), samples[1].len()];
        let [genuine, impostor] = &mut samples;
        let layout = [Layout::from_sample(genuine, counts[0]), Layout::from_sample(impostor, counts[1])];
        let classes = Classes::new(&layout);
        (layout, classes)
    }

    /// The bucket of a pair over both classes (the impostors' numbered after the genuine ones').
    fn slot(layout: &[Layout; 2], x: f64, y: u8) -> usize {
        let class = usize::from(y != 1);
        layout[class].bucket(x) + if class == 1 { layout[0].buckets } else { 0 }
    }

    fn check_scatter<S: Score>(build: kernels::Build, scores: &[S], labels: &[u8], shift: usize, chunks: usize) {
        let (layout, classes) = layouts(scores, labels);
        let (split, slots) = (layout[0].buckets, classes.slots);
        let chunk_len = scores.len().div_ceil(chunks);
        let parts = || scores.chunks(chunk_len).zip(labels.chunks(chunk_len));
        let mut bucket_of = vec![0u16; scores.len()];
        let hists: Vec<Vec<u32>> = parts()
            .zip(bucket_of.chunks_mut(chunk_len))
            .map(|((s, l), b)| kernels::histogram(build, &classes, s, l, uninit(b)).0)
            .collect();
        let (offsets, starts) = offsets(&hists, slots);
        let n_pos = starts[split];
        let mut out = [vec![S::Key::default(); n_pos + 32], vec![S::Key::default(); scores.len() - n_pos + 32]];
        // SAFETY: `shift` < 32 keys of slack at the front of each vector.
        let base = out.each_mut().map(|v| Disjoint::new(unsafe { v.as_mut_ptr().add(shift) }));
        for (((s, _), b), off) in parts().zip(bucket_of.chunks(chunk_len)).zip(offsets) {
            let mut at = positions(off, split, n_pos);
            // SAFETY: the offsets give each chunk and bucket its own range of each vector.
            unsafe { kernels::scatter(build, b, s, kernels::Destinations { split, base, at: &mut at }) };
        }
        for (class, want) in [(0usize, 1u8), (1, 0)] {
            let mut expect: Vec<(usize, S::Key)> = scores
                .iter()
                .zip(labels)
                .filter(|p| *p.1 == want)
                .map(|(&x, _)| (layout[class].bucket(x.value()), x.key()))
                .collect();
            expect.sort_by_key(|p| p.0); // stable: input order within a bucket
            let got = &out[class][shift..shift + expect.len()];
            assert!(
                got.iter().eq(expect.iter().map(|p| &p.1)),
                "{build:?}: class {class} shift {shift} chunks {chunks}"
            );
        }
    }

    #[test]
    fn scatter_places_keys_whatever_the_alignment() {
        // Whole lines (128 bytes) are streamed where a bucket's range covers them, keys written
        // one by one elsewhere: every start of the output within its line, chunks ending mid-line.
        let mut seed = 9;
        let n = 60_001;
        let scores: Vec<f64> = (0..n).map(|i| if i % 97 == 0 { 0.25 } else { bell(&mut seed) }).collect();
        let labels: Vec<u8> = (0..n).map(|_| u8::from(lcg(&mut seed).is_multiple_of(3))).collect();
        let narrow: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
        // Every build of the kernels this CPU runs (the baseline, AVX2, AVX-512).
        for build in kernels::Build::available() {
            for chunks in [1, 3, 7] {
                for shift in 0..32 {
                    check_scatter(build, &narrow, &labels, shift, chunks);
                    if shift < 16 {
                        check_scatter(build, &scores, &labels, shift, chunks);
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_build_counts_alike_and_flags_invalid_pairs() {
        let mut seed = 21;
        let n = 50_001;
        let scores: Vec<f64> = (0..n).map(|i| if i % 5 == 0 { 0.5 } else { bell(&mut seed) }).collect();
        let labels: Vec<u8> = (0..n).map(|_| u8::from(lcg(&mut seed).is_multiple_of(4))).collect();
        let (layout, classes) = layouts(&scores, &labels);
        let mut expect = vec![0u32; classes.slots];
        for (&x, &y) in scores.iter().zip(&labels) {
            expect[slot(&layout, x, y)] += 1;
        }
        let narrow: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
        for build in kernels::Build::available() {
            // Lengths that end mid-block and mid-quad.
            for len in [n, n - 3, 1000, 7] {
                let mut bucket_of = vec![0u16; len];
                let (h, bad) =
                    kernels::histogram(build, &classes, &scores[..len], &labels[..len], uninit(&mut bucket_of));
                let mut want = vec![0u32; classes.slots];
                for (&x, &y) in scores[..len].iter().zip(&labels[..len]) {
                    want[slot(&layout, x, y)] += 1;
                }
                assert!(h == want && !bad, "{build:?} len {len}");
                let noted = scores[..len].iter().zip(&labels[..len]).map(|(&x, &y)| slot(&layout, x, y) as u16);
                assert!(bucket_of.iter().copied().eq(noted), "{build:?} len {len}: every pair's bucket noted");
            }
            let mut bucket_of = vec![0u16; n];
            assert_eq!(kernels::histogram(build, &classes, &scores, &labels, uninit(&mut bucket_of)).0, expect);
            let narrow_counts = kernels::histogram(build, &classes, &narrow, &labels, uninit(&mut bucket_of));
            assert_eq!(narrow_counts.0.iter().sum::<u32>() as usize, n, "{build:?}");
            for (at, bad_score, bad_label) in [(0, f64::NAN, 1), (n - 1, f64::INFINITY, 0), (n / 2, 0.1, 2)] {
                let (mut s, mut l) = (scores.clone(), labels.clone());
                (s[at], l[at]) = (bad_score, bad_label);
                let flagged = kernels::histogram(build, &classes, &s, &l, uninit(&mut bucket_of)).1;
                assert!(flagged, "{build:?}: invalid pair at {at}");
            }
        }
    }

    #[test]
    fn long_runs_are_found_wherever_they_are() {
        for n in [0usize, 5, LONG_RUN, 300, 1000] {
            let distinct: Vec<u32> = (0..n as u32).map(|k| 2 * k + 1).collect();
            assert!(!has_long_run(&distinct), "n={n}");
            for len in [LONG_RUN - 1, LONG_RUN, LONG_RUN + 5] {
                for at in [0, n / 2, n.saturating_sub(len)] {
                    if at + len > n {
                        continue;
                    }
                    let mut v = distinct.clone();
                    let first = v[at];
                    v[at..at + len].fill(first);
                    v.sort_unstable();
                    assert_eq!(has_long_run(&v), len >= LONG_RUN, "n={n} run of {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn split_sorted_flags_invalid_input() {
        let scores: Vec<f64> = (0..100_000).map(|i| 1.0 + i as f64 * 1e-9).collect();
        let mut bad = scores.clone();
        bad[99_999] = f64::NAN;
        assert!(matches!(split_sorted(&bad, &vec![0u8; 100_000]), Split::Invalid));
        let mut labels = vec![0u8; 100_000];
        labels[5] = 2;
        assert!(matches!(split_sorted(&scores, &labels), Split::Invalid));
        match split_sorted(&scores[..70_000], &vec![1u8; 70_000]) {
            Split::Sorted(pos, neg, _) => assert!(neg.is_empty() && pos.len() == 70_000),
            _ => panic!("one class is valid input"),
        }
    }

    #[test]
    fn layouts_are_monotone_and_even_on_bell_shaped_values() {
        let mut seed = 3;
        let values: Vec<f64> = (0..1_000_000).map(|_| 0.1 * bell(&mut seed)).collect();
        let mut sample: Vec<f64> = values.iter().step_by(31).copied().collect();
        let layout = Layout::from_sample(&mut sample, values.len());
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        assert!(sorted.windows(2).all(|w| layout.bucket(w[0]) <= layout.bucket(w[1])));
        let mut sizes = vec![0usize; layout.buckets];
        values.iter().for_each(|&x| sizes[layout.bucket(x)] += 1);
        let largest = *sizes.iter().max().unwrap();
        // Equal-width buckets put ~2.5x the mean into the central ones; these stay near it.
        assert!(largest < 2 * values.len() / layout.buckets, "largest bucket {largest} of {} buckets", layout.buckets);
    }
}
