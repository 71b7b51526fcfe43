"""Multi-domain face data (Rust core in ``src/data``).

* :class:`FaceIndex`: every image with its domain and identity, from a folder laid out
  ``<root>/<domain>/<identity>/<image>``, a list file of ``path domain identity`` lines, or arrays.
* :func:`decode_images`: parallel decode + resize into a uint8 ``(N, C, H, W)`` tensor.
* Readers of the common formats, without MXNet: insightface training sets in MXNet RecordIO
  (:class:`RecordFile`, :func:`index_from_record`), ``.bin`` verification sets
  (:func:`load_verification_bin`) and LFW ``pairs.txt`` (:func:`read_lfw_pairs`).
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from . import _core
from ._core import DataError, FaceIndex, InvalidInputError, RecordFile
from .synthetic import DOMAIN_SHIFTS, SyntheticDomains, synthetic_domains

__all__ = [
    "DOMAIN_SHIFTS",
    "DecodeWarning",
    "FaceIndex",
    "LfwPairs",
    "RecordFile",
    "SyntheticDomains",
    "VerificationSet",
    "decode_images",
    "index_from_record",
    "load_verification_bin",
    "normalize_images",
    "read_lfw_pairs",
    "synthetic_domains",
]

ImageSource = str | os.PathLike[str] | bytes | bytearray


#: Some images could not be read or decoded and were left out of the batch (an ``mfr.DataWarning``).
DecodeWarning = _core.DecodeWarning


def decode_images(
    sources: Sequence[ImageSource],
    size: tuple[int, int] = (112, 112),
    channels: Literal[1, 3] = 3,
    flip: bool | Sequence[bool] | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    return_failed: bool = False,
) -> Any:
    """Decode images into one ``(N, channels, H, W)`` uint8 tensor, in parallel and without the GIL.

    ``sources``: file paths or encoded image bytes (JPEG, PNG, GIF, TIFF, BMP, PGM/PPM), mixed
    freely. Every image is converted to grayscale (``channels=1``, ITU-R BT.709 luma) or RGB
    (``channels=3``; grayscale sources are replicated), resized to ``size = (H, W)`` with a
    bilinear (triangle) filter when its size differs, and flipped horizontally where ``flip`` is
    true (one bool for all, or one per image).

    A missing or corrupt image raises :class:`mfr.DataError` naming it; with ``on_error="skip"`` it
    is left out (so N shrinks) and a :class:`DecodeWarning` lists it. ``return_failed=True`` returns
    ``(images, failed)`` where ``failed`` is a list of ``(position, reason)``.
    """
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"decode_images: on_error must be 'raise' or 'skip', got {on_error!r}")
    if isinstance(sources, (str, bytes, bytearray, os.PathLike)):
        raise InvalidInputError(
            "decode_images: sources must be a sequence of paths or bytes, got a single one; wrap it in a list"
        )
    sources = list(sources)
    try:
        h, w = size
    except (TypeError, ValueError):
        raise InvalidInputError(f"decode_images: size must be (height, width), got {size!r}") from None
    flips = None
    if flip is not None:
        flips = [bool(flip)] * len(sources) if isinstance(flip, (bool, np.bool_)) else [bool(f) for f in flip]
    images, failed = _core.decode_images(sources, h, w, channels, flips, on_error == "skip")
    if failed:
        shown = "; ".join(f"{i}: {reason}" for i, reason in failed[:5])
        warnings.warn(f"decode_images: left out {len(failed)} image(s): {shown}", DecodeWarning, stacklevel=2)
    return (images, failed) if return_failed else images


def normalize_images(
    images: torch.Tensor, mean: float | Sequence[float] = 0.5, std: float | Sequence[float] = 0.5
) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 ``(x / 255 - mean) / std`` on the same device (per-channel
    ``mean``/``std`` allowed). The default maps pixels to [-1, 1], as insightface's models expect."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise InvalidInputError(
            f"normalize_images: images must be a 4-D uint8 tensor (N, C, H, W), got {images.dim()}-D {images.dtype}"
        )
    c = images.shape[1]
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).reshape(-1, 1, 1)
    if m.shape[0] not in (1, c) or s.shape[0] not in (1, c):
        raise InvalidInputError(f"normalize_images: mean/std must have 1 or {c} values")
    return (images.to(torch.float32) / 255.0 - m) / s


# ---- insightface .bin verification sets ---------------------------------------------------------


class _BinUnpickler(pickle.Unpickler):
    """The .bin format is a pickle; allow only what such files hold (lists, tuples, bytes, bools and
    numpy arrays), so a malicious file cannot run code."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("builtins", "bytearray"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the .bin verification format")


@dataclass(frozen=True)
class VerificationSet:
    """Pairs ``(images[2 i], images[2 i + 1])`` with ``issame[i]``, as insightface's .bin files."""

    images: torch.Tensor
    issame: npt.NDArray[np.bool_]

    @property
    def n_pairs(self) -> int:
        return len(self.issame)


def load_verification_bin(
    path: str | os.PathLike[str], size: tuple[int, int] = (112, 112), channels: Literal[1, 3] = 3
) -> VerificationSet:
    """Read an insightface verification set (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, ...):
    a pickled ``(bins, issame_list)`` of 2N encoded images and N booleans. No MXNet needed; the
    pickle is read with an allowlist (no code runs)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            bins, issame = _BinUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise DataError(f"load_verification_bin: cannot read {path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"load_verification_bin: {path} is not an insightface .bin verification set: {e}") from None
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if len(bins) != 2 * len(issame):
        raise DataError(
            f"load_verification_bin: {path} holds {len(bins)} images for {len(issame)} pairs; expected {2 * len(issame)}"
        )
    sources = [bytes(b) if not isinstance(b, (bytes, bytearray)) else b for b in bins]
    images = decode_images(sources, size=size, channels=channels)
    return VerificationSet(images, issame)


# ---- LFW pairs.txt ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LfwPairs:
    """Image paths of each pair, whether it is genuine, and its fold (``pairs.txt`` order)."""

    first: list[str]
    second: list[str]
    issame: npt.NDArray[np.bool_]
    folds: npt.NDArray[np.int64]


def read_lfw_pairs(path: str | os.PathLike[str], root: str | os.PathLike[str], ext: str = "jpg") -> LfwPairs:
    """Parse LFW's ``pairs.txt``: a header ``n_folds n_pairs_per_fold`` (or one count), then per fold
    ``n`` genuine lines ``name i j`` and ``n`` impostor lines ``name1 i name2 j``. Images are
    ``root/name/name_{i:04d}.{ext}``."""
    path, root = Path(path), Path(root)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise DataError(f"read_lfw_pairs: cannot read {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(
            f"read_lfw_pairs: {path} is not a text file (byte {e.start} is not UTF-8); expected LFW's pairs.txt"
        ) from None
    rows = [(n + 1, line.split()) for n, line in enumerate(lines) if line.strip()]
    if not rows:
        raise DataError(f"read_lfw_pairs: {path} is empty")
    header = rows[0][1]
    try:
        n_folds, per_fold = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]) // 2)
    except (ValueError, IndexError):
        raise DataError(
            f"read_lfw_pairs: {path} line 1: expected 'n_folds n_pairs_per_fold', got {' '.join(header)!r}"
        ) from None
    expected = n_folds * 2 * per_fold
    body = rows[1:]
    if len(body) != expected:
        raise DataError(f"read_lfw_pairs: {path}: header announces {expected} pairs, found {len(body)}")
    first, second, same = [], [], []

    def img(name: str, num: str, lineno: int) -> str:
        try:
            return str(root / name / f"{name}_{int(num):04d}.{ext}")
        except ValueError:
            raise DataError(
                f"read_lfw_pairs: {path} line {lineno}: image number must be an integer, got {num!r}"
            ) from None

    for lineno, f in body:
        if len(f) == 3:
            first.append(img(f[0], f[1], lineno))
            second.append(img(f[0], f[2], lineno))
            same.append(True)
        elif len(f) == 4:
            first.append(img(f[0], f[1], lineno))
            second.append(img(f[2], f[3], lineno))
            same.append(False)
        else:
            raise DataError(f"read_lfw_pairs: {path} line {lineno}: expected 3 or 4 fields, got {len(f)}")
    folds = np.repeat(np.arange(n_folds), 2 * per_fold)
    return LfwPairs(first, second, np.array(same), folds)


# ---- insightface RecordIO training sets ---------------------------------------------------------


def index_from_record(
    rec: str | os.PathLike[str], idx: str | os.PathLike[str] | None = None, domain: str = "rec"
) -> tuple[FaceIndex, RecordFile]:
    """Index an insightface training set (``train.rec`` + ``train.idx``, e.g. MS1M, Glint360K).

    insightface writes a header record (key 0, ``flag > 0``) whose labels ``(a, b)`` say that keys
    ``1 .. a-1`` are images and ``a .. b-1`` identity ranges; without it every record with
    ``flag == 0`` is an image. Each image's identity is its (first) label. The index's paths are
    ``"<rec>#<key>"``; decode them with ``record.decode(keys)`` or :meth:`RecordFile.decode`.
    Returns ``(index, record_file)``.
    """
    rf = RecordFile(rec, idx)
    keys = rf.keys
    if len(keys) == 0:
        raise DataError(f"index_from_record: {rec} holds no records")
    flags, labels = rf.insightface_labels([int(keys[0])])
    if flags[0] > 0:
        first = float(rf.read_insightface(int(keys[0]))[0][0])
        # A crafted or damaged header must not size anything: images are keys 1 .. end-1, and
        # the file holds every one of them as a record.
        if not (math.isfinite(first) and first == int(first) and 1 <= first <= len(keys)):
            raise DataError(
                f"index_from_record: {rec}: the header record announces images 1 .. {first} - 1, but the file holds {len(keys)} records"
            )
        keys = np.arange(1, int(first), dtype=np.int64)
        flags, labels = rf.insightface_labels(keys.tolist())
    else:
        flags, labels = rf.insightface_labels(keys.tolist())
        keys = keys[flags == 0]
        labels = labels[flags == 0]
    bad = ~np.isfinite(labels) | (labels != np.round(labels)) | (labels < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"index_from_record: {rec}: record {int(keys[i])} has identity label {labels[i]}, expected a whole number >= 0"
        )
    ids = labels.astype(np.int64)
    index = FaceIndex.from_arrays([f"{os.fspath(rec)}#{k}" for k in keys], [domain] * len(keys), ids.tolist())
    return index, rf
