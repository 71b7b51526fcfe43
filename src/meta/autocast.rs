//! Mixed precision: libtorch's autocast (the thread-local state `torch.autocast` sets) around the
//! meta-step's forward passes.
//!
//! tch exposes only the legacy CUDA-only switch, so the per-device functions of `at::autocast`
//! are declared here by their C++ symbol names (libtorch is pinned with tch: torch 2.11.0). None of
//! them can fail or throw.

use tch::Device;

use crate::error::{MfrError, Result};

/// The reduced precision of a mixed-precision forward (weights stay float32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Amp {
    Bf16,
    Fp16,
}

impl Amp {
    pub fn parse(name: &str) -> Result<Amp> {
        match name {
            "bf16" => Ok(Amp::Bf16),
            "fp16" => Ok(Amp::Fp16),
            other => Err(MfrError::InvalidInput(format!("amp must be None, 'bf16' or 'fp16', got '{other}'"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Amp::Bf16 => "bf16",
            Amp::Fp16 => "fp16",
        }
    }

    /// Its `c10::ScalarType` number.
    fn scalar_type(self) -> i8 {
        match self {
            Amp::Bf16 => 15,
            Amp::Fp16 => 5,
        }
    }
}

// at::autocast's per-device state in the libtorch that torch-sys links (the symbol names are the
// Itanium C++ mangling of the libtorch 2.x declarations; the enums are int8_t, the counters int64_t).
extern "C" {
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn set_autocast_enabled(device: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn is_autocast_enabled(device: i8) -> bool;
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn set_autocast_dtype(device: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn get_autocast_dtype(device: i8) -> i8;
    #[link_name = "_ZN2at8autocast17increment_nestingEv"]
    fn increment_nesting() -> i64;
    #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
    fn decrement_nesting() -> i64;
    #[link_name = "_ZN2at8autocast11clear_cacheEv"]
    fn clear_cache();
}

fn device_type(device: Device) -> i8 {
    match device {
        Device::Cuda(_) => 1,
        _ => 0,
    }
}

/// Autocast on `device` in `amp`'s precision (off for `None`) while it lives; the previous state
/// comes back on drop (and the cast cache is cleared when the outermost region ends), as
/// `torch.autocast(..., enabled=...)` does.
pub struct AutocastGuard {
    device: i8,
    was_enabled: bool,
    old_dtype: i8,
}

impl AutocastGuard {
    pub fn new(device: Device, amp: Option<Amp>) -> AutocastGuard {
        let d = device_type(device);
        // SAFETY: plain setters and getters of libtorch's thread-local autocast state.
        unsafe {
            let guard =
                AutocastGuard { device: d, was_enabled: is_autocast_enabled(d), old_dtype: get_autocast_dtype(d) };
            if let Some(amp) = amp {
                set_autocast_dtype(d, amp.scalar_type());
            }
            set_autocast_enabled(d, amp.is_some());
            increment_nesting();
            guard
        }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe {
            if decrement_nesting() == 0 {
                clear_cache();
            }
            set_autocast_enabled(self.device, self.was_enabled);
            set_autocast_dtype(self.device, self.old_dtype);
        }
    }
}

/// The precision of the caller's autocast region on `device` (a `torch.autocast` around the
/// call), if one is on in bfloat16 or float16.
pub fn current(device: Device) -> Option<Amp> {
    let d = device_type(device);
    // SAFETY: plain getters of libtorch's thread-local autocast state.
    unsafe {
        if !is_autocast_enabled(d) {
            return None;
        }
        match get_autocast_dtype(d) {
            15 => Some(Amp::Bf16),
            5 => Some(Amp::Fp16),
            _ => None,
        }
    }
}

/// Runs `f` with autocast on in `amp`'s precision, or off for `None`.
pub fn autocast<T>(device: Device, amp: Option<Amp>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _guard = AutocastGuard::new(device, amp);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn autocast_lowers_matmul_precision_and_restores_state() {
        let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let inside = autocast(Device::Cpu, Some(Amp::Bf16), || Ok(a.matmul(&a).kind())).unwrap();
        assert_eq!(inside, Kind::BFloat16);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let nested = autocast(Device::Cpu, Some(Amp::Fp16), || {
            autocast(Device::Cpu, Some(Amp::Bf16), || Ok(()))?;
            Ok(a.matmul(&a).kind()) // the inner region restored the outer one's dtype
        })
        .unwrap();
        assert_eq!(nested, Kind::Half);
        let off = autocast(Device::Cpu, Some(Amp::Bf16), || {
            assert_eq!(current(Device::Cpu), Some(Amp::Bf16));
            autocast(Device::Cpu, None, || Ok((a.matmul(&a).kind(), current(Device::Cpu))))
        })
        .unwrap();
        assert_eq!(off, (Kind::Float, None));
        assert_eq!(current(Device::Cpu), None);
    }
}
