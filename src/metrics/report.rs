//! The verification report as one typed result: the curve, AUC, EER, TAR at the requested FARs and
//! the best accuracy from one sort ([`super::summary`]), and their bootstrap resamples
//! ([`super::bootstrap`]) over pairs or over groups, each statistic a named column.

use super::binary::BinaryScores;
use super::bootstrap::{bootstrap, Groups, ScoreRuns};
use super::sorted::SortedScores;
use super::summary::{summarize, Summary};
use crate::error::Result;

/// The ROC curve as sklearn's `roc_curve` gives it (intermediate collinear points dropped).
pub struct Curve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    pub thresholds: Vec<f64>,
}

/// Bootstrap resamples, one column per statistic: entry `b` of each is resample `b` (NaN where the
/// resample lacks a class).
#[derive(Default)]
pub struct Resamples {
    pub auc: Vec<f64>,
    pub eer: Vec<f64>,
    pub accuracy: Vec<f64>,
    /// TAR at each requested FAR: row-major, `auc.len()` rows of `n_fars` values.
    pub tar: Vec<f64>,
    pub n_fars: usize,
}

impl Resamples {
    /// Columns from [`bootstrap`]'s rows `[auc, eer, best_accuracy, tar@fars...]`: the one place
    /// that knows that order.
    fn from_rows(rows: &[f64], n_fars: usize) -> Self {
        let width = 3 + n_fars;
        let mut out = Resamples { n_fars, ..Resamples::default() };
        for row in rows.chunks_exact(width) {
            out.auc.push(row[0]);
            out.eer.push(row[1]);
            out.accuracy.push(row[2]);
            out.tar.extend_from_slice(&row[3..]);
        }
        out
    }

    pub fn len(&self) -> usize {
        self.auc.len()
    }

    pub fn is_empty(&self) -> bool {
        self.auc.is_empty()
    }
}

/// Everything a verification report shows.
pub struct Report {
    pub curve: Curve,
    pub auc: f64,
    /// `(rate, threshold)`.
    pub eer: (f64, f64),
    /// Per requested FAR, `(tar, threshold)`.
    pub tar_at_far: Vec<(f64, f64)>,
    /// `(accuracy, threshold)`.
    pub best_accuracy: (f64, f64),
    pub n_genuine: u64,
    pub n_impostor: u64,
    pub resamples: Resamples,
}

/// What the bootstrap resamples: nothing, the pairs, or groups of pairs (the group bootstrap
/// keys its own sort by the float64 scores in `input`, float32 scores widened exactly).
pub enum Resampling<'a> {
    None,
    Pairs { n: usize, seed: u64 },
    Groups { n: usize, seed: u64, input: BinaryScores<'a, f64>, groups: Groups<'a> },
}

/// The report of `sorted` at `fars`, resampled as `resampling` says.
pub fn verification_report(sorted: SortedScores, fars: &[f64], resampling: Resampling<'_>) -> Result<Report> {
    let (n_genuine, n_impostor) = (sorted.n_pos(), sorted.n_neg());
    // The resamples' runs first: the summary takes the sorted keys (and frees them early).
    let (runs, n, seed) = match resampling {
        Resampling::None => (None, 0, 0),
        Resampling::Pairs { n, seed } => (Some(ScoreRuns::from_sorted(&sorted)), n, seed),
        Resampling::Groups { n, seed, input, groups } => (Some(ScoreRuns::with_groups(&input, &groups)?), n, seed),
    };
    let Summary { curve: (fpr, tpr, thresholds), auc, eer, tar_at_far, best_accuracy } = summarize(sorted, fars, true)?;
    let resamples = match runs {
        Some(runs) if n > 0 => Resamples::from_rows(&bootstrap(&runs, n, seed, fars)?, fars.len()),
        _ => Resamples { n_fars: fars.len(), ..Resamples::default() },
    };
    Ok(Report {
        curve: Curve { fpr, tpr, thresholds },
        auc,
        eer,
        tar_at_far,
        best_accuracy,
        n_genuine,
        n_impostor,
        resamples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_rows_statistics_in_order() {
        let rows = [0.9, 0.1, 0.8, 0.5, 0.6, 0.7, 0.2, 0.75, 0.4, 0.45];
        let r = Resamples::from_rows(&rows, 2);
        assert_eq!((r.auc, r.eer, r.accuracy), (vec![0.9, 0.7], vec![0.1, 0.2], vec![0.8, 0.75]));
        assert_eq!((r.tar, r.n_fars), (vec![0.5, 0.6, 0.4, 0.45], 2));
    }

    #[test]
    fn the_report_resamples_as_asked() {
        let scores: Vec<f64> = (0..400).map(|i| ((i * 37) % 101) as f64 / 101.0).collect();
        let labels: Vec<u8> = (0..400).map(|i| u8::from(i % 4 == 0)).collect();
        let ids: Vec<i64> = (0..400).map(|i| i % 20).collect();
        let input = BinaryScores::new("t", &scores, &labels, true).unwrap();
        let sorted = || SortedScores::new(&input).unwrap();
        let plain = verification_report(sorted(), &[0.1], Resampling::None).unwrap();
        assert!(plain.resamples.is_empty() && (plain.n_genuine, plain.n_impostor) == (100, 300));
        let pairs = verification_report(sorted(), &[0.1], Resampling::Pairs { n: 7, seed: 3 }).unwrap();
        assert_eq!((pairs.resamples.len(), pairs.resamples.tar.len()), (7, 7));
        assert_eq!(pairs.auc, plain.auc);
        let groups = Groups { first: &ids, second: None, n_groups: None };
        let by_group =
            verification_report(sorted(), &[0.1, 0.2], Resampling::Groups { n: 5, seed: 3, input, groups }).unwrap();
        assert_eq!((by_group.resamples.len(), by_group.resamples.tar.len()), (5, 10));
        assert!(by_group.resamples.auc.iter().all(|a| (0.0..=1.0).contains(a)));
    }
}
