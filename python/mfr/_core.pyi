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
    "roc_curve",
    "roc_auc",
    "eer",
    "tar_at_far",
    "kfold_accuracy",
    "identification_ranks",
    "verification_summary",
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
def roc_curve(
    scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike, drop_intermediate: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(fpr, tpr, thresholds), point for point as sklearn.metrics.roc_curve."""

def roc_auc(scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count one half)."""

def eer(scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike) -> tuple[float, float]:
    """(equal error rate, threshold)."""

def tar_at_far(
    scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike, fars: list[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(tar, threshold) per target FAR; NaN where a target is below 1/(impostor pairs)."""

def kfold_accuracy(
    scores: torch.Tensor | npt.ArrayLike, labels: torch.Tensor | npt.ArrayLike, n_folds: int = 10, protocol: str = "exact"
) -> dict[str, Any]:
    """k-fold accuracy: keys mean, std, fold_accuracies, thresholds, val (insightface VAL@FAR or None)."""

def identification_ranks(
    gallery: torch.Tensor | npt.ArrayLike,
    gallery_ids: torch.Tensor | npt.ArrayLike,
    probes: torch.Tensor | npt.ArrayLike,
    probe_ids: torch.Tensor | npt.ArrayLike,
) -> npt.NDArray[np.int64]:
    """1-based rank of each probe's best gallery mate (closed set), int64 array of length P."""

def verification_summary(
    scores: torch.Tensor | npt.ArrayLike,
    labels: torch.Tensor | npt.ArrayLike,
    fars: list[float],
    n_bootstrap: int = 0,
    seed: int = 0,
    groups: torch.Tensor | npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """ROC (drop_intermediate), AUC, EER, TAR@FAR, best accuracy and bootstrap rows from one sort."""
