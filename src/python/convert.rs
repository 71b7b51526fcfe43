//! Argument conversion: torch tensors (CPU or CUDA) pass through without a copy; numpy arrays and
//! nested sequences go through `torch.as_tensor`. Anything else is an `InvalidInputError` that
//! names the argument.

use pyo3::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::MfrError;
use crate::tensor_check::{kind_name, Arg};

/// Borrows a torch tensor (shallow: shares storage with the Python object).
fn unpack(ob: &Bound<'_, PyAny>) -> PyResult<Option<Tensor>> {
    let ptr = ob.as_ptr() as *mut tch::python::CPyObject;
    // SAFETY: `ptr` is a live Python object for the duration of the call and the GIL is held.
    unsafe { Tensor::pyobject_unpack(ptr) }.map_err(|e| MfrError::Torch(e).into())
}

/// Converts a tensor-like argument into a `Tensor` (no copy for torch tensors and numpy arrays).
pub(crate) fn tensor_arg(ob: &Bound<'_, PyAny>, func: &str, name: &str) -> PyResult<Tensor> {
    if let Some(t) = unpack(ob)? {
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
    if !matches!(kind, Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8) {
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
