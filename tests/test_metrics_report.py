"""verification_report and the seeded bootstrap."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import mfr
from mfr.metrics import bootstrap_ci, eer, roc_auc, roc_curve, tar_at_far, verification_report


def gaussian_pairs(n=20_000, pos_frac=0.2, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < pos_frac
    return rng.normal(0, 1, n) + shift * labels, labels


def test_report_agrees_with_the_individual_metrics():
    scores, labels = gaussian_pairs()
    fars = (1e-3, 1e-2, 1e-1)
    rep = verification_report(scores, labels, fars=fars)
    assert rep.auc == roc_auc(scores, labels)
    assert (rep.eer, rep.eer_threshold) == eer(scores, labels)
    assert rep.tar_at_far == tar_at_far(scores, labels, fars)
    for a, b in zip((rep.fpr, rep.tpr, rep.thresholds), roc_curve(scores, labels, drop_intermediate=True)):
        np.testing.assert_array_equal(a, b)
    assert (rep.n_genuine, rep.n_impostor) == (labels.sum(), (~labels).sum())
    # Best accuracy: brute force over every distinct threshold.
    cands = np.r_[np.inf, np.unique(scores)]
    accs = [np.mean((scores >= t) == labels) for t in cands]
    assert rep.best_accuracy == pytest.approx(max(accs), abs=1e-15)
    assert np.mean((scores >= rep.best_accuracy_threshold) == labels) == pytest.approx(max(accs), abs=1e-15)
    assert rep.ci == {}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("genuine", [0.5, 0.01])
def test_large_report_equals_sklearn_at_every_thread_count(dtype, genuine):
    # Large enough for the fused sort-and-check and for the walk split over threads; rounded so
    # runs of tied scores straddle the split points.
    from sklearn.metrics import roc_curve as sk_roc_curve

    rng = np.random.default_rng(7)
    n = 400_000
    scores = np.round(rng.standard_normal(n), 4).astype(dtype)
    labels = rng.random(n) < genuine
    fars = (1e-5, 1e-3, 1e-2, 1e-1)
    reports = []
    try:
        for threads in (1, 2, 3):
            mfr.set_num_threads(threads)
            reports.append(verification_report(scores, labels, fars=fars))
    finally:
        mfr.set_num_threads(0)
    fpr, tpr, thr = sk_roc_curve(labels, scores, drop_intermediate=True)
    for rep in reports:
        np.testing.assert_array_equal(rep.fpr, fpr)
        np.testing.assert_array_equal(rep.tpr, tpr)
        np.testing.assert_array_equal(rep.thresholds[1:], thr[1:].astype(np.float64))
        assert rep.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert rep.auc == roc_auc(scores, labels)
        assert (rep.eer, rep.eer_threshold) == eer(scores, labels)
        assert rep.tar_at_far == tar_at_far(scores, labels, fars)
        assert (rep.best_accuracy, rep.best_accuracy_threshold) == (
            reports[0].best_accuracy,
            reports[0].best_accuracy_threshold,
        )
    t = reports[0].best_accuracy_threshold
    assert np.mean((scores >= t) == labels) == pytest.approx(reports[0].best_accuracy, abs=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_report_names_bad_input(dtype):
    # The checks ride on the sort's first read at this size: the messages stay the checks' own.
    n = 300_000
    scores = np.linspace(-1, 1, n).astype(dtype)
    labels = (np.arange(n) % 3 == 0).astype(np.uint8)
    bad = scores.copy()
    bad[123_456] = np.nan
    with pytest.raises(mfr.InvalidInputError, match="scores must be finite, got NaN at index 123456"):
        verification_report(bad, labels)
    wrong = labels.copy()
    wrong[200_001] = 2
    with pytest.raises(mfr.InvalidInputError, match="labels must be 0/1 or bool, got value 2 at index 200001"):
        verification_report(scores, wrong)
    with pytest.raises(mfr.InvalidInputError, match="no impostor"):
        verification_report(scores, np.ones(n, bool))


def test_report_outputs_table_dict_and_plots(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    scores, labels = gaussian_pairs(5_000)
    rep = verification_report(scores, labels, fars=(1e-2, 1e-1), n_bootstrap=200, seed=1)
    text = rep.table()
    assert "AUC" in text and "TAR@FAR=0.01" in text and "95% CI" in text and str(rep) == text
    d = rep.to_dict()
    json.dumps(d)
    assert d["auc"] == rep.auc and set(d["ci"]) == {"auc", "eer", "accuracy", "tar@far=0.01", "tar@far=0.1"}
    ax = rep.plot_roc()
    assert ax.get_xscale() == "log" and len(ax.lines) == 1
    ax2 = rep.plot_roc(det=True, label="model")
    assert ax2.get_yscale() == "log"
    ax.figure.savefig(tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 1000
    import matplotlib.pyplot as plt

    plt.close("all")


def test_bootstrap_is_seeded_and_thread_independent():
    scores, labels = gaussian_pairs(3_000)
    a = bootstrap_ci(scores, labels, n_bootstrap=300, seed=5)
    b = bootstrap_ci(scores, labels, n_bootstrap=300, seed=5)
    assert a == b
    try:
        mfr.set_num_threads(1)
        c = bootstrap_ci(scores, labels, n_bootstrap=300, seed=5)
    finally:
        mfr.set_num_threads(0)
    assert a == c
    assert bootstrap_ci(scores, labels, n_bootstrap=300, seed=6) != a


def test_bootstrap_spread_matches_a_numpy_bootstrap():
    scores, labels = gaussian_pairs(4_000, seed=2)
    ours = bootstrap_ci(scores, labels, fars=(0.1,), n_bootstrap=2_000, seed=0)
    rng = np.random.default_rng(123)
    ref = []
    for _ in range(400):
        idx = rng.integers(0, len(scores), len(scores))
        ref.append(roc_auc_score(labels[idx], scores[idx]))
    ref_std = np.std(ref, ddof=1)
    auc = ours["auc"]
    assert auc.estimate == roc_auc(scores, labels)
    assert 0.8 < auc.std / ref_std < 1.25
    assert auc.low < auc.estimate < auc.high
    assert auc.high - auc.low == pytest.approx(2 * 1.96 * ref_std, rel=0.25)
    assert auc.n_valid == auc.n_resamples == 2_000 and auc.confidence == 0.95
    for key in ("eer", "accuracy", "tar@far=0.1"):
        ci = ours[key]
        assert ci.low <= ci.estimate <= ci.high and ci.std > 0


def test_group_bootstrap():
    scores, labels = gaussian_pairs(6_000, seed=3)
    # One pair per group is the pair bootstrap in distribution.
    per_pair = bootstrap_ci(scores, labels, n_bootstrap=1_000, groups=np.arange(len(scores)), seed=1)["auc"]
    plain = bootstrap_ci(scores, labels, n_bootstrap=1_000, seed=1)["auc"]
    assert 0.85 < per_pair.std / plain.std < 1.15
    # Groups of 10 pairs of one class sharing a score offset (one identity's pairs): the pairs are
    # not independent, and only resampling whole groups sees that.
    rng = np.random.default_rng(0)
    groups = np.arange(len(scores)) // 10
    glabels = np.repeat(rng.random(len(scores) // 10) < 0.3, 10)
    correlated = rng.normal(0, 0.3, len(scores)) + 1.0 * glabels + np.repeat(rng.normal(0, 1.0, len(scores) // 10), 10)
    g = bootstrap_ci(correlated, glabels, n_bootstrap=1_000, groups=groups, seed=1)["auc"]
    p = bootstrap_ci(correlated, glabels, n_bootstrap=1_000, seed=1)["auc"]
    assert g.std > 1.3 * p.std


def test_bootstrap_with_resamples_missing_a_class():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    ci = bootstrap_ci(scores, labels, fars=(0.5,), n_bootstrap=500, seed=0)
    assert ci["auc"].n_valid < 500  # some resamples drew only one class
    assert 0 <= ci["auc"].low <= ci["auc"].high <= 1


def test_bootstrap_bad_arguments():
    scores, labels = gaussian_pairs(100)
    with pytest.raises(mfr.InvalidInputError, match=r"confidence must lie in \(0, 1\), got 1.5"):
        bootstrap_ci(scores, labels, confidence=1.5)
    with pytest.raises(mfr.InvalidInputError, match="n_bootstrap must be >= 1, got 0"):
        bootstrap_ci(scores, labels, n_bootstrap=0)
    with pytest.raises(mfr.InvalidInputError, match="n_bootstrap must be >= 0, got -1"):
        verification_report(scores, labels, n_bootstrap=-1)
    with pytest.raises(mfr.InvalidInputError, match=r"groups must have one entry per pair \(100\), got 99"):
        bootstrap_ci(scores, labels, n_bootstrap=10, groups=np.arange(99))
    with pytest.raises(mfr.InvalidInputError, match="'groups' must hold integer ids"):
        bootstrap_ci(scores, labels, n_bootstrap=10, groups=np.linspace(0, 1, 100))


def test_report_warns_for_unmeasurable_far():
    scores, labels = gaussian_pairs(1_000)
    with pytest.warns(mfr.metrics.UndefinedMetricWarning, match="verification_report"):
        rep = verification_report(scores, labels, fars=(1e-6, 0.1))
    assert math.isnan(rep.tar_at_far[1e-6][0])


_CACHE_SCRIPT = r"""
import re, numpy as np, mfr
from mfr.metrics import verification_report
rng = np.random.default_rng(0)
scores, labels = rng.random(4_000_000), rng.random(4_000_000) < 0.5
def vm(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from the current RSS
rss = vm("VmRSS")
reports = []
for i in range(4):
    r = verification_report(scores, labels, fars=(1e-3,))
    reports.append((r.auc, r.eer, r.tar_at_far, r.fpr.sum(), r.thresholds[1:].sum()))
    if i == 0:
        peak = (vm("VmHWM") - rss) / (scores.nbytes + labels.nbytes)
    del r
kept = mfr.cached_memory()
released = mfr.release_cached_memory()
print(len(set(map(repr, reports))), kept, released, mfr.cached_memory(), round(100 * peak))
"""


def _fresh_process(script, *args, pool="1"):
    """What `script` prints, run in a fresh interpreter (the scratch pool is process-wide) with
    MFR_SCRATCH_POOL set to `pool`, split into words."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MFR_SCRATCH_POOL": pool}
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _cache_run(env_value):
    return [int(x) for x in _fresh_process(_CACHE_SCRIPT, pool=env_value)]


def test_sort_keys_are_kept_for_the_next_report_and_released_on_request():
    # A fresh process each: the metrics' scratch pool is process-wide. A 4M-score report sorts
    # into key buffers of 8 MB and more; kept, the next report reuses them.
    distinct, kept, released, after, peak_on = _cache_run("1")
    assert distinct == 1  # the same numbers every time
    assert kept > 0 and released == kept and after == 0
    distinct, kept, released, after, peak_off = _cache_run("0")
    assert distinct == 1 and kept == released == after == 0
    # The sort keys are handed back with their pages before the curve is finished: the first
    # report's peak is that of a report without the pool (2.3x the input).
    assert peak_on <= peak_off + 10, (peak_on, peak_off)


_REPEAT_SCRIPT = r"""
import resource, sys, numpy as np
from mfr.metrics import verification_report
rng = np.random.default_rng(1)
n = int(sys.argv[2])
scores, labels = rng.random(n).astype(sys.argv[1]), rng.random(n) < 0.5
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peaks = []
for _ in range(4):
    r = verification_report(scores, labels)
    del r
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
print(*peaks)
"""


@pytest.mark.parametrize(("dtype", "n"), [("float64", 3_000_000), ("float32", 6_000_000)])
def test_repeated_reports_keep_their_sort_keys_without_raising_the_peak(dtype, n):
    # From the second report on, the curve's buffers come back from the pool with their pages, so
    # the keys (12 MB a class here, so kept by the pool) are no longer discarded before the curve
    # is finished but stay for the next report: that must not raise the peak past the second's.
    peaks = [int(x) for x in _fresh_process(_REPEAT_SCRIPT, dtype, str(n))]  # KiB
    assert peaks[3] <= peaks[1] + 4096, peaks


_CURVE_SCRIPT = r"""
import numpy as np, mfr
from mfr.metrics import roc_curve, verification_report
rng = np.random.default_rng(1)
scores, labels = rng.random(3_000_000), rng.random(3_000_000) < 0.5
mfr.release_cached_memory()
r = verification_report(scores, labels)
arrays = (r.fpr, r.tpr, r.thresholds)
owners = {type(a.base).__name__ for a in arrays}
usable = all(a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable for a in arrays)
addresses = {a.__array_interface__["data"][0] for a in arrays}
first = (r.auc, r.fpr.copy(), r.tpr.copy(), r.thresholds.copy())
view = r.tpr[10:20]
del r, arrays
kept_with_view = mfr.cached_memory()
del view
kept = mfr.cached_memory()
r = verification_report(scores, labels)
reused = {a.__array_interface__["data"][0] for a in (r.fpr, r.tpr, r.thresholds)} <= addresses
same = r.auc == first[0] and all(np.array_equal(a, b) for a, b in zip((r.fpr, r.tpr, r.thresholds), first[1:]))
fpr, tpr, thr = roc_curve(scores, labels, drop_intermediate=True)
same = same and np.array_equal(fpr, first[1]) and np.array_equal(thr, first[3])
del r, fpr, tpr, thr
released = mfr.release_cached_memory()
print(",".join(sorted(owners)), usable, kept_with_view < kept, reused, same, released > 0, mfr.cached_memory())
"""


@pytest.mark.parametrize("pool", ["1", "0"])
def test_large_curve_arrays_go_back_to_the_pool_when_dropped(pool):
    # A fresh process: the pool is process-wide. A 3M-point curve's arrays are numpy arrays over
    # the metrics' memory; once they and every view of them are gone, that memory waits in the
    # pool for the next report, which writes the same numbers into it.
    owners, usable, view_held, reused, same, released, after = _fresh_process(_CURVE_SCRIPT, pool=pool)
    assert owners == "CurveMemory" and usable == "True" and same == "True" and after == "0"
    if pool == "1":
        assert view_held == "True" and reused == "True" and released == "True"
    else:
        assert view_held == "False" and released == "False"
