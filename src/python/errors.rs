//! The Python exception tree and the single mapping from `MfrError` to it.
//!
//! MfrError(Exception)
//! ├── InvalidInputError(MfrError, ValueError)
//! │   └── OutOfMemoryError(InvalidInputError, MemoryError)
//! ├── DataError(MfrError, OSError)
//! │   └── FolderInUseError(DataError): another process writes the output folder (the harness)
//! ├── DeviceError(MfrError, RuntimeError)
//! └── DistributedError(MfrError, RuntimeError)
//!
//! MfrWarning(UserWarning)
//! ├── DataWarning(MfrWarning)
//! │   └── DecodeWarning(DataWarning)
//! ├── FolderLockWarning(MfrWarning): the output folder's filesystem has no working locks
//! └── UndefinedMetricWarning(MfrWarning)
//!
//! The classes need two bases each, which `create_exception!` cannot express, so they are made with
//! `type(name, bases, namespace)` once per interpreter.

use std::panic::AssertUnwindSafe;

use pyo3::exceptions::{PyException, PyMemoryError, PyOSError, PyRuntimeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::error::MfrError;

struct ExceptionTypes {
    base: Py<PyType>,
    invalid_input: Py<PyType>,
    out_of_memory: Py<PyType>,
    data: Py<PyType>,
    folder_in_use: Py<PyType>,
    device: Py<PyType>,
    distributed: Py<PyType>,
    warning: Py<PyType>,
    data_warning: Py<PyType>,
    decode_warning: Py<PyType>,
    folder_lock_warning: Py<PyType>,
    undefined_metric_warning: Py<PyType>,
}

static TYPES: GILOnceCell<ExceptionTypes> = GILOnceCell::new();

fn make_type(py: Python<'_>, name: &str, bases: Vec<Bound<'_, PyType>>, doc: &str) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "mfr")?;
    namespace.set_item("__doc__", doc)?;
    let ty = py.get_type::<PyType>().call1((name, PyTuple::new(py, bases)?, namespace))?;
    Ok(ty.downcast_into::<PyType>()?.unbind())
}

fn types(py: Python<'_>) -> PyResult<&ExceptionTypes> {
    TYPES.get_or_try_init(py, || {
        let base =
            make_type(py, "MfrError", vec![py.get_type::<PyException>()], "Base class of every error raised by mfr.")?;
        let b = || base.bind(py).clone();
        let warning = make_type(
            py,
            "MfrWarning",
            vec![py.get_type::<PyUserWarning>()],
            "Base class of every warning mfr gives.",
        )?;
        let data_warning = make_type(
            py,
            "DataWarning",
            vec![warning.bind(py).clone()],
            "Some data was skipped (reported with what and why): unreadable images, links to nothing.",
        )?;
        let decode_warning = make_type(
            py,
            "DecodeWarning",
            vec![data_warning.bind(py).clone()],
            "Some images could not be read or decoded and were left out of the batch.",
        )?;
        let undefined_metric_warning = make_type(
            py,
            "UndefinedMetricWarning",
            vec![warning.bind(py).clone()],
            "A requested metric cannot be measured from the given pairs (and is reported as NaN).",
        )?;
        let folder_lock_warning = make_type(
            py,
            "FolderLockWarning",
            vec![warning.bind(py).clone()],
            "The output folder's filesystem has no working locks: the run goes on without one.",
        )?;
        let data = make_type(
            py,
            "DataError",
            vec![b(), py.get_type::<PyOSError>()],
            "Data on disk is missing, unreadable or corrupt.",
        )?;
        let folder_in_use = make_type(
            py,
            "FolderInUseError",
            vec![data.bind(py).clone()],
            "Another process is writing the output folder (it holds the folder's lock).",
        )?;
        let invalid_input = make_type(
            py,
            "InvalidInputError",
            vec![b(), py.get_type::<PyValueError>()],
            "An argument has the wrong dtype, shape, device layout or value.",
        )?;
        let out_of_memory = make_type(
            py,
            "OutOfMemoryError",
            vec![invalid_input.bind(py).clone(), py.get_type::<PyMemoryError>()],
            "A request needs more memory than the process can have (available memory, its address-space limit); refused before allocating.",
        )?;
        Ok(ExceptionTypes {
            invalid_input,
            out_of_memory,
            data,
            folder_in_use,
            device: make_type(
                py,
                "DeviceError",
                vec![b(), py.get_type::<PyRuntimeError>()],
                "A tensor is on the wrong or an unavailable device.",
            )?,
            distributed: make_type(
                py,
                "DistributedError",
                vec![b(), py.get_type::<PyRuntimeError>()],
                "A collective failed: a peer rank died, raised, or stopped answering within the timeout.",
            )?,
            base,
            warning,
            data_warning,
            decode_warning,
            folder_lock_warning,
            undefined_metric_warning,
        })
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let t = types(py)?;
    m.add("MfrError", t.base.bind(py))?;
    m.add("InvalidInputError", t.invalid_input.bind(py))?;
    m.add("OutOfMemoryError", t.out_of_memory.bind(py))?;
    m.add("DataError", t.data.bind(py))?;
    m.add("FolderInUseError", t.folder_in_use.bind(py))?;
    m.add("DeviceError", t.device.bind(py))?;
    m.add("DistributedError", t.distributed.bind(py))?;
    m.add("MfrWarning", t.warning.bind(py))?;
    m.add("DataWarning", t.data_warning.bind(py))?;
    m.add("DecodeWarning", t.decode_warning.bind(py))?;
    m.add("FolderLockWarning", t.folder_lock_warning.bind(py))?;
    m.add("UndefinedMetricWarning", t.undefined_metric_warning.bind(py))?;
    m.add_function(wrap_pyfunction!(_raise_panic_for_tests, m)?)?;
    Ok(())
}

impl From<MfrError> for PyErr {
    fn from(err: MfrError) -> PyErr {
        Python::with_gil(|py| {
            let t = match types(py) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let ty = match &err {
                MfrError::InvalidInput(_) => &t.invalid_input,
                MfrError::OutOfMemory(_) => &t.out_of_memory,
                MfrError::Data(_) => &t.data,
                MfrError::Device(_) => &t.device,
                MfrError::Torch(_) | MfrError::Internal(_) => &t.base,
            };
            PyErr::from_type(ty.bind(py).clone(), err.to_string())
        })
    }
}

/// Runs a binding body so that a Rust panic surfaces as `mfr.MfrError`, never as pyo3's
/// `PanicException` (a BaseException that escapes `except Exception`).
pub(crate) fn guarded<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(MfrError::from_panic(payload).into()))
}

/// Releases the GIL around core work. Owned tensors must be moved in: `tch::Tensor` is not `Sync`.
pub(crate) fn without_gil<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    py.allow_threads(f).map_err(PyErr::from)
}

/// Test hook: panics inside Rust (with the GIL released) so tests can check the boundary.
#[pyfunction]
fn _raise_panic_for_tests(py: Python<'_>, message: String) -> PyResult<()> {
    guarded(|| without_gil(py, move || -> crate::Result<()> { panic!("{message}") }))
}

/// The warning class for skipped data (``mfr.DataWarning``).
pub(crate) fn data_warning(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(types(py)?.data_warning.bind(py).clone())
}
