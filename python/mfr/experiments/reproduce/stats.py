"""The statistics of a protocol: pure functions of its run records.

Cells give the mean over seeds with an interval *for that mean*: a two-level percentile bootstrap
that resamples the seeds (with replacement) and, in the same resample, the target's identities (the
same identity draw for every seed, since every run of a target is evaluated on the same pairs and
draws; see :mod:`mfr.experiments.evaluate`). The k-fold accuracy instead averages each fold over
seeds and takes a t-interval over the folds. :func:`compare` applies the same resampling to the
difference of two methods, paired: both methods get the same seeds and the same identities in every
resample. Runs evaluated without resamples (``n_bootstrap=0``) get a t-interval over seeds (none
for a single seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ... import _core
from ...metrics import percentile_interval
from ..evaluate import METRICS, t_quantile
from ..methods import METHODS, POOLED
from ..rows import Row
from .records import RunRecord
from .spec import LOWER_IS_BETTER

__all__ = [
    "Cell",
    "Comparison",
    "Difference",
    "Summary",
    "best_other",
    "best_pooled",
    "compare",
    "curve",
    "grid",
    "hard_pairs",
    "method_runs",
    "seconds_per_step",
    "summary",
    "timing_outliers",
]

#: One summary cell: ``mean`` over seeds, ``sd`` over seeds, the interval ``low``/``high`` for the
#: mean and ``n_seeds``.
Cell = dict[str, float]
#: ``summary[row][target][metric]``: a :data:`Cell`.
Summary = dict[str, dict[str, dict[str, Cell]]]
#: Per row with runs: its cell per target (None where missing) and the mean over targets.
Grid = list[tuple[str, list[Cell | None], float]]


@dataclass(frozen=True)
class Difference:
    """A paired difference ``a - b`` of one metric: ``estimate`` is the mean over seeds (over
    targets for the overall row) and ``[low, high]`` its bootstrap percentile interval."""

    estimate: float
    low: float
    high: float
    per_seed: list[float]

    @property
    def excludes_zero(self) -> bool:
        return bool(self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class _Paired:
    diff: Difference
    resamples: npt.NDArray[np.float64] | None = None  # per resample, the mean over seeds
    se: float | None = None  # standard error (accuracy: over folds)


@dataclass(frozen=True)
class Comparison:
    """``ProtocolResult.compare(a, b, metric)``: per target and over targets, the paired difference
    ``a - b``; ``better_on`` / ``worse_on`` name the targets where ``a`` is better / worse with an
    interval that excludes 0 (better means lower for ``eer``), ``wins`` / ``losses`` count them."""

    a: str
    b: str
    metric: str
    confidence: float
    per_target: dict[str, Difference]
    mean: Difference
    method: str

    def _called(self, direction: int) -> list[str]:
        sign = -1 if self.metric in LOWER_IS_BETTER else 1
        return [t for t, d in self.per_target.items() if d.excludes_zero and direction * sign * d.estimate > 0]

    @property
    def better_on(self) -> list[str]:
        return self._called(1)

    @property
    def worse_on(self) -> list[str]:
        return self._called(-1)

    @property
    def wins(self) -> int:
        return len(self.better_on)

    @property
    def losses(self) -> int:
        return len(self.worse_on)

    def __str__(self) -> str:
        lines = [f"{self.a} - {self.b}, {self.metric} ({round(100 * self.confidence)}% CI, {self.method})"]
        for t, d in [*self.per_target.items(), ("mean over targets", self.mean)]:
            lines.append(f"  {t:<28} {d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}]{' *' if d.excludes_zero else ''}")
        lines.append(
            f"  {self.a} better on {self.wins}, worse on {self.losses} of {len(self.per_target)} targets (CI excluding 0)"
        )
        return "\n".join(lines)


def method_runs(runs: Sequence[RunRecord], method: str) -> list[RunRecord]:
    return [r for r in runs if r["method"] == method]


def target_runs(runs: Sequence[RunRecord], method: str, target: str) -> dict[int, RunRecord]:
    """``method``'s runs on ``target`` by seed."""
    return {r["seed"]: r for r in runs if r["method"] == method and r["target"] == target}


def _seed_draws(eval_seed: int, target: str, n_seeds: int, n_resamples: int) -> npt.NDArray[np.int64]:
    """Which seeds resample ``b`` takes, shared by every method of ``target``."""
    if n_seeds == 1:
        return np.zeros((n_resamples, 1), dtype=np.int64)
    rng = np.random.default_rng(_core.name_seed(int(eval_seed), [target, "seeds"]))
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


def paired(
    runs: Sequence[RunRecord], a: str, b: str | None, target: str, metric: str, confidence: float, eval_seed: int
) -> _Paired | None:
    """Mean over seeds of ``a - b`` (``a`` alone when ``b`` is None) on one target, with its
    interval and what pooling over targets needs; None when no seed has both runs."""
    ra = target_runs(runs, a, target)
    rb = target_runs(runs, b, target) if b is not None else None
    seeds = sorted(set(ra) & set(rb)) if rb is not None else sorted(ra)
    if not seeds:
        return None
    est = [
        ra[s]["metrics"][metric]["estimate"] - (rb[s]["metrics"][metric]["estimate"] if rb is not None else 0.0)
        for s in seeds
    ]
    if metric == "accuracy":
        folds = [
            np.asarray(ra[s].get("accuracy_folds") or [], float)
            - (np.asarray(rb[s].get("accuracy_folds") or [], float) if rb is not None else 0.0)
            for s in seeds
        ]
        if not all(len(f) == len(folds[0]) and len(f) >= 2 for f in folds):
            return _Paired(_seed_interval(est, confidence))
        per_fold = np.mean(folds, axis=0)
        k = len(per_fold)
        se = float(np.std(per_fold, ddof=1)) / math.sqrt(k)
        half = t_quantile(1 - (1 - confidence) / 2, k - 1) * se
        m = float(np.mean(est))
        lo, hi = (
            (m - half, m + half) if rb is not None else (max(0.0, m - half), min(1.0, m + half))
        )  # a proportion: clipped
        return _Paired(Difference(m, lo, hi, est), se=se)
    res = [
        np.asarray(ra[s].get("resamples", {}).get(metric, []), float)
        - (np.asarray(rb[s].get("resamples", {}).get(metric, []), float) if rb is not None else 0.0)
        for s in seeds
    ]
    n_res = min(len(r) for r in res)
    if n_res == 0 or any(len(r) != n_res for r in res):
        return _Paired(_seed_interval(est, confidence))
    table = np.stack(res, axis=1)  # (resamples, seeds)
    pick = _seed_draws(eval_seed, target, len(seeds), n_res)
    values = np.take_along_axis(table, pick, axis=1).mean(axis=1)
    ci = percentile_interval(float(np.mean(est)), values, confidence)
    return _Paired(Difference(ci.estimate, ci.low, ci.high, est), resamples=values)


def summary(
    runs: Sequence[RunRecord], rows: Sequence[str], targets: Sequence[str], eval_seed: int, confidence: float
) -> Summary:
    """``summary[row][target][metric]``: a :data:`Cell` for every row and target with runs."""
    out: Summary = {}
    for method in rows:
        for target in targets:
            by_seed = target_runs(runs, method, target)
            if not by_seed:
                continue
            cell = out.setdefault(method, {}).setdefault(target, {})
            for key in METRICS:
                if not all(key in r["metrics"] for r in by_seed.values()):
                    continue
                est = np.array([r["metrics"][key]["estimate"] for r in by_seed.values()], dtype=float)
                d = paired(runs, method, None, target, key, confidence, eval_seed)
                cell[key] = {
                    "mean": float(np.mean(est)),
                    "sd": float(np.std(est, ddof=1)) if len(est) > 1 else 0.0,
                    "low": d.diff.low if d else math.nan,
                    "high": d.diff.high if d else math.nan,
                    "n_seeds": len(est),
                }
    return out


def compare(
    runs: Sequence[RunRecord],
    targets: Sequence[str],
    eval_seed: int,
    a: str,
    b: str,
    metric: str = "tar@far=1e-2",
    confidence: float = 0.95,
) -> Comparison:
    """Paired comparison of rows ``a`` and ``b`` on ``metric`` (see the module docstring); the
    mean over targets pools the targets' resamples (targets are independent draws), for
    ``accuracy`` a normal interval from the folds' standard errors."""
    found = {t: p for t in targets if (p := paired(runs, a, b, t, metric, confidence, eval_seed)) is not None}
    per_target = {t: p.diff for t, p in found.items()}
    if not per_target:
        raise _core.InvalidInputError(f"compare: {a} and {b} share no finished run")
    ests = [d.estimate for d in per_target.values()]
    per_seed = (
        list(np.mean([d.per_seed for d in per_target.values()], axis=0))
        if len({len(d.per_seed) for d in per_target.values()}) == 1
        else []
    )
    if metric == "accuracy":
        ses = [math.nan if p.se is None else p.se for p in found.values()]
        half = _normal_quantile(1 - (1 - confidence) / 2) * math.sqrt(sum(x * x for x in ses)) / len(ses)
        mid = float(np.mean(ests))
        mean = Difference(mid, mid - half, mid + half, [float(x) for x in per_seed])
        method = "paired folds, t-interval per target"
    else:
        stacks = [p.resamples for p in found.values() if p.resamples is not None]
        if len(stacks) != len(found) or len({len(x) for x in stacks}) != 1:
            mean = Difference(float(np.mean(ests)), math.nan, math.nan, [float(x) for x in per_seed])
        else:
            ci = percentile_interval(float(np.mean(ests)), np.mean(np.stack(stacks), axis=0), confidence)
            mean = Difference(ci.estimate, ci.low, ci.high, [float(x) for x in per_seed])
        method = "paired bootstrap over seeds and identities"
    return Comparison(a, b, metric, confidence, per_target, mean, method)


def grid(cells: Summary, rows: Sequence[str], targets: Sequence[str], metric: str) -> Grid:
    """Per row with runs: its summary cell per target (None where missing) and the mean over
    targets (NaN unless every target has a finite mean)."""
    out = []
    for method in rows:
        if method not in cells:
            continue
        row = [cells[method].get(t, {}).get(metric) for t in targets]
        means = [c["mean"] for c in row if c is not None]
        avg = float(np.mean(means)) if len(means) == len(targets) and not np.isnan(means).any() else math.nan
        out.append((method, row, avg))
    return out


def best_pooled(table: Grid, metric: str = "tar@far=1e-2", budget: str = "steps") -> str | None:
    """The pooled baseline with the best mean over targets in ``table`` (a :func:`grid`); with
    ``budget="time"`` among their equal-compute rows."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    names = {str(Row(p, budget=budget)) for p in POOLED}
    scored = [(sign * avg, m) for m, _, avg in table if m in names and not math.isnan(avg)]
    return max(scored)[1] if scored else None


def is_mfr_row(name: str) -> bool:
    """Whether a row trains MFR or one of its ablations last (``mfr``, ``mfr_no_da``, ``mfr@arcface``, ``mfr+swad``...)."""
    spec = METHODS.get(Row.parse(name).method)
    return spec is not None and (spec.name == "mfr" or spec.kind == "ablation")


def best_other(table: Grid, metric: str = "tar@far=1e-2", budget: str = "steps") -> str | None:
    """The row with the best mean over targets in ``table`` (a :func:`grid`) among every trained
    row that is not MFR or an MFR ablation (pooled baselines, MLDG, the domain-generalization
    baselines, their SWAD and two-stage variants); with ``budget="time"`` among the equal-compute rows."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    scored = [
        (sign * avg, m)
        for m, _, avg in table
        if m != "untrained" and not is_mfr_row(m) and Row.parse(m).budget == budget and not math.isnan(avg)
    ]
    return max(scored)[1] if scored else None


def curve(runs: Sequence[RunRecord], method: str, metric: str = "tar@far=1e-2") -> dict[int, float]:
    """``metric`` on the unseen targets at each evaluation during ``method``'s training: step ->
    the mean over every target and seed, at the steps every run of the method evaluated; empty when
    some run has no curve."""
    curves = [r.get("eval_curve") or [] for r in method_runs(runs, method)]
    if not curves or not all(curves):
        return {}
    out = {}
    for step in sorted({int(p["step"]) for c in curves for p in c if metric in p}):
        values = [next((p[metric] for p in c if p["step"] == step and metric in p), None) for c in curves]
        if all(v is not None for v in values):
            out[step] = float(np.nanmean(np.asarray(values, dtype=float)))
    return out


def hard_pairs(
    runs: Sequence[RunRecord], method: str, fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0)
) -> list[tuple[float, float]]:
    """Hard (positives, negatives) per meta-batch that the hard-pair attention loss mined, the
    mean over targets and seeds at each fraction of the way from every run's first logged step to
    its last (the logged step nearest it). Empty for methods that mine none."""
    logs = [[p for p in r.get("curve", []) if "hard_positives" in p] for r in method_runs(runs, method)]
    logs = [c for c in logs if c]
    if not logs:
        return []
    out = []
    for f in fractions:
        at = [_nearest_step(c, c[0]["step"] + f * (c[-1]["step"] - c[0]["step"])) for c in logs]
        pos, neg = (float(np.mean([p[k] for p in at])) for k in ("hard_positives", "hard_negatives"))
        out.append((pos, neg))
    return out


def seconds_per_step(runs: Sequence[RunRecord], method: str) -> float:
    """``method``'s training seconds per step, the median over its runs (pauses left out); NaN
    for a method without runs."""
    mine = method_runs(runs, method)
    return float(np.median([run_seconds_per_step(r) for r in mine])) if mine else float("nan")


def timing_outliers(
    runs: Sequence[RunRecord], rows: Sequence[str], factor: float = 2.0
) -> list[tuple[str, str, int, float]]:
    """Runs whose seconds per step differ from their row's median by more than ``factor`` either
    way: ``(method, target, seed, ratio)`` (a machine shared for a whole run, which the per-step
    rule cannot see)."""
    odd = []
    for method in rows:
        mine = method_runs(runs, method)
        per_step = [run_seconds_per_step(r) for r in mine]
        if len(mine) < 3:
            continue
        mid = float(np.median(per_step))
        for r, x in zip(mine, per_step):
            if mid > 0 and not 1 / factor <= x / mid <= factor:
                odd.append((method, r["target"], int(r["seed"]), x / mid))
    return odd


def run_step_seconds(run: RunRecord) -> float:
    """A run's training seconds: its robust step time (pauses left out) where recorded, else its
    wall time."""
    return float(run.get("step_seconds", run["train_seconds"]))


def run_seconds_per_step(run: RunRecord) -> float:
    """A run's seconds per training step (:func:`run_step_seconds` over its steps)."""
    return run_step_seconds(run) / max(1, run.get("steps") or 1)


def _nearest_step(log: list[dict[str, float]], step: float) -> dict[str, float]:
    """The logged point of ``log`` nearest ``step``."""
    return min(log, key=lambda p: abs(float(p["step"]) - step))


def _seed_interval(per_seed: list[float], confidence: float) -> Difference:
    """Without resamples (``n_bootstrap=0``): a t-interval over seeds, or the bare estimate for one seed."""
    m = float(np.mean(per_seed))
    if len(per_seed) < 2 or math.isnan(m):
        return Difference(m, m, m, per_seed)
    half = (
        t_quantile(1 - (1 - confidence) / 2, len(per_seed) - 1)
        * float(np.std(per_seed, ddof=1))
        / math.sqrt(len(per_seed))
    )
    return Difference(m, m - half, m + half, per_seed)


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)
