"""Verification metrics: mfr (Rust, one radix sort) against sklearn, np.sort and numpy loops.

* ROC + AUC + EER + TAR@FAR together (`mfr.metrics.verification_report`) against a plain `np.sort`
  of the same scores (the floor any sort-based method pays), on the score distributions
  verification produces (see DISTRIBUTIONS): uniform noise, cosine-shaped and shifted normals,
  heavy ties, a far outlier, a bimodal mixture and the scores of real embeddings (an untrained
  network's embeddings of the shared faces, all pairs within each domain, resampled to size);
  each in float64 and float32, with 50% and 1% genuine pairs, at 1M and 10M.
* `sklearn.metrics.roc_curve` + `roc_auc_score` on 10M uniform float64 scores, 50% genuine.
* 10-fold insightface protocol on 6,000 pairs against a numpy implementation of insightface's
  loops (tests/reference_metrics.py); the numbers must be equal.
* Peak extra memory of the 10M report, relative to the input (scores + labels).

The first line names the CPU, the SIMD level numpy's sort uses and the thread count. Times are the
best of `--repeats` calls after one untimed call (mfr and np.sort alike); np.sort's calls run
both before and after mfr's, and count their best (a drift of the machine's speed reaches both).

Last line:
`metrics: worst_vs_sort=R worst_case=NAME vs_sort=R vs_sort_f32=R vs_sklearn=R kfold_vs_numpy=R`
  worst_vs_sort = the largest mfr time / np.sort time over every distribution, dtype and genuine
  share at the largest size, worst_case its distribution/dtype/genuine share (goal <= 1.5);
  vs_sort = the ratio for uniform float64 scores, 50% genuine, vs_sort_f32 the worse of uniform
  float32's two genuine shares (as before this bench measured more than uniform scores);
  vs_sklearn = sklearn time / mfr time (goal >= 25); kfold_vs_numpy = numpy time / mfr time.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from _timing import best_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from reference_metrics import insightface_kfold
from score_distributions import DISTRIBUTIONS, FACES, real_scores

import mfr
from mfr.metrics import kfold_accuracy, verification_report

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def data(n: int, dtype: type = np.float64, genuine: float = 0.5, seed: int = 0, kind: str = "uniform"):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < genuine
    scores = DISTRIBUTIONS[kind](rng, labels).astype(dtype)
    return scores, labels


def machine() -> str:
    """CPU model, the SIMD levels numpy dispatches to (what ``numpy.show_runtime()`` reports) and
    the thread count: the context of every ratio below."""
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__

        found = [x for x in __cpu_dispatch__ if __cpu_features__.get(x)]
        simd = f"baseline {','.join(__cpu_baseline__)}, found {','.join(found) or 'none'}"
    except ImportError:
        simd = "unknown (see numpy.show_runtime())"
    return f"{model}; numpy {np.__version__} SIMD {simd}; {mfr.get_num_threads()} mfr threads"


def sklearn_all(scores, labels):
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    roc_auc_score(labels, scores)
    return fpr, tpr


def quiet_report(scores, labels):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mfr.metrics.UndefinedMetricWarning)
        return verification_report(scores, labels, fars=FARS)


PEAK_SCRIPT = r"""
import re, sys, numpy as np, warnings
import mfr
n = int(sys.argv[1])
rng = np.random.default_rng(0)
scores = rng.random(n)
labels = np.empty(n, bool); labels[:] = rng.random(n) < 0.5
def vm(key):
    return int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = vm("VmRSS")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mfr.metrics.verification_report(scores, labels, fars=(1e-3,))
print(vm("VmHWM") - before, scores.nbytes + labels.nbytes)
"""


def peak_extra_memory(n: int) -> tuple[int, int] | None:
    try:
        out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(n)], capture_output=True, text=True, check=True)
        extra, inp = map(int, out.stdout.split())
        return extra, inp
    except (subprocess.CalledProcessError, OSError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS), help="comma-separated names")
    parser.add_argument("--faces", type=Path, default=FACES)
    args = parser.parse_args()
    kinds = [k.strip() for k in args.distributions.split(",")]
    real = real_scores(args.faces) if "real" in kinds else None
    if "real" in kinds and real is None:
        print(f"(no faces at {args.faces}: the real-embedding scores are left out)")
        kinds.remove("real")
    print(f"mfr {mfr.__version__} on {machine()}")
    if real is not None:
        g, i = real["genuine"], real["impostor"]
        print(
            f"real: {g.size + i.size:,} pairs of {args.faces} (untrained small CNN), {g.size / (g.size + i.size):.1%} "
            f"genuine, {np.unique(np.concatenate([g, i])).size:,} distinct scores"
        )
    print(
        f"{'scores':>8} {'n':>10} {'dtype':>8} {'genuine':>8} {'mfr s':>8} {'np.sort s':>10} {'sklearn s':>10} {'vs_sort':>8} {'vs_sklearn':>11}"
    )
    ratios, times = {}, {}
    for n in args.sizes:
        for kind in kinds:
            for dtype in (np.float64, np.float32):
                for genuine in (0.5, 0.01):
                    scores, labels = data(n, dtype, genuine, kind=kind)
                    # One untimed call each first: the first large allocations of a process fault in
                    # memory the machine has not touched yet (on the development VM a first float64
                    # report took twice as long as the next ones); both sides get the same warm-up.
                    # np.sort's calls before and after mfr's (its best of both): a drift of the
                    # machine's speed over the seconds this takes reaches both sides alike, while
                    # each side's calls run back to back (interleaving single calls slowed np.sort,
                    # its output then landing in memory mfr's calls had just used).
                    t_sort = best_of(lambda s=scores: np.sort(s), args.repeats, warmup=True)
                    t_mfr = best_of(lambda s=scores, lab=labels: quiet_report(s, lab), args.repeats, warmup=True)
                    t_sort = min(t_sort, best_of(lambda s=scores: np.sort(s), args.repeats, warmup=True))
                    # sklearn once per size (uniform, 50% genuine, float64): it is the slow baseline.
                    t_sk = math.nan
                    if kind == "uniform" and dtype is np.float64 and genuine == 0.5:
                        t_sk = best_of(
                            lambda s=scores, lab=labels: sklearn_all(s, lab), 1 if n > 2_000_000 else args.repeats
                        )
                    ratios[n, kind, np.dtype(dtype).name, genuine] = (t_mfr / t_sort, t_sk / t_mfr)
                    times[n, kind, np.dtype(dtype).name, genuine] = t_mfr
                    print(
                        f"{kind:>8} {n:>10} {np.dtype(dtype).name:>8} {genuine:>8.0%} {t_mfr:>8.3f} {t_sort:>10.3f} "
                        f"{t_sk:>10.3f} {t_mfr / t_sort:>8.2f} {t_sk / t_mfr:>11.1f}"
                    )

    rng = np.random.default_rng(1)
    labels = (np.arange(6000) // 300) % 2 == 0
    scores = np.clip(np.where(labels, rng.normal(0.5, 0.15, 6000), rng.normal(0.1, 0.15, 6000)), -1, 1)
    ours = kfold_accuracy(scores, labels, 10, "insightface")
    ref = insightface_kfold(scores, labels, 10)
    assert abs(ours.mean - ref["mean"]) < 1e-12 and abs(ours.val.val_mean - ref["val_mean"]) < 1e-12, (
        "k-fold numbers differ"
    )
    t_kf = best_of(lambda: kfold_accuracy(scores, labels, 10, "insightface"), 20)
    t_np = best_of(lambda: insightface_kfold(scores, labels, 10), 1)
    print(
        f"insightface 10-fold, 6000 pairs: mfr {t_kf * 1e3:.2f} ms, numpy loops {t_np:.2f} s "
        f"(accuracy {ours.mean:.4f} == {ref['mean']:.4f}, VAL@1e-3 {ours.val.val_mean:.4f} == {ref['val_mean']:.4f})"
    )

    big = max(args.sizes)
    mem = peak_extra_memory(big)
    if mem:
        extra, inp = mem
        print(
            f"peak extra memory of the {big} report: {extra / 2**20:.0f} MiB = {extra / inp:.2f}x the input ({inp / 2**20:.0f} MiB)"
        )
    # worst over everything at the largest size; vs_sort / vs_sort_f32 on uniform scores as before
    at_big = {key[1:]: r for key, r in ratios.items() if key[0] == big}
    if "uniform" in kinds:  # where np.sort is slow (no SIMD sort on the CPU) this is the telling figure
        big_times = {k[1:]: t for k, t in times.items() if k[0] == big}
        shape = {k: t / big_times[("uniform", *k[1:])] for k, t in big_times.items()}
        k = max(shape, key=lambda key: shape[key])
        print(
            f"mfr's time on each shape vs on uniform scores (same dtype and share, {big}): worst {shape[k]:.2f}x ({k[0]}/{k[1]}/{k[2]:.0%})"
        )
    worst = max(at_big, key=lambda key: at_big[key][0])
    worst_name = f"{worst[0]}/{worst[1]}/{worst[2]:.0%}"
    vs_sort, vs_sklearn = at_big.get(("uniform", "float64", 0.5), (math.nan, math.nan))
    vs_sort_f32 = max(at_big.get(("uniform", "float32", g), (math.nan,))[0] for g in (0.5, 0.01))
    print(
        f"metrics: worst_vs_sort={at_big[worst][0]:.2f} worst_case={worst_name} vs_sort={vs_sort:.2f} "
        f"vs_sort_f32={vs_sort_f32:.2f} vs_sklearn={vs_sklearn:.1f} kfold_vs_numpy={t_np / t_kf:.0f}"
    )


if __name__ == "__main__":
    main()
