"""Evaluation of a backbone on one (unseen) domain, as the paper's GFR protocols report it.

Per domain (every identity of it is a test identity, disjoint from training in both protocols):

- verification over all genuine pairs and up to ``max_impostors`` seeded impostor pairs: TAR at
  FAR 1e-3 and 1e-2, AUC, EER, each with a percentile bootstrap CI that resamples *identities*
  two-way: a genuine pair counts as often as its identity is drawn, an impostor pair as the
  product of its two identities' draws, so pairs that share an identity move together;
- ``accuracy``: 10-fold (fewer for domains under 20 identities: at least two identities per fold)
  verification accuracy over folds of disjoint identities (no identity both
  chooses the threshold and is tested with it), each fold balanced (as many impostor pairs within
  the fold as genuine pairs, seeded); its interval is mean +- t(0.975, k-1) * sd / sqrt(k) over the
  k folds, sd the sample standard deviation;
- identification: ``rank1`` puts one gallery image per identity (with >= 2 images) and every other
  image of those identities as a probe, averaged over ``n_gallery_draws`` seeded gallery draws;
  ``rank1_single`` is the paper's protocol (one gallery and one probe image per identity, draw 0),
  which moves in steps of 1/#identities. Both with identity-bootstrap CIs.

Every seeded choice (pairs, folds, galleries, bootstrap draws) is keyed by the domain's *name*, the
identities' *names* and ``seed``, never by positions, so one checkpoint gets the same numbers on one
domain whatever entry point, subset or ordering of the data evaluated it; and every evaluation of
the same domain with the same seed and ``n_bootstrap`` draws the same identities in resample ``b``,
so results of two methods (or seeds) can be compared resample by resample (``resamples`` in the
result; see :meth:`mfr.experiments.reproduce.ProtocolResult.compare`).

Embeddings come from :meth:`mfr.nn.Backbone.embed` (eval mode; ``bn="target"`` uses the target
domain's own BatchNorm statistics).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from .. import _core
from ..data import normalize_images
from ..facedata import FaceData
from ..metrics import (
    UndefinedMetricWarning,
    bootstrap_group_counts,
    identification,
    kfold_accuracy,
    percentile_interval,
    verification_report,
)
from ..nn import Backbone
from . import distributed

__all__ = ["METRICS", "RESAMPLED_METRICS", "embed_domain", "evaluate_domain", "t_quantile"]

#: Metric keys of :func:`evaluate_domain`, in table order (higher is better except ``eer``).
METRICS = ("tar@far=1e-3", "tar@far=1e-2", "auc", "eer", "accuracy", "rank1", "rank1_single")
#: The metrics whose identity-bootstrap resamples are returned (all but the k-fold accuracy, whose
#: folds are its own resampling).
RESAMPLED_METRICS = ("tar@far=1e-3", "tar@far=1e-2", "auc", "eer", "rank1", "rank1_single")


#: FARs at which every resample's TAR is kept, for the ROC's bootstrap band (1e-3 and 1e-2 are
#: the headline FARs and are added to these).
ROC_BAND_FARS = tuple(
    float(f) for f in 10.0 ** np.arange(-4.0, 0.01, 0.25) if not np.isclose(f, 1e-3) and not np.isclose(f, 1e-2)
)


def _interval(estimate: float, low: float, high: float) -> dict[str, float]:
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


@functools.lru_cache(maxsize=256)  # a few (p, df) pairs recur in every report
def t_quantile(p: float, df: int) -> float:
    """Quantile ``p`` (in (0.5, 1)) of Student's t with ``df`` degrees of freedom: bisection on the
    CDF, integrated with Simpson's rule (accurate to ~1e-9; no scipy needed)."""
    if not (0.5 < p < 1 and df >= 1):
        raise _core.InvalidInputError(f"t_quantile: need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x: float) -> float:
        # 0.5 + integral of the density over [0, x], in the substitution u = atan(t) which keeps
        # the integrand smooth and bounded for the heavy tails of small df.
        hi = math.atan(x)
        n = 2000
        h = hi / n
        f = [c * (1 + math.tan(i * h) ** 2 / df) ** (-(df + 1) / 2) / math.cos(i * h) ** 2 for i in range(n + 1)]
        return float(0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2])))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def embed_domain(
    backbone: Backbone,
    data: FaceData,
    domain: int | str,
    bn: str = "running",
    batch_size: int = 256,
    flip: bool = False,
) -> tuple[np.ndarray, torch.Tensor]:
    """``(image positions in data.index, embeddings)`` of every image of ``domain``."""
    d = data.domain_number(domain)
    positions = np.flatnonzero(data.index.domains == d)
    device = backbone.parameter_list()[0].device
    c, s = backbone.in_channels, backbone.input_size
    w = distributed.world_size()
    if w > 1 and bn == "running":  # each rank embeds a contiguous shard; gathered in rank order
        mine = np.array_split(positions, w)[distributed.rank()]
        images = normalize_images(data.load(mine, s, c)).to(device=device, dtype=backbone.parameter_list()[0].dtype)
        return positions, distributed.all_gather_rows(backbone.embed(images, batch_size=batch_size, bn=bn, flip=flip))
    images = normalize_images(data.load(positions, s, c)).to(device=device, dtype=backbone.parameter_list()[0].dtype)
    return positions, backbone.embed(images, batch_size=batch_size, bn=bn, flip=flip)


def _identity_folds(
    pairs_rank: npt.NDArray[np.int64], labels: npt.NDArray[np.bool_], n_ids: int, seed: int, domain: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
    """``(chosen pair positions, their fold numbers, k)``: identities (by name rank) dealt into
    ``k = min(10, n_ids // 2)`` folds (at least two identities each, so a fold has impostor pairs)
    in a seeded order; a pair belongs to a fold when both its
    identities do (impostor pairs across folds are left out); each fold keeps as many of its
    impostor pairs as it has genuine pairs (or all genuine pairs it can match), seeded. Folds
    left without pairs are dropped."""
    k = min(10, n_ids // 2)
    if k < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    rng = np.random.default_rng(_core.name_seed(seed, [domain, "folds"]))
    fold_of = np.empty(n_ids, dtype=np.int64)
    fold_of[rng.permutation(n_ids)] = np.arange(n_ids) % k
    fa, fb = fold_of[pairs_rank[:, 0]], fold_of[pairs_rank[:, 1]]
    chosen: list[npt.NDArray[np.int64]] = []
    folds: list[npt.NDArray[np.int64]] = []
    for f in range(k):
        inside = (fa == f) & (fb == f)
        gen, imp = np.flatnonzero(inside & labels), np.flatnonzero(inside & ~labels)
        m = min(len(gen), len(imp))
        if m == 0:
            continue
        take = np.concatenate([np.sort(rng.choice(gen, m, replace=False)), np.sort(rng.choice(imp, m, replace=False))])
        chosen.append(take)
        folds.append(np.full(len(take), len(folds), dtype=np.int64))
    if not chosen:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    return np.concatenate(chosen), np.concatenate(folds), len(chosen)


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
    n_gallery_draws: int = 10,
    flip: bool = False,
) -> dict[str, Any]:
    """Verification and identification metrics of ``backbone`` on ``domain`` of ``data``.

    Returns ``{"domain", "n_identities", "n_images", "n_genuine", "n_impostor", "n_probes",
    "metrics": {key: {"estimate", "low", "high"}}, "accuracy_folds": [...], "resamples": {key:
    [...]}, "roc": {"fpr", "tpr"}, "roc_band": {"far", "tar", "low", "high"}}`` (keys in
    :data:`METRICS`; ``roc_band``: TAR at :data:`ROC_BAND_FARS` with its bootstrap interval; ``resamples`` holds, for
    :data:`RESAMPLED_METRICS`, the value in each of the ``n_bootstrap`` identity resamples, empty
    with ``n_bootstrap=0``, when low = high = estimate for those metrics). See the module docstring
    for the protocol; every draw is keyed by names and ``seed``.
    """
    if not 1 <= n_gallery_draws <= 1000:
        raise _core.InvalidInputError(f"evaluate_domain: n_gallery_draws must lie in [1, 1000], got {n_gallery_draws}")
    if not 0 <= seed < 2**64:
        raise _core.InvalidInputError(f"evaluate_domain: seed must lie in [0, 2**64), got {seed}")
    if not 0 <= n_bootstrap <= 100_000:
        raise _core.InvalidInputError(f"evaluate_domain: n_bootstrap must lie in [0, 100000], got {n_bootstrap}")
    d = data.domain_number(domain)
    name = data.domain_names[d]
    positions, emb = embed_domain(backbone, data, d, bn=bn, flip=flip)
    local = np.full(len(data.index), -1, dtype=np.int64)
    local[positions] = np.arange(len(positions))
    ids = data.index.identities
    id_names = data.index.identity_names
    present = np.unique(ids[positions])
    n_ids = len(present)
    if n_ids < 2:
        raise _core.InvalidInputError(
            f"evaluate_domain: domain {name!r} has {n_ids} identity; verification needs at least 2"
        )
    # Identities numbered by name: the group universe every resample of this domain draws from.
    rank_of = np.full(len(id_names), -1, dtype=np.int64)
    rank_of[present[np.argsort([id_names[i] for i in present], kind="stable")]] = np.arange(n_ids)
    counts = np.bincount(ids[positions])
    counts = counts[counts > 0]
    n_pairs = len(positions) * (len(positions) - 1) // 2
    n_genuine = int((counts * (counts - 1) // 2).sum())
    n_imp = int(min(max_impostors, n_pairs - n_genuine))
    pairs, labels = data.index.verification_pairs(d, n_impostors=n_imp, seed=seed)
    emb_cpu = emb.float().cpu()
    scores = _core.pair_scores(emb_cpu, local[pairs])
    pair_ranks = rank_of[ids[pairs]]
    boot_seed = _core.name_seed(seed, [name, "bootstrap"])
    with warnings.catch_warnings():
        # A small domain may have fewer than 1/FAR impostor pairs: that TAR is NaN (see METRICS).
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        rep = verification_report(
            scores,
            labels,
            fars=(1e-3, 1e-2, *ROC_BAND_FARS),
            n_bootstrap=n_bootstrap,
            confidence=confidence,
            groups=pair_ranks,
            n_groups=n_ids,
            seed=boot_seed,
        )
    band_fars = sorted((1e-3, 1e-2, *ROC_BAND_FARS))
    roc_band = {"far": band_fars, "tar": [rep.tar_at_far[f][0] for f in band_fars], "low": [], "high": []}
    for f in band_fars:
        ci = rep.ci.get(f"tar@far={f:g}")
        roc_band["low"].append(ci.low if ci else math.nan)
        roc_band["high"].append(ci.high if ci else math.nan)
    metrics: dict[str, dict[str, float]] = {}
    resamples: dict[str, npt.NDArray[np.float64]] = {}
    for key, rkey in (
        ("tar@far=1e-3", "tar@far=0.001"),
        ("tar@far=1e-2", "tar@far=0.01"),
        ("auc", "auc"),
        ("eer", "eer"),
    ):
        ci = rep.ci.get(rkey)
        est = (
            ci.estimate
            if ci
            else (rep.tar_at_far[float(key.split("=")[1])][0] if key.startswith("tar") else getattr(rep, key))
        )
        metrics[key] = _interval(est, ci.low, ci.high) if ci else _interval(est, est, est)
        if rkey in rep.resamples:
            resamples[key] = rep.resamples[rkey]

    # k-fold accuracy over folds of disjoint identities.
    chosen, fold_ids, k = _identity_folds(pair_ranks, labels, n_ids, seed, name)
    fold_accuracies: list[float] = []
    if k >= 2:
        kf = kfold_accuracy(scores[chosen], labels[chosen], n_folds=k, folds=fold_ids)
        fold_accuracies = [float(a) for a in kf.fold_accuracies]
        sd = float(np.std(kf.fold_accuracies, ddof=1))
        half = t_quantile(1 - (1 - confidence) / 2, k - 1) * sd / math.sqrt(k)
        metrics["accuracy"] = _interval(
            kf.mean, max(0.0, kf.mean - half), min(1.0, kf.mean + half)
        )  # clipped to [0, 1]
    else:
        metrics["accuracy"] = _interval(math.nan, math.nan, math.nan)

    # Identification: hits and probes per identity (by name rank), so resamples can reweight them.
    weights = bootstrap_group_counts(n_ids, n_bootstrap, boot_seed).astype(np.float64) if n_bootstrap > 0 else None

    def rank1(draws: range, all_probes: bool) -> tuple[float, int, npt.NDArray[np.float64] | None]:
        """(rank-1 over every probe of every draw, probes per draw, its value per resample)."""
        hits, probes = np.zeros(n_ids), np.zeros(n_ids)
        for r in draws:
            gallery, probe = data.index.gallery_probe(d, seed=seed, draw=r, all_probes=all_probes)
            if len(gallery) == 0:
                break  # no identity with two images: identical for every draw
            ident = identification(emb_cpu[local[gallery]], ids[gallery], emb_cpu[local[probe]], ids[probe], ranks=(1,))
            hits += np.bincount(
                rank_of[ids[probe]], weights=(ident.probe_ranks <= 1).astype(np.float64), minlength=n_ids
            )
            probes += np.bincount(rank_of[ids[probe]], minlength=n_ids)
        if probes.sum() == 0:
            return math.nan, 0, None
        resample = None
        if weights is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                resample = (weights @ hits) / (weights @ probes)
        return float(hits.sum() / probes.sum()), int(probes.sum()) // len(draws), resample

    n_probes = 0
    for key, draws, every in (("rank1", range(n_gallery_draws), True), ("rank1_single", range(1), False)):
        est, per_draw, resample = rank1(draws, every)
        n_probes = per_draw if key == "rank1" else n_probes
        if resample is not None:
            resamples[key] = resample
            ci = percentile_interval(est, resample, confidence)
            metrics[key] = _interval(est, ci.low, ci.high)
        else:
            metrics[key] = _interval(est, est, est)
    return {
        "domain": name,
        "n_identities": n_ids,
        "n_images": len(positions),
        "n_genuine": int(rep.n_genuine),
        "n_impostor": int(rep.n_impostor),
        "n_probes": n_probes,
        "metrics": {k: metrics[k] for k in METRICS},
        "accuracy_folds": fold_accuracies,
        "resamples": {k: [round(float(x), 7) for x in resamples[k]] for k in RESAMPLED_METRICS if k in resamples},
        "roc": {"fpr": np.asarray(rep.fpr).tolist(), "tpr": np.asarray(rep.tpr).tolist()},
        "roc_band": roc_band,
    }
