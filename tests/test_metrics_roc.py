"""ROC, AUC, EER and TAR@FAR: parity with sklearn and with brute-force references written from the
definitions in mfr.metrics' docstrings."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

import mfr
from mfr.metrics import UndefinedMetricWarning, eer, roc_auc, roc_curve, tar_at_far


@st.composite
def scored_pairs(draw, max_n=60, tie_heavy=None):
    n = draw(st.integers(2, max_n))
    labels = draw(hnp.arrays(np.bool_, n))
    assume(labels.any() and not labels.all())
    if tie_heavy if tie_heavy is not None else draw(st.booleans()):
        values = draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=4))
        scores = np.array(draw(st.lists(st.sampled_from(values), min_size=n, max_size=n)))
    else:
        scores = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e6, 1e6, allow_nan=False)))
    return scores, labels


# ---- brute-force references (from the documented definitions) ----------------------------------


def ref_points(scores, labels):
    """(thresholds, tp, fp) for +inf and every distinct score, decreasing."""
    thr = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    tp = np.array([np.sum(labels & (scores >= t)) for t in thr])
    fp = np.array([np.sum(~labels & (scores >= t)) for t in thr])
    return thr, tp, fp


def ref_eer(scores, labels):
    thr, tp, fp = ref_points(scores, labels)
    p, n = labels.sum(), (~labels).sum()
    far, frr = fp / n, 1 - tp / p
    gap = (p - tp) * n - fp * p  # (FRR - FAR) * P * N, exact
    k = int(np.argmax(gap <= 0))
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return far[k - 1] + t * (far[k] - far[k - 1]), thr[k], frr


def ref_tar_at_far(scores, labels, target):
    thr, tp, fp = ref_points(scores, labels)
    n = (~labels).sum()
    if target * n < 1:
        return math.nan, math.nan
    ok = fp / n <= target
    k = np.flatnonzero(ok)[-1]  # lowest threshold meeting the target = highest TAR
    return tp[k] / labels.sum(), thr[k]


# ---- parity -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(scored_pairs(), st.booleans())
def test_roc_curve_equals_sklearn(data, drop):
    scores, labels = data
    fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate=drop)
    s_fpr, s_tpr, s_thr = sk_roc_curve(labels, scores, drop_intermediate=drop)
    np.testing.assert_array_equal(thr, s_thr)
    np.testing.assert_array_equal(fpr, s_fpr)
    np.testing.assert_array_equal(tpr, s_tpr)
    assert fpr.dtype == tpr.dtype == thr.dtype == np.float64


@settings(max_examples=300, deadline=None)
@given(scored_pairs())
def test_auc_equals_sklearn(data):
    scores, labels = data
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), rel=1e-12, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(scored_pairs())
def test_eer_matches_reference(data):
    scores, labels = data
    rate, thr = eer(scores, labels)
    ref_rate, ref_thr, _ = ref_eer(scores, labels)
    assert rate == pytest.approx(ref_rate, abs=1e-12)
    assert thr == ref_thr
    assert 0 <= rate <= 1


@settings(max_examples=200, deadline=None)
@given(scored_pairs(max_n=80), st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=5))
def test_tar_at_far_matches_reference(data, fars):
    scores, labels = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        got = tar_at_far(scores, labels, fars)
    for f in fars:
        tar, thr = got[f]
        ref_tar, ref_thr = ref_tar_at_far(scores, labels, f)
        if math.isnan(ref_tar):
            assert math.isnan(tar) and math.isnan(thr)
        else:
            assert (tar, thr) == (ref_tar, ref_thr)


def test_edge_cases_against_sklearn():
    rng = np.random.default_rng(1)
    cases = {
        "constant scores": (np.full(50, 0.3), rng.random(50) < 0.5),
        "one positive": (rng.random(1000), np.arange(1000) == 17),
        "one negative": (rng.random(1000), np.arange(1000) != 3),
        "extreme imbalance": (rng.random(20_000), rng.random(20_000) < 0.001),
        "perfect separation": (np.r_[np.ones(5), np.zeros(5)], np.r_[np.ones(5, bool), np.zeros(5, bool)]),
        "reversed": (np.r_[np.zeros(5), np.ones(5)], np.r_[np.ones(5, bool), np.zeros(5, bool)]),
        "signed zeros": (np.array([0.0, -0.0, 0.0, 1.0]), np.array([True, False, False, True])),
    }
    for name, (scores, labels) in cases.items():
        labels[0] = not labels[0] if labels.all() or not labels.any() else labels[0]
        for drop in (False, True):
            got = roc_curve(scores, labels, drop)
            ref = sk_roc_curve(labels, scores, drop_intermediate=drop)
            for g, r in zip(got, ref):
                np.testing.assert_array_equal(g, r, err_msg=name)
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12), name
    assert roc_auc(*cases["perfect separation"]) == 1.0
    assert roc_auc(*cases["reversed"]) == 0.0
    assert eer(*cases["constant scores"])[1] == 0.3


def test_float32_scores_give_float32_thresholds_like_sklearn():
    rng = np.random.default_rng(2)
    scores = rng.random(500).astype(np.float32)
    labels = rng.random(500) < 0.3
    for g, r in zip(roc_curve(scores, labels), sk_roc_curve(labels, scores, drop_intermediate=False)):
        np.testing.assert_array_equal(g, r)


def test_input_types_are_interchangeable():
    rng = np.random.default_rng(3)
    scores = rng.random(300)
    labels = rng.random(300) < 0.4
    expected = roc_auc(scores, labels)
    assert roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == expected
    assert roc_auc(scores.tolist(), labels.astype(int).tolist()) == expected
    assert roc_auc(scores, labels.astype(np.float32)) == expected
    half = scores.astype(np.float16)
    assert roc_auc(half, labels) == pytest.approx(roc_auc_score(labels, half.astype(np.float64)), abs=1e-12)
    assert roc_auc(torch.from_numpy(scores).to(torch.bfloat16), labels) == pytest.approx(expected, abs=0.05)


@pytest.mark.cuda
def test_cuda_inputs_match_cpu():
    rng = np.random.default_rng(4)
    scores, labels = rng.random(10_000), rng.random(10_000) < 0.2
    got = roc_curve(torch.from_numpy(scores).cuda(), torch.from_numpy(labels).cuda())
    for g, r in zip(got, roc_curve(scores, labels)):
        np.testing.assert_array_equal(g, r)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    scores = np.round(rng.standard_normal(300_000), 3)  # many ties
    labels = rng.random(300_000) < 0.1
    try:
        mfr.set_num_threads(1)
        one = (roc_curve(scores, labels), roc_auc(scores, labels), eer(scores, labels))
        mfr.set_num_threads(3)
        three = (roc_curve(scores, labels), roc_auc(scores, labels), eer(scores, labels))
    finally:
        mfr.set_num_threads(0)
    for a, b in zip(one[0], three[0]):
        np.testing.assert_array_equal(a, b)
    assert one[1:] == three[1:]
    assert one[1] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


# ---- TAR@FAR specifics --------------------------------------------------------------------------


def test_tar_at_far_default_targets_and_nan_warning():
    rng = np.random.default_rng(6)
    scores = np.r_[rng.normal(1, 1, 2_000), rng.normal(-1, 1, 20_000)]
    labels = np.r_[np.ones(2_000, bool), np.zeros(20_000, bool)]
    with pytest.warns(UndefinedMetricWarning, match=r"\[1e-06, 1e-05\] are below 1/\(number of impostor pairs\)"):
        res = tar_at_far(scores, labels)
    assert list(res) == list(mfr.metrics.DEFAULT_FARS)
    assert all(math.isnan(v) for v in res[1e-6] + res[1e-5])
    tars = [res[f][0] for f in (1e-4, 1e-3, 1e-2, 1e-1)]
    assert tars == sorted(tars) and 0 < tars[0] < tars[-1] < 1
    for f in (1e-3, 1e-2, 1e-1):
        tar, thr = res[f]
        assert np.mean(scores[~labels] >= thr) <= f
        assert np.mean(scores[labels] >= thr) == tar


def test_tar_at_far_scalar_and_unreachable_target():
    scores = np.array([0.9, 0.9, 0.5, 0.1])
    labels = np.array([0, 0, 1, 0])
    assert tar_at_far(scores, labels, 0.4) == {0.4: (0.0, math.inf)}
    assert tar_at_far(scores, labels, 1.0) == {1.0: (1.0, 0.1)}
    with pytest.raises(mfr.InvalidInputError, match=r"fars must lie in \(0, 1\], got 1.5 at index 1"):
        tar_at_far(scores, labels, [0.1, 1.5])


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [roc_curve, roc_auc, eer, tar_at_far])
def test_bad_input_raises_invalid_input(fn):
    ok_s, ok_l = np.array([0.1, 0.5, 0.9]), np.array([0, 1, 1])
    name = fn.__name__
    cases = [
        ((np.array([0.1, np.nan, 0.9]), ok_l), rf"{name}: scores must be finite, got NaN at index 1"),
        ((np.array([0.1, 0.2, np.inf]), ok_l), r"scores must be finite, got inf at index 2"),
        ((np.array([]), np.array([])), r"must not be empty"),
        ((ok_s, np.array([0, 1])), r"same length, got 3 and 2"),
        ((ok_s, np.array([0, 2, 1])), rf"{name}: labels must be 0/1 or bool, got value 2 at index 1"),
        ((ok_s, np.array([0, 1, 256])), r"labels must be 0/1 or bool, got value 256 at index 2"),
        ((ok_s, np.array([0.0, 0.5, 1.0])), r"got value 0.5 at index 1"),
        ((ok_s, np.array([1, 1, 1])), r"needs both genuine and impostor pairs.*no impostor \(label 0\)"),
        ((ok_s, np.array([False, False, False])), r"no genuine \(label 1\)"),
        ((ok_s.reshape(3, 1), ok_l), r"argument 'scores' must be 1-D, got a 2-D tensor"),
        ((ok_s, ok_l.reshape(1, 3)), r"argument 'labels' must be 1-D"),
        ((np.array(["a", "b", "c"]), ok_l), r"argument 'scores' must be a torch.Tensor, a numpy array or a sequence"),
        ((ok_s, ["x", "y", "z"]), r"argument 'labels' must be a torch.Tensor"),
        ((np.array([1 + 1j, 2, 3]), ok_l), r"argument 'scores' must hold real numbers, got"),
    ]
    for args, match in cases:
        with pytest.raises(mfr.InvalidInputError, match=match):
            fn(*args)


@pytest.mark.slow
def test_counts_stay_exact_beyond_float32_range():
    # 2^24 + 1 genuine pairs: a float32 accumulator cannot even count them.
    p = 2**24 + 1
    scores = np.concatenate([np.ones(p - 1), [0.0], np.full(1000, 0.5)])
    labels = np.concatenate([np.ones(p, bool), np.zeros(1000, bool)])
    assert roc_auc(scores, labels) == (p - 1) / p
    _fpr, tpr, thr = roc_curve(scores, labels)
    np.testing.assert_array_equal(tpr, [0.0, (p - 1) / p, (p - 1) / p, 1.0])
    np.testing.assert_array_equal(thr, [np.inf, 1.0, 0.5, 0.0])
    assert tar_at_far(scores, labels, [1e-3]) == {1e-3: ((p - 1) / p, 1.0)}


# ---- float32 scores sort as 32-bit keys ---------------------------------------------------------


@st.composite
def float32_pairs(draw):
    scores, labels = draw(scored_pairs())
    scores = scores.astype(np.float32)
    specials = np.array([-0.0, 0.0, 1e-45, -1e-45, 3.4e38, -3.4e38], dtype=np.float32)
    if draw(st.booleans()):  # signed zeros (one key), subnormals and the ends of the range
        idx = draw(hnp.arrays(np.int64, min(3, len(scores)), elements=st.integers(0, len(scores) - 1)))
        scores[idx] = specials[draw(st.integers(0, len(specials) - 1))]
    return scores, labels


def _same_report(a, b):
    for key in ("n_genuine", "n_impostor", "auc", "eer", "eer_threshold", "tar_at_far", "best_accuracy"):
        assert getattr(a, key) == getattr(b, key) or (
            key == "tar_at_far" and str(a.tar_at_far) == str(b.tar_at_far)  # NaN entries
        ), key
    for key in ("fpr", "tpr", "thresholds"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@settings(max_examples=200, deadline=None)
@given(float32_pairs())
def test_float32_keys_give_exactly_the_float64_results(data):
    """float32 scores are keyed in 32 bits; every metric equals the one on the same values widened."""
    scores, labels = data
    wide = scores.astype(np.float64)
    for a, b in zip(roc_curve(scores, labels), roc_curve(wide, labels)):
        np.testing.assert_array_equal(a, b)
    assert roc_auc(scores, labels) == roc_auc(wide, labels)
    assert eer(scores, labels) == eer(wide, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        _same_report(mfr.metrics.verification_report(scores, labels), mfr.metrics.verification_report(wide, labels))


@pytest.mark.parametrize("outlier", [False, True], ids=["buckets", "radix"])
def test_float32_keys_on_large_inputs_match_float64(outlier):
    """Past the small-input path: the bucket sort, and the radix fallback a far outlier forces."""
    rng = np.random.default_rng(5)
    n = 300_001
    scores = rng.normal(0.2, 0.1, n).astype(np.float32)
    scores[::7] = np.round(scores[::7], 2)  # ties
    if outlier:
        scores[n // 2] = 3e38
    labels = rng.random(n) < 0.3
    groups = rng.integers(0, 50, n)
    wide = scores.astype(np.float64)
    fars = (1e-4, 1e-3, 1e-2)
    report = mfr.metrics.verification_report
    _same_report(report(scores, labels, fars), report(wide, labels, fars))
    for g in (None, groups):  # pair and identity bootstrap
        a = report(scores, labels, fars, n_bootstrap=5, groups=g, seed=1)
        b = report(wide, labels, fars, n_bootstrap=5, groups=g, seed=1)
        _same_report(a, b)
        for key in a.resamples:
            np.testing.assert_array_equal(a.resamples[key], b.resamples[key])


def test_bool_labels_are_read_in_place_and_non_canonical_bytes_refused():
    rng = np.random.default_rng(3)
    scores, labels = rng.random(5000), rng.random(5000) < 0.3
    assert mfr.metrics.roc_auc(scores, labels) == mfr.metrics.roc_auc(scores, labels.astype(np.uint8))
    assert mfr.metrics.roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)) == mfr.metrics.roc_auc(
        scores, labels
    )
    weird = labels.view(np.uint8).copy()
    weird[7] = 2  # a byte numpy shows as True
    with pytest.raises(mfr.InvalidInputError, match="labels must be 0/1 or bool, got value 2 at index 7"):
        mfr.metrics.roc_auc(scores, weird.view(bool))
