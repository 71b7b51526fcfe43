//! Genuine and impostor scores as sorted order-preserving keys (one parallel sort, straight from
//! the scores), and the merge walk over them that yields one ROC point per distinct score with
//! exact integer counts (`tp`, `fp` = genuine / impostor scores `>=` that threshold).

use rayon::prelude::*;

use super::binary::BinaryScores;
use super::disjoint::Disjoint;
use super::keys::{KeyPair, Score, SortKey};
use super::radix::{sort_keys, split_sorted, Split};
use super::scratch;
use crate::error::Result;
use crate::threads;

/// Genuine and impostor scores as sorted (ascending) order-preserving keys, as wide as the scores
/// were (float32 scores sort as 32-bit keys: half the memory traffic of widening them).
pub struct SortedScores {
    keys: KeyPair,
    /// Whether either side may hold a run of [`super::radix::LONG_RUN`] equal keys or more.
    long_runs: bool,
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
    let (mut pos, mut neg) = (scratch::take::<S::Key>(n_pos), scratch::take::<S::Key>(n - n_pos));
    let mut starts = Vec::with_capacity(genuine.len());
    let (mut p, mut q) = (0, 0);
    for (c, &g) in genuine.iter().enumerate() {
        starts.push((p, q));
        p += g;
        q += (chunk_len * (c + 1)).min(n) - chunk_len * c - g;
    }
    let (out_pos, out_neg) = (Disjoint::new(pos.as_mut_ptr()), Disjoint::new(neg.as_mut_ptr()));
    scores.par_chunks(chunk_len).zip(labels.par_chunks(chunk_len)).zip(starts).for_each(|((s, l), (mut i, mut j))| {
        for (&x, &y) in s.iter().zip(l) {
            // SAFETY: chunk c writes pos[starts[c].0 ..][..its genuine count] and the matching
            // impostor range; the ranges are disjoint and cover both vectors exactly.
            unsafe {
                if y == 1 {
                    out_pos.write(i, x.key());
                    i += 1;
                } else {
                    out_neg.write(j, x.key());
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

impl SortedScores {
    /// Hands the keys back to the scratch pool with their pages returned to the kernel now: the
    /// report does this before it writes a large curve, so that the curve does not add to them.
    pub fn discard(mut self) {
        self.hand_back_keys(true);
    }

    /// Both key vectors to the scratch pool (with `discard`, their pages to the kernel now).
    fn hand_back_keys(&mut self, discard: bool) {
        match &mut self.keys {
            KeyPair::Wide { pos, neg } => [pos, neg].map(|v| scratch::hand_back(std::mem::take(v), discard)),
            KeyPair::Narrow { pos, neg } => [pos, neg].map(|v| scratch::hand_back(std::mem::take(v), discard)),
        };
    }

    /// Sorts in the mfr thread pool.
    pub fn new<S: Score>(input: &BinaryScores<'_, S>) -> Result<Self> {
        let (scores, labels) = (input.scores, input.labels);
        threads::install(|| {
            if scores.len() >= 1 << 16 {
                if let Split::Sorted(pos, neg, long_runs) = split_sorted(scores, labels) {
                    return Self::sorted(S::Key::pair(pos, neg), long_runs);
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
                Split::Sorted(pos, neg, long_runs) if !(need_both_classes && (pos.is_empty() || neg.is_empty())) => {
                    return Ok(Self::sorted(S::Key::pair(pos, neg), long_runs));
                }
                Split::TooMany => {
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
        let runs = rayon::join(|| sort_keys(&mut pos), || sort_keys(&mut neg));
        Self::sorted(S::Key::pair(pos, neg), runs.0 | runs.1)
    }

    /// Keys sorted ascending (each side), and whether either side holds a run of
    /// [`super::radix::LONG_RUN`] equal keys or more.
    fn sorted(keys: KeyPair, long_runs: bool) -> Self {
        SortedScores { keys, long_runs }
    }

    /// Whether either side may hold a run of [`super::radix::LONG_RUN`] equal keys or more (false:
    /// it holds none).
    pub(crate) fn long_runs(&self) -> bool {
        self.long_runs
    }

    pub fn n_pos(&self) -> u64 {
        match &self.keys {
            KeyPair::Wide { pos, .. } => pos.len() as u64,
            KeyPair::Narrow { pos, .. } => pos.len() as u64,
        }
    }

    pub fn n_neg(&self) -> u64 {
        match &self.keys {
            KeyPair::Wide { neg, .. } => neg.len() as u64,
            KeyPair::Narrow { neg, .. } => neg.len() as u64,
        }
    }

    /// The sorted keys themselves, for walks written for one key width.
    pub(crate) fn keys(&self) -> KeySlices<'_> {
        match &self.keys {
            KeyPair::Wide { pos, neg } => KeySlices::Wide(pos, neg),
            KeyPair::Narrow { pos, neg } => KeySlices::Narrow(pos, neg),
        }
    }

    /// ROC points by decreasing threshold, one per distinct score (the (0, 0) point at +inf excluded).
    pub fn points(&self) -> RocPoints<'_> {
        match &self.keys {
            KeyPair::Wide { pos, neg } => RocPoints::Wide(Walk::new(pos, neg)),
            KeyPair::Narrow { pos, neg } => RocPoints::Narrow(Walk::new(pos, neg)),
        }
    }
}

impl Drop for SortedScores {
    /// The keys go back to the scratch pool for the next sort.
    fn drop(&mut self) {
        self.hand_back_keys(false);
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
    pub(crate) fn new(pos: &'a [K], neg: &'a [K]) -> Self {
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
