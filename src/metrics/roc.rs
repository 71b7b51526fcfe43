//! The ROC of a set of scores, from one radix sort, and everything read off it:
//! the curve (sklearn-compatible), AUC, EER and TAR at fixed FAR.
//!
//! Genuine and impostor scores are sorted separately as order-preserving integer keys, so no label
//! array travels through the sort; a merge walk from the highest score down then yields one ROC
//! point per distinct score with exact integer counts (`tp`, `fp` = genuine / impostor scores
//! `>=` that threshold).

use rayon::prelude::*;

use super::binary::{key_value, ordered_key, BinaryScores};
use super::radix::radix_sort_u64;
use crate::error::{MfrError, Result};
use crate::threads;

/// Genuine and impostor scores as sorted (ascending) order-preserving keys.
pub struct SortedScores {
    pos: Vec<u64>,
    neg: Vec<u64>,
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

impl SortedScores {
    /// Sorts in the mfr thread pool.
    pub fn new(input: &BinaryScores<'_>) -> Result<Self> {
        let (scores, labels) = (input.scores, input.labels);
        threads::install(|| {
            let split = |want: u8| -> Vec<u64> {
                scores
                    .par_iter()
                    .zip(labels.par_iter())
                    .filter(|(_, &l)| l == want)
                    .map(|(&s, _)| ordered_key(s))
                    .collect()
            };
            let (mut pos, mut neg) = rayon::join(|| split(1), || split(0));
            rayon::join(|| radix_sort_u64(&mut pos), || radix_sort_u64(&mut neg));
            SortedScores { pos, neg }
        })
    }

    pub fn n_pos(&self) -> u64 {
        self.pos.len() as u64
    }

    pub fn n_neg(&self) -> u64 {
        self.neg.len() as u64
    }

    /// ROC points by decreasing threshold, one per distinct score (the (0, 0) point at +inf excluded).
    pub fn points(&self) -> RocPoints<'_> {
        RocPoints { pos: &self.pos, neg: &self.neg, i: self.pos.len(), j: self.neg.len(), tp: 0, fp: 0 }
    }
}

pub struct RocPoints<'a> {
    pos: &'a [u64],
    neg: &'a [u64],
    i: usize,
    j: usize,
    tp: u64,
    fp: u64,
}

impl Iterator for RocPoints<'_> {
    type Item = RocPoint;

    #[inline]
    fn next(&mut self) -> Option<RocPoint> {
        let top_pos = if self.i > 0 { Some(self.pos[self.i - 1]) } else { None };
        let top_neg = if self.j > 0 { Some(self.neg[self.j - 1]) } else { None };
        let key = top_pos.max(top_neg)?;
        while self.i > 0 && self.pos[self.i - 1] == key {
            self.i -= 1;
            self.tp += 1;
        }
        while self.j > 0 && self.neg[self.j - 1] == key {
            self.j -= 1;
            self.fp += 1;
        }
        Some(RocPoint { threshold: key_value(key), tp: self.tp, fp: self.fp })
    }
}

/// `(fpr, tpr, thresholds)` exactly as `sklearn.metrics.roc_curve` computes them: a first point
/// (0, 0) at threshold +inf, then one point per distinct score (or, with `drop_intermediate`, only
/// the points where the curve changes direction, plus both ends).
pub fn roc_curve(sorted: &SortedScores, drop_intermediate: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let points: Vec<RocPoint> = sorted.points().collect();
    let kept: Vec<&RocPoint> = if drop_intermediate && points.len() > 2 {
        let last = points.len() - 1;
        points
            .iter()
            .enumerate()
            .filter(|&(k, _)| {
                k == 0 || k == last || {
                    let (a, b, c) = (&points[k - 1], &points[k], &points[k + 1]);
                    // Second differences in exact integer arithmetic (sklearn: np.diff(x, 2) != 0).
                    a.fp + c.fp != 2 * b.fp || a.tp + c.tp != 2 * b.tp
                }
            })
            .map(|(_, p)| p)
            .collect()
    } else {
        points.iter().collect()
    };
    let (n_pos, n_neg) = (sorted.n_pos() as f64, sorted.n_neg() as f64);
    let mut fpr = Vec::with_capacity(kept.len() + 1);
    let mut tpr = Vec::with_capacity(kept.len() + 1);
    let mut thr = Vec::with_capacity(kept.len() + 1);
    fpr.push(0.0);
    tpr.push(0.0);
    thr.push(f64::INFINITY);
    for p in kept {
        fpr.push(p.fp as f64 / n_neg);
        tpr.push(p.tp as f64 / n_pos);
        thr.push(p.threshold);
    }
    (fpr, tpr, thr)
}

/// Area under the ROC curve, ties counting one half (the Mann-Whitney U statistic / (P N)),
/// accumulated in exact integer arithmetic.
pub fn roc_auc(sorted: &SortedScores) -> f64 {
    auc_of_points(sorted.points(), sorted.n_pos(), sorted.n_neg())
}

/// AUC of any ROC point stream (decreasing thresholds, cumulative counts) with class totals.
pub fn auc_of_points(points: impl Iterator<Item = RocPoint>, n_pos: u64, n_neg: u64) -> f64 {
    let mut acc = AucAccumulator::default();
    points.for_each(|p| acc.push(&p));
    acc.finish(n_pos, n_neg)
}

#[derive(Default)]
struct AucAccumulator {
    twice_area: u128,
    prev_tp: u64,
    prev_fp: u64,
}

impl AucAccumulator {
    #[inline]
    fn push(&mut self, p: &RocPoint) {
        self.twice_area += u128::from(p.fp - self.prev_fp) * u128::from(p.tp + self.prev_tp);
        self.prev_tp = p.tp;
        self.prev_fp = p.fp;
    }

    fn finish(&self, n_pos: u64, n_neg: u64) -> f64 {
        // Split the division so huge counts stay accurate: (2A) / (2 P N).
        let denom = 2 * u128::from(n_pos) * u128::from(n_neg);
        let whole = self.twice_area / denom;
        let rest = self.twice_area % denom;
        whole as f64 + rest as f64 / denom as f64
    }
}

/// Equal error rate: where the false accept rate FAR = fp/N meets the false reject rate
/// FRR = 1 - tp/P. Walking the ROC by decreasing threshold, `k` is the first point with
/// FRR <= FAR; the rate is the crossing of the straight segment from point k-1 to k (the point at
/// +inf being (FAR 0, FRR 1)); the threshold is point k's (accept scores >= it).
pub fn eer(sorted: &SortedScores) -> (f64, f64) {
    eer_of_points(sorted.points(), sorted.n_pos(), sorted.n_neg())
}

/// [`eer`] of any ROC point stream.
pub fn eer_of_points(points: impl Iterator<Item = RocPoint>, n_pos: u64, n_neg: u64) -> (f64, f64) {
    // gap = (FRR - FAR) * P * N, exact in integers: (P - tp) N - fp P.
    let gap = |tp: u64, fp: u64| i128::from(n_pos - tp) * i128::from(n_neg) - i128::from(fp) * i128::from(n_pos);
    let (mut prev_fp, mut prev_gap) = (0u64, gap(0, 0));
    for p in points {
        let here = gap(p.tp, p.fp);
        if here <= 0 {
            let t = prev_gap as f64 / (prev_gap - here) as f64; // prev_gap > 0 >= here
            let (far_prev, far_here) = (prev_fp as f64 / n_neg as f64, p.fp as f64 / n_neg as f64);
            return (far_prev + t * (far_here - far_prev), p.threshold);
        }
        prev_fp = p.fp;
        prev_gap = here;
    }
    // Unreachable with both classes present: the last point has FAR 1 and FRR 0.
    (f64::NAN, f64::NAN)
}

/// For each target FAR: the largest TAR = tp/P over operating points with FAR = fp/N <= target,
/// and that point's threshold. NaN for both when the target is below 1/N, since no finite set of N
/// impostor pairs can measure it. A target reached only by rejecting everything gives (0, +inf).
pub fn tar_at_far(sorted: &SortedScores, fars: &[f64]) -> Result<Vec<(f64, f64)>> {
    validate_fars("tar_at_far", fars)?;
    Ok(tar_of_points(sorted.points(), sorted.n_pos(), sorted.n_neg(), fars))
}

/// [`tar_at_far`] of any ROC point stream (targets already validated).
pub fn tar_of_points(points: impl Iterator<Item = RocPoint>, n_pos: u64, n_neg: u64, fars: &[f64]) -> Vec<(f64, f64)> {
    let (n_pos, n_neg) = (n_pos as f64, n_neg as f64);
    let mut best: Vec<(u64, f64)> = vec![(0, f64::INFINITY); fars.len()];
    // Visit targets in increasing order while walking points by increasing FAR.
    let mut order: Vec<usize> = (0..fars.len()).collect();
    order.sort_by(|&a, &b| fars[a].total_cmp(&fars[b]));
    let mut next = 0; // targets order[..next] can no longer improve
    for p in points {
        let far = p.fp as f64 / n_neg;
        while next < order.len() && far > fars[order[next]] {
            next += 1;
        }
        if next == order.len() {
            break;
        }
        for &t in &order[next..] {
            best[t] = (p.tp, p.threshold);
        }
    }
    fars.iter()
        .zip(best)
        .map(|(&f, (tp, thr))| if f * n_neg < 1.0 { (f64::NAN, f64::NAN) } else { (tp as f64 / n_pos, thr) })
        .collect()
}

/// Best accuracy over all operating points, (accuracy, threshold); `+inf` when rejecting all wins.
pub fn best_accuracy_of_points(points: impl Iterator<Item = RocPoint>, n_pos: u64, n_neg: u64) -> (f64, f64) {
    let (mut best, mut thr) = (n_neg, f64::INFINITY);
    for p in points {
        let correct = p.tp + (n_neg - p.fp);
        if correct > best {
            (best, thr) = (correct, p.threshold);
        }
    }
    (best as f64 / (n_pos + n_neg) as f64, thr)
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
