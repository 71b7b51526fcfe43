//! The ROC of a set of scores, from one radix sort, and everything read off it:
//! the curve (sklearn-compatible), AUC, EER and TAR at fixed FAR.
//!
//! Genuine and impostor scores are sorted separately as order-preserving integer keys, so no label
//! array travels through the sort; a merge walk from the highest score down then yields one ROC
//! point per distinct score with exact integer counts (`tp`, `fp` = genuine / impostor scores
//! `>=` that threshold).

use rayon::prelude::*;

use super::binary::{BinaryScores, Score, SortKey};
use super::radix::{sort_keys, split_sorted, Split};
use crate::error::{MfrError, Result};
use crate::heap::with_capacity_huge as huge;
use crate::threads;

/// Genuine and impostor scores as sorted (ascending) order-preserving keys, as wide as the scores
/// were (float32 scores sort as 32-bit keys: half the memory traffic of widening them).
pub struct SortedScores {
    keys: Keys,
}

enum Keys {
    Wide { pos: Vec<u64>, neg: Vec<u64> },
    Narrow { pos: Vec<u32>, neg: Vec<u32> },
}

/// One operating point: accept every score `>= threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocPoint {
    pub threshold: f64,
    /// Genuine pairs accepted.
    pub tp: u64,
    /// Impostor pairs accepted.
    pub fp: u64,
}

/// The genuine (label 1) and impostor keys, each in input order: one read of the labels counts
/// every chunk's genuine pairs, which gives each chunk disjoint output ranges, then one parallel
/// read of scores and labels writes every key straight into its place.
fn split_keys<S: Score>(scores: &[S], labels: &[u8]) -> (Vec<S::Key>, Vec<S::Key>) {
    let n = scores.len();
    let chunk_len = n.div_ceil(4 * rayon::current_num_threads().max(1)).max(1 << 14);
    let genuine: Vec<usize> = labels.par_chunks(chunk_len).map(|c| c.iter().filter(|&&l| l == 1).count()).collect();
    let n_pos: usize = genuine.iter().sum();
    let (mut pos, mut neg) = (huge::<S::Key>(n_pos), huge::<S::Key>(n - n_pos));
    let mut starts = Vec::with_capacity(genuine.len());
    let (mut p, mut q) = (0, 0);
    for (c, &g) in genuine.iter().enumerate() {
        starts.push((p, q));
        p += g;
        q += (chunk_len * (c + 1)).min(n) - chunk_len * c - g;
    }
    let (out_pos, out_neg) = (SharedOut(pos.as_mut_ptr()), SharedOut(neg.as_mut_ptr()));
    scores.par_chunks(chunk_len).zip(labels.par_chunks(chunk_len)).zip(starts).for_each(|((s, l), (mut i, mut j))| {
        let (out_pos, out_neg) = (&out_pos, &out_neg);
        for (&x, &y) in s.iter().zip(l) {
            // SAFETY: chunk c writes pos[starts[c].0 ..][..its genuine count] and the matching
            // impostor range; the ranges are disjoint and cover both vectors exactly.
            unsafe {
                if y == 1 {
                    *out_pos.0.add(i) = x.key();
                    i += 1;
                } else {
                    *out_neg.0.add(j) = x.key();
                    j += 1;
                }
            }
        }
    });
    // SAFETY: every slot below the lengths was written above.
    unsafe {
        pos.set_len(n_pos);
        neg.set_len(n - n_pos);
    }
    (pos, neg)
}

struct SharedOut<K>(*mut K);
// SAFETY: threads write disjoint indices only (see split_keys).
unsafe impl<K> Sync for SharedOut<K> {}

impl SortedScores {
    /// Frees the keys and their pages now: the block cache would keep them resident, and the
    /// report frees them exactly so that the curve it finishes next does not add to them.
    pub fn discard(self) {
        match self.keys {
            Keys::Wide { pos, neg } => {
                crate::heap::discard(pos);
                crate::heap::discard(neg);
            }
            Keys::Narrow { pos, neg } => {
                crate::heap::discard(pos);
                crate::heap::discard(neg);
            }
        }
    }

    /// Sorts in the mfr thread pool.
    pub fn new<S: Score>(input: &BinaryScores<'_, S>) -> Result<Self> {
        let (scores, labels) = (input.scores, input.labels);
        threads::install(|| {
            if scores.len() >= 1 << 16 {
                if let Split::Sorted(pos, neg) = split_sorted(scores, labels) {
                    return S::Key::sorted(pos, neg);
                }
            }
            Self::split_then_sort(scores, labels)
        })
    }

    /// Checks the input as [`BinaryScores::new`] does and sorts it, the checks riding on the
    /// sort's first read of the scores (one read of them fewer). Errors are the checks' own.
    pub fn checked<S: Score>(func: &str, scores: &[S], labels: &[u8], need_both_classes: bool) -> Result<Self> {
        if scores.len() >= 1 << 16 && scores.len() == labels.len() {
            match threads::install(|| split_sorted(scores, labels))? {
                Split::Sorted(pos, neg) if !(need_both_classes && (pos.is_empty() || neg.is_empty())) => {
                    return Ok(S::Key::sorted(pos, neg));
                }
                Split::PiledUp => {
                    BinaryScores::new(func, scores, labels, need_both_classes)?;
                    return threads::install(|| Self::split_then_sort(scores, labels));
                }
                // The checks below name what is wrong.
                Split::Sorted(..) | Split::Invalid => {}
            }
        }
        Self::new(&BinaryScores::new(func, scores, labels, need_both_classes)?)
    }

    fn split_then_sort<S: Score>(scores: &[S], labels: &[u8]) -> Self {
        let (mut pos, mut neg) = split_keys(scores, labels);
        rayon::join(|| sort_keys(&mut pos), || sort_keys(&mut neg));
        S::Key::sorted(pos, neg)
    }

    pub(crate) fn wide(pos: Vec<u64>, neg: Vec<u64>) -> Self {
        SortedScores { keys: Keys::Wide { pos, neg } }
    }

    pub(crate) fn narrow(pos: Vec<u32>, neg: Vec<u32>) -> Self {
        SortedScores { keys: Keys::Narrow { pos, neg } }
    }

    pub fn n_pos(&self) -> u64 {
        match &self.keys {
            Keys::Wide { pos, .. } => pos.len() as u64,
            Keys::Narrow { pos, .. } => pos.len() as u64,
        }
    }

    pub fn n_neg(&self) -> u64 {
        match &self.keys {
            Keys::Wide { neg, .. } => neg.len() as u64,
            Keys::Narrow { neg, .. } => neg.len() as u64,
        }
    }

    /// The sorted keys themselves, for walks written for one key width.
    pub(crate) fn keys(&self) -> KeySlices<'_> {
        match &self.keys {
            Keys::Wide { pos, neg } => KeySlices::Wide(pos, neg),
            Keys::Narrow { pos, neg } => KeySlices::Narrow(pos, neg),
        }
    }

    /// ROC points by decreasing threshold, one per distinct score (the (0, 0) point at +inf excluded).
    pub fn points(&self) -> RocPoints<'_> {
        match &self.keys {
            Keys::Wide { pos, neg } => RocPoints::Wide(Walk::new(pos, neg)),
            Keys::Narrow { pos, neg } => RocPoints::Narrow(Walk::new(pos, neg)),
        }
    }
}

/// Sorted genuine and impostor keys, borrowed.
pub(crate) enum KeySlices<'a> {
    Wide(&'a [u64], &'a [u64]),
    Narrow(&'a [u32], &'a [u32]),
}

/// The merge walk over sorted keys of either width.
pub enum RocPoints<'a> {
    Wide(Walk<'a, u64>),
    Narrow(Walk<'a, u32>),
}

impl Iterator for RocPoints<'_> {
    type Item = RocPoint;

    #[inline]
    fn next(&mut self) -> Option<RocPoint> {
        match self {
            RocPoints::Wide(w) => w.next(),
            RocPoints::Narrow(w) => w.next(),
        }
    }

    #[inline]
    fn fold<B, F: FnMut(B, RocPoint) -> B>(self, init: B, f: F) -> B {
        // One match for the whole walk instead of one per point.
        match self {
            RocPoints::Wide(w) => w.fold(init, f),
            RocPoints::Narrow(w) => w.fold(init, f),
        }
    }
}

pub struct Walk<'a, K> {
    pos: &'a [K],
    neg: &'a [K],
    i: usize,
    j: usize,
    tp: u64,
    fp: u64,
}

impl<'a, K: SortKey> Walk<'a, K> {
    fn new(pos: &'a [K], neg: &'a [K]) -> Self {
        Walk { pos, neg, i: pos.len(), j: neg.len(), tp: 0, fp: 0 }
    }
}

impl<K: SortKey> Iterator for Walk<'_, K> {
    type Item = RocPoint;

    #[inline]
    fn next(&mut self) -> Option<RocPoint> {
        // Keys of finite scores are never 0, so 0 stands for an exhausted side. Which side holds
        // the next key is a coin flip on real data: taken without a branch (the tie loops below
        // rarely run), the merge does not pay a misprediction per point.
        let zero = K::default();
        let top_pos = if self.i > 0 { self.pos[self.i - 1] } else { zero };
        let top_neg = if self.j > 0 { self.neg[self.j - 1] } else { zero };
        let key = top_pos.max(top_neg);
        if key == zero {
            return None;
        }
        let (from_pos, from_neg) = (usize::from(top_pos == key), usize::from(top_neg == key));
        self.i -= from_pos;
        self.j -= from_neg;
        self.tp += from_pos as u64;
        self.fp += from_neg as u64;
        while self.i > 0 && self.pos[self.i - 1] == key {
            self.i -= 1;
            self.tp += 1;
        }
        while self.j > 0 && self.neg[self.j - 1] == key {
            self.j -= 1;
            self.fp += 1;
        }
        Some(RocPoint { threshold: key.value(), tp: self.tp, fp: self.fp })
    }
}

/// `(fpr, tpr, thresholds)` exactly as `sklearn.metrics.roc_curve` computes them: a first point
/// (0, 0) at threshold +inf, then one point per distinct score (or, with `drop_intermediate`, only
/// the points where the curve changes direction, plus both ends).
pub fn roc_curve(sorted: &SortedScores, drop_intermediate: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut curve = Curve::new(sorted.n_pos(), sorted.n_neg(), drop_intermediate);
    sorted.points().for_each(|p| curve.push(&p));
    curve.finish()
}

/// Builds the ROC curve while points stream by, deciding each point once its successor is known
/// (sklearn keeps point k when `np.diff(x, 2)` around it is non-zero, for x = fps and tps), so the
/// full point list is never held.
pub struct Curve {
    n_pos: f64,
    n_neg: f64,
    drop_intermediate: bool,
    /// The two most recent points, `prev` older than `mid`; `mid` awaits its decision.
    prev: Option<RocPoint>,
    mid: Option<RocPoint>,
    /// Points kept so far; the vectors' spare capacity is written first and kept by counting.
    len: usize,
    fpr: Vec<f64>,
    tpr: Vec<f64>,
    thresholds: Vec<f64>,
}

impl Curve {
    pub fn new(n_pos: u64, n_neg: u64, drop_intermediate: bool) -> Self {
        // At most one point per pair plus the first, and one slot for a point written but not
        // kept. Reserving the bound avoids the copies (and the doubled peak) of growing; pages
        // never written are never made resident, and `finish` shrinks in place.
        let cap = (n_pos + n_neg + 2) as usize;
        let mut c = Curve {
            n_pos: n_pos as f64,
            n_neg: n_neg as f64,
            drop_intermediate,
            prev: None,
            mid: None,
            len: 0,
            fpr: huge(cap),
            tpr: huge(cap),
            thresholds: huge(cap),
        };
        c.write(0.0, 0.0, f64::INFINITY, true);
        c
    }

    /// Writes `p` into the next slot and keeps it when `keep`: no branch on a decision that is a
    /// coin flip for real scores.
    #[inline]
    fn emit_if(&mut self, p: &RocPoint, keep: bool) {
        self.write(p.fp as f64 / self.n_neg, p.tp as f64 / self.n_pos, p.threshold, keep);
    }

    #[inline]
    fn write(&mut self, fpr: f64, tpr: f64, threshold: f64, keep: bool) {
        assert!(self.len < self.fpr.capacity(), "ROC curve capacity");
        // SAFETY: `len` < capacity (checked above; the capacity bounds the points by construction).
        unsafe {
            *self.fpr.as_mut_ptr().add(self.len) = fpr;
            *self.tpr.as_mut_ptr().add(self.len) = tpr;
            *self.thresholds.as_mut_ptr().add(self.len) = threshold;
        }
        self.len += usize::from(keep);
    }

    #[inline]
    pub fn push(&mut self, p: &RocPoint) {
        if !self.drop_intermediate {
            self.emit_if(p, true);
            return;
        }
        match (self.prev, self.mid) {
            (None, _) => {
                self.emit_if(p, true); // the first point is always kept
                self.prev = Some(*p);
            }
            (Some(_), None) => self.mid = Some(*p),
            (Some(a), Some(b)) => {
                // Second differences in exact integers: `b` is kept where the curve bends.
                self.emit_if(&b, a.fp + p.fp != 2 * b.fp || a.tp + p.tp != 2 * b.tp);
                self.prev = Some(b);
                self.mid = Some(*p);
            }
        }
    }

    pub fn finish(mut self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        if let Some(last) = self.mid.take() {
            self.emit_if(&last, true); // the last point is always kept
        }
        // SAFETY: the first `len` slots of each vector were written by `emit_if`.
        unsafe {
            self.fpr.set_len(self.len);
            self.tpr.set_len(self.len);
            self.thresholds.set_len(self.len);
        }
        self.fpr.shrink_to_fit();
        self.tpr.shrink_to_fit();
        self.thresholds.shrink_to_fit();
        (self.fpr, self.tpr, self.thresholds)
    }
}

/// Area under the ROC curve, ties counting one half (the Mann-Whitney U statistic / (P N)),
/// accumulated in exact integer arithmetic.
pub fn roc_auc(sorted: &SortedScores) -> f64 {
    let mut m = Auc::default();
    sorted.points().for_each(|p| m.push(&p));
    m.finish(sorted.n_pos(), sorted.n_neg())
}

/// Equal error rate `(rate, threshold)`, see [`Eer`].
pub fn eer(sorted: &SortedScores) -> (f64, f64) {
    let mut m = Eer::new(sorted.n_pos(), sorted.n_neg());
    for p in sorted.points() {
        if m.push(&p) {
            break;
        }
    }
    m.finish()
}

/// `(tar, threshold)` per target FAR, see [`TarAtFar`].
pub fn tar_at_far(sorted: &SortedScores, fars: &[f64]) -> Result<Vec<(f64, f64)>> {
    let mut m = TarAtFar::new(sorted.n_pos(), sorted.n_neg(), fars)?;
    for p in sorted.points() {
        if m.push(&p) {
            break;
        }
    }
    Ok(m.finish())
}

/// `(accuracy, threshold)` of the best single threshold, see [`BestAccuracy`].
pub fn best_accuracy(sorted: &SortedScores) -> (f64, f64) {
    let mut m = BestAccuracy::new(sorted.n_pos(), sorted.n_neg());
    sorted.points().for_each(|p| m.push(&p));
    m.finish()
}

// Each metric below consumes ROC points by decreasing threshold (cumulative counts), so one walk
// can feed several of them; `push` returns true once the metric can no longer change.

/// AUC accumulator: twice the trapezoid area in exact integers.
#[derive(Default)]
pub struct Auc {
    twice_area: u128,
    prev_tp: u64,
    prev_fp: u64,
}

impl Auc {
    /// The accumulator holding a given twice-area (summed over parts of a walk).
    pub fn from_twice_area(twice_area: u128) -> Self {
        Auc { twice_area, prev_tp: 0, prev_fp: 0 }
    }

    #[inline]
    pub fn push(&mut self, p: &RocPoint) {
        self.twice_area += u128::from(p.fp - self.prev_fp) * u128::from(p.tp + self.prev_tp);
        self.prev_tp = p.tp;
        self.prev_fp = p.fp;
    }

    pub fn finish(&self, n_pos: u64, n_neg: u64) -> f64 {
        if n_pos == 0 || n_neg == 0 {
            return f64::NAN;
        }
        // Split the division so huge counts stay accurate: (2A) / (2 P N).
        let denom = 2 * u128::from(n_pos) * u128::from(n_neg);
        let whole = self.twice_area / denom;
        let rest = self.twice_area % denom;
        whole as f64 + rest as f64 / denom as f64
    }
}

/// Equal error rate: where the false accept rate FAR = fp/N meets the false reject rate
/// FRR = 1 - tp/P. Walking the ROC by decreasing threshold, `k` is the first point with
/// FRR <= FAR (compared exactly in integers); the rate is the crossing of the straight segment from
/// point k-1 to k (the point at +inf being (FAR 0, FRR 1)); the threshold is point k's.
pub struct Eer {
    n_pos: u64,
    n_neg: u64,
    prev_fp: u64,
    prev_gap: i128,
    result: Option<(f64, f64)>,
}

impl Eer {
    pub fn new(n_pos: u64, n_neg: u64) -> Self {
        let mut e = Eer { n_pos, n_neg, prev_fp: 0, prev_gap: 0, result: None };
        e.prev_gap = e.gap(0, 0);
        e
    }

    /// (FRR - FAR) * P * N = (P - tp) N - fp P.
    #[inline]
    fn gap(&self, tp: u64, fp: u64) -> i128 {
        i128::from(self.n_pos - tp) * i128::from(self.n_neg) - i128::from(fp) * i128::from(self.n_pos)
    }

    #[inline]
    pub fn push(&mut self, p: &RocPoint) -> bool {
        if self.result.is_some() {
            return true;
        }
        let here = self.gap(p.tp, p.fp);
        if here <= 0 {
            let t = self.prev_gap as f64 / (self.prev_gap - here) as f64; // prev_gap > 0 >= here
            let n_neg = self.n_neg as f64;
            let (far_prev, far_here) = (self.prev_fp as f64 / n_neg, p.fp as f64 / n_neg);
            self.result = Some((far_prev + t * (far_here - far_prev), p.threshold));
            return true;
        }
        self.prev_fp = p.fp;
        self.prev_gap = here;
        false
    }

    /// NaN when a class is missing (the crossing always exists otherwise: the last point has
    /// FAR 1 and FRR 0).
    pub fn finish(&self) -> (f64, f64) {
        self.result.unwrap_or((f64::NAN, f64::NAN))
    }
}

/// For each target FAR: the largest TAR = tp/P over operating points with FAR = fp/N <= target,
/// and that point's threshold. NaN for both when the target is below 1/N, since no finite set of N
/// impostor pairs can measure it. A target reached only by rejecting everything gives (0, +inf).
pub struct TarAtFar {
    n_pos: u64,
    n_neg: u64,
    fars: Vec<f64>,
    /// Target indices by increasing FAR; targets `order[..next]` are settled.
    order: Vec<usize>,
    /// Per target: the largest impostor count whose FAR `fp / N` is <= the target.
    limits: Vec<u64>,
    next: usize,
    /// The last point within the current target's limit.
    last: (u64, f64),
    best: Vec<(u64, f64)>,
}

impl TarAtFar {
    pub fn new(n_pos: u64, n_neg: u64, fars: &[f64]) -> Result<Self> {
        validate_fars("tar_at_far", fars)?;
        let mut order: Vec<usize> = (0..fars.len()).collect();
        order.sort_by(|&a, &b| fars[a].total_cmp(&fars[b]));
        let limits = fars.iter().map(|&f| Self::limit(f, n_neg)).collect();
        let best = vec![(0, f64::INFINITY); fars.len()];
        Ok(TarAtFar { n_pos, n_neg, fars: fars.to_vec(), order, limits, next: 0, last: (0, f64::INFINITY), best })
    }

    /// max k with `k as f64 / n as f64 <= far`, exactly as that float comparison decides.
    pub(crate) fn limit(far: f64, n: u64) -> u64 {
        let nf = n as f64;
        let mut k = ((far * nf).floor() as u64).min(n);
        while k > 0 && k as f64 / nf > far {
            k -= 1;
        }
        while k < n && (k + 1) as f64 / nf <= far {
            k += 1;
        }
        k
    }

    #[inline]
    pub fn push(&mut self, p: &RocPoint) -> bool {
        while self.next < self.order.len() && p.fp > self.limits[self.order[self.next]] {
            self.best[self.order[self.next]] = self.last;
            self.next += 1;
        }
        if self.next == self.order.len() {
            return true;
        }
        self.last = (p.tp, p.threshold);
        false
    }

    pub fn finish(&self) -> Vec<(f64, f64)> {
        let (n_pos, n_neg) = (self.n_pos as f64, self.n_neg as f64);
        let mut best = self.best.clone();
        for &t in &self.order[self.next..] {
            best[t] = self.last;
        }
        self.fars
            .iter()
            .zip(best)
            .map(
                |(&f, (tp, thr))| {
                    if f * n_neg < 1.0 || n_pos == 0.0 {
                        (f64::NAN, f64::NAN)
                    } else {
                        (tp as f64 / n_pos, thr)
                    }
                },
            )
            .collect()
    }
}

/// The best accuracy (correct decisions / pairs) over all operating points, and its threshold;
/// `+inf` when rejecting everything is best. Ties keep the highest threshold.
pub struct BestAccuracy {
    n_pos: u64,
    n_neg: u64,
    best: u64,
    threshold: f64,
}

impl BestAccuracy {
    pub fn new(n_pos: u64, n_neg: u64) -> Self {
        BestAccuracy { n_pos, n_neg, best: n_neg, threshold: f64::INFINITY }
    }

    #[inline]
    pub fn push(&mut self, p: &RocPoint) {
        let correct = p.tp + (self.n_neg - p.fp);
        if correct > self.best {
            (self.best, self.threshold) = (correct, p.threshold);
        }
    }

    pub fn finish(&self) -> (f64, f64) {
        (self.best as f64 / (self.n_pos + self.n_neg) as f64, self.threshold)
    }
}

pub(crate) fn validate_fars(func: &str, fars: &[f64]) -> Result<()> {
    if let Some((i, f)) = fars.iter().enumerate().find(|(_, f)| !(**f > 0.0 && **f <= 1.0)) {
        return Err(MfrError::invalid(func, format!("fars must lie in (0, 1], got {f} at index {i}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(scores: &[f64], labels: &[u8]) -> SortedScores {
        SortedScores::new(&BinaryScores::new("t", scores, labels, true).unwrap()).unwrap()
    }

    #[test]
    fn curve_with_ties_matches_hand_computation() {
        // scores desc: 0.9(P) 0.8(N) 0.8(P) 0.5(N) 0.3(P)
        let s = sorted(&[0.8, 0.9, 0.3, 0.5, 0.8], &[1, 1, 1, 0, 0]);
        let (fpr, tpr, thr) = roc_curve(&s, false);
        assert_eq!(thr, vec![f64::INFINITY, 0.9, 0.8, 0.5, 0.3]);
        assert_eq!(tpr, vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(fpr, vec![0.0, 0.0, 0.5, 1.0, 1.0]);
        // AUC: pairs (P,N): 0.9>0.8,0.9>0.5, 0.8=0.8 (1/2), 0.8>0.5, 0.3<both -> 3.5/6
        assert!((roc_auc(&s) - 3.5 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn drop_intermediate_keeps_corners() {
        let s = sorted(&[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], &[1, 1, 1, 0, 0, 0]);
        let (fpr, tpr, thr) = roc_curve(&s, true);
        assert_eq!(thr, vec![f64::INFINITY, 0.9, 0.7, 0.4]);
        assert_eq!(fpr, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(tpr, vec![0.0, 1.0 / 3.0, 1.0, 1.0]);
        assert_eq!(roc_auc(&s), 1.0);
    }

    #[test]
    fn eer_and_tar() {
        let s = sorted(&[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], &[1, 0, 1, 0, 1, 0]);
        let (rate, thr) = eer(&s);
        // FAR/FRR by point: 0.9:(0,2/3) 0.8:(1/3,2/3) 0.7:(1/3,1/3) -> crossing at 0.7 exactly.
        assert!((rate - 1.0 / 3.0).abs() < 1e-15 && thr == 0.7, "{rate} {thr}");
        let r = tar_at_far(&s, &[0.1, 0.34, 1.0]).unwrap();
        assert!(r[0].0.is_nan() && r[0].1.is_nan());
        assert_eq!(r[1], (2.0 / 3.0, 0.7));
        assert_eq!(r[2], (1.0, 0.4));
        assert!(tar_at_far(&s, &[0.0]).is_err());
        assert!(tar_at_far(&s, &[f64::NAN]).is_err());
    }

    #[test]
    fn tied_top_impostors_give_zero_tar_at_infinite_threshold() {
        let s = sorted(&[0.9, 0.9, 0.5, 0.1], &[0, 0, 1, 0]);
        assert_eq!(tar_at_far(&s, &[0.4]).unwrap()[0], (0.0, f64::INFINITY));
    }
}
