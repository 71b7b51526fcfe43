"""``ProtocolResult``: every run of a protocol with what made it, and the questions a reader asks
of it (summaries, paired comparisons, the verdict, the report, the figures). The numbers come from
:mod:`.stats`, the text from :mod:`.report`, the figures from :mod:`.plots`, the files from
:mod:`.records`; this class only holds the runs and remembers the summary."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import _core
from ..evaluate import METRICS
from ..rows import Row
from . import plots, records, report, stats
from .provenance import hardware, machine_name
from .records import RunRecord

__all__ = ["ProtocolResult"]


@dataclass
class ProtocolResult:
    """Every run of a protocol (row x target x seed, plus the untrained network) with its metrics.

    Cells of :meth:`summary` and :meth:`table` give the mean over seeds with an interval for that
    mean, and :meth:`compare` the paired difference of two rows (see :mod:`.stats` for how both
    are computed). Saved as a folder (:mod:`.records`): ``results.json``, ``runs.jsonl`` and the
    report's files.
    """

    protocol: str
    data: str
    config: dict[str, Any]
    methods: list[str]
    targets: list[str]
    seeds: int
    runs: list[RunRecord] = field(default_factory=list)
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
    #: Every machine that trained runs of this result (name -> hardware), the first the one runs
    #: without a ``machine`` field were timed on; a run records the name it was timed on.
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Seconds per step measured on a machine by a short run (machine -> method -> seconds), where
    #: equal-compute budgets or the cost table need a method's speed on a machine it has no runs on.
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.machines:
            self.machines = {machine_name(self.hardware): dict(self.hardware)}

    @property
    def machine(self) -> str:
        """The name of the machine this result's hardware describes (the current one while running)."""
        return machine_name(self.hardware)

    def run_machine(self, run: RunRecord) -> str:
        """The machine ``run`` was timed on (runs written before machines were recorded: the first)."""
        return str(run.get("machine") or next(iter(self.machines)))

    def main_machine(self, method: str) -> str | None:
        """The machine that timed most of ``method``'s runs (None without runs)."""
        names = [self.run_machine(r) for r in self.runs if r["method"] == method]
        return max(dict.fromkeys(names), key=names.count) if names else None

    def seconds_per_step_on(self, method: str, machine: str) -> float:
        """``method``'s seconds per step on ``machine``: the median over its runs there, else its
        calibration run there, else NaN."""
        timed = [
            stats.run_seconds_per_step(r) for r in self.runs if r["method"] == method and self.run_machine(r) == machine
        ]
        if timed:
            return float(np.median(timed))
        return float(self.calibration.get(machine, {}).get(method, float("nan")))

    def relative_cost(self, method: str, reference: str = "cosface") -> float:
        """``method``'s seconds per step over ``reference``'s, both on the machine that timed
        ``method`` (NaN where either is unknown there)."""
        machine = self.main_machine(method)
        if machine is None:
            return float("nan")
        return self.seconds_per_step_on(method, machine) / self.seconds_per_step_on(reference, machine)

    # -- files ---------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ProtocolResult:
        """A saved result: its folder or its ``results.json`` (either schema; see :mod:`.records`)."""
        p = Path(path)
        raw = records.read_folder(p)
        p = p / records.HEADER if p.is_dir() else p
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in raw]
        if missing:
            raise _core.DataError(
                f"ProtocolResult.load: {p} is not a complete protocol result: it lacks {', '.join(missing)} "
                f"(a result holds {', '.join(required)}, written by ProtocolResult.save or mfr reproduce)"
            )
        return cls(**{k: v for k, v in raw.items() if k in fields})

    def save(self, out_dir: str | os.PathLike[str], compress: bool = False) -> None:
        """Write the whole result: the header, every run (``runs.jsonl``, or ``runs.jsonl.gz`` with
        ``compress``) and the report's files (``results.md``, ``results.csv``, ``tables.tex``)."""
        records.write_folder(Path(out_dir), self._header(), self.runs, compress=compress)
        self.write_reports(out_dir)

    def save_header(self, out_dir: str | os.PathLike[str]) -> None:
        """Rewrite the header and the reports; the runs file is appended to separately
        (:func:`.records.append_runs`), once per finished run."""
        records.write_folder(Path(out_dir), self._header(), None)
        self.write_reports(out_dir)

    def write_reports(self, out_dir: str | os.PathLike[str]) -> None:
        out = Path(out_dir)
        for name, write in (
            ("results.md", lambda p: p.write_text(self.markdown())),
            ("results.csv", self.to_csv),
            ("tables.tex", lambda p: p.write_text("\n".join(self.latex(m) for m in METRICS))),
        ):
            tmp_file = out / f".{name}.tmp"
            write(tmp_file)
            os.replace(tmp_file, out / name)

    def _header(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "runs"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # -- rows and runs -------------------------------------------------------------------------

    def rows(self) -> list[str]:
        """Table rows: the untrained network, the methods, then rows only the runs name
        (``<method>:time`` of an equal-compute budget)."""
        seen = ["untrained", *self.methods]
        return seen + list(dict.fromkeys(r["method"] for r in self.runs if r["method"] not in seen))

    def target_runs(self, method: str, target: str) -> dict[int, RunRecord]:
        """``method``'s runs on ``target`` by seed."""
        return stats.target_runs(self.runs, method, target)

    def finished_runs(self) -> int:
        """Trained runs finished, counted as :attr:`expected_runs` counts them: one per row, seed
        and target group (a ``multi`` protocol's group evaluates several targets; a record without
        its sources counts per target)."""
        return len(
            {
                (r["method"], r["seed"], tuple(r.get("sources") or [r["target"]]))
                for r in self.runs
                if not Row.parse(r["method"]).untrained
            }
        )

    @property
    def eval_seed(self) -> int:
        return int(self.evaluation.get("seed", 0))

    # -- statistics ----------------------------------------------------------------------------

    def summary(self, confidence: float = 0.95) -> stats.Summary:
        """``summary[method][target][metric]`` = ``mean`` over seeds, ``sd`` over seeds, the
        interval ``low``/``high`` for the mean and ``n_seeds``. Computed once per set of runs
        (tables, differences and the report all read it)."""
        key = (id(self.runs), len(self.runs), confidence)  # runs are only appended to or replaced
        cached = self.__dict__.get("_summary_cache")
        if cached is not None and cached[0] == key:
            hit: stats.Summary = cached[1]
            return hit
        out = stats.summary(self.runs, self.rows(), self.targets, self.eval_seed, confidence)
        self.__dict__["_summary_cache"] = (key, out)
        return out

    def grid(self, metric: str) -> stats.Grid:
        """Per row with runs: its summary cell per target and the mean over targets."""
        return stats.grid(self.summary(), self.rows(), self.targets, metric)

    def compare(self, a: str, b: str, metric: str = "tar@far=1e-2", confidence: float = 0.95) -> stats.Comparison:
        """Paired comparison of rows ``a`` and ``b`` (``"untrained"`` too) on ``metric``: per
        target the mean over seeds of ``a - b`` with a percentile interval from a paired bootstrap
        (seeds resampled, the same for both; the target's identities resampled jointly for both
        and every seed), and the mean over targets. For ``accuracy`` the folds are paired instead."""
        for m in (a, b):
            if m not in self.rows():
                raise _core.InvalidInputError(
                    f"compare: method {m!r} is not in this result; it has: {', '.join(self.rows())}"
                )
        if metric not in METRICS:
            raise _core.InvalidInputError(f"compare: unknown metric {metric!r}; available: {', '.join(METRICS)}")
        return stats.compare(self.runs, self.targets, self.eval_seed, a, b, metric, confidence)

    def best_pooled(self, metric: str = "tar@far=1e-2", budget: str = "steps") -> str | None:
        """The pooled baseline (softmax/CosFace/ArcFace) with the best mean over targets; with
        ``budget="time"`` among their equal-compute rows (``<method>:time``)."""
        return stats.best_pooled(self.grid(metric), metric, budget)

    def best_other(self, metric: str = "tar@far=1e-2", budget: str = "steps") -> str | None:
        """The best row that is not MFR or an MFR ablation (:func:`.stats.best_other`); with
        ``budget="time"`` among the equal-compute rows."""
        return stats.best_other(self.grid(metric), metric, budget)

    def verdict(self, method: str = "mfr", metric: str = "tar@far=1e-2", confidence: float = 0.95) -> str:
        """Does ``method`` beat the best pooled baseline, and the best non-MFR method, on the unseen
        targets? (Markdown; "" when the result holds neither or not ``method``; see :func:`.report.verdict`.)"""
        return report.verdict(self, method, metric, confidence)

    def curve(self, method: str, metric: str = "tar@far=1e-2") -> dict[int, float]:
        """``metric`` on the unseen targets at each evaluation during training (:func:`.stats.curve`)."""
        return stats.curve(self.runs, method, metric)

    def hard_pairs(
        self, method: str, fractions: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0)
    ) -> list[tuple[float, float]]:
        """Hard (positives, negatives) per meta-batch over training (:func:`.stats.hard_pairs`)."""
        return stats.hard_pairs(self.runs, method, fractions)

    def seconds_per_step(self, method: str) -> float:
        """``method``'s training seconds per step, the median over its runs (pauses left out)."""
        return stats.seconds_per_step(self.runs, method)

    def timing_outliers(self, factor: float = 2.0) -> list[tuple[str, str, int, float]]:
        """Runs whose step time is off their row's median by over ``factor`` (:func:`.stats.timing_outliers`)."""
        return stats.timing_outliers(self.runs, self.rows()[1:], factor)

    # -- the report ------------------------------------------------------------------------------

    def table(self, metric: str = "tar@far=1e-2") -> str:
        return report.table(self, metric)

    def overview(self) -> str:
        return report.overview(self)

    def difference_table(
        self, metric: str = "tar@far=1e-2", baseline: str | None = None, confidence: float = 0.95
    ) -> str:
        return report.difference_table(self, metric, baseline, confidence)

    def timing_table(self) -> str:
        return report.timing_table(self)

    def curve_table(self, metric: str = "tar@far=1e-2") -> str:
        return report.curve_table(self, metric)

    def hard_pair_table(self) -> str:
        return report.hard_pair_table(self)

    def markdown(self, baseline: str | None = None) -> str:
        return report.markdown(self, baseline)

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        report.write_csv(self, path)

    def latex(self, metric: str = "tar@far=1e-2") -> str:
        return report.latex(self, metric)

    def line_styles(self) -> dict[str, tuple[str, str]]:
        return plots.line_styles(self)

    def plot_roc(self, out_dir: str | os.PathLike[str], seed: int = 0) -> list[Path]:
        return plots.plot_roc(self, out_dir, seed)

    def plot_curves(self, out_dir: str | os.PathLike[str], seed: int = 0, metric: str = "tar@far=1e-2") -> list[Path]:
        return plots.plot_curves(self, out_dir, seed, metric)
