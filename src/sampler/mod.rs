//! The domain-level sampler: meta-batches that simulate domain shift.

pub mod domain_sampler;

pub use domain_sampler::{DomainSampler, EpochBatches, SamplerConfig, SplitMode};
