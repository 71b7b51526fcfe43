"""The protocol's report: Markdown sections (one function each), the whole ``results.md``, CSV
and LaTeX. Every function reads a :class:`ProtocolResult` and its statistics; none computes a
statistic of its own."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ... import _core
from ..evaluate import METRICS
from ..search import search_summary
from .spec import LOWER_IS_BETTER, METRIC_SHORT, METRIC_TITLES
from .stats import Difference

if TYPE_CHECKING:
    from .result import ProtocolResult

__all__ = [
    "cost",
    "diagnostics",
    "difference_table",
    "equal_compute",
    "header",
    "latex",
    "markdown",
    "model_selection",
    "overview",
    "table",
    "verdict",
    "versus_table",
    "write_csv",
]


def _heading(level: int, text: str) -> str:
    return "#" * level + " " + text


def header(res: ProtocolResult) -> str:
    """Title, completion status, the configuration, the evaluation and the command."""
    c = res.config
    ev = res.evaluation
    prov = res.provenance
    status = "complete" if res.complete else f"INCOMPLETE: {res.finished_runs()} of {res.expected_runs} runs finished"
    parts = [
        f"# {res.protocol} protocol on {res.data}",
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
        f"B={c['ids_per_domain']} identities per domain, seeds: {res.seeds}; wall time {res.wall_seconds:.0f} s on "
        f"{res.hardware.get('gpu') or (str(res.hardware.get('processor') or '') + ', ' + str(res.hardware.get('cpu_count')) + ' CPU cores')} ({res.hardware.get('torch_threads')} torch threads).",
        f"Evaluation: seed {ev.get('seed', 0)}, {ev.get('n_bootstrap', '?')} identity-bootstrap resamples, {ev.get('n_gallery_draws', '?')} gallery draws; "
        "every method and seed is scored on the same pairs, folds and galleries of a target.",
        "Cells: mean over seeds [95% interval for that mean: bootstrap over seeds and identities] (± sd over seeds when several).",
    ]
    if res.command:
        parts += ["", f"Command: `{res.command}`"]
    return "\n".join(parts)


def verdict(res: ProtocolResult, method: str = "mfr", metric: str = "tar@far=1e-2", confidence: float = 0.95) -> str:
    """The questions the protocol asks, answered in Markdown: does ``method`` beat the best pooled
    baseline on the unseen targets, and the best method that is not MFR (pooled, MLDG, the
    domain-generalization baselines and their variants)? The paired difference of ``metric`` (mean
    over targets, :meth:`compare`) against each at equal steps and, when the result has
    equal-compute rows, against the best of those; which targets the interval calls either way.
    "" when the result holds neither or not ``method``."""
    if method not in res.rows():
        return ""
    name = METRIC_SHORT.get(metric, metric)
    tail = (
        f"{name}, mean over the {len(res.targets)} targets, paired {round(100 * confidence)}% interval over seeds and identities"
        + ("" if res.complete else " (an interim reading: the run is incomplete)")
        + ":"
    )
    blocks = []
    pooled = _verdict_lines(res, method, metric, confidence, res.best_pooled)
    if pooled:
        blocks.append(
            "\n".join([f"**Does {method} beat the best pooled baseline on the unseen targets?** {tail}", "", *pooled])
        )
    others = _verdict_lines(res, method, metric, confidence, res.best_other)
    if others:
        blocks.append(
            "\n".join(
                [f"**Does {method} beat the best method that is not MFR on the unseen targets?** {tail}", "", *others]
            )
        )
    return "\n\n".join(blocks)


def _verdict_lines(
    res: ProtocolResult,
    method: str,
    metric: str,
    confidence: float,
    pick: Callable[[str, str], str | None],
) -> list[str]:
    """One line per budget: ``method`` minus the row ``pick(metric, budget)`` names."""
    sign = -1 if metric in LOWER_IS_BETTER else 1
    lines = []
    for budget, label in (
        ("steps", "equal steps"),
        ("time", "equal compute (the baselines trained for MFR's time)"),
    ):
        baseline = pick(metric, budget)
        if baseline is None or baseline == method:
            continue
        try:
            c = res.compare(method, baseline, metric, confidence)
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
    return lines


def table(res: ProtocolResult, metric: str = "tar@far=1e-2") -> str:
    """A Markdown method x target table of one metric: ``mean [low, high]`` (an interval for the
    mean over seeds) and ``sd`` over seeds when there are several; the mean over targets last."""
    head = "| method | " + " | ".join(res.targets) + " | mean |"
    lines = [f"**{METRIC_TITLES.get(metric, metric)}**", "", head, "|" + "---|" * (len(res.targets) + 2)]
    for method, cells, avg in res.grid(metric):
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


def overview(res: ProtocolResult) -> str:
    """Markdown: every row's mean over targets (of the means over seeds) for every metric."""
    grids = {metric: {m: avg for m, _, avg in res.grid(metric)} for metric in METRICS}
    lines = [
        "**Overview: mean over targets**",
        "",
        "| method | " + " | ".join(METRIC_SHORT[m] for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for method in res.rows():
        if method in grids[METRICS[0]]:
            cells = [grids[metric].get(method, math.nan) for metric in METRICS]
            lines.append(f"| {method} | " + " | ".join("—" if math.isnan(c) else f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def difference_table(
    res: ProtocolResult, metric: str = "tar@far=1e-2", baseline: str | None = None, confidence: float = 0.95
) -> str:
    """Markdown: every other method minus ``baseline`` (default :meth:`best_pooled`), per target
    and over targets, with paired intervals (``*``: the interval excludes 0), and how many
    targets each method wins and loses."""
    baseline = baseline or res.best_pooled(metric)
    if baseline is None:
        return f"*(no pooled baseline with a defined mean over targets: no difference table for {metric})*"
    head = "| method | " + " | ".join(res.targets) + " | mean over targets | wins / losses |"
    better = "lower" if metric in LOWER_IS_BETTER else "higher"
    lines = [
        f"**{METRIC_SHORT.get(metric, metric)}: difference vs {baseline}** (paired {round(100 * confidence)}% CI; "
        f"`*` the CI excludes 0; {better} is better; wins / losses: targets with a CI excluding 0)",
        "",
        head,
        "|" + "---|" * (len(res.targets) + 3),
    ]
    for method in res.rows():
        if method == baseline or not any(res.target_runs(method, t) for t in res.targets):
            continue
        c = res.compare(method, baseline, metric, confidence)
        cells = []
        for t in res.targets:
            d = c.per_target.get(t)
            cells.append("—" if d is None else _diff_cell(d))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_diff_cell(c.mean)} | {c.wins} / {c.losses} |")
    return "\n".join(lines)


def versus_table(
    res: ProtocolResult,
    rows: Sequence[str],
    references: Sequence[str] = ("mfr", "cosface"),
    metric: str = "tar@far=1e-2",
    confidence: float = 0.95,
) -> str:
    """Markdown: each of ``rows`` that has runs, with its mean ``metric`` over targets, its paired
    difference to each of ``references`` (the row minus the reference, :meth:`compare`: an interval
    over seeds and identities, and how many targets the interval calls either way), and its cost
    per step relative to CosFace on its own machine. "" when none of ``rows`` has runs."""
    present = [m for m in rows if any(r["method"] == m for r in res.runs)]
    refs = [x for x in references if x in res.rows()]
    if not present:
        return ""
    grid = {m: avg for m, _, avg in res.grid(metric)}
    short = METRIC_SHORT.get(metric, metric)
    head = f"| row | runs | mean {short} | " + " | ".join(f"row - {x}" for x in refs) + " | cost per step (x cosface) |"
    lines = [head, "|---|---|---|" + "---|" * len(refs) + "---|"]
    for m in present:
        n = sum(r["method"] == m for r in res.runs)
        cells = []
        for x in refs:
            try:
                c = res.compare(m, x, metric, confidence)
            except _core.InvalidInputError:  # no run in common yet
                cells.append("—")
                continue
            d = c.mean
            calls = f"; better on {len(c.better_on)}, worse on {len(c.worse_on)} of {len(c.per_target)}"
            cells.append(f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{calls}")
        cost = res.relative_cost(m)
        cost_text = "—" if math.isnan(cost) else f"{cost:.2f}"
        mean = grid.get(m, float("nan"))
        lines.append(
            f"| {m} | {n} | {'—' if math.isnan(mean) else f'{mean:.3f}'} | " + " | ".join(cells) + f" | {cost_text} |"
        )
    return "\n".join(lines)


def timing_table(res: ProtocolResult) -> str:
    """Markdown: per row, median training seconds per run and per step, and its cost per step
    relative to the fastest row and to CosFace timed on the same machine (its runs there, else its
    calibration run: :attr:`ProtocolResult.calibration`). A result timed on several machines names
    each row's."""
    rows = []
    for method in res.rows()[1:]:
        runs = {(r["target"], r["seed"]): r for r in res.runs if r["method"] == method}
        if not runs:
            continue
        secs = [r["train_seconds"] for r in runs.values()]
        steps = [max(1, r.get("steps") or 1) for r in runs.values()]
        machine = res.main_machine(method) or ""
        rows.append(
            (method, float(np.median(secs)), res.seconds_per_step(method), int(np.median(steps)), len(runs), machine)
        )
    if not rows:
        return ""
    several = len({r[5] for r in rows}) > 1

    fastest = min(r[2] for r in rows if r[5] == rows[0][5])
    lines = [
        "**Training time** (median over runs; s per run is wall time including evaluations during training; ms per step only the steps, "
        "their mean without steps over 3x the median, which a pause or another job interrupted, plus SWAD's evaluations)",
        "",
        "| method | steps | s per run | ms per step | x fastest | x cosface | runs |"
        + (" machine |" if several else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if several else ""),
    ]
    names = list(dict.fromkeys(r[5] for r in rows))
    for m, sec, p, k, n, machine in rows:
        vs_fastest = f"{p / fastest:.2f}" if machine == rows[0][5] else "—"
        ref = res.seconds_per_step_on("cosface", machine)
        vs_cosface = "—" if math.isnan(ref) else f"{p / ref:.2f}"
        where = f" {names.index(machine) + 1} |" if several else ""
        lines.append(f"| {m} | {k} | {sec:.1f} | {1000 * p:.1f} | {vs_fastest} | {vs_cosface} | {n} |{where}")
    if several:
        lines += [
            "",
            "Machines: " + "; ".join(f"{i + 1}: {name}" for i, name in enumerate(names)) + ". "
            "x fastest compares rows timed on the first machine only; x cosface compares each row with CosFace on its own machine "
            "(where CosFace has no runs there, a short calibration run of it measured that machine).",
        ]
    odd = res.timing_outliers()
    if odd:
        listed = ", ".join(f"{m} on {t} seed {s} ({x:.1f}x)" for m, t, s, x in odd)
        lines += [
            "",
            f"Step times off their method's median by over 2x (another job shared the machine for the whole run, which "
            f"the per-step rule cannot see; equal-compute rows budgeted from them are off too; delete and rerun them): {listed}.",
        ]
    return "\n".join(lines)


def curve_table(res: ProtocolResult, metric: str = "tar@far=1e-2") -> str:
    """Markdown learning curves: :meth:`curve` for every method; columns past the step budget
    are its multiples."""
    curves = {m: c for m in res.rows() if (c := res.curve(m, metric))}
    if not curves:
        return ""
    budget = int(res.config.get("steps") or 0)
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


def hard_pair_table(res: ProtocolResult) -> str:
    """Markdown: :meth:`hard_pairs` of every MFR-style method at its first logged step and 10%,
    25%, 50% and 100% of the way to its last."""
    rows = []
    for m in res.rows():
        if at := res.hard_pairs(m):
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


def write_csv(res: ProtocolResult, path: str | os.PathLike[str]) -> None:
    """One row per run and metric: method, target, seed, metric, estimate, low, high (the run's
    own interval), train_seconds, steps."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "target", "seed", "metric", "estimate", "low", "high", "train_seconds", "steps"])
        for r in res.runs:
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


def latex(res: ProtocolResult, metric: str = "tar@far=1e-2") -> str:
    """A LaTeX (booktabs) method x target table of one metric: mean over seeds with the interval
    for that mean, the best mean per target in bold."""
    grid = res.grid(metric)
    sign = -1 if metric in LOWER_IS_BETTER else 1
    best = {}
    for k, t in enumerate(res.targets):
        vals = [(sign * c[k]["mean"], m) for m, c, _ in grid if c[k] is not None and not math.isnan(c[k]["mean"])]  # type: ignore[index]
        best[t] = max(vals)[1] if vals else None

    def esc(text: str) -> str:
        return text.replace("_", "\\_").replace("&", "\\&").replace("%", "\\%")

    lines = [
        "% " + METRIC_TITLES.get(metric, metric),
        "\\begin{tabular}{l" + "c" * (len(res.targets) + 1) + "}",
        "\\toprule",
        "method & " + " & ".join(esc(t) for t in res.targets) + " & mean \\\\",
        "\\midrule",
    ]
    for m, cells, avg in grid:
        texts = []
        for t, c in zip(res.targets, cells):
            if c is None or math.isnan(c["mean"]):
                texts.append("--")
                continue
            v = f"\\textbf{{{c['mean']:.3f}}}" if best[t] == m else f"{c['mean']:.3f}"
            ci = f" {{\\scriptsize [{c['low']:.3f}, {c['high']:.3f}]}}" if not math.isnan(c["low"]) else ""
            texts.append(v + ci)
        lines.append(f"{esc(m)} & " + " & ".join(texts) + f" & {'--' if math.isnan(avg) else f'{avg:.3f}'} \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _diff_cell(d: Difference) -> str:
    if math.isnan(d.estimate):
        return "n/a"
    if math.isnan(d.low):
        return f"{d.estimate:+.3f}"
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]{'*' if d.excludes_zero else ''}"


def equal_compute(res: ProtocolResult) -> str:
    """Every row against the best pooled baseline trained for MFR's time; "" without such rows."""
    timed = res.best_pooled("tar@far=1e-2", budget="time")
    if timed is None:
        return ""
    return "\n\n".join(
        [
            "Equal compute: every method against the best pooled baseline trained for MFR's time.",
            difference_table(res, "tar@far=1e-2", timed),
        ]
    )


def model_selection(res: ProtocolResult, level: int = 2) -> str:
    """The search (what it selected, validation and oracle scores) and the tuned settings used."""
    c = res.config
    parts = []
    if res.searches:
        s = res.search
        parts += [
            _heading(level, "Model selection"),
            f"{s.get('n')} settings per method, {s.get('steps') or c['steps']} steps each, seed 0; validation: "
            f"{s.get('validation_fraction')} of every source domain's identities held out, metric {s.get('select_metric')}.",
            search_summary(res.searches),
        ]
    if res.tuned:
        used = {k.split("|")[0]: v for k, v in res.settings.items() if v}
        listed = "; ".join(f"{m}: {', '.join(f'{k}={v:.4g}' for k, v in s.items())}" for m, s in used.items())
        parts.append(
            "Settings: every method started from its tuned setting (`mfr.experiments.tuned.TUNED`, selected by the published run's search on real faces)"
            + (f": {listed}; " if listed else ": ")
            + "the other fields as configured."
        )
    return "\n\n".join(parts)


def row_notes(res: ProtocolResult) -> str:
    """What the equal-compute and two-stage rows are, where the result has them."""
    parts = []
    if res.budget == "time":
        parts.append(
            "Rows `<method>:time` trained for the training time MFR used on the same seed and targets (equal compute; steps in the cost table)."
        )
    if res.stage1_fraction:
        parts.append(
            f"Rows `X@P` are two-stage: `P` trained {res.stage1_fraction:g} of the steps, `X` fine-tuned its backbone for the rest."
        )
    return "\n\n".join(parts)


def cost(res: ProtocolResult, level: int = 2) -> str:
    """Training time per row; "" without trained rows."""
    timing = timing_table(res)
    return "\n\n".join([_heading(level, "Cost"), timing]) if timing else ""


def diagnostics(res: ProtocolResult, level: int = 2) -> str:
    """Learning curves on the targets and the hard pairs MFR-style rows mined; "" without them."""
    found = [t for t in (curve_table(res), hard_pair_table(res)) if t]
    return "\n\n".join([_heading(level, "Training diagnostics"), *found]) if found else ""


def markdown(res: ProtocolResult, baseline: str | None = None) -> str:
    """The whole report (``results.md``)."""
    sections = [header(res), verdict(res), overview(res), *(table(res, metric) for metric in METRICS)]
    paired = [difference_table(res, metric, baseline) for metric in ("tar@far=1e-2", "tar@far=1e-3", "auc", "rank1")]
    sections += ["## Paired differences", *paired, equal_compute(res)]
    sections += [model_selection(res), row_notes(res), cost(res), diagnostics(res)]
    if any(run.get("eval_curve") for run in res.runs):
        sections.append(
            "Learning curves on the targets and MFR's hard-pair counts over training: `curves_<target>.png` / `.svg`."
        )
    return "\n\n".join(s for s in sections if s) + "\n"
