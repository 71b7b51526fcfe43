"""Data-parallel MFR training on ``torch.distributed`` (torchrun, NCCL on CUDA, gloo on CPU).

Each rank draws its own meta-batches from the sampler's rank-sharded stream (batch i of the
single-process stream goes to rank i mod W), runs the Rust meta-step, then
:class:`GradientAverager` averages every parameter's ``.grad`` *and* every BatchNorm running
statistic over the ranks in a few flat buckets (one ``all_reduce`` per bucket, not one per
tensor) before the optimizer steps. Averaging the running statistics keeps them identical on every
rank; since all ranks start from the same statistics and the update is linear, the average equals
one momentum update with the ranks' mean batch statistics.

Launch: ``torchrun --nproc_per_node=K -m mfr train ...`` (or ``reproduce``); multi-node through
torchrun's rendezvous. :func:`init_from_env` joins the process group torchrun describes (or uses
one already initialised). Only rank 0 logs, prints and writes checkpoints and results; every rank
resumes from the same checkpoint (each restores its own sampler state from it).

Failures: a collective that fails or times out (a peer died, raised, or stopped answering for
``timeout`` seconds) raises :class:`DistributedError` naming the rank and the operation, on every
surviving rank; torchrun then stops the job. The last complete checkpoint stays on disk.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

from .. import _core

__all__ = [
    "DistributedError",
    "GradientAverager",
    "all_gather_rows",
    "broadcast_tensors",
    "gather_objects",
    "init_from_env",
    "is_main",
    "rank",
    "world_size",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 300.0
BUCKET_BYTES = 25 << 20

_created_here = False  # whether init_from_env created the process group (shutdown leaves others' alone)


#: A collective failed: a peer rank died, raised, or stopped answering within the timeout.
DistributedError = _core.DistributedError


def init_from_env(device: torch.device | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1 with
    ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with NCCL for CUDA devices and gloo otherwise.
    Returns whether training is distributed (a group was already initialised, or now is)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch was built without torch.distributed")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE > 1 but {', '.join(missing)} is not set (launch with torchrun)")
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    global _created_here
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        _created_here = True
    except Exception as e:  # rendezvous failures come as several exception types
        raise DistributedError(
            f"could not join the process group ({backend}, rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}): {e}"
        ) from e
    return True


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def _collective(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DistributedError:
        raise
    except Exception as e:  # gloo/NCCL report dead peers and timeouts as RuntimeError & co.
        raise DistributedError(
            f"rank {rank()} of {world_size()}: {what} failed: another rank stopped, raised or did not answer within the timeout ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e


class GradientAverager:
    """Averages the ``.grad`` of ``params`` and the values of ``buffers`` over all ranks, in flat
    buckets of about ``bucket_bytes`` each (a missing gradient counts as zeros)."""

    def __init__(
        self, params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor] = (), bucket_bytes: int = BUCKET_BYTES
    ) -> None:
        self.params, self.buffers = list(params), [b for b in buffers if b.is_floating_point()]
        self.bucket_bytes = bucket_bytes
        self.seconds = 0.0

    def _buckets(self, tensors: list[torch.Tensor]) -> list[list[int]]:
        buckets: list[list[int]] = []
        size = 0
        for i, t in enumerate(tensors):
            nbytes = t.numel() * t.element_size()
            if (
                not buckets
                or size + nbytes > self.bucket_bytes
                or t.dtype != tensors[buckets[-1][0]].dtype
                or t.device != tensors[buckets[-1][0]].device
            ):
                buckets.append([])
                size = 0
            buckets[-1].append(i)
            size += nbytes
        return buckets

    def __call__(self) -> None:
        import time

        w = world_size()
        if w == 1:
            return
        t0 = time.perf_counter()
        tensors: list[torch.Tensor] = []
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            tensors.append(p.grad)
        tensors += self.buffers
        for bucket in self._buckets(tensors):
            flat = torch.cat([tensors[i].reshape(-1) for i in bucket])

            def reduce(flat: torch.Tensor = flat) -> object:
                return dist.all_reduce(flat)

            _collective("all_reduce of gradients and BatchNorm statistics", reduce)
            flat /= w
            offset = 0
            for i in bucket:
                n = tensors[i].numel()
                tensors[i].copy_(flat[offset : offset + n].view_as(tensors[i]))
                offset += n
        self.seconds += time.perf_counter() - t0


def broadcast_tensors(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Make ``tensors`` on every rank equal to rank ``src``'s (in place)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in tensors:

            def send(t: torch.Tensor = t) -> object:
                return dist.broadcast(t.data, src)

            _collective("broadcast of the initial parameters", send)


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (N_r, ...) along dim 0, in rank order (N_r may differ)."""
    w = world_size()
    if w == 1:
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(w)]
    _collective("all_gather of row counts", lambda: dist.all_gather(sizes, n))
    top = int(max(int(s) for s in sizes))
    padded = torch.zeros((top, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in range(w)]
    _collective("all_gather of embeddings", lambda: dist.all_gather(parts, padded))
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    w = world_size()
    if w == 1:
        return [obj]
    out: list[Any] = [None] * w
    _collective("all_gather_object", lambda: dist.all_gather_object(out, obj))
    return out


def exit_after_failure(code: int) -> NoReturn:
    """End this process after a :class:`DistributedError`, skipping interpreter clean-up: tearing
    down a process group whose peer is gone can abort the process (gloo's destructor), which would
    replace ``code`` by SIGABRT."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier() -> None:
    if world_size() > 1:
        _collective("barrier", dist.barrier)


def shutdown() -> None:
    """Leave the process group :func:`init_from_env` created, cleanly (all ranks wait for each
    other first), so no rank exits while a peer still talks to it. A group the caller created
    is left to the caller."""
    global _created_here
    if _created_here and dist.is_available() and dist.is_initialized():
        try:
            if world_size() > 1:
                dist.barrier()
        finally:
            dist.destroy_process_group()
            _created_here = False
