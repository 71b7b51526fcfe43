"""GFR-style protocols: train every method on source domains, evaluate on unseen target domains.

- ``lodo`` (as the paper's GFR-R): each target domain in turn is held out; every method trains on
  all the other domains and is evaluated on it.
- ``multi`` (as GFR-V): every method trains once on the named source domains and is evaluated on
  each named target domain.

Every method gets the same backbone, data, meta-batches and step budget (:class:`TrainConfig`);
``seeds`` repeats everything with seeds 0..K-1. The untrained network (the seed's initialisation)
is evaluated too, as row ``untrained``. Every run of a target is evaluated with one evaluation
seed, so all methods and seeds are scored on the same pairs, folds, galleries and identity draws
(see :mod:`mfr.experiments.evaluate`), which makes paired comparisons possible (:meth:`ProtocolResult.compare`).

Results (rewritten after each run, so an interrupted protocol keeps what it finished and says it is
incomplete): ``results.json`` (every run with its metrics, CIs, bootstrap resamples, ROC points and
timings, plus the mfr version, git commit, command line, data fingerprint and machine),
``results.md`` (method x target tables, paired differences against the best pooled baseline, cost),
``results.csv``, ``tables.tex`` (booktabs) and ``roc_<target>.png`` / ``.svg`` (matplotlib, when
installed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from .. import _core
from .._core import __version__
from ..facedata import FaceData
from ..metrics import percentile_interval
from . import distributed
from .checkpoint import check_output_folder
from .evaluate import METRICS, evaluate_domain, t_quantile
from .methods import METHODS
from .search import base_method, search_method, search_summary, split_validation
from .train import TrainConfig, Trainer, load_init_weights, resolve_device
from .tuned import tuned_settings

__all__ = [
    "METRIC_TITLES",
    "Comparison",
    "Difference",
    "ProtocolResult",
    "data_fingerprint",
    "provenance",
    "run_protocol",
]

METRIC_TITLES = {
    "tar@far=1e-3": "TAR @ FAR=1e-3",
    "tar@far=1e-2": "TAR @ FAR=1e-2",
    "auc": "AUC",
    "eer": "EER (lower is better)",
    "accuracy": "Verification accuracy (10-fold over disjoint identities, balanced pairs)",
    "rank1": "Rank-1 identification (1 gallery image per identity, every other image a probe, 10 gallery draws)",
    "rank1_single": "Rank-1 identification, the paper's protocol (1 gallery + 1 probe per identity, one draw)",
}

#: Short names for the headings of the difference tables.
METRIC_SHORT = {
    "tar@far=1e-3": "TAR@FAR=1e-3",
    "tar@far=1e-2": "TAR@FAR=1e-2",
    "auc": "AUC",
    "eer": "EER",
    "accuracy": "accuracy",
    "rank1": "rank-1",
    "rank1_single": "rank-1 (single draw)",
}

#: Metrics where a lower value is better.
LOWER_IS_BETTER = frozenset({"eer"})
#: The pooled baselines, among which the default comparison baseline is chosen.
POOLED = ("softmax", "cosface", "arcface")


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "mfr_threads": _core.get_num_threads() if hasattr(_core, "get_num_threads") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def provenance() -> dict[str, Any]:
    """mfr version and, when mfr runs from a git checkout, its commit and whether it was modified."""
    import subprocess

    info: dict[str, Any] = {"mfr": __version__, "git_commit": None, "git_dirty": None}
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            top = subprocess.run(
                ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
            )
            if top.returncode == 0:
                dirty = subprocess.run(
                    ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                info.update(git_commit=top.stdout.strip(), git_dirty=bool(dirty.stdout.strip()), git_dir=str(where))
                break
        except (OSError, subprocess.SubprocessError):
            break
    return info


def data_fingerprint(data: FaceData) -> dict[str, Any]:
    """What the data is, independent of where it lies: per domain its identity and image counts,
    and a SHA-256 over the sorted (domain, identity, file name, content) entries of the index,
    where content is the file's size for data read from disk (one ``stat`` per image) and the
    pixels' own hash for images held in memory (e.g. the synthetic data)."""
    import hashlib

    idx = data.index
    names, id_names = idx.domain_names, idx.identity_names
    doms, ids = idx.domains, idx.identities
    if data.images is not None:
        pixels = data.images.contiguous().numpy()
        content = [hashlib.sha256(pixels[i].tobytes()).hexdigest()[:16] for i in range(len(idx))]
    else:
        content = []
        for p in idx.paths:
            try:
                content.append(str(os.stat(data._path(p)).st_size))
            except OSError:
                content.append("?")
    entries = sorted(
        zip((names[d] for d in doms), (id_names[i] for i in ids), (Path(p).name for p in idx.paths), content)
    )
    h = hashlib.sha256()
    for t in entries:
        h.update("\x1f".join(t).encode("utf-8", "surrogateescape") + b"\x1e")
    return {
        "name": data.name,
        "images": len(idx),
        "domains": {
            n: {"identities": len(np.unique(ids[doms == k])), "images": int((doms == k).sum())}
            for k, n in enumerate(names)
        },
        "sha256": h.hexdigest(),
    }


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


@dataclass
class ProtocolResult:
    """Every run of a protocol (method x target x seed, plus the untrained network) with its metrics.

    Cells of :meth:`summary` and :meth:`table` give the mean over seeds with an interval *for that
    mean*: a two-level percentile bootstrap that resamples the seeds (with replacement) and, in
    the same resample, the target's identities (the same identity draw for every seed, since every
    run of a target is evaluated on the same pairs and draws; see :mod:`mfr.experiments.evaluate`). The k-fold
    accuracy instead averages each fold over seeds and takes a t-interval over the folds.
    :meth:`compare` applies the same resampling to the difference of two methods, paired: both
    methods get the same seeds and the same identities in every resample. Runs evaluated without
    resamples (``n_bootstrap=0``) get a t-interval over seeds (none for a single seed).
    """

    protocol: str
    data: str
    config: dict[str, Any]
    methods: list[str]
    targets: list[str]
    seeds: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0
    hardware: dict[str, Any] = field(default_factory=hardware)
    command: str | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    expected_runs: int = 0
    search: dict[str, Any] = field(default_factory=dict)
    searches: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: str = "steps"
    stage1_fraction: float | None = None
    tuned: bool = False

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProtocolResult:
        """A result saved by :meth:`save` (``results.json`` or the folder holding it)."""
        p = Path(path)
        p = p / "results.json" if p.is_dir() else p
        try:
            raw = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise _core.DataError(f"ProtocolResult.load: cannot read {p}: {e}") from e
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def rows(self) -> list[str]:
        """Table rows: the untrained network, the methods, then rows only the runs name
        (``<method>:time`` of an equal-compute budget)."""
        seen = ["untrained", *self.methods]
        return seen + list(dict.fromkeys(r["method"] for r in self.runs if r["method"] not in seen))

    def _runs(self, method: str, target: str) -> dict[int, dict[str, Any]]:
        return {r["seed"]: r for r in self.runs if r["method"] == method and r["target"] == target}

    def _seed_draws(self, target: str, n_seeds: int, n_resamples: int) -> npt.NDArray[np.int64]:
        """Which seeds resample ``b`` takes, shared by every method of ``target``."""
        if n_seeds == 1:
            return np.zeros((n_resamples, 1), dtype=np.int64)
        rng = np.random.default_rng(_core.name_seed(int(self.evaluation.get("seed", 0)), [target, "seeds"]))
        return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))

    def _paired(self, a: str, b: str | None, target: str, metric: str, confidence: float) -> _Paired | None:
        """Mean over seeds of ``a - b`` (``a`` alone when ``b`` is None) on one target, with its
        interval and what pooling over targets needs; None when no seed has both runs."""
        ra = self._runs(a, target)
        rb = self._runs(b, target) if b is not None else None
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
        pick = self._seed_draws(target, len(seeds), n_res)
        values = np.take_along_axis(table, pick, axis=1).mean(axis=1)
        ci = percentile_interval(float(np.mean(est)), values, confidence)
        return _Paired(Difference(ci.estimate, ci.low, ci.high, est), resamples=values)

    def summary(self, confidence: float = 0.95) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """``summary[method][target][metric]`` = ``mean`` over seeds, ``sd`` over seeds, the
        interval ``low``/``high`` for the mean (see the class docstring) and ``n_seeds``. Computed
        once per set of runs (tables, differences and the report all read it)."""
        key = (id(self.runs), len(self.runs), confidence)  # runs are only appended to or replaced
        cached = self.__dict__.get("_summary_cache")
        if cached is not None and cached[0] == key:
            hit: dict[str, dict[str, dict[str, dict[str, float]]]] = cached[1]
            return hit
        out = self._summary(confidence)
        self.__dict__["_summary_cache"] = (key, out)
        return out

    def _summary(self, confidence: float) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for method in self.rows():
            for target in self.targets:
                runs = self._runs(method, target)
                if not runs:
                    continue
                cell = out.setdefault(method, {}).setdefault(target, {})
                for key in METRICS:
                    if not all(key in r["metrics"] for r in runs.values()):
                        continue
                    est = np.array([r["metrics"][key]["estimate"] for r in runs.values()], dtype=float)
                    d = self._paired(method, None, target, key, confidence)
                    cell[key] = {
                        "mean": float(np.mean(est)),
                        "sd": float(np.std(est, ddof=1)) if len(est) > 1 else 0.0,
                        "low": d.diff.low if d else math.nan,
                        "high": d.diff.high if d else math.nan,
                        "n_seeds": len(est),
                    }
        return out

    def compare(self, a: str, b: str, metric: str = "tar@far=1e-2", confidence: float = 0.95) -> Comparison:
        """Paired comparison of methods ``a`` and ``b`` (``"untrained"`` too) on ``metric``: per
        target the mean over seeds of ``a - b`` with a percentile interval from a paired bootstrap
        (seeds resampled, the same for both methods; the target's identities resampled jointly for
        both methods and every seed), and the mean over targets (resample ``b``: the mean of the
        targets' resamples ``b``; targets are independent draws). For ``accuracy`` the folds are
        paired instead (t-interval over folds; over targets, a normal interval from the folds'
        standard errors)."""
        for m in (a, b):
            if m not in self.rows():
                raise _core.InvalidInputError(
                    f"compare: method {m!r} is not in this result; it has: {', '.join(self.rows())}"
                )
        if metric not in METRICS:
            raise _core.InvalidInputError(f"compare: unknown metric {metric!r}; available: {', '.join(METRICS)}")
        paired = {t: p for t in self.targets if (p := self._paired(a, b, t, metric, confidence)) is not None}
        per_target = {t: p.diff for t, p in paired.items()}
        if not per_target:
            raise _core.InvalidInputError(f"compare: {a} and {b} share no finished run")
        ests = [d.estimate for d in per_target.values()]
        per_seed = (
            list(np.mean([d.per_seed for d in per_target.values()], axis=0))
            if len({len(d.per_seed) for d in per_target.values()}) == 1
            else []
        )
        if metric == "accuracy":
            ses = [math.nan if p.se is None else p.se for p in paired.values()]
            half = _normal_quantile(1 - (1 - confidence) / 2) * math.sqrt(sum(x * x for x in ses)) / len(ses)
            mid = float(np.mean(ests))
            mean = Difference(mid, mid - half, mid + half, [float(x) for x in per_seed])
            method = "paired folds, t-interval per target"
        else:
            stacks = [p.resamples for p in paired.values() if p.resamples is not None]
            if len(stacks) != len(paired) or len({len(x) for x in stacks}) != 1:
                mean = Difference(float(np.mean(ests)), math.nan, math.nan, [float(x) for x in per_seed])
            else:
                ci = percentile_interval(float(np.mean(ests)), np.mean(np.stack(stacks), axis=0), confidence)
                mean = Difference(ci.estimate, ci.low, ci.high, [float(x) for x in per_seed])
            method = "paired bootstrap over seeds and identities"
        return Comparison(a, b, metric, confidence, per_target, mean, method)

    def verdict(self, method: str = "mfr", metric: str = "tar@far=1e-2", confidence: float = 0.95) -> str:
        """The question the protocol asks, answered in Markdown: does ``method`` beat the best pooled
        baseline on the unseen targets? The paired difference of ``metric`` (mean over targets,
        :meth:`compare`) against the best pooled baseline at equal steps and, when the result has
        equal-compute rows, against the best of those; which targets the interval calls either
        way. "" when the result holds no pooled baseline or not ``method``."""
        if method not in self.rows():
            return ""
        sign = -1 if metric in LOWER_IS_BETTER else 1
        lines = []
        for budget, label in (
            ("steps", "equal steps"),
            ("time", "equal compute (the baselines trained for MFR's time)"),
        ):
            baseline = self.best_pooled(metric, budget=budget)
            if baseline is None or baseline == method:
                continue
            try:
                c = self.compare(method, baseline, metric, confidence)
            except _core.InvalidInputError:  # no finished run in common yet
                continue
            m = c.mean
            gain = sorted((sign * m.low, sign * m.high))  # the interval of how much better method is
            if math.isnan(m.low):
                answer = "no interval (runs without resamples)"
            elif gain[0] > 0:
                answer = "**yes**: the interval excludes 0"
            elif gain[1] < 0:
                answer = f"**no**: {method} is worse (the interval excludes 0)"
            else:
                answer = "**not shown**: the interval includes 0"
            better, worse = ([f"{t} ({c.per_target[t].estimate:+.3f})" for t in ts] for ts in (c.better_on, c.worse_on))
            lines.append(
                f"- At {label}: {method} - {baseline} = {m.estimate:+.3f} [{m.low:+.3f}, {m.high:+.3f}]: {answer}. "
                f"Per target, by an interval excluding 0: better on {', '.join(better) or 'none'}; "
                f"worse on {', '.join(worse) or 'none'} (of {len(c.per_target)})."
            )
        if not lines:
            return ""
        name = METRIC_SHORT.get(metric, metric)
        head = (
            f"**Does {method} beat the best pooled baseline on the unseen targets?** {name}, mean over the "
            f"{len(self.targets)} targets, paired {round(100 * confidence)}% interval over seeds and identities"
            + ("" if self.complete else " (an interim reading: the run is incomplete)")
            + ":"
        )
        return "\n".join([head, "", *lines])

    def best_pooled(self, metric: str = "tar@far=1e-2", budget: str = "steps") -> str | None:
        """The pooled baseline (softmax/CosFace/ArcFace) with the best mean over targets; with
        ``budget="time"`` among their equal-compute rows (``<method>:time``)."""
        sign = -1 if metric in LOWER_IS_BETTER else 1
        names = set(POOLED) if budget == "steps" else {f"{p}:time" for p in POOLED}
        scored = [(sign * avg, m) for m, _, avg in self._grid(metric) if m in names and not math.isnan(avg)]
        return max(scored)[1] if scored else None

    def table(self, metric: str = "tar@far=1e-2") -> str:
        """A Markdown method x target table of one metric: ``mean [low, high]`` (an interval for the
        mean over seeds) and ``sd`` over seeds when there are several; the mean over targets last."""
        head = "| method | " + " | ".join(self.targets) + " | mean |"
        lines = [f"**{METRIC_TITLES.get(metric, metric)}**", "", head, "|" + "---|" * (len(self.targets) + 2)]
        for method, cells, avg in self._grid(metric):
            texts = []
            for c in cells:
                if c is None or math.isnan(c["mean"]):
                    texts.append("—" if c is None else "n/a")
                    continue
                sd = f" ±{c['sd']:.3f}" if c["n_seeds"] > 1 else ""
                interval = f" [{c['low']:.3f}, {c['high']:.3f}]" if not math.isnan(c["low"]) else ""
                texts.append(f"{c['mean']:.3f}{sd}{interval}")
            lines.append(f"| {method} | " + " | ".join(texts) + f" | {'—' if math.isnan(avg) else f'{avg:.3f}'} |")
        return "\n".join(lines)

    def _grid(self, metric: str) -> list[tuple[str, list[dict[str, float] | None], float]]:
        """Per method with runs: its summary cell per target (None where missing) and the mean over
        targets (NaN unless every target has a finite mean)."""
        s = self.summary()
        grid = []
        for method in self.rows():
            if method not in s:
                continue
            cells = [s[method].get(t, {}).get(metric) for t in self.targets]
            means = [c["mean"] for c in cells if c is not None]
            avg = float(np.mean(means)) if len(means) == len(self.targets) and not np.isnan(means).any() else math.nan
            grid.append((method, cells, avg))
        return grid

    def overview(self) -> str:
        """Markdown: every row's mean over targets (of the means over seeds) for every metric."""
        grids = {metric: {m: avg for m, _, avg in self._grid(metric)} for metric in METRICS}
        lines = [
            "**Overview: mean over targets**",
            "",
            "| method | " + " | ".join(METRIC_SHORT[m] for m in METRICS) + " |",
            "|---|" + "---|" * len(METRICS),
        ]
        for method in self.rows():
            if method in grids[METRICS[0]]:
                cells = [grids[metric].get(method, math.nan) for metric in METRICS]
                lines.append(f"| {method} | " + " | ".join("—" if math.isnan(c) else f"{c:.3f}" for c in cells) + " |")
        return "\n".join(lines)

    def difference_table(
        self, metric: str = "tar@far=1e-2", baseline: str | None = None, confidence: float = 0.95
    ) -> str:
        """Markdown: every other method minus ``baseline`` (default :meth:`best_pooled`), per target
        and over targets, with paired intervals (``*``: the interval excludes 0), and how many
        targets each method wins and loses."""
        baseline = baseline or self.best_pooled(metric)
        if baseline is None:
            return f"*(no pooled baseline with a defined mean over targets: no difference table for {metric})*"
        head = "| method | " + " | ".join(self.targets) + " | mean over targets | wins / losses |"
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        lines = [
            f"**{METRIC_SHORT.get(metric, metric)}: difference vs {baseline}** (paired {round(100 * confidence)}% CI; "
            f"`*` the CI excludes 0; {better} is better; wins / losses: targets with a CI excluding 0)",
            "",
            head,
            "|" + "---|" * (len(self.targets) + 3),
        ]
        for method in self.rows():
            if method == baseline or not any(self._runs(method, t) for t in self.targets):
                continue
            c = self.compare(method, baseline, metric, confidence)
            cells = []
            for t in self.targets:
                d = c.per_target.get(t)
                cells.append("—" if d is None else _diff_cell(d))
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {_diff_cell(c.mean)} | {c.wins} / {c.losses} |")
        return "\n".join(lines)

    def timing_table(self) -> str:
        """Markdown: per method, median training seconds per run and per step, and the ratio to the
        fastest method."""
        rows = []
        for method in self.rows()[1:]:
            runs = {(r["target"], r["seed"]): r for r in self.runs if r["method"] == method}
            if not runs:
                continue
            secs = [r["train_seconds"] for r in runs.values()]
            steps = [max(1, r.get("steps") or 1) for r in runs.values()]
            rows.append(
                (method, float(np.median(secs)), self.seconds_per_step(method), int(np.median(steps)), len(runs))
            )
        if not rows:
            return ""
        fastest = min(r[2] for r in rows)
        lines = [
            "**Training time** (median over runs; s per run is wall time including evaluations during training; ms per step only the steps, "
            "their mean without steps over 3x the median, which a pause or another job interrupted)",
            "",
            "| method | steps | s per run | ms per step | x fastest | runs |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {m} | {k} | {s:.1f} | {1000 * p:.1f} | {p / fastest:.2f} | {n} |" for m, s, p, k, n in rows]
        odd = self.timing_outliers()
        if odd:
            listed = ", ".join(f"{m} on {t} seed {s} ({x:.1f}x)" for m, t, s, x in odd)
            lines += [
                "",
                f"Step times off their method's median by over 2x (another job shared the machine for the whole run, which "
                f"the per-step rule cannot see; equal-compute rows budgeted from them are off too; delete and rerun them): {listed}.",
            ]
        return "\n".join(lines)

    def curve(self, method: str, metric: str = "tar@far=1e-2") -> dict[int, float]:
        """``metric`` on the unseen targets at each evaluation during ``method``'s training
        (``eval_every``): step -> the mean over every target and seed. Only steps that all the
        method's runs evaluated (equal-compute rows stop at different steps), so each value
        averages the same runs; empty when some run has no curve."""
        curves = [r.get("eval_curve") or [] for r in self._method_runs(method)]
        if not curves or not all(curves):
            return {}
        out = {}
        for step in sorted({p["step"] for c in curves for p in c if metric in p}):
            values = [next((p[metric] for p in c if p["step"] == step and metric in p), None) for c in curves]
            if all(v is not None for v in values):
                out[step] = float(np.nanmean(np.asarray(values, dtype=float)))
        return out

    def hard_pairs(
        self, method: str, fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0)
    ) -> list[tuple[float, float]]:
        """Hard (positives, negatives) per meta-batch that the hard-pair attention loss mined, the
        mean over targets and seeds at each fraction of the way from every run's first logged step
        to its last (at the logged step nearest it; a two-stage row logs its second stage only).
        Empty for methods that mine none."""
        runs = [[p for p in r.get("curve", []) if "hard_positives" in p] for r in self._method_runs(method)]
        runs = [c for c in runs if c]
        if not runs:
            return []
        out = []
        for f in fractions:
            at = [_nearest_step(c, c[0]["step"] + f * (c[-1]["step"] - c[0]["step"])) for c in runs]
            pos, neg = (float(np.mean([p[k] for p in at])) for k in ("hard_positives", "hard_negatives"))
            out.append((pos, neg))
        return out

    def curve_table(self, metric: str = "tar@far=1e-2") -> str:
        """Markdown learning curves: :meth:`curve` for every method; columns past the step budget
        are its multiples."""
        curves = {m: c for m in self.rows() if (c := self.curve(m, metric))}
        if not curves:
            return ""
        budget = int(self.config.get("steps") or 0)
        steps = sorted({x for c in curves.values() for x in c if x <= budget or (budget and x % budget == 0)})
        lines = [
            f"**Learning curves: {METRIC_SHORT.get(metric, metric)} on the unseen targets during training** "
            "(mean over targets and seeds; a step is shown where every run of the method evaluated it)",
            "",
            "| method | " + " | ".join(f"step {x}" for x in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for m, c in curves.items():
            lines.append(f"| {m} | " + " | ".join(f"{c[x]:.3f}" if x in c else "" for x in steps) + " |")
        return "\n".join(lines)

    def hard_pair_table(self) -> str:
        """Markdown: :meth:`hard_pairs` of every MFR-style method at its first logged step and 10%,
        25%, 50% and 100% of the way to its last."""
        rows = []
        for m in self.rows():
            if at := self.hard_pairs(m):
                rows.append(f"| {m} | " + " | ".join(f"{pos:.1f} / {neg:.1f}" for pos, neg in at) + " |")
        if not rows:
            return ""
        return "\n".join(
            [
                "**Hard pairs per meta-batch over training** (positives / negatives the hard-pair attention loss "
                "mined; mean over targets and seeds, at the logged step nearest each point)",
                "",
                "| method | first step | 10% | 25% | 50% | last step |",
                "|---|---|---|---|---|---|",
                *rows,
            ]
        )

    def _method_runs(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["method"] == method]

    def seconds_per_step(self, method: str) -> float:
        """``method``'s training seconds per step, the median over its runs (a run's pauses left
        out); NaN for a method without runs."""
        runs = self._method_runs(method)
        return float(np.median([_seconds_per_step(r) for r in runs])) if runs else float("nan")

    def timing_outliers(self, factor: float = 2.0) -> list[tuple[str, str, int, float]]:
        """Runs whose seconds per step differ from their method's median over this result by more
        than ``factor`` either way: ``(method, target, seed, ratio)``. A pause is already left out
        of a run's step time; a machine shared for a whole run is not, and would bend the cost
        table and the equal-compute budgets taken from it."""
        odd = []
        for method in self.rows()[1:]:
            runs = self._method_runs(method)
            per_step = [_seconds_per_step(r) for r in runs]
            if len(runs) < 3:
                continue
            mid = float(np.median(per_step))
            for r, x in zip(runs, per_step):
                if mid > 0 and not 1 / factor <= x / mid <= factor:
                    odd.append((method, r["target"], int(r["seed"]), x / mid))
        return odd

    def markdown(self, baseline: str | None = None) -> str:
        c = self.config
        ev = self.evaluation
        prov = self.provenance
        status = (
            "complete"
            if self.complete
            else f"INCOMPLETE: {len({(r['method'], r['target'], r['seed']) for r in self.runs if r['method'] != 'untrained'})} of {self.expected_runs} runs finished"
        )
        parts = [
            f"# {self.protocol} protocol on {self.data}",
            "",
            f"Status: {status}. mfr {prov.get('mfr', '?')}"
            + (
                f", commit {prov['git_commit'][:12]}{' (modified)' if prov.get('git_dirty') else ''}"
                if prov.get("git_commit")
                else ""
            )
            + ".",
            "",
            f"Backbone {c['backbone']} ({c['input_size']}x{c['input_size']}, {c['channels']} channel(s), width {c.get('width')}, {c.get('embedding_dim')}-d), {c['steps']} steps, "
            f"B={c['ids_per_domain']} identities per domain, seeds: {self.seeds}; wall time {self.wall_seconds:.0f} s on "
            f"{self.hardware.get('gpu') or (str(self.hardware.get('processor') or '') + ', ' + str(self.hardware.get('cpu_count')) + ' CPU cores')} ({self.hardware.get('torch_threads')} torch threads).",
            f"Evaluation: seed {ev.get('seed', 0)}, {ev.get('n_bootstrap', '?')} identity-bootstrap resamples, {ev.get('n_gallery_draws', '?')} gallery draws; "
            "every method and seed is scored on the same pairs, folds and galleries of a target.",
            "Cells: mean over seeds [95% interval for that mean: bootstrap over seeds and identities] (± sd over seeds when several).",
        ]
        if self.command:
            parts += ["", f"Command: `{self.command}`"]
        answer = self.verdict()
        if answer:
            parts += ["", answer]
        parts += ["", self.overview()]
        for metric in METRICS:
            parts += ["", self.table(metric)]
        parts += ["", "## Paired differences", ""]
        for metric in ("tar@far=1e-2", "tar@far=1e-3", "auc", "rank1"):
            parts += [self.difference_table(metric, baseline), ""]
        timed = self.best_pooled("tar@far=1e-2", budget="time")
        if timed is not None:
            parts += [
                "Equal compute: every method against the best pooled baseline trained for MFR's time.",
                "",
                self.difference_table("tar@far=1e-2", timed),
                "",
            ]
        if self.searches:
            s = self.search
            parts += [
                "## Model selection",
                "",
                f"{s.get('n')} settings per method, {s.get('steps') or c['steps']} steps each, seed 0; validation: "
                f"{s.get('validation_fraction')} of every source domain's identities held out, metric {s.get('select_metric')}.",
                "",
                search_summary(self.searches),
                "",
            ]
        if self.tuned:
            used = {k.split("|")[0]: v for k, v in self.settings.items() if v}
            listed = "; ".join(f"{m}: {', '.join(f'{k}={v:.4g}' for k, v in s.items())}" for m, s in used.items())
            parts += [
                "Settings: every method started from its tuned setting (`mfr.experiments.tuned.TUNED`, selected by the published run's search on real faces)"
                + (f": {listed}; " if listed else ": ")
                + "the other fields as configured.",
                "",
            ]
        if self.budget == "time":
            parts += [
                "Rows `<method>:time` trained for the training time MFR used on the same seed and targets (equal compute; steps in the cost table).",
                "",
            ]
        if self.stage1_fraction:
            parts += [
                f"Rows `X@P` are two-stage: `P` trained {self.stage1_fraction:g} of the steps, `X` fine-tuned its backbone for the rest.",
                "",
            ]
        timing = self.timing_table()
        if timing:
            parts += ["## Cost", "", timing, ""]
        diagnostics = [t for t in (self.curve_table(), self.hard_pair_table()) if t]
        if diagnostics:
            parts += ["## Training diagnostics", ""]
            for t in diagnostics:
                parts += [t, ""]
        if any(r.get("eval_curve") for r in self.runs):
            parts += [
                "Learning curves on the targets and MFR's hard-pair counts over training: `curves_<target>.png` / `.svg`.",
                "",
            ]
        return "\n".join(parts).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """One row per run and metric: method, target, seed, metric, estimate, low, high (the run's
        own interval), train_seconds, steps."""
        import csv

        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["method", "target", "seed", "metric", "estimate", "low", "high", "train_seconds", "steps"])
            for r in self.runs:
                for key in METRICS:
                    m = r["metrics"].get(key)
                    if m is not None:
                        w.writerow(
                            [
                                r["method"],
                                r["target"],
                                r["seed"],
                                key,
                                m["estimate"],
                                m["low"],
                                m["high"],
                                r.get("train_seconds"),
                                r.get("steps"),
                            ]
                        )

    def latex(self, metric: str = "tar@far=1e-2") -> str:
        """A LaTeX (booktabs) method x target table of one metric: mean over seeds with the interval
        for that mean, the best mean per target in bold."""
        grid = self._grid(metric)
        sign = -1 if metric in LOWER_IS_BETTER else 1
        best = {}
        for k, t in enumerate(self.targets):
            vals = [(sign * c[k]["mean"], m) for m, c, _ in grid if c[k] is not None and not math.isnan(c[k]["mean"])]  # type: ignore[index]
            best[t] = max(vals)[1] if vals else None

        def esc(text: str) -> str:
            return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")

        lines = [
            "% " + METRIC_TITLES.get(metric, metric),
            "\\begin{tabular}{l" + "c" * (len(self.targets) + 1) + "}",
            "\\toprule",
            "method & " + " & ".join(esc(t) for t in self.targets) + " & mean \\\\",
            "\\midrule",
        ]
        for m, cells, avg in grid:
            texts = []
            for t, c in zip(self.targets, cells):
                if c is None or math.isnan(c["mean"]):
                    texts.append("--")
                    continue
                v = f"\\textbf{{{c['mean']:.3f}}}" if best[t] == m else f"{c['mean']:.3f}"
                ci = f" {{\\scriptsize [{c['low']:.3f}, {c['high']:.3f}]}}" if not math.isnan(c["low"]) else ""
                texts.append(v + ci)
            lines.append(f"{esc(m)} & " + " & ".join(texts) + f" & {'--' if math.isnan(avg) else f'{avg:.3f}'} \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines) + "\n"

    def save(self, out_dir: str | os.PathLike[str]) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, out / "results.json")
        for name, write in (
            ("results.md", lambda p: p.write_text(self.markdown())),
            ("results.csv", self.to_csv),
            ("tables.tex", lambda p: p.write_text("\n".join(self.latex(m) for m in METRICS))),
        ):
            tmp_file = out / f".{name}.tmp"
            write(tmp_file)
            os.replace(tmp_file, out / name)

    def line_styles(self) -> dict[str, tuple[str, str]]:
        """Every row's (colour, line style) in the plots: the untrained network black and dashed,
        each trained method its own colour (tab10, tab20 past ten methods), and an equal-compute
        row ``<method>:time`` its method's colour, dash-dotted: no two rows alike up to 20 methods."""
        base = [m for m in self.rows() if m != "untrained" and not m.endswith(":time")]
        step = 2 if len(base) <= len(_TAB20) // 2 else 1  # tab20's even entries are tab10
        colors = {m: _TAB20[(step * k) % len(_TAB20)] for k, m in enumerate(base)}
        styles = {"untrained": ("#000000", "--")}
        for m in self.rows():
            if m in colors:
                styles[m] = (colors[m], "-")
            elif m.endswith(":time"):
                styles[m] = (colors.get(m.removesuffix(":time"), "#999999"), "-.")
        return styles

    def plot_roc(self, out_dir: str | os.PathLike[str], seed: int = 0) -> list[Path]:
        """One ROC figure per target (log FAR axis, PNG and SVG): every method's curve for seed
        ``seed`` with its identity-bootstrap 95% band (TAR at a grid of FARs), and the other seeds'
        curves as thin lines of the same colour."""
        plt = _figure()
        if plt is None:
            return []
        written = []
        styles = self.line_styles()
        for target in self.targets:
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for method in self.rows():
                color, ls = styles[method]
                for r in self.runs:
                    if r["target"] != target or r["method"] != method:
                        continue
                    fpr, tpr = np.asarray(r["roc"]["fpr"]), np.asarray(r["roc"]["tpr"])
                    keep = fpr > 0
                    main_seed = r["seed"] == seed
                    ax.plot(
                        fpr[keep],
                        tpr[keep],
                        color=color,
                        lw=1.3 if main_seed else 0.5,
                        alpha=1.0 if main_seed else 0.5,
                        ls=ls,
                        label=method if main_seed else None,
                    )
                    band = r.get("roc_band")
                    if main_seed and band and not all(math.isnan(x) for x in band["low"]):
                        ax.fill_between(band["far"], band["low"], band["high"], color=color, alpha=0.12, lw=0)
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("FAR")
            ax.set_ylabel("TAR")
            ax.set_title(
                f"unseen target: {target} (bands: seed {seed}, 95% identity bootstrap; thin: other seeds)", fontsize=8
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = Path(out_dir) / f"roc_{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in target)}.png"
            fig.savefig(path, dpi=110)
            fig.savefig(path.with_suffix(".svg"))  # vector format for papers
            plt.close(fig)
            written.append(path)
        return written

    def plot_curves(self, out_dir: str | os.PathLike[str], seed: int = 0, metric: str = "tar@far=1e-2") -> list[Path]:
        """Per target, with runs that evaluated during training (``eval_every``): ``metric`` on the
        target over steps for every method, and MFR-style methods' hard-pair counts per step."""
        plt = _figure()
        if plt is None:
            return []
        written = []
        styles = self.line_styles()
        for target in self.targets:
            runs = [
                r
                for r in self.runs
                if r["target"] == target and r["seed"] == seed and (r.get("eval_curve") or r.get("curve"))
            ]
            if not any(r.get("eval_curve") for r in runs):
                continue
            fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4))
            for r in runs:
                color, ls = styles.get(r["method"], ("0.5", "-"))
                pts = [(p["step"], p[metric]) for p in r.get("eval_curve", []) if metric in p]
                if pts:
                    ax.plot(*zip(*pts), marker=".", color=color, ls=ls, label=r["method"])
                hard = [
                    (p["step"], p["hard_positives"] + p["hard_negatives"])
                    for p in r.get("curve", [])
                    if "hard_positives" in p
                ]
                if hard:
                    bx.plot(*zip(*hard), color=color, ls=ls, lw=0.8, label=r["method"])
            ax.set_xlabel("step")
            ax.set_ylabel(METRIC_SHORT.get(metric, metric))
            ax.set_title(f"unseen target {target}, seed {seed}")
            ax.grid(alpha=0.3)
            bx.set_xlabel("step")
            bx.set_ylabel("hard pairs per step (positive + negative)")
            bx.set_title("hard-pair attention: mined pairs")
            bx.grid(alpha=0.3)
            # one legend for both panels (a method keeps its style in each), beside them, off the data
            handles = dict(zip(*reversed(bx.get_legend_handles_labels())))
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))  # with markers where both
            order = [m for m in self.rows() if m in handles]
            fig.tight_layout(rect=(0, 0, 0.86, 1))
            fig.legend([handles[m] for m in order], order, loc="center left", bbox_to_anchor=(0.86, 0.5), fontsize=7)
            path = Path(out_dir) / f"curves_{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in target)}.png"
            fig.savefig(path, dpi=110)
            fig.savefig(path.with_suffix(".svg"))
            plt.close(fig)
            written.append(path)
        return written


# matplotlib's tab20 palette (its even entries are the default tab10 cycle); plain hex so that
# styles need no matplotlib
_TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip


def _seconds_per_step(run: dict[str, Any]) -> float:
    """A run's seconds per training step: its robust step time (pauses left out) where recorded."""
    return float(run.get("step_seconds", run["train_seconds"])) / max(1, run.get("steps") or 1)


def _nearest_step(curve: list[dict[str, Any]], step: float) -> dict[str, Any]:
    """The logged point of ``curve`` nearest ``step``."""
    return min(curve, key=lambda p: abs(float(p["step"]) - step))


def _figure() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


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


def _diff_cell(d: Difference) -> str:
    if math.isnan(d.estimate):
        return "n/a"
    if math.isnan(d.low):
        return f"{d.estimate:+.3f}"
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{'*' if d.excludes_zero else ''}"


def _normal_quantile(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _groups(
    data: FaceData, protocol: str, sources: Sequence[str] | None, targets: Sequence[str] | None
) -> list[tuple[list[str], list[str]]]:
    names = data.domain_names
    if len(names) < 2:
        raise _core.InvalidInputError(
            f"the data has {len(names)} domain ({', '.join(names)}); a domain-generalization protocol needs at least 2 (folders <root>/<domain>/<identity>/<image>)"
        )
    tgt = [names[data.domain_number(t)] for t in targets] if targets else None
    src = [names[data.domain_number(s)] for s in sources] if sources else None
    if protocol == "lodo":
        if src:
            raise _core.InvalidInputError(
                "protocol lodo trains on every domain but the target; --sources is for protocol multi"
            )
        return [([n for n in names if n != t], [t]) for t in (tgt or names)]
    if protocol == "multi":
        if not tgt:
            raise _core.InvalidInputError("protocol multi needs target domains (--targets)")
        src = src or [n for n in names if n not in tgt]
        overlap = set(src) & set(tgt)
        if overlap:
            raise _core.InvalidInputError(f"source and target domains overlap: {sorted(overlap)}")
        if not src:
            raise _core.InvalidInputError("protocol multi: no source domain is left to train on")
        return [(src, tgt)]
    raise _core.InvalidInputError(f"unknown protocol {protocol!r}; available: lodo, multi")


TWO_STAGE_BASES = ("mfr", "mfr_first_order", "mfr_no_hp", "mfr_no_cls", "mfr_no_da", "mldg")


def check_methods(methods: Sequence[str]) -> None:
    """Protocol rows: the methods of :data:`METHODS` and two-stage variants ``X@P`` (meta-learning
    method ``X`` fine-tuned from pooled baseline ``P``)."""
    if not methods:
        raise _core.InvalidInputError("no methods given")
    bad = []
    for m in methods:
        if "@" in m:
            x, _, p = m.partition("@")
            if x not in TWO_STAGE_BASES or p not in POOLED:
                bad.append(m)
        elif m not in METHODS:
            bad.append(m)
    if bad:
        two = ", ".join(f"{x}@{p}" for x in ("mfr", "mldg") for p in POOLED)
        raise _core.InvalidInputError(
            f"unknown method(s) {', '.join(map(repr, bad))}; available: {', '.join(METHODS)}, and two-stage variants X@P such as {two}"
        )
    if len(set(methods)) != len(methods):
        raise _core.InvalidInputError(f"methods repeat: {list(methods)}")


def _settings_key(method: str, targets: Sequence[str]) -> str:
    return f"{method}|{'+'.join(targets)}"


def run_protocol(
    data: FaceData,
    protocol: str = "lodo",
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
    seeds: int = 1,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    n_bootstrap: int = 200,
    bn: str = "running",
    progress: bool | None = None,
    log: Callable[[str], None] | None = print,
    command: str | None = None,
    eval_seed: int = 0,
    n_gallery_draws: int = 10,
    search: int = 0,
    search_steps: int | None = None,
    select_metric: str = "auc",
    validation_fraction: float = 0.25,
    budget: str = "steps",
    stage1_fraction: float = 0.5,
    resume: bool = False,
    force: bool = False,
    tuned: bool = True,
    fixed: Collection[str] = (),
) -> ProtocolResult:
    """Run ``protocol`` for every method and seed; see the module docstring.

    - Evaluation: every run of a target uses the same ``eval_seed`` (the same pairs, folds,
      galleries and bootstrap draws), so seeds vary training only and methods compare pair for pair.
      With ``config.eval_every``, each run also evaluates its targets during training (learning
      curves in the report).
    - ``search=N``: per method and target group, a seeded random search of N settings
      (:mod:`mfr.experiments.search`), ``search_steps`` each (default: ``config.steps``), selected by
      training-domain validation (``validation_fraction`` of every source domain's identities held
      out; ``select_metric``), never by the target; the oracle choice is reported as an upper bound.
      Every seed then trains the selected setting. Two-stage rows use the settings selected for
      their two methods.
    - ``tuned`` (without a search): every method starts from its tuned setting
      (:data:`mfr.experiments.tuned.TUNED`, what the published run's search selected) for the
      fields ``config`` leaves at :class:`TrainConfig`'s defaults and ``fixed`` does not name;
      ``tuned=False`` trains every method with ``config`` as given. The settings used are recorded
      (``settings``) and shown in the report.
    - Two-stage rows ``X@P`` (e.g. ``mfr@arcface``): ``P`` trains ``round(stage1_fraction * steps)``
      steps, then ``X`` continues from its backbone (fresh head, fresh optimizer) for the rest.
    - ``budget="time"``: after the equal-steps rows, every other method of :data:`METHODS` trains
      again for as many steps as fit in the training time MFR used for the same seed and targets
      (row ``<method>:time``; steps = steps * MFR's seconds per step / its own, both measured in
      this run by :func:`step_seconds`, so the count of steps depends on the machine and is recorded).
    - ``out_dir`` with results already: ``resume=True`` continues (finished runs kept, interrupted
      runs continue from their checkpoints; the configuration, evaluation, search and data must be
      the same, methods and seeds may be added), ``force=True`` starts over; neither is an error.
    """
    config = config or TrainConfig()
    config.check()
    check_methods(methods)
    if seeds < 1:
        raise _core.InvalidInputError(f"seeds must be >= 1, got {seeds}")
    if not 0 <= eval_seed < 2**64:
        raise _core.InvalidInputError(f"eval_seed must lie in [0, 2**64), got {eval_seed}")
    if not 1 <= n_gallery_draws <= 1000:
        raise _core.InvalidInputError(f"n_gallery_draws must lie in [1, 1000], got {n_gallery_draws}")
    if search < 0 or search > 1000:
        raise _core.InvalidInputError(f"search must be a number of settings in [1, 1000] (0: no search), got {search}")
    if search_steps is not None and search_steps < 1:
        raise _core.InvalidInputError(f"search_steps must be >= 1, got {search_steps}")
    if select_metric not in METRICS or select_metric.startswith("rank1") or select_metric == "tar@far=1e-3":
        raise _core.InvalidInputError(
            f"select_metric must be one of auc, eer, tar@far=1e-2, accuracy, got {select_metric!r}"
        )
    if not 0 < validation_fraction < 1:
        raise _core.InvalidInputError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    if budget not in ("steps", "time"):
        raise _core.InvalidInputError(f"budget must be 'steps' or 'time', got {budget!r}")
    if budget == "time" and "mfr" not in methods:
        raise _core.InvalidInputError(
            "budget 'time' gives every method the training time MFR used: include mfr among the methods"
        )
    if any("@" in m for m in methods) and not 0 < stage1_fraction < 1:
        raise _core.InvalidInputError(f"stage1_fraction must lie in (0, 1), got {stage1_fraction}")
    if any("@" in m for m in methods) and config.steps < 2:
        raise _core.InvalidInputError(f"two-stage methods need at least 2 steps, got {config.steps}")
    device = resolve_device(config.device)
    distributed.init_from_env(device, config.dist_timeout)
    if distributed.world_size() > 1 and device == torch.device("cuda"):  # no index given: this rank's GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    groups = _groups(data, protocol, sources, targets)
    for src, _ in groups:
        if len(src) < 2:
            raise _core.InvalidInputError(
                f"training on {len(src)} source domain ({', '.join(src)}) cannot simulate a domain shift: every method trains on meta-batches of at least 2 source domains"
            )
    all_targets = list(dict.fromkeys(t for _, ts in groups for t in ts))
    time_rows = [f"{m}:time" for m in methods if "@" not in m and m != "mfr"] if budget == "time" else []
    result = ProtocolResult(
        protocol, data.name, dataclasses.asdict(config), list(methods), all_targets, seeds, command=command
    )
    result.hardware["world_size"] = distributed.world_size()
    result.evaluation = {
        "seed": int(eval_seed),
        "n_bootstrap": int(n_bootstrap),
        "n_gallery_draws": int(n_gallery_draws),
        "bn": bn,
        "max_impostors": 200_000,
    }
    result.search = (
        {
            "n": int(search),
            "steps": search_steps,
            "select_metric": select_metric,
            "validation_fraction": validation_fraction,
        }
        if search
        else {}
    )
    result.budget = budget
    result.tuned = bool(tuned) and not search
    result.stage1_fraction = stage1_fraction if any("@" in m for m in methods) else None
    result.provenance = provenance()
    result.fingerprint = data_fingerprint(data)
    result.expected_runs = seeds * len(groups) * (len(methods) + len(time_rows))
    if result.command is None:
        import shlex
        import sys

        result.command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else None
    main = distributed.is_main()  # under torchrun every rank trains and evaluates; rank 0 writes
    if out_dir is not None:
        check_output_folder(out_dir, "out_dir")
        _adopt_earlier(result, Path(out_dir), resume=resume, force=force)
    say = log if (log is not None and main) else (lambda _: None)
    # the methods a setting is chosen for: a two-stage row's parts, each once
    parts = list(dict.fromkeys(part for m in methods for part in m.split("@")))
    if result.tuned:
        for _, tgts in groups:
            for method in parts:
                key, setting = _settings_key(method, tgts), tuned_settings(method, config, fixed)
                if result.settings.setdefault(key, setting) != setting:  # resumed under other fixed fields
                    raise _core.InvalidInputError(
                        f"cannot resume {out_dir}: {method} trained with the tuned setting {result.settings[key]}, now {setting}"
                    )
    start = time.perf_counter() - result.wall_seconds
    total = result.expected_runs
    done = len({(r["method"], r["seed"], tuple(r["sources"])) for r in result.runs if r["method"] != "untrained"})
    eval_kw: dict[str, Any] = {
        "seed": eval_seed,
        "n_bootstrap": n_bootstrap,
        "bn": bn,
        "n_gallery_draws": n_gallery_draws,
    }

    def run_dir(name: str, tgts: Sequence[str], seed: int) -> Path | None:
        return (
            Path(out_dir) / "runs" / f"{name.replace(':', '-')}-{'+'.join(tgts)}-seed{seed}"
            if out_dir is not None
            else None
        )

    def fit(
        cfg: TrainConfig, train: FaceData, where: Path | None, eval_sets: dict[str, FaceData] | None = None
    ) -> Trainer:
        trainer = Trainer(cfg, train, out_dir=where, progress=progress, eval_sets=eval_sets if cfg.eval_every else None)
        trainer.fit(resume=resume)
        return trainer

    def save() -> None:
        result.wall_seconds = time.perf_counter() - start
        if out_dir is not None and main:
            result.save(out_dir)

    for src, tgts in groups:
        if not search:
            break
        source_data = data.subset(src)
        target_data = {t: data.subset([t]) for t in tgts}
        train, validation = split_validation(source_data, validation_fraction, eval_seed)
        for method in parts:
            key = _settings_key(method, tgts)
            if key in result.settings:
                continue
            steps = search_steps or config.steps
            base_cfg = dataclasses.replace(config, steps=steps, seed=0, eval_every=0, init=None)
            out = search_method(
                method,
                base_cfg,
                train,
                validation,
                target_data,
                search,
                seed=eval_seed,
                select_metric=select_metric,
                eval_seed=eval_seed,
                fit=lambda c, d: fit(c, d, None),
            )
            out["targets"] = list(tgts)
            result.searches.append(out)
            result.settings[key] = out["candidates"][out["selected"]]["setting"]
            save()
            sel = out["candidates"][out["selected"]]
            say(
                f"search {method:<16} {'+'.join(tgts)}: {search} settings x {steps} steps; selected {sel['setting'] or 'defaults'} (validation {select_metric} {sel['validation']:.3f})"
            )

    for seed in range(seeds):
        for src, tgts in groups:
            source_data = data.subset(src)
            target_data = {t: data.subset([t]) for t in tgts}

            def have(name: str, seed: int = seed, tgts: list[str] = tgts) -> bool:
                return all(
                    any(r["method"] == name and r["target"] == t and r["seed"] == seed for r in result.runs)
                    for t in tgts
                )

            def config_of(method: str, seed: int = seed, tgts: list[str] = tgts, **over: Any) -> TrainConfig:
                return dataclasses.replace(
                    config, method=method, seed=seed, **result.settings.get(_settings_key(method, tgts), {}), **over
                )

            if not have("untrained"):
                torch.manual_seed(seed)
                untrained = config.build_backbone(device)
                if config.init is not None:
                    load_init_weights(untrained, config.init)
                for t, td in target_data.items():
                    res = evaluate_domain(untrained, td, 0, **eval_kw)
                    result.runs.append(
                        {
                            "method": "untrained",
                            "target": t,
                            "seed": seed,
                            "sources": src,
                            **res,
                            "train_seconds": 0.0,
                            "steps": 0,
                        }
                    )
            rows = [(m, None) for m in methods] + [(m, "time") for m in time_rows]
            for name, row_budget in rows:
                if have(name):
                    continue
                base = base_method(name)
                t0 = time.perf_counter()
                stage_seconds = 0.0
                if row_budget == "time":
                    mfr_run = next(
                        r for r in result.runs if r["method"] == "mfr" and r["seed"] == seed and r["target"] == tgts[0]
                    )
                    own = next(
                        r for r in result.runs if r["method"] == base and r["seed"] == seed and r["target"] == tgts[0]
                    )
                    per_step = own.get("step_seconds", own["train_seconds"]) / max(1, own["steps"])
                    steps = max(1, round(mfr_run.get("step_seconds", mfr_run["train_seconds"]) / per_step))
                    cfg = config_of(base, steps=steps, warmup_steps=min(config.warmup_steps, steps - 1))
                elif "@" in name:
                    x, _, pooled = name.partition("@")
                    s1 = max(1, round(stage1_fraction * config.steps))
                    stage1_dir = run_dir(f"{pooled}-stage1", tgts, seed)
                    stage1 = fit(config_of(pooled, steps=s1), source_data, stage1_dir)
                    stage_seconds = stage1.step_seconds()
                    init = (
                        stage1.save(stage1_dir / "stage1.safetensors")
                        if stage1_dir is not None
                        else _temporary_checkpoint(stage1)
                    )
                    cfg = config_of(
                        x,
                        steps=config.steps - s1,
                        init=str(init),
                        warmup_steps=min(config.warmup_steps, config.steps - s1 - 1),
                    )
                else:
                    cfg = config_of(name)
                trainer = fit(cfg, source_data, run_dir(name, tgts, seed), eval_sets=target_data)
                if "@" in name and out_dir is None:  # the stage-1 weights were a temporary file
                    shutil.rmtree(Path(str(cfg.init)).parent, ignore_errors=True)
                seconds = time.perf_counter() - t0
                done += 1
                cells = []
                offset = (
                    config.steps - cfg.steps if "@" in name else 0
                )  # two-stage: steps count from the pooled stage's start
                curve = [
                    {**{k: v for k, v in row.items() if k in _CURVE_KEYS}, "step": row["step"] + offset}
                    for row in trainer.history[:: max(1, config.log_every)]
                ]
                for t, td in target_data.items():
                    res = evaluate_domain(trainer.backbone, td, 0, **eval_kw)
                    result.runs.append(
                        {
                            "method": name,
                            "target": t,
                            "seed": seed,
                            "sources": src,
                            **res,
                            "train_seconds": seconds,
                            "step_seconds": trainer.step_seconds() + stage_seconds,
                            "steps": trainer.step + offset,
                            "config": dataclasses.asdict(cfg),
                            "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
                            "curve": curve,
                            "eval_curve": [
                                {**{k: v for k, v in row.items() if k in METRICS}, "step": row["step"] + offset}
                                for row in trainer.eval_history
                                if row["domain"] == t
                            ],
                        }
                    )
                    m = res["metrics"]
                    cells.append(
                        f"{t}: TAR@1e-2 {m['tar@far=1e-2']['estimate']:.3f} AUC {m['auc']['estimate']:.3f} rank-1 {m['rank1']['estimate']:.3f}"
                    )
                save()
                say(f"[{done}/{total}] seed {seed} {name:<16} {seconds:6.1f} s  " + "; ".join(cells))
    result.complete = True
    save()
    if out_dir is not None and main:
        result.plot_roc(out_dir)
        result.plot_curves(out_dir)
    return result


#: Training-log columns kept in results.json (per ``log_every`` steps): losses and MFR's hard-pair counts.
_CURVE_KEYS = ("step", "loss", "loss_s", "loss_t", "hard_positives", "hard_negatives", "lr")


def _temporary_checkpoint(trainer: Trainer) -> Path:
    import tempfile

    return trainer.save(Path(tempfile.mkdtemp(prefix="mfr-stage1-")) / "stage1.safetensors")


#: What must match for ``resume`` (methods and seeds may grow).
_RESUME_KEYS = ("protocol", "targets", "config", "evaluation", "search", "budget", "stage1_fraction", "tuned")

#: TrainConfig fields added after results were first written, with the value that reproduces the
#: training of that time: a results.json without them resumes only with that value.
_CONFIG_ADDED = {"flip": False, "lean": False, "amp": None, "tf32": False}
#: TrainConfig fields that change speed, not results.
_PERFORMANCE_ONLY = ("prefetch",)


def _adopt_earlier(result: ProtocolResult, out: Path, resume: bool, force: bool) -> None:
    """Take over the finished runs of ``out/results.json`` when resuming; refuse to overwrite it
    otherwise (unless ``force``), and refuse to resume what another configuration or data made."""
    path = out / "results.json"
    if not path.exists():
        return
    if force:
        return
    if not resume:
        raise _core.InvalidInputError(
            f"{out} already holds results (results.json): resume continues them (--resume), force starts over (--force)"
        )
    earlier = ProtocolResult.load(path)
    mine, theirs = result.to_dict(), earlier.to_dict()
    theirs["config"] = {**_CONFIG_ADDED, **theirs.get("config", {})}
    for fields in (mine["config"], theirs["config"]):  # how fast, not what: never a reason to refuse
        for key in _PERFORMANCE_ONLY:
            fields.pop(key, None)
    for key in _RESUME_KEYS:
        if mine.get(key) != theirs.get(key):
            a, b = theirs.get(key), mine.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                detail = f"{diff} (earlier, now)"
            else:
                detail = f"{a!r} earlier, {b!r} now"
            hint = (
                " (--untuned or tuned=False: TrainConfig's plain defaults for every method)" if key == "tuned" else ""
            )
            raise _core.InvalidInputError(f"cannot resume {out}: it was made with another {key}: {detail}{hint}")
    if earlier.fingerprint.get("sha256") != result.fingerprint.get("sha256"):
        raise _core.InvalidInputError(
            f"cannot resume {out}: it was made from other data ({earlier.fingerprint.get('name')}, {earlier.fingerprint.get('images')} images; now {result.fingerprint.get('name')}, {result.fingerprint.get('images')} images)"
        )
    result.runs = list(earlier.runs)
    result.searches = list(earlier.searches)
    result.settings = dict(earlier.settings)
    result.wall_seconds = earlier.wall_seconds
    result.methods = list(dict.fromkeys([*earlier.methods, *result.methods]))
    result.seeds = max(result.seeds, earlier.seeds)
