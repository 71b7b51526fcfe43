"""Domain-level sampling and decoding: mfr against the tools people use today.

1. Build a FaceIndex of 5.8M synthetic entries (85k identities, 4 domains) and report the time.
2. One epoch of meta-batches (B identities x 2 images from every domain) against
   (a) pytorch-metric-learning's MPerClassSampler(labels, m=2, batch_size=256) drawing the same
       number of indices, and
   (b) a vectorized numpy reference with our semantics (seeded permutation cycles per domain,
       B identities per batch, two distinct images per identity), written here.
3. Decode + resize of the real faces (../shared/data/faces) into a 112x112 RGB uint8 batch against
   PIL + torchvision Resize/PILToTensor in a DataLoader with 2 workers.

Last line: `sampler: vs_pml=R vs_reference=R indices_per_s=N decode_vs_pil=R`
  (vs_* = baseline time / mfr time; indices_per_s = sampled indices per second per core).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _timing import best_of

import mfr

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"


def make_index(n_images: int, n_ids: int, n_domains: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Long-tailed images per identity (as MS1M): at least 2 each.
    weights = rng.pareto(1.5, n_ids) + 1
    counts = 2 + np.floor(weights / weights.sum() * (n_images - 2 * n_ids)).astype(np.int64)
    counts[: n_images - counts.sum()] += 1
    identities = np.repeat(np.arange(n_ids), counts)
    domains = identities % n_domains
    paths = [f"img/{i}.jpg" for i in range(len(identities))]
    t0 = time.perf_counter()
    index = mfr.FaceIndex.from_arrays(paths, domains.tolist(), identities.tolist())
    return index, time.perf_counter() - t0


def numpy_reference_epoch(identities: np.ndarray, domains: np.ndarray, n_domains: int, b: int, seed: int):
    """Our sampler's semantics, vectorized: per domain, seeded permutation cycles of its identities,
    B per batch; per chosen identity two distinct random images. Returns the flat index array."""
    rng = np.random.default_rng(seed)
    order = np.argsort(identities, kind="stable")
    n_ids = identities.max() + 1
    counts = np.bincount(identities, minlength=n_ids)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    id_domain = np.zeros(n_ids, np.int64)
    id_domain[identities] = domains
    per_domain = [np.flatnonzero(id_domain == d) for d in range(n_domains)]
    n_batches = -(-max(len(p) for p in per_domain) // b)
    streams = []
    for ids in per_domain:
        cycles = -(-(n_batches * b) // len(ids))
        streams.append(
            np.concatenate([rng.permutation(ids) for _ in range(cycles)])[: n_batches * b].reshape(n_batches, b)
        )
    chosen = np.stack(streams, axis=1).reshape(-1)  # batch, domain, slot
    c = counts[chosen]
    first = rng.integers(0, c)
    second = rng.integers(0, c - 1)
    second += second >= first
    return order[np.stack([offsets[chosen] + first, offsets[chosen] + second], axis=1)].reshape(-1)


def pml_draw(labels: np.ndarray, n_indices: int) -> int:
    from pytorch_metric_learning.samplers import MPerClassSampler

    sampler = MPerClassSampler(labels, m=2, batch_size=256, length_before_new_iter=n_indices)
    drawn = 0
    for _ in sampler:
        drawn += 1
    return drawn


class PilFaces(torch.utils.data.Dataset):
    def __init__(self, paths):
        from torchvision import transforms

        self.paths = paths
        self.tf = transforms.Compose([transforms.Resize((112, 112)), transforms.PILToTensor()])

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.tf(im.convert("RGB"))


def decode_bench(repeats: int):
    if not FACES.is_dir():
        return None
    paths = mfr.FaceIndex.from_folder(FACES).paths
    t_mfr = best_of(lambda: mfr.data.decode_images(paths, size=(112, 112), channels=3), repeats)
    loader = torch.utils.data.DataLoader(PilFaces(paths), batch_size=64, num_workers=2, multiprocessing_context="fork")

    def pil():
        return torch.cat(list(loader))

    t_pil = best_of(pil, repeats)
    return len(paths), t_mfr, t_pil


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5_800_000)
    parser.add_argument("--identities", type=int, default=85_000)
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--ids-per-domain", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = mfr.get_num_threads()
    index, t_index = make_index(args.images, args.identities, args.domains)
    print(
        f"index: {len(index)} images, {index.n_identities} identities, {index.n_domains} domains built in {t_index:.2f} s"
    )

    sampler = mfr.DomainSampler(index, ids_per_domain=args.ids_per_domain, seed=0)
    n_indices = len(sampler) * args.domains * args.ids_per_domain * 2

    def mfr_epoch():
        sampler.set_epoch(sampler.epoch + 1)
        total = 0
        for mb in sampler:
            total += len(mb.flat_indices())
        return total

    assert mfr_epoch() == n_indices
    t_mfr = best_of(mfr_epoch, args.repeats)
    ids, doms = index.identities, index.domains
    ref = numpy_reference_epoch(ids, doms, args.domains, args.ids_per_domain, 0)
    assert len(ref) == n_indices
    t_ref = best_of(lambda: numpy_reference_epoch(ids, doms, args.domains, args.ids_per_domain, 1), args.repeats)
    t_pml = best_of(lambda: pml_draw(ids, n_indices), 1)
    per_core = n_indices / t_mfr / threads
    print(f"one epoch = {len(sampler)} meta-batches = {n_indices} indices ({threads} threads)")
    print(f"{'impl':<28} {'seconds':>9} {'M indices/s':>12}")
    for name, t in (("mfr DomainSampler", t_mfr), ("numpy reference", t_ref), ("PML MPerClassSampler", t_pml)):
        print(f"{name:<28} {t:>9.4f} {n_indices / t / 1e6:>12.2f}")

    dec = decode_bench(args.repeats)
    if dec:
        n, t_dec, t_pil = dec
        print(
            f"decode {n} real faces -> 112x112 RGB: mfr {n / t_dec:.0f} img/s, PIL+torchvision DataLoader(2 workers) {n / t_pil:.0f} img/s"
        )
        decode_ratio = f"{t_pil / t_dec:.2f}"
    else:
        print(f"decode: real faces not found at {FACES}; skipped")
        decode_ratio = "nan"
    print(
        f"sampler: vs_pml={t_pml / t_mfr:.0f} vs_reference={t_ref / t_mfr:.1f} indices_per_s={per_core:.0f} decode_vs_pil={decode_ratio}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
