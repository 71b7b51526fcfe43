//! The verification report from the sorted scores: the curve from one merge walk split into key
//! ranges walked in parallel, AUC and best accuracy from the curve's kept points, EER and TAR@FAR
//! by binary search.
//!
//! The walk is the report's largest cost after the sort, so it is written for it: one iteration per
//! key taken from either side, no branch on which side holds the next key, on whether a point is
//! complete (ties are common in float32 scores) or on whether the curve keeps it, and raw integers
//! (counts, keys) written, converted later. One pass over the kept points then converts them and
//! reads the area and the best accuracy off them. EER and TAR at a FAR depend on one or two points
//! that counting on the sorted keys finds directly. Results equal the streaming metrics of
//! [`super::roc`] exactly (tested).

use super::disjoint::Disjoint;
use super::keys::SortKey;
use super::roc::{eer, tar_at_far, validate_fars, TarAtFar};
use super::scratch;
use super::sorted::{KeySlices, SortedScores};
use crate::error::Result;
use crate::threads;

/// Everything a verification report shows.
pub struct Summary {
    pub curve: (Vec<f64>, Vec<f64>, Vec<f64>),
    pub auc: f64,
    pub eer: (f64, f64),
    pub tar_at_far: Vec<(f64, f64)>,
    pub best_accuracy: (f64, f64),
}

/// A curve array below this size is copied out of the room made for every score.
const SMALL_CURVE_BYTES: usize = 1 << 20;

/// Below this many scores one walk is faster than splitting it.
const PARALLEL_MIN: usize = 1 << 18;

/// How many key ranges the walk over `n` scores is split into: one per thread, or one.
fn segments(n: usize) -> usize {
    if n >= PARALLEL_MIN {
        threads::num_threads().max(1)
    } else {
        1
    }
}

/// The report of `sorted` (the curve as [`super::roc::roc_curve`] gives it). Takes the sorted keys
/// so it can free them before it joins the curve's parts: the peak holds keys or copies, not both.
pub fn summarize(sorted: SortedScores, fars: &[f64], drop_intermediate: bool) -> Result<Summary> {
    validate_fars("tar_at_far", fars)?;
    let (n_pos, n_neg) = (sorted.n_pos(), sorted.n_neg());
    if n_pos == 0 || n_neg == 0 {
        // Degenerate (a class missing): the streaming metrics define every value there.
        let curve = super::roc::roc_curve(&sorted, drop_intermediate);
        let auc = super::roc::roc_auc(&sorted);
        let best_accuracy = super::roc::best_accuracy(&sorted);
        return Ok(Summary { curve, auc, eer: eer(&sorted), tar_at_far: tar_at_far(&sorted, fars)?, best_accuracy });
    }
    let segments = segments((n_pos + n_neg) as usize);
    let how = Walk { drop: drop_intermediate, segments, ties: sorted.long_runs(), wide: false };
    let (parts, eer, tar) = threads::install(|| match sorted.keys() {
        KeySlices::Wide(pos, neg) => report_keys(pos, neg, fars, how),
        KeySlices::Narrow(pos, neg) => report_keys(pos, neg, fars, how),
    })??;
    let wide = matches!(sorted.keys(), KeySlices::Wide(..));
    // Finishing writes the later parts' points after the first's. Where that faults in many pages
    // not touched yet (a first report: no earlier one wrote them), the keys' pages go first (kept
    // for reuse, they would add to the peak); else the keys stay for the next report to reuse (a
    // report that refaulted them cost a tenth more, measured on 10^7 float32 scores).
    let total: usize = parts.iter().map(|p| p.fpr.len()).sum();
    let fresh = total.saturating_sub(parts[0].fpr.len().max(parts[0].resident));
    if 3 * std::mem::size_of::<f64>() * fresh > super::scratch::MIN_BYTES {
        sorted.discard();
    } else {
        drop(sorted);
    }
    threads::install(|| {
        if wide {
            combine::<u64>(parts, eer, tar, (n_pos, n_neg))
        } else {
            combine::<u32>(parts, eer, tar, (n_pos, n_neg))
        }
    })
}

/// The ROC curve of `sorted` as [`super::roc::roc_curve`] gives it, from the parallel walk.
pub fn curve(sorted: &SortedScores, drop_intermediate: bool) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (n_pos, n_neg) = (sorted.n_pos(), sorted.n_neg());
    if n_pos == 0 || n_neg == 0 {
        return Ok(super::roc::roc_curve(sorted, drop_intermediate));
    }
    let how = Walk {
        drop: drop_intermediate,
        segments: segments((n_pos + n_neg) as usize),
        ties: sorted.long_runs(),
        wide: false,
    };
    threads::install(|| match sorted.keys() {
        KeySlices::Wide(pos, neg) => finish_curve::<u64>(walk_parts(pos, neg, how), (n_pos, n_neg)).0,
        KeySlices::Narrow(pos, neg) => finish_curve::<u32>(walk_parts(pos, neg, how), (n_pos, n_neg)).0,
    })
}

/// Equal error rate `(rate, threshold)` as [`super::roc::eer`] gives it, by binary search.
pub fn eer_of(sorted: &SortedScores) -> (f64, f64) {
    if sorted.n_pos() == 0 || sorted.n_neg() == 0 {
        return eer(sorted);
    }
    match sorted.keys() {
        KeySlices::Wide(pos, neg) => eer_by_search(pos, neg),
        KeySlices::Narrow(pos, neg) => eer_by_search(pos, neg),
    }
}

/// `(tar, threshold)` per target FAR as [`super::roc::tar_at_far`] gives them, by binary search.
pub fn tar_at_far_of(sorted: &SortedScores, fars: &[f64]) -> Result<Vec<(f64, f64)>> {
    validate_fars("tar_at_far", fars)?;
    if sorted.n_pos() == 0 || sorted.n_neg() == 0 {
        return tar_at_far(sorted, fars);
    }
    match sorted.keys() {
        KeySlices::Wide(pos, neg) => tar_by_search(pos, neg, fars),
        KeySlices::Narrow(pos, neg) => tar_by_search(pos, neg, fars),
    }
}

/// The report from the parts of the walk (in key order, raw: see [`Part`], keys of type `K`) and
/// the searched metrics.
fn combine<K: SortKey>(
    parts: Vec<Part>,
    eer: (f64, f64),
    tar_at_far: Vec<(f64, f64)>,
    (n_pos, n_neg): (u64, u64),
) -> Summary {
    let (curve, twice_area, best) = finish_curve::<K>(parts, (n_pos, n_neg));
    let auc = super::roc::Auc::from_twice_area(twice_area).finish(n_pos, n_neg);
    let best_accuracy = ((n_neg as i64 + best.0) as f64 / (n_pos + n_neg) as f64, best.1);
    Summary { curve, auc, eer, tar_at_far, best_accuracy }
}

/// Counts at a threshold: genuine and impostor keys `>=` it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Counts {
    tp: u64,
    fp: u64,
}

/// Number of keys of the ascending `v` that are `>= t`.
fn at_least<K: SortKey>(v: &[K], t: u64) -> u64 {
    (v.len() - v.partition_point(|x| x.to_u64() < t)) as u64
}

fn counts_at<K: SortKey>(pos: &[K], neg: &[K], t: u64) -> Counts {
    Counts { tp: at_least(pos, t), fp: at_least(neg, t) }
}

/// The smallest key of either side above `t`.
fn next_above<K: SortKey>(pos: &[K], neg: &[K], t: u64) -> Option<K> {
    let first = |v: &[K]| v.get(v.partition_point(|x| x.to_u64() <= t)).copied();
    match (first(pos), first(neg)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The largest key of either side below `t`.
fn next_below<K: SortKey>(pos: &[K], neg: &[K], t: u64) -> Option<K> {
    let last = |v: &[K]| v.partition_point(|x| x.to_u64() < t).checked_sub(1).map(|i| v[i]);
    last(pos).max(last(neg))
}

type Parts = (Vec<Part>, (f64, f64), Vec<(f64, f64)>);

/// The walk's parts with EER and TAR@FAR searched meanwhile.
fn report_keys<K: SortKey>(pos: &[K], neg: &[K], fars: &[f64], how: Walk) -> Result<Parts> {
    let (parts, (eer_value, tar)) =
        rayon::join(|| walk_parts(pos, neg, how), || (eer_by_search(pos, neg), tar_by_search(pos, neg, fars)));
    Ok((parts, eer_value, tar?))
}

/// How the curve is walked: whether it drops collinear points (`drop_intermediate`), into how
/// many key ranges it is split, and whether the keys may hold runs of
/// [`super::radix::LONG_RUN`] equal keys or more (`ties`: the walk then looks for long runs to
/// skip; else it does not, which saves two loads a key).
#[derive(Clone, Copy)]
struct Walk {
    drop: bool,
    segments: usize,
    ties: bool,
    /// Whether the walk keeps its pairs of positions in a `u128` even where a `u64` fits (see
    /// [`Pair`]; for tests).
    wide: bool,
}

/// The walk's parts, one per key range (about `segments` of them, walked in parallel).
fn walk_parts<K: SortKey>(pos: &[K], neg: &[K], how: Walk) -> Vec<Part> {
    use rayon::prelude::*;
    let (n_pos, n_neg) = (pos.len() as u64, neg.len() as u64);
    let Walk { drop, segments, ties, wide } = how;
    let wide = wide || !fits_u64(n_pos, n_neg);
    let bounds = split_points(pos, neg, segments);
    let pieces: Vec<Segment<'_, K>> = bounds
        .windows(2)
        .filter_map(|w| {
            // Keys in [lo, hi); hi None is +inf.
            let (hi, lo) = (w[0], w[1].expect("only the first bound is +inf"));
            let idx = |v: &[K], t: Option<u64>| t.map_or(v.len(), |t| v.partition_point(|x| x.to_u64() < t));
            let (p_hi, n_hi) = (idx(pos, hi), idx(neg, hi));
            let (p_lo, n_lo) = (idx(pos, Some(lo)), idx(neg, Some(lo)));
            if p_hi == p_lo && n_hi == n_lo {
                return None;
            }
            let after = next_below(pos, neg, lo).map(|key| counts_at(pos, neg, key.to_u64()));
            Some(Segment {
                pos: &pos[p_lo..p_hi],
                neg: &neg[n_lo..n_hi],
                start: Counts { tp: n_pos - p_hi as u64, fp: n_neg - n_hi as u64 },
                first: p_hi == pos.len() && n_hi == neg.len(),
                after,
            })
        })
        .collect();
    // Every segment but the first holds its points after the first's: only the first writes into
    // the buffers the curve is returned in (room for all points, plus the (0, 0) start).
    let total = pos.len() + neg.len();
    pieces
        .par_iter()
        .enumerate()
        .map(|(k, seg)| {
            let cap = if k == 0 { total + 2 } else { seg.len() + 1 };
            // Where the classes mix evenly, one-sided runs are short and rare, and looking for
            // them costs more than they save: the plain merge walks such a range.
            let runs = seg.pos.len().min(seg.neg.len()) * RARE < seg.len();
            if wide {
                walk_as::<K, u128>(seg, cap, drop, runs, ties)
            } else {
                walk_as::<K, u64>(seg, cap, drop, runs, ties)
            }
        })
        .collect()
}

/// [`walk`] with the variant for `drop`, `runs` and `ties` chosen.
fn walk_as<K: SortKey, P: Pair>(seg: &Segment<'_, K>, cap: usize, drop: bool, runs: bool, ties: bool) -> Part {
    match (drop, runs, ties) {
        (true, true, true) => walk::<K, P, true, true, true>(seg, cap),
        (true, false, true) => walk::<K, P, true, false, true>(seg, cap),
        (false, true, true) => walk::<K, P, false, true, true>(seg, cap),
        (false, false, true) => walk::<K, P, false, false, true>(seg, cap),
        (true, true, false) => walk::<K, P, true, true, false>(seg, cap),
        (true, false, false) => walk::<K, P, true, false, false>(seg, cap),
        (false, true, false) => walk::<K, P, false, true, false>(seg, cap),
        (false, false, false) => walk::<K, P, false, false, false>(seg, cap),
    }
}

/// Key bounds `[+inf, s_1, ..., s_{T-1}, 0]` splitting the keys into `segments` ranges of about
/// equal size (`None` is +inf). A run of equal keys is never split: bounds are key values.
fn split_points<K: SortKey>(pos: &[K], neg: &[K], segments: usize) -> Vec<Option<u64>> {
    let total = (pos.len() + neg.len()) as u64;
    let mut bounds = vec![None];
    for k in 1..segments as u64 {
        let target = total * k / segments as u64;
        // The smallest t with at most `target` keys >= t (the count falls as t grows).
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at_least(pos, mid) + at_least(neg, mid) <= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        bounds.push(Some(lo));
    }
    bounds.push(Some(0));
    bounds
}

/// A key range of the walk: its keys, the counts above it (the point before its first), and the
/// point after its last.
struct Segment<'a, K> {
    pos: &'a [K],
    neg: &'a [K],
    start: Counts,
    /// Whether this range holds the highest keys (its first point is always kept).
    first: bool,
    /// The point after this range's last, `None` for the range of the lowest keys.
    after: Option<Counts>,
}

impl<K> Segment<'_, K> {
    fn len(&self) -> usize {
        self.pos.len() + self.neg.len()
    }
}

/// What one range contributes: its kept curve points, raw: the bits of each `f64` slot hold the
/// point's impostor count, genuine count and key (0 for the +inf threshold of the curve's start),
/// turned into rates and scores by [`finish_curve`] once the parts are joined. Integers keep the
/// walk's loop short: no conversions in it.
struct Part {
    fpr: Vec<f64>,
    tpr: Vec<f64>,
    thresholds: Vec<f64>,
    /// How many leading slots of all three buffers an earlier report wrote (see
    /// [`scratch::take_resident`]).
    resident: usize,
    /// Whether a point's two counts share its `fpr` slot (see [`Pair`]).
    packed: bool,
}

#[inline(always)]
fn top<K: SortKey>(v: &[K], i: usize) -> K {
    // Keys of finite scores are never 0, so 0 stands for an exhausted side.
    if i > 0 {
        v[i - 1]
    } else {
        K::default()
    }
}

/// The walk over one range, from its highest key down. Each iteration takes the top key of either
/// side or both (a tie across sides); a point is complete when the next top differs. The pending
/// point (`mid`) is decided once its successor is complete: kept where the curve bends (sklearn's
/// second differences, in integers), or always without `DROP`. Positions in the key arrays stand
/// for counts (`tp = tp_end - i`), and every decision is arithmetic, not a branch. Keys of one
/// side above the other's top (a one-sided run) are walked by [`one_side`], without merging.
fn walk<K: SortKey, P: Pair, const DROP: bool, const RUNS: bool, const TIES: bool>(
    seg: &Segment<'_, K>,
    cap: usize,
) -> Part {
    let [(mut fpr, r0), (mut tpr, r1), (mut thr, r2)] = [(); 3].map(|_| scratch::take_resident::<f64>(cap));
    let resident = r0.min(r1).min(r2);
    let (pos, neg) = (seg.pos, seg.neg);
    // Counts at the range's bottom: a position i in `pos` stands for tp = tp_end - i.
    let (tp_end, fp_end) = (seg.start.tp + pos.len() as u64, seg.start.fp + neg.len() as u64);
    let out = Out { ptrs: [fpr.as_mut_ptr(), tpr.as_mut_ptr(), thr.as_mut_ptr()], cap, ends: P::pack(tp_end, fp_end) };
    let at = |i: usize, j: usize| P::pack(i as u64, j as u64);
    let mut len = 0usize;
    if seg.first {
        out.raw(0, 0, 0, 0); // the start: (0, 0) at +inf
        len = 1;
    }
    let (mut i, mut j) = (pos.len(), neg.len());
    let (mut a, mut b) = (top(pos, i), top(neg, j));
    let zero = K::default();
    // Takes the next point: its key, and the positions below it.
    let next = |i: &mut usize, j: &mut usize, a: &mut K, b: &mut K| -> Option<K> {
        let key = (*a).max(*b);
        while key != zero && (*a == key || *b == key) {
            *i -= usize::from(*a == key);
            *j -= usize::from(*b == key);
            (*a, *b) = (top(pos, *i), top(neg, *j));
        }
        (key != zero).then_some(key)
    };
    // prev: the point before the range; mid: its first point.
    let (pi, pj) = (i, j);
    let Some(mkey) = next(&mut i, &mut j, &mut a, &mut b) else {
        // An empty range (never made, but then only the start may have been written).
        // SAFETY: the first `len` slots were written.
        unsafe { set_lens::<P>(&mut fpr, &mut tpr, &mut thr, len) };
        return Part { fpr, tpr, thresholds: thr, resident, packed: P::PACKED };
    };
    let mut st = State { p: at(pi, pj), m: at(i, j), mkey, len };
    if seg.first {
        // The curve's first point is always kept: decide it now, outside the loop.
        out.point(st.len, st.m, st.mkey);
        st.len += 1;
        let Some(key) = next(&mut i, &mut j, &mut a, &mut b) else {
            // SAFETY: the first `len` slots were written.
            unsafe { set_lens::<P>(&mut fpr, &mut tpr, &mut thr, st.len) };
            return Part { fpr, tpr, thresholds: thr, resident, packed: P::PACKED };
        };
        st = State { p: st.m, m: at(i, j), mkey: key, len: st.len };
    }
    loop {
        // A one-sided run next (common where one class is rare, or in a tail of the scores where
        // one class has them all): walked by `one_side`. Looked for only where GATE keys of one
        // side come next, rarely so where the classes mix: the test is then a predictable branch.
        // The key GATE below each side's top, or 0 (below every key) where there is none.
        let (a_far, b_far) = (pos.get(i.wrapping_sub(GATE)).copied(), neg.get(j.wrapping_sub(GATE)).copied());
        let (a_far, b_far) = (a_far.unwrap_or(zero), b_far.unwrap_or(zero));
        if RUNS && ((b_far > a) | (a_far > b)) {
            if b_far > a {
                (j, st) = one_side::<K, P, DROP, true, TIES>(&out, neg, j, a, i, st);
                b = top(neg, j);
            } else {
                (i, st) = one_side::<K, P, DROP, false, TIES>(&out, pos, i, b, j, st);
                a = top(pos, i);
            }
            continue;
        }
        let key = a.max(b);
        if key == zero {
            break;
        }
        i -= usize::from(a == key);
        j -= usize::from(b == key);
        a = top(pos, i);
        b = top(neg, j);
        // A long run of tied scores is taken whole: the steps inside it complete no point (they
        // write the pending one again and keep nothing), so skipping them changes nothing. Only
        // runs of RUN keys or more (`v[i - RUN] == key` implies every key between equals it): short
        // ones are common in float32 scores, where testing every key made a coin-flip branch.
        if TIES && i >= RUN && pos[i - RUN] == key {
            i = start_of(pos, i, |&x| x == key);
            a = top(pos, i);
        }
        if TIES && j >= RUN && neg[j - RUN] == key {
            j = start_of(neg, j, |&x| x == key);
            b = top(neg, j);
        }
        let complete = a.max(b) != key;
        st = step::<K, P, DROP>(&out, st, complete, at(i, j), key);
    }
    // The range's last point: decided by the point after it, or kept as the curve's last.
    let State { p, m, mkey, mut len } = st;
    let ((pi, pj), (mi, mj)) = (p.unpack(), m.unpack());
    let (ptp, pfp, mtp, mfp) = (tp_end - pi, fp_end - pj, tp_end - mi, fp_end - mj);
    let keep = match seg.after {
        Some(next) => !DROP || ptp + next.tp != 2 * mtp || pfp + next.fp != 2 * mfp,
        None => true,
    };
    out.raw(len, mfp, mtp, mkey.to_u64());
    len += usize::from(keep);
    // SAFETY: the first `len` slots were written.
    unsafe { set_lens::<P>(&mut fpr, &mut tpr, &mut thr, len) };
    Part { fpr, tpr, thresholds: thr, resident, packed: P::PACKED }
}

/// Runs of equal keys at least this long are skipped by search in the report's walk.
const RUN: usize = 4;

/// One-sided runs of at least this many keys are walked by [`one_side`].
const GATE: usize = 8;

/// A range is walked looking for one-sided runs where its rarer class holds under one key in
/// RARE (where classes mix evenly, the look costs a merge walk a third more: measured on 10^7
/// uniform float32 scores, half genuine, 18 ms walked plainly, 27 ms looking).
const RARE: usize = 5;

/// Where the walk writes its points: the three curve buffers, their capacity, and the counts at
/// the range's bottom (`ends`, the pair `(tp_end, fp_end)`: position `i` in the genuine keys stands
/// for `tp = tp_end - i`).
struct Out<P> {
    ptrs: [*mut f64; 3],
    cap: usize,
    ends: P,
}

impl<P: Pair> Out<P> {
    /// Writes the raw point of counts `pair` (`(tp, fp)`) and `key` into slot `len`.
    #[inline(always)]
    fn raw_pair(&self, len: usize, pair: P, key: u64) {
        assert!(len < self.cap, "ROC curve capacity");
        // SAFETY: len < cap, the buffers' capacity.
        unsafe {
            pair.store(self.ptrs[0], self.ptrs[1], len);
            *self.ptrs[2].add(len) = f64::from_bits(key);
        }
    }

    /// Writes the raw point `(fp, tp, key)` into slot `len`.
    #[inline(always)]
    fn raw(&self, len: usize, fp: u64, tp: u64, key: u64) {
        self.raw_pair(len, P::pack(tp, fp), key);
    }

    /// Writes the point at positions `at` with `key` into slot `len`.
    #[inline(always)]
    fn point<K: SortKey>(&self, len: usize, at: P, key: K) {
        self.raw_pair(len, self.ends - at, key.to_u64());
    }
}

/// A genuine and an impostor position (or count) in one integer, the genuine one in the high half:
/// the walk's state and raw points are such pairs, so that a step's arithmetic, selects and
/// stores are done once for both (a `u64` where the counts fit 31 bits, else a `u128`).
trait Pair: Copy + PartialEq + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> {
    /// Whether the raw point keeps both counts in its `fpr` slot.
    const PACKED: bool;
    fn pack(high: u64, low: u64) -> Self;
    fn unpack(self) -> (u64, u64);
    /// Stores the raw counts `(tp, fp)` into slot `len` of the `fpr` (and `tpr`) buffers.
    ///
    /// # Safety
    /// The slot is within the buffers' capacity.
    unsafe fn store(self, fpr: *mut f64, tpr: *mut f64, len: usize);
    /// The raw counts `(fp, tp)` [`Pair::store`] put into slot `k` (a packed point's `tpr` slot
    /// was never written, and is not read).
    ///
    /// # Safety
    /// The slot holds a raw point stored this way.
    unsafe fn load(fpr: *const f64, tpr: *const f64, k: usize) -> (u64, u64);
}

impl Pair for u64 {
    const PACKED: bool = true;
    #[inline(always)]
    fn pack(high: u64, low: u64) -> u64 {
        high << 32 | low
    }
    #[inline(always)]
    fn unpack(self) -> (u64, u64) {
        (self >> 32, self & 0xffff_ffff)
    }
    #[inline(always)]
    unsafe fn store(self, fpr: *mut f64, _: *mut f64, len: usize) {
        *fpr.add(len) = f64::from_bits(self);
    }
    #[inline(always)]
    unsafe fn load(fpr: *const f64, _: *const f64, k: usize) -> (u64, u64) {
        let (tp, fp) = (*fpr.add(k)).to_bits().unpack();
        (fp, tp)
    }
}

impl Pair for u128 {
    const PACKED: bool = false;
    #[inline(always)]
    fn pack(high: u64, low: u64) -> u128 {
        u128::from(high) << 64 | u128::from(low)
    }
    #[inline(always)]
    fn unpack(self) -> (u64, u64) {
        ((self >> 64) as u64, self as u64)
    }
    #[inline(always)]
    unsafe fn store(self, fpr: *mut f64, tpr: *mut f64, len: usize) {
        let (tp, fp) = self.unpack();
        *fpr.add(len) = f64::from_bits(fp);
        *tpr.add(len) = f64::from_bits(tp);
    }
    #[inline(always)]
    unsafe fn load(fpr: *const f64, tpr: *const f64, k: usize) -> (u64, u64) {
        ((*fpr.add(k)).to_bits(), (*tpr.add(k)).to_bits())
    }
}

/// Whether a report of `n_pos` genuine and `n_neg` impostor pairs fits [`Pair`]'s `u64`: every
/// count in 32 bits and a sum of two positions too.
fn fits_u64(n_pos: u64, n_neg: u64) -> bool {
    n_pos < 1 << 31 && n_neg < 1 << 31
}

/// The walk's state between points: positions of the last decided-on point (`p`) and of the
/// pending one (`m`, with its key), and how many points are kept so far.
#[derive(Clone, Copy)]
struct State<K, P> {
    p: P,
    m: P,
    mkey: K,
    len: usize,
}

/// Walks the keys of one side (`v`, below position `q`) that lie above `other`, the other side's
/// top key, whose position `fixed` stays put meanwhile (`NEG`: `v` is the impostor side). The
/// same points and decisions as the merge loop of [`walk`], without its merge: the next key is
/// `v`'s, so no load waits on a comparison (the 10M float32 report, 1% genuine, walked in 12-15 ms
/// instead of 20). Returns the position below the run and the state after it.
#[inline(never)]
fn one_side<K: SortKey, P: Pair, const DROP: bool, const NEG: bool, const TIES: bool>(
    out: &Out<P>,
    v: &[K],
    mut q: usize,
    other: K,
    fixed: usize,
    st: State<K, P>,
) -> (usize, State<K, P>) {
    let stop = start_of(v, q, |&x| x > other);
    let mut st = st;
    while q > stop {
        q -= 1;
        let key = v[q];
        if TIES && q >= RUN && v[q - RUN] == key {
            q = start_of(v, q, |&x| x == key);
        }
        // The key below is the next one taken (the other side's top is lower).
        let complete = q == 0 || v[q - 1] != key;
        let at = if NEG { P::pack(fixed as u64, q as u64) } else { P::pack(q as u64, fixed as u64) };
        st = step::<K, P, DROP>(out, st, complete, at, key);
    }
    (q, st)
}

/// One step of the walk, to positions `at` after taking `key` (`complete`: the next key differs):
/// the pending point `m` is written to slot `len`, and kept (`len` advances) when this step
/// completes its successor and the curve bends at it (sklearn's second differences, in integers;
/// always without `DROP`); a complete step makes `m` the last point and `at` the pending one. Selects,
/// not branches: ties make `complete` a coin flip, and plain selects were compiled into a branch
/// on it.
#[inline(always)]
fn step<K: SortKey, P: Pair, const DROP: bool>(
    out: &Out<P>,
    st: State<K, P>,
    complete: bool,
    at: P,
    key: K,
) -> State<K, P> {
    use std::hint::select_unpredictable as pick;
    let State { p, m, mkey, len } = st;
    // Both coordinates' second differences at once (no carry crosses the halves: see `Pair`).
    let bend = p + at != m + m;
    out.point(len, m, mkey);
    State {
        p: pick(complete, m, p),
        m: pick(complete, at, m),
        mkey: pick(complete, key, mkey),
        len: len + usize::from(complete & (bend | !DROP)),
    }
}

/// The first position from which every key of `v[..i]` satisfies `inside`, which is false below
/// and true above some key of the ascending `v` (the keys above another side's top, a run of equal
/// keys ending at `v[i - 1]`): a galloping search back from `i`, so a short run costs a step or two
/// and a long one a logarithm.
#[inline]
fn start_of<K: SortKey>(v: &[K], i: usize, inside: impl Fn(&K) -> bool) -> usize {
    let mut reach = 1;
    while reach < i && inside(&v[i - 1 - reach]) {
        reach *= 2;
    }
    let lo = i.saturating_sub(reach + 1);
    lo + v[lo..i].partition_point(|x| !inside(x))
}

/// Sets the three curve vectors' lengths to the `len` raw points written (the `tpr` one to 0 where
/// the points are packed: its slots were not written).
///
/// # Safety
/// The first `len` points must be written.
unsafe fn set_lens<P: Pair>(fpr: &mut Vec<f64>, tpr: &mut Vec<f64>, thr: &mut Vec<f64>, len: usize) {
    fpr.set_len(len);
    tpr.set_len(if P::PACKED { 0 } else { len });
    thr.set_len(len);
}

/// The curve from the parts of the walk: every part's raw points (counts and keys) turned into
/// rates and thresholds, the first part's in place and every later part's as they are copied
/// after it (its buffers have room for all), in pieces on all threads; the area and the best
/// accuracy are read off the points on the way. Both need only the kept points: the trapezoids of
/// collinear points add up to the one trapezoid of their ends (exactly, in integers), and
/// `tp - fp` is linear along a straight run, so its first maximum is at a kept end. Returns the
/// curve, twice the area (in pairs squared) and the best `tp - fp` with its threshold (`(0, +inf)`
/// when no point beats rejecting everything).
#[allow(clippy::type_complexity)]
fn finish_curve<K: SortKey>(
    parts: Vec<Part>,
    (n_pos, n_neg): (u64, u64),
) -> ((Vec<f64>, Vec<f64>, Vec<f64>), u128, (i64, f64)) {
    use rayon::prelude::*;
    const PIECE: usize = 1 << 16;
    let mut parts = parts.into_iter();
    let first = parts.next().expect("at least one part");
    let rest: Vec<Part> = parts.collect();
    let packed = first.packed;
    assert!(rest.iter().all(|p| p.packed == packed), "a walk's parts store their points alike");
    let (mut fpr, mut tpr, mut thr) = (first.fpr, first.tpr, first.thresholds);
    let total = fpr.len() + rest.iter().map(|p| p.fpr.len()).sum::<usize>();
    // A raw point's counts `(fp, tp)` (see `Pair`).
    let load = if packed { <u64 as Pair>::load } else { <u128 as Pair>::load };
    assert!(fpr.capacity() >= total && tpr.capacity() >= total && thr.capacity() >= total, "ROC curve capacity");
    // Every piece: where it reads its raw points, where it writes them converted (the same place
    // for the first part), how many, and the raw counts of the point before it.
    let dst = [fpr.as_mut_ptr(), tpr.as_mut_ptr(), thr.as_mut_ptr()].map(Disjoint::new);
    let sources = std::iter::once([fpr.as_ptr(), tpr.as_ptr(), thr.as_ptr()])
        .chain(rest.iter().map(|p| [p.fpr.as_ptr(), p.tpr.as_ptr(), p.thresholds.as_ptr()]));
    let lens = std::iter::once(fpr.len()).chain(rest.iter().map(|p| p.fpr.len()));
    let mut pieces: Vec<([Disjoint<f64>; 3], usize, usize, (u64, u64))> = Vec::new();
    let (mut before, mut at) = ((0u64, 0u64), 0);
    for (src, len) in sources.zip(lens) {
        for start in (0..len).step_by(PIECE) {
            let n = (len - start).min(PIECE);
            // SAFETY: start + n <= len: the piece lies inside the part's initialised points.
            let (piece, last) = unsafe {
                (src.map(|p| Disjoint::new(p as *mut f64).offset(start)), load(src[0], src[1], start + n - 1))
            };
            pieces.push((piece, at + start, n, before));
            before = last;
        }
        at += len;
    }
    let stats: Vec<(u128, i64, f64)> = pieces
        .into_par_iter()
        .map(|(src, offset, len, before)| {
            // SAFETY: pieces read disjoint initialised points and write disjoint slots below
            // `total` (within the first part's capacity); a piece of the first part reads each
            // point before it writes that same slot.
            unsafe {
                if packed {
                    finish_piece::<K, u64>(src, dst, offset, len, before, (n_pos, n_neg))
                } else {
                    finish_piece::<K, u128>(src, dst, offset, len, before, (n_pos, n_neg))
                }
            }
        })
        .collect();
    for v in rest.into_iter().flat_map(|p| [p.fpr, p.tpr, p.thresholds]) {
        scratch::give(v);
    }
    for v in [&mut fpr, &mut tpr, &mut thr] {
        // SAFETY: every slot below `total` was written above.
        unsafe { v.set_len(total) };
        // Room for every score was made; its untouched rest costs address space only, so the
        // buffer is returned as it is. A small curve is copied out instead, so that a report held
        // on to holds no more than its points (and the rest of a huge page).
        if total * std::mem::size_of::<f64>() < SMALL_CURVE_BYTES && total < v.capacity() {
            let room = std::mem::replace(v, v.to_vec());
            scratch::give(room);
        }
    }
    let mut best = (0i64, f64::INFINITY);
    let mut twice_area = 0u128;
    for (area, d, at) in stats {
        twice_area += area;
        if d > best.0 {
            best = (d, at); // strictly better only: ties keep the earlier, higher threshold
        }
    }
    ((fpr, tpr, thr), twice_area, best)
}

/// Finishes `len` raw points read from `src` (stored by `P`: see [`Pair`]) into slots
/// `offset..` of `dst`, `before` the raw `(fp, tp)` of the point before them; returns twice their
/// area (trapezoids from the point before) and their best `tp - fp` with its threshold.
///
/// # Safety
/// `src` holds `len` raw points; `dst`'s slots are this piece's to write, either disjoint from
/// `src`'s or the very same ones (each point is read before its slot is written).
#[inline(always)]
unsafe fn finish_piece<K: SortKey, P: Pair>(
    src: [Disjoint<f64>; 3],
    dst: [Disjoint<f64>; 3],
    offset: usize,
    len: usize,
    (mut pfp, mut ptp): (u64, u64),
    (n_pos, n_neg): (u64, u64),
) -> (u128, i64, f64) {
    let (pn, nn) = (n_pos as f64, n_neg as f64);
    let (mut twice_area, mut best_d, mut best_at) = (0u128, 0i64, f64::INFINITY);
    for k in 0..len {
        let (fp, tp) = P::load(src[0].ptr(), src[1].ptr(), k);
        let key = src[2].read(k).to_bits();
        twice_area += u128::from(fp - pfp) * u128::from(tp + ptp);
        let threshold = if key == 0 { f64::INFINITY } else { K::from_u64(key).value() };
        let d = tp as i64 - fp as i64;
        if d > best_d {
            (best_d, best_at) = (d, threshold);
        }
        dst[0].write(offset + k, fp as i64 as f64 / nn);
        dst[1].write(offset + k, tp as i64 as f64 / pn);
        dst[2].write(offset + k, threshold);
        (pfp, ptp) = (fp, tp);
    }
    (twice_area, best_d, best_at)
}

/// Equal error rate, as [`super::roc::Eer`] finds it walking: the first point (highest key) whose
/// gap `(P - tp) N - fp P` is `<= 0`, the gap falling as the threshold does, so a binary search on
/// either side's keys finds it.
fn eer_by_search<K: SortKey>(pos: &[K], neg: &[K]) -> (f64, f64) {
    let (n_pos, n_neg) = (pos.len() as u64, neg.len() as u64);
    let gap = |c: Counts| i128::from(n_pos - c.tp) * i128::from(n_neg) - i128::from(c.fp) * i128::from(n_pos);
    let settled = |x: &K| gap(counts_at(pos, neg, x.to_u64())) <= 0;
    let highest = |v: &[K]| v.partition_point(settled).checked_sub(1).map(|i| v[i]);
    let Some(key) = highest(pos).max(highest(neg)) else {
        return (f64::NAN, f64::NAN);
    };
    let here = counts_at(pos, neg, key.to_u64());
    let prev = next_above(pos, neg, key.to_u64()).map_or(Counts { tp: 0, fp: 0 }, |k| counts_at(pos, neg, k.to_u64()));
    let (g_here, g_prev) = (gap(here), gap(prev));
    let t = g_prev as f64 / (g_prev - g_here) as f64;
    let nn = n_neg as f64;
    let (far_prev, far_here) = (prev.fp as f64 / nn, here.fp as f64 / nn);
    (far_prev + t * (far_here - far_prev), key.value())
}

/// TAR at each FAR, as [`TarAtFar`] finds it walking: the last point (lowest key) whose impostor
/// count is within the FAR's limit `L`, i.e. the lowest key above the (L+1)-th highest impostor.
fn tar_by_search<K: SortKey>(pos: &[K], neg: &[K], fars: &[f64]) -> Result<Vec<(f64, f64)>> {
    let (n_pos, n_neg) = (pos.len() as u64, neg.len() as u64);
    let (pn, nn) = (n_pos as f64, n_neg as f64);
    Ok(fars
        .iter()
        .map(|&far| {
            let limit = TarAtFar::limit(far, n_neg);
            let key = if limit >= n_neg {
                pos.first().copied().into_iter().chain(neg.first().copied()).min()
            } else {
                next_above(pos, neg, neg[(n_neg - 1 - limit) as usize].to_u64())
            };
            let (tp, thr) = key.map_or((0, f64::INFINITY), |k| (at_least(pos, k.to_u64()), k.value()));
            if far * nn < 1.0 {
                (f64::NAN, f64::NAN)
            } else {
                (tp as f64 / pn, thr)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::binary::BinaryScores;
    use crate::metrics::roc::{best_accuracy, roc_auc, roc_curve};

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 11
    }

    fn check(scores: &[f64], labels: &[u8], fars: &[f64]) {
        let narrow: Vec<f32> = scores.iter().map(|&x| x as f32).collect();
        for wide in [true, false] {
            let sort = || {
                if wide {
                    SortedScores::new(&BinaryScores::new("t", scores, labels, false).unwrap()).unwrap()
                } else {
                    SortedScores::new(&BinaryScores::new("t", &narrow, labels, false).unwrap()).unwrap()
                }
            };
            let reference = sort();
            let both = reference.n_pos() > 0 && reference.n_neg() > 0;
            let (e, re) = (eer_of(&reference), eer(&reference));
            assert!(e.0.to_bits() == re.0.to_bits() && (e.1 == re.1 || (e.1.is_nan() && re.1.is_nan())));
            let (t, rt) = (tar_at_far_of(&reference, fars).unwrap(), tar_at_far(&reference, fars).unwrap());
            for (x, y) in t.iter().zip(&rt) {
                assert!(x.0.to_bits() == y.0.to_bits() && (x.1 == y.1 || (x.1.is_nan() && y.1.is_nan())));
            }
            for drop in [true, false] {
                // Every split, walked looking for long runs of ties and not (the search that skips
                // them only saves steps: a walk that takes them key by key must agree).
                // Pairs of positions in a u64 (as every report here would) and in a u128.
                let splits = [1usize, 2, 3, 7].into_iter().flat_map(|s| [(s, true), (s, false)]);
                let splits = splits.flat_map(|(s, t)| [(s, t, false), (s, t, true)]);
                for (segments, ties, wide_pairs) in splits.filter(|_| both) {
                    let sorted = sort();
                    let s = match sorted.keys() {
                        crate::metrics::sorted::KeySlices::Wide(p, n) => summarize_with(
                            p,
                            n,
                            fars,
                            Walk { drop, segments, ties, wide: wide_pairs },
                            (sorted.n_pos(), sorted.n_neg()),
                        ),
                        crate::metrics::sorted::KeySlices::Narrow(p, n) => summarize_with(
                            p,
                            n,
                            fars,
                            Walk { drop, segments, ties, wide: wide_pairs },
                            (sorted.n_pos(), sorted.n_neg()),
                        ),
                    };
                    let what = format!(
                        "wide={wide} drop={drop} segments={segments} ties={ties} pairs {wide_pairs} n={}",
                        scores.len()
                    );
                    assert_eq!(bits(&s.curve), bits(&roc_curve(&reference, drop)), "{what}");
                    assert_eq!(s.auc.to_bits(), roc_auc(&reference).to_bits(), "{what}");
                    assert_eq!(s.best_accuracy, best_accuracy(&reference), "{what}");
                    let (e, re) = (s.eer, eer(&reference));
                    assert_eq!((e.0.to_bits(), e.1), (re.0.to_bits(), re.1), "{what}");
                    let (t, rt) = (s.tar_at_far, tar_at_far(&reference, fars).unwrap());
                    assert_eq!(t.len(), rt.len());
                    for (x, y) in t.iter().zip(&rt) {
                        assert!(
                            x.0.to_bits() == y.0.to_bits() && (x.1 == y.1 || (x.1.is_nan() && y.1.is_nan())),
                            "{what}: {t:?} vs {rt:?}"
                        );
                    }
                }
                let whole = summarize(sort(), fars, drop).unwrap();
                assert_eq!(bits(&whole.curve), bits(&roc_curve(&reference, drop)));
                assert_eq!(bits(&curve(&reference, drop).unwrap()), bits(&roc_curve(&reference, drop)));
            }
        }
    }

    fn bits(curve: &(Vec<f64>, Vec<f64>, Vec<f64>)) -> Vec<u64> {
        [&curve.0, &curve.1, &curve.2].iter().flat_map(|v| v.iter().map(|x| x.to_bits())).collect()
    }

    /// The report from given keys split into `segments` ranges (summarize picks the thread count).
    fn summarize_with<K: SortKey>(pos: &[K], neg: &[K], fars: &[f64], how: Walk, counts: (u64, u64)) -> Summary {
        let (parts, eer, tar) = report_keys(pos, neg, fars, how).unwrap();
        combine::<K>(parts, eer, tar, counts)
    }

    #[test]
    fn pairs_decide_bends_as_their_two_coordinates_do() {
        // Positions up to the largest a u64 pair holds (counts below 2^31) and beyond, for u128.
        let edge = (1u64 << 31) - 1;
        let values = [0u64, 1, 2, 3, 1000, edge - 2, edge - 1, edge];
        for &(p, m, c) in &[(0usize, 1usize, 2usize), (1, 1, 1), (2, 1, 0), (0, 0, 5)] {
            for &hi in &values {
                for &lo in &values {
                    let coords = [(hi, lo), (lo, hi), (hi, hi)];
                    let (pp, mm, cc) = (coords[p % 3], coords[m % 3], coords[c % 3]);
                    let bend = pp.0 + cc.0 != 2 * mm.0 || pp.1 + cc.1 != 2 * mm.1;
                    let pack64 = |(a, b): (u64, u64)| <u64 as Pair>::pack(a, b);
                    let pack128 = |(a, b): (u64, u64)| <u128 as Pair>::pack(a << 20, b << 20);
                    assert_eq!(pack64(pp) + pack64(cc) != pack64(mm) + pack64(mm), bend);
                    assert_eq!(pack128(pp) + pack128(cc) != pack128(mm) + pack128(mm), bend);
                    assert_eq!(pack64(pp).unpack(), pp);
                    assert_eq!(pack128(pp).unpack(), (pp.0 << 20, pp.1 << 20));
                    // Counts from positions: the ends minus a pair, both halves at once.
                    let ends = (edge, edge);
                    assert_eq!((pack64(ends) - pack64(pp)).unpack(), (edge - pp.0, edge - pp.1));
                }
            }
        }
        assert!(fits_u64(edge, edge) && !fits_u64(edge + 1, 0) && !fits_u64(0, edge + 1));
    }

    #[test]
    fn equals_the_streaming_metrics() {
        let fars = [1e-6, 1e-3, 0.01, 0.05, 0.3, 1.0];
        let mut seed = 3;
        for &n in &[1usize, 2, 5, 40, 1000, 5000] {
            for levels in [3u64, 50, 700, 2000, 1 << 40] {
                for genuine in [1u64, 30, 50, 97] {
                    let scores: Vec<f64> =
                        (0..n).map(|_| (lcg(&mut seed) % levels) as f64 / levels as f64 - 0.3).collect();
                    let labels: Vec<u8> = (0..n).map(|_| u8::from(lcg(&mut seed) % 100 < genuine)).collect();
                    check(&scores, &labels, &fars);
                }
            }
        }
        // Long one-sided runs of either class (walked without merging), with ties inside them,
        // runs of equal keys, a tie across the classes at a run's end, and runs at both ends.
        for majority in [0u8, 1] {
            for seed in 0..12u64 {
                let mut seed = seed + 100;
                let (mut scores, mut labels) = (Vec::new(), Vec::new());
                let mut level = 0u64;
                let mut push = |level: u64, label: u8| {
                    scores.push(level as f64 / 4096.0 - 3.0);
                    labels.push(label);
                };
                for _ in 0..40 {
                    for _ in 0..lcg(&mut seed) % 60 {
                        match lcg(&mut seed) % 40 {
                            0..=3 => {} // a tie with the key before
                            4 => {
                                level += 1;
                                for _ in 0..6 {
                                    push(level, majority);
                                }
                            }
                            _ => level += 1,
                        }
                        push(level, majority);
                    }
                    if !lcg(&mut seed).is_multiple_of(4) {
                        level += 1; // else the other class's key ties the run's last
                    }
                    for _ in 0..1 + lcg(&mut seed) % 2 {
                        push(level, 1 - majority);
                    }
                    level += 1;
                }
                for _ in 0..30 {
                    level += 1;
                    push(level, majority);
                }
                check(&scores, &labels, &fars);
            }
        }
        // Separated classes, one class only, all scores equal.
        check(&[0.9, 0.8, 0.7, 0.2, 0.1], &[1, 1, 1, 0, 0], &fars);
        check(&[0.1, 0.2, 0.7, 0.8, 0.9], &[1, 1, 1, 0, 0], &fars);
        check(&[0.5; 6], &[1, 0, 1, 0, 0, 1], &fars);
        check(&[0.3, 0.2], &[1, 1], &fars);
        check(&[0.3, 0.2], &[0, 0], &fars);
    }
}
