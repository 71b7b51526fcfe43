//! Layer 2: the `mfr._core` extension module. Converts and validates arguments, releases the GIL
//! around Rust work and maps `MfrError` to Python exceptions; no algorithm lives here.

mod convert;
mod data;
mod errors;
mod info;
mod int_arg;
mod losses;
mod memory;
mod meta;
mod metrics;
mod threads;

use pyo3::prelude::*;

#[pymodule(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    errors::register(m)?;
    info::register(m)?;
    threads::register(m)?;
    memory::register(m)?;
    metrics::register(m)?;
    data::register(m)?;
    losses::register(m)?;
    meta::register(m)?;
    Ok(())
}
