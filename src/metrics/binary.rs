//! Validated binary-classification input: similarity scores (higher = same identity) and 0/1 labels.

use rayon::prelude::*;

use super::roc::SortedScores;
use crate::error::{MfrError, Result};

/// A score type the metrics take as it comes (float64, or float32 without widening): its
/// order-preserving integer key is as wide as the score, so float32 scores sort as 32-bit keys.
pub trait Score: Copy + Send + Sync + std::fmt::Display + 'static {
    type Key: SortKey;
    fn is_finite(self) -> bool;
    /// The order-preserving key of a finite score (-0.0 and 0.0 share one).
    fn key(self) -> Self::Key;
}

/// An order-preserving key of a finite score: never 0 (0 marks an exhausted side in the ROC walk).
pub trait SortKey: Copy + Ord + Default + Send + Sync + 'static {
    const BITS: u32;
    const MAX: Self;
    fn to_u64(self) -> u64;
    /// The key whose [`SortKey::to_u64`] is `k`.
    fn from_u64(k: u64) -> Self;
    /// The score the key came from, as float64 (exact for both widths).
    fn value(self) -> f64;
    /// Sorted genuine and impostor keys of this width, as the metrics hold them.
    fn sorted(pos: Vec<Self>, neg: Vec<Self>) -> SortedScores;
}

impl Score for f64 {
    type Key = u64;
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    #[inline]
    fn key(self) -> u64 {
        ordered_key(self)
    }
}

impl Score for f32 {
    type Key = u32;
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    #[inline]
    fn key(self) -> u32 {
        let x = if self == 0.0 { 0.0 } else { self };
        let bits = x.to_bits();
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        }
    }
}

impl SortKey for u64 {
    const BITS: u32 = 64;
    const MAX: u64 = u64::MAX;
    #[inline]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline]
    fn from_u64(k: u64) -> u64 {
        k
    }
    #[inline]
    fn value(self) -> f64 {
        key_value(self)
    }
    fn sorted(pos: Vec<u64>, neg: Vec<u64>) -> SortedScores {
        SortedScores::wide(pos, neg)
    }
}

impl SortKey for u32 {
    const BITS: u32 = 32;
    const MAX: u32 = u32::MAX;
    #[inline]
    fn to_u64(self) -> u64 {
        self as u64
    }
    #[inline]
    fn from_u64(k: u64) -> u32 {
        k as u32
    }
    #[inline]
    fn value(self) -> f64 {
        let bits = if self >> 31 == 1 { self & !(1 << 31) } else { !self };
        f32::from_bits(bits) as f64
    }
    fn sorted(pos: Vec<u32>, neg: Vec<u32>) -> SortedScores {
        SortedScores::narrow(pos, neg)
    }
}

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

/// Order-preserving map from a finite f64 to u64 (`a < b` iff `key(a) < key(b)`; -0.0 and 0.0 map
/// to one key, as they compare equal).
#[inline]
pub fn ordered_key(x: f64) -> u64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Inverse of [`ordered_key`].
#[inline]
pub fn key_value(key: u64) -> f64 {
    let bits = if key >> 63 == 1 { key & !(1 << 63) } else { !key };
    f64::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_float_order() {
        let xs = [-1e300, -2.5, -1.0, -f64::MIN_POSITIVE, -0.0, 0.0, 5e-324, 0.5, 1.0, 1e300];
        for w in xs.windows(2) {
            assert!(ordered_key(w[0]) <= ordered_key(w[1]), "{w:?}");
            assert_eq!(key_value(ordered_key(w[1])), w[1]);
        }
        assert_eq!(ordered_key(-0.0), ordered_key(0.0));
        let ys = [f32::MIN, -2.5, -1.0, -f32::MIN_POSITIVE, -0.0, 0.0, 1e-45, 0.5, 1.0, f32::MAX];
        for w in ys.windows(2) {
            assert!(w[0].key() <= w[1].key(), "{w:?}");
            assert!(w[1].key() != 0);
            assert_eq!(w[1].key().value(), w[1] as f64);
        }
        assert_eq!((-0.0f32).key(), 0.0f32.key());
    }

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
