"""Built-in synthetic multi-domain data, so that mfr runs without any dataset on disk.

``synthetic_embeddings`` models what a face recognizer sees under domain shift: every identity has
a direction on the unit sphere; each domain adds its own systematic offset (camera, sensor,
lighting) and noise level on top, so the same identity looks different in different domains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SyntheticEmbeddings:
    """Embeddings of ``n_domains`` domains, ``ids_per_domain`` identities each.

    ``embeddings``: (N, dim) float32 torch tensor; ``domains``, ``identities``: (N,) int64 numpy
    arrays (identities are global: the same id never appears in two domains).
    """

    embeddings: torch.Tensor
    domains: np.ndarray
    identities: np.ndarray

    def verification_pairs(self, domain: int, n_impostors: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """All genuine pairs of ``domain`` plus ``n_impostors`` random impostor pairs.

        Returns ``(pairs, labels)``: (M, 2) int64 row indices and (M,) bool (True = same identity).
        """
        rng = np.random.default_rng(seed)
        rows = np.flatnonzero(self.domains == domain)
        ids = self.identities[rows]
        i, j = np.triu_indices(len(rows), k=1)
        same = ids[i] == ids[j]
        genuine = np.stack([rows[i[same]], rows[j[same]]], axis=1)
        a = rng.choice(rows, size=4 * n_impostors)
        b = rng.choice(rows, size=4 * n_impostors)
        keep = self.identities[a] != self.identities[b]
        impostor = np.stack([a[keep], b[keep]], axis=1)[:n_impostors]
        pairs = np.concatenate([genuine, impostor]).astype(np.int64)
        labels = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
        return pairs, labels


def synthetic_embeddings(
    n_domains: int = 4,
    ids_per_domain: int = 100,
    images_per_id: int = 4,
    dim: int = 128,
    domain_shift: float = 0.6,
    seed: int = 0,
) -> SyntheticEmbeddings:
    """Seeded synthetic multi-domain embeddings (see the module docstring)."""
    if min(n_domains, ids_per_domain, images_per_id, dim) < 1:
        raise ValueError("synthetic_embeddings: all sizes must be >= 1")
    rng = np.random.default_rng(seed)
    n_ids = n_domains * ids_per_domain
    centers = rng.standard_normal((n_ids, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    offsets = rng.standard_normal((n_domains, dim)) * domain_shift / np.sqrt(dim)
    noise = np.linspace(1.1, 1.7, n_domains)  # later domains are harder
    identities = np.repeat(np.arange(n_ids), images_per_id)
    domains = identities // ids_per_domain
    x = centers[identities] + offsets[domains]
    x += rng.standard_normal(x.shape) * (noise[domains] / np.sqrt(dim))[:, None]
    return SyntheticEmbeddings(torch.from_numpy(x.astype(np.float32)), domains.astype(np.int64), identities.astype(np.int64))
