"""``mfr.build_info()``: one dict that answers "what am I running?" in bug reports and notebooks."""

from __future__ import annotations

import platform
import sys
from typing import Any

import numpy as np
import torch

from . import _core


def build_info() -> dict[str, Any]:
    """Versions, CUDA availability and thread settings of this mfr installation.

    Keys always present: ``mfr`` (the version), ``commit`` (the git commit the core was built from,
    ``-dirty`` when the tree had uncommitted changes, ``unknown`` outside a checkout), ``torch``,
    ``cuda_available``, ``cuda_device_count``, ``num_threads``. ``cuda_available`` and
    ``cuda_device_count`` are what the Rust core sees through libtorch (not only what Python's
    torch reports); ``linked_cuda`` says whether the core
    was linked against ``libtorch_cuda``; ``heap_tuned`` whether ``mfr.tune_heap()`` has set glibc's
    malloc thresholds in this process (the library never does on its own; see docs/meta-step.md).
    """
    core = dict(_core._build_info())
    info: dict[str, Any] = {
        "mfr": core.pop("mfr"),
        "commit": core.pop("commit"),
        "torch": torch.__version__,
        "cuda_available": core.pop("cuda_available"),
        "cuda_device_count": core.pop("cuda_device_count"),
        "num_threads": core.pop("num_threads"),
    }
    info.update(core)
    info["torch_cuda"] = torch.version.cuda
    info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(info["cuda_device_count"])]
    info["numpy"] = np.__version__
    info["python"] = sys.version.split()[0]
    info["platform"] = platform.platform()
    return info
