//! Seeded bootstrap of verification metrics without re-sorting.
//!
//! Resampling n pairs with replacement only changes how often each pair counts, so every resample
//! is a *weighted* walk over one sorted order: draw the multiplicities, sum them per distinct score,
//! and feed the weighted ROC points to the same metric accumulators as the plain metrics (one
//! fused pass). Resampling by group (e.g. identity) draws group multiplicities instead and gives
//! each pair its group's; with two groups per pair (two-way, for impostor pairs of two identities)
//! a pair of two different groups counts `w_a * w_b` times (every copy of one identity meets every
//! copy of the other) and a pair within one group `w_a` times. Resample `b` uses random stream `b`
//! of the seed, so results do not depend on the thread count, and resamples with the same seed and
//! the same group universe draw the same multiplicities: that is what makes paired comparisons
//! (two methods, or several seeds, scored over the same identities) possible.

use rayon::prelude::*;

use super::binary::BinaryScores;
use super::keys::ordered_key;
use super::roc::{validate_fars, Auc, BestAccuracy, Eer, TarAtFar};
use super::sorted::{RocPoint, SortedScores};
use crate::error::{MfrError, Result};
use crate::rng::Rng;
use crate::threads;

const LABEL: u8 = 1;
const RUN_END: u8 = 2;

/// Resampling groups of the pairs: `first[i]` (and, two-way, `second[i]`) for pair `i`.
/// With `n_groups`, groups are numbers in `0..n_groups` and a resample draws `n_groups` of them,
/// so pair sets over the same universe share draws; without, the distinct values present are.
pub struct Groups<'a> {
    pub first: &'a [i64],
    pub second: Option<&'a [i64]>,
    pub n_groups: Option<usize>,
}

/// Pairs in decreasing score order; runs of equal score end where `RUN_END` is set.
pub struct ScoreRuns {
    /// Per position: `LABEL` bit (genuine) and `RUN_END` bit (last pair of its score).
    flags: Vec<u8>,
    /// Threshold of each run.
    thresholds: Vec<f64>,
    /// Group index of each position (empty when resampling pairs).
    groups: Vec<u32>,
    /// Second group index of each position (empty unless two-way).
    groups2: Vec<u32>,
    /// Per group: (genuine, impostor) pair counts (one-way only).
    group_classes: Vec<(u64, u64)>,
    /// Size of the group universe.
    n_groups: usize,
}

impl ScoreRuns {
    /// From an existing sort (pair resampling): a merge of the genuine and impostor keys.
    pub fn from_sorted(sorted: &SortedScores) -> Self {
        let n = (sorted.n_pos() + sorted.n_neg()) as usize;
        let mut runs = ScoreRuns {
            flags: Vec::with_capacity(n),
            thresholds: Vec::new(),
            groups: Vec::new(),
            groups2: Vec::new(),
            group_classes: Vec::new(),
            n_groups: 0,
        };
        let mut prev = (0u64, 0u64);
        sorted.points().for_each(|p| {
            let (dp, dn) = (p.tp - prev.0, p.fp - prev.1);
            runs.flags.extend(std::iter::repeat_n(LABEL, dp as usize));
            runs.flags.extend(std::iter::repeat_n(0u8, dn as usize));
            *runs.flags.last_mut().expect("a point has at least one pair") |= RUN_END;
            runs.thresholds.push(p.threshold);
            prev = (p.tp, p.fp);
        });
        runs
    }

    /// With groups per pair (group resampling); see [`Groups`].
    pub fn with_groups(input: &BinaryScores<'_>, groups: &Groups<'_>) -> Result<Self> {
        const F: &str = "bootstrap";
        let n = input.scores.len();
        for (name, col) in std::iter::once(("groups", groups.first)).chain(groups.second.map(|c| ("groups[:, 1]", c))) {
            if col.len() != n {
                return Err(MfrError::invalid(
                    F,
                    format!("{name} must have one entry per pair ({n}), got {}", col.len()),
                ));
            }
        }
        let (gidx, gidx2, n_groups): (Vec<u32>, Vec<u32>, usize) = match groups.n_groups {
            Some(universe) => {
                if universe == 0 || universe > u32::MAX as usize {
                    return Err(MfrError::invalid(
                        F,
                        format!("n_groups must lie in [1, {}], got {universe}", u32::MAX),
                    ));
                }
                let check = |col: &[i64]| -> Result<Vec<u32>> {
                    col.iter()
                        .enumerate()
                        .map(|(i, &g)| {
                            if g < 0 || g as u64 >= universe as u64 {
                                Err(MfrError::invalid(
                                    F,
                                    format!("groups must lie in [0, n_groups = {universe}), got {g} at pair {i}"),
                                ))
                            } else {
                                Ok(g as u32)
                            }
                        })
                        .collect()
                };
                (check(groups.first)?, groups.second.map(check).transpose()?.unwrap_or_default(), universe)
            }
            None => {
                let mut distinct: Vec<i64> = groups.first.iter().chain(groups.second.unwrap_or(&[])).copied().collect();
                distinct.sort_unstable();
                distinct.dedup();
                let map = |col: &[i64]| -> Vec<u32> {
                    col.iter().map(|g| distinct.binary_search(g).expect("present") as u32).collect()
                };
                (map(groups.first), groups.second.map(map).unwrap_or_default(), distinct.len())
            }
        };
        let mut group_classes = Vec::new();
        if gidx2.is_empty() {
            group_classes = vec![(0u64, 0u64); n_groups];
            for (&g, &l) in gidx.iter().zip(input.labels) {
                let c = &mut group_classes[g as usize];
                if l == 1 {
                    c.0 += 1
                } else {
                    c.1 += 1
                }
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
            groups2: Vec::with_capacity(gidx2.len()),
            group_classes,
            n_groups,
        };
        for (i, &(key, idx)) in order.iter().enumerate() {
            let idx = idx as usize;
            let end = i + 1 == n || order[i + 1].0 != key;
            runs.flags.push(input.labels[idx] | if end { RUN_END } else { 0 });
            runs.groups.push(gidx[idx]);
            if !gidx2.is_empty() {
                runs.groups2.push(gidx2[idx]);
            }
            if end {
                runs.thresholds.push(input.scores[idx]);
            }
        }
        Ok(runs)
    }

    /// Weight of position `i` under group multiplicities `counts`.
    #[inline]
    fn group_weight(&self, counts: &[u64], i: usize) -> u64 {
        let a = self.groups[i];
        match self.groups2.get(i) {
            Some(&b) if b != a => counts[a as usize] * counts[b as usize],
            _ => counts[a as usize],
        }
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
    let n_groups = runs.n_groups;
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
                        draw_group_counts(&mut rng, group_counts);
                        let (n_pos, n_neg) = if runs.groups2.is_empty() {
                            group_counts
                                .iter()
                                .zip(&runs.group_classes)
                                .fold((0, 0), |(p, q), (&c, &(gp, gn))| (p + c * gp, q + c * gn))
                        } else {
                            (0..n).fold((0, 0), |(p, q), i| {
                                let w = runs.group_weight(group_counts, i);
                                if runs.flags[i] & LABEL != 0 {
                                    (p + w, q)
                                } else {
                                    (p, q + w)
                                }
                            })
                        };
                        metrics_row(runs, |i| runs.group_weight(group_counts, i), n_pos, n_neg, fars)
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

/// One resample's group multiplicities: `counts.len()` draws with replacement (stream `b` of the
/// seed is `Rng::new(seed, b)`).
pub fn draw_group_counts(rng: &mut Rng, counts: &mut [u64]) {
    let n = counts.len();
    counts.iter_mut().for_each(|c| *c = 0);
    for _ in 0..n {
        counts[rng.below(n as u64) as usize] += 1;
    }
}

/// The multiplicities every group resample `b < n_resamples` of `seed` uses for a universe of
/// `n_groups` groups, row-major: other statistics over the same identities (e.g. rank-1) can be
/// resampled with exactly the draws of the verification metrics.
pub fn group_counts(n_groups: usize, n_resamples: usize, seed: u64) -> Vec<u64> {
    let mut out = vec![0u64; n_groups * n_resamples];
    if n_groups > 0 {
        for (b, row) in out.chunks_mut(n_groups).enumerate() {
            draw_group_counts(&mut Rng::new(seed, b as u64), row);
        }
    }
    out
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
        for runs in [
            ScoreRuns::from_sorted(&sorted),
            ScoreRuns::with_groups(&input, &Groups { first: &[0; 2000], second: None, n_groups: None }).unwrap(),
        ] {
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

    /// Two-way resamples equal the plain metrics of the pairs repeated by their weights.
    #[test]
    fn two_way_resamples_match_expanded_pairs() {
        let (scores, labels) = data();
        let mut rng = Rng::new(5, 0);
        let n_groups = 30;
        let first: Vec<i64> = (0..scores.len()).map(|_| rng.below(n_groups) as i64).collect();
        let second: Vec<i64> = first
            .iter()
            .zip(&labels)
            .map(|(&a, &l)| if l == 1 { a } else { (a + 1 + rng.below(n_groups - 1) as i64) % n_groups as i64 })
            .collect();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let groups = Groups { first: &first, second: Some(&second), n_groups: Some(n_groups as usize) };
        let runs = ScoreRuns::with_groups(&input, &groups).unwrap();
        let rows = bootstrap(&runs, 4, 11, &[0.1]).unwrap();
        let counts = group_counts(n_groups as usize, 4, 11);
        for b in 0..4 {
            let w = &counts[b * n_groups as usize..(b + 1) * n_groups as usize];
            let (mut s, mut l) = (Vec::new(), Vec::new());
            for i in 0..scores.len() {
                let (a, c) = (first[i] as usize, second[i] as usize);
                let times = if a == c { w[a] } else { w[a] * w[c] };
                s.extend(std::iter::repeat_n(scores[i], times as usize));
                l.extend(std::iter::repeat_n(labels[i], times as usize));
            }
            let expanded = BinaryScores::new("t", &s, &l, true).unwrap();
            let sorted = SortedScores::new(&expanded).unwrap();
            let row = &rows[b * 4..(b + 1) * 4];
            assert!((row[0] - roc::roc_auc(&sorted)).abs() < 1e-12, "{} vs {}", row[0], roc::roc_auc(&sorted));
            assert!((row[1] - roc::eer(&sorted).0).abs() < 1e-12);
            assert!((row[3] - roc::tar_at_far(&sorted, &[0.1]).unwrap()[0].0).abs() < 1e-12);
        }
        // Out-of-universe groups are refused.
        let bad = Groups { first: &first, second: Some(&second), n_groups: Some(3) };
        assert!(ScoreRuns::with_groups(&input, &bad).is_err());
    }

    /// One-way resamples over an explicit universe draw the same multiplicities for two pair sets.
    #[test]
    fn same_universe_same_draws() {
        let (scores, labels) = data();
        let first: Vec<i64> = (0..scores.len() as i64).map(|i| i % 7).collect();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let whole = ScoreRuns::with_groups(&input, &Groups { first: &first, second: None, n_groups: Some(9) }).unwrap();
        // A subset of the pairs missing groups 0..3 still draws over all 9 groups.
        let keep: Vec<usize> = (0..scores.len()).filter(|&i| first[i] >= 3).collect();
        let (s2, l2, g2): (Vec<f64>, Vec<u8>, Vec<i64>) = (
            keep.iter().map(|&i| scores[i]).collect(),
            keep.iter().map(|&i| labels[i]).collect(),
            keep.iter().map(|&i| first[i]).collect(),
        );
        let part = BinaryScores::new("t", &s2, &l2, true).unwrap();
        let runs = ScoreRuns::with_groups(&part, &Groups { first: &g2, second: None, n_groups: Some(9) }).unwrap();
        assert_eq!((whole.n_groups, runs.n_groups), (9, 9));
        let counts = group_counts(9, 3, 4);
        let mut rng = Rng::new(4, 2);
        let mut row = vec![0u64; 9];
        draw_group_counts(&mut rng, &mut row);
        assert_eq!(&counts[18..27], &row[..]);
        assert_eq!(counts.iter().sum::<u64>(), 27);
    }
}
