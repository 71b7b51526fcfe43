"""Hyperparameter search without peeking at the target: a seeded random search per method over
documented ranges, every method given the same number of settings, each setting selected by
*training-domain validation* (DomainBed's standard, Gulrajani and Lopez-Paz 2021).

Validation data: a seeded fraction of every source domain's identities is held out (names-keyed, see
:meth:`mfr.FaceIndex.split_identities`); each candidate trains on the remaining identities of the
source domains and is scored on the held-out ones (mean over source domains of
``select_metric``). The target domain is evaluated too, but only to report the *oracle* choice
(selection on the target), labelled as an upper bound; it never selects anything.

Candidate 0 of every method is its default setting, so the search can only improve validation over
the defaults; candidates 1..N-1 are drawn from the method's ``space`` in :data:`mfr.experiments.methods.METHODS`
(log-uniform where a range spans orders of magnitude).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _core
from ..facedata import FaceData
from .evaluate import evaluate_domain
from .methods import METHODS

__all__ = ["sample_settings", "search_method", "search_summary", "split_validation"]


def sample_settings(method: str, n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` settings of ``method``: ``{}`` (its defaults) first, then seeded draws from
    the method's search space (:attr:`MethodSpec.space`; keyed by the method's name and ``seed``,
    so adding a method changes no other method's candidates)."""
    if n < 1:
        raise _core.InvalidInputError(f"search: the number of settings must be >= 1, got {n}")
    spec = METHODS.get(method)
    if spec is None or not spec.space:
        with_space = ", ".join(m for m, s in METHODS.items() if s.space)
        raise _core.InvalidInputError(f"search: no search space for method {method!r}; spaces exist for {with_space}")
    space = spec.space
    rng = np.random.default_rng(_core.name_seed(int(seed), [method, "search"]))
    out: list[dict[str, float]] = [{}]
    for _ in range(n - 1):
        setting = {}
        for name, (kind, low, high) in space.items():
            u = float(rng.uniform())
            setting[name] = (
                float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
                if kind == "log"
                else float(low + u * (high - low))
            )
        out.append(setting)
    return out


def split_validation(data: FaceData, fraction: float, seed: int = 0) -> tuple[FaceData, FaceData]:
    """``(train, validation)``: every source domain's identities split by names (seeded)."""
    import torch

    position = {p: i for i, p in enumerate(data.index.paths)}

    def part(index: Any, label: str) -> FaceData:
        order = torch.tensor([position[p] for p in index.paths], dtype=torch.int64)
        images = data.images[order] if data.images is not None else None
        return FaceData(index, images=images, root=data.root, name=f"{data.name} ({label} identities)")

    train_index, validation_index = data.index.split_identities(fraction, seed)
    return part(train_index, "training"), part(validation_index, "validation")


def search_method(
    method: str,
    config: Any,
    train: FaceData,
    validation: FaceData,
    targets: dict[str, FaceData],
    n: int,
    *,
    seed: int = 0,
    select_metric: str = "auc",
    eval_seed: int = 0,
    fit: Callable[[Any, FaceData], Any],
) -> dict[str, Any]:
    """Train ``n`` settings of ``method`` (``config`` with each setting applied) on ``train`` with
    ``fit(config, data) -> trainer``; score each on the validation identities (mean over source
    domains of ``select_metric``) and, for the oracle only, on ``targets``. Returns
    ``{"method", "select_metric", "candidates": [{"setting", "validation", "target": {name: value},
    "train_seconds"}], "selected", "oracle": {target: index}}``; ``selected`` is the candidate with
    the best validation score (lower is better for ``eer``; ties: the earlier candidate)."""
    sign = -1.0 if select_metric == "eer" else 1.0
    candidates = []
    for setting in sample_settings(method, n, seed):
        cfg = dataclasses.replace(config, method=method, **setting)
        trainer = fit(cfg, train)
        val = [
            evaluate_domain(trainer.backbone, validation, d, seed=eval_seed, n_bootstrap=0)["metrics"][select_metric][
                "estimate"
            ]
            for d in validation.domain_names
        ]
        tgt = {
            t: evaluate_domain(trainer.backbone, td, 0, seed=eval_seed, n_bootstrap=0)["metrics"][select_metric][
                "estimate"
            ]
            for t, td in targets.items()
        }
        candidates.append(
            {
                "setting": setting,
                "validation": float(np.nanmean(val)) if not np.isnan(val).all() else math.nan,
                "target": tgt,
                "train_seconds": trainer.train_seconds,
            }
        )

    def best(values: list[float]) -> int:
        """The best candidate (lower is better for eer; ties: the earlier one; NaN never wins)."""
        scores = [sign * v for v in values]
        finite = [i for i, x in enumerate(scores) if not math.isnan(x)]
        return max(finite, key=lambda i: (scores[i], -i)) if finite else 0

    return {
        "method": method,
        "select_metric": select_metric,
        "candidates": candidates,
        "selected": best([c["validation"] for c in candidates]),
        "oracle": {t: best([c["target"][t] for c in candidates]) for t in targets},
    }


def search_summary(searches: Sequence[dict[str, Any]]) -> str:
    """Markdown: per searched method and target group, the selected setting, its validation and
    target scores, and the oracle's target score (an upper bound: selection on the target)."""
    if not searches:
        return ""
    lines = [
        "**Hyperparameter search** (training-domain validation; the oracle selects on the target and is only an upper bound)",
        "",
        "| method | targets | metric | selected setting | validation | target (selected) | target (oracle) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in searches:
        sel = s["candidates"][s["selected"]]
        setting = ", ".join(f"{k}={v:.3g}" for k, v in sel["setting"].items()) or "defaults"
        for t, oi in s["oracle"].items():
            lines.append(
                f"| {s['method']} | {t} | {s['select_metric']} | {setting} | {sel['validation']:.3f} | {sel['target'][t]:.3f} | {s['candidates'][oi]['target'][t]:.3f} |"
            )
    return "\n".join(lines)
