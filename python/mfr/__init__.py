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
    InvalidInputError,
    MfrError,
    MfrWarning,
    cached_memory,
    cosine_scores,
    get_num_threads,
    pair_scores,
    release_cached_memory,
    set_num_threads,
)
from ._info import build_info
from .data import FaceIndex
from .facedata import FaceData
from .meta import MetaStep, MetaStepConfig
from .sampler import DomainSampler, MetaBatch

__version__: str = _core.__version__

#: The harness (``mfr.experiments``): its modules and names stay reachable from ``mfr`` as before
#: (``mfr.Trainer``, ``from mfr.train import TrainConfig``), loaded on first use.
_HARNESS_MODULES = ("checkpoint", "cli", "distributed", "evaluate", "export", "methods", "reproduce", "search", "train")
_HARNESS_NAMES = {
    "TrainConfig": "train",
    "Trainer": "train",
    "run_protocol": "reproduce",
    "ProtocolResult": "reproduce",
}


def __getattr__(name: str) -> object:
    import importlib

    if name == "experiments":
        return importlib.import_module("mfr.experiments")
    if name in _HARNESS_MODULES:
        return importlib.import_module(f"mfr.experiments.{name}")
    if name in _HARNESS_NAMES:
        return getattr(importlib.import_module(f"mfr.experiments.{_HARNESS_NAMES[name]}"), name)
    raise AttributeError(f"module 'mfr' has no attribute {name!r}")


def _install_harness_aliases() -> None:
    """``import mfr.train`` (and the other harness modules' old paths) gives the module of
    ``mfr.experiments``, imported then, so code written before the split keeps working."""
    import importlib
    import importlib.abc
    import importlib.util
    import sys
    from types import ModuleType

    class HarnessAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(
            self, fullname: str, path: object = None, target: object = None
        ) -> importlib.machinery.ModuleSpec | None:
            prefix, _, name = fullname.partition(".")
            if prefix == "mfr" and name in _HARNESS_MODULES:
                return importlib.util.spec_from_loader(fullname, self)
            return None

        def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
            module = importlib.import_module(f"mfr.experiments.{spec.name.partition('.')[2]}")
            self.own_spec = module.__spec__  # the import system sets __spec__ to the alias's
            return module

        def exec_module(self, module: ModuleType) -> None:
            module.__spec__ = self.own_spec  # already executed as mfr.experiments.<name>

    if not any(type(f).__name__ == "HarnessAlias" for f in sys.meta_path):
        sys.meta_path.append(HarnessAlias())


_install_harness_aliases()

__all__ = [
    "DataError",
    "DataWarning",
    "DeviceError",
    "DistributedError",
    "DomainSampler",
    "FaceData",
    "FaceIndex",
    "InvalidInputError",
    "MetaBatch",
    "MetaStep",
    "MetaStepConfig",
    "MfrError",
    "MfrWarning",
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
]
