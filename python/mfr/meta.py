"""The MFR meta-gradient step (Rust core in ``src/meta/step.rs``).

Per split k (meta-train domains S_k, meta-test domains T_k)::

    L_S^k(theta)   = mean_{d in S_k} (w_hp L_hp + w_cls L_cls)(d) + w_da L_da(S_k)
    theta'_k       = theta - alpha * grad L_S^k(theta)       (graph kept; detached if first_order)
    L_T^k(theta')  = mean_{d in T_k} (w_hp L_hp + w_cls L_cls)(d)       at theta'_k
    combined grad  = 1/K sum_k [gamma grad L_S^k(theta) + (1 - gamma) grad_theta L_T^k(theta'_k)]

The combined gradient is *added* to every parameter's ``.grad`` (as ``loss.backward()`` does), so
``optimizer.zero_grad(); step(...); clip_grad_norm_(...); optimizer.step()`` work unchanged. Up to
scale it equals MLDG's ``L_S + beta L_T`` with ``beta = (1 - gamma) / gamma``.

Input structure: ``domains[d]`` is a float tensor (2B, C, S, S): the gallery images of the
meta-batch's B identities of domain d, then their probe images in the same order (one BatchNorm
batch per domain). :func:`domains_from_batch` builds it from a :class:`mfr.MetaBatch` and its
decoded images. ``splits`` are :class:`mfr.sampler.Split` objects or ``(meta_train, meta_test)``
pairs of domain positions. With a single meta-train domain L_da is 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from . import _core
from .nn import Backbone

__all__ = ["MetaStep", "MetaStepConfig", "MetaStepResult", "as_dict", "config_fields", "domains_from_batch", "replace"]


#: MFR's hyperparameters (see the module docstring for their roles): the Rust type itself, frozen
#: and validated on construction (NaN/inf, alpha < 0, gamma outside [0, 1], scale <= 0 and
#: negative weights raise :class:`mfr.InvalidInputError`).
MetaStepConfig = _core.MetaStepConfig
#: What :meth:`MetaStep.step` returns (the Rust type, frozen; :func:`as_dict` gives a dict).
MetaStepResult = _core.MetaStepResult


def config_fields(config_type: type = MetaStepConfig) -> tuple[str, ...]:
    """The field names of a Rust-defined config or result type, sorted (read from the type, so no
    list of them is kept by hand)."""
    return tuple(sorted(name for name, attr in vars(config_type).items() if inspect.isgetsetdescriptor(attr)))


def as_dict(value: Any) -> dict[str, Any]:
    """Fields of a :class:`MetaStepConfig` or :class:`MetaStepResult` as a dict."""
    return {name: getattr(value, name) for name in config_fields(type(value))}


def replace(config: MetaStepConfig, **changes: Any) -> MetaStepConfig:
    """A copy of ``config`` with ``changes`` (validated like any new config)."""
    return MetaStepConfig(**{**as_dict(config), **changes})


def _split_pairs(splits: Sequence[Any]) -> list[tuple[list[int], list[int]]]:
    out = []
    for s in splits:
        train, test = (s.meta_train, s.meta_test) if hasattr(s, "meta_train") else s
        out.append(([int(d) for d in train], [int(d) for d in test]))
    return out


def domains_from_batch(meta_batch: Any, images: torch.Tensor) -> list[torch.Tensor]:
    """Per-domain ``[gallery; probe]`` tensors from a meta-batch with ``images_per_id == 2`` and its
    images decoded in ``meta_batch.flat_indices()`` order (D*B*2 images)."""
    d, b, k = meta_batch.images.shape
    if k != 2:
        raise _core.InvalidInputError(f"domains_from_batch: needs images_per_id == 2, got {k}")
    if images.shape[0] != d * b * k:
        raise _core.InvalidInputError(
            f"domains_from_batch: expected {d * b * k} images (flat_indices order), got {images.shape[0]}"
        )
    x = images.reshape(d, b, k, *images.shape[1:])
    return [torch.cat([x[i, :, 0], x[i, :, 1]]) for i in range(d)]


class MetaStep:
    """``MetaStep(backbone, config).step(domains, splits)``: one MFR meta-step on the backbone's
    device (CPU or CUDA), the GIL released; returns the loss components and hard-pair counts."""

    def __init__(self, backbone: Backbone, config: MetaStepConfig | None = None) -> None:
        if not isinstance(backbone, Backbone):
            raise _core.InvalidInputError(
                f"MetaStep: backbone must be an mfr.nn.Backbone, got {type(backbone).__name__}"
            )
        if config is not None and not isinstance(config, MetaStepConfig):
            raise _core.InvalidInputError(
                f"MetaStep: config must be an mfr.MetaStepConfig, got {type(config).__name__}"
            )
        self.backbone = backbone
        self.config = config or MetaStepConfig()

    def step(self, domains: Sequence[torch.Tensor], splits: Sequence[Any], loss_scale: float = 1.0) -> MetaStepResult:
        """Adds the combined gradient to every parameter's ``.grad`` and returns ``loss_s``,
        ``loss_t`` and ``objective`` (means over splits of L_S, L_T and gamma L_S + (1 - gamma) L_T),
        ``loss_hp``, ``loss_cls``, ``loss_da`` (means over the domains at theta) and the hard-pair
        counts. ``domains[d]`` is ``[gallery; probe]`` (2B images); ``splits`` are
        ``(meta_train, meta_test)`` domain-index pairs or sampler splits.

        With ``config.lean`` (the default) each split is differentiated as soon as it is formed and a
        domain's forward at theta is kept only for the next split that uses it: peak memory near the
        per-split reference's. ``lean=False`` shares every domain's forward across all splits and
        holds every split's second-order graph until one final backward: a little faster, about
        twice the reference's peak memory (``benches/meta_step.py``). Both give the same gradient up
        to rounding. The step leaves glibc's malloc policy alone; ``mfr.tune_heap()`` (what
        ``mfr train`` does on CPU) makes CPU steps reuse freed heap instead of faulting it back in.

        ``config.amp`` (``"bf16"`` / ``"fp16"``) runs the backbone's forwards under libtorch's
        autocast (the state ``torch.autocast`` sets) with float32 parameters; embeddings, losses,
        gradients and theta' stay float32. Called inside a ``torch.autocast`` region, the step
        takes that region's precision for its forwards (as ``amp``) and keeps the rest in float32. ``loss_scale`` multiplies the losses before backward (the
        inner gradient is divided by it again, so theta' is exact) and the gradient written to
        ``.grad``, as ``GradScaler.scale(loss).backward()`` does: float16 needs it against underflow.
        With float16 a non-finite loss is an overflow, not an error: the result has ``skipped=True``,
        nothing is written and the running statistics are as before (lower the scale and go on).

        The step differentiates, so it refuses to run inside ``torch.inference_mode()`` or
        ``torch.no_grad()`` and on inference tensors (:class:`mfr.InvalidInputError`)."""
        if torch.is_inference_mode_enabled() or not torch.is_grad_enabled():
            raise _core.InvalidInputError(
                "MetaStep.step: the meta-step needs autograd; it was called inside torch.inference_mode() or torch.no_grad()"
            )
        for kind, tensors in (
            ("parameter", self.backbone.parameter_list()),
            ("buffer", self.backbone.buffer_list()),
            ("domains", list(domains)),
        ):
            bad = [i for i, t in enumerate(tensors) if isinstance(t, torch.Tensor) and t.is_inference()]
            if bad:
                raise _core.InvalidInputError(
                    f"MetaStep.step: {kind} tensor(s) {bad[:5]} are inference tensors (made inside torch.inference_mode()) and cannot take part in autograd; "
                    "build the backbone and the images outside inference mode"
                )
        buffers = self.backbone.buffer_list()
        # The forwards at theta update BatchNorm's running statistics as they go; a step that raises
        # (e.g. a NaN image makes L_S non-finite) must leave them as they were.
        saved = [b.detach().clone() for b in buffers]
        try:
            return _core.meta_step(
                self.backbone.spec,
                self.backbone.parameter_list(),
                buffers,
                list(domains),
                _split_pairs(splits),
                self.config,
                loss_scale,
            )
        except BaseException:
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)
            raise
