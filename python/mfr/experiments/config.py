"""``TrainConfig``: everything that defines a training run, each field declared once with its
default, help text, allowed values and command-line aliases (the ``mfr`` command's flags and
:meth:`TrainConfig.check` read them); and reading configurations from mappings, TOML/YAML files
and ``--set KEY=VALUE`` items."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import _core
from ..meta import MetaStepConfig, config_fields
from ..nn import BACKBONES, Backbone
from .methods import METHODS, OPTION_DEFAULTS

__all__ = ["TrainConfig", "config_from_mapping", "parse_config_file", "parse_field", "parse_set", "resolve_device"]

_META_DEFAULTS = MetaStepConfig()

#: SWAD's window opens once the loss stops falling over this many evaluations (its n_converge).
SWAD_MIN_EVALUATIONS = 3


def _field(default: Any, help: str, choices: tuple[Any, ...] = (), aliases: tuple[str, ...] = ()) -> Any:
    """A TrainConfig field with its default, help text, allowed values and command-line aliases,
    declared once: the command line's flags (:mod:`mfr.experiments.cli`) and :meth:`TrainConfig.check`
    read them."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "aliases": aliases})


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in checkpoints and results).

    ``method``: one of :data:`mfr.experiments.methods.METHODS`. ``backbone``, ``input_size``, ``channels``,
    ``width``, ``embedding_dim``: the :class:`mfr.nn.Backbone`. ``ids_per_domain`` (B) identities x
    (gallery, probe) per source domain and meta-batch, clamped to the smallest source domain's
    identity count (``Trainer.ids_per_domain``). ``split``: ``"random"`` (one seeded meta-test
    domain per meta-batch, the paper's algorithm) or ``"leave_one_out"`` (every rotation).
    Optimizer ``sgd`` (momentum, weight decay) or ``adam``; learning rate ``lr`` with linear
    warm-up over ``warmup_steps`` then ``cosine`` decay to 0, ``step`` (/10 at 1/3 and 2/3) or
    ``constant``; ``grad_clip``: max global gradient norm (None: off). ``alpha`` ... ``first_order``:
    :class:`mfr.MetaStepConfig` (MFR and MLDG). ``head_scale`` / ``margin``: classifier heads.
    ``lean``: the meta-step's memory-lean schedule (:class:`mfr.MetaStepConfig`). ``amp``:
    ``None``, ``"bf16"`` or ``"fp16"`` forwards for every method (float32 weights; fp16 with a
    dynamic loss scale, :class:`mfr.experiments.precision.LossScaler`, kept in checkpoints);
    ``tf32``: TensorFloat-32 on CUDA. ``dtype``: float32 or float64 parameters. ``eval_every`` / ``log_every`` /
    ``checkpoint_every``: in steps (0: never; a checkpoint is always written at the end).
    ``init``: start the backbone from these weights instead of a random initialisation (an mfr
    checkpoint, or a state dict as arcface_torch saves it: ``.pth`` / ``.pt`` / ``.safetensors``;
    see :func:`load_init_weights`); heads and optimizer always start fresh.
    """

    method: str = _field("mfr", "the training method (mfr.experiments.methods.METHODS)")
    backbone: str = _field("small_cnn", "small_cnn, iresnet18/34/50/100, resnet28, mobilefacenet")
    input_size: int = _field(32, "image side in pixels")
    channels: int = _field(3, "image channels", choices=(1, 3))
    width: int | None = _field(8, "backbone base width (published models: 64)")
    embedding_dim: int | None = _field(64, "embedding size")
    ids_per_domain: int = _field(8, "identities per source domain in a meta-batch (B)", aliases=("--batch-ids",))
    split: str = _field(
        "random",
        "meta-test domain per meta-batch: one random (the paper's algorithm) or every rotation",
        choices=("random", "leave_one_out"),
    )
    steps: int = _field(200, "training steps")
    optimizer: str = _field("sgd", "optimizer (sgd with momentum and weight decay)", choices=("sgd", "adam"))
    lr: float = _field(0.05, "learning rate after warm-up")
    momentum: float = _field(0.9, "SGD momentum")
    weight_decay: float = _field(5e-4, "weight decay")
    schedule: str = _field(
        "cosine", "learning-rate decay after warm-up (step: /10 at 1/3 and 2/3)", choices=("cosine", "step", "constant")
    )
    warmup_steps: int = _field(10, "linear learning-rate warm-up steps")
    grad_clip: float | None = _field(5.0, "max global gradient norm (none: off)")
    # MFR / MLDG meta-step: MetaStepConfig's fields with its (Rust) defaults, flat here so the CLI,
    # the search spaces and results.json name them directly (a test keeps the two in step).
    alpha: float = _field(_META_DEFAULTS.alpha, "meta-step: inner learning rate (theta' = theta - alpha grad L_S)")
    gamma: float = _field(_META_DEFAULTS.gamma, "meta-step: weight of L_S against L_T(theta')")
    tau_p: float = _field(_META_DEFAULTS.tau_p, "MFR: hard-positive similarity threshold")
    tau_n: float = _field(_META_DEFAULTS.tau_n, "MFR: hard-negative similarity threshold")
    scale: float = _field(_META_DEFAULTS.scale, "MFR: scale of the soft-classification logits")
    w_hp: float = _field(_META_DEFAULTS.w_hp, "MFR: weight of the hard-pair attention loss")
    w_cls: float = _field(_META_DEFAULTS.w_cls, "MFR: weight of the soft-classification loss")
    w_da: float = _field(_META_DEFAULTS.w_da, "MFR: weight of the domain-alignment loss")
    first_order: bool = _field(_META_DEFAULTS.first_order, "meta-step: first-order meta-gradient")
    lean: bool = _field(_META_DEFAULTS.lean, "meta-step: the memory-lean schedule (same gradient)")
    amp: str | None = _field(
        _META_DEFAULTS.amp,
        "mixed precision for every method's forwards (float32 weights; fp16 with a dynamic loss scale)",
        choices=("bf16", "fp16"),
    )
    tf32: bool = _field(False, "TensorFloat-32 matmuls and convolutions on CUDA")
    head_scale: float = _field(30.0, "classifier heads (mldg, softmax, cosface, arcface): logit scale")
    margin: float | None = _field(None, "margin of the margin heads (none: the method's own default)")
    coral_weight: float = _field(
        OPTION_DEFAULTS["coral_weight"], "coral: weight of the CORAL penalty (mean and covariance differences)"
    )
    mixstyle_p: float = _field(
        OPTION_DEFAULTS["mixstyle_p"], "mixstyle: probability that a training batch mixes styles at each style point"
    )
    mixstyle_alpha: float = _field(
        OPTION_DEFAULTS["mixstyle_alpha"], "mixstyle: Beta(alpha, alpha) parameter of the mixing weights"
    )
    cdt_weight: float = _field(
        OPTION_DEFAULTS["cdt_weight"],
        "cdt: weight of the (cross-domain) triplet losses against the classification loss",
    )
    cdt_margin: float = _field(
        OPTION_DEFAULTS["cdt_margin"], "cdt: triplet margin (squared distances of unit embeddings)"
    )
    swad: bool = _field(
        False, "SWAD: average the weights densely inside the window its rule picks from source-validation loss"
    )
    swad_every: int = _field(0, "SWAD: evaluate the source-validation loss every N steps (0: steps // 20)")
    seed: int = _field(0, "training seed")
    device: str = _field("cpu", "cpu, cuda or cuda:N")
    dtype: str = _field("float32", "parameter dtype", choices=("float32", "float64"))
    dist_timeout: float = _field(300.0, "torch.distributed: seconds a collective may wait for a peer before failing")
    eval_every: int = _field(0, "evaluate the held-out domains every N steps (0: never)")
    log_every: int = _field(10, "log the losses every N steps (0: every step)")
    checkpoint_every: int = _field(0, "write a checkpoint every N steps (0: at the end only)")
    init: str | None = _field(
        None,
        "start the backbone from these weights: an mfr checkpoint or an arcface_torch state dict (.pth/.pt/.safetensors)",
    )
    flip: bool = _field(True, "random horizontal flips of the training images (p = 0.5, seeded)")
    # None: 2 on CUDA, 0 on the CPU, where the step already takes the cores and decoding is ~1% of
    # a step (benches/pipeline.py measured a prefetching CPU step 1.7x slower)
    prefetch: int | None = _field(None, "meta-batches decoded ahead in a background thread (none: 2 on CUDA, 0 on CPU)")

    @property
    def swad_interval(self) -> int:
        """Steps between SWAD's source-validation evaluations."""
        return self.swad_every or max(1, self.steps // 20)

    def meta_config(self) -> MetaStepConfig:
        return MetaStepConfig(**{name: getattr(self, name) for name in config_fields(MetaStepConfig)})

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def build_backbone(self, device: torch.device) -> Backbone:
        """The configured backbone, freshly initialised from torch's current RNG, on ``device``."""
        net = Backbone(
            self.backbone,
            embedding_dim=self.embedding_dim,
            in_channels=self.channels,
            input_size=self.input_size,
            width=self.width,
        )
        return net.to(device, self.torch_dtype)

    def check(self) -> None:
        errors = []
        if self.method not in METHODS:
            errors.append(f"unknown method {self.method!r}; available: {', '.join(METHODS)}")
        if self.backbone not in BACKBONES:
            errors.append(f"unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value is not None and value not in choices:
                errors.append(f"{f.name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        for name in ("eval_every", "checkpoint_every", "warmup_steps", "log_every"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.amp is not None and self.dtype != "float32":
            errors.append(f"amp needs float32 weights (dtype='float32'), got dtype {self.dtype!r}")
        numbers = {
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "head_scale": self.head_scale,
            "dist_timeout": self.dist_timeout,
        }
        numbers.update({k: v for k, v in (("grad_clip", self.grad_clip), ("margin", self.margin)) if v is not None})
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                errors.append(f"{name} must be a finite number, got {value!r}")
        if self.steps < 0 or self.ids_per_domain < 2 or not self.lr > 0:
            errors.append(
                f"steps must be >= 0, ids_per_domain >= 2 and lr > 0, got {self.steps}, {self.ids_per_domain}, {self.lr}"
            )
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            errors.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.prefetch is not None and not 0 <= self.prefetch <= 16:
            errors.append(f"prefetch must lie in [0, 16] or be None (auto), got {self.prefetch}")
        if not self.head_scale > 0:
            errors.append(f"head_scale must be > 0, got {self.head_scale}")
        for name in ("coral_weight", "cdt_weight", "cdt_margin", "mixstyle_p", "mixstyle_alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                errors.append(f"{name} must be a finite number, got {value!r}")
            elif value < 0:
                errors.append(f"{name} must be >= 0, got {value}")
        if not 0 <= self.mixstyle_p <= 1:
            errors.append(f"mixstyle_p is a probability and must lie in [0, 1], got {self.mixstyle_p}")
        if not self.mixstyle_alpha > 0:
            errors.append(f"mixstyle_alpha must be > 0 (the Beta distribution's parameter), got {self.mixstyle_alpha}")
        if self.swad_every < 0:
            errors.append(f"swad_every must be >= 0, got {self.swad_every}")
        if self.swad and self.steps > 0 and self.steps // self.swad_interval < SWAD_MIN_EVALUATIONS:
            errors.append(
                f"swad: {self.steps} steps with the source-validation loss every {self.swad_interval} give "
                f"{self.steps // self.swad_interval} evaluations; SWAD's window can only open after {SWAD_MIN_EVALUATIONS} "
                "(lower swad_every or train longer)"
            )
        try:
            self.meta_config()
        except _core.InvalidInputError as e:
            errors.append(str(e).removeprefix("MetaStepConfig: "))
        if errors:
            raise _core.InvalidInputError("TrainConfig: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise _core.InvalidInputError(f"TrainConfig: unknown fields {unknown}")
        return cls(**dict(d))


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any, where: str) -> Any:
    """``value`` as TrainConfig's field ``key`` takes it, or an InvalidInputError naming both."""
    kind = _field_types()[key]
    base = kind.replace(" | None", "")
    if value is None and "None" in kind:
        return None
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(base, False)
    if not ok:
        raise _core.InvalidInputError(f"{where}: {key} must be {kind}, got {value!r} ({type(value).__name__})")
    return float(value) if base == "float" else value


def config_from_mapping(values: Mapping[str, Any], where: str) -> TrainConfig:
    """A checked TrainConfig from a mapping of its fields (unknown keys and wrong types refused)."""
    known = _field_types()
    unknown = [k for k in values if k not in known]
    if unknown:
        raise _core.InvalidInputError(
            f"{where}: unknown TrainConfig field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(known)}"
        )
    config = TrainConfig(**{k: _coerce(k, v, where) for k, v in values.items()})
    config.check()
    return config


def parse_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TrainConfig fields of a TOML (``.toml``) or YAML (``.yaml``/``.yml``, needs PyYAML) file,
    checked: unknown keys and values of the wrong type are InvalidInputErrors naming the file."""
    path = Path(path)
    where = f"--config {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _core.DataError(f"{where}: cannot read it ({e})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise _core.InvalidInputError(f"{where}: YAML needs PyYAML (pip install pyyaml), or use TOML") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise _core.InvalidInputError(f"{where}: not valid YAML: {e}") from None
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef, import-not-found, unused-ignore]
            except ModuleNotFoundError:
                raise _core.InvalidInputError(f"{where}: TOML needs Python 3.11 or the tomli package") from None
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise _core.InvalidInputError(f"{where}: not valid TOML: {e}") from None
    if not isinstance(values, dict):
        raise _core.InvalidInputError(f"{where}: expected a mapping of TrainConfig fields, got {type(values).__name__}")
    config_from_mapping(values, where)  # every key and type checked here, with the file named
    return dict(values)


def parse_field(key: str, text: str) -> Any:
    """``text`` as TrainConfig's field ``key`` takes it (``none`` or ``off`` for an optional
    field); a ValueError names the type expected."""
    kind = _field_types()[key]
    base = kind.replace(" | None", "")
    if text.lower() in ("none", "null", "off") and "None" in kind:
        return None
    try:
        if base == "bool":
            return {"true": True, "1": True, "false": False, "0": False}[text.lower()]
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
    except (KeyError, ValueError):
        raise ValueError(f"{key} must be {kind}, got {text!r}") from None
    return text


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` items as typed TrainConfig fields (``none`` for an optional field)."""
    out: dict[str, Any] = {}
    known = _field_types()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise _core.InvalidInputError(
                f"--set {item!r}: expected KEY=VALUE with KEY a TrainConfig field ({', '.join(known)})"
            )
        try:
            out[key] = parse_field(key, text)
        except ValueError:
            raise _core.InvalidInputError(f"--set {item!r}: {key} must be {known[key]}") from None
    return out


def resolve_device(device: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N``, checked: a CUDA device needs a GPU and a CUDA torch."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise _core.InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _core.DeviceError(
                f"device {device!r} requested, but CUDA is not available here (no GPU, or a CPU-only torch)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _core.DeviceError(
                f"device {device!r} requested, but only {torch.cuda.device_count()} GPU(s) are visible"
            )
    elif dev.type != "cpu":
        raise _core.InvalidInputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev
