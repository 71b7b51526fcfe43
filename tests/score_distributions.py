"""Score distributions that verification produces, shared by the metrics parity tests and
benches/metrics.py: each maps (rng, boolean labels) to float64 scores of those pairs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def _uniform(rng, labels):
    return rng.random(labels.size)


def _cosine(rng, labels):  # cosine similarities: impostors near 0, genuines shifted and wider
    return np.where(labels, rng.normal(0.5, 0.15, labels.size), rng.normal(0.0, 0.1, labels.size))


def _shifted(rng, labels):
    return rng.normal(0.0, 1.0, labels.size) + 2.5 * labels


def _ties(rng, labels):  # scores stored with 3 decimals: ~1,000 distinct values
    return np.round(_cosine(rng, labels), 3)


def _outlier(rng, labels):  # one corrupt pair far off the rest
    s = _shifted(rng, labels)
    s[rng.integers(labels.size)] = 1e6
    return s


def _bimodal(rng, labels):  # two impostor populations (e.g. two sensors) and the genuines
    n = labels.size
    impostor = np.where(rng.random(n) < 0.5, rng.normal(-0.3, 0.05, n), rng.normal(0.3, 0.05, n))
    return np.where(labels, rng.normal(0.7, 0.1, n), impostor)


_REAL: dict[str, np.ndarray] = {}

#: The shared faces (``<domain>/<identity>/<image>``) next to the checkout.
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def real_scores(folder: Path = FACES) -> dict[str, np.ndarray] | None:
    """Cosine scores of every pair within each domain of ``folder`` (genuine: same identity), from
    an untrained small CNN's embeddings (seed 0); None where the faces are not there."""
    if not _REAL and folder.is_dir():
        import torch

        import mfr
        from mfr.data import normalize_images
        from mfr.facedata import FaceData

        data = FaceData.from_folder(folder)
        torch.manual_seed(0)
        net = mfr.nn.Backbone("small_cnn", embedding_dim=64, in_channels=3, input_size=32, width=8)
        gen, imp = [], []
        for d in data.domain_names:
            sub = data.subset([d])
            emb = net.embed(normalize_images(sub.load(np.arange(len(sub)), 32, 3))).double().numpy()
            emb /= np.linalg.norm(emb, axis=1, keepdims=True)
            i, j = np.triu_indices(len(sub), 1)
            sims = np.einsum("ij,ij->i", emb[i], emb[j])
            same = sub.index.identities[i] == sub.index.identities[j]
            gen.append(sims[same])
            imp.append(sims[~same])
        _REAL["genuine"], _REAL["impostor"] = np.concatenate(gen), np.concatenate(imp)
    return _REAL or None


def _real(rng, labels):  # resampled: the genuines from genuine pairs, the impostors from the rest
    real = real_scores()
    if real is None:
        raise FileNotFoundError(f"the real-embedding scores need the shared faces at {FACES}")
    n_gen = int(labels.sum())
    s = np.empty(labels.size)
    s[labels] = rng.choice(real["genuine"], n_gen)
    s[~labels] = rng.choice(real["impostor"], labels.size - n_gen)
    return s


#: Name -> scores of the labels (float64; cast to the dtype measured).
DISTRIBUTIONS: dict[str, Callable[[np.random.Generator, np.ndarray], np.ndarray]] = {
    "uniform": _uniform,
    "cosine": _cosine,
    "shifted": _shifted,
    "ties": _ties,
    "outlier": _outlier,
    "bimodal": _bimodal,
    "real": _real,
}
