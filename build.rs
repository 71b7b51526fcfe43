//! Link settings that torch-sys cannot express for us.
//!
//! * `libtorch_cuda.so` must stay a DT_NEEDED entry even though no symbol of ours references it:
//!   otherwise `--as-needed` drops it and CUDA silently disappears from the extension module.
//! * The installed extension finds libtorch next to it (`site-packages/torch/lib`) through a
//!   relative rpath; Rust test binaries get an absolute rpath to the build-time torch so that
//!   `cargo test` runs without `LD_LIBRARY_PATH`.
//! * The binary records the git commit it was built from (`mfr.build_info()["commit"]`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `git rev-parse HEAD`, with `-dirty` when tracked files differ from it; `MFR_GIT_COMMIT` from the
/// environment wins (a build from a source distribution, which has no `.git`); else `unknown`.
fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed=MFR_GIT_COMMIT");
    if let Ok(commit) = env::var("MFR_GIT_COMMIT") {
        return commit;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(head) = git(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty()) else {
        return "unknown".into();
    };
    // Rebuilt when HEAD moves or the index changes (a commit, a checkout, staged edits).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = Path::new(&dir);
        for file in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={}", dir.join(file).display());
        }
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(branch).display());
        }
    }
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-env=MFR_GIT_COMMIT={}", git_commit());
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
