"""Evaluation of a backbone on one (unseen) domain, as the paper's GFR protocols report it.

Per domain (every identity of it is a test identity, disjoint from training in both protocols):

- verification over all genuine pairs and up to ``max_impostors`` seeded impostor pairs: TAR at
  FAR 1e-3 and 1e-2, AUC, EER, each with a percentile bootstrap CI that resamples identities
  (a pair belongs to the identity of its first image), so dependent pairs move together;
- ``accuracy``: 10-fold verification accuracy on a balanced set (every genuine pair and as many
  seeded impostor pairs, shuffled), threshold chosen on 9 folds and measured on the 10th; its
  interval is mean +- t(0.975, 9) * std / sqrt(10) over the folds;
- identification (``rank1``): one gallery and one probe image per identity (seeded), rank-1 by
  cosine similarity, with a percentile bootstrap CI over probes.

Embeddings come from :meth:`mfr.nn.Backbone.embed` (eval mode; ``bn="target"`` uses the target
domain's own BatchNorm statistics).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from . import _core
from .data import normalize_images
from .facedata import FaceData
from .metrics import UndefinedMetricWarning, identification, kfold_accuracy, verification_report
from .nn import Backbone

__all__ = ["evaluate_domain", "METRICS"]

#: Metric keys of :func:`evaluate_domain`, in table order (higher is better except ``eer``).
METRICS = ("tar@far=1e-3", "tar@far=1e-2", "auc", "eer", "accuracy", "rank1")

_T_975_9 = 2.2621571627409915  # Student t quantile for a 95% interval over 10 folds


def _interval(estimate: float, low: float, high: float) -> dict[str, float]:
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def embed_domain(backbone: Backbone, data: FaceData, domain: int | str, bn: str = "running", batch_size: int = 256) -> tuple[np.ndarray, torch.Tensor]:
    """``(image positions in data.index, embeddings)`` of every image of ``domain``."""
    from . import distributed

    d = data.domain_number(domain)
    positions = np.flatnonzero(data.index.domains == d)
    device = backbone.parameter_list()[0].device
    _, c, s, _, _ = backbone.arch
    w = distributed.world_size()
    if w > 1 and bn == "running":  # each rank embeds a contiguous shard; gathered in rank order
        mine = np.array_split(positions, w)[distributed.rank()]
        images = normalize_images(data.load(mine, s, c)).to(device=device, dtype=backbone.parameter_list()[0].dtype)
        return positions, distributed.all_gather_rows(backbone.embed(images, batch_size=batch_size, bn=bn))
    images = normalize_images(data.load(positions, s, c)).to(device=device, dtype=backbone.parameter_list()[0].dtype)
    return positions, backbone.embed(images, batch_size=batch_size, bn=bn)


def evaluate_domain(
    backbone: Backbone,
    data: FaceData,
    domain: int | str,
    *,
    seed: int = 0,
    n_bootstrap: int = 200,
    max_impostors: int = 200_000,
    bn: str = "running",
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Verification and identification metrics of ``backbone`` on ``domain`` of ``data``.

    Returns ``{"domain", "n_identities", "n_images", "n_genuine", "n_impostor", "metrics":
    {key: {"estimate", "low", "high"}}, "roc": {"fpr", "tpr"}}`` (keys in :data:`METRICS`; with
    ``n_bootstrap=0`` low = high = estimate for the bootstrap-based ones).
    """
    d = data.domain_number(domain)
    positions, emb = embed_domain(backbone, data, d, bn=bn)
    local = np.full(len(data.index), -1, dtype=np.int64)
    local[positions] = np.arange(len(positions))
    ids = data.index.identities
    n_ids = len(np.unique(ids[positions]))
    if n_ids < 2:
        raise _core.InvalidInputError(f"evaluate_domain: domain {data.domain_names[d]!r} has {n_ids} identity; verification needs at least 2")
    counts = np.bincount(ids[positions])
    counts = counts[counts > 0]
    n_pairs = len(positions) * (len(positions) - 1) // 2
    n_genuine = int((counts * (counts - 1) // 2).sum())
    n_imp = int(min(max_impostors, n_pairs - n_genuine))
    pairs, labels = data.index.verification_pairs(d, n_impostors=n_imp, seed=seed)
    lp = local[pairs]
    emb_cpu = emb.float().cpu()
    scores = _core.pair_scores(emb_cpu, lp)
    groups = ids[pairs[:, 0]]
    with warnings.catch_warnings():
        # A small domain may have fewer than 1/FAR impostor pairs: that TAR is NaN (see METRICS).
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rep = verification_report(scores, labels, fars=(1e-3, 1e-2), n_bootstrap=n_bootstrap, confidence=confidence, groups=groups, seed=seed)
    metrics: dict[str, dict[str, float]] = {}
    for key, far in (("tar@far=1e-3", 1e-3), ("tar@far=1e-2", 1e-2)):
        est = rep.tar_at_far[far][0]
        ci = rep.ci.get(f"tar@far={far:g}") if rep.ci else None
        metrics[key] = _interval(est, ci.low, ci.high) if ci else _interval(est, est, est)
    for key in ("auc", "eer"):
        est = getattr(rep, key)
        ci = rep.ci.get(key) if rep.ci else None
        metrics[key] = _interval(est, ci.low, ci.high) if ci else _interval(est, est, est)

    # Balanced 10-fold accuracy: all genuine pairs and as many impostors, shuffled.
    rng = np.random.default_rng([seed, 1])
    gen = np.flatnonzero(labels)
    imp = np.flatnonzero(~labels)
    take = np.concatenate([gen, rng.choice(imp, size=min(len(gen), len(imp)), replace=False)])
    take = take[rng.permutation(len(take))]
    folds = min(10, len(take))
    if folds >= 2:
        kf = kfold_accuracy(scores[take], labels[take], n_folds=folds)
        half = (_T_975_9 if folds == 10 else 2.0) * kf.std / np.sqrt(folds)
        metrics["accuracy"] = _interval(kf.mean, kf.mean - half, kf.mean + half)
    else:
        metrics["accuracy"] = _interval(float("nan"), float("nan"), float("nan"))

    # Identification: one gallery and one probe per identity.
    gallery, probe = data.index.gallery_probe(d, seed=seed)
    ident = identification(emb_cpu[local[gallery]], ids[gallery], emb_cpu[local[probe]], ids[probe], ranks=(1,))
    hits = (ident.probe_ranks <= 1).astype(np.float64)
    if n_bootstrap > 0:
        boot = np.random.default_rng([seed, 2]).integers(0, len(hits), size=(n_bootstrap, len(hits)))
        means = hits[boot].mean(1)
        a = (1 - confidence) / 2
        metrics["rank1"] = _interval(hits.mean(), np.quantile(means, a), np.quantile(means, 1 - a))
    else:
        metrics["rank1"] = _interval(hits.mean(), hits.mean(), hits.mean())
    return {
        "domain": data.domain_names[d],
        "n_identities": n_ids,
        "n_images": int(len(positions)),
        "n_genuine": int(rep.n_genuine),
        "n_impostor": int(rep.n_impostor),
        "metrics": {k: metrics[k] for k in METRICS},
        "roc": {"fpr": np.asarray(rep.fpr).tolist(), "tpr": np.asarray(rep.tpr).tolist()},
    }
