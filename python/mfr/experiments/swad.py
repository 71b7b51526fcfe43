"""SWAD (Cha et al., Domain Generalization by Seeking Flat Minima, NeurIPS 2021): dense weight
averaging inside a window that SWAD's loss-valley rule picks from the source-validation loss.

Training is cut into segments of ``interval`` steps; each segment keeps the mean of the weights
after each of its steps (dense averaging) and, at its end, the source-validation loss of the
weights there. The rule, with SWAD's defaults (``n_converge`` 3, ``n_tolerance`` 6,
``tolerance_ratio`` 0.3):

- the window opens at the first segment whose loss is the lowest of itself and the next
  ``n_converge - 1`` (the loss stopped falling); the threshold is ``(1 + tolerance_ratio)`` times
  the mean of those ``n_converge`` losses;
- each later segment joins the average while the lowest loss of it and the ``n_tolerance - 1``
  after it stays under the threshold; the first that fails closes the window (the loss left the
  valley); at the end of training the segments still waiting join the same way, over the losses
  there are.

The final weights are the equal-weight mean of the window's segment means (the mean of every
step's weights in it); BatchNorm running statistics are then re-estimated for them on training
batches, as SWAD does with ``update_bn``. A window that never opens leaves the last weights and
warns (:class:`SwadWarning`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .. import _core
from ..data import normalize_images
from ..facedata import FaceData
from ..nn import Backbone

__all__ = [
    "N_CONVERGE",
    "N_TOLERANCE",
    "TOLERANCE_RATIO",
    "VALIDATION_FRACTION",
    "Swad",
    "SwadTraining",
    "SwadWarning",
    "source_validation_loss",
]

N_CONVERGE = 3
N_TOLERANCE = 6
TOLERANCE_RATIO = 0.3
#: The share of every source domain's identities held out for the source-validation loss (as
#: DomainBed holds out 20% of each source domain); a SWAD run trains on the rest.
VALIDATION_FRACTION = 0.2
#: Training meta-batches the BatchNorm statistics of the averaged weights are re-estimated on.
BN_BATCHES = 50


class SwadWarning(_core.MfrWarning):
    """SWAD's window never opened: the run's weights are the last step's."""


@dataclass
class _Segment:
    start: int
    end: int
    loss: float
    weights: list[torch.Tensor]


class Swad:
    """The averaging state of one run over ``parameters`` (a backbone's, in its order)."""

    def __init__(self, parameters: list[torch.Tensor]) -> None:
        self.parameters = parameters
        self.sum = [torch.zeros_like(p, dtype=torch.float64) for p in parameters]
        self.count, self.start = 0, 0
        self.segments: list[_Segment] = []  # recent segments, not yet decided
        self.losses: list[tuple[int, float]] = []  # (end step, loss) of every segment, for the record
        self.average: list[torch.Tensor] | None = None
        self.averaged = 0
        self.window: tuple[int, int] | None = None
        self.threshold: float | None = None
        self.closed = False

    @torch.no_grad()
    def accumulate(self, step: int) -> None:
        """Add the weights after ``step`` to the current segment (nothing once the window closed)."""
        if self.closed:
            return
        if self.count == 0:
            self.start = step
        for s, p in zip(self.sum, self.parameters):
            s += p.detach()
        self.count += 1

    def end_segment(self, step: int, loss: float) -> None:
        """Close the current segment with the source-validation ``loss`` of the weights at ``step``."""
        if self.closed:  # the window is final; the loss is still kept for the record
            self.losses.append((step, float(loss)))
            return
        if self.count == 0:
            return
        weights = [(s / self.count).to(p.dtype) for s, p in zip(self.sum, self.parameters)]
        for s in self.sum:
            s.zero_()
        segment = _Segment(self.start, step, float(loss), weights)
        self.count = 0
        self.losses.append((step, float(loss)))
        self.segments.append(segment)
        if self.threshold is None:
            recent = self.segments[-N_CONVERGE:]
            if len(recent) < N_CONVERGE:
                return
            losses = [s.loss for s in recent]
            if min(range(N_CONVERGE), key=losses.__getitem__) != 0:
                self.segments = self.segments[-(N_CONVERGE - 1) :]
                return
            self.threshold = (1.0 + TOLERANCE_RATIO) * sum(losses) / N_CONVERGE
            self._add(recent[0])
            self.segments = recent[1:]
        self._decide(final=False)

    def _add(self, segment: _Segment) -> None:
        if self.average is None:
            self.average = [w.double().clone() for w in segment.weights]
            self.window = (segment.start, segment.end)
        else:
            for a, w in zip(self.average, segment.weights):
                a += w
            assert self.window is not None
            self.window = (self.window[0], segment.end)
        self.averaged += 1

    def _decide(self, final: bool) -> None:
        assert self.threshold is not None
        while self.segments and (final or len(self.segments) >= N_TOLERANCE):
            if min(s.loss for s in self.segments[:N_TOLERANCE]) > self.threshold:
                self.closed = True
                self.segments = []
                return
            self._add(self.segments.pop(0))

    @torch.no_grad()
    def finish(self) -> bool:
        """Put the window's mean into the parameters; False (and a warning) when it never opened."""
        if self.threshold is None:
            warnings.warn(
                f"SWAD: the source-validation loss never stopped falling over {N_CONVERGE} evaluations "
                f"({len(self.losses)} segments), so the averaging window never opened; the weights are the last step's "
                "(train longer, or evaluate more often with swad_every)",
                SwadWarning,
                stacklevel=3,
            )
            return False
        self._decide(final=True)
        assert self.average is not None
        for p, a in zip(self.parameters, self.average):
            p.copy_((a / self.averaged).to(p.dtype))
        return True

    def record(self) -> dict[str, Any]:
        """What the rule did: the window (first and last step averaged), its segment count, the threshold and every loss."""
        return {
            "window": list(self.window) if self.window is not None else None,
            "segments": self.averaged,
            "threshold": self.threshold,
            "losses": [list(x) for x in self.losses],
        }

    # ---- checkpoints -----------------------------------------------------------------------------

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"swad/sum/{i}": s for i, s in enumerate(self.sum)}
        for k, seg in enumerate(self.segments):
            tensors.update({f"swad/segment{k}/{i}": w for i, w in enumerate(seg.weights)})
        if self.average is not None:
            tensors.update({f"swad/average/{i}": a for i, a in enumerate(self.average)})
        meta = {
            "count": self.count,
            "start": self.start,
            "segments": [[s.start, s.end, s.loss] for s in self.segments],
            "losses": [list(x) for x in self.losses],
            "averaged": self.averaged,
            "window": list(self.window) if self.window is not None else None,
            "threshold": self.threshold,
            "closed": self.closed,
        }
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        n = len(self.parameters)
        self.sum = [tensors[f"swad/sum/{i}"].clone() for i in range(n)]
        self.count, self.start = int(meta["count"]), int(meta["start"])
        self.segments = [
            _Segment(int(a), int(b), float(loss), [tensors[f"swad/segment{k}/{i}"].clone() for i in range(n)])
            for k, (a, b, loss) in enumerate(meta["segments"])
        ]
        self.losses = [(int(a), float(b)) for a, b in meta["losses"]]
        self.averaged = int(meta["averaged"])
        self.average = [tensors[f"swad/average/{i}"].clone() for i in range(n)] if self.averaged else None
        self.window = (int(meta["window"][0]), int(meta["window"][1])) if meta["window"] is not None else None
        self.threshold = meta["threshold"]
        self.closed = bool(meta["closed"])


def source_validation_loss(backbone: Backbone, domains: list[tuple[torch.Tensor, torch.Tensor]], scale: float) -> float:
    """The mean over validation domains of an identification cross-entropy that every method
    shares (no head): each identity's first image is its gallery, every other image a probe
    classified by ``scale`` x its cosine to the galleries (evaluation-mode embeddings).
    ``domains``: ``(images, identity labels 0..k-1)`` per domain, k >= 2."""
    losses = []
    with torch.no_grad():
        for images, labels in domains:
            emb = F.normalize(backbone.embed(images).float())
            first = torch.zeros(int(labels.max()) + 1, dtype=torch.int64, device=labels.device)
            first.scatter_reduce_(
                0, labels, torch.arange(len(labels), device=labels.device), "amin", include_self=False
            )
            probe = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
            probe[first] = False
            logits = scale * emb[probe] @ emb[first].T
            losses.append(float(F.cross_entropy(logits, labels[probe])))
    return sum(losses) / len(losses)


class SwadTraining:
    """SWAD inside a :class:`mfr.Trainer`: the held-out source-validation images, the averaging
    state, and the seconds it adds to the run's cost (evaluations, the final BatchNorm pass)."""

    def __init__(self, backbone: Backbone, validation: FaceData, interval: int, scale: float) -> None:
        self.backbone, self.interval, self.scale = backbone, interval, scale
        self.swad = Swad(backbone.parameter_list())
        self.applied = False
        self.seconds = 0.0  # everything SWAD added: the evaluations and the BatchNorm pass
        self.bn_seconds = 0.0  # the BatchNorm pass alone
        self.evaluations = 0
        device, dtype = backbone.parameter_list()[0].device, backbone.parameter_list()[0].dtype
        index = validation.index
        self.domains: list[tuple[torch.Tensor, torch.Tensor]] = []
        for d in range(index.n_domains):
            rows = (torch.as_tensor(index.domains) == d).nonzero()[:, 0]
            ids = torch.as_tensor(index.identities)[rows]
            _, labels = torch.unique(ids, return_inverse=True)
            if int(labels.max()) < 1:
                continue  # one identity: nothing to tell apart
            raw = validation.load(rows.numpy(), backbone.input_size, backbone.in_channels)
            self.domains.append((normalize_images(raw).to(device, dtype), labels.to(device)))
        if not self.domains:
            raise _core.InvalidInputError(
                "SWAD: the source-validation identities (a fifth of each source domain's) leave no domain with 2 identities to tell apart; SWAD needs more identities per source domain"
            )

    def after_step(self, step: int, last: int) -> None:
        """Average the weights after ``step``; close a segment every ``interval`` steps and at ``last``."""
        t0 = time.perf_counter()
        self.swad.accumulate(step)
        if step % self.interval == 0 or step == last:
            was = self.backbone.training
            self.backbone.eval()
            loss = source_validation_loss(self.backbone, self.domains, self.scale)
            self.backbone.train(was)
            self.swad.end_segment(step, loss)
            self.evaluations += 1
        self.seconds += time.perf_counter() - t0

    def finish(self, batches: Iterable[list[torch.Tensor]]) -> None:
        """Put the averaged weights into the backbone and re-estimate BatchNorm on ``batches`` (each
        a list of tensors normalized together, as the method's training forward does)."""
        if self.applied:
            return
        t0 = time.perf_counter()
        if self.swad.finish():
            self.backbone.adapt_batchnorm(x for group in batches for x in group)
        self.applied = True
        self.bn_seconds = time.perf_counter() - t0
        self.seconds += self.bn_seconds

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = self.swad.state()
        extra = {"applied": self.applied, "seconds": self.seconds, "bn_seconds": self.bn_seconds}
        return tensors, {**meta, **extra, "evaluations": self.evaluations}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.swad.load_state(tensors, meta)
        self.applied, self.seconds = bool(meta["applied"]), float(meta["seconds"])
        self.bn_seconds, self.evaluations = float(meta.get("bn_seconds", 0.0)), int(meta.get("evaluations", 0))
