//! The MFR meta-gradient step and its parts (losses first; backbones and the step follow).

pub mod losses;

pub use losses::{domain_alignment, hard_pair_attention, soft_classification, HardPairStats};
