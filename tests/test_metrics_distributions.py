"""Parity with sklearn on 200k scores of every distribution verification produces (the shapes
benches/metrics.py times: bell-shaped, shifted, heavy ties, a far outlier, bimodal, real embeddings),
float64 and float32, 1% and 50% genuine: the radix partitioning must not depend on the shape."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from score_distributions import DISTRIBUTIONS, real_scores
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from mfr.metrics import UndefinedMetricWarning, roc_auc, roc_curve, tar_at_far, verification_report

N = 200_000
FARS = (1e-4, 1e-3, 1e-2, 1e-1)


def _scores(kind: str, dtype: type, genuine: float) -> tuple[np.ndarray, np.ndarray]:
    if kind == "real" and real_scores() is None:
        pytest.skip("the shared faces are not beside the checkout")
    rng = np.random.default_rng(7)
    labels = rng.random(N) < genuine
    return DISTRIBUTIONS[kind](rng, labels).astype(dtype), labels


def _reference_tar(fpr: np.ndarray, tpr: np.ndarray, thr: np.ndarray, far: float) -> tuple[float, float]:
    """TAR at the lowest threshold whose FAR is <= far, from sklearn's full curve."""
    k = np.flatnonzero(fpr <= far)[-1]
    return float(tpr[k]), float(thr[k])


def _reference_eer(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int) -> float:
    """The EER as documented: FAR interpolated where FRR - FAR changes sign, from exact counts."""
    tp, fp = np.rint(tpr * n_pos), np.rint(fpr * n_neg)
    gap = (n_pos - tp) * n_neg - fp * n_pos
    k = int(np.argmax(gap <= 0))
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


@pytest.mark.parametrize("genuine", [0.5, 0.01])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", list(DISTRIBUTIONS))
def test_every_distribution_equals_sklearn(kind, dtype, genuine):
    scores, labels = _scores(kind, dtype, genuine)
    fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate=True)
    s_fpr, s_tpr, s_thr = sk_roc_curve(labels, scores, drop_intermediate=True)
    np.testing.assert_array_equal(thr, s_thr)
    np.testing.assert_array_equal(fpr, s_fpr)
    np.testing.assert_array_equal(tpr, s_tpr)
    auc = roc_auc(scores, labels)
    assert auc == pytest.approx(roc_auc_score(labels, scores), rel=1e-12, abs=1e-12)

    full = sk_roc_curve(labels, scores, drop_intermediate=False)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        tars = tar_at_far(scores, labels, FARS)
        rep = verification_report(scores, labels, fars=FARS)
    for far in FARS:
        assert tars[far] == _reference_tar(*full, far)
    assert rep.auc == pytest.approx(auc, rel=1e-12, abs=1e-12)
    assert rep.eer == pytest.approx(_reference_eer(full[0], full[1], n_pos, n_neg), abs=1e-12)


def test_the_shapes_are_what_they_say():
    # the distributions must keep their defining features, or the parity above tests less than it claims
    rng = np.random.default_rng(0)
    labels = rng.random(100_000) < 0.5
    assert np.unique(DISTRIBUTIONS["ties"](rng, labels)).size < 2_000
    assert DISTRIBUTIONS["outlier"](rng, labels).max() == 1e6
    bimodal = DISTRIBUTIONS["bimodal"](rng, labels)[~labels]
    assert np.mean(np.abs(bimodal) < 0.1) < 0.01  # two impostor modes, almost nothing between them
