"""Cosine scores of index pairs: mfr (Rust, rayon, float64 accumulation) vs numpy (float64 gather).

Last line: `pair_scores: vs_numpy=R` (numpy time / mfr time, higher is better).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import best_of

import mfr


def numpy_pair_scores(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    e = emb.astype(np.float64)
    e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", e[pairs[:, 0]], e[pairs[:, 1]])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000, help="embeddings")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    pairs = rng.integers(0, args.n, size=(args.pairs, 2))
    t_emb = torch.from_numpy(emb)
    np.testing.assert_allclose(mfr.pair_scores(t_emb, pairs[:1000]), numpy_pair_scores(emb, pairs[:1000]), atol=1e-9)
    t_mfr = best_of(lambda: mfr.pair_scores(t_emb, pairs), args.repeats)
    t_np = best_of(lambda: numpy_pair_scores(emb, pairs), args.repeats)
    print(
        f"{'impl':<8} {'seconds':>9} {'Mpairs/s':>9}  ({args.pairs} pairs, dim {args.dim}, {mfr.get_num_threads()} threads)"
    )
    for name, t in (("mfr", t_mfr), ("numpy", t_np)):
        print(f"{name:<8} {t:>9.4f} {args.pairs / t / 1e6:>9.2f}")
    print(f"pair_scores: vs_numpy={t_np / t_mfr:.2f}")


if __name__ == "__main__":
    main()
