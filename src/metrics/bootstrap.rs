//! Seeded bootstrap of verification metrics without re-sorting.
//!
//! Resampling n pairs with replacement only changes how often each pair counts, so every resample
//! is a *weighted* walk over one sorted order: draw the multiplicities, sum them per distinct score,
//! and feed the weighted ROC points to the same metric accumulators as the plain metrics (one
//! fused pass). Resampling by group (e.g. identity) draws group multiplicities instead and gives
//! each pair its group's. Resample `b` uses random stream `b` of the seed, so results do not depend
//! on the thread count.

use rayon::prelude::*;

use super::binary::{ordered_key, BinaryScores};
use super::roc::{validate_fars, Auc, BestAccuracy, Eer, RocPoint, SortedScores, TarAtFar};
use crate::error::{MfrError, Result};
use crate::rng::Rng;
use crate::threads;

const LABEL: u8 = 1;
const RUN_END: u8 = 2;

/// Pairs in decreasing score order; runs of equal score end where `RUN_END` is set.
pub struct ScoreRuns {
    /// Per position: `LABEL` bit (genuine) and `RUN_END` bit (last pair of its score).
    flags: Vec<u8>,
    /// Threshold of each run.
    thresholds: Vec<f64>,
    /// Group index of each position (empty when resampling pairs).
    groups: Vec<u32>,
    /// Per group: (genuine, impostor) pair counts.
    group_classes: Vec<(u64, u64)>,
}

impl ScoreRuns {
    /// From an existing sort (pair resampling): a merge of the genuine and impostor keys.
    pub fn from_sorted(sorted: &SortedScores) -> Self {
        let n = (sorted.n_pos() + sorted.n_neg()) as usize;
        let mut runs = ScoreRuns {
            flags: Vec::with_capacity(n),
            thresholds: Vec::new(),
            groups: Vec::new(),
            group_classes: Vec::new(),
        };
        let mut prev = (0u64, 0u64);
        for p in sorted.points() {
            let (dp, dn) = (p.tp - prev.0, p.fp - prev.1);
            runs.flags.extend(std::iter::repeat_n(LABEL, dp as usize));
            runs.flags.extend(std::iter::repeat_n(0u8, dn as usize));
            *runs.flags.last_mut().expect("a point has at least one pair") |= RUN_END;
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
        let mut group_classes = vec![(0u64, 0u64); distinct.len()];
        for (&g, &l) in gidx.iter().zip(input.labels) {
            let c = &mut group_classes[g as usize];
            if l == 1 {
                c.0 += 1
            } else {
                c.1 += 1
            }
        }
        let mut order: Vec<(u64, u32)> = threads::install(|| {
            input.scores.par_iter().enumerate().map(|(i, &s)| (ordered_key(s), i as u32)).collect()
        })?;
        threads::install(|| order.par_sort_unstable_by(|a, b| b.0.cmp(&a.0)))?;
        let mut runs = ScoreRuns {
            flags: Vec::with_capacity(n),
            thresholds: Vec::new(),
            groups: Vec::with_capacity(n),
            group_classes,
        };
        for (i, &(key, idx)) in order.iter().enumerate() {
            let idx = idx as usize;
            let end = i + 1 == n || order[i + 1].0 != key;
            runs.flags.push(input.labels[idx] | if end { RUN_END } else { 0 });
            runs.groups.push(gidx[idx]);
            if end {
                runs.thresholds.push(input.scores[idx]);
            }
        }
        Ok(runs)
    }

    /// Walks the runs with per-position weights, calling `visit` for every run that got weight.
    #[inline]
    fn walk(&self, weight: impl Fn(usize) -> u64, mut visit: impl FnMut(&RocPoint)) {
        let (mut tp, mut fp, mut wp, mut wn, mut run) = (0u64, 0u64, 0u64, 0u64, 0usize);
        for (i, &f) in self.flags.iter().enumerate() {
            let w = weight(i);
            let genuine = u64::from(f & LABEL);
            wp += w * genuine;
            wn += w * (1 - genuine);
            if f & RUN_END != 0 {
                if wp + wn > 0 {
                    tp += wp;
                    fp += wn;
                    visit(&RocPoint { threshold: self.thresholds[run], tp, fp });
                }
                (wp, wn) = (0, 0);
                run += 1;
            }
        }
    }
}

/// The metrics of one weighted walk: `[auc, eer, best_accuracy, tar@fars...]`.
fn metrics_row(
    runs: &ScoreRuns,
    weight: impl Fn(usize) -> u64,
    n_pos: u64,
    n_neg: u64,
    fars: &[f64],
) -> Result<Vec<f64>> {
    let width = 3 + fars.len();
    if n_pos == 0 || n_neg == 0 {
        return Ok(vec![f64::NAN; width]);
    }
    let (mut auc, mut eer, mut acc) = (Auc::default(), Eer::new(n_pos, n_neg), BestAccuracy::new(n_pos, n_neg));
    let mut tar = TarAtFar::new(n_pos, n_neg, fars)?;
    let (mut eer_done, mut tar_done) = (false, false);
    runs.walk(weight, |p| {
        auc.push(p);
        acc.push(p);
        if !eer_done {
            eer_done = eer.push(p);
        }
        if !tar_done {
            tar_done = tar.push(p);
        }
    });
    let mut row = Vec::with_capacity(width);
    row.push(auc.finish(n_pos, n_neg));
    row.push(eer.finish().0);
    row.push(acc.finish().0);
    row.extend(tar.finish().into_iter().map(|t| t.0));
    Ok(row)
}

/// Multiplicities of one pair resample: n draws with replacement. Counts live in a byte per pair
/// (the array stays cache-resident, which is what makes the scattered increments cheap); the
/// astronomically rare pair drawn 255+ times spills into `overflow`.
struct PairCounts {
    counts: Vec<u8>,
    overflow: std::collections::HashMap<usize, u64>,
}

impl PairCounts {
    fn draw(&mut self, rng: &mut Rng) {
        let n = self.counts.len();
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.overflow.clear();
        for _ in 0..n {
            let pos = rng.below(n as u64) as usize;
            let c = &mut self.counts[pos];
            if *c == u8::MAX {
                *self.overflow.entry(pos).or_insert(0) += 1;
            } else {
                *c += 1;
            }
        }
    }

    #[inline]
    fn weight(&self, i: usize) -> u64 {
        let c = self.counts[i];
        if c == u8::MAX {
            u64::from(c) + self.overflow.get(&i).copied().unwrap_or(0)
        } else {
            u64::from(c)
        }
    }
}

/// Per resample: `[auc, eer, best_accuracy, tar@fars[0], tar@fars[1], ...]` (row-major,
/// `n_resamples` rows). A resample lacking a class gives NaN throughout.
pub fn bootstrap(runs: &ScoreRuns, n_resamples: usize, seed: u64, fars: &[f64]) -> Result<Vec<f64>> {
    validate_fars("bootstrap", fars)?;
    let n = runs.flags.len();
    let n_groups = runs.group_classes.len();
    let by_pair = runs.groups.is_empty();
    let rows: Vec<Result<Vec<f64>>> = threads::install(|| {
        (0..n_resamples)
            .into_par_iter()
            .map_init(
                || {
                    let pairs =
                        PairCounts { counts: vec![0u8; if by_pair { n } else { 0 }], overflow: Default::default() };
                    (pairs, vec![0u64; if by_pair { 0 } else { n_groups }])
                },
                |(pairs, group_counts), b| {
                    let mut rng = Rng::new(seed, b as u64);
                    if by_pair {
                        pairs.draw(&mut rng);
                        let n_pos: u64 = (0..n).map(|i| pairs.weight(i) * u64::from(runs.flags[i] & LABEL)).sum();
                        metrics_row(runs, |i| pairs.weight(i), n_pos, n as u64 - n_pos, fars)
                    } else {
                        group_counts.iter_mut().for_each(|c| *c = 0);
                        for _ in 0..n_groups {
                            group_counts[rng.below(n_groups as u64) as usize] += 1;
                        }
                        let (n_pos, n_neg) = group_counts
                            .iter()
                            .zip(&runs.group_classes)
                            .fold((0, 0), |(p, q), (&c, &(gp, gn))| (p + c * gp, q + c * gn));
                        metrics_row(runs, |i| group_counts[runs.groups[i] as usize], n_pos, n_neg, fars)
                    }
                },
            )
            .collect()
    })?;
    let mut flat = Vec::with_capacity(n_resamples * (3 + fars.len()));
    for row in rows {
        flat.extend(row?);
    }
    Ok(flat)
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
        let fars = [0.01, 0.1];
        let expected = {
            let mut row = vec![roc::roc_auc(&sorted), roc::eer(&sorted).0, roc::best_accuracy(&sorted).0];
            row.extend(roc::tar_at_far(&sorted, &fars).unwrap().into_iter().map(|t| t.0));
            row
        };
        for runs in [ScoreRuns::from_sorted(&sorted), ScoreRuns::with_groups(&input, &vec![0; 2000]).unwrap()] {
            let mut points = Vec::new();
            runs.walk(|_| 1, |p| points.push(*p));
            assert_eq!(points, sorted.points().collect::<Vec<_>>());
            let row = metrics_row(&runs, |_| 1, sorted.n_pos(), sorted.n_neg(), &fars).unwrap();
            assert_eq!(row, expected);
        }
    }

    #[test]
    fn byte_counts_spill_over_exactly() {
        let mut c = PairCounts { counts: vec![0; 3], overflow: Default::default() };
        c.counts[1] = u8::MAX;
        c.overflow.insert(1, 7);
        assert_eq!((c.weight(0), c.weight(1)), (0, 262));
        let mut rng = Rng::new(0, 0);
        let mut one = PairCounts { counts: vec![0; 1], overflow: Default::default() };
        one.draw(&mut rng);
        assert_eq!(one.weight(0), 1);
        // A resample holds exactly n draws.
        let mut many = PairCounts { counts: vec![0; 300], overflow: Default::default() };
        many.draw(&mut rng);
        assert_eq!((0..300).map(|i| many.weight(i)).sum::<u64>(), 300);
    }

    #[test]
    fn resamples_are_seeded_and_thread_independent() {
        let (scores, labels) = data();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let runs = ScoreRuns::from_sorted(&SortedScores::new(&input).unwrap());
        let run_with = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| bootstrap(&runs, 50, 9, &[0.01]).unwrap())
        };
        let (one, three) = (run_with(1), run_with(3));
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
