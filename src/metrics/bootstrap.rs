//! Seeded bootstrap of verification metrics without re-sorting.
//!
//! Resampling n pairs with replacement only changes how often each pair counts, so every resample
//! is a *weighted* walk over one sorted order: draw the multiplicities, sum them per distinct score,
//! and read AUC, EER, best accuracy and TAR@FAR off the weighted ROC points. Resampling by group
//! (e.g. identity) draws group multiplicities instead and gives each pair its group's. Resample `b`
//! uses random stream `b` of the seed, so results do not depend on the thread count.

use rayon::prelude::*;

use super::binary::{ordered_key, BinaryScores};
use super::roc::{
    auc_of_points, best_accuracy_of_points, eer_of_points, tar_of_points, validate_fars, RocPoint, SortedScores,
};
use crate::error::{MfrError, Result};
use crate::rng::Rng;
use crate::threads;

/// Pairs in decreasing score order, cut into runs of equal score.
pub struct ScoreRuns {
    labels: Vec<u8>,
    /// Group index of each position (empty when resampling pairs).
    groups: Vec<u32>,
    n_groups: usize,
    /// `bounds[r]..bounds[r + 1]` are the positions of run `r`.
    bounds: Vec<usize>,
    thresholds: Vec<f64>,
}

impl ScoreRuns {
    /// From an existing sort (pair resampling): a merge of the genuine and impostor keys.
    pub fn from_sorted(sorted: &SortedScores) -> Self {
        let mut runs =
            ScoreRuns { labels: Vec::new(), groups: Vec::new(), n_groups: 0, bounds: vec![0], thresholds: Vec::new() };
        let mut prev = (0u64, 0u64);
        for p in sorted.points() {
            let (dp, dn) = (p.tp - prev.0, p.fp - prev.1);
            runs.labels.extend(std::iter::repeat_n(1u8, dp as usize));
            runs.labels.extend(std::iter::repeat_n(0u8, dn as usize));
            runs.bounds.push(runs.labels.len());
            runs.thresholds.push(p.threshold);
            prev = (p.tp, p.fp);
        }
        runs
    }

    /// With a group per pair (group resampling); `groups` are arbitrary integers.
    pub fn with_groups(input: &BinaryScores<'_>, groups: &[i64]) -> Result<Self> {
        let n = input.scores.len();
        if groups.len() != n {
            return Err(MfrError::invalid(
                "bootstrap",
                format!("groups must have one entry per pair ({n}), got {}", groups.len()),
            ));
        }
        let mut distinct: Vec<i64> = groups.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let gidx: Vec<u32> = groups.iter().map(|g| distinct.binary_search(g).expect("present") as u32).collect();
        let mut order: Vec<(u64, u32)> = threads::install(|| {
            input.scores.par_iter().enumerate().map(|(i, &s)| (ordered_key(s), i as u32)).collect()
        })?;
        threads::install(|| order.par_sort_unstable_by(|a, b| b.0.cmp(&a.0)))?;
        let mut runs = ScoreRuns {
            labels: Vec::with_capacity(n),
            groups: Vec::with_capacity(n),
            n_groups: distinct.len(),
            bounds: vec![0],
            thresholds: Vec::new(),
        };
        let mut i = 0;
        while i < n {
            let key = order[i].0;
            while i < n && order[i].0 == key {
                let idx = order[i].1 as usize;
                runs.labels.push(input.labels[idx]);
                runs.groups.push(gidx[idx]);
                i += 1;
            }
            runs.bounds.push(i);
            runs.thresholds.push(input.scores[order[i - 1].1 as usize]);
        }
        Ok(runs)
    }

    fn weighted_points(&self, weights: &[u32]) -> (Vec<RocPoint>, u64, u64) {
        let mut points = Vec::with_capacity(self.thresholds.len());
        let (mut tp, mut fp) = (0u64, 0u64);
        for (r, w) in self.bounds.windows(2).enumerate() {
            let (mut wp, mut wn) = (0u64, 0u64);
            for (&wt, &label) in weights[w[0]..w[1]].iter().zip(&self.labels[w[0]..w[1]]) {
                if label == 1 {
                    wp += u64::from(wt)
                } else {
                    wn += u64::from(wt)
                }
            }
            if wp + wn > 0 {
                tp += wp;
                fp += wn;
                points.push(RocPoint { threshold: self.thresholds[r], tp, fp });
            }
        }
        (points, tp, fp)
    }
}

/// Per resample: `[auc, eer, best_accuracy, tar@fars[0], tar@fars[1], ...]` (row-major,
/// `n_resamples` rows). A resample lacking a class gives NaN throughout.
pub fn bootstrap(runs: &ScoreRuns, n_resamples: usize, seed: u64, fars: &[f64]) -> Result<Vec<f64>> {
    validate_fars("bootstrap", fars)?;
    let n = runs.labels.len();
    let width = 3 + fars.len();
    let rows: Vec<Vec<f64>> = threads::install(|| {
        (0..n_resamples)
            .into_par_iter()
            .map_init(
                || (vec![0u32; n], vec![0u32; runs.n_groups]),
                |(weights, group_counts), b| {
                    let mut rng = Rng::new(seed, b as u64);
                    if runs.groups.is_empty() {
                        weights.iter_mut().for_each(|w| *w = 0);
                        for _ in 0..n {
                            weights[rng.below(n as u64) as usize] += 1;
                        }
                    } else {
                        group_counts.iter_mut().for_each(|c| *c = 0);
                        for _ in 0..runs.n_groups {
                            group_counts[rng.below(runs.n_groups as u64) as usize] += 1;
                        }
                        for (w, &g) in weights.iter_mut().zip(&runs.groups) {
                            *w = group_counts[g as usize];
                        }
                    }
                    let (points, n_pos, n_neg) = runs.weighted_points(weights);
                    if n_pos == 0 || n_neg == 0 {
                        return vec![f64::NAN; width];
                    }
                    let mut row = Vec::with_capacity(width);
                    row.push(auc_of_points(points.iter().copied(), n_pos, n_neg));
                    row.push(eer_of_points(points.iter().copied(), n_pos, n_neg).0);
                    row.push(best_accuracy_of_points(points.iter().copied(), n_pos, n_neg).0);
                    row.extend(tar_of_points(points.iter().copied(), n_pos, n_neg, fars).into_iter().map(|t| t.0));
                    row
                },
            )
            .collect()
    })?;
    Ok(rows.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc;

    fn data() -> (Vec<f64>, Vec<u8>) {
        let mut rng = Rng::new(3, 0);
        let labels: Vec<u8> = (0..2000).map(|_| (rng.below(3) == 0) as u8).collect();
        let scores: Vec<f64> =
            labels.iter().map(|&l| (rng.below(100) as f64 + 40.0 * l as f64).round() / 100.0).collect();
        (scores, labels)
    }

    #[test]
    fn unit_weights_reproduce_the_plain_metrics() {
        let (scores, labels) = data();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let sorted = SortedScores::new(&input).unwrap();
        for runs in [ScoreRuns::from_sorted(&sorted), ScoreRuns::with_groups(&input, &vec![0; 2000]).unwrap()] {
            let (points, p, n) = runs.weighted_points(&vec![1; 2000]);
            assert_eq!(points, sorted.points().collect::<Vec<_>>());
            assert_eq!(auc_of_points(points.iter().copied(), p, n), roc::roc_auc(&sorted));
        }
    }

    #[test]
    fn resamples_are_seeded_and_thread_independent() {
        let (scores, labels) = data();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let runs = ScoreRuns::from_sorted(&SortedScores::new(&input).unwrap());
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| bootstrap(&runs, 50, 9, &[0.01]).unwrap());
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| bootstrap(&runs, 50, 9, &[0.01]).unwrap());
        assert_eq!(one.len(), 50 * 4);
        assert_eq!(
            one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            three.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        let other_seed = bootstrap(&runs, 50, 10, &[0.01]).unwrap();
        assert_ne!(one[0], other_seed[0]);
        let auc = roc::roc_auc(&SortedScores::new(&input).unwrap());
        let mean: f64 = one.chunks(4).map(|r| r[0]).sum::<f64>() / 50.0;
        assert!((mean - auc).abs() < 0.02, "{mean} vs {auc}");
    }
}
