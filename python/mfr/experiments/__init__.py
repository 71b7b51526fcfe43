"""The experiment harness: training (:class:`TrainConfig`, :class:`Trainer`, the methods),
evaluation on held-out domains, the leave-one-domain-out protocols with model search, checkpoints,
distributed runs and the ``mfr`` command line.

It is built on the library (``mfr.data``, ``mfr.sampler``, ``mfr.meta``, ``mfr.nn``,
``mfr.losses``, ``mfr.metrics``), which never imports it: ``import mfr`` loads the harness on the
first use of one of its names (``mfr.Trainer``, ``mfr.experiments.train``, ...).
"""

from __future__ import annotations

from . import checkpoint, config, distributed, evaluate, export, methods, reproduce, rows, search, train, tuned, weights
from .config import TrainConfig
from .reproduce import ProtocolResult, run_protocol
from .train import Trainer

__all__ = [
    "ProtocolResult",
    "TrainConfig",
    "Trainer",
    "checkpoint",
    "config",
    "distributed",
    "evaluate",
    "export",
    "methods",
    "reproduce",
    "rows",
    "run_protocol",
    "search",
    "train",
    "tuned",
    "weights",
]
