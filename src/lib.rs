//! mfr: Meta Face Recognition (Guo et al., CVPR 2020) — the Rust core.
//!
//! Layer 1 (pure Rust, no pyo3): [`data`], [`sampler`], [`meta`] and [`metrics`], plus the shared
//! [`error`], [`threads`], [`heap`], [`limits`], [`rng`] and [`tensor_check`] support. Layer 2, the
//! Python binding, lives in `python` behind the cargo feature of the same name and only converts,
//! validates, releases the GIL and maps errors.

pub mod data;
pub mod error;
pub mod heap;
pub mod limits;
pub mod meta;
pub mod metrics;
pub mod rng;
pub mod sampler;
pub mod tensor_check;
pub mod threads;

#[cfg(feature = "python")]
mod python;

pub use error::{MfrError, Result};

/// Crate version (also `mfr.__version__`): the one version source (the wheel's metadata reads it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this binary was built from (`-dirty` with uncommitted changes; set by build.rs).
pub const GIT_COMMIT: &str = env!("MFR_GIT_COMMIT");
/// The libtorch version tch 0.24 is built for; the Python side checks torch against it.
pub const LIBTORCH_VERSION: &str = "2.11.0";
/// The tch crate version linked in.
pub const TCH_VERSION: &str = "0.24.0";

/// Whether the build linked `libtorch_cuda.so` (set by build.rs).
pub const fn linked_cuda() -> bool {
    cfg!(mfr_linked_cuda)
}
