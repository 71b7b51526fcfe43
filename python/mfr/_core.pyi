"""Type stubs of the compiled Rust core ``mfr._core`` (checked against the module by the tests)."""

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

__version__: str
__all__ = [
    "__version__",
    "MfrError",
    "InvalidInputError",
    "DataError",
    "DeviceError",
    "_raise_panic_for_tests",
    "_build_info",
    "set_num_threads",
    "get_num_threads",
    "cosine_scores",
    "pair_scores",
]

class MfrError(Exception):
    """Base class of every error raised by mfr."""

class InvalidInputError(MfrError, ValueError):
    """An argument has the wrong dtype, shape, device layout or value."""

class DataError(MfrError, OSError):
    """Data on disk is missing, unreadable or corrupt."""

class DeviceError(MfrError, RuntimeError):
    """A tensor is on the wrong or an unavailable device."""

def _build_info() -> dict[str, Any]: ...
def _raise_panic_for_tests(message: str) -> None: ...
def set_num_threads(n: int) -> None:
    """Sets the Rust pool's thread count; 0 restores the default (MFR_NUM_THREADS, else all cores)."""

def get_num_threads() -> int:
    """Threads the Rust pool uses for the next parallel call."""

def cosine_scores(a: torch.Tensor | npt.ArrayLike, b: torch.Tensor | npt.ArrayLike) -> torch.Tensor:
    """Row-wise cosine of two (N, D) float32 contiguous tensors on one device -> (N,) float32 on it."""

def pair_scores(embeddings: torch.Tensor | npt.ArrayLike, pairs: torch.Tensor | npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Cosine of embeddings[i], embeddings[j] per (i, j) row of the (M, 2) integer ``pairs`` -> (M,) float64."""
