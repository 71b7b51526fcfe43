//! Bindings of `crate::threads`.

use pyo3::prelude::*;

use super::errors::guarded;
use super::int_arg::Int;
use crate::threads;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}

/// Sets the number of threads of mfr's Rust pool; 0 restores the default
/// (`MFR_NUM_THREADS`, else all cores).
#[pyfunction]
fn set_num_threads(n: Int) -> PyResult<()> {
    guarded(|| {
        let n: usize = n.get("set_num_threads", "n", 0, 4096)?;
        threads::set_num_threads(n).map_err(PyErr::from)
    })
}

/// Number of threads mfr's Rust pool uses for the next parallel call.
#[pyfunction]
fn get_num_threads() -> usize {
    threads::num_threads()
}
