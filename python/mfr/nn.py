"""Functional backbones whose forward runs in Rust (``src/meta/backbone.rs``).

A :class:`Backbone` is an ordinary ``torch.nn.Module``: its parameters are leaf tensors in a
fixed order with ``state_dict`` names (``block0.conv.weight``, ...), savable with ``torch.save`` or
safetensors and loadable back; ``forward(images, params=None)`` can run with substituted
parameters (theta' in the meta-step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from . import _core

__all__ = ["Backbone", "BACKBONES"]

BACKBONES = ("small_cnn",)


def _init(t: torch.Tensor, kind: str) -> None:
    with torch.no_grad():
        if kind == "conv":
            torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
        elif kind == "linear":
            fan_in = t.shape[1] if t.dim() == 2 else t.shape[0]
            bound = 1 / math.sqrt(fan_in)
            if t.dim() == 2:
                torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))
            else:
                torch.nn.init.uniform_(t, -bound, bound)
        elif kind == "ones":
            t.fill_(1.0)
        elif kind == "zeros":
            t.zero_()
        elif kind == "prelu":
            t.fill_(0.25)
        else:  # pragma: no cover - specs come from the Rust core
            raise ValueError(kind)


class Backbone(torch.nn.Module):
    """A face-embedding network with a Rust forward pass.

    ``name="small_cnn"``: four conv3x3-BN-PReLU-maxpool blocks (channels ``width`` x 1, 2, 4, 8) and
    a linear + BatchNorm1d embedding; ``input_size`` must be a multiple of 16, ``in_channels`` 1 or
    3. Images are float tensors (N, C, S, S) of the parameters' dtype and device (use
    :func:`mfr.data.normalize_images`).

    BatchNorm: in training mode every call normalizes with its own batch statistics and updates the
    running statistics (unless ``params`` are substituted, as the meta-step's theta' passes);
    eval mode uses the running statistics.
    """

    def __init__(self, name: str = "small_cnn", embedding_dim: int = 128, in_channels: int = 3, input_size: int = 64, width: int = 16) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise _core.InvalidInputError(f"Backbone: unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
        self.name = name
        self.arch = (int(in_channels), int(input_size), int(width), int(embedding_dim))
        params, buffers = _core.small_cnn_specs(*self.arch)
        self.param_names = [n for n, _, _ in params]
        self.buffer_names = [n for n, _, _ in buffers]
        for n, shape, init in params:
            t = torch.empty(shape)
            _init(t, init)
            self._holder(n).register_parameter(n.rsplit(".", 1)[1], torch.nn.Parameter(t))
        for n, shape, init in buffers:
            t = torch.empty(shape)
            _init(t, init)
            self._holder(n).register_buffer(n.rsplit(".", 1)[1], t)

    def _holder(self, dotted: str) -> torch.nn.Module:
        module: torch.nn.Module = self
        for part in dotted.split(".")[:-1]:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        return module

    @property
    def embedding_dim(self) -> int:
        return self.arch[3]

    def parameter_list(self) -> list[torch.Tensor]:
        """Parameters in the core's order."""
        return [self.get_parameter(n) for n in self.param_names]

    def buffer_list(self) -> list[torch.Tensor]:
        return [self.get_buffer(n) for n in self.buffer_names]

    def forward(self, images: torch.Tensor, params: Sequence[torch.Tensor] | dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if params is None:
            ps, mode = self.parameter_list(), ("train" if self.training else "eval")
        else:
            ps = [params[n] for n in self.param_names] if isinstance(params, dict) else list(params)
            mode = "train_no_update" if self.training else "eval"
        return _core.small_cnn_forward(self.arch, ps, self.buffer_list(), images, mode)

    def extra_repr(self) -> str:
        c, s, w, d = self.arch
        return f"name={self.name!r}, in_channels={c}, input_size={s}, width={w}, embedding_dim={d}"
