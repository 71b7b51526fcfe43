"""The domain-level sampler: MFR's meta-batches (Rust core in ``src/sampler``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from . import _core
from ._core import FaceIndex

__all__ = ["DomainBatch", "DomainSampler", "MetaBatch", "Split"]


@dataclass(frozen=True)
class Split:
    """One simulated domain shift: train on ``meta_train`` domains, test on ``meta_test``."""

    meta_train: tuple[int, ...]
    meta_test: tuple[int, ...]


@dataclass(frozen=True)
class DomainBatch:
    """One domain's part of a meta-batch: ``B`` identities, their gallery and probe images.

    ``gallery``: (B,) image indices; ``probe``: (B,) image indices (the first probe when
    ``images_per_id > 2``; all are in ``images``); ``images``: (B, k); ``identities``: (B,) identity
    numbers of the index. Position ``b`` is identity ``b`` of this batch (the in-batch class label).
    """

    domain: int
    gallery: torch.Tensor
    probe: torch.Tensor
    images: torch.Tensor
    identities: torch.Tensor


@dataclass(frozen=True)
class MetaBatch:
    """One meta-batch: every domain's identities and images, and the splits that use them.

    ``images`` is (D, B, k) int64 (domain, identity slot, image; image 0 is the gallery image),
    ``identities`` (D, B). Each domain's images appear once; every split reuses them.
    """

    epoch: int
    number: int
    images: npt.NDArray[np.int64]
    identities: npt.NDArray[np.int64]
    splits: tuple[Split, ...]

    def flat_indices(self) -> npt.NDArray[np.int64]:
        """All image indices, 1-D: domain by domain, identity slot by slot, gallery image first
        (``images.reshape(-1)``); load them in this order for a DataLoader ``batch_sampler``."""
        return self.images.reshape(-1)

    @property
    def n_domains(self) -> int:
        return int(self.images.shape[0])

    def domain(self, d: int) -> DomainBatch:
        imgs = torch.from_numpy(np.ascontiguousarray(self.images[d]))
        return DomainBatch(d, imgs[:, 0], imgs[:, 1], imgs, torch.from_numpy(np.ascontiguousarray(self.identities[d])))

    @property
    def per_domain(self) -> list[DomainBatch]:
        return [self.domain(d) for d in range(self.n_domains)]


class _BatchSamplerView:
    """``DomainSampler`` as a DataLoader ``batch_sampler``: yields each meta-batch's flat indices."""

    def __init__(self, sampler: DomainSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[list[int]]:
        for mb in self.sampler:
            yield mb.flat_indices().tolist()

    def __len__(self) -> int:
        return len(self.sampler)


class DomainSampler:
    """Seeded, resumable, rank-sharded stream of MFR meta-batches over a :class:`FaceIndex`.

    Each meta-batch draws ``ids_per_domain`` (B) distinct identities from *every* domain, with
    ``images_per_id`` (k) images each (gallery first, then probes; distinct images whenever the
    identity has enough). ``split="leave_one_out"`` gives every meta-batch all N rotations (split
    r holds out domains r .. r+m-1 mod N, m = ``meta_test_domains``), as in the paper's figure;
    ``split="random"`` one seeded draw of m held-out domains per meta-batch.

    Guarantees: the same seed gives the same meta-batches whatever the thread count; within an
    epoch every identity of a domain is used before any repeats and no identity appears twice in a
    domain's batch; an epoch has ``ceil(max identities per domain / B)`` meta-batches (smaller
    domains cycle); ``rank``/``world_size`` give disjoint streams (batch i goes to rank
    i mod world_size) whose union is the single-process stream, padded from the same stream to a
    multiple of world_size; ``state_dict()`` taken mid-epoch resumes exactly.

    Iterate it for the current epoch (``set_epoch(e)`` before each epoch, like
    ``DistributedSampler``); iteration continues from the position a loaded state recorded.
    """

    def __init__(
        self,
        index: FaceIndex,
        ids_per_domain: int,
        images_per_id: int = 2,
        split: Literal["leave_one_out", "random"] = "leave_one_out",
        meta_test_domains: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self._core = _core.DomainSamplerCore(
            index, ids_per_domain, images_per_id, str(split), meta_test_domains, seed, rank, world_size
        )
        self.index = index
        self.config: dict[str, Any] = {
            "ids_per_domain": int(ids_per_domain),
            "images_per_id": int(images_per_id),
            "split": str(split),
            "meta_test_domains": int(meta_test_domains),
            "seed": int(seed),
            "rank": int(rank),
            "world_size": int(world_size),
            "n_images": len(index),
        }
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, _core.EpochBatches] | None = None
        self._loo_splits = tuple(Split(tuple(tr), tuple(te)) for tr, te in self._core.splits([]))

    def __len__(self) -> int:
        """Meta-batches of this rank per epoch."""
        return len(self._core)

    def set_epoch(self, epoch: int) -> None:
        if not isinstance(epoch, (int, np.integer)) or not 0 <= epoch < 2**64:
            raise _core.InvalidInputError(
                f"DomainSampler.set_epoch: argument 'epoch' must be an integer in [0, 2**64 - 1], got {epoch!r}"
            )
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def _epoch_arrays(self) -> _core.EpochBatches:
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._core.epoch(self.epoch))
        return self._cache[1]

    def _batch(self, arrays: _core.EpochBatches, j: int, epoch: int | None = None) -> MetaBatch:
        d, b, k, m = (
            self._core.n_domains,
            self.config["ids_per_domain"],
            self.config["images_per_id"],
            self.config["meta_test_domains"],
        )
        images = arrays.images[j * d * b * k : (j + 1) * d * b * k].reshape(d, b, k)
        identities = arrays.identities[j * d * b : (j + 1) * d * b].reshape(d, b)
        if self.config["split"] == "leave_one_out":
            splits = self._loo_splits
        else:
            test = arrays.test_domains[j * m : (j + 1) * m].tolist()
            splits = tuple(Split(tuple(tr), tuple(te)) for tr, te in self._core.splits(test))
        return MetaBatch(
            self.epoch if epoch is None else epoch, int(arrays.batch_numbers[j]), images, identities, splits
        )

    def __iter__(self) -> Iterator[MetaBatch]:
        if self.position >= len(self):
            self.position = 0  # a finished epoch iterates again from its start
        arrays = self._epoch_arrays()
        while self.position < len(self):
            j = self.position
            self.position += 1
            yield self._batch(arrays, j)

    def upcoming(self, k: int = 0) -> MetaBatch:
        """The meta-batch ``k`` places after the current position, continuing into the next
        epochs as training does, without moving the position or the epoch (for prefetching)."""
        j, epoch = self.position + k, self.epoch
        while j >= len(self):
            j, epoch = j - len(self), epoch + 1
        arrays = self._epoch_arrays() if epoch == self.epoch else self._core.epoch(epoch)
        return self._batch(arrays, j, epoch)

    def __getitem__(self, j: int) -> MetaBatch:
        """This rank's j-th meta-batch of the current epoch (does not move the position)."""
        if not 0 <= j < len(self):
            raise IndexError(f"meta-batch {j} out of range 0..{len(self)}")
        return self._batch(self._epoch_arrays(), j)

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position (meta-batches of this epoch already handed out) and configuration."""
        return {"epoch": self.epoch, "position": self.position, **self.config}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state`` was taken; the configuration must match."""
        mismatched = {k: (state.get(k), v) for k, v in self.config.items() if state.get(k) != v}
        if mismatched:
            raise _core.InvalidInputError(
                f"DomainSampler.load_state_dict: the state was taken with a different configuration: {mismatched} (state, this)"
            )
        try:
            epoch, position = int(state["epoch"]), int(state["position"])
        except (KeyError, TypeError, ValueError) as e:
            raise _core.InvalidInputError(
                f"DomainSampler.load_state_dict: the state needs integer 'epoch' and 'position' entries ({e!r})"
            ) from None
        if not 0 <= epoch < 2**63 or not 0 <= position <= len(self):
            raise _core.InvalidInputError(
                f"DomainSampler.load_state_dict: epoch must lie in [0, 2**63) and position in [0, {len(self)}] (meta-batches per epoch), got epoch {epoch}, position {position}"
            )
        self.epoch, self.position = epoch, position

    def batch_sampler(self) -> _BatchSamplerView:
        """A view for ``torch.utils.data.DataLoader(dataset, batch_sampler=...)``."""
        return _BatchSamplerView(self)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"DomainSampler({self._core.n_domains} domains, B={c['ids_per_domain']}, k={c['images_per_id']}, "
            f"split={c['split']!r}, {len(self)} meta-batches/epoch, rank {c['rank']}/{c['world_size']})"
        )
