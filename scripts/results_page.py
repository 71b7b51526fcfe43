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


def _interval(d: Difference) -> str:
    return f"{d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def _says(d: Difference) -> str:
    if d.low > 0:
        return "an interval above 0"
    return "an interval below 0" if d.high < 0 else "an interval that includes 0"


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
