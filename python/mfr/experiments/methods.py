"""Training methods, selectable by name: MFR and its ablations, MLDG, and pooled-domain baselines.

Every method sees the same meta-batches (B identities x (gallery, probe) per source domain) and
the same step budget, and writes gradients into ``.grad`` of :meth:`Method.parameters` (the
backbone's, plus a classifier head's where it has one); the trainer then clips and steps the
optimizer.

- ``mfr``: the MFR meta-step (:class:`mfr.MetaStep`): hard-pair attention + soft classification +
  domain alignment, second order. Ablations: ``mfr_no_hp``, ``mfr_no_cls``, ``mfr_no_da``
  (a loss weight set to 0) and ``mfr_first_order``.
- ``mldg``: MLDG-style meta-learning (Li et al., AAAI 2018) without the MFR losses: the same
  splits, inner update and ``gamma L_S + (1 - gamma) L_T(theta')`` objective, with a normalized-
  softmax classifier over all source identities (head adapted in the inner step too).
- ``softmax``, ``cosface``, ``arcface``: pooled-domain training (all source domains in one batch,
  one BatchNorm batch) with a classification head over all source identities: a linear layer, or
  normalized weights with scale ``head_scale`` and an additive cosine margin (CosFace, default
  0.35) or additive angular margin (ArcFace, default 0.5).
- Domain-generalization baselines (kind ``"dg"``), each on the CosFace head: ``coral`` (pooled,
  plus CORAL's penalty between every pair of source domains), ``mixstyle`` (pooled, MixStyle with
  partners from other domains after the backbone's first stages) and ``cdt`` (the Cross-Domain
  Triplet loss in a meta-train / meta-test loop). Their losses: :mod:`.dg_losses`; SWAD, an
  option of every method: :mod:`.swad`. ``docs/methods.md`` states each formula.

Mixed precision (``MetaStepConfig.amp``): every method runs its backbone forwards under autocast
(MFR inside the Rust step, the others with ``torch.autocast``) and its losses in float32; a
``loss_scale`` multiplies what is backpropagated (float16). Under float16 a non-finite loss is an
overflow: the step returns ``skipped=True`` and writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .. import _core
from ..meta import MetaStep, MetaStepConfig, _split_pairs, as_dict, replace
from ..nn import Backbone, StyleMix
from ..reference import inner_update
from .dg_losses import coral_penalty, cross_domain_triplet, pair_covariances
from .precision import autocast

__all__ = ["METHODS", "POOLED", "Method", "MethodSpec", "Range", "draw_style_mix", "make_method", "method_spec"]


class MarginHead(torch.nn.Module):
    """A classifier over ``n_classes`` identities: ``kind`` softmax (linear with bias), normsoftmax
    (scaled cosine), cosface (scaled cosine, ``cos - m`` for the target) or arcface
    (``cos(theta + m)`` for the target, falling back to ``cos - m sin m`` past pi - m as
    insightface does, so the logit stays monotonic)."""

    def __init__(self, kind: str, embedding_dim: int, n_classes: int, scale: float = 30.0, margin: float = 0.0) -> None:
        super().__init__()
        self.kind, self.scale, self.margin = kind, float(scale), float(margin)
        self.weight = torch.nn.Parameter(torch.empty(n_classes, embedding_dim))
        torch.nn.init.normal_(self.weight, 0.0, 0.01)
        if kind == "softmax":
            self.bias = torch.nn.Parameter(torch.zeros(n_classes))

    def logits(
        self,
        emb: torch.Tensor,
        labels: torch.Tensor,
        weight: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        w = self.weight if weight is None else weight
        if self.kind == "softmax":
            return F.linear(emb, w, self.bias if bias is None else bias)
        cos = F.linear(F.normalize(emb), F.normalize(w)).clamp(-1.0, 1.0)
        if self.kind == "cosface":
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        elif self.kind == "arcface":
            target = cos.gather(1, labels[:, None])
            sin = (1.0 - target * target).clamp_min(1e-12).sqrt()
            shifted = target * math.cos(self.margin) - sin * math.sin(self.margin)
            shifted = torch.where(
                target > math.cos(math.pi - self.margin), shifted, target - self.margin * math.sin(self.margin)
            )
            cos = cos.scatter(1, labels[:, None], shifted)
        return self.scale * cos

    def loss(self, emb: torch.Tensor, labels: torch.Tensor, **kw: torch.Tensor | None) -> torch.Tensor:
        return F.cross_entropy(self.logits(emb, labels, **kw), labels)


class Method:
    """Base class: ``parameters()`` to optimize, ``step(domains, labels, splits, loss_scale)``
    writes ``loss_scale`` times the gradient into .grad."""

    name: str
    head: torch.nn.Module | None = None
    #: Whether a training forward normalizes every source domain together (one BatchNorm batch).
    pooled = False

    def __init__(self, name: str, backbone: Backbone, amp: str | None = None) -> None:
        self.name, self.backbone, self.amp = name, backbone, amp

    def embed(
        self, images: torch.Tensor, params: list[torch.Tensor] | None = None, mix: StyleMix | None = None
    ) -> torch.Tensor:
        """The backbone's training-mode embeddings (autocast forward under amp; float32 out)."""
        with autocast(images.device, self.amp):
            emb: torch.Tensor = self.backbone(images, params=params, mix=mix)
        return emb.float() if self.amp else emb

    def _not_finite(self, what: str, value: torch.Tensor) -> dict[str, Any]:
        """float16's overflow is a skipped step; anything else a non-finite loss is an error."""
        if self.amp == "fp16":
            return {"loss": float("nan"), "skipped": True}
        raise _core.InvalidInputError(f"{self.name}: {what} is {float(value.detach())}; no gradient was written")

    def parameters(self) -> list[torch.nn.Parameter]:
        ps = list(self.backbone.parameters())
        if self.head is not None:
            ps += list(self.head.parameters())
        return ps

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        raise NotImplementedError


class MFRMethod(Method):
    def __init__(self, name: str, backbone: Backbone, config: MetaStepConfig) -> None:
        super().__init__(name, backbone, config.amp)
        self.meta = MetaStep(backbone, config)

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        out = self.meta.step(domains, splits, loss_scale)
        if out.skipped:  # float16 overflow: no losses to report
            return {"loss": float("nan"), "skipped": True}
        return {"loss": out.objective, **as_dict(out)}  # the Rust result's own field names


class MLDGMethod(Method):
    def __init__(self, backbone: Backbone, n_classes: int, config: MetaStepConfig, head_scale: float) -> None:
        super().__init__("mldg", backbone, config.amp)
        self.config = config
        self.head = MarginHead("normsoftmax", backbone.embedding_dim, n_classes, head_scale)

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        cfg, head = self.config, self.head
        assert isinstance(head, MarginHead)
        theta = self.backbone.parameter_list()
        params = [*theta, head.weight]
        pairs = _split_pairs(splits)
        train_domains = sorted({d for train, _ in pairs for d in train})
        emb = {d: self.embed(domains[d]) for d in train_domains}  # shared across splits
        objective = torch.zeros((), device=theta[0].device, dtype=theta[0].dtype)
        ls_sum, lt_sum = 0.0, 0.0
        for train, test in pairs:
            l_s = torch.stack([head.loss(emb[d], labels[d]) for d in train]).mean()
            # grad(S L_S) / S: theta' exact, small float16 gradients kept
            adapted = inner_update(l_s * loss_scale, params, cfg.alpha / loss_scale, cfg.first_order)
            l_t = torch.stack(
                [head.loss(self.embed(domains[d], params=adapted[:-1]), labels[d], weight=adapted[-1]) for d in test]
            ).mean()
            objective = objective + (cfg.gamma * l_s + (1 - cfg.gamma) * l_t) / len(splits)
            ls_sum += float(l_s.detach()) / len(splits)
            lt_sum += float(l_t.detach()) / len(splits)
        if not torch.isfinite(objective):
            return self._not_finite("the objective", objective)
        (objective * loss_scale).backward()  # type: ignore[no-untyped-call]
        return {"loss": float(objective.detach()), "loss_s": ls_sum, "loss_t": lt_sum}


class PooledMethod(Method):
    pooled = True

    def __init__(
        self, name: str, backbone: Backbone, n_classes: int, head_scale: float, margin: float, amp: str | None = None
    ) -> None:
        super().__init__(name, backbone, amp)
        self.head = MarginHead(name, backbone.embedding_dim, n_classes, head_scale, margin)

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        assert isinstance(self.head, MarginHead)
        emb = self.embed(torch.cat(list(domains)))
        loss = self.head.loss(emb, torch.cat(list(labels)))
        if not torch.isfinite(loss):
            return self._not_finite("the loss", loss)
        (loss * loss_scale).backward()  # type: ignore[no-untyped-call]
        return {"loss": float(loss.detach())}


class CoralMethod(PooledMethod):
    """Pooled training on the CosFace head plus ``weight`` times CORAL's penalty between the
    embeddings of every pair of source domains in the batch (:func:`.dg_losses.coral_penalty`)."""

    def __init__(
        self, backbone: Backbone, n_classes: int, head_scale: float, margin: float, weight: float, amp: str | None
    ) -> None:
        super().__init__("cosface", backbone, n_classes, head_scale, margin, amp)
        self.name, self.weight = "coral", weight

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        assert isinstance(self.head, MarginHead)
        emb = self.embed(torch.cat(list(domains)))
        cls = self.head.loss(emb, torch.cat(list(labels)))
        penalty = coral_penalty(torch.split(emb, [d.shape[0] for d in domains]))
        loss = cls + self.weight * penalty
        if not torch.isfinite(loss):
            return self._not_finite("the loss", loss)
        (loss * loss_scale).backward()  # type: ignore[no-untyped-call]
        return {"loss": float(loss.detach()), "loss_cls": float(cls.detach()), "coral": float(penalty.detach())}


def draw_style_mix(
    sizes: Sequence[int], p: float, alpha: float, points: Sequence[int], device: torch.device
) -> StyleMix | None:
    """One batch's MixStyle draw (torch's global RNG, so a resumed run draws the same): each style
    point mixes with probability ``p``; every sample's partner is drawn uniformly from the samples
    of the other domains (the domains come one after another, ``sizes`` samples each); its weight
    from Beta(alpha, alpha). None when no point mixes."""
    chosen = tuple(pt for pt in points if float(torch.rand(())) < p)
    if not chosen:
        return None
    domain = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(list(sizes)))
    partners = torch.empty(len(domain), dtype=torch.int64)
    for d in range(len(sizes)):
        mine, others = (domain == d).nonzero()[:, 0], (domain != d).nonzero()[:, 0]
        pick = (torch.rand(len(mine)) * len(others)).long().clamp_max(len(others) - 1)
        partners[mine] = others[pick]
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    weights = beta.sample((len(domain),)).clamp(0.0, 1.0)
    return StyleMix(partners.to(device), weights.to(device), chosen)


#: MixStyle's default insertion: after the first two stages (res1 and res2 in its paper's ResNets).
MIXSTYLE_POINTS = (0, 1)


class MixStyleMethod(PooledMethod):
    """Pooled training on the CosFace head with MixStyle at the backbone's first two style points
    (training only: evaluation never mixes)."""

    def __init__(
        self,
        backbone: Backbone,
        n_classes: int,
        head_scale: float,
        margin: float,
        p: float,
        alpha: float,
        amp: str | None,
    ) -> None:
        super().__init__("cosface", backbone, n_classes, head_scale, margin, amp)
        self.name, self.p, self.alpha = "mixstyle", p, alpha

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        assert isinstance(self.head, MarginHead)
        images = torch.cat(list(domains))
        mix = draw_style_mix([d.shape[0] for d in domains], self.p, self.alpha, MIXSTYLE_POINTS, images.device)
        emb = self.embed(images, mix=mix)
        loss = self.head.loss(emb, torch.cat(list(labels)))
        if not torch.isfinite(loss):
            return self._not_finite("the loss", loss)
        (loss * loss_scale).backward()  # type: ignore[no-untyped-call]
        return {"loss": float(loss.detach()), "mixed_points": len(mix.points) if mix is not None else 0}


class CDTMethod(Method):
    """The Cross-Domain Triplet loss (Faraki et al., CVPR 2021) in a meta-train / meta-test loop
    on the CosFace head, for each split of the meta-batch (``docs/methods.md``):

    - ``L_S(theta)``: mean over meta-train domains of CosFace + ``weight`` x the triplet loss
      (``Sigma = I``);
    - ``theta' = theta - alpha grad L_S`` (head adapted too);
    - ``L_T(theta')``: mean over meta-test domains of CosFace + ``weight`` x the mean over meta-train
      domains ``j`` of the cross-domain triplet loss of the meta-test domain's triplets under
      ``Sigma_+, Sigma_-`` of domain ``j`` (at theta, with their gradient);
    - objective ``gamma L_S + (1 - gamma) L_T(theta')``, second order unless ``first_order``.
    """

    def __init__(
        self,
        backbone: Backbone,
        n_classes: int,
        config: MetaStepConfig,
        head_scale: float,
        margin: float,
        weight: float,
        triplet_margin: float,
    ) -> None:
        super().__init__("cdt", backbone, config.amp)
        self.config, self.weight, self.triplet_margin = config, weight, triplet_margin
        self.head = MarginHead("cosface", backbone.embedding_dim, n_classes, head_scale, margin)

    def step(
        self,
        domains: Sequence[torch.Tensor],
        labels: Sequence[torch.Tensor],
        splits: Sequence[Any],
        loss_scale: float = 1.0,
    ) -> dict[str, Any]:
        cfg, head, w, m = self.config, self.head, self.weight, self.triplet_margin
        assert isinstance(head, MarginHead)
        theta = self.backbone.parameter_list()
        params = [*theta, head.weight]
        pairs = _split_pairs(splits)
        train_domains = sorted({d for train, _ in pairs for d in train})
        emb = {d: self.embed(domains[d]) for d in train_domains}  # shared across splits
        unit = {d: F.normalize(e) for d, e in emb.items()}
        metrics = {d: pair_covariances(u) for d, u in unit.items()}
        objective = torch.zeros((), device=theta[0].device, dtype=theta[0].dtype)
        ls_sum, lt_sum, trip_sum, cdt_sum = 0.0, 0.0, 0.0, 0.0
        for train, test in pairs:
            trip = torch.stack([cross_domain_triplet(unit[d], None, None, m) for d in train]).mean()
            l_s = torch.stack([head.loss(emb[d], labels[d]) for d in train]).mean() + w * trip
            adapted = inner_update(l_s * loss_scale, params, cfg.alpha / loss_scale, cfg.first_order)
            l_t = objective.new_zeros(())
            cdt = l_t
            for t in test:
                e = self.embed(domains[t], params=adapted[:-1])
                cross = torch.stack([cross_domain_triplet(F.normalize(e), *metrics[j], m) for j in train]).mean()
                l_t = l_t + (head.loss(e, labels[t], weight=adapted[-1]) + w * cross) / len(test)
                cdt = cdt + cross / len(test)
            objective = objective + (cfg.gamma * l_s + (1 - cfg.gamma) * l_t) / len(splits)
            ls_sum += float(l_s.detach()) / len(splits)
            lt_sum += float(l_t.detach()) / len(splits)
            trip_sum += float(trip.detach()) / len(splits)
            cdt_sum += float(cdt.detach()) / len(splits)
        if not torch.isfinite(objective):
            return self._not_finite("the objective", objective)
        (objective * loss_scale).backward()  # type: ignore[no-untyped-call]
        return {
            "loss": float(objective.detach()),
            "loss_s": ls_sum,
            "loss_t": lt_sum,
            "triplet": trip_sum,
            "cdt": cdt_sum,
        }


#: A search range of one TrainConfig field: ``(kind, low, high)``; kind "log" draws
#: ``exp(uniform(log low, log high))``, "lin" ``uniform(low, high)``.
Range = tuple[str, float, float]

#: Builds a method: ``(spec, backbone, n_classes, meta_config, head_scale, margin, options) -> Method``
#: (``margin`` already resolved to the spec's default where the configuration leaves it None;
#: ``options``: the TrainConfig fields of the method's own settings, e.g. ``coral_weight``).
Builder = Callable[["MethodSpec", Backbone, int, MetaStepConfig, float, float, Mapping[str, Any]], Method]


@dataclass(frozen=True)
class MethodSpec:
    """Everything the harness knows of a method, declared once (as DomainBed's ``algorithms.py``
    with ``hparams_registry``): the trainer builds it, the search draws from ``space``, tuned
    defaults come from ``tuned``, the protocol checks rows and picks baselines by ``kind`` and
    ``stage1``, the CLI's help and the report read ``summary`` and ``reference``.

    - ``kind``: ``"meta"`` (a meta-learning method), ``"ablation"`` (MFR with one part removed),
      ``"pooled"`` (all source domains in one batch; the comparison baselines) or ``"dg"`` (a
      domain-generalization baseline: compared with MFR, never MFR's comparison baseline).
    - ``meta``: :class:`mfr.MetaStepConfig` fields this method fixes (an ablation's zero weight).
    - ``margin``: the classifier head's default margin (``TrainConfig.margin`` None), for methods with a margin head.
    - ``space``: the search ranges (TrainConfig fields); ``tuned``: the published run's selected setting
      (:mod:`mfr.experiments.tuned`), empty where the defaults won.
    - ``stage1``: the pooled methods a two-stage row ``<name>@<P>`` may fine-tune from (empty: no two-stage rows).
    """

    name: str
    kind: str
    summary: str
    reference: str
    build: Builder
    meta: Mapping[str, Any] = field(default_factory=dict)
    margin: float | None = None
    space: Mapping[str, Range] = field(default_factory=dict)
    tuned: Mapping[str, float] = field(default_factory=dict)
    stage1: tuple[str, ...] = ()


def _build_mfr(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    return MFRMethod(spec.name, backbone, replace(cfg, **spec.meta))


def _build_mldg(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    return MLDGMethod(backbone, n_classes, replace(cfg, **spec.meta), scale)


def _build_pooled(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    return PooledMethod(spec.name, backbone, n_classes, scale, margin, cfg.amp)


#: The defaults of the methods' own settings (TrainConfig fields; declared here, read there).
OPTION_DEFAULTS: dict[str, float] = {
    "coral_weight": 1.0,
    "mixstyle_p": 0.5,
    "mixstyle_alpha": 0.1,
    "cdt_weight": 1.0,
    "cdt_margin": 0.5,
}


def _option(options: Mapping[str, Any], name: str) -> float:
    return float(options.get(name, OPTION_DEFAULTS[name]))


def _build_coral(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    return CoralMethod(backbone, n_classes, scale, margin, _option(options, "coral_weight"), cfg.amp)


def _build_mixstyle(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    p, alpha = _option(options, "mixstyle_p"), _option(options, "mixstyle_alpha")
    return MixStyleMethod(backbone, n_classes, scale, margin, p, alpha, cfg.amp)


def _build_cdt(
    spec: MethodSpec,
    backbone: Backbone,
    n_classes: int,
    cfg: MetaStepConfig,
    scale: float,
    margin: float,
    options: Mapping[str, Any],
) -> Method:
    weight, triplet_margin = _option(options, "cdt_weight"), _option(options, "cdt_margin")
    return CDTMethod(backbone, n_classes, replace(cfg, **spec.meta), scale, margin, weight, triplet_margin)


_LR: Range = ("log", 0.01, 0.2)
_HEAD_SCALE: Range = ("lin", 16.0, 64.0)
_META_SPACE: dict[str, Range] = {"alpha": ("log", 0.001, 0.1), "gamma": ("lin", 0.2, 0.8)}
_MFR_SPACE: dict[str, Range] = {
    **_META_SPACE,
    "tau_p": ("lin", 0.2, 0.8),
    "tau_n": ("lin", 0.0, 0.6),
    "w_hp": ("log", 0.3, 3.0),
    "w_cls": ("log", 0.3, 3.0),
    "w_da": ("log", 0.3, 3.0),
    "lr": _LR,
}
_MFR_PAPER = "Guo et al., Learning Meta Face Recognition in Unseen Domains, CVPR 2020 (arXiv:2003.07733)"
_POOLED_STAGES = ("softmax", "cosface", "arcface")
_COSFACE_SPACE: dict[str, Range] = {"lr": _LR, "head_scale": _HEAD_SCALE, "margin": ("lin", 0.1, 0.5)}


def _without(space: Mapping[str, Range], *names: str) -> dict[str, Range]:
    return {k: v for k, v in space.items() if k not in names}


def _ablation(name: str, summary: str, meta: Mapping[str, Any], space: Mapping[str, Range]) -> MethodSpec:
    return MethodSpec(name, "ablation", summary, _MFR_PAPER, _build_mfr, meta=meta, space=space, stage1=_POOLED_STAGES)


#: Every method, in the order results tables list them. Adding a method: its :class:`Method`
#: subclass above and one entry here.
METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "mfr",
            "meta",
            "MFR: hard-pair attention + soft classification + domain alignment, second-order meta-gradient",
            _MFR_PAPER,
            _build_mfr,
            space=_MFR_SPACE,
            stage1=_POOLED_STAGES,
        ),
        _ablation(
            "mfr_no_hp",
            "MFR without the hard-pair attention loss",
            {"w_hp": 0.0},
            _without(_MFR_SPACE, "w_hp", "tau_p", "tau_n"),
        ),
        _ablation(
            "mfr_no_cls", "MFR without the soft-classification loss", {"w_cls": 0.0}, _without(_MFR_SPACE, "w_cls")
        ),
        _ablation("mfr_no_da", "MFR without the domain-alignment loss", {"w_da": 0.0}, _without(_MFR_SPACE, "w_da")),
        _ablation("mfr_first_order", "MFR with the first-order meta-gradient", {"first_order": True}, _MFR_SPACE),
        MethodSpec(
            "mldg",
            "meta",
            "MLDG: meta-train / meta-test objective with a normalized-softmax head, no MFR losses",
            "Li et al., Learning to Generalize: Meta-Learning for Domain Generalization, AAAI 2018",
            _build_mldg,
            space={**_META_SPACE, "lr": _LR},
            tuned={"alpha": 0.0015761622162194123, "gamma": 0.695555241002179, "lr": 0.043969126990653876},
            stage1=_POOLED_STAGES,
        ),
        MethodSpec(
            "softmax",
            "pooled",
            "pooled domains, linear softmax classifier",
            "pooled-domain training (ERM) with a softmax head",
            _build_pooled,
            margin=0.0,
            space={"lr": _LR, "head_scale": _HEAD_SCALE},
            tuned={"lr": 0.0853419694438763, "head_scale": 37.20403228420183},
        ),
        MethodSpec(
            "cosface",
            "pooled",
            "pooled domains, CosFace head (additive cosine margin)",
            "Wang et al., CosFace: Large Margin Cosine Loss for Deep Face Recognition, CVPR 2018",
            _build_pooled,
            margin=0.35,
            space=_COSFACE_SPACE,
        ),
        MethodSpec(
            "arcface",
            "pooled",
            "pooled domains, ArcFace head (additive angular margin)",
            "Deng et al., ArcFace: Additive Angular Margin Loss for Deep Face Recognition, CVPR 2019",
            _build_pooled,
            margin=0.5,
            space={"lr": _LR, "head_scale": _HEAD_SCALE, "margin": ("lin", 0.1, 0.6)},
            tuned={"lr": 0.14223158619385007, "head_scale": 17.832807663753723, "margin": 0.5693679021113686},
        ),
        MethodSpec(
            "coral",
            "dg",
            "pooled domains, CosFace head + CORAL penalty between every pair of source domains",
            "Sun & Saenko, Deep CORAL, ECCV-W 2016; in DomainBed's form (Gulrajani & Lopez-Paz, ICLR 2021)",
            _build_coral,
            margin=0.35,
            space={**_COSFACE_SPACE, "coral_weight": ("log", 0.1, 10.0)},
            tuned={
                "lr": 0.15233559257273374,
                "head_scale": 29.66571088504653,
                "margin": 0.40722157441607887,
                "coral_weight": 0.17050859219633935,
            },
        ),
        MethodSpec(
            "mixstyle",
            "dg",
            "pooled domains, CosFace head, MixStyle across domains after the first two stages",
            "Zhou et al., Domain Generalization with MixStyle, ICLR 2021",
            _build_mixstyle,
            margin=0.35,
            space={**_COSFACE_SPACE, "mixstyle_p": ("lin", 0.1, 0.9), "mixstyle_alpha": ("log", 0.05, 0.5)},
            tuned={
                "lr": 0.09330583173476147,
                "head_scale": 23.593201119830397,
                "margin": 0.2758601243287273,
                "mixstyle_p": 0.181883027310825,
                "mixstyle_alpha": 0.13427629608784475,
            },
        ),
        MethodSpec(
            "cdt",
            "dg",
            "Cross-Domain Triplet loss + CosFace in a meta-train / meta-test loop",
            "Faraki et al., Cross-Domain Similarity Learning for Face Recognition in Unseen Domains, CVPR 2021 (arXiv:2103.07503)",
            _build_cdt,
            margin=0.35,
            space={
                **_META_SPACE,
                **_COSFACE_SPACE,
                "cdt_weight": ("log", 0.1, 10.0),
                "cdt_margin": ("lin", 0.1, 1.0),
            },
        ),
    )
}

#: The pooled baselines, among which a protocol's comparison baseline is chosen.
POOLED: tuple[str, ...] = tuple(name for name, spec in METHODS.items() if spec.kind == "pooled")


def method_spec(name: str) -> MethodSpec:
    """The registry entry of ``name``, or an error that lists the methods."""
    spec = METHODS.get(name)
    if spec is None:
        raise _core.InvalidInputError(f"unknown method {name!r}; available: {', '.join(METHODS)}")
    return spec


def make_method(
    name: str,
    backbone: Backbone,
    n_classes: int,
    meta_config: MetaStepConfig,
    head_scale: float = 30.0,
    margin: float | None = None,
    options: Mapping[str, Any] | None = None,
) -> Method:
    """The method ``name`` (see :data:`METHODS`) for ``backbone`` and ``n_classes`` source
    identities; ``options``: TrainConfig fields of the method's own settings (``coral_weight``,
    ``mixstyle_p``, ...; TrainConfig's defaults where absent)."""
    spec = method_spec(name)
    resolved = margin if margin is not None else (spec.margin if spec.margin is not None else 0.0)
    return spec.build(spec, backbone, n_classes, meta_config, head_scale, resolved, options or {})
