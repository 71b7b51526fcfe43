"""Loading trained weights: a checkpoint's backbone for evaluation or export
(:func:`load_backbone`), and a backbone's starting weights from an mfr checkpoint or a state dict
as arcface_torch saves it (:func:`load_init_weights`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .. import _core
from ..nn import Backbone
from .checkpoint import load_checkpoint
from .config import resolve_device

__all__ = ["CHECKPOINT_FORMAT", "load_backbone", "load_init_weights", "tensors_under"]

#: The ``format`` an mfr checkpoint's metadata names.
CHECKPOINT_FORMAT = "mfr-checkpoint-1"


def tensors_under(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries named ``prefix<name>``, as ``{name: tensor}``."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def load_init_weights(backbone: Backbone, path: str | os.PathLike[str]) -> None:
    """Load starting weights into ``backbone`` from ``path``: an mfr training checkpoint (its
    backbone), a safetensors state dict, or a ``torch.save``d state dict (``.pth`` / ``.pt``, read
    with ``weights_only=True``; a ``{"state_dict": ...}`` wrapper and ``module.`` / ``backbone.``
    prefixes, as DataParallel and training scripts write them, are accepted). A file that does not
    fit the backbone raises :class:`mfr.InvalidInputError` naming the mismatch."""
    path = Path(path)
    if not path.is_file():
        raise _core.DataError(
            f"init: {path} is not a file (expected an mfr checkpoint or a .pth/.pt/.safetensors state dict)"
        )
    state: Mapping[str, Any]
    if path.suffix == ".safetensors":
        tensors, meta = _read_safetensors(path)
        state = tensors_under(tensors, "model/") if meta.get("format") == CHECKPOINT_FORMAT else tensors
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickle errors, foreign objects refused by weights_only, truncation
            raise _core.DataError(
                f"init: cannot read {path} as a torch.save state dict (torch.load: {_cause(e)})"
            ) from None
        if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
            raise _core.DataError(f"init: {path} does not hold a state dict of tensors")
        state = loaded
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    ref = backbone.parameter_list()[0]
    with torch.no_grad():
        backbone.load_state_dict({k: v.to(ref.device) for k, v in state.items()})


def _cause(e: BaseException) -> str:
    """One line saying why torch.load refused a file: its weights-only unpickler explains over many
    lines (how to load unsafe files, where to file an issue); the text after "WeightsUnpickler
    error:" is the cause."""
    text = str(e)
    _, marker, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if marker else text).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of a safetensors file and, when it is an mfr checkpoint, its metadata."""
    try:
        return load_checkpoint(path)
    except _core.DataError:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), {}
        except (SafetensorError, OSError) as e:
            raise _core.DataError(f"init: cannot read {path} as safetensors: {e}") from None


def load_backbone(path: str | os.PathLike[str], device: str = "cpu") -> tuple[Backbone, dict[str, Any]]:
    """The trained backbone of a checkpoint (and the checkpoint's metadata)."""
    tensors, meta = load_checkpoint(path, resolve_device(device))
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise _core.DataError(f"load_backbone: {path} is not an mfr training checkpoint")
    net = Backbone(**meta["backbone"]).to(resolve_device(device))
    weights = tensors_under(tensors, "model/")
    broken = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise _core.DataError(
            f"load_backbone: {path} holds non-finite (NaN/inf) weights in {', '.join(broken[:3])}{' and more' if len(broken) > 3 else ''}: the run that wrote it diverged"
        )
    net.load_state_dict(weights)
    net.eval()
    return net, meta
