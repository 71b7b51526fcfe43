"""Shared timing helper of the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _sync() -> None:
    # CUDA work is asynchronous: wait for it so a timing covers the kernels, not their launch.
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_of(fn: Callable[[], Any], repeats: int, warmup: bool = False) -> float:
    """The fastest of ``repeats`` timed calls (after one untimed call when ``warmup``)."""
    if warmup:
        fn()
        _sync()
    best = float("inf")
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best
