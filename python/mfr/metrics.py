"""Verification metrics computed in Rust from one sort of the scores.

Conventions, for every function here:

* ``scores``: similarity scores, higher = more likely the same identity; ``labels``: True/1 for a
  genuine pair (same identity), False/0 for an impostor pair. Both 1-D, of equal length, as numpy
  arrays, torch tensors (CPU or CUDA; copied to host) or sequences. Any real dtype converts to float64
  (float16 included); scores must be finite; labels must be bool or exactly 0/1.
* An operating point at threshold ``t`` accepts every pair with ``score >= t``.
  TAR (true accept rate) = accepted genuine / genuine, FAR (false accept rate) = accepted impostor /
  impostor, FRR = 1 - TAR.
* Counts are exact integers and every output is float64, so 10^8 scores lose nothing.
* Bad input raises :class:`mfr.InvalidInputError` naming the argument and the first bad index.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from . import _core

__all__ = [
    "DEFAULT_FARS",
    "ConfidenceInterval",
    "IdentificationResult",
    "KFoldResult",
    "UndefinedMetricWarning",
    "ValAtFar",
    "VerificationReport",
    "bootstrap_ci",
    "bootstrap_group_counts",
    "eer",
    "identification",
    "kfold_accuracy",
    "percentile_interval",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_report",
]

DEFAULT_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


#: A requested metric cannot be measured from the given pairs (and is reported as NaN).
UndefinedMetricWarning = _core.UndefinedMetricWarning


def roc_curve(
    scores: Any, labels: Any, drop_intermediate: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ROC curve: ``(fpr, tpr, thresholds)``, float64 arrays of equal length.

    Point for point what ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=...)``
    returns: the first point is (0, 0) at threshold ``+inf``, then one point per distinct score in
    decreasing order (tied scores form one point). With ``drop_intermediate=True``, points on a
    straight segment between their neighbours are dropped (the curve and its area are unchanged).
    Note the default here is ``False`` (all points), sklearn's is ``True``.
    """
    return _core.roc_curve(scores, labels, bool(drop_intermediate))


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve: the probability that a random genuine pair scores higher than a
    random impostor pair, ties counting one half (equals ``sklearn.metrics.roc_auc_score``)."""
    return _core.roc_auc(scores, labels)


def eer(scores: Any, labels: Any) -> tuple[float, float]:
    """Equal error rate ``(rate, threshold)``: where FAR and FRR meet.

    Walking the ROC points by decreasing threshold (starting from FAR 0, FRR 1 at ``+inf``), the
    first point ``k`` with FRR <= FAR is found; ``rate`` is where the straight segment from point
    ``k-1`` to point ``k`` crosses FAR = FRR (linear interpolation), and ``threshold`` is point
    ``k``'s threshold, the highest threshold whose FRR does not exceed its FAR.
    """
    rate, threshold = _core.eer(scores, labels)
    return float(rate), float(threshold)


def tar_at_far(
    scores: Any, labels: Any, fars: float | Iterable[float] = DEFAULT_FARS
) -> dict[float, tuple[float, float]]:
    """TAR at fixed FAR: ``{far: (tar, threshold)}``.

    For each target FAR, ``tar`` is the largest TAR over operating points whose FAR is <= the
    target, and ``threshold`` is that point's threshold (accept scores >= it). When even the
    highest score is shared by too many impostors, only rejecting everything meets the target:
    ``(0.0, inf)``.

    A target below ``1 / (number of impostor pairs)`` cannot be measured (it would need a fraction
    of one impostor pair): it is reported as ``(nan, nan)`` with an :class:`UndefinedMetricWarning`,
    never as a made-up number. Targets must lie in (0, 1].
    """
    targets = [float(fars)] if isinstance(fars, (int, float)) else [float(f) for f in fars]
    tar, thr = _core.tar_at_far(scores, labels, targets)
    result = {f: (float(t), float(h)) for f, t, h in zip(targets, tar, thr)}
    _warn_undefined("tar_at_far", [f for f, (t, _) in result.items() if math.isnan(t)])
    return result


def _warn_undefined(func: str, fars: list[float]) -> None:
    if fars:
        warnings.warn(
            f"{func}: FAR target(s) {fars} are below 1/(number of impostor pairs) and cannot be "
            "measured from these pairs; reported as NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )


#: insightface's VAL at a target FAR across folds (the Rust type; see :func:`kfold_accuracy`).
ValAtFar = _core.ValAtFar
#: Result of :func:`kfold_accuracy` (the Rust type: ``protocol``, ``n_folds``, ``mean``, ``std``,
#: per-fold ``fold_accuracies`` and ``thresholds``, ``val``).
KFoldResult = _core.KFoldResult


def kfold_accuracy(
    scores: Any,
    labels: Any,
    n_folds: int = 10,
    protocol: Literal["exact", "insightface", "facexzoo"] = "exact",
    folds: Any = None,
) -> KFoldResult:
    """k-fold verification accuracy (LFW-style): pick a threshold on k-1 folds, measure on the last.

    ``scores`` are cosine similarities of the pairs, in the protocol's pair order.

    * ``"exact"``: unshuffled k-fold split (as sklearn's ``KFold(shuffle=False)``: the first
      ``n % k`` folds get one extra pair). The training threshold is the best of *all* operating
      points (every distinct training score; accept ``score >= t``; among equally accurate points
      the highest score), placed midway to the next lower distinct training score.
    * ``"insightface"``: insightface's ``eval/verification.py``: the same split, distance
      ``2 - 2 * score``, accept ``distance < t`` for ``t`` in ``0, 0.01, ..., 3.99``, the first best
      threshold on the training folds; ``std`` is the population std (``np.std``). Also reports
      ``val``: VAL@FAR=1e-3 with thresholds ``0, 0.001, ..., 3.999``, the test threshold linearly
      interpolated at the target on the training-fold FAR (as ``np.interp``; current scipy's
      ``interp1d`` rejects the duplicate FARs such a grid produces), 0.0 when no grid FAR reaches
      the target.
    * ``"facexzoo"``: FaceX-Zoo's LFW evaluator: ``n_folds`` consecutive equal subsets (``n`` must
      divide by ``n_folds``, as LFW's 10 x 600), scores stored as float32, 1000 evenly spaced
      thresholds between the training min and max score (``np.linspace`` in float64), the first
      maximizing Youden's J = TPR - FPR with ``score > t`` accepted; on the test subset genuine
      pairs with ``score > t`` and impostor pairs with ``score < t`` count as correct; ``std`` is the
      standard error ``std(ddof=1) / sqrt(n_folds)``.

    ``folds`` (``exact`` only): a fold number in ``[0, n_folds)`` per pair instead of the
    consecutive split, e.g. folds of disjoint identities so that no identity both chooses the
    threshold and is tested with it (as :func:`mfr.experiments.evaluate.evaluate_domain` does).
    """
    return _core.kfold_accuracy(scores, labels, n_folds, str(protocol), folds)


@dataclass(frozen=True)
class IdentificationResult:
    """Closed-set identification: ``cmc[k]`` = rank-k accuracy; ``probe_ranks`` = each probe's rank."""

    cmc: dict[int, float]
    probe_ranks: npt.NDArray[np.int64]

    def curve(self, max_rank: int | None = None) -> npt.NDArray[np.float64]:
        """The CMC curve: element ``k - 1`` is the rank-k accuracy, for k = 1..max_rank."""
        top = int(max_rank if max_rank is not None else self.probe_ranks.max())
        counts = np.bincount(np.minimum(self.probe_ranks, top + 1), minlength=top + 2)[1 : top + 1]
        return np.cumsum(counts) / len(self.probe_ranks)


def identification(
    gallery: Any, gallery_ids: Any, probes: Any, probe_ids: Any, ranks: Iterable[int] = (1, 5, 10)
) -> IdentificationResult:
    """Closed-set identification by cosine similarity (CMC / rank-k accuracy).

    ``gallery`` (G, D) and ``probes`` (P, D) are embeddings (floating point, same device, CPU or
    CUDA; similarities are computed there in chunks, never as a whole P x G matrix);
    ``gallery_ids`` / ``probe_ids`` are integer identities. Every probe identity must occur in the
    gallery. A probe's rank is 1 + the number of gallery entries (images) of *other* identities
    scoring at least as high as its best-scoring mate: ties count against the probe.
    """
    ks = [int(k) for k in ranks]
    if not ks or min(ks) < 1:
        raise _core.InvalidInputError(f"identification: ranks must be integers >= 1, got {list(ks)}")
    for empty, ids in (("the gallery is empty", gallery_ids), ("there are no probes", probe_ids)):
        if (ids.numel() if isinstance(ids, torch.Tensor) else np.size(ids)) == 0:
            raise _core.InvalidInputError(
                f"identification: {empty}; rank-k accuracy needs at least one gallery entry and one probe"
            )
    probe_ranks = _core.identification_ranks(gallery, gallery_ids, probes, probe_ids)
    cmc = {k: float(np.mean(probe_ranks <= k)) for k in ks}
    return IdentificationResult(cmc=cmc, probe_ranks=probe_ranks)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A bootstrap percentile interval around ``estimate`` (the value on the full data)."""

    estimate: float
    low: float
    high: float
    std: float
    confidence: float
    n_resamples: int
    n_valid: int

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.low:.4f}, {self.high:.4f}]"


def _tar_key(far: float) -> str:
    return f"tar@far={far:g}"


def _resample_columns(raw: _core.VerificationSummary, fars: list[float]) -> dict[str, npt.NDArray[np.float64]]:
    columns = {"auc": raw.boot_auc, "eer": raw.boot_eer, "accuracy": raw.boot_accuracy}
    columns.update({_tar_key(f): np.ascontiguousarray(raw.boot_tar[:, j]) for j, f in enumerate(fars)})
    return columns


def percentile_interval(estimate: float, resamples: Any, confidence: float = 0.95) -> ConfidenceInterval:
    """A percentile interval around ``estimate`` from bootstrap ``resamples`` (NaN resamples, e.g.
    ones that drew no impostor, are left out and counted in ``n_resamples - n_valid``)."""
    col = np.asarray(resamples, dtype=np.float64)
    valid = col[~np.isnan(col)]
    alpha = 100 * (1 - confidence) / 2
    if len(valid):
        low, high = np.percentile(valid, [alpha, 100 - alpha])
        std = float(np.std(valid, ddof=1)) if len(valid) > 1 else 0.0
    else:
        low = high = std = math.nan
    return ConfidenceInterval(float(estimate), float(low), float(high), std, confidence, len(col), len(valid))


def _check_bootstrap_args(func: str, n_bootstrap: int, confidence: float) -> None:
    if not 0 < confidence < 1:
        raise _core.InvalidInputError(f"{func}: confidence must lie in (0, 1), got {confidence}")
    if n_bootstrap < 0:
        raise _core.InvalidInputError(f"{func}: n_bootstrap must be >= 0, got {n_bootstrap}")


@dataclass(frozen=True)
class VerificationReport:
    """ROC, AUC, EER, TAR@FAR and best accuracy of one set of pairs (see :func:`verification_report`)."""

    n_genuine: int
    n_impostor: int
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, tuple[float, float]]
    best_accuracy: float
    best_accuracy_threshold: float
    fpr: npt.NDArray[np.float64]
    tpr: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]
    ci: dict[str, ConfidenceInterval]
    #: Per metric key of ``ci``, the value of every bootstrap resample (in resample order).
    resamples: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable numbers (the curve as lists)."""
        return {
            "n_genuine": self.n_genuine,
            "n_impostor": self.n_impostor,
            "auc": self.auc,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "tar_at_far": {str(f): {"tar": t, "threshold": h} for f, (t, h) in self.tar_at_far.items()},
            "best_accuracy": self.best_accuracy,
            "best_accuracy_threshold": self.best_accuracy_threshold,
            "roc": {"fpr": self.fpr.tolist(), "tpr": self.tpr.tolist(), "thresholds": self.thresholds.tolist()},
            "ci": {k: vars(v) for k, v in self.ci.items()},
        }

    def table(self) -> str:
        """A readable text table (with CIs when the report was bootstrapped)."""
        ci_head = f"  {round(100 * next(iter(self.ci.values())).confidence)}% CI" if self.ci else ""
        lines = [
            f"{self.n_genuine} genuine / {self.n_impostor} impostor pairs",
            f"{'metric':<16} {'value':>9}{ci_head}",
        ]

        def row(name: str, key: str, value: float) -> None:
            ci = self.ci.get(key)
            extra = f"  [{ci.low:.4f}, {ci.high:.4f}]" if ci else ""
            lines.append(f"{name:<16} {value:>9.4f}{extra}")

        row("AUC", "auc", self.auc)
        row("EER", "eer", self.eer)
        row("best accuracy", "accuracy", self.best_accuracy)
        for far, (tar, _) in self.tar_at_far.items():
            row(f"TAR@FAR={far:g}", _tar_key(far), tar)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot_roc(self, ax: Any = None, det: bool = False, label: str | None = None) -> Any:
        """Plot the ROC (TAR vs FAR, log FAR axis) or, with ``det=True``, the DET curve
        (FRR vs FAR, both log). Returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 4))
        keep = self.fpr > 0
        fpr = self.fpr[keep]
        if det:
            ax.plot(fpr, 1 - self.tpr[keep], label=label)
            ax.set_yscale("log")
            ax.set_ylabel("false reject rate")
        else:
            ax.plot(fpr, self.tpr[keep], label=label or f"AUC {self.auc:.4f}")
            ax.set_ylabel("true accept rate")
            ax.set_ylim(0, 1.01)
        ax.set_xscale("log")
        ax.set_xlabel("false accept rate")
        ax.grid(True, which="both", alpha=0.3)
        if label is not None or not det:
            ax.legend(loc="lower right" if not det else "upper right")
        return ax


def verification_report(
    scores: Any,
    labels: Any,
    fars: float | Iterable[float] = DEFAULT_FARS,
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    groups: Any = None,
    seed: int = 0,
    n_groups: int | None = None,
) -> VerificationReport:
    """ROC, AUC, EER, TAR@FAR and best accuracy from a single sort of the scores.

    The curve is stored with ``drop_intermediate=True`` (same area and corners, far fewer points).
    ``best_accuracy`` is the accuracy of the best single threshold chosen on these same pairs (an
    optimistic, in-sample number; use :func:`kfold_accuracy` for a held-out one).

    With ``n_bootstrap > 0``, ``ci`` holds percentile confidence intervals from that many seeded
    resamples (``auc``, ``eer``, ``accuracy``, ``tar@far=<far>``): pairs are resampled with
    replacement, or, when ``groups`` gives a group per pair (e.g. the identity of its probe), whole
    groups are, which respects the dependence between pairs sharing an identity. ``groups`` of shape
    ``(n, 2)`` (the identities of both images) resample two-way: a pair of two different identities
    counts as often as the product of their multiplicities, so impostor pairs move with *both*
    identities; a pair within one identity counts as often as that identity. With ``n_groups``,
    groups are numbers in ``[0, n_groups)`` and each resample draws ``n_groups`` of them: two
    reports over the same identity universe and seed then use the same draws, resample by
    resample, which is what a paired comparison needs (``resamples`` keeps every resample's
    values; :func:`bootstrap_group_counts` gives the draws themselves). Resamples reuse the one
    sort (weighted walks), run in parallel and do not depend on the thread count.
    """
    _check_bootstrap_args("verification_report", int(n_bootstrap), confidence)
    targets = [float(fars)] if isinstance(fars, (int, float)) else [float(f) for f in fars]
    groups2 = None
    if groups is not None:
        g = groups if isinstance(groups, torch.Tensor) else np.asarray(groups)
        if g.ndim == 2:
            if g.shape[1] != 2:
                raise _core.InvalidInputError(
                    f"verification_report: groups must have shape (n,) or (n, 2), got {tuple(g.shape)}"
                )
            groups, groups2 = g[:, 0], g[:, 1]
    raw = _core.verification_summary(scores, labels, targets, n_bootstrap, seed, groups, groups2, n_groups)
    tar = {f: (float(t), float(h)) for f, t, h in zip(targets, raw.tar, raw.tar_thresholds)}
    _warn_undefined("verification_report", [f for f, (t, _) in tar.items() if math.isnan(t)])
    best_acc, best_thr = raw.best_accuracy
    eer_rate, eer_thr = raw.eer
    estimates = {"auc": raw.auc, "eer": eer_rate, "accuracy": best_acc}
    estimates.update({_tar_key(f): t for f, (t, _) in tar.items()})
    resamples = _resample_columns(raw, targets) if n_bootstrap > 0 else {}
    ci = {k: percentile_interval(estimates[k], v, confidence) for k, v in resamples.items()}
    return VerificationReport(
        n_genuine=raw.n_genuine,
        n_impostor=raw.n_impostor,
        auc=raw.auc,
        eer=float(eer_rate),
        eer_threshold=float(eer_thr),
        tar_at_far=tar,
        best_accuracy=float(best_acc),
        best_accuracy_threshold=float(best_thr),
        fpr=raw.fpr,
        tpr=raw.tpr,
        thresholds=raw.thresholds,
        ci=ci,
        resamples=resamples,
    )


def bootstrap_ci(
    scores: Any,
    labels: Any,
    fars: float | Iterable[float] = (1e-3,),
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    groups: Any = None,
    seed: int = 0,
    n_groups: int | None = None,
) -> dict[str, ConfidenceInterval]:
    """Seeded bootstrap confidence intervals of AUC, EER, best accuracy and TAR at each FAR.

    Keys: ``"auc"``, ``"eer"``, ``"accuracy"``, ``"tar@far=<far>"``. Resamples pairs, or whole
    groups when ``groups`` is given (see :func:`verification_report`, which this wraps).
    """
    if n_bootstrap < 1:
        raise _core.InvalidInputError(f"bootstrap_ci: n_bootstrap must be >= 1, got {n_bootstrap}")
    return verification_report(scores, labels, fars, n_bootstrap, confidence, groups, seed, n_groups).ci


def bootstrap_group_counts(n_groups: int, n_resamples: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """``(n_resamples, n_groups)`` multiplicities: row ``b`` is the group draw of resample ``b`` that
    :func:`verification_report` with ``groups``, ``n_groups`` and ``seed`` uses, so any other
    statistic over the same groups (rank-1 per identity, say) can be resampled jointly with it."""
    return _core.bootstrap_group_counts(n_groups, n_resamples, seed)
