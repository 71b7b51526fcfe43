//! The ROC of sorted scores ([`super::sorted`]) and everything read off its walk, streaming: the
//! curve (sklearn-compatible), AUC, EER, TAR at fixed FAR and the best accuracy.

use super::sorted::{RocPoint, SortedScores};
use crate::error::{MfrError, Result};
use crate::heap::with_capacity_huge as huge;

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
    use crate::metrics::binary::BinaryScores;

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
