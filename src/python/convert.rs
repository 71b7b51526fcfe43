//! Argument conversion: torch tensors (CPU or CUDA) pass through without a copy; numpy arrays and
//! nested sequences go through `torch.as_tensor`. Anything else is an `InvalidInputError` that
//! names the argument.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use tch::{Device, Kind, Tensor};

use crate::error::MfrError;
use crate::tensor_check::{kind_name, Arg};

/// Borrows a torch tensor (shallow: shares storage with the Python object).
fn unpack(ob: &Bound<'_, PyAny>) -> PyResult<Option<Tensor>> {
    let ptr = ob.as_ptr() as *mut tch::python::CPyObject;
    // SAFETY: `ptr` is a live Python object for the duration of the call and the GIL is held.
    unsafe { Tensor::pyobject_unpack(ptr) }.map_err(|e| MfrError::Torch(e).into())
}

/// Refuses what libtorch would only fail on with its own words: a tensor on the `meta` device
/// (shapes without data) or in a sparse or other non-strided layout.
fn check_storage(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<()> {
    if ob.getattr("is_meta")?.is_truthy()? {
        return Err(MfrError::device(
            func,
            format!("argument '{name}' is on the meta device, which holds no data; expected a CPU or CUDA tensor"),
        )
        .into());
    }
    static STRIDED: GILOnceCell<PyObject> = GILOnceCell::new();
    let py = ob.py();
    let strided = STRIDED.get_or_try_init(py, || py.import("torch")?.getattr("strided").map(Bound::unbind))?;
    let layout = ob.getattr("layout")?;
    if !layout.is(strided.bind(py)) {
        return Err(MfrError::invalid(
            func,
            format!("argument '{name}' must be a dense tensor, got layout {layout}; call .to_dense() first"),
        )
        .into());
    }
    Ok(())
}

/// Converts a tensor-like argument into a `Tensor` (no copy for torch tensors and numpy arrays).
pub(crate) fn tensor_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Tensor> {
    if let Some(t) = unpack(ob)? {
        check_storage(ob, func, name)?;
        return Ok(t);
    }
    let py = ob.py();
    let converted = py.import("torch")?.getattr("as_tensor")?.call1((ob,)).map_err(|e| {
        PyErr::from(MfrError::invalid(
            func,
            format!(
                "argument '{name}' must be a torch.Tensor, a numpy array or a sequence of numbers, got {} ({})",
                type_name(ob),
                e.value(py)
            ),
        ))
    })?;
    unpack(&converted)?
        .ok_or_else(|| MfrError::Internal(format!("torch.as_tensor returned a non-tensor for '{name}'")).into())
}

/// `tensor_arg` plus a dtype check: "argument 'x' <requirement>, got <dtype>".
fn typed_arg(
    ob: &Bound<'_, PyAny>,
    func: &str,
    name: &str,
    accept: fn(Kind) -> bool,
    requirement: &str,
) -> PyResult<(Tensor, Kind)> {
    let t = tensor_arg(ob, func, name)?;
    let kind = t.f_kind().map_err(MfrError::from)?;
    if !accept(kind) {
        return Err(MfrError::invalid(func, format!("argument '{name}' {requirement}, got {}", kind_name(kind))).into());
    }
    Ok((t, kind))
}

fn is_integer(kind: Kind) -> bool {
    matches!(kind, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8)
}

fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".to_owned())
}

/// An `M x 2` array of integer indices as pairs, copied to host memory.
pub(crate) fn index_pairs_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Vec<[i64; 2]>> {
    let t = tensor_arg(ob, func, name)?;
    if t.numel() == 0 && t.dim() <= 2 {
        return Ok(Vec::new()); // `[]` arrives as an empty float tensor
    }
    let kind = t.f_kind().map_err(MfrError::from)?;
    if !is_integer(kind) {
        return Err(MfrError::invalid(
            func,
            format!("argument '{name}' must hold integer indices, got {}", kind_name(kind)),
        )
        .into());
    }
    Arg::new(func, name, &t).dims(2)?;
    if t.size()[1] != 2 {
        return Err(
            MfrError::invalid(func, format!("argument '{name}' must have shape (M, 2), got {:?}", t.size())).into()
        );
    }
    let host = t
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Int64))
        .and_then(|t| t.f_contiguous())
        .map_err(MfrError::from)?;
    let flat = Vec::<i64>::try_from(&host.f_flatten(0, -1).map_err(MfrError::from)?).map_err(MfrError::from)?;
    Ok(flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
}

/// A 1-D score vector as a contiguous float64 CPU tensor (any real dtype converts; CUDA copies to host).
pub(crate) fn scores_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Tensor> {
    scores_as(ob, func, name, |_| Kind::Double)
}

/// A 1-D score vector as a contiguous CPU tensor, float32 kept as float32 (its 32-bit keys sort
/// with half the memory traffic; every float32 value is exact in float64, so nothing else changes),
/// float16/bfloat16 widened to float32, everything else to float64.
pub(crate) fn scores_arg_native(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Tensor> {
    scores_as(ob, func, name, |kind| match kind {
        Kind::Float | Kind::Half | Kind::BFloat16 => Kind::Float,
        _ => Kind::Double,
    })
}

fn scores_as(ob: &Bound<'_, PyAny>, func: &str, name: &str, target: fn(Kind) -> Kind) -> PyResult<Tensor> {
    let (t, kind) = typed_arg(ob, func, name, is_real, "must hold real numbers")?;
    Arg::new(func, name, &t).dims(1)?;
    let host = t.f_to_device(Device::Cpu).and_then(|t| t.f_to_kind(target(kind))).and_then(|t| t.f_contiguous());
    Ok(host.map_err(MfrError::from)?)
}

/// A 1-D label vector (bool, or numbers that are all 0 or 1) as a contiguous uint8 CPU tensor.
pub(crate) fn labels_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Tensor> {
    let (t, kind) = typed_arg(ob, func, name, is_real, "must be 0/1 or bool")?;
    Arg::new(func, name, &t).dims(1)?;
    Ok(labels_to_u8(&t, kind, func, name)?)
}

fn labels_to_u8(t: &Tensor, kind: Kind, func: &str, name: &str) -> crate::Result<Tensor> {
    let t = t.f_to_device(Device::Cpu)?;
    if kind != Kind::Bool {
        // Check the values before narrowing: 256 must not wrap to 0.
        let bad = t.f_ne(0)?.f_logical_and(&t.f_ne(1)?)?;
        if bad.f_any()?.f_int64_value(&[])? != 0 {
            let i = bad.f_nonzero()?.f_int64_value(&[0, 0])?;
            let v = t.f_to_kind(Kind::Double)?.f_double_value(&[i])?;
            return Err(MfrError::invalid(func, format!("{name} must be 0/1 or bool, got value {v} at index {i}")));
        }
    }
    if kind == Kind::Bool {
        // A bool's byte is 0 or 1 already: read in place (a copy of 10M labels costs a report a
        // few ms). A non-canonical byte (a uint8 array viewed as bool) fails the label check
        // every metric makes, instead of counting as True.
        return Ok(t.f_view_dtype(Kind::Uint8)?.f_contiguous()?);
    }
    Ok(t.f_to_kind(Kind::Uint8)?.f_contiguous()?)
}

fn is_real(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Bool
            | Kind::Uint8
            | Kind::Int8
            | Kind::Int16
            | Kind::Int
            | Kind::Int64
            | Kind::Half
            | Kind::BFloat16
            | Kind::Float
            | Kind::Double
    )
}

/// A 1-D array of integer ids, copied to host memory as i64.
pub(crate) fn ids_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Vec<i64>> {
    let (t, _) = typed_arg(ob, func, name, is_integer, "must hold integer ids")?;
    Arg::new(func, name, &t).dims(1)?;
    let host = t.f_to_device(Device::Cpu).and_then(|t| t.f_to_kind(Kind::Int64)).and_then(|t| t.f_contiguous());
    Ok(Vec::<i64>::try_from(&host.map_err(MfrError::from)?).map_err(MfrError::from)?)
}
