"""Write docs/results.md from the published run's report and the prose of docs/results.template.md.

    python scripts/results_page.py [RUN_DIR] [--out docs/results.md]

RUN_DIR (default docs/runs/faces-lodo-1000) holds the run's results. The page's tables are the
report's own sections (mfr.experiments.reproduce.report), its answer is ProtocolResult.verdict, and
every figure the prose quotes is computed here from the same result, so the page cannot drift from
the data: tests/experiments/test_results_page.py regenerates it and compares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mfr.experiments.reproduce import Difference, ProtocolResult, report
from mfr.experiments.reproduce.stats import run_step_seconds

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "results.template.md"
METRIC = "tar@far=1e-2"
#: The rows of the domain-generalization methods added to the published run (issue 25).
DG_ROWS = ("coral", "mixstyle", "cdt", "cosface+swad", "mfr+swad")
#: Records (lines of runs.jsonl.gz) the run held when it was first published, before the extension.
PUBLISHED_RECORDS = 294


def _interval(d: Difference) -> str:
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def _says(d: Difference) -> str:
    if d.low > 0:
        return "an interval above 0"
    return "an interval below 0" if d.high < 0 else "an interval that includes 0"


def _calls(c: Any) -> str:
    """The targets a comparison's per-target intervals call, as the verdict names them."""
    better = ", ".join(c.better_on) or "none"
    worse = ", ".join(c.worse_on) or "none"
    return f"better on {better}, worse on {worse}"


def dg_reading(r: ProtocolResult) -> str:
    """What the added domain-generalization rows show, in words computed from the result."""
    other, other_t = r.best_other(METRIC), r.best_other(METRIC, budget="time")
    grid = {m: avg for m, _, avg in r.grid(METRIC)}
    parts = []
    if other is not None:
        c = r.compare("mfr", other, METRIC).mean
        v = r.compare(other, "cosface", METRIC).mean
        text = (
            f"The strongest method that is not MFR is {other} (mean {grid[other]:.3f}, MFR {grid['mfr']:.3f}): "
            f"MFR minus {other} is {_interval(c)}, {_says(c)}"
        )
        if other_t is not None:
            ct = r.compare("mfr", other_t, METRIC).mean
            text += f", and {_interval(ct)} against {other_t} at equal compute, {_says(ct)}"
        text += (
            f"; {other} itself leads CosFace by {_interval(v)}, {_says(v)}, at "
            f"{r.relative_cost(other):.1f}x CosFace's cost per step (MFR: {r.relative_cost('mfr'):.1f}x). "
        )
        both_above = c.low <= 0 <= c.high
        text += (
            "This run cannot tell the two meta-learned losses apart on these targets; both beat pooled training."
            if both_above and v.low > 0
            else ""
        )
        parts.append(text)
    level = [m for m in ("coral", "mixstyle", "cosface+swad") if m in r.rows()]
    if level:
        cells = {m: r.compare(m, "cosface", METRIC) for m in level}
        under = {m: r.compare(m, "mfr", METRIC) for m in level}
        parts.append(
            "The cheap add-ons to pooled training stay where CosFace is ("
            + "; ".join(f"{m} - cosface {_interval(cells[m].mean)}, {_says(cells[m].mean)}" for m in level)
            + "), as DomainBed found for such methods against ERM, and below MFR ("
            + "; ".join(f"{m} - mfr {_interval(under[m].mean)}" for m in level)
            + ")."
        )
    if "mfr+swad" in r.rows():
        s = r.compare("mfr+swad", "mfr", METRIC)
        parts.append(
            f"SWAD's weight averaging does not add to MFR here: mfr+swad - mfr = {_interval(s.mean)}, "
            f"{_says(s.mean)} ({_calls(s)})."
        )
    return " ".join(p.strip() for p in parts)


def figures(r: ProtocolResult) -> dict[str, Any]:
    """Every value the template names."""
    base, base_t = r.best_pooled(METRIC), r.best_pooled(METRIC, budget="time")
    if base is None or base_t is None:
        raise SystemExit("results_page: the run has no pooled baseline at equal steps and at equal compute")
    f: dict[str, Any] = {"base": base, "base_t": base_t, "verdict": r.verdict()}
    vs, vs_t = {}, {}  # each method against the best pooled baseline at equal steps / equal compute
    for method, key in (
        ("mfr", "mfr"),
        ("mfr_first_order", "fo"),
        ("mldg", "mldg"),
        ("mfr@arcface", "two"),
        ("mldg@arcface", "two_mldg"),
    ):
        c = vs[method] = r.compare(method, base, METRIC)
        vs_t[method] = r.compare(method, base_t, METRIC)
        f[f"{key}_vs"], f[f"{key}_vs_t"] = _interval(c.mean), _interval(vs_t[method].mean)
        f.update({f"{key}_{t}": f"{d.estimate:+.3f}" for t, d in c.per_target.items()})
    f["mfr_top"] = max(r.targets, key=lambda t: vs["mfr"].per_target[t].estimate)
    f["time_vs_steps"] = _interval(r.compare(base_t, base, METRIC).mean)
    summary = r.summary()
    for method in ("mfr", "mfr_first_order", "mldg", "cosface", "arcface", "softmax", "untrained", "cosface:time"):
        f.update({f"cell_{method}_{t}": f"{summary[method][t][METRIC]['mean']:.3f}" for t in r.targets})
    best = []
    for t in r.targets:
        value, method = max(
            (summary[m][t][METRIC]["mean"], m) for m in r.rows() if m != "untrained" and t in summary.get(m, {})
        )
        best.append(f"{t} {method} ({value:.3f})")
    f["best_per_target"] = ", ".join(best)
    for method in ("mfr", "mfr_first_order", "mldg", "arcface:time", "cosface:time", "softmax:time"):
        curve = r.curve(method, METRIC)
        for step in (250, 1000, 4000):
            value = curve.get(step)
            f[f"curve_{method.replace(':', '_')}_{step}"] = "—" if value is None else f"{value:.3f}"
    for method, key in (("mfr", "hp"), ("mfr@arcface", "hp_two")):
        at = r.hard_pairs(method, (0.0, 1.0))
        for end, (pos, neg) in zip(("first", "last"), at):
            f[f"{key}_{end}_positives"], f[f"{key}_{end}_negatives"] = f"{pos:.0f}", f"{neg:.0f}"
    steps = [run["steps"] for run in r.runs if run["method"] == base_t]
    f["time_steps"] = f"{np.median(steps):,.0f}"
    f["time_ratio"] = f"{np.median(steps) / r.config['steps']:.1f}"
    c, ct = vs["mfr"].mean, vs_t["mfr"].mean
    f["plain"] = (
        f"At equal steps MFR's mean lead over the best pooled baseline ({base}) is {c.estimate:+.3f} "
        f"TAR@FAR=1e-2, {_says(c)} ([{c.low:+.3f}, {c.high:+.3f}]); at equal compute (the pooled "
        f"baselines trained for the time MFR took) it is {ct.estimate:+.3f} against {base_t}, {_says(ct)} "
        f"([{ct.low:+.3f}, {ct.high:+.3f}])." + ("" if r.complete else " Interim: the run is incomplete.")
    )
    done = r.finished_runs()
    f["status_line"] = (
        f"**Status: complete** ({done} runs)."
        if r.complete
        else f"**Status: in progress, {done} of {r.expected_runs} runs**: every figure below is an interim "
        "reading of the snapshot in `runs/faces-lodo-1000/`, to be replaced when the run completes."
    )
    train = sum(run_step_seconds(x) for x in r.runs)
    search = sum(cand.get("train_seconds", 0.0) for s in r.searches for cand in s["candidates"])
    f["train_search_h"] = f"{(train + search) / 3600:.1f}"
    f["machine_time"] = (
        f"Training took {train / 3600:.1f} h of machine time (the runs' steps, pauses left out) and the "
        f"search {search / 3600:.1f} h; with evaluations during training and the reports, "
        f"{r.wall_seconds / 3600:.1f} h of wall time, which also counts the pauses when other work "
        "(builds, tests, benchmarks) had the machine."
    )
    # model selection: how often MFR kept its defaults, what selecting on the target would have gained
    mfr_searches = [x for x in r.searches if x["method"] == "mfr"]
    f["mfr_defaults"] = f"{sum(x['selected'] == 0 for x in mfr_searches)} of {len(mfr_searches)}"
    gains = [
        x["candidates"][o]["target"][t] - x["candidates"][x["selected"]]["target"][t]
        for x in r.searches
        for t, o in x["oracle"].items()
    ]
    f["oracle_mean"], f["oracle_max"] = f"{np.mean(gains):.3f}", f"{max(gains):.3f}"
    # cost: median seconds per step, relative to the cheapest pooled baseline
    per_step = {m: r.seconds_per_step(m) for m in ("mfr", "mfr_first_order", "mldg")}
    pooled = min(r.seconds_per_step(m) for m in ("arcface", "cosface", "softmax"))
    f.update({f"cost_{m}": f"{x / pooled:.1f}" for m, x in per_step.items()})
    for kind in ("roc", "curves"):
        f[f"{kind}_links"] = ", ".join(f"[{t}](runs/faces-lodo-1000/{kind}_{t}.png)" for t in r.targets)
    dg = report.versus_table(r, DG_ROWS)
    dg_in = [m for m in DG_ROWS if m in r.rows()]
    f["dg_table"] = dg or (
        f"*(in progress: the rows {', '.join(dg_in)} are part of this run; none of their runs has finished yet)*"
        if dg_in
        else "*(not part of this run)*"
    )
    f["dg_reading"] = f"**Reading of the added rows.** {dg_reading(r)}" if dg else ""
    f["calibration_line"] = "; ".join(
        f"{m} {1000 * sec:.1f} ms per step" for cal in r.calibration.values() for m, sec in cal.items()
    )
    f["published_records"] = PUBLISHED_RECORDS
    names = list(r.machines)
    rows_on = {n: ", ".join(m for m in r.rows() if r.main_machine(m) == n) or "no rows yet" for n in names}
    f["machines_line"] = (
        f"{names[0]}, CPU only"
        if len(names) == 1
        else "; ".join(f"{n} ({rows_on[n]})" for n in names)
        + " (each run records its machine; the cost table compares rows with CosFace on their own machine)"
    )
    f["overview"] = report.overview(r)
    f["tar2"] = report.table(r, METRIC)
    f["paired"] = report.difference_table(r, METRIC)
    f["paired_time"] = report.equal_compute(r)
    f["selection"] = report.model_selection(r, level=3)
    f["diagnostics"] = report.diagnostics(r, level=3)
    f["cost"] = report.cost(r, level=3)
    return f


def page(run_dir: Path) -> str:
    return TEMPLATE.read_text().format(**figures(ProtocolResult.load(run_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", nargs="?", default=str(ROOT / "docs" / "runs" / "faces-lodo-1000"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="the page to write (- for stdout)")
    args = parser.parse_args(argv)
    text = page(Path(args.run_dir))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
