//! k-fold verification accuracy under three protocols.
//!
//! * `Exact`: unshuffled k-fold split (sklearn `KFold(shuffle=False)`: the first `n % k` folds hold
//!   one extra pair); on the training folds, the operating point with the best accuracy over every
//!   distinct score (accept `score >= t`; among equally good points the highest score wins); the
//!   threshold is placed midway between that score and the next lower distinct training score, so
//!   it keeps every training decision and leaves a margin on both sides (`+inf` when rejecting
//!   everything is best); mean and population std of the test-fold accuracies.
//! * `InsightFace` (insightface `eval/verification.py`): the same split; distance `d = 2 - 2 s`
//!   (squared L2 of normalized embeddings); accept `d < t` for `t` in `0, 0.01, ..., 3.99`; the first
//!   threshold with the best training accuracy; population std. Also its VAL@FAR: on each training
//!   fold the FAR of `t` in `0, 0.001, ..., 3.999`, the threshold interpolated linearly at the target
//!   FAR (as `np.interp`; 0.0 when no grid FAR reaches the target), VAL and FAR measured on the test
//!   fold; mean VAL, population std of VAL, mean FAR.
//! * `FaceXZoo` (FaceX-Zoo `LFWEvaluator`): `k` consecutive equal subsets; scores stored as float32;
//!   on the training subsets 1000 evenly spaced thresholds from the min to the max score (as
//!   `np.linspace` in float64), the first maximizing Youden's J = TPR - FPR with `score > t` accepted;
//!   on the test subset genuine pairs with `score > t` and impostor pairs with `score < t` count as
//!   correct; mean and standard error (`std(ddof=1) / sqrt(k)`).
//!
//! Training-fold counts for every threshold come from per-fold sorted scores and binary search
//! (all folds minus the test fold), instead of one pass over the data per threshold.

use std::ops::Range;

use super::binary::BinaryScores;
use crate::error::{MfrError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Exact,
    InsightFace,
    FaceXZoo,
}

impl Protocol {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "exact" => Ok(Protocol::Exact),
            "insightface" => Ok(Protocol::InsightFace),
            "facexzoo" => Ok(Protocol::FaceXZoo),
            other => Err(MfrError::invalid(
                "kfold_accuracy",
                format!("protocol must be 'exact', 'insightface' or 'facexzoo', got '{other}'"),
            )),
        }
    }
}

/// insightface's VAL@FAR result.
#[derive(Clone, Debug, PartialEq)]
pub struct ValAtFar {
    pub far_target: f64,
    pub val_mean: f64,
    pub val_std: f64,
    pub far_mean: f64,
    /// Per fold: interpolated distance threshold, VAL and FAR on the test fold.
    pub thresholds: Vec<f64>,
    pub vals: Vec<f64>,
    pub fars: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KFoldOutcome {
    pub fold_accuracies: Vec<f64>,
    /// Per fold, in the protocol's units (scores; squared L2 distance for insightface).
    pub thresholds: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub val: Option<ValAtFar>,
}

/// sklearn `KFold(n_splits=k, shuffle=False)` test ranges.
pub fn kfold_ranges(n: usize, k: usize) -> Vec<Range<usize>> {
    let (base, extra) = (n / k, n % k);
    let mut start = 0;
    (0..k)
        .map(|f| {
            let len = base + usize::from(f < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect()
}

/// Per fold, the genuine and impostor values, sorted ascending.
struct FoldValues {
    genuine: Vec<Vec<f64>>,
    impostor: Vec<Vec<f64>>,
}

impl FoldValues {
    fn new(values: &[f64], labels: &[u8], folds: &[Range<usize>]) -> Self {
        let mut genuine = Vec::with_capacity(folds.len());
        let mut impostor = Vec::with_capacity(folds.len());
        for r in folds {
            let (mut g, mut i) = (Vec::new(), Vec::new());
            for (&v, &l) in values[r.clone()].iter().zip(&labels[r.clone()]) {
                if l == 1 {
                    g.push(v)
                } else {
                    i.push(v)
                }
            }
            g.sort_by(f64::total_cmp);
            i.sort_by(f64::total_cmp);
            genuine.push(g);
            impostor.push(i);
        }
        FoldValues { genuine, impostor }
    }

    /// `counts[f][t]` = values of fold `f` strictly below `thresholds[t]` (or, with `above`,
    /// strictly above).
    fn counts(sorted: &[Vec<f64>], thresholds: &[f64], above: bool) -> Vec<Vec<u64>> {
        sorted
            .iter()
            .map(|vals| {
                thresholds
                    .iter()
                    .map(|&t| {
                        if above {
                            (vals.len() - vals.partition_point(|&v| v <= t)) as u64
                        } else {
                            vals.partition_point(|&v| v < t) as u64
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Column sums of `counts` minus the row of the test fold, for every fold.
fn leave_one_out(counts: &[Vec<u64>]) -> Vec<Vec<u64>> {
    let t = counts.first().map_or(0, Vec::len);
    let mut total = vec![0u64; t];
    for row in counts {
        for (acc, &c) in total.iter_mut().zip(row) {
            *acc += c;
        }
    }
    counts.iter().map(|row| total.iter().zip(row).map(|(&a, &c)| a - c).collect()).collect()
}

fn first_argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn std(xs: &[f64], ddof: usize) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - ddof) as f64).sqrt()
}

/// numpy's `arange(0, stop, step)` for positive step: `i * step`.
fn arange(stop: f64, step: f64) -> Vec<f64> {
    let n = (stop / step).ceil() as usize;
    (0..n).map(|i| i as f64 * step).collect()
}

/// numpy's `linspace(start, stop, num)` in float64.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> =
        (0..num).map(|i| if step == 0.0 { i as f64 / div * delta + start } else { i as f64 * step + start }).collect();
    if num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// numpy's `interp(x, xp, fp)` for non-decreasing `xp` and `xp[0] <= x <= xp[last]`.
fn np_interp(x: f64, xp: &[f64], fp: &[f64]) -> f64 {
    let last = xp.len() - 1;
    if x >= xp[last] {
        return fp[last];
    }
    if x < xp[0] {
        return fp[0];
    }
    // j: the last index with xp[j] <= x (so xp[j] <= x < xp[j + 1]).
    let j = xp.partition_point(|&v| v <= x) - 1;
    if x == xp[j] {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    slope * (x - xp[j]) + fp[j]
}

pub fn kfold_accuracy(input: &BinaryScores<'_>, n_folds: usize, protocol: Protocol) -> Result<KFoldOutcome> {
    kfold_accuracy_with_folds(input, n_folds, protocol, None)
}

/// [`kfold_accuracy`], with an optional fold number in `0..n_folds` per pair (protocol `Exact`
/// only; every fold must hold a pair): e.g. folds of disjoint identities, so that no identity
/// both chooses a threshold and is tested with it.
pub fn kfold_accuracy_with_folds(
    input: &BinaryScores<'_>,
    n_folds: usize,
    protocol: Protocol,
    folds: Option<&[i64]>,
) -> Result<KFoldOutcome> {
    const F: &str = "kfold_accuracy";
    let n = input.scores.len();
    if n_folds < 2 || n_folds > n {
        return Err(MfrError::invalid(
            F,
            format!("n_folds must be between 2 and the number of pairs ({n}), got {n_folds}"),
        ));
    }
    if let Some(folds) = folds {
        if protocol != Protocol::Exact {
            return Err(MfrError::invalid(
                F,
                "folds can only be given with protocol 'exact' (the published protocols fix their own splits)",
            ));
        }
        if folds.len() != n {
            return Err(MfrError::invalid(F, format!("folds must have one entry per pair ({n}), got {}", folds.len())));
        }
        let mut fold_of = Vec::with_capacity(n);
        let mut sizes = vec![0usize; n_folds];
        for (i, &f) in folds.iter().enumerate() {
            if f < 0 || f as u64 >= n_folds as u64 {
                return Err(MfrError::invalid(
                    F,
                    format!("folds must lie in [0, n_folds = {n_folds}), got {f} at pair {i}"),
                ));
            }
            sizes[f as usize] += 1;
            fold_of.push(f as usize);
        }
        if let Some(empty) = sizes.iter().position(|&c| c == 0) {
            return Err(MfrError::invalid(
                F,
                format!("fold {empty} holds no pair; every fold in [0, {n_folds}) needs one"),
            ));
        }
        return Ok(exact(input, &fold_of, n_folds));
    }
    match protocol {
        Protocol::Exact => {
            let mut fold_of = vec![0usize; n];
            for (f, r) in kfold_ranges(n, n_folds).into_iter().enumerate() {
                fold_of[r].iter_mut().for_each(|x| *x = f);
            }
            Ok(exact(input, &fold_of, n_folds))
        }
        Protocol::InsightFace => Ok(insightface(input, n_folds, 1e-3)),
        Protocol::FaceXZoo => {
            if !n.is_multiple_of(n_folds) {
                return Err(MfrError::invalid(
                    F,
                    format!(
                        "protocol 'facexzoo' splits the pairs into {n_folds} equal consecutive subsets (as LFW's 10 x 600), \
                         but {n} pairs do not divide by {n_folds}"
                    ),
                ));
            }
            Ok(facexzoo(input, n_folds))
        }
    }
}

fn exact(input: &BinaryScores<'_>, fold_of: &[usize], k: usize) -> KFoldOutcome {
    let mut accs = Vec::with_capacity(k);
    let mut thresholds = Vec::with_capacity(k);
    for f in 0..k {
        // Training pairs, best first: walk distinct scores downward, tracking accuracy of `>= t`.
        let mut train: Vec<(f64, u8)> = fold_of
            .iter()
            .enumerate()
            .filter(|&(_, &g)| g != f)
            .map(|(i, _)| (input.scores[i], input.labels[i]))
            .collect();
        train.sort_by(|a, b| b.0.total_cmp(&a.0));
        let n_neg = train.iter().filter(|p| p.1 == 0).count() as u64;
        // Accepting nothing: every impostor is correct.
        let (mut correct, mut best_correct, mut best_t) = (n_neg, n_neg, f64::INFINITY);
        let mut i = 0;
        while i < train.len() {
            let t = train[i].0;
            while i < train.len() && train[i].0 == t {
                if train[i].1 == 1 {
                    correct += 1
                } else {
                    correct -= 1
                }
                i += 1;
            }
            if correct > best_correct {
                (best_correct, best_t) = (correct, t);
                // Midway to the next lower distinct score, if there is one.
                if i < train.len() {
                    best_t = 0.5 * t + 0.5 * train[i].0;
                }
            }
        }
        let (mut test_n, mut test_correct) = (0usize, 0usize);
        for (i, _) in fold_of.iter().enumerate().filter(|&(_, &g)| g == f) {
            test_n += 1;
            test_correct += usize::from((input.scores[i] >= best_t) == (input.labels[i] == 1));
        }
        accs.push(test_correct as f64 / test_n as f64);
        thresholds.push(best_t);
    }
    KFoldOutcome { mean: mean(&accs), std: std(&accs, 0), fold_accuracies: accs, thresholds, val: None }
}

fn insightface(input: &BinaryScores<'_>, k: usize, far_target: f64) -> KFoldOutcome {
    let n = input.scores.len();
    let dist: Vec<f64> = input.scores.iter().map(|s| 2.0 - 2.0 * s).collect();
    let folds = kfold_ranges(n, k);
    let by_fold = FoldValues::new(&dist, input.labels, &folds);
    let n_gen: Vec<u64> = by_fold.genuine.iter().map(|v| v.len() as u64).collect();
    let n_imp: Vec<u64> = by_fold.impostor.iter().map(|v| v.len() as u64).collect();
    let all_imp = n_imp.iter().sum::<u64>();

    // Accuracy: thresholds 0, 0.01, ..., 3.99; accept d < t.
    let grid = arange(4.0, 0.01);
    let gen_lt = FoldValues::counts(&by_fold.genuine, &grid, false);
    let imp_lt = FoldValues::counts(&by_fold.impostor, &grid, false);
    let (gen_train, imp_train) = (leave_one_out(&gen_lt), leave_one_out(&imp_lt));
    let mut accs = Vec::with_capacity(k);
    let mut thresholds = Vec::with_capacity(k);
    for f in 0..k {
        let n_train = (n - folds[f].len()) as f64;
        let neg_train = all_imp - n_imp[f];
        let best =
            first_argmax((0..grid.len()).map(|t| (gen_train[f][t] + neg_train - imp_train[f][t]) as f64 / n_train));
        let correct = gen_lt[f][best] + n_imp[f] - imp_lt[f][best];
        accs.push(correct as f64 / folds[f].len() as f64);
        thresholds.push(grid[best]);
    }

    // VAL@FAR: thresholds 0, 0.001, ..., 3.999.
    let grid = arange(4.0, 0.001);
    let imp_lt = leave_one_out(&FoldValues::counts(&by_fold.impostor, &grid, false));
    let (mut vals, mut fars, mut val_thresholds) = (Vec::new(), Vec::new(), Vec::new());
    for f in 0..k {
        let neg_train = (all_imp - n_imp[f]) as f64;
        let far_train: Vec<f64> = imp_lt[f].iter().map(|&c| c as f64 / neg_train).collect();
        let max_far = far_train.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let t = if max_far >= far_target { np_interp(far_target, &far_train, &grid) } else { 0.0 };
        let ta = by_fold.genuine[f].partition_point(|&d| d < t) as f64;
        let fa = by_fold.impostor[f].partition_point(|&d| d < t) as f64;
        vals.push(ta / n_gen[f] as f64);
        fars.push(fa / n_imp[f] as f64);
        val_thresholds.push(t);
    }
    let val = ValAtFar {
        far_target,
        val_mean: mean(&vals),
        val_std: std(&vals, 0),
        far_mean: mean(&fars),
        thresholds: val_thresholds,
        vals,
        fars,
    };
    KFoldOutcome { mean: mean(&accs), std: std(&accs, 0), fold_accuracies: accs, thresholds, val: Some(val) }
}

fn facexzoo(input: &BinaryScores<'_>, k: usize) -> KFoldOutcome {
    let n = input.scores.len();
    let scores32: Vec<f64> = input.scores.iter().map(|&s| f64::from(s as f32)).collect();
    let size = n / k;
    let folds: Vec<Range<usize>> = (0..k).map(|f| f * size..(f + 1) * size).collect();
    let by_fold = FoldValues::new(&scores32, input.labels, &folds);
    let mut accs = Vec::with_capacity(k);
    let mut thresholds = Vec::with_capacity(k);
    for f in 0..k {
        let train = |sorted: &Vec<Vec<f64>>| -> Vec<f64> {
            sorted.iter().enumerate().filter(|&(g, _)| g != f).flat_map(|(_, v)| v.iter().copied()).collect()
        };
        let (mut gen, mut imp) = (train(&by_fold.genuine), train(&by_fold.impostor));
        gen.sort_by(f64::total_cmp);
        imp.sort_by(f64::total_cmp);
        let lo = gen.first().copied().unwrap_or(f64::INFINITY).min(imp.first().copied().unwrap_or(f64::INFINITY));
        let hi = gen.last().copied().unwrap_or(f64::NEG_INFINITY).max(imp.last().copied().unwrap_or(f64::NEG_INFINITY));
        let candidates = linspace(lo, hi, 1000);
        let above = |v: &[f64], t: f64| (v.len() - v.partition_point(|&x| x <= t)) as f64;
        let best = first_argmax(
            candidates.iter().map(|&t| above(&gen, t) / gen.len() as f64 - above(&imp, t) / imp.len() as f64),
        );
        let t = candidates[best];
        let tp = above(&by_fold.genuine[f], t);
        let tn = by_fold.impostor[f].partition_point(|&x| x < t) as f64;
        accs.push((tp + tn) / size as f64);
        thresholds.push(t);
    }
    KFoldOutcome {
        mean: mean(&accs),
        std: std(&accs, 1) / (k as f64).sqrt(),
        fold_accuracies: accs,
        thresholds,
        val: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_sklearn_kfold() {
        let r = kfold_ranges(11, 3);
        assert_eq!(r, vec![0..4, 4..8, 8..11]);
        assert_eq!(kfold_ranges(10, 10).len(), 10);
    }

    #[test]
    fn numpy_helpers() {
        assert_eq!(arange(4.0, 0.01).len(), 400);
        assert_eq!(arange(4.0, 0.001).len(), 4000);
        let l = linspace(-1.0, 1.0, 5);
        assert_eq!(l, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(linspace(2.0, 2.0, 3), vec![2.0, 2.0, 2.0]);
        let xp = [0.0, 0.0, 0.1, 0.1, 0.3];
        let fp = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(np_interp(0.0, &xp, &fp), 1.0);
        assert_eq!(np_interp(0.1, &xp, &fp), 3.0);
        assert!((np_interp(0.2, &xp, &fp) - 3.5).abs() < 1e-12);
        assert_eq!(np_interp(0.3, &xp, &fp), 4.0);
    }

    #[test]
    fn exact_protocol_on_separable_data_is_perfect() {
        let scores: Vec<f64> =
            (0..40).map(|i| if i % 2 == 0 { 0.9 - i as f64 * 1e-3 } else { 0.1 + i as f64 * 1e-3 }).collect();
        let labels: Vec<u8> = (0..40).map(|i| u8::from(i % 2 == 0)).collect();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let out = kfold_accuracy(&input, 4, Protocol::Exact).unwrap();
        assert_eq!(out.fold_accuracies, vec![1.0; 4]);
        assert_eq!(out.std, 0.0);
        // insightface takes the first (tightest) best grid threshold, so unseen genuine pairs just
        // beyond the training range are rejected: that is the published behaviour.
        let out = kfold_accuracy(&input, 4, Protocol::InsightFace).unwrap();
        assert!(out.mean > 0.8 && out.mean < 1.0, "{out:?}");
        assert!(kfold_accuracy(&input, 41, Protocol::Exact).is_err());
        assert!(kfold_accuracy(&input, 3, Protocol::FaceXZoo).is_err());
        let fz = kfold_accuracy(&input, 4, Protocol::FaceXZoo).unwrap();
        assert!(fz.mean > 0.8 && fz.mean <= 1.0, "{fz:?}");
    }

    #[test]
    fn explicit_folds_match_the_consecutive_split_and_follow_their_pairs() {
        let scores: Vec<f64> = (0..53).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
        let labels: Vec<u8> = (0..53).map(|i| u8::from((i * 7) % 3 == 0)).collect();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let plain = kfold_accuracy(&input, 5, Protocol::Exact).unwrap();
        let mut folds = vec![0i64; 53];
        for (f, r) in kfold_ranges(53, 5).into_iter().enumerate() {
            folds[r].iter_mut().for_each(|x| *x = f as i64);
        }
        let given = kfold_accuracy_with_folds(&input, 5, Protocol::Exact, Some(&folds)).unwrap();
        assert_eq!(plain, given);
        // Reversing the pairs together with their folds changes nothing.
        let (rs, rl, rf): (Vec<f64>, Vec<u8>, Vec<i64>) = (
            scores.iter().rev().copied().collect(),
            labels.iter().rev().copied().collect(),
            folds.iter().rev().copied().collect(),
        );
        let rev = BinaryScores::new("t", &rs, &rl, true).unwrap();
        assert_eq!(kfold_accuracy_with_folds(&rev, 5, Protocol::Exact, Some(&rf)).unwrap(), given);
        // Bad folds: out of range, an empty fold, another protocol.
        let mut bad = folds.clone();
        bad[0] = 5;
        assert!(kfold_accuracy_with_folds(&input, 5, Protocol::Exact, Some(&bad)).is_err());
        let empty: Vec<i64> = folds.iter().map(|&f| f.min(3)).collect();
        assert!(kfold_accuracy_with_folds(&input, 5, Protocol::Exact, Some(&empty)).is_err());
        assert!(kfold_accuracy_with_folds(&input, 5, Protocol::InsightFace, Some(&folds)).is_err());
    }
}
