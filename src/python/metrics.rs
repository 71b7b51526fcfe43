//! Bindings of `crate::metrics`.

use numpy::{PyArray1, ToPyArray};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;

use super::convert::{index_pairs_arg, tensor_arg};
use super::errors::{guarded, without_gil};
use crate::metrics;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cosine_scores, m)?)?;
    m.add_function(wrap_pyfunction!(pair_scores, m)?)?;
    Ok(())
}

/// Row-wise cosine similarity of two (N, D) float32 tensors on the same device (CPU or CUDA).
/// Returns a float32 tensor of shape (N,) on that device.
#[pyfunction]
fn cosine_scores(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    guarded(|| {
        let a = tensor_arg(a, "cosine_scores", "a")?;
        let b = tensor_arg(b, "cosine_scores", "b")?;
        without_gil(py, move || metrics::cosine_scores(&a, &b)).map(PyTensor)
    })
}

/// Cosine similarity of embeddings[i] and embeddings[j] for each row (i, j) of `pairs`.
/// `embeddings`: (N, D) float32, contiguous, CPU or CUDA; `pairs`: (M, 2) integers.
/// Returns a float64 numpy array of shape (M,).
#[pyfunction]
fn pair_scores<'py>(
    py: Python<'py>,
    embeddings: &Bound<'py, PyAny>,
    pairs: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    guarded(|| {
        let e = tensor_arg(embeddings, "pair_scores", "embeddings")?;
        let p = index_pairs_arg(pairs, "pair_scores", "pairs")?;
        let scores = without_gil(py, move || metrics::pair_scores(&e, &p))?;
        Ok(scores.to_pyarray(py))
    })
}
