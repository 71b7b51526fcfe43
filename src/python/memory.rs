//! Bindings of `crate::metrics::scratch`.

use pyo3::prelude::*;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(release_cached_memory, m)?)?;
    m.add_function(wrap_pyfunction!(cached_memory, m)?)?;
    m.add_function(wrap_pyfunction!(tune_heap, m)?)?;
    Ok(())
}

/// Frees the key and curve buffers the metrics keep for their next report now; the bytes released.
#[pyfunction]
fn release_cached_memory(py: Python<'_>) -> usize {
    py.allow_threads(crate::metrics::scratch::release)
}

/// Bytes of key and curve buffers the metrics keep for their next report now.
#[pyfunction]
fn cached_memory() -> usize {
    crate::metrics::scratch::kept_bytes()
}

/// Sets glibc's malloc thresholds for the whole process so that CPU training reuses freed heap
/// instead of page-faulting it back every step (see `crate::heap`); once per process. Returns
/// whether they are set (false outside glibc).
#[pyfunction]
fn tune_heap() -> bool {
    crate::heap::tune_heap()
}
