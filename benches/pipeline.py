"""Data pipeline: how much of a training step waits for images, decoding in the step (sync) vs
decoding the next meta-batches in a background thread while the step runs (prefetch).

Real faces from ``../shared/data/faces`` decoded from disk at 112x112 RGB for every batch (the
in-memory cache is off), an iresnet18 (width 8) MFR meta-step on the CPU (``--device cuda``,
``--width``, ``--size``, ``--data`` for the GPU check), the same batches in both modes. Wait share = time ``train_step`` spends getting its images / its whole time.

Last line: `pipeline: wait_share_sync=R wait_share_prefetch=R` (goal for prefetch: <= 0.05). It also
prints the seconds per step of both modes: on a 2-core CPU the step itself takes the cores, so
prefetching (the default on CUDA only) can cost more than the decoding it hides.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mfr
import mfr.facedata
from mfr import FaceData, TrainConfig, Trainer


def wait_share(data: FaceData, prefetch: int, args: argparse.Namespace) -> tuple[float, float]:
    cfg = TrainConfig(
        backbone="iresnet18", width=args.width, embedding_dim=64, input_size=args.size, channels=3,
        ids_per_domain=args.ids, steps=args.steps + 2, warmup_steps=1, prefetch=prefetch, eval_every=0,
        device=args.device,
    )  # fmt: skip
    steps = args.steps
    trainer = Trainer(cfg, data, progress=False)
    waited = [0.0]
    fetch = trainer._images_of

    def timed(mb: object) -> object:
        t0 = time.perf_counter()
        out = fetch(mb)
        waited[0] += time.perf_counter() - t0
        return out

    trainer._images_of = timed  # type: ignore[method-assign]
    for _ in range(2):  # warm up: first decode, allocator, thread start
        trainer.train_step()
    waited[0] = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    total = time.perf_counter() - t0
    trainer.fit()  # stops the prefetch thread
    return waited[0] / total, total / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--ids", type=int, default=8, help="identities per domain in a meta-batch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--width", type=int, default=8)
    args = parser.parse_args()
    mfr.facedata.PRELOAD_LIMIT = 0  # decode from disk for every batch, as a large dataset does
    data = FaceData.from_folder(args.data)
    print(
        f"mfr {mfr.__version__}: {len(data)} images, {data.index.n_domains} domains; iresnet18 w{args.width} "
        f"{args.size}x{args.size}, B={args.ids}, {args.device}"
    )
    shares = {}
    for mode, prefetch in (("sync", 0), ("prefetch", 2)):
        share, per_step = wait_share(data, prefetch, args)
        shares[mode] = share
        print(f"{mode:>9}: {per_step:.3f} s per step, {share:.1%} of it waiting for images")
    print(f"pipeline: wait_share_sync={shares['sync']:.3f} wait_share_prefetch={shares['prefetch']:.3f}")


if __name__ == "__main__":
    main()
