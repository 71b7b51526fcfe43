"""``FaceData``: a :class:`mfr.FaceIndex` plus where its pixels come from (a folder, or images in
memory such as the built-in synthetic data), loading any subset as uint8 tensors of one size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _core
from .data import FaceIndex, decode_images
from .synthetic import synthetic_domains

__all__ = ["FaceData"]

# Decoded images are kept in memory when they fit in this many bytes; larger sets decode per batch.
PRELOAD_LIMIT = 2 << 30


class FaceData:
    """Images of a multi-domain face dataset, by index position.

    ``FaceData.from_folder(root)`` reads ``root/<domain>/<identity>/<image>``;
    ``FaceData.synthetic(...)`` renders the built-in data; ``FaceData(index, images=...)`` wraps
    images already in memory (``images[i]`` is entry ``i``); ``FaceData(index, root=...)`` reads
    the index's paths relative to ``root`` (as given when ``root`` is None). :meth:`load` returns uint8
    ``(N, channels, size, size)`` tensors, decoding (and caching, when the whole set fits in
    :data:`PRELOAD_LIMIT` bytes) or resizing as needed.
    """

    def __init__(
        self,
        index: FaceIndex,
        images: torch.Tensor | None = None,
        root: str | os.PathLike[str] | None = None,
        name: str = "data",
    ) -> None:
        if images is not None and (images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] != len(index)):
            raise _core.InvalidInputError(
                f"FaceData: images must be uint8 (N, C, H, W) with N = {len(index)} (the index), got {tuple(images.shape)} {images.dtype}"
            )
        self.index, self.images, self.root, self.name = index, images, (Path(root) if root is not None else None), name
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    @classmethod
    def from_folder(cls, root: str | os.PathLike[str]) -> FaceData:
        root = Path(root)
        if not root.is_dir():
            raise _core.DataError(f"FaceData: {root} is not a folder (expected <root>/<domain>/<identity>/<image>)")
        return cls(FaceIndex.from_folder(root), name=str(root))  # the index's paths include root

    @classmethod
    def synthetic(
        cls,
        n_domains: int = 4,
        ids_per_domain: int = 40,
        images_per_id: int = 6,
        size: int = 32,
        channels: int = 3,
        seed: int = 0,
    ) -> FaceData:
        s = synthetic_domains(
            n_domains=n_domains,
            ids_per_domain=ids_per_domain,
            images_per_id=images_per_id,
            size=size,
            channels=channels,
            seed=seed,
        )
        return cls(
            s.index,
            images=s.images,
            name=f"synthetic({n_domains} domains x {ids_per_domain} identities x {images_per_id} images, seed {seed})",
        )

    def __len__(self) -> int:
        return len(self.index)

    @property
    def domain_names(self) -> list[str]:
        return list(self.index.domain_names)

    def domain_number(self, domain: int | str) -> int:
        """The number of a domain given by name or number (see :meth:`FaceIndex.domain_number`)."""
        return self.index.domain_number(domain)

    def subset(self, domains: Sequence[int | str]) -> FaceData:
        """Only the images of ``domains`` (a new index, numbered from 0, domains in the given order)."""
        numbers = [self.domain_number(d) for d in domains]
        if len(set(numbers)) != len(numbers):
            raise _core.InvalidInputError(f"FaceData.subset: domains repeat: {list(domains)}")
        dom = self.index.domains
        order = np.concatenate([np.flatnonzero(dom == n) for n in numbers]) if numbers else np.zeros(0, np.int64)
        names, ids = self.domain_names, self.index.identity_names
        paths = self.index.paths
        id_of = self.index.identities
        index = FaceIndex.from_arrays(
            [paths[i] for i in order], [names[dom[i]] for i in order], [ids[id_of[i]] for i in order]
        )
        images = self.images[torch.from_numpy(order)] if self.images is not None else None
        return FaceData(
            index, images=images, root=self.root, name=f"{self.name}[{', '.join(names[n] for n in numbers)}]"
        )

    def _path(self, p: str) -> str:
        return str(self.root / p) if self.root is not None else p

    def load(self, indices: Any, size: int, channels: int) -> torch.Tensor:
        """uint8 ``(len(indices), channels, size, size)`` images of these index positions."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        key = (int(size), int(channels))
        if key in self._cache:
            return self._cache[key][idx]
        n_bytes = len(self) * channels * size * size
        if self.images is not None:
            if self.images.shape[1:] == (channels, size, size):
                return self.images[idx]
            full = _convert(self.images, size, channels)
        elif n_bytes <= PRELOAD_LIMIT:
            full = decode_images([self._path(p) for p in self.index.paths], size=(size, size), channels=channels)  # type: ignore[arg-type]  # channels: 1 or 3, checked in Rust
        else:
            paths = self.index.paths
            batch: torch.Tensor = decode_images(
                [self._path(paths[i]) for i in idx.tolist()],
                size=(size, size),
                channels=channels,  # type: ignore[arg-type]  # 1 or 3, checked in Rust
            )
            return batch
        self._cache[key] = full
        return full[idx]


def _convert(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """In-memory images at another size or channel count, converted by the same Rust code as
    decoded files (luma grayscale, antialiased resize): one picture, the same pixels either way."""
    return _core.convert_images(images, size, size, channels)
