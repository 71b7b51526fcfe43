"""k-fold protocols against numpy re-implementations of the published loops (tests/reference_metrics.py)."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from reference_metrics import exact_kfold, facexzoo_kfold, insightface_kfold

import mfr
from mfr.metrics import KFoldResult, kfold_accuracy


def lfw_like(n_pairs=600, seed=0, separation=2.5, ties=False):
    """Genuine/impostor cosine scores in LFW's layout (alternating blocks of same/different pairs)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n_pairs) // 30) % 2 == 0
    scores = np.where(labels, rng.normal(0.55, 0.12, n_pairs), rng.normal(0.55 - 0.12 * separation, 0.12, n_pairs))
    scores = np.clip(scores, -1, 1)
    if ties:
        scores = np.round(scores, 2)
    return scores, labels


def assert_matches(got: KFoldResult, ref: dict, tol=1e-12):
    np.testing.assert_allclose(got.fold_accuracies, ref["fold_accuracies"], rtol=0, atol=tol)
    np.testing.assert_allclose(got.thresholds, ref["thresholds"], rtol=0, atol=tol)
    assert got.mean == pytest.approx(ref["mean"], abs=tol)
    assert got.std == pytest.approx(ref["std"], abs=tol)


@pytest.mark.parametrize("seed,separation,ties", [(0, 2.5, False), (1, 1.0, False), (2, 0.3, True), (3, 4.0, True)])
def test_insightface_protocol_parity(seed, separation, ties):
    scores, labels = lfw_like(1200, seed, separation, ties)
    got = kfold_accuracy(scores, labels, 10, "insightface")
    ref = insightface_kfold(scores, labels, 10)
    assert_matches(got, ref)
    assert got.val is not None
    np.testing.assert_allclose(got.val.thresholds, ref["val_thresholds"], rtol=0, atol=1e-12)
    assert got.val.val_mean == pytest.approx(ref["val_mean"], abs=1e-12)
    assert got.val.val_std == pytest.approx(ref["val_std"], abs=1e-12)
    assert got.val.far_mean == pytest.approx(ref["far_mean"], abs=1e-12)
    assert got.val.far_target == 1e-3


@pytest.mark.parametrize("seed,separation,ties", [(0, 2.5, False), (1, 1.0, False), (2, 0.3, True)])
def test_facexzoo_protocol_parity(seed, separation, ties):
    scores, labels = lfw_like(6000, seed, separation, ties)
    assert_matches(kfold_accuracy(scores, labels, 10, "facexzoo"), facexzoo_kfold(scores, labels, 10))


@settings(max_examples=80, deadline=None)
@given(
    st.integers(20, 120),
    st.integers(2, 10),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["exact", "insightface", "facexzoo"]),
    st.booleans(),
)
def test_protocols_property_parity(n, k, seed, protocol, ties):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.clip(rng.normal(0.3, 0.3, n) + 0.3 * labels, -1, 1)
    if ties:
        scores = np.round(scores, 1)
    if protocol == "facexzoo":
        n -= n % k
        scores, labels = scores[:n], labels[:n]
    # Every training split needs both classes, and the insightface VAL every test fold.
    for train_idx in np.array_split(np.arange(n), k):
        assume(labels[train_idx].any() and not labels[train_idx].all())
    got = kfold_accuracy(scores, labels, k, protocol)
    ref = {"exact": exact_kfold, "insightface": insightface_kfold, "facexzoo": facexzoo_kfold}[protocol](
        scores, labels, k
    )
    assert_matches(got, ref)


def test_exact_protocol_reaches_best_possible_threshold():
    scores, labels = lfw_like(6000, 5, 2.5)
    exact = kfold_accuracy(scores, labels, 10, "exact")
    grid = kfold_accuracy(scores, labels, 10, "insightface")
    assert exact.mean >= grid.mean - 0.01
    assert 0.8 < exact.mean <= 1.0


def test_bad_arguments():
    scores, labels = lfw_like(100)
    with pytest.raises(
        mfr.InvalidInputError, match=r"n_folds must be between 2 and the number of pairs \(100\), got 101"
    ):
        kfold_accuracy(scores, labels, 101)
    with pytest.raises(mfr.InvalidInputError, match=r"argument 'n_folds' must be an integer in \[2, "):
        kfold_accuracy(scores, labels, 1)
    with pytest.raises(
        mfr.InvalidInputError, match=r"argument 'n_folds' must be an integer in \[2, 2\*\*63 - 1\], got -3"
    ):
        kfold_accuracy(scores, labels, -3)
    with pytest.raises(mfr.InvalidInputError, match="protocol must be 'exact', 'insightface' or 'facexzoo', got 'lfw'"):
        kfold_accuracy(scores, labels, 10, "lfw")  # type: ignore[arg-type]
    with pytest.raises(mfr.InvalidInputError, match="do not divide by 7"):
        kfold_accuracy(scores, labels, 7, "facexzoo")
    with pytest.raises(mfr.InvalidInputError, match="scores must be finite"):
        kfold_accuracy(np.r_[scores[:-1], np.nan], labels)
