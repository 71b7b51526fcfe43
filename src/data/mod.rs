//! Multi-domain face datasets: the index of images, domains and identities.

pub mod index;

pub use index::{DomainSummary, FaceIndex};
