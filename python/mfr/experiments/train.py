"""``mfr.Trainer``: trains a backbone with one of :data:`mfr.experiments.methods.METHODS` on source domains,
driving the Rust sampler and meta-step; logs, evaluates held-out domains, checkpoints and resumes.

Checkpoints (``<out_dir>/checkpoint.safetensors``) hold the backbone's parameters and BatchNorm
buffers, the method's head, the optimizer state, the sampler position, the torch RNG state, the
step and the configuration, and are written atomically (see :mod:`mfr.experiments.checkpoint`). A run resumed
from one ends, on CPU, bit-identical to an uninterrupted run. The learning rate is a function of
the step alone (no scheduler object to restore).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, cast

import torch

from .. import _core
from ..data import normalize_images
from ..facedata import FaceData
from ..meta import domains_from_batch
from ..sampler import DomainSampler
from . import distributed as dist_utils
from . import folder_lock, swad
from .checkpoint import (
    flatten_optimizer_state,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
    unflatten_optimizer_state,
)
from .config import TrainConfig, resolve_device
from .evaluate import evaluate_domain
from .methods import Method, make_method
from .precision import LossScaler
from .search import split_validation
from .weights import CHECKPOINT_FORMAT, load_init_weights, tensors_under

__all__ = ["TrainConfig", "Trainer", "resolve_device"]

CHECKPOINT_NAME = "checkpoint.safetensors"


class Trainer:
    """Train ``config.method`` on every domain of ``data`` (the source domains).

    ``eval_sets``: held-out data evaluated every ``config.eval_every`` steps (name -> FaceData,
    every domain of each); results go to ``history`` and ``<out_dir>/eval.csv``. With ``out_dir``,
    training logs go to ``<out_dir>/train.csv`` (and TensorBoard when ``torch.utils.tensorboard``
    works), checkpoints to ``<out_dir>/checkpoint.safetensors`` every ``config.checkpoint_every``
    steps and at the end. ``fit(resume=True)`` continues from that checkpoint when it exists.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: FaceData,
        out_dir: str | os.PathLike[str] | None = None,
        eval_sets: Mapping[str, FaceData] | None = None,
        progress: bool | None = None,
    ) -> None:
        config.check()
        validation = None
        if config.swad:  # SWAD's source-validation loss needs identities no step trains on
            data, validation = split_validation(data, swad.VALIDATION_FRACTION, config.seed)
        self.config, self.data = config, data
        self.device = resolve_device(config.device)
        # torch.distributed: join torchrun's group if there is one (see mfr.experiments.distributed).
        self.distributed = dist_utils.init_from_env(self.device, config.dist_timeout)
        self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        if self.distributed and self.device == torch.device("cuda"):  # no index given: this rank's GPU
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.dtype = config.torch_dtype
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.eval_sets = dict(eval_sets or {})
        # Progress: a tqdm bar on a terminal, a plain line every PROGRESS_LINE_SECONDS when stderr is a
        # file or a pipe (a job log), nothing with progress=False.
        self.progress = (sys.stderr.isatty() if progress is None else progress) and self.rank == 0
        self.progress_lines = progress is None and not sys.stderr.isatty() and self.rank == 0
        self._queue: list[tuple[tuple[int, int], Future[torch.Tensor]]] = []
        self._pool: ThreadPoolExecutor | None = None
        n_domains = data.index.n_domains
        if n_domains < 2:
            raise _core.InvalidInputError(
                f"Trainer: training needs at least 2 source domains (meta-batches simulate a domain shift; the pooled baselines see the same batches); the data has {n_domains} ({', '.join(data.domain_names)})"
            )
        summary = data.index.summary()
        fewest = min(int(v["identities"]) for v in summary.values())
        self.ids_per_domain = min(config.ids_per_domain, fewest)
        if self.ids_per_domain < 2:
            raise _core.InvalidInputError(
                f"Trainer: every source domain needs at least 2 identities with 2 images; the smallest has {fewest}"
            )
        torch.manual_seed(config.seed)
        self.backbone = config.build_backbone(self.device)
        if config.init is not None:
            load_init_weights(self.backbone, config.init)
        self.method: Method = make_method(
            config.method,
            self.backbone,
            data.index.n_identities,
            config.meta_config(),
            config.head_scale,
            config.margin,
            dataclasses.asdict(config),
        )
        if self.method.head is not None:
            self.method.head.to(self.device, self.dtype)
        self.swad = (
            swad.SwadTraining(self.backbone, validation, config.swad_interval, config.scale)
            if validation is not None
            else None
        )
        params = self.method.parameters()
        # Every rank starts from rank 0's weights; gradients and BatchNorm statistics are averaged.
        dist_utils.broadcast_tensors(params + self.backbone.buffer_list())
        self.averager = dist_utils.GradientAverager(params, self.backbone.buffer_list())
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scaler = LossScaler(config.amp == "fp16")
        if config.tf32 and self.device.type == "cuda":
            # process-wide switches (as in torch): every CUDA matmul and convolution from here on
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.sampler = DomainSampler(
            data.index,
            ids_per_domain=self.ids_per_domain,
            split=cast(Literal["leave_one_out", "random"], config.split),  # checked by TrainConfig.check
            seed=config.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.eval_history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        # the robust step time of a finished run loaded from its checkpoint (no per-step history then)
        self.restored_step_seconds: float | None = None
        self._tb: Any = None
        self._csv_fields: dict[str, list[str]] = {}  # header of each log file, read once

    # ---- schedule --------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        c = self.config
        if c.warmup_steps and step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.schedule == "constant":
            return c.lr
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        if c.schedule == "cosine":
            return c.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return c.lr * (0.1 ** int(progress * 3 >= 1) * 0.1 ** int(progress * 3 >= 2))  # step: /10 at 1/3 and 2/3

    # ---- one step --------------------------------------------------------------------------------

    def _decode(self, mb: Any) -> torch.Tensor:
        raw = self.data.load(mb.flat_indices(), self.config.input_size, self.config.channels)
        return raw.pin_memory() if self.device.type == "cuda" else raw

    def _images_of(self, mb: Any) -> torch.Tensor:
        """The batch's uint8 images: from the prefetch queue when it decoded them (it follows the
        sampler's order exactly), else decoded now; then the queue is topped up with the next
        ``config.prefetch`` batches (decoding releases the GIL, so it overlaps the step)."""
        key = (mb.epoch, mb.number)
        ready = self._queue.pop(0) if self._queue and self._queue[0][0] == key else None
        if ready is None:
            for _, pending in self._queue:  # out of step (a resume, a reset): start afresh
                pending.cancel()
            self._queue = []
        raw = ready[1].result() if ready is not None else self._decode(mb)
        depth = self.config.prefetch if self.config.prefetch is not None else (2 if self.device.type == "cuda" else 0)
        if depth > 0:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfr-prefetch")
            while len(self._queue) < depth:
                nxt = self.sampler.upcoming(len(self._queue))
                self._queue.append(((nxt.epoch, nxt.number), self._pool.submit(self._decode, nxt)))
        return raw

    def _next_batch(self) -> Any:
        if self.sampler.position >= len(self.sampler):
            self.sampler.set_epoch(self.sampler.epoch + 1)
        mb = self.sampler[self.sampler.position]
        self.sampler.position += 1
        return mb

    def train_step(self) -> dict[str, Any]:
        c = self.config
        t0 = time.perf_counter()
        mb = self._next_batch()
        raw = self._images_of(mb)
        if c.flip:
            raw = _random_flips(raw, _core.name_seed(c.seed, ["flip", str(self.step), str(self.rank)]))
        images = normalize_images(raw.to(self.device, non_blocking=True)).to(self.dtype)
        domains = domains_from_batch(mb, images)
        ids = torch.as_tensor(mb.identities, device=self.device)
        labels = [torch.cat([ids[d], ids[d]]) for d in range(mb.n_domains)]
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        self.backbone.train()
        buffers = self.backbone.buffer_list()
        saved = [b.detach().clone() for b in buffers]  # BatchNorm statistics: committed only by a finite step
        try:
            stats = self.method.step(domains, labels, mb.splits, self.scaler.scale)
            skipped = bool(stats.pop("skipped", False))
            if skipped:
                # float16's overflow: every rank must skip, so the gradient becomes inf everywhere
                for p in self.method.parameters():
                    p.grad = torch.full_like(p, math.inf)
            elif not math.isfinite(float(stats["loss"])):
                raise _core.DataError(
                    f"Trainer: step {self.step + 1} ({c.method}): the loss is not finite ({stats['loss']}); the weights, BatchNorm statistics and "
                    "optimizer are as before the step (check the images for NaN/inf, or lower lr)"
                )
        except BaseException:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, s in zip(buffers, saved):
                    b.copy_(s)
            raise
        self.averager()  # no-op in a single process
        if self.scaler.enabled:
            finite = self.scaler.unscale(self.method.parameters())
            stats.update(loss_scale=self.scaler.scale, skipped=not finite)
            self.scaler.update(finite)
            if not finite:  # skipped as GradScaler does: no update, BatchNorm statistics as before
                self.optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for b, s in zip(buffers, saved):
                        b.copy_(s)
        if not stats.get("skipped"):
            if c.grad_clip:
                stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.method.parameters(), c.grad_clip))
            self.optimizer.step()
        self.step += 1
        dt = time.perf_counter() - t0
        self.train_seconds += dt
        row = {
            "step": self.step,
            "lr": lr,
            **stats,
            "seconds": dt,
            "images_per_s": images.shape[0] * self.world_size / dt,
        }
        self.history.append(row)
        return row

    # ---- the loop --------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to ``config.steps``; with ``resume``, first load ``<out_dir>/checkpoint.safetensors``
        when it exists. Returns the per-step history. ``out_dir`` is held for the whole fit (rank 0
        holds it; :mod:`.folder_lock`): another writer of it raises :class:`mfr.FolderInUseError`."""
        if self.out_dir is None:
            return self._fit(resume)
        with folder_lock.hold_on_main(self.out_dir, "out_dir", self.rank == 0):
            return self._fit(resume)

    def _fit(self, resume: bool) -> list[dict[str, Any]]:
        if self.out_dir is not None and self.rank == 0:
            remove_stale_temp_files(self.out_dir / CHECKPOINT_NAME)
        if resume and self.out_dir is not None and (self.out_dir / CHECKPOINT_NAME).exists():
            self.load(self.out_dir / CHECKPOINT_NAME)
        c = self.config
        self._open_logs()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.steps, initial=self.step, desc=c.method, unit="step", leave=True)
        started, first_step, last_line = time.perf_counter(), self.step, time.perf_counter()
        try:
            while self.step < c.steps:
                row = self.train_step()
                if self.swad is not None:
                    self.swad.after_step(self.step, c.steps)
                now = time.perf_counter()
                if self.progress_lines and (now - last_line >= PROGRESS_LINE_SECONDS or self.step == c.steps):
                    last_line = now
                    print(
                        _progress_line(c, self.step, row, now - started, self.step - first_step),
                        file=sys.stderr,
                        flush=True,
                    )
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        {k: f"{v:.3g}" for k, v in row.items() if k in ("loss", "loss_s", "loss_t", "images_per_s")}
                    )
                if self.step % max(1, c.log_every) == 0 or self.step == c.steps:
                    self._log(row)
                if c.eval_every and (self.step % c.eval_every == 0 or self.step == c.steps) and self.eval_sets:
                    self._evaluate_held_out()
                if self.out_dir is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
            for _, pending in self._queue:  # batches beyond the last step
                pending.cancel()
            self._queue = []
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        if self.swad is not None and self.step >= c.steps:
            self.swad.finish(self._bn_batches(swad.BN_BATCHES))
        if self.out_dir is not None:
            self.save()
        if self._tb is not None:
            self._tb.close()
        return self.history

    def _bn_batches(self, n: int) -> Any:
        """``n`` training meta-batches after the last step, each as the method's training forward
        normalizes it: every domain alone (meta-learning methods) or all together (pooled)."""
        pooled = self.method.pooled
        for _ in range(n):
            mb = self._next_batch()
            images = normalize_images(self._decode(mb).to(self.device)).to(self.dtype)
            domains = domains_from_batch(mb, images)
            yield [torch.cat(list(domains))] if pooled else list(domains)

    def _evaluate_held_out(self) -> None:
        for name, data in self.eval_sets.items():
            for domain in data.domain_names:
                res = evaluate_domain(self.backbone, data, domain, n_bootstrap=0)
                row = {
                    "step": self.step,
                    "set": name,
                    "domain": domain,
                    **{k: v["estimate"] for k, v in res["metrics"].items()},
                }
                self.eval_history.append(row)
                self._append_csv("eval.csv", row)
                if self._tb is not None:
                    for k, v in res["metrics"].items():
                        self._tb.add_scalar(f"eval/{domain}/{k}", v["estimate"], self.step)

    # ---- logs ------------------------------------------------------------------------------------

    def _open_logs(self) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("train.csv", "eval.csv"):  # drop rows a killed run wrote after its checkpoint
            path = self.out_dir / name
            if path.exists():
                with open(path, newline="") as f:
                    reader = csv.DictReader(f)
                    rows = [r for r in reader if int(r["step"]) <= self.step]
                    fields = list(reader.fieldnames or [])
                path.unlink()
                if rows:
                    self._csv_fields[name] = fields
                    with open(path, "w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=fields)
                        w.writeheader()
                        w.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            self._tb = None

    def _append_csv(self, name: str, row: Mapping[str, Any]) -> None:
        if self.out_dir is None or self.rank != 0:
            return
        path = self.out_dir / name
        new = not path.exists()
        if new:
            self._csv_fields[name] = list(row)
        elif name not in self._csv_fields:  # a file from before a resume: keep its columns
            with open(path, newline="") as r:
                self._csv_fields[name] = next(csv.reader(r))
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._csv_fields[name], extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def _log(self, row: Mapping[str, Any]) -> None:
        self._append_csv("train.csv", row)
        if self._tb is not None:
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(f"train/{k}", v, self.step)

    # ---- checkpoints -----------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model/{k}": v for k, v in self.backbone.state_dict().items()}
        if self.method.head is not None:
            tensors.update({f"head/{k}": v for k, v in self.method.head.state_dict().items()})
        opt_tensors, opt_meta = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors["rng/torch"] = torch.get_rng_state()
        swad_meta = None
        if self.swad is not None:
            swad_tensors, swad_meta = self.swad.state()
            tensors.update(swad_tensors)
        meta = {
            "format": CHECKPOINT_FORMAT,
            "mfr": _core.__version__,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "step_seconds": self.step_seconds(),
            "config": dataclasses.asdict(self.config),
            "backbone": self.backbone.config(),
            "ids_per_domain": self.ids_per_domain,
            "domains": self.data.domain_names,
            "n_classes": self.data.index.n_identities,
            "sampler": self.sampler.state_dict(),
            "world_size": self.world_size,
            "optimizer": opt_meta,
            "loss_scaler": self.scaler.state_dict(),
            "swad": swad_meta,
        }
        return tensors, meta

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        if path is None:
            if self.out_dir is None:
                raise _core.InvalidInputError("Trainer.save: no path given and the trainer has no out_dir")
            path = self.out_dir / CHECKPOINT_NAME
        tensors, meta = self.state()
        if self.world_size > 1:
            meta["samplers"] = dist_utils.gather_objects(self.sampler.state_dict())  # one per rank
        if self.rank == 0:
            save_checkpoint(path, tensors, meta)
        dist_utils.barrier()  # nobody runs ahead of a checkpoint it could need
        return Path(path)

    def load(self, path: str | os.PathLike[str]) -> None:
        """Restore a checkpoint of this same configuration (the step budget may differ)."""
        tensors, meta = load_checkpoint(path, self.device)
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise _core.DataError(
                f"Trainer.load: {path} is not an mfr training checkpoint (format {meta.get('format')!r})"
            )
        if meta["backbone"] != self.backbone.config():
            raise _core.InvalidInputError(
                f"Trainer.load: {path} holds a {meta['backbone']} backbone, this trainer builds {self.backbone.config()}"
            )
        theirs = {
            k: v
            for k, v in meta["config"].items()
            if k
            not in (
                "steps",
                "eval_every",
                "log_every",
                "checkpoint_every",
                "device",
                "dist_timeout",
                "prefetch",
                "lean",
                "tf32",
            )
        }
        ours = {k: v for k, v in dataclasses.asdict(self.config).items() if k in theirs}
        if theirs != ours:
            diff = {k: (theirs[k], ours[k]) for k in theirs if theirs[k] != ours.get(k)}
            raise _core.InvalidInputError(
                f"Trainer.load: {path} was trained with another configuration (checkpoint, this): {diff}"
            )
        if meta["domains"] != self.data.domain_names:
            raise _core.InvalidInputError(
                f"Trainer.load: {path} was trained on domains {meta['domains']}, this data has {self.data.domain_names}"
            )
        written_by = int(meta.get("world_size", 1))
        if written_by != self.world_size:
            raise _core.InvalidInputError(
                f"Trainer.load: {path} was written by {written_by} rank(s); this run has {self.world_size} (resume with the same world size)"
            )
        # Every check passed; restoring is all or nothing (a failure puts back what was there).
        before = (
            copy.deepcopy(self.backbone.state_dict()),
            copy.deepcopy(self.method.head.state_dict()) if self.method.head is not None else None,
            copy.deepcopy(self.optimizer.state_dict()),
            self.sampler.state_dict(),
        )
        try:
            self.backbone.load_state_dict(tensors_under(tensors, "model/"))
            if self.method.head is not None:
                self.method.head.load_state_dict(tensors_under(tensors, "head/"))
            self.optimizer.load_state_dict(unflatten_optimizer_state(tensors, meta["optimizer"]))
            self.sampler.load_state_dict(meta["samplers"][self.rank] if self.world_size > 1 else meta["sampler"])
        except BaseException:
            self.backbone.load_state_dict(before[0])
            if self.method.head is not None and before[1] is not None:
                self.method.head.load_state_dict(before[1])
            self.optimizer.load_state_dict(before[2])
            self.sampler.load_state_dict(before[3])
            raise
        if "loss_scaler" in meta:
            self.scaler.load_state_dict(meta["loss_scaler"])
        if self.swad is not None and meta.get("swad") is not None:
            self.swad.load_state(tensors, meta["swad"])
        torch.set_rng_state(tensors["rng/torch"].cpu())
        self.step = int(meta["step"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        saved = meta.get("step_seconds")
        self.restored_step_seconds = None if saved is None else float(saved)

    def step_seconds(self) -> float:
        """Seconds the steps cost: their robust mean times the step count. Steps that took over 3x
        the median (the process was paused, or another job shared the machine for a moment) are
        left out of the mean, so equal-compute budgets and timing tables describe the method, not
        interruptions. A run loaded from its checkpoint without training on reports what the
        checkpoint recorded; without per-step times at all, the measured total."""
        times = [float(row["seconds"]) for row in self.history if "seconds" in row]
        if not times:
            return self.train_seconds if self.restored_step_seconds is None else self.restored_step_seconds
        median = statistics.median(times)
        kept = [t for t in times if t <= 3.0 * median]
        extra = self.swad.seconds if self.swad is not None else 0.0  # SWAD's evaluations belong to its cost
        return sum(kept) / len(kept) * self.step + extra


def _random_flips(images: torch.Tensor, seed: int) -> torch.Tensor:
    """``images`` (N, C, H, W) with each mirrored left-right with probability 1/2 (seeded)."""
    mirror = torch.rand(images.shape[0], generator=torch.Generator().manual_seed(seed)) < 0.5
    return torch.where(mirror[:, None, None, None], images.flip(-1), images)


#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_LINE_SECONDS = 30.0


def _progress_line(c: TrainConfig, step: int, row: Mapping[str, Any], elapsed: float, done: int) -> str:
    """``mfr train: mfr step 120/300 (40%) loss 1.23 img/s 210 ETA 2m14s`` (float16 training adds
    ``loss scale 2048``, and ``skipped`` on a step its overflow skipped)."""
    eta = elapsed / max(1, done) * (c.steps - step)
    scale = (
        f" loss scale {row['loss_scale']:g}{' skipped' if row.get('skipped') else ''}" if "loss_scale" in row else ""
    )
    return (
        f"mfr train: {c.method} step {step}/{c.steps} ({step / c.steps:.0%}) loss {row.get('loss', math.nan):.4g} "
        f"img/s {row.get('images_per_s', math.nan):.0f} ETA {int(eta // 60)}m{int(eta % 60):02d}s{scale}"
    )
