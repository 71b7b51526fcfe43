//! Bindings of `crate::metrics`.

use std::ffi::OsString;

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use tch::Tensor;

use super::convert::{ids_arg, index_pairs_arg, labels_arg, scores_arg, scores_arg_native, tensor_arg};
use super::errors::{guarded, without_gil};
use super::int_arg::{Int, MAX_COUNT};
use crate::limits::{check_memory, product};
use crate::metrics::{self, verification_report, BinaryScores, Report, Resampling, SortedScores};
use crate::tensor_check::host_slice;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cosine_scores, m)?)?;
    m.add_function(wrap_pyfunction!(pair_scores, m)?)?;
    m.add_function(wrap_pyfunction!(roc_curve, m)?)?;
    m.add_function(wrap_pyfunction!(roc_auc, m)?)?;
    m.add_function(wrap_pyfunction!(eer, m)?)?;
    m.add_function(wrap_pyfunction!(tar_at_far, m)?)?;
    m.add_function(wrap_pyfunction!(kfold_accuracy, m)?)?;
    m.add_class::<PyKFoldResult>()?;
    m.add_class::<PyValAtFar>()?;
    m.add_function(wrap_pyfunction!(identification_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(verification_summary, m)?)?;
    m.add_class::<PyVerificationSummary>()?;
    m.add_function(wrap_pyfunction!(bootstrap_group_counts, m)?)?;
    m.add_function(wrap_pyfunction!(name_seed, m)?)?;
    Ok(())
}

/// Row-wise cosine similarity of two (N, D) float32 tensors on the same device (CPU or CUDA).
/// Returns a float32 tensor of shape (N,) on that device. NaN or inf in either is an
/// `InvalidInputError`, as in every scoring function.
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
        Ok(scores.into_pyarray(py))
    })
}

/// Validated and sorted scores of a float32 or float64 host tensor (as `scores_arg_native` gives).
fn sort_native(func: &str, s: &Tensor, l: &Tensor) -> crate::Result<SortedScores> {
    let labels = host_slice::<u8>(func, "labels", l)?;
    if s.kind() == tch::Kind::Float {
        SortedScores::checked(func, host_slice::<f32>(func, "scores", s)?, labels, true)
    } else {
        SortedScores::checked(func, host_slice::<f64>(func, "scores", s)?, labels, true)
    }
}

/// Converts, then runs `f` on the sorted scores without the GIL.
fn with_sorted<T: Send>(
    py: Python<'_>,
    func: &'static str,
    scores: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    f: impl FnOnce(&SortedScores) -> crate::Result<T> + Send,
) -> PyResult<T> {
    let s: Tensor = scores_arg_native(scores, func, "scores")?;
    let l: Tensor = labels_arg(labels, func, "labels")?;
    without_gil(py, move || f(&sort_native(func, &s, &l)?))
}

type Array<'py> = Bound<'py, PyArray1<f64>>;

/// (fpr, tpr, thresholds) as float64 arrays, point for point as sklearn.metrics.roc_curve.
#[pyfunction]
#[pyo3(signature = (scores, labels, drop_intermediate = false))]
fn roc_curve<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    drop_intermediate: bool,
) -> PyResult<(Array<'py>, Array<'py>, Array<'py>)> {
    guarded(|| {
        let (fpr, tpr, thr) =
            with_sorted(py, "roc_curve", scores, labels, move |s| metrics::summary::curve(s, drop_intermediate))?;
        Ok((
            curve_array(py, fpr)?.into_bound(py),
            curve_array(py, tpr)?.into_bound(py),
            curve_array(py, thr)?.into_bound(py),
        ))
    })
}

/// Area under the ROC curve (ties count one half).
#[pyfunction]
fn roc_auc(py: Python<'_>, scores: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<f64> {
    guarded(|| with_sorted(py, "roc_auc", scores, labels, |s| Ok(metrics::roc_auc(s))))
}

/// (equal error rate, threshold).
#[pyfunction]
fn eer(py: Python<'_>, scores: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    guarded(|| with_sorted(py, "eer", scores, labels, |s| Ok(metrics::summary::eer_of(s))))
}

/// (tar, threshold) arrays, one entry per target FAR; NaN where a target is below 1/N impostors.
#[pyfunction]
fn tar_at_far<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    fars: Vec<f64>,
) -> PyResult<(Array<'py>, Array<'py>)> {
    guarded(|| {
        let res = with_sorted(py, "tar_at_far", scores, labels, move |s| metrics::summary::tar_at_far_of(s, &fars))?;
        let (tar, thr): (Vec<f64>, Vec<f64>) = res.into_iter().unzip();
        Ok((tar.into_pyarray(py), thr.into_pyarray(py)))
    })
}

type F64Array = Py<PyArray1<f64>>;

/// insightface's VAL at a target FAR, measured across folds (see ``kfold_accuracy``).
#[pyclass(name = "ValAtFar", module = "mfr.metrics", frozen, get_all)]
pub(crate) struct PyValAtFar {
    far_target: f64,
    val_mean: f64,
    val_std: f64,
    far_mean: f64,
    /// Per fold: interpolated distance threshold, VAL and FAR on the test fold.
    thresholds: F64Array,
    vals: F64Array,
    fars: F64Array,
}

/// Result of ``kfold_accuracy``. ``thresholds`` are per fold, in the protocol's units: scores for
/// ``exact`` and ``facexzoo``, squared L2 distance ``2 - 2 * score`` for ``insightface``. ``std``
/// is the population standard deviation of the fold accuracies (``exact``, ``insightface``) or
/// the standard error ``std(ddof=1) / sqrt(n_folds)`` (``facexzoo``); ``val`` is insightface's
/// VAL@FAR=1e-3 (``insightface`` only, else None).
#[pyclass(name = "KFoldResult", module = "mfr.metrics", frozen, get_all)]
pub(crate) struct PyKFoldResult {
    protocol: String,
    n_folds: usize,
    mean: f64,
    std: f64,
    fold_accuracies: F64Array,
    thresholds: F64Array,
    val: Option<Py<PyValAtFar>>,
}

#[pymethods]
impl PyKFoldResult {
    fn __repr__(&self) -> String {
        format!(
            "KFoldResult(protocol='{}', n_folds={}, mean={}, std={})",
            self.protocol, self.n_folds, self.mean, self.std
        )
    }
}

fn array(py: Python<'_>, v: Vec<f64>) -> F64Array {
    v.into_pyarray(py).unbind()
}

/// The memory of a large curve array handed to numpy: the metrics' scratch pool gets it back once
/// the array, and every view of it, is gone, so that the next report writes its curve into pages
/// already mapped instead of faulting fresh ones in.
#[pyclass(frozen, module = "mfr._core")]
struct CurveMemory {
    data: Vec<f64>,
}

impl Drop for CurveMemory {
    fn drop(&mut self) {
        metrics::scratch::give(std::mem::take(&mut self.data));
    }
}

/// A curve array: a large one in memory that returns to the scratch pool ([`CurveMemory`]).
fn curve_array(py: Python<'_>, v: Vec<f64>) -> PyResult<F64Array> {
    if v.capacity() * std::mem::size_of::<f64>() < metrics::scratch::MIN_BYTES {
        return Ok(array(py, v));
    }
    let owner = Bound::new(py, CurveMemory { data: v })?;
    let view = numpy::ndarray::ArrayView1::from(&owner.get().data[..]);
    // SAFETY: the owner keeps the vector alive, unmoved and unchanged until numpy drops the array.
    Ok(unsafe { PyArray1::borrow_from_array(&view, owner.clone().into_any()) }.unbind())
}

/// k-fold accuracy under `protocol` ('exact', 'insightface', 'facexzoo').
#[pyfunction]
#[pyo3(
    signature = (scores, labels, n_folds = Int::new(10), protocol = "exact", folds = None),
    text_signature = "(scores, labels, n_folds=10, protocol='exact', folds=None)"
)]
fn kfold_accuracy(
    py: Python<'_>,
    scores: &Bound<'_, PyAny>,
    labels: &Bound<'_, PyAny>,
    n_folds: Int,
    protocol: &str,
    folds: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyKFoldResult> {
    const F: &str = "kfold_accuracy";
    guarded(|| {
        let name = protocol.to_owned();
        let protocol = metrics::Protocol::parse(protocol)?;
        let k: usize = n_folds.get(F, "n_folds", 2, MAX_COUNT)?;
        let s: Tensor = scores_arg(scores, F, "scores")?;
        let l: Tensor = labels_arg(labels, F, "labels")?;
        let folds = folds.map(|f| ids_arg(f, F, "folds")).transpose()?;
        let out = without_gil(py, move || {
            let input =
                BinaryScores::new(F, host_slice::<f64>(F, "scores", &s)?, host_slice::<u8>(F, "labels", &l)?, true)?;
            metrics::kfold_accuracy_with_folds(&input, k, protocol, folds.as_deref())
        })?;
        let val = out
            .val
            .map(|v| {
                let val = PyValAtFar {
                    far_target: v.far_target,
                    val_mean: v.val_mean,
                    val_std: v.val_std,
                    far_mean: v.far_mean,
                    thresholds: array(py, v.thresholds),
                    vals: array(py, v.vals),
                    fars: array(py, v.fars),
                };
                Py::new(py, val)
            })
            .transpose()?;
        Ok(PyKFoldResult {
            protocol: name,
            n_folds: k,
            mean: out.mean,
            std: out.std,
            fold_accuracies: array(py, out.fold_accuracies),
            thresholds: array(py, out.thresholds),
            val,
        })
    })
}

/// 1-based rank of each probe's best gallery mate (closed-set identification), int64 array.
#[pyfunction]
fn identification_ranks<'py>(
    py: Python<'py>,
    gallery: &Bound<'py, PyAny>,
    gallery_ids: &Bound<'py, PyAny>,
    probes: &Bound<'py, PyAny>,
    probe_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    const F: &str = "identification";
    guarded(|| {
        let g = tensor_arg(gallery, F, "gallery")?;
        let gi = ids_arg(gallery_ids, F, "gallery_ids")?;
        let p = tensor_arg(probes, F, "probes")?;
        let pi = ids_arg(probe_ids, F, "probe_ids")?;
        let out = without_gil(py, move || metrics::identification(&g, &gi, &p, &pi))?;
        Ok(out.ranks.into_pyarray(py))
    })
}

/// Everything ``verification_report`` shows, from one sort of the scores: the ROC curve
/// (``fpr``, ``tpr``, ``thresholds``), ``auc``, ``eer`` as (rate, threshold), TAR and its threshold
/// per target FAR, ``best_accuracy`` as (accuracy, threshold), the pair counts and, with
/// ``n_bootstrap > 0``, each resample's ``auc``, ``eer``, ``accuracy`` and TARs (``boot_tar``: one
/// row per resample, one column per FAR; empty without bootstrap).
#[pyclass(name = "VerificationSummary", module = "mfr._core", frozen, get_all)]
pub(crate) struct PyVerificationSummary {
    fpr: F64Array,
    tpr: F64Array,
    thresholds: F64Array,
    auc: f64,
    eer: (f64, f64),
    tar: F64Array,
    tar_thresholds: F64Array,
    best_accuracy: (f64, f64),
    n_genuine: u64,
    n_impostor: u64,
    boot_auc: F64Array,
    boot_eer: F64Array,
    boot_accuracy: F64Array,
    boot_tar: Py<PyArray2<f64>>,
}

/// Everything `verification_report` shows, from one sort of the scores, with (when
/// `n_bootstrap > 0`) the bootstrap resamples. `groups`: resample groups (e.g. identities) instead
/// of pairs; `groups2`: a second group per pair (two-way); `n_groups`: the group universe
/// `0..n_groups`.
#[pyfunction]
#[pyo3(
    signature = (scores, labels, fars, n_bootstrap = Int::new(0), seed = Int::new(0), groups = None, groups2 = None, n_groups = None),
    text_signature = "(scores, labels, fars, n_bootstrap=0, seed=0, groups=None, groups2=None, n_groups=None)"
)]
#[allow(clippy::too_many_arguments)]
fn verification_summary<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    fars: Vec<f64>,
    n_bootstrap: Int,
    seed: Int,
    groups: Option<&Bound<'py, PyAny>>,
    groups2: Option<&Bound<'py, PyAny>>,
    n_groups: Option<Int>,
) -> PyResult<PyVerificationSummary> {
    const F: &str = "verification_report";
    guarded(|| {
        let n_boot: usize = n_bootstrap.get(F, "n_bootstrap", 0, MAX_COUNT)?;
        let seed = seed.any_u64(F, "seed")?;
        let s: Tensor = scores_arg_native(scores, F, "scores")?;
        let l: Tensor = labels_arg(labels, F, "labels")?;
        let g = groups.map(|g| ids_arg(g, F, "groups")).transpose()?;
        let g2 = groups2.map(|g| ids_arg(g, F, "groups")).transpose()?;
        if g2.is_some() && g.is_none() {
            return Err(crate::MfrError::invalid(F, "a second group column needs the first").into());
        }
        let n_groups: Option<usize> = n_groups.map(|n| n.get(F, "n_groups", 1, MAX_COUNT)).transpose()?;
        // Each resample is a row of 3 + len(fars) float64s, held twice while collected.
        let row_bytes = 16 * (3 + fars.len() as u128) + 64;
        check_memory(F, &format!("n_bootstrap={n_boot} resamples"), product(&[n_boot as u128, row_bytes]))?;
        let report = without_gil(py, move || {
            let sorted = sort_native(F, &s, &l)?;
            // The group bootstrap's own sort keys float64 scores (float32 widen exactly).
            let wide = match &g {
                Some(_) if n_boot > 0 => Some(s.f_to_kind(tch::Kind::Double)?),
                _ => None,
            };
            let resampling = match (&g, &wide) {
                _ if n_boot == 0 => Resampling::None,
                (Some(g), Some(wide)) => Resampling::Groups {
                    n: n_boot,
                    seed,
                    input: BinaryScores::new(
                        F,
                        host_slice::<f64>(F, "scores", wide)?,
                        host_slice::<u8>(F, "labels", &l)?,
                        true,
                    )?,
                    groups: metrics::Groups { first: g, second: g2.as_deref(), n_groups },
                },
                _ => Resampling::Pairs { n: n_boot, seed },
            };
            verification_report(sorted, &fars, resampling)
        })?;
        let Report { curve, auc, eer, tar_at_far, best_accuracy, n_genuine, n_impostor, resamples } = report;
        let (tar_v, tar_t): (Vec<f64>, Vec<f64>) = tar_at_far.into_iter().unzip();
        let rows = resamples.len();
        Ok(PyVerificationSummary {
            fpr: curve_array(py, curve.fpr)?,
            tpr: curve_array(py, curve.tpr)?,
            thresholds: curve_array(py, curve.thresholds)?,
            auc,
            eer,
            tar: array(py, tar_v),
            tar_thresholds: array(py, tar_t),
            best_accuracy,
            n_genuine,
            n_impostor,
            boot_auc: array(py, resamples.auc),
            boot_eer: array(py, resamples.eer),
            boot_accuracy: array(py, resamples.accuracy),
            boot_tar: resamples.tar.into_pyarray(py).reshape([rows, resamples.n_fars])?.unbind(),
        })
    })
}

/// `(n_resamples, n_groups)` int64 multiplicities: row `b` is exactly the identity draw of group
/// bootstrap resample `b` of `seed` over a universe of `n_groups` groups (as
/// `verification_summary(..., n_groups=n_groups)` uses), so other statistics can share the draws.
#[pyfunction]
fn bootstrap_group_counts<'py>(
    py: Python<'py>,
    n_groups: Int,
    n_resamples: Int,
    seed: Int,
) -> PyResult<Bound<'py, PyAny>> {
    const F: &str = "bootstrap_group_counts";
    guarded(|| {
        let g: usize = n_groups.get(F, "n_groups", 0, 1 << 24)?;
        let b: usize = n_resamples.get(F, "n_resamples", 0, 1 << 24)?;
        let seed = seed.any_u64(F, "seed")?;
        if g.checked_mul(b).is_none_or(|n| n > 1 << 28) {
            return Err(
                crate::MfrError::invalid(F, format!("n_groups * n_resamples must be <= 2**28, got {g} * {b}")).into()
            );
        }
        let counts = without_gil(py, move || Ok(metrics::group_counts(g, b, seed)))?;
        let flat: Vec<i64> = counts.into_iter().map(|c| c as i64).collect();
        Ok(flat.into_pyarray(py).reshape([b, g])?.into_any())
    })
}

/// A seed derived from `seed` and names (domain, identity, purpose...), so draws keyed by it
/// do not depend on how the data is numbered.
#[pyfunction]
fn name_seed(seed: Int, names: Vec<OsString>) -> PyResult<u64> {
    let seed = seed.any_u64("name_seed", "seed")?;
    let bytes: Vec<&[u8]> = names.iter().map(|n| n.as_encoded_bytes()).collect();
    Ok(crate::rng::name_seed(seed, &bytes))
}
