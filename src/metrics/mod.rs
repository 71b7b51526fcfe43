//! Verification metrics and the similarity scores they read.

pub mod cosine;

pub use cosine::{cosine_scores, pair_scores};
