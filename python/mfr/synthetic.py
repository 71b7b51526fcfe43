"""Built-in synthetic multi-domain data, so that mfr runs without any dataset on disk.

``synthetic_domains`` renders face-like images with a distinct shift per domain (the default data
of training and the protocols); ``synthetic_embeddings`` gives embeddings directly (metrics demos).

``synthetic_embeddings`` models what a face recognizer sees under domain shift: every identity has
a direction on the unit sphere; each domain adds its own systematic offset (camera, sensor,
lighting) and noise level on top, so the same identity looks different in different domains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _core
from ._core import FaceIndex


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
        """All genuine pairs of ``domain`` plus ``n_impostors`` distinct seeded impostor pairs, as
        :meth:`mfr.FaceIndex.verification_pairs` builds them (the same code, over these rows).

        Returns ``(pairs, labels)``: (M, 2) int64 row indices and (M,) bool (True = same identity).
        """
        # Zero-padded domain names keep name order = number order; row i is index position i.
        index = FaceIndex.from_arrays(
            [f"row{i}" for i in range(len(self.identities))],
            [f"{d:06d}" for d in self.domains.tolist()],
            self.identities.tolist(),
        )
        pairs, labels = index.verification_pairs(int(domain), n_impostors, seed)
        return np.asarray(pairs, dtype=np.int64), np.asarray(labels, dtype=bool)


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
        raise _core.InvalidInputError("synthetic_embeddings: all sizes must be >= 1")
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
    return SyntheticEmbeddings(
        torch.from_numpy(x.astype(np.float32)), domains.astype(np.int64), identities.astype(np.int64)
    )


# ---- synthetic multi-domain face images ---------------------------------------------------------

DOMAIN_SHIFTS: tuple[str, ...] = ("illumination", "blur", "noise", "low_resolution", "contrast", "grayscale", "warp")


@dataclass(frozen=True)
class SyntheticDomains:
    """Synthetic multi-domain face images: ``images[i]`` is the image of ``index`` entry ``i``.

    ``images``: (N, C, H, W) uint8 tensor; ``index``: a :class:`mfr.FaceIndex` whose paths name
    each image as ``<domain>/<identity>/<k>.png`` (relative: the images live in memory until
    :meth:`to_folder` writes them); ``shifts[d]``: the shift(s) domain ``d`` applies.
    """

    images: torch.Tensor
    index: Any
    shifts: tuple[str, ...]

    def to_folder(self, root: str | os.PathLike[str]) -> Any:
        """Write every image as PNG under ``root/<domain>/<identity>/<k>.png`` and return
        ``FaceIndex.from_folder(root)`` (same order as ``index``)."""
        root = Path(root)
        _core.write_images(self.images, [root / p for p in self.index.paths])
        return FaceIndex.from_folder(root)


def _identity_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    def u(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, (n, *shape))

    return {
        "axes": np.stack([u(0.52, 0.68), u(0.70, 0.86)], 1),
        "skin": u(0.35, 0.85, 3) * np.array([1.0, 0.85, 0.72]),
        "hair": u(0.02, 0.5, 3),
        "hairline": u(-0.75, -0.45),
        "eye_dx": u(0.18, 0.30),
        "eye_y": u(-0.22, -0.08),
        "eye_r": u(0.045, 0.085),
        "brow": u(0.05, 0.12),
        "nose_len": u(0.12, 0.26),
        "mouth_y": u(0.30, 0.45),
        "mouth_w": u(0.16, 0.32),
        "blob_xy": u(-0.6, 0.6, 6, 2),
        "blob_amp": u(-0.12, 0.12, 6),
        "blob_r": u(0.12, 0.35, 6),
    }


def _render(p: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> torch.Tensor:
    """Render one image per row of the parameter arrays, with per-image pose, expression and light."""
    n = len(p["axes"])
    g = torch.linspace(-1, 1, size, dtype=torch.float32)
    yy, xx = torch.meshgrid(g, g, indexing="ij")

    def t(a: np.ndarray) -> torch.Tensor:  # per-image scalar -> broadcastable
        return torch.as_tensor(a, dtype=torch.float32).reshape(n, 1, 1)

    # Per-image pose: shift, scale, in-plane rotation.
    ang = torch.as_tensor(rng.uniform(-0.14, 0.14, n), dtype=torch.float32).reshape(n, 1, 1)
    sc = torch.as_tensor(rng.uniform(0.93, 1.07, n), dtype=torch.float32).reshape(n, 1, 1)
    sh = torch.as_tensor(rng.uniform(-0.06, 0.06, (n, 2)), dtype=torch.float32)
    x0 = (xx - sh[:, 0, None, None]) / sc
    y0 = (yy - sh[:, 1, None, None]) / sc
    x = torch.cos(ang) * x0 + torch.sin(ang) * y0
    y = -torch.sin(ang) * x0 + torch.cos(ang) * y0
    a, b = t(p["axes"][:, 0]), t(p["axes"][:, 1])
    r2 = (x / a) ** 2 + (y / b) ** 2
    face = torch.sigmoid((1 - r2) * 18)
    shade = torch.zeros_like(x)
    for k in range(p["blob_xy"].shape[1]):
        bx, by = t(p["blob_xy"][:, k, 0]), t(p["blob_xy"][:, k, 1])
        shade += t(p["blob_amp"][:, k]) * torch.exp(-((x - bx) ** 2 + (y - by) ** 2) / t(p["blob_r"][:, k]) ** 2)
    ex, ey, er = t(p["eye_dx"]), t(p["eye_y"]), t(p["eye_r"])
    blink = t(rng.uniform(0.6, 1.0, n))
    eyes = torch.stack([torch.exp(-(((x - s * ex) / er) ** 2 + ((y - ey) / (er * blink)) ** 2)) for s in (-1, 1)]).sum(
        0
    )
    brows = torch.stack(
        [torch.exp(-(((x - s * ex) / (1.6 * er)) ** 2 + ((y - ey + t(p["brow"])) / 0.025) ** 2)) for s in (-1, 1)]
    ).sum(0)
    nose = torch.exp(-((x / 0.05) ** 2) - ((y - ey - t(p["nose_len"]) / 2) / (t(p["nose_len"]) / 2)) ** 4) * 0.5
    smile = t(rng.uniform(-0.08, 0.12, n))
    my = t(p["mouth_y"]) - smile * (1 - (x / t(p["mouth_w"])) ** 2)
    mouth = torch.exp(-((x / t(p["mouth_w"])) ** 6) - ((y - my) / 0.035) ** 2)
    hair = torch.sigmoid((t(p["hairline"]) - y + 0.15 * x**2) * 25) * torch.sigmoid((1.15 - r2) * 12)
    light = 1 + t(rng.uniform(-0.15, 0.15, n)) * x + t(rng.uniform(-0.1, 0.1, n)) * y
    skin = torch.as_tensor(p["skin"], dtype=torch.float32).reshape(n, 3, 1, 1)
    hair_c = torch.as_tensor(p["hair"], dtype=torch.float32).reshape(n, 3, 1, 1)
    # One backdrop per domain (as a dataset shot in one place), jittered per image.
    backdrop = rng.uniform(0.15, 0.85, 3)
    bg = torch.as_tensor(backdrop + rng.normal(0, 0.05, (n, 3)), dtype=torch.float32).reshape(n, 3, 1, 1)
    features = (1 - 0.85 * eyes - 0.6 * brows - 0.25 * nose - 0.6 * mouth).clamp(0, 1)
    img = skin * (1 + shade).unsqueeze(1) * features.unsqueeze(1)
    img = face.unsqueeze(1) * img + (1 - face.unsqueeze(1)) * bg
    img = hair.unsqueeze(1) * hair_c + (1 - hair.unsqueeze(1)) * img
    img = img * light.unsqueeze(1) + 0.015 * torch.as_tensor(rng.standard_normal(img.shape), dtype=torch.float32)
    return img.clamp(0, 1)


def _apply_shift(img: torch.Tensor, shift: str, rng: np.random.Generator) -> torch.Tensor:
    import torch.nn.functional as F

    n, c, h, w = img.shape
    if shift == "illumination":  # strong side light and a gamma change
        g = torch.linspace(0.3, 1.3, w).reshape(1, 1, 1, w)
        side = torch.as_tensor(rng.integers(0, 2, n) * 2 - 1, dtype=torch.float32).reshape(n, 1, 1, 1)
        grad = torch.where(side > 0, g, g.flip(-1))
        return (img * grad).clamp(0, 1) ** 1.4
    if shift == "blur":
        k = torch.exp(-(torch.arange(-4, 5, dtype=torch.float32) ** 2) / (2 * 1.6**2))
        k = (k / k.sum()).reshape(1, 1, 1, -1).repeat(c, 1, 1, 1)
        x = F.conv2d(F.pad(img, (4, 4, 0, 0), mode="replicate"), k, groups=c)
        return F.conv2d(F.pad(x, (0, 0, 4, 4), mode="replicate"), k.transpose(2, 3), groups=c)
    if shift == "noise":
        return (img + 0.09 * torch.as_tensor(rng.standard_normal(img.shape), dtype=torch.float32)).clamp(0, 1)
    if shift == "low_resolution":
        small = F.interpolate(img, size=(max(h // 4, 1), max(w // 4, 1)), mode="area")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    if shift == "contrast":
        return (0.5 + 0.45 * (img - 0.5) + 0.12).clamp(0, 1)
    if shift == "grayscale":
        luma = (img * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        return luma.expand(n, c, h, w).clone()
    if shift == "warp":
        g = torch.linspace(-1, 1, h)
        yy, xx = torch.meshgrid(g, torch.linspace(-1, 1, w), indexing="ij")
        phase = torch.as_tensor(rng.uniform(0, 6.28, (n, 1, 1)), dtype=torch.float32)
        dx = 0.07 * torch.sin(3 * yy + phase)
        dy = 0.07 * torch.sin(3 * xx + phase)
        grid = torch.stack([xx + dx, yy + dy], dim=-1)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
    raise _core.InvalidInputError(f"unknown domain shift {shift!r}; known: {', '.join(DOMAIN_SHIFTS)}")


def synthetic_domains(
    n_domains: int = 4,
    ids_per_domain: int = 40,
    images_per_id: int = 6,
    size: int = 64,
    channels: int = 3,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
) -> SyntheticDomains:
    """The package's built-in multi-domain face data, deterministic by ``seed``.

    Every identity is a random smooth face-like structure (face shape, skin and hair colour,
    eye/brow/nose/mouth geometry, low-frequency skin texture); its images vary in pose, expression,
    blink and lighting. Each domain holds different identities and applies its own shift, in the
    order of :data:`DOMAIN_SHIFTS` (illumination, blur, noise, low resolution, contrast, grayscale,
    geometric warp); beyond seven domains the shifts combine in pairs. Sized for a 2-core CPU
    (the defaults render 960 images of 64x64 in about a second). With ``root``, the images are also
    written there in the ``<domain>/<identity>/<image>`` layout and ``index`` reads that folder.
    """
    if min(n_domains, ids_per_domain, images_per_id, size) < 1 or channels not in (1, 3):
        raise _core.InvalidInputError(
            "synthetic_domains: n_domains, ids_per_domain, images_per_id and size must be >= 1 and channels 1 or 3"
        )
    shifts = []
    for d in range(n_domains):
        first = DOMAIN_SHIFTS[d % len(DOMAIN_SHIFTS)]
        shifts.append(first if d < len(DOMAIN_SHIFTS) else f"{first}+{DOMAIN_SHIFTS[(d * 3 + 1) % len(DOMAIN_SHIFTS)]}")
    chunks, paths, domains, identities = [], [], [], []
    for d, shift in enumerate(shifts):
        rng = np.random.default_rng([seed, d])
        params = _identity_params(rng, ids_per_domain)
        rows = {k: np.repeat(v, images_per_id, axis=0) for k, v in params.items()}
        img = _render(rows, rng, size)
        for part in shift.split("+"):
            img = _apply_shift(img, part, rng)
        if channels == 1:
            img = (img * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
        chunks.append((img * 255).round().clamp(0, 255).to(torch.uint8))
        name = f"domain{d}_{shift}"
        for i in range(ids_per_domain):
            for k in range(images_per_id):
                paths.append(f"{name}/id{i:04d}/{k:02d}.png")
                domains.append(name)
                identities.append(f"id{i:04d}")
    data = SyntheticDomains(torch.cat(chunks), FaceIndex.from_arrays(paths, domains, identities), tuple(shifts))
    if root is not None:
        index = data.to_folder(root)
        data = SyntheticDomains(data.images, index, data.shifts)
    return data
