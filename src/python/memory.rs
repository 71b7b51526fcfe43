//! Bindings of `crate::block_cache`.

use pyo3::prelude::*;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(release_cached_memory, m)?)?;
    m.add_function(wrap_pyfunction!(cached_memory, m)?)?;
    Ok(())
}

/// Returns the large freed blocks mfr keeps for reuse to the system now; the bytes released.
#[pyfunction]
fn release_cached_memory(py: Python<'_>) -> usize {
    py.allow_threads(|| crate::ALLOCATOR.release())
}

/// Bytes of large freed blocks mfr keeps for reuse now.
#[pyfunction]
fn cached_memory() -> usize {
    crate::ALLOCATOR.kept_bytes()
}
