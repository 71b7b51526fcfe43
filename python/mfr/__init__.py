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

from . import _core
from ._core import (
    DataError,
    DeviceError,
    InvalidInputError,
    MfrError,
    cosine_scores,
    get_num_threads,
    pair_scores,
    set_num_threads,
)
from . import data, losses, meta, metrics, nn, sampler
from .meta import MetaStep, MetaStepConfig
from .data import FaceIndex
from .sampler import DomainSampler, MetaBatch
from ._info import build_info
from . import checkpoint, distributed, evaluate, facedata, methods, train
from .facedata import FaceData
from .train import TrainConfig, Trainer

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "build_info",
    "metrics",
    "data",
    "losses",
    "nn",
    "meta",
    "MetaStep",
    "MetaStepConfig",
    "sampler",
    "FaceIndex",
    "DomainSampler",
    "MetaBatch",
    "FaceData",
    "TrainConfig",
    "Trainer",
    "checkpoint",
    "distributed",
    "evaluate",
    "facedata",
    "methods",
    "train",
    "set_num_threads",
    "get_num_threads",
    "cosine_scores",
    "pair_scores",
    "MfrError",
    "InvalidInputError",
    "DataError",
    "DeviceError",
]
