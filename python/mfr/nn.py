"""Functional backbones whose forward runs in Rust (``src/meta/``).

A :class:`Backbone` is an ordinary ``torch.nn.Module``: its parameters are leaf tensors in a
fixed order with ``state_dict`` names, savable with ``torch.save`` or safetensors and loadable
back; ``forward(images, params=None)`` can run with substituted parameters (theta' in the
meta-step). The IR-ResNets and MobileFaceNet use the state_dict names of insightface's
arcface_torch, so its checkpoints load directly (``num_batches_tracked`` entries are ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import _core
from ._core import BackboneSpec

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "StyleMix"]

#: Every architecture :class:`Backbone` accepts.
BACKBONES: tuple[str, ...] = tuple(_core.BACKBONES)


def _init(t: torch.Tensor, kind: str) -> None:
    with torch.no_grad():
        if kind == "conv":
            torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
        elif kind == "conv_normal":
            torch.nn.init.normal_(t, 0.0, 0.1)
        elif kind == "linear":
            fan_in = t.shape[1] if t.dim() == 2 else t.shape[0]
            if t.dim() == 2:
                torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))
            else:
                bound = 1 / math.sqrt(fan_in)
                torch.nn.init.uniform_(t, -bound, bound)
        elif kind == "ones":
            t.fill_(1.0)
        elif kind == "zeros":
            t.zero_()
        elif kind == "prelu":
            t.fill_(0.25)
        else:  # pragma: no cover - specs come from the Rust core
            raise ValueError(kind)


@dataclass(frozen=True)
class StyleMix:
    """MixStyle for one training forward (Zhou et al., ICLR 2021): at each of ``points`` (the
    backbone's style points, 0 = after its first stage; ``Backbone.spec.style_points`` of them),
    every sample's channel means and standard deviations (over height and width, detached) become
    ``weights[i] * own + (1 - weights[i]) * those of sample partners[i]``; the normalized features
    keep their gradient. ``partners``: int64 (N,); ``weights``: (N,) in [0, 1]."""

    partners: torch.Tensor
    weights: torch.Tensor
    points: tuple[int, ...]


class Backbone(torch.nn.Module):
    """A face-embedding network with a Rust forward pass.

    ``name``:

    - ``"small_cnn"`` (default; CPU work): four conv3x3-BN-PReLU-maxpool blocks (channels
      ``width`` x 1, 2, 4, 8; width 16) and a linear + BatchNorm1d embedding (128-d);
      ``input_size`` a multiple of 16 (default 64).
    - ``"iresnet18" | "iresnet34" | "iresnet50" | "iresnet100"``: insightface arcface_torch's
      IR-ResNets (112x112 -> 512-d; width 64, the embedding BN's scale frozen at 1).
    - ``"resnet28"``: the paper's ResNet-28, as an IR-ResNet with (2, 3, 5, 3) blocks: 28 weight
      layers (stem, 26 block convs, embedding fc; shortcuts not counted).
    - ``"mobilefacenet"``: arcface_torch's MobileFaceNet (``get_mbf``; width 128 = 64 x scale 2).

    ``width`` scales every channel count (narrow networks for tests and CPU runs);
    ``in_channels`` is 1 or 3. Images are float tensors (N, C, S, S) of the parameters' dtype and
    device (see :func:`mfr.data.normalize_images`).

    BatchNorm: in training mode every call normalizes with its own batch statistics and updates the
    running statistics (unless ``params`` are substituted, as the meta-step's theta' passes); eval
    mode uses the running statistics. :meth:`embed` with ``bn="target"`` (or
    :meth:`adapt_batchnorm`) uses a target domain's own statistics instead.
    """

    def __init__(
        self,
        name: str = "small_cnn",
        embedding_dim: int | None = None,
        in_channels: int = 3,
        input_size: int | None = None,
        width: int | None = None,
    ) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise _core.InvalidInputError(f"Backbone: unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
        if input_size is None:
            input_size = 64 if name == "small_cnn" else 112
        #: The architecture (built once, in Rust): sizes and every tensor's (name, shape, init).
        self.spec = BackboneSpec(name, in_channels, input_size, width, embedding_dim)
        self.name = name
        params, buffers = self.spec.params, self.spec.buffers
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
    def in_channels(self) -> int:
        return self.spec.in_channels

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    def config(self) -> dict[str, Any]:
        """The constructor arguments: ``Backbone(**net.config())`` builds the same architecture."""
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "width": self.width,
            "embedding_dim": self.embedding_dim,
        }

    def parameter_list(self) -> list[torch.Tensor]:
        """Parameters in the core's order."""
        return [self.get_parameter(n) for n in self.param_names]

    def buffer_list(self) -> list[torch.Tensor]:
        """Buffers (BatchNorm running statistics, frozen scales) in the core's order."""
        return [self.get_buffer(n) for n in self.buffer_names]

    def forward(
        self,
        images: torch.Tensor,
        params: Sequence[torch.Tensor] | Mapping[str, torch.Tensor] | None = None,
        mix: StyleMix | None = None,
    ) -> torch.Tensor:
        """Embeddings of ``images``; ``params`` substituted for the module's own (theta'); ``mix``:
        MixStyle at some style points (training mode only)."""
        if self.training and isinstance(images, torch.Tensor) and images.dim() == 4 and images.shape[0] == 1:
            # As torch.nn.BatchNorm: one image has no batch variance, and its statistics would
            # make the running variance non-finite.
            raise _core.InvalidInputError(
                "Backbone.forward: a training-mode batch needs more than 1 image (BatchNorm statistics of one image are undefined); "
                "use eval mode (net.eval()) or embed() for single images"
            )
        if params is None:
            ps, mode = self.parameter_list(), ("train" if self.training else "eval")
        else:
            ps = [params[n] for n in self.param_names] if isinstance(params, Mapping) else list(params)
            mode = "train_no_update" if self.training else "eval"
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and any(p.is_inference() for p in ps):
            raise _core.InvalidInputError(
                "Backbone.forward: the parameters are inference tensors (the backbone was built or loaded inside torch.inference_mode()) "
                "and cannot take part in autograd; build it outside inference mode, or call it under torch.inference_mode()/torch.no_grad()"
            )
        if mix is None:
            return _core.backbone_forward(self.spec, ps, self.buffer_list(), images, mode)
        return _core.backbone_forward(
            self.spec, ps, self.buffer_list(), images, mode, None, (mix.partners, mix.weights, list(mix.points))
        )

    @torch.no_grad()
    def embed(
        self, images: torch.Tensor, batch_size: int = 256, bn: str = "running", flip: bool = False
    ) -> torch.Tensor:
        """Embeddings of many images, in chunks, without gradients and without changing the module.

        ``bn="running"``: eval mode with the running statistics (the usual evaluation).
        ``bn="target"``: the images' own BatchNorm statistics (AdaBN-style, treating ``images`` as
        one target domain): running statistics are re-estimated on them as a cumulative average
        over the chunks, on a copy, and the embeddings computed with those.
        ``flip=True``: the sum of the embeddings of each image and its mirror image (insightface's
        flip-averaged test embedding; its direction is what cosine scores see)."""
        if bn not in ("running", "target"):
            raise _core.InvalidInputError(f"Backbone.embed: bn must be 'running' or 'target', got {bn!r}")
        if batch_size < 1:
            raise _core.InvalidInputError(f"Backbone.embed: batch_size must be >= 1, got {batch_size}")
        params, buffers = self.parameter_list(), self.buffer_list()
        if bn == "target":
            buffers = [b.clone() for b in buffers]
            self._reestimate(
                params, buffers, (images[i : i + batch_size] for i in range(0, images.shape[0], batch_size))
            )
        chunks = [
            _core.backbone_forward(self.spec, params, buffers, images[i : i + batch_size], "eval")
            for i in range(0, images.shape[0], batch_size)
        ]
        if not chunks:
            return torch.empty(0, self.embedding_dim, dtype=params[0].dtype, device=params[0].device)
        out = torch.cat(chunks)
        if flip:  # the mirror images through the same statistics
            mirrored = images.flip(-1)
            out = out + torch.cat(
                [
                    _core.backbone_forward(self.spec, params, buffers, mirrored[i : i + batch_size], "eval")
                    for i in range(0, images.shape[0], batch_size)
                ]
            )
        return out

    @torch.no_grad()
    def adapt_batchnorm(self, batches: Iterable[torch.Tensor]) -> None:
        """Re-estimate every BatchNorm's running statistics (in place) on ``batches`` of one target
        domain: a cumulative average over the batches (each batch weighs the same), as
        ``momentum=None`` does in PyTorch."""
        self._reestimate(self.parameter_list(), self.buffer_list(), batches)

    def _reestimate(
        self, params: list[torch.Tensor], buffers: list[torch.Tensor], batches: Iterable[torch.Tensor]
    ) -> None:
        stats = [(n, b) for n, b in zip(self.buffer_names, buffers) if n.endswith(("running_mean", "running_var"))]
        saved = [b.clone() for _, b in stats]
        for n, b in stats:
            b.fill_(0.0 if n.endswith("running_mean") else 1.0)
        k = 0
        for batch in batches:
            if batch.shape[0] < 2:
                continue  # one sample has no variance; BatchNorm rejects it
            _core.backbone_forward(self.spec, params, buffers, batch, "train", 1.0 / (k + 1))
            k += 1
        if k == 0:
            for (_, b), old in zip(stats, saved):
                b.copy_(old)
            raise _core.InvalidInputError(
                "Backbone: re-estimating BatchNorm statistics needs at least one batch of >= 2 images"
            )

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """As ``nn.Module.load_state_dict``, ignoring ``num_batches_tracked`` entries (written by
        ``nn.BatchNorm`` models such as arcface_torch's) and raising
        :class:`mfr.InvalidInputError` naming the mismatch when a checkpoint of another
        architecture is loaded."""
        state = {k: v for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
        if strict:
            own = self.state_dict()
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            wrong = [
                f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
                for k in own
                if k in state and tuple(state[k].shape) != tuple(own[k].shape)
            ]
            if missing or unexpected or wrong:
                parts = []
                for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
                    if items:
                        more = f" and {len(items) - 3} more" if len(items) > 3 else ""
                        parts.append(f"{label}: {', '.join(items[:3])}{more}")
                raise _core.InvalidInputError(
                    f"Backbone.load_state_dict: the state does not fit {self.extra_repr()} ({'; '.join(parts)})"
                )
        return super().load_state_dict(state, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        p = self.spec
        return f"name={p.name!r}, in_channels={p.in_channels}, input_size={p.input_size}, width={p.width}, embedding_dim={p.embedding_dim}"
