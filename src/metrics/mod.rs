//! Verification metrics and the similarity scores they read.

pub mod binary;
pub mod bootstrap;
pub mod cosine;
pub mod identification;
pub mod kfold;
pub mod radix;
pub mod roc;
pub mod summary;

pub use binary::{BinaryScores, Score, SortKey};
pub use bootstrap::{bootstrap, group_counts, Groups, ScoreRuns};
pub use cosine::{cosine_scores, pair_scores};
pub use identification::{identification, Identification};
pub use kfold::{kfold_accuracy, kfold_accuracy_with_folds, KFoldOutcome, Protocol, ValAtFar};
pub use roc::{eer, roc_auc, roc_curve, tar_at_far, SortedScores};
