//! The MFR meta-gradient step and its parts: functional backbones, the three losses, the step.

pub mod backbone;
pub mod losses;
pub mod step;

pub use backbone::{BnMode, Init, SmallCnn, TensorSpec};
pub use losses::{domain_alignment, hard_pair_attention, soft_classification, HardPairStats};
pub use step::{meta_step, Split, StepConfig, StepOutput};
