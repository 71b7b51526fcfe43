//! Integer arguments. pyo3's own conversion to `u64`/`usize`/`i64` raises `OverflowError` for a
//! negative or huge value before the binding runs; every integer argument therefore arrives as an
//! [`Int`] (any Python integer, or a note that it was none) and is checked against its range
//! where it enters, so a bad value is an `InvalidInputError` naming the function, the argument and
//! the allowed range.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;

use crate::error::MfrError;

/// An integer argument as Python passed it.
#[derive(Clone, Debug)]
pub(crate) enum Int {
    Value(i128),
    /// Beyond `i128` (Python ints are unbounded); the repr, shortened.
    Huge(String),
    /// Not an integer (float, str, ...); the type name.
    NotAnInteger(String),
}

impl<'py> FromPyObject<'py> for Int {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        // `extract::<i128>` takes `int`, `bool` and anything with `__index__` (numpy integers).
        Ok(match ob.extract::<i128>() {
            Ok(v) => Int::Value(v),
            Err(e) if e.is_instance_of::<PyOverflowError>(ob.py()) => {
                let repr = ob.repr().map(|r| r.to_string()).unwrap_or_default();
                let short = if repr.len() > 24 { format!("{}...({} digits)", &repr[..12], repr.len()) } else { repr };
                Int::Huge(short)
            }
            Err(_) => {
                Int::NotAnInteger(ob.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into()))
            }
        })
    }
}

/// `2**64 - 1` rather than 18446744073709551615 for the usual bounds.
fn bound(v: i128) -> String {
    match [64u32, 63, 32, 31].into_iter().find(|&bits| v == (1i128 << bits) - 1) {
        Some(bits) => format!("2**{bits} - 1"),
        None => v.to_string(),
    }
}

impl Int {
    pub(crate) const fn new(v: i128) -> Self {
        Int::Value(v)
    }

    /// The value as `T` when it is an integer in `lo..=hi`.
    pub(crate) fn get<T: TryFrom<i128>>(&self, func: &str, name: &str, lo: i128, hi: i128) -> crate::Result<T> {
        let range = format!("[{}, {}]", bound(lo), bound(hi));
        let got = match self {
            Int::Value(v) if (lo..=hi).contains(v) => {
                return T::try_from(*v)
                    .map_err(|_| MfrError::internal(format!("{func}: range of '{name}' wider than its type")))
            }
            Int::Value(v) => v.to_string(),
            Int::Huge(r) => r.clone(),
            Int::NotAnInteger(t) => {
                return Err(MfrError::invalid(
                    func,
                    format!("argument '{name}' must be an integer in {range}, got {t}"),
                ))
            }
        };
        Err(MfrError::invalid(func, format!("argument '{name}' must be an integer in {range}, got {got}")))
    }

    /// Any integer in `[0, 2**64 - 1]`: seeds, draws, record keys, epochs.
    pub(crate) fn any_u64(&self, func: &str, name: &str) -> crate::Result<u64> {
        self.get(func, name, 0, i128::from(u64::MAX))
    }
}

/// Each element of a list argument in `lo..=hi` (the message names the position).
pub(crate) fn ints<T: TryFrom<i128>>(
    items: &[Int],
    func: &str,
    name: &str,
    lo: i128,
    hi: i128,
) -> crate::Result<Vec<T>> {
    items.iter().enumerate().map(|(i, v)| v.get(func, &format!("{name}[{i}]"), lo, hi)).collect()
}

/// The largest count or size any argument may name: what an `i64` tensor dimension holds.
pub(crate) const MAX_COUNT: i128 = i64::MAX as i128;
