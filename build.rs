//! Link settings that torch-sys cannot express for us.
//!
//! * `libtorch_cuda.so` must stay a DT_NEEDED entry even though no symbol of ours references it:
//!   otherwise `--as-needed` drops it and CUDA silently disappears from the extension module.
//! * The installed extension finds libtorch next to it (`site-packages/torch/lib`) through a
//!   relative rpath; Rust test binaries get an absolute rpath to the build-time torch so that
//!   `cargo test` runs without `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Exported by torch-sys (`links = "tch"`): the lib directory of the torch it linked.
    let Ok(lib_dir) = env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory; no rpath set");
        return;
    };
    let lib_dir = PathBuf::from(lib_dir);
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        return;
    }
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        println!("cargo:rustc-cfg=mfr_linked_cuda");
    }
    println!("cargo::rustc-check-cfg=cfg(mfr_linked_cuda)");
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    // Only the extension module (built with the `python` feature) ships; every other artefact is
    // a local test or tool binary that should find the build-time torch by itself.
    if env::var_os("CARGO_FEATURE_PYTHON").is_none() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    }
}
