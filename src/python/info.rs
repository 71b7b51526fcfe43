//! `_build_info()`: what this binary was built with and what it sees at run time.

use pyo3::prelude::*;
use pyo3::types::PyDict;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_build_info, m)?)?;
    Ok(())
}

/// Build and runtime facts of the Rust core (libtorch as seen through tch, not through Python).
#[pyfunction]
fn _build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("mfr", crate::VERSION)?;
    d.set_item("commit", crate::GIT_COMMIT)?;
    d.set_item("tch", crate::TCH_VERSION)?;
    d.set_item("libtorch", crate::LIBTORCH_VERSION)?;
    d.set_item("linked_cuda", crate::linked_cuda())?;
    d.set_item("cuda_available", tch::Cuda::is_available())?;
    d.set_item("cuda_device_count", tch::Cuda::device_count())?;
    d.set_item("cudnn_available", tch::Cuda::cudnn_is_available())?;
    d.set_item("num_threads", crate::threads::num_threads())?;
    d.set_item("heap_tuned", crate::heap::heap_tuned())?;
    d.set_item("debug_build", cfg!(debug_assertions))?;
    Ok(d)
}
