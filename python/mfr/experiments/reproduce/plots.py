"""The protocol's figures: ROC curves and learning curves per target (PNG and SVG, with matplotlib
when it is installed), every row in a style of its own."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..rows import Row
from .spec import METRIC_SHORT

if TYPE_CHECKING:
    from .result import ProtocolResult

__all__ = ["line_styles", "plot_curves", "plot_roc"]

# matplotlib's tab20 palette (its even entries are the default tab10 cycle); plain hex so that
# styles need no matplotlib
_TAB20 = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
    "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5",
)  # fmt: skip


def line_styles(res: ProtocolResult) -> dict[str, tuple[str, str]]:
    """Every row's (colour, line style) in the plots: the untrained network black and dashed,
    each trained method its own colour (tab10, tab20 past ten methods), and an equal-compute
    row ``<method>:time`` its method's colour, dash-dotted: no two rows alike up to 20 methods."""
    rows = {m: Row.parse(m) for m in res.rows()}
    base = [m for m, row in rows.items() if not row.untrained and row.budget == "steps"]
    step = 2 if len(base) <= len(_TAB20) // 2 else 1  # tab20's even entries are tab10
    colors = {m: _TAB20[(step * k) % len(_TAB20)] for k, m in enumerate(base)}
    styles = {"untrained": ("#000000", "--")}
    for m in res.rows():
        if m in colors:
            styles[m] = (colors[m], "-")
        elif rows[m].budget == "time":
            styles[m] = (colors.get(str(Row(rows[m].method, rows[m].stage1)), "#999999"), "-.")
    return styles


def plot_roc(res: ProtocolResult, out_dir: str | os.PathLike[str], seed: int = 0) -> list[Path]:
    """One ROC figure per target (log FAR axis, PNG and SVG): every method's curve for seed
    ``seed`` with its identity-bootstrap 95% band (TAR at a grid of FARs), and the other seeds'
    curves as thin lines of the same colour."""
    plt = _figure()
    if plt is None:
        return []
    written = []
    styles = line_styles(res)
    for target in res.targets:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for method in res.rows():
            color, ls = styles[method]
            for r in res.runs:
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
        written.append(_save(plt, fig, out_dir, "roc", target))
    return written


def plot_curves(
    res: ProtocolResult, out_dir: str | os.PathLike[str], seed: int = 0, metric: str = "tar@far=1e-2"
) -> list[Path]:
    """Per target, with runs that evaluated during training (``eval_every``): ``metric`` on the
    target over steps for every method, and MFR-style methods' hard-pair counts per step."""
    plt = _figure()
    if plt is None:
        return []
    written = []
    styles = line_styles(res)
    for target in res.targets:
        runs = [
            r
            for r in res.runs
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
        order = [m for m in res.rows() if m in handles]
        fig.tight_layout(rect=(0, 0, 0.86, 1))
        fig.legend([handles[m] for m in order], order, loc="center left", bbox_to_anchor=(0.86, 0.5), fontsize=7)
        written.append(_save(plt, fig, out_dir, "curves", target))
    return written


def _save(plt: Any, fig: Any, out_dir: str | os.PathLike[str], kind: str, target: str) -> Path:
    """Write ``fig`` as ``<kind>_<target>.png`` and ``.svg`` (vector format for papers), the
    target's name made safe for a file name, and close it."""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in target)
    path = Path(out_dir) / f"{kind}_{name}.png"
    fig.savefig(path, dpi=110)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return path


def _figure() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
