"""mfr: Meta Face Recognition (Guo et al., CVPR 2020) with a Rust core.

``import mfr`` imports torch first: the compiled core links the libtorch inside the installed
``torch`` package and exchanges tensors with it, so the versions must match exactly.
"""

from __future__ import annotations

import torch as _torch

from ._version import REQUIRED_TORCH as _REQUIRED_TORCH

if _torch.__version__.split("+")[0] != _REQUIRED_TORCH:
    raise ImportError(
        f"mfr needs torch=={_REQUIRED_TORCH} (its Rust core links that libtorch), "
        f"but torch {_torch.__version__} is installed; install torch=={_REQUIRED_TORCH}"
    )

from . import _core, data, facedata, losses, meta, metrics, nn, sampler, synthetic
from ._core import (
    DataError,
    DataWarning,
    DeviceError,
    DistributedError,
    FolderInUseError,
    FolderLockWarning,
    InvalidInputError,
    MfrError,
    MfrWarning,
    OutOfMemoryError,
    cached_memory,
    cosine_scores,
    get_num_threads,
    pair_scores,
    release_cached_memory,
    set_num_threads,
    tune_heap,
)
from ._info import build_info
from .data import FaceIndex
from .facedata import FaceData
from .meta import MetaStep, MetaStepConfig
from .sampler import DomainSampler, MetaBatch

__version__: str = _core.__version__

#: Names of the harness (``mfr.experiments``) reachable from ``mfr``, loaded on first use so that
#: ``import mfr`` stays the library alone.
_HARNESS_NAMES = {
    "TrainConfig": "config",
    "Trainer": "train",
    "run_protocol": "reproduce",
    "ProtocolResult": "reproduce",
}


def __getattr__(name: str) -> object:
    import importlib

    if name == "experiments":
        return importlib.import_module("mfr.experiments")
    if name in _HARNESS_NAMES:
        return getattr(importlib.import_module(f"mfr.experiments.{_HARNESS_NAMES[name]}"), name)
    raise AttributeError(f"module 'mfr' has no attribute {name!r}")


__all__ = [
    "DataError",
    "DataWarning",
    "DeviceError",
    "DistributedError",
    "DomainSampler",
    "FaceData",
    "FaceIndex",
    "FolderInUseError",
    "FolderLockWarning",
    "InvalidInputError",
    "MetaBatch",
    "MetaStep",
    "MetaStepConfig",
    "MfrError",
    "MfrWarning",
    "OutOfMemoryError",
    "TrainConfig",
    "Trainer",
    "__version__",
    "build_info",
    "cached_memory",
    "cosine_scores",
    "data",
    "experiments",
    "facedata",
    "get_num_threads",
    "losses",
    "meta",
    "metrics",
    "nn",
    "pair_scores",
    "release_cached_memory",
    "sampler",
    "set_num_threads",
    "synthetic",
    "tune_heap",
]
