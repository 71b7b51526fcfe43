//! The one error type of the crate. The binding layer maps each variant to a Python exception
//! (`src/python/errors.rs`), so every message states what was wrong and what was expected.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MfrError {
    /// Bad argument: wrong dtype, shape, value, length... (`mfr.InvalidInputError`).
    #[error("{0}")]
    InvalidInput(String),
    /// A request larger than the memory this process can have: available memory, its
    /// address-space limit, or any address space (`mfr.OutOfMemoryError`, an `InvalidInputError`
    /// and a `MemoryError`). Refused before allocating, since a failed Rust allocation aborts.
    #[error("{0}")]
    OutOfMemory(String),
    /// Unreadable, missing or corrupt data on disk (`mfr.DataError`).
    #[error("{0}")]
    Data(String),
    /// Wrong or unavailable device, device mismatch (`mfr.DeviceError`).
    #[error("{0}")]
    Device(String),
    /// An error raised inside libtorch (`mfr.MfrError`).
    #[error("libtorch error: {0}")]
    Torch(#[from] tch::TchError),
    /// A bug in mfr (a caught panic, a broken invariant) (`mfr.MfrError`).
    #[error("internal error in mfr (please report it): {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, MfrError>;

impl MfrError {
    /// `func: message`, the convention for argument errors.
    pub fn invalid(func: &str, message: impl std::fmt::Display) -> Self {
        MfrError::InvalidInput(format!("{func}: {message}"))
    }

    pub fn out_of_memory(func: &str, message: impl std::fmt::Display) -> Self {
        MfrError::OutOfMemory(format!("{func}: {message}"))
    }

    pub fn device(func: &str, message: impl std::fmt::Display) -> Self {
        MfrError::Device(format!("{func}: {message}"))
    }

    pub fn data(func: &str, message: impl std::fmt::Display) -> Self {
        MfrError::Data(format!("{func}: {message}"))
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        MfrError::Internal(message.to_string())
    }

    /// Turns a caught panic payload into an error instead of letting it unwind into Python.
    pub fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "unknown panic payload".to_owned()
        };
        MfrError::Internal(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors() {
        let caught = |f: fn()| MfrError::from_panic(std::panic::catch_unwind(f).unwrap_err());
        assert!(matches!(caught(|| panic!("boom {}", 3)), MfrError::Internal(m) if m.contains("boom 3")));
        assert!(matches!(caught(|| panic!("static")), MfrError::Internal(m) if m == "static"));
    }

    #[test]
    fn invalid_message_names_function() {
        let e = MfrError::invalid("roc_curve", "labels must be 0/1");
        assert_eq!(e.to_string(), "roc_curve: labels must be 0/1");
    }
}
