"""Mixed precision for training: which autocast dtype a configuration asks for, and the dynamic loss
scale float16 needs (the rule of ``torch.amp.GradScaler``, with its state in mfr's checkpoints).

bfloat16 has float32's range, so it runs unscaled. float16's gradients underflow without a scale:
the losses are multiplied by ``scale`` before backward, the gradients divided by it before the
optimizer; a step whose gradients overflow (inf/NaN) is skipped and the scale halved, and after
``growth_interval`` finite steps in a row it doubles.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from .. import _core

__all__ = ["AMP_MODES", "LossScaler", "autocast", "autocast_dtype"]

#: ``TrainConfig.amp`` values: off, bfloat16 or float16 forwards (float32 weights either way).
AMP_MODES = (None, "bf16", "fp16")


def autocast_dtype(amp: str | None) -> torch.dtype | None:
    if amp not in AMP_MODES:
        raise _core.InvalidInputError(f"amp must be None, 'bf16' or 'fp16', got {amp!r}")
    return {None: None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


@contextlib.contextmanager
def autocast(device: torch.device, amp: str | None) -> Iterator[None]:
    """``torch.autocast`` on ``device`` in ``amp``'s dtype; nothing when ``amp`` is None."""
    dtype = autocast_dtype(amp)
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


class LossScaler:
    """GradScaler's dynamic loss scale, for float16 (``enabled=False``: always 1, never skips)."""

    def __init__(
        self,
        enabled: bool,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        self.enabled = enabled
        self.scale = init_scale if enabled else 1.0
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval
        self.good_steps = 0
        self.skipped = 0

    def unscale(self, parameters: list[torch.nn.Parameter]) -> bool:
        """Divides every gradient by the scale; True if all of them are finite (the step may go on)."""
        if not self.enabled:
            return True
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return True
        with torch.no_grad():
            torch._foreach_mul_(grads, 1.0 / self.scale)
            finite = torch.stack([torch.isfinite(g).all() for g in grads]).all()
        return bool(finite)

    def update(self, finite: bool) -> None:
        if not self.enabled:
            return
        if not finite:
            self.scale *= self.backoff_factor
            self.good_steps = 0
            self.skipped += 1
            if self.scale < 2.0**-24:  # float16's smallest subnormal: no scale can help any more
                raise _core.DataError(
                    "Trainer: float16 gradients are not finite at any loss scale (the scale fell below 2**-24); "
                    "check the images for NaN/inf, lower lr, or train with amp='bf16'"
                )
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale *= self.growth_factor
            self.good_steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped": self.skipped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        scale = float(state["scale"])
        if not (math.isfinite(scale) and scale > 0):
            raise _core.DataError(f"LossScaler: a checkpoint's loss scale must be a finite number > 0, got {scale}")
        self.scale, self.good_steps, self.skipped = scale, int(state["good_steps"]), int(state["skipped"])
