//! Bindings of `crate::meta::losses`: differentiable, so autograd flows back into Python tensors.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;

use super::convert::tensor_arg;
use super::errors::{guarded, without_gil};
use crate::meta::losses;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hard_pair_attention, m)?)?;
    m.add_function(wrap_pyfunction!(soft_classification, m)?)?;
    m.add_function(wrap_pyfunction!(domain_alignment, m)?)?;
    Ok(())
}

/// MFR's hard-pair attention loss of one domain and its mining statistics.
#[pyfunction]
fn hard_pair_attention<'py>(
    py: Python<'py>,
    gallery: &Bound<'py, PyAny>,
    probe: &Bound<'py, PyAny>,
    tau_p: f64,
    tau_n: f64,
) -> PyResult<(PyTensor, Bound<'py, PyDict>)> {
    guarded(|| {
        let g = tensor_arg(gallery, "hard_pair_attention", "gallery")?;
        let p = tensor_arg(probe, "hard_pair_attention", "probe")?;
        let (loss, s) = without_gil(py, move || losses::hard_pair_attention(&g, &p, tau_p, tau_n))?;
        let d = PyDict::new(py);
        d.set_item("hard_positives", s.hard_positives)?;
        d.set_item("hard_negatives", s.hard_negatives)?;
        d.set_item("mean_positive_similarity", s.mean_positive_similarity)?;
        d.set_item("mean_negative_similarity", s.mean_negative_similarity)?;
        Ok((PyTensor(loss), d))
    })
}

/// MFR's soft-classification loss of one domain (in-batch prototypes, scaled cosine logits).
#[pyfunction]
fn soft_classification(
    py: Python<'_>,
    gallery: &Bound<'_, PyAny>,
    probe: &Bound<'_, PyAny>,
    scale: f64,
) -> PyResult<PyTensor> {
    guarded(|| {
        let g = tensor_arg(gallery, "soft_classification", "gallery")?;
        let p = tensor_arg(probe, "soft_classification", "probe")?;
        without_gil(py, move || losses::soft_classification(&g, &p, scale)).map(PyTensor)
    })
}

/// MFR's domain-alignment loss over the features of the meta-train domains.
#[pyfunction]
fn domain_alignment(py: Python<'_>, domains: Vec<Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    guarded(|| {
        let ts = domains
            .iter()
            .enumerate()
            .map(|(k, d)| tensor_arg(d, "domain_alignment", &format!("domains[{k}]")))
            .collect::<PyResult<Vec<_>>>()?;
        without_gil(py, move || losses::domain_alignment(&ts)).map(PyTensor)
    })
}
