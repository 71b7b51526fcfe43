"""Running a protocol: check the arguments, plan the target groups, then for every group the
search, and for every seed the untrained network and every row, each a named step of
:class:`_Runner` that records its runs when it ends."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from ... import _core
from ...facedata import FaceData
from .. import distributed, folder_lock
from ..checkpoint import check_output_folder
from ..config import SWAD_MIN_EVALUATIONS, TrainConfig, resolve_device
from ..evaluate import METRICS, evaluate_domain
from ..methods import METHODS
from ..rows import Row
from ..search import search_method, split_validation
from ..train import Trainer
from ..tuned import tuned_settings
from ..weights import load_init_weights
from . import records, spec, stats
from .provenance import data_fingerprint, provenance
from .records import RunRecord
from .result import ProtocolResult
from .resume import adopt_earlier

__all__ = ["run_protocol"]


def run_protocol(
    data: FaceData,
    protocol: str = "lodo",
    targets: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    methods: Sequence[str] = tuple(METHODS),
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
      this run, pauses left out (:meth:`Trainer.step_seconds`), so the count of steps depends on the
      machine and is recorded).
    - Files (``out_dir``): a run's record is appended to ``runs.jsonl`` once, when it ends; the
      header and the report are rewritten after every run (see :mod:`.records`).
    - ``out_dir`` with results already: ``resume=True`` continues (finished runs kept, interrupted
      runs continue from their checkpoints; the configuration, evaluation, search and data must be
      the same, methods and seeds may be added), ``force=True`` starts over; neither is an error.
    """
    config = config or TrainConfig()
    config.check()
    _check_arguments(
        config,
        methods,
        seeds,
        eval_seed,
        n_gallery_draws,
        search,
        search_steps,
        select_metric,
        validation_fraction,
        budget,
        stage1_fraction,
    )
    device = resolve_device(config.device)
    distributed.init_from_env(device, config.dist_timeout)
    if distributed.world_size() > 1 and device == torch.device("cuda"):  # no index given: this rank's GPU
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    plan = spec.groups(data, protocol, sources, targets)
    for src, _ in plan:
        if len(src) < 2:
            raise _core.InvalidInputError(
                f"training on {len(src)} source domain ({', '.join(src)}) cannot simulate a domain shift: every method trains on meta-batches of at least 2 source domains"
            )
    two_stage = any(Row.parse(m).two_stage for m in methods)
    all_targets = list(dict.fromkeys(t for _, ts in plan for t in ts))
    time_rows = spec.time_rows(methods) if budget == "time" else []
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
    result.stage1_fraction = stage1_fraction if two_stage else None
    result.provenance = provenance()
    result.fingerprint = data_fingerprint(data)
    result.expected_runs = seeds * len(plan) * (len(methods) + len(time_rows))
    if result.command is None:
        import shlex
        import sys

        result.command = " ".join(shlex.quote(a) for a in sys.argv) if sys.argv and sys.argv[0] else None
    main = distributed.is_main()  # under torchrun every rank trains and evaluates; rank 0 writes
    out = Path(out_dir) if out_dir is not None else None
    with contextlib.ExitStack() as held:
        if out is not None:
            check_output_folder(out, "out_dir")
            # held from the resume decision to the end, by rank 0 (every rank learns the outcome)
            held.enter_context(folder_lock.hold_on_main(out, "out_dir", main))
            adopt_earlier(result, out, resume=resume, force=force)
            # every rank reads the folder before rank 0 writes it (runner.start): a rank that read it
            # after would find this run's own results and refuse them
            distributed.barrier()
        # the methods a setting is chosen for: a two-stage row's parts, each once
        parts = list(dict.fromkeys(part for m in methods for part in Row.parse(m).parts))
        if result.tuned:
            for _, tgts in plan:
                for method in parts:
                    key, setting = spec.settings_key(method, tgts), tuned_settings(method, config, fixed)
                    if result.settings.setdefault(key, setting) != setting:  # resumed under other fixed fields
                        raise _core.InvalidInputError(
                            f"cannot resume {out_dir}: {method} trained with the tuned setting {result.settings[key]}, now {setting}"
                        )
        runner = _Runner(
            result,
            config,
            out,
            main,
            device,
            resume,
            progress,
            log if (log is not None and main) else None,
            {"seed": eval_seed, "n_bootstrap": n_bootstrap, "bn": bn, "n_gallery_draws": n_gallery_draws},
            stage1_fraction,
        )
        runner.start()
        if search:
            for src, tgts in plan:
                runner.search(data, src, tgts, parts, search, search_steps, select_metric, validation_fraction)
        for seed in range(seeds):
            for src, tgts in plan:
                source_data = data.subset(src)
                target_data = {t: data.subset([t]) for t in tgts}
                if not runner.have("untrained", seed, tgts):
                    runner.evaluate_untrained(seed, src, target_data)
                for name in [*methods, *time_rows]:
                    if not runner.have(name, seed, tgts):
                        runner.train_row(Row.parse(name), seed, src, source_data, target_data)
        if "cosface" in result.rows() and main and distributed.world_size() == 1:
            # the cost table compares every row with CosFace on the machine that timed it
            here = [r for r in result.runs if result.run_machine(r) == result.machine and r["method"] != "untrained"]
            if here and not any(r["method"] == "cosface" for r in here):
                src, tgts = plan[0]
                runner.calibrate("cosface", 0, tgts, data.subset(src))
        result.complete = True
        runner.save()
        if out is not None and main:
            result.plot_roc(out)
            result.plot_curves(out)
        return result


def _check_arguments(
    config: TrainConfig,
    methods: Sequence[str],
    seeds: int,
    eval_seed: int,
    n_gallery_draws: int,
    search: int,
    search_steps: int | None,
    select_metric: str,
    validation_fraction: float,
    budget: str,
    stage1_fraction: float,
) -> None:
    spec.check_methods(methods)
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
    two_stage = any(Row.parse(m).two_stage for m in methods)
    if two_stage and not 0 < stage1_fraction < 1:
        raise _core.InvalidInputError(f"stage1_fraction must lie in (0, 1), got {stage1_fraction}")
    if two_stage and config.steps < 2:
        raise _core.InvalidInputError(f"two-stage methods need at least 2 steps, got {config.steps}")


class _Runner:
    """The steps of a protocol, each named: the search of a target group, the untrained network's
    evaluation, a row's training and evaluation; and keeping the result on disk after each."""

    def __init__(
        self,
        result: ProtocolResult,
        config: TrainConfig,
        out: Path | None,
        main: bool,
        device: torch.device,
        resume: bool,
        progress: bool | None,
        log: Callable[[str], None] | None,
        eval_kw: dict[str, Any],
        stage1_fraction: float,
    ) -> None:
        self.result, self.config, self.out, self.device = result, config, out, device
        # every rank trains in the run folders (checkpoints, resume); rank 0 alone writes the result
        self.writes = out if main else None
        self.resume, self.progress, self.eval_kw = resume, progress, eval_kw
        self.stage1_fraction = stage1_fraction
        self.say: Callable[[str], None] = log if log is not None else (lambda _: None)
        self.start_time = time.perf_counter() - result.wall_seconds
        self.done = result.finished_runs()

    def start(self) -> None:
        """Write the folder afresh: the header and every run taken over (a resumed run's file
        rewritten clean, in its compression; a schema-1 results.json converted)."""
        if self.writes is not None:
            compress = (self.writes / records.RUNS_GZ).exists()
            self.result.wall_seconds = time.perf_counter() - self.start_time
            self.result.save(self.writes, compress=compress)

    def save(self, finished: Sequence[RunRecord] = ()) -> None:
        """Append ``finished`` runs to the runs file, then rewrite the header and the report."""
        self.result.wall_seconds = time.perf_counter() - self.start_time
        if self.writes is not None:
            records.append_runs(self.writes, finished)
            self.result.save_header(self.writes)

    def have(self, name: str, seed: int, tgts: Sequence[str]) -> bool:
        return all(
            any(r["method"] == name and r["target"] == t and r["seed"] == seed for r in self.result.runs) for t in tgts
        )

    def run_dir(self, name: str, tgts: Sequence[str], seed: int) -> Path | None:
        return self.out / "runs" / f"{name.replace(':', '-')}-{'+'.join(tgts)}-seed{seed}" if self.out else None

    def fit(
        self, cfg: TrainConfig, train: FaceData, where: Path | None, eval_sets: dict[str, FaceData] | None = None
    ) -> Trainer:
        trainer = Trainer(
            cfg, train, out_dir=where, progress=self.progress, eval_sets=eval_sets if cfg.eval_every else None
        )
        trainer.fit(resume=self.resume)
        return trainer

    def config_of(self, method: str, seed: int, tgts: Sequence[str], **over: Any) -> TrainConfig:
        """``method``'s configuration for one seed and target group: its selected or tuned setting."""
        setting = self.result.settings.get(spec.settings_key(method, tgts), {})
        return dataclasses.replace(self.config, method=method, seed=seed, **setting, **over)

    def search(
        self,
        data: FaceData,
        src: list[str],
        tgts: list[str],
        parts: Sequence[str],
        n: int,
        search_steps: int | None,
        select_metric: str,
        validation_fraction: float,
    ) -> None:
        """Select a setting for every method of one target group by training-domain validation."""
        result, eval_seed = self.result, int(self.eval_kw["seed"])
        source_data = data.subset(src)
        target_data = {t: data.subset([t]) for t in tgts}
        train, validation = split_validation(source_data, validation_fraction, eval_seed)
        for method in parts:
            key = spec.settings_key(method, tgts)
            if key in result.settings:
                continue
            steps = search_steps or self.config.steps
            base_cfg = dataclasses.replace(self.config, steps=steps, seed=0, eval_every=0, init=None)
            found = search_method(
                method,
                base_cfg,
                train,
                validation,
                target_data,
                n,
                seed=eval_seed,
                select_metric=select_metric,
                eval_seed=eval_seed,
                fit=lambda c, d: self.fit(c, d, None),
            )
            found["targets"] = list(tgts)
            result.searches.append(found)
            result.settings[key] = found["candidates"][found["selected"]]["setting"]
            self.save()
            sel = found["candidates"][found["selected"]]
            self.say(
                f"search {method:<16} {'+'.join(tgts)}: {n} settings x {steps} steps; selected {sel['setting'] or 'defaults'} (validation {select_metric} {sel['validation']:.3f})"
            )

    def evaluate_untrained(self, seed: int, src: list[str], target_data: dict[str, FaceData]) -> None:
        """The seed's initialisation (or ``init`` weights), evaluated on every target."""
        torch.manual_seed(seed)
        untrained = self.config.build_backbone(self.device)
        if self.config.init is not None:
            load_init_weights(untrained, self.config.init)
        new = []
        for t, td in target_data.items():
            res = evaluate_domain(untrained, td, 0, **self.eval_kw)
            new.append(
                cast(
                    RunRecord,
                    {
                        "method": "untrained",
                        "target": t,
                        "seed": seed,
                        "sources": src,
                        **res,
                        "train_seconds": 0.0,
                        "steps": 0,
                        "machine": self.result.machine,
                    },
                )
            )
        self.result.runs.extend(new)
        self.save(new)

    def row_config(self, row: Row, seed: int, tgts: list[str], source_data: FaceData) -> tuple[TrainConfig, float]:
        """The configuration a row trains last, and the step seconds of a first stage it ran."""
        config = self.config
        if row.budget == "time":
            mfr_run = next(
                r for r in self.result.runs if r["method"] == "mfr" and r["seed"] == seed and r["target"] == tgts[0]
            )
            at_steps = str(row.at_steps)
            own = next(
                r for r in self.result.runs if r["method"] == at_steps and r["seed"] == seed and r["target"] == tgts[0]
            )
            mfr_seconds = self.mfr_step_seconds(mfr_run, seed, tgts, source_data)
            steps = max(1, round(mfr_seconds / stats.run_seconds_per_step(own)))
            steps = int(distributed.gather_objects(steps)[0])  # every rank trains rank 0's budget
            if row.swad:  # SWAD's rule needs 3 evaluations; a budget below that gets them (tiny runs only)
                steps = max(steps, SWAD_MIN_EVALUATIONS)
            return self.config_of(
                row.method,
                seed,
                tgts,
                steps=steps,
                warmup_steps=min(config.warmup_steps, steps - 1),
                **row.config_fields(),
            ), 0.0
        if row.stage1 is not None:
            s1 = max(1, round(self.stage1_fraction * config.steps))
            stage1_dir = self.run_dir(f"{row.stage1}-stage1", tgts, seed)
            stage1 = self.fit(self.config_of(row.stage1, seed, tgts, steps=s1), source_data, stage1_dir)
            init = (
                stage1.save(stage1_dir / "stage1.safetensors")
                if stage1_dir is not None
                else _temporary_checkpoint(stage1)
            )
            rest = config.steps - s1
            cfg = self.config_of(
                row.method,
                seed,
                tgts,
                steps=rest,
                init=str(init),
                warmup_steps=min(config.warmup_steps, rest - 1),
                **row.config_fields(),
            )
            return cfg, stage1.step_seconds()
        return self.config_of(row.method, seed, tgts, **row.config_fields()), 0.0

    def mfr_step_seconds(self, mfr_run: RunRecord, seed: int, tgts: list[str], source_data: FaceData) -> float:
        """The seconds MFR's run trained for, on this machine: its own where it ran here; else its
        step count times MFR's seconds per step measured here (:meth:`calibrate`), so that an
        equal-compute row added on another machine gets the budget this machine allows."""
        if self.result.run_machine(mfr_run) == self.result.machine:
            return stats.run_step_seconds(mfr_run)
        return self.calibrate("mfr", seed, tgts, source_data) * max(1, mfr_run.get("steps") or 1)

    def calibrate(self, method: str, seed: int, tgts: list[str], source_data: FaceData) -> float:
        """``method``'s seconds per step on this machine, measured once (recorded in ``calibration``):
        the median step of a short run after its first steps (start-up costs left out)."""
        here = self.result.calibration.setdefault(self.result.machine, {})
        if method not in here:
            cfg = self.config_of(method, seed, tgts, steps=CALIBRATION_STEPS, eval_every=0, checkpoint_every=0)
            trainer = Trainer(cfg, source_data, out_dir=None, progress=False)
            trainer.fit()
            times = [float(h["seconds"]) for h in trainer.history[CALIBRATION_SKIP:]]
            # under torchrun every rank calibrates in step; all take rank 0's figure
            here[method] = float(distributed.gather_objects(statistics.median(times))[0])
            self.save()
            self.say(f"calibration: {method} takes {1000 * here[method]:.1f} ms per step on {self.result.machine}")
        return here[method]

    def train_row(
        self, row: Row, seed: int, src: list[str], source_data: FaceData, target_data: dict[str, FaceData]
    ) -> None:
        """Train one row for one seed and target group, evaluate it on every target, record it."""
        name, tgts = str(row), list(target_data)
        t0 = time.perf_counter()
        cfg, stage_seconds = self.row_config(row, seed, tgts, source_data)
        trainer = self.fit(cfg, source_data, self.run_dir(name, tgts, seed), eval_sets=target_data)
        if row.two_stage and self.out is None:  # the stage-1 weights were a temporary file
            shutil.rmtree(Path(str(cfg.init)).parent, ignore_errors=True)
        seconds = time.perf_counter() - t0
        self.done += 1
        offset = (
            self.config.steps - cfg.steps if row.two_stage else 0
        )  # two-stage: steps count from the pooled stage's start
        curve = [
            {**{k: v for k, v in entry.items() if k in _CURVE_KEYS}, "step": entry["step"] + offset}
            for entry in trainer.history[:: max(1, self.config.log_every)]
        ]
        new, cells = [], []
        for t, td in target_data.items():
            res = evaluate_domain(trainer.backbone, td, 0, **self.eval_kw)
            new.append(
                cast(
                    RunRecord,
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
                            {**{k: v for k, v in e.items() if k in METRICS}, "step": e["step"] + offset}
                            for e in trainer.eval_history
                            if e["domain"] == t
                        ],
                        "machine": self.result.machine,
                        **({"swad": trainer.swad.swad.record()} if trainer.swad is not None else {}),
                    },
                )
            )
            m = res["metrics"]
            cells.append(
                f"{t}: TAR@1e-2 {m['tar@far=1e-2']['estimate']:.3f} AUC {m['auc']['estimate']:.3f} rank-1 {m['rank1']['estimate']:.3f}"
            )
        self.result.runs.extend(new)
        self.save(new)
        self.say(
            f"[{self.done}/{self.result.expected_runs}] seed {seed} {name:<16} {seconds:6.1f} s  " + "; ".join(cells)
        )


#: A calibration run's steps, and the first ones its median leaves out.
CALIBRATION_STEPS = 40
CALIBRATION_SKIP = 5

#: Training-log columns kept with a run (per ``log_every`` steps): losses and MFR's hard-pair counts.
_CURVE_KEYS = ("step", "loss", "loss_s", "loss_t", "hard_positives", "hard_negatives", "lr")


def _temporary_checkpoint(trainer: Trainer) -> Path:
    import tempfile

    return trainer.save(Path(tempfile.mkdtemp(prefix="mfr-stage1-")) / "stage1.safetensors")
