"""Where a result came from: the machine, the mfr build and commit, and a fingerprint of the data."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import _core
from ..._core import __version__
from ...facedata import FaceData

__all__ = ["data_fingerprint", "hardware", "machine_name", "provenance"]


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mfr_threads": _core.get_num_threads() if hasattr(_core, "get_num_threads") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_name(hw: dict[str, Any]) -> str:
    """What decides a run's speed, in one line: the GPU or the CPU model, cores and torch threads."""
    device = hw.get("gpu") or hw.get("processor") or hw.get("machine") or "unknown"
    return f"{device}, {hw.get('cpu_count')} cores, {hw.get('torch_threads')} torch threads"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance() -> dict[str, Any]:
    """mfr version and, when mfr runs from a git checkout, its commit and whether it was modified."""
    import subprocess

    info: dict[str, Any] = {"mfr": __version__, "git_commit": None, "git_dirty": None}
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            top = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if top.returncode == 0:
                dirty = subprocess.run(
                    ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                info.update(git_commit=top.stdout.strip(), git_dirty=bool(dirty.stdout.strip()), git_dir=str(where))
                break
        except (OSError, subprocess.SubprocessError):
            break
    return info


def data_fingerprint(data: FaceData) -> dict[str, Any]:
    """What the data is, independent of where it lies: per domain its identity and image counts,
    and a SHA-256 over the sorted (domain, identity, file name, content) entries of the index,
    where content is the file's size for data read from disk (one ``stat`` per image) and the
    pixels' own hash for images held in memory (e.g. the synthetic data)."""
    import hashlib

    idx = data.index
    names, id_names = idx.domain_names, idx.identity_names
    doms, ids = idx.domains, idx.identities
    if data.images is not None:
        pixels = data.images.contiguous().numpy()
        content = [hashlib.sha256(pixels[i].tobytes()).hexdigest()[:16] for i in range(len(idx))]
    else:
        content = []
        for p in idx.paths:
            try:
                content.append(str(os.stat(data._path(p)).st_size))
            except OSError:
                content.append("?")
    entries = sorted(
        zip((names[d] for d in doms), (id_names[i] for i in ids), (Path(p).name for p in idx.paths), content)
    )
    h = hashlib.sha256()
    for t in entries:
        h.update("\x1f".join(t).encode("utf-8", "surrogateescape") + b"\x1e")
    return {
        "name": data.name,
        "images": len(idx),
        "domains": {
            n: {"identities": len(np.unique(ids[doms == k])), "images": int((doms == k).sum())}
            for k, n in enumerate(names)
        },
        "sha256": h.hexdigest(),
    }
