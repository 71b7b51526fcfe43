"""GFR-style protocols: train every method on source domains, evaluate on unseen target domains.

- ``lodo`` (as the paper's GFR-R): each target domain in turn is held out; every method trains on
  all the other domains and is evaluated on it.
- ``multi`` (as GFR-V): every method trains once on the named source domains and is evaluated on
  each named target domain.

Every method gets the same backbone, data, meta-batches and step budget (:class:`TrainConfig`);
``seeds`` repeats everything with seeds 0..K-1. The untrained network (the seed's initialisation)
is evaluated too, as row ``untrained``. Results: ``results.json`` (every run, its metrics with
CIs, ROC points, timings; rewritten after each run so an interrupted protocol keeps what it
finished), ``results.md`` (one method x target table per metric: mean over seeds and the mean
bootstrap CI) and ``roc_<target>.png`` (matplotlib, when installed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _core
from . import distributed
from .evaluate import METRICS, evaluate_domain
from .facedata import FaceData
from .methods import METHODS
from .train import TrainConfig, Trainer, resolve_device

__all__ = ["ProtocolResult", "run_protocol", "METRIC_TITLES"]

METRIC_TITLES = {
    "tar@far=1e-3": "TAR @ FAR=1e-3",
    "tar@far=1e-2": "TAR @ FAR=1e-2",
    "auc": "AUC",
    "eer": "EER (lower is better)",
    "accuracy": "Verification accuracy (10-fold, balanced pairs)",
    "rank1": "Rank-1 identification (1 gallery + 1 probe per identity)",
}


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


@dataclass
class ProtocolResult:
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

    def rows(self) -> list[str]:
        return ["untrained"] + [m for m in self.methods]

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """``summary[method][target][metric]`` = mean, sd over seeds, mean CI bounds, n_seeds."""
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for method in self.rows():
            for target in self.targets:
                runs = [r for r in self.runs if r["method"] == method and r["target"] == target]
                if not runs:
                    continue
                cell = out.setdefault(method, {}).setdefault(target, {})
                for key in METRICS:
                    est = np.array([r["metrics"][key]["estimate"] for r in runs], dtype=float)
                    low = np.array([r["metrics"][key]["low"] for r in runs], dtype=float)
                    high = np.array([r["metrics"][key]["high"] for r in runs], dtype=float)
                    cell[key] = {
                        "mean": float(np.mean(est)),
                        "sd": float(np.std(est, ddof=1)) if len(est) > 1 else 0.0,
                        "low": float(np.mean(low)),
                        "high": float(np.mean(high)),
                        "n_seeds": len(est),
                    }
        return out

    def table(self, metric: str = "tar@far=1e-2") -> str:
        """A Markdown method x target table of one metric: ``mean [low, high]`` (and ``sd`` over
        seeds when there are several), with the mean over targets in the last column."""
        s = self.summary()
        head = "| method | " + " | ".join(self.targets) + " | mean |"
        lines = [f"**{METRIC_TITLES.get(metric, metric)}**", "", head, "|" + "---|" * (len(self.targets) + 2)]
        for method in self.rows():
            if method not in s:
                continue
            cells, means = [], []
            for t in self.targets:
                c = s[method].get(t, {}).get(metric)
                if c is None:
                    cells.append("—")
                    continue
                sd = f" ±{c['sd']:.3f}" if c["n_seeds"] > 1 else ""
                cells.append(f"{c['mean']:.3f}{sd} [{c['low']:.3f}, {c['high']:.3f}]")
                means.append(c["mean"])
            avg = f"{np.mean(means):.3f}" if len(means) == len(self.targets) else "—"
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {avg} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        c = self.config
        parts = [
            f"# {self.protocol} protocol on {self.data}",
            "",
            f"Backbone {c['backbone']} ({c['input_size']}x{c['input_size']}, {c['channels']} channel(s)), {c['steps']} steps, "
            f"B={c['ids_per_domain']} identities per domain, seeds: {self.seeds}; wall time {self.wall_seconds:.0f} s on "
            f"{self.hardware.get('gpu') or str(self.hardware.get('cpu_count')) + ' CPU cores'} ({self.hardware.get('torch_threads')} torch threads).",
            "Cells: mean over seeds [mean 95% bootstrap CI] (± sd over seeds when several).",
        ]
        if self.command:
            parts += ["", f"Command: `{self.command}`"]
        for metric in METRICS:
            parts += ["", self.table(metric)]
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, out_dir: str | os.PathLike[str]) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".results.json.tmp"
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, out / "results.json")
        (out / "results.md").write_text(self.markdown())

    def plot_roc(self, out_dir: str | os.PathLike[str], seed: int = 0) -> list[Path]:
        """One ROC figure per target (log FAR axis), every method of seed ``seed``."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return []
        written = []
        for target in self.targets:
            fig, ax = plt.subplots(figsize=(5, 4))
            for r in self.runs:
                if r["target"] == target and r["seed"] == seed:
                    fpr, tpr = np.asarray(r["roc"]["fpr"]), np.asarray(r["roc"]["tpr"])
                    keep = fpr > 0
                    ax.plot(fpr[keep], tpr[keep], label=r["method"], lw=1.2, ls="--" if r["method"] == "untrained" else "-")
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("FAR")
            ax.set_ylabel("TAR")
            ax.set_title(f"unseen target: {target}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = Path(out_dir) / f"roc_{''.join(ch if ch.isalnum() or ch in '-_.' else '_' for ch in target)}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
        return written


def _groups(data: FaceData, protocol: str, sources: Sequence[str] | None, targets: Sequence[str] | None) -> list[tuple[list[str], list[str]]]:
    names = data.domain_names
    if len(names) < 2:
        raise _core.InvalidInputError(f"the data has {len(names)} domain ({', '.join(names)}); a domain-generalization protocol needs at least 2 (folders <root>/<domain>/<identity>/<image>)")
    tgt = [names[data.domain_number(t)] for t in targets] if targets else None
    src = [names[data.domain_number(s)] for s in sources] if sources else None
    if protocol == "lodo":
        if src:
            raise _core.InvalidInputError("protocol lodo trains on every domain but the target; --sources is for protocol multi")
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
) -> ProtocolResult:
    """Run ``protocol`` for every method and seed; see the module docstring."""
    config = config or TrainConfig()
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise _core.InvalidInputError(f"unknown method(s) {', '.join(map(repr, unknown))}; available: {', '.join(METHODS)}")
    if not methods:
        raise _core.InvalidInputError("no methods given")
    if seeds < 1:
        raise _core.InvalidInputError(f"seeds must be >= 1, got {seeds}")
    device = resolve_device(config.device)
    distributed.init_from_env(device, config.dist_timeout)
    if distributed.world_size() > 1 and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    groups = _groups(data, protocol, sources, targets)
    for src, _ in groups:
        if len(src) < 2:
            raise _core.InvalidInputError(
                f"training on {len(src)} source domain ({', '.join(src)}) cannot simulate a domain shift: every method trains on meta-batches of at least 2 source domains"
            )
    all_targets = list(dict.fromkeys(t for _, ts in groups for t in ts))
    result = ProtocolResult(protocol, data.name, dataclasses.asdict(config), list(methods), all_targets, seeds, command=command)
    result.hardware["world_size"] = distributed.world_size()
    say = log if (log is not None and distributed.is_main()) else (lambda _: None)
    main = distributed.is_main()  # under torchrun every rank trains and evaluates; rank 0 writes
    start = time.perf_counter()
    total = seeds * len(groups) * len(methods)
    done = 0
    for seed in range(seeds):
        for src, tgts in groups:
            source_data = data.subset(src)
            target_data = {t: data.subset([t]) for t in tgts}
            torch.manual_seed(seed)
            untrained = config.build_backbone(device)
            for t, td in target_data.items():
                res = evaluate_domain(untrained, td, 0, seed=seed, n_bootstrap=n_bootstrap, bn=bn)
                result.runs.append({"method": "untrained", "target": t, "seed": seed, "sources": src, **res, "train_seconds": 0.0, "steps": 0})
            for method in methods:
                cfg = dataclasses.replace(config, method=method, seed=seed)
                run_dir = Path(out_dir) / "runs" / f"{method}-{'+'.join(tgts)}-seed{seed}" if out_dir is not None else None
                trainer = Trainer(cfg, source_data, out_dir=run_dir, progress=progress)
                t0 = time.perf_counter()
                history = trainer.fit()
                seconds = time.perf_counter() - t0
                done += 1
                cells = []
                for t, td in target_data.items():
                    res = evaluate_domain(trainer.backbone, td, 0, seed=seed, n_bootstrap=n_bootstrap, bn=bn)
                    result.runs.append(
                        {"method": method, "target": t, "seed": seed, "sources": src, **res, "train_seconds": seconds, "steps": trainer.step, "final_loss": history[-1]["loss"] if history else None}
                    )
                    m = res["metrics"]
                    cells.append(f"{t}: TAR@1e-2 {m['tar@far=1e-2']['estimate']:.3f} AUC {m['auc']['estimate']:.3f} rank-1 {m['rank1']['estimate']:.3f}")
                say(f"[{done}/{total}] seed {seed} {method:<16} {seconds:6.1f} s  " + "; ".join(cells))
                result.wall_seconds = time.perf_counter() - start
                if out_dir is not None and main:
                    result.save(out_dir)
    result.wall_seconds = time.perf_counter() - start
    if out_dir is not None and main:
        result.save(out_dir)
        result.plot_roc(out_dir)
    return result
