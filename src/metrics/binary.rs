//! Validated binary-classification input: similarity scores (higher = same identity) and 0/1 labels.

use rayon::prelude::*;

use super::keys::Score;
use crate::error::{MfrError, Result};

/// Scores and labels that passed the checks every verification metric needs.
#[derive(Clone, Copy, Debug)]
pub struct BinaryScores<'a, S = f64> {
    pub scores: &'a [S],
    pub labels: &'a [u8],
    pub n_pos: usize,
    pub n_neg: usize,
}

impl<'a, S: Score> BinaryScores<'a, S> {
    /// Checks lengths, finiteness and label values; with `need_both_classes`, that both classes occur.
    pub fn new(func: &str, scores: &'a [S], labels: &'a [u8], need_both_classes: bool) -> Result<Self> {
        if scores.len() != labels.len() {
            return Err(MfrError::invalid(
                func,
                format!("scores and labels must have the same length, got {} and {}", scores.len(), labels.len()),
            ));
        }
        if scores.is_empty() {
            return Err(MfrError::invalid(func, "scores and labels must not be empty"));
        }
        // One parallel read of each array; the first bad index is looked up only on failure.
        let (bad_score, (bad_label, n_pos)) = crate::threads::install(|| {
            rayon::join(
                || scores.par_iter().any(|s| !s.is_finite()),
                || (labels.par_iter().any(|&l| l > 1), labels.par_iter().map(|&l| l as usize).sum::<usize>()),
            )
        })?;
        if bad_score {
            let i = scores.iter().position(|s| !s.is_finite()).unwrap_or(0);
            return Err(MfrError::invalid(func, format!("scores must be finite, got {} at index {i}", scores[i])));
        }
        if bad_label {
            let i = labels.iter().position(|&l| l > 1).unwrap_or(0);
            return Err(MfrError::invalid(
                func,
                format!("labels must be 0/1 or bool, got value {} at index {i}", labels[i]),
            ));
        }
        let n_neg = labels.len() - n_pos;
        if need_both_classes && (n_pos == 0 || n_neg == 0) {
            let (have, missing) =
                if n_pos == 0 { ("impostor", "genuine (label 1)") } else { ("genuine", "impostor (label 0)") };
            return Err(MfrError::invalid(
                func,
                format!(
                    "needs both genuine and impostor pairs, but all {} labels are {have}: no {missing} pairs, so the metric is undefined",
                    labels.len()
                ),
            ));
        }
        Ok(BinaryScores { scores, labels, n_pos, n_neg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages() {
        let e = BinaryScores::new("roc_curve", &[0.1, 0.2], &[0, 2], true).unwrap_err();
        assert_eq!(e.to_string(), "roc_curve: labels must be 0/1 or bool, got value 2 at index 1");
        let e = BinaryScores::new("auc", &[0.1, f64::NAN], &[0, 1], true).unwrap_err();
        assert!(e.to_string().contains("scores must be finite, got NaN at index 1"));
        let e = BinaryScores::new("auc", &[0.1], &[0, 1], true).unwrap_err();
        assert!(e.to_string().contains("same length, got 1 and 2"));
        let e = BinaryScores::new("eer", &[0.1, 0.3], &[1, 1], true).unwrap_err();
        assert!(e.to_string().contains("no impostor (label 0) pairs"), "{e}");
        assert!(BinaryScores::<f64>::new("x", &[], &[], false).is_err());
        let ok = BinaryScores::new("x", &[0.1, 0.3, 0.2], &[1, 0, 1], true).unwrap();
        assert_eq!((ok.n_pos, ok.n_neg), (2, 1));
    }
}
