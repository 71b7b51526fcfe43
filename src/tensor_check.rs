//! Boundary checks on tensors, producing messages of the form
//! `cosine_scores: argument 'a' must be float32, got float64`.

use tch::{Device, Kind, Tensor};

use crate::error::{MfrError, Result};

/// Human name of a tensor dtype, as torch prints it.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Uint8 => "uint8",
        Kind::Int8 => "int8",
        Kind::Int16 => "int16",
        Kind::Int => "int32",
        Kind::Int64 => "int64",
        Kind::Half => "float16",
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Bool => "bool",
        Kind::BFloat16 => "bfloat16",
        _ => "an unsupported dtype",
    }
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The facts about one tensor argument that functions check.
pub struct Arg<'a> {
    pub func: &'a str,
    pub name: &'a str,
    pub tensor: &'a Tensor,
}

impl<'a> Arg<'a> {
    pub fn new(func: &'a str, name: &'a str, tensor: &'a Tensor) -> Self {
        Arg { func, name, tensor }
    }

    fn invalid(&self, what: impl std::fmt::Display) -> MfrError {
        MfrError::invalid(self.func, format!("argument '{}' {what}", self.name))
    }

    pub fn kind(&self, expected: Kind) -> Result<&Self> {
        let got = self.tensor.f_kind()?;
        if got != expected {
            return Err(self.invalid(format!("must be {}, got {}", kind_name(expected), kind_name(got))));
        }
        Ok(self)
    }

    pub fn dims(&self, expected: usize) -> Result<&Self> {
        let got = self.tensor.dim();
        if got != expected {
            return Err(
                self.invalid(format!("must be {expected}-D, got a {got}-D tensor of shape {:?}", self.tensor.size()))
            );
        }
        Ok(self)
    }

    pub fn contiguous(&self) -> Result<&Self> {
        if !self.tensor.is_contiguous() {
            return Err(self.invalid(format!(
                "must be contiguous (call .contiguous() first), got strides {:?} for shape {:?}",
                self.tensor.stride(),
                self.tensor.size()
            )));
        }
        Ok(self)
    }

    /// float16, bfloat16, float32 or float64.
    pub fn floating(&self) -> Result<&Self> {
        let kind = self.tensor.f_kind()?;
        if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
            return Err(self.invalid(format!("must be floating point, got {}", kind_name(kind))));
        }
        Ok(self)
    }

    pub fn non_empty(&self) -> Result<&Self> {
        if self.tensor.numel() == 0 {
            return Err(self.invalid(format!("must not be empty, got shape {:?}", self.tensor.size())));
        }
        Ok(self)
    }

    /// Fails with a device error when the tensor lives on a device this build cannot use.
    pub fn usable_device(&self) -> Result<&Self> {
        let device = self.tensor.device();
        if !matches!(device, Device::Cpu | Device::Cuda(_)) {
            // tch reports meta tensors as Mps: neither holds data mfr can read.
            return Err(MfrError::device(
                self.func,
                format!("argument '{}' must be on the CPU or a CUDA device, got {}", self.name, device_name(device)),
            ));
        }
        if let Device::Cuda(_) = device {
            if !crate::linked_cuda() {
                return Err(MfrError::device(
                    self.func,
                    format!(
                        "argument '{}' is on {} but this mfr build has no CUDA support",
                        self.name,
                        device_name(device)
                    ),
                ));
            }
        }
        Ok(self)
    }

    pub fn same_device(&self, other: &Arg<'_>) -> Result<&Self> {
        let (a, b) = (self.tensor.device(), other.tensor.device());
        if a != b {
            return Err(MfrError::device(
                self.func,
                format!(
                    "arguments '{}' and '{}' must be on the same device, got {} and {}",
                    self.name,
                    other.name,
                    device_name(a),
                    device_name(b)
                ),
            ));
        }
        Ok(self)
    }
}

/// `all_finite` for a tensor on any device: one reduction there, and the first bad flat index
/// only when there is one.
pub fn tensor_finite(func: &str, name: &str, t: &Tensor) -> Result<()> {
    let finite = t.f_isfinite()?;
    if finite.f_all()?.f_int64_value(&[])? != 0 {
        return Ok(());
    }
    let flat = t.f_flatten(0, -1)?;
    let i = finite.f_logical_not()?.f_flatten(0, -1)?.f_nonzero()?.f_int64_value(&[0, 0])?;
    let v = flat.f_to_kind(tch::Kind::Double)?.f_double_value(&[i])?;
    Err(MfrError::invalid(func, format!("argument '{name}' must be finite, got {v} at flat index {i}")))
}

/// Rejects NaN or infinite values, naming the first bad flat index.
pub fn all_finite(func: &str, name: &str, values: &[f32]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(MfrError::invalid(
            func,
            format!("argument '{name}' must be finite, got {} at index {i}", values[i]),
        ));
    }
    Ok(())
}

/// Borrows the elements of a contiguous CPU tensor of element type `T` as a slice.
pub fn host_slice<'t, T: tch::kind::Element>(func: &str, name: &str, tensor: &'t Tensor) -> Result<&'t [T]> {
    let arg = Arg::new(func, name, tensor);
    arg.kind(T::KIND)?.contiguous()?;
    if tensor.device() != Device::Cpu {
        return Err(MfrError::device(
            func,
            format!("argument '{name}' must be on the CPU here, got {}", device_name(tensor.device())),
        ));
    }
    let n = tensor.numel();
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: checked above: a contiguous CPU tensor of `n` elements of type `T`; the slice borrows
    // `tensor`, which keeps the storage alive.
    Ok(unsafe { std::slice::from_raw_parts(tensor.data_ptr() as *const T, n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_argument_and_expectation() {
        let t = Tensor::zeros([2, 3], (Kind::Double, Device::Cpu));
        let e = Arg::new("f", "a", &t).kind(Kind::Float).err().unwrap();
        assert_eq!(e.to_string(), "f: argument 'a' must be float32, got float64");
        let e = Arg::new("f", "a", &t).dims(3).err().unwrap();
        assert!(e.to_string().contains("must be 3-D, got a 2-D tensor of shape [2, 3]"));
        let tt = t.tr();
        let e = Arg::new("f", "a", &tt).contiguous().err().unwrap();
        assert!(e.to_string().contains("must be contiguous"));
        assert!(Arg::new("f", "a", &t).dims(2).unwrap().contiguous().is_ok());
        let empty = Tensor::zeros([0, 3], (Kind::Float, Device::Cpu));
        assert!(Arg::new("f", "e", &empty).non_empty().is_err());
    }

    #[test]
    fn finite_check_reports_first_bad_index() {
        let e = all_finite("g", "x", &[1.0, f32::INFINITY, f32::NAN]).unwrap_err();
        assert_eq!(e.to_string(), "g: argument 'x' must be finite, got inf at index 1");
    }
}
