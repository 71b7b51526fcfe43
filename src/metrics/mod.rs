//! Verification metrics and the similarity scores they read.
//!
//! Layered bottom-up, each module importing only those above it in this list:
//! `scratch` (the pool of key buffers) < `keys` (score keys) < `disjoint` (shared output buffers)
//! < `radix` (the sort) < `binary` (validated input) < `sorted` (sorted keys and their walk) <
//! `roc` (streaming metrics) < `summary` (the parallel report walk) < `bootstrap` < `report` (the
//! typed verification report);
//! `kfold`, `identification` and `cosine` stand beside them.

pub mod binary;
pub mod bootstrap;
pub mod cosine;
pub(crate) mod disjoint;
pub mod identification;
pub mod keys;
pub mod kfold;
pub mod radix;
pub mod report;
pub mod roc;
pub mod scratch;
pub mod sorted;
pub mod summary;

pub use binary::BinaryScores;
pub use bootstrap::{bootstrap, group_counts, Groups, ScoreRuns};
pub use cosine::{cosine_scores, pair_scores};
pub use identification::{identification, Identification};
pub use keys::{Score, SortKey};
pub use kfold::{kfold_accuracy, kfold_accuracy_with_folds, KFoldOutcome, Protocol, ValAtFar};
pub use report::{verification_report, Report, Resampling};
pub use roc::{eer, roc_auc, roc_curve, tar_at_far};
pub use sorted::SortedScores;
