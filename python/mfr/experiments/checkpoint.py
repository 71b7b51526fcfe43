"""Checkpoints as safetensors files, written atomically.

A checkpoint is a flat ``{name: tensor}`` mapping plus JSON metadata (safetensors keeps a
``str -> str`` header; ``meta`` is stored under one key as JSON). Writing goes to a temporary file
in the same folder, is flushed to disk, then renamed over the target (``os.replace`` is atomic on
POSIX): whatever moment the process dies at, or if the disk fills up, the previous checkpoint is
still there, whole.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import _core

__all__ = ["flatten_optimizer_state", "load_checkpoint", "save_checkpoint", "unflatten_optimizer_state"]

_META_KEY = "mfr"
_CHUNK = 1 << 20


def _write_chunk(f: Any, data: memoryview) -> None:
    f.write(data)


def save_checkpoint(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous) and JSON-able ``meta`` to ``path``
    atomically. Raises :class:`mfr.DataError` (an ``OSError``) when the file cannot be written; the
    previous file at ``path`` is then untouched."""
    from safetensors.torch import save

    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    try:
        header = {_META_KEY: json.dumps(meta, sort_keys=True)}
    except TypeError as e:
        raise _core.InvalidInputError(f"save_checkpoint: meta must be JSON-serializable: {e}") from None
    blob = save(flat, metadata=header)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            view = memoryview(blob)
            for start in range(0, len(view), _CHUNK):
                _write_chunk(f, view[start : start + _CHUNK])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise _core.DataError(f"save_checkpoint: could not write {path}: {reason}; {kept}") from e
    return path


def check_output_folder(path: str | os.PathLike[str], what: str) -> None:
    """Refuse, before any work, an output folder that cannot be made: an existing file, or a path
    whose nearest existing ancestor is a file or not writable (:class:`mfr.InvalidInputError`)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise _core.InvalidInputError(f"{what} {p}: exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise _core.InvalidInputError(f"{what} {p}: the folder is not writable")
        return
    ancestor = p.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _core.InvalidInputError(f"{what} {p}: cannot be created, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise _core.InvalidInputError(f"{what} {p}: cannot be created, {ancestor} is not writable")


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files :func:`save_checkpoint` left beside ``path`` when its process was
    killed mid-write (``.<name>.tmp-<pid>`` of a process that no longer exists); a live process's
    temp file (another run writing now) is never touched. Returns what was removed."""
    path = Path(path)
    removed: list[Path] = []
    prefix = f".{path.name}.tmp-"
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists under another user (or cannot be asked): leave its file alone
    return True


def load_checkpoint(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a checkpoint written by :func:`save_checkpoint`. A missing,
    truncated or foreign file raises :class:`mfr.DataError` naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise _core.DataError(f"load_checkpoint: cannot read {path}: {e.strerror or e}") from None
    try:
        tensors = load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][_META_KEY])
    except (SafetensorError, ValueError, KeyError, TypeError) as e:
        raise _core.DataError(
            f"load_checkpoint: {path} is not a valid mfr checkpoint (corrupted or truncated?): {e}"
        ) from None
    return {k: v.to(device) for k, v in tensors.items()}, meta


def flatten_optimizer_state(
    state: Mapping[str, Any], prefix: str = "optimizer/"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (per-parameter buffers) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], prefix: str = "optimizer/"
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix) :].split("/", 1)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}
