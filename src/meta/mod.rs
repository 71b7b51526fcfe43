//! The MFR meta-gradient step and its parts: functional backbones, the three losses, the step.

pub mod autocast;
pub mod backbone;
pub mod iresnet;
pub mod layers;
pub mod losses;
pub mod mobilefacenet;
pub mod small_cnn;
pub mod step;

pub use autocast::Amp;
pub use backbone::{common_kind, Arch, Backbone, ARCH_NAMES};
pub use layers::{BnMode, Init, StyleMix, TensorSpec};
pub use losses::{domain_alignment, hard_pair_attention, soft_classification, HardPairStats};
pub use step::{meta_step, Split, StepConfig, StepOutput};
