"""Distributed MFR training: images/s of 1 process vs 2 gloo processes on localhost (each process
pinned to its own core, one thread each), MFR method on the small CNN; and the share of step time
rank 0 spends in the gradient all-reduce (flat buckets of gradients and BatchNorm statistics).

Last line: `distributed: scaling_2proc=R allreduce_share=R`, scaling = (images/s with 2
processes) / (images/s with 1) (goal >= 1.7), allreduce_share = all-reduce time / step time on
rank 0 (goal <= 0.15).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time


def worker(steps: int, warmup: int, out: str) -> None:
    rank = int(os.environ.get("RANK", "0"))
    os.sched_setaffinity(0, {rank % os.cpu_count()})
    import torch

    torch.set_num_threads(1)
    import mfr

    mfr.set_num_threads(1)
    from mfr import FaceData, TrainConfig, Trainer

    data = FaceData.synthetic(n_domains=4, ids_per_domain=40, images_per_id=6, size=32, seed=0)
    cfg = TrainConfig(
        method="mfr",
        steps=warmup + steps,
        input_size=32,
        width=8,
        embedding_dim=64,
        ids_per_domain=8,
        split="leave_one_out",
    )
    tr = Trainer(cfg, data, progress=False)
    for _ in range(warmup):
        tr.train_step()
    tr.averager.seconds = 0.0
    t0 = time.perf_counter()
    images = 0
    for _ in range(steps):
        row = tr.train_step()
        images += 4 * 2 * tr.ids_per_domain
    seconds = time.perf_counter() - t0
    mfr.experiments.distributed.shutdown()
    if rank == 0:
        with open(out, "w") as f:
            json.dump(
                {
                    "seconds": seconds,
                    "images": images * tr.world_size,
                    "allreduce": tr.averager.seconds,
                    "world": tr.world_size,
                    "last": row,
                },
                f,
            )


def launch(world: int, steps: int, warmup: int, out: str) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", "--steps", str(steps), "--warmup", str(warmup), "--out", out],
                env=env,
            )
        )
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a worker failed (exit {p.returncode})")
    with open(out) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.warmup, args.out)
        return
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs at least 2 cores")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        one = launch(1, args.steps, args.warmup, os.path.join(tmp, "one.json"))
        two = launch(2, args.steps, args.warmup, os.path.join(tmp, "two.json"))
    ips1, ips2 = one["images"] / one["seconds"], two["images"] / two["seconds"]
    share = two["allreduce"] / two["seconds"]
    print(
        "MFR meta-step, small CNN (width 8, 32x32 RGB), LOO meta-batches of 4 domains x 8 identities x 2 images; 1 thread per process, pinned"
    )
    print(f"{'processes':>10} {'images/s':>10} {'s/step':>8} {'all-reduce s/step':>18}")
    print(f"{1:>10} {ips1:>10.1f} {one['seconds'] / args.steps:>8.3f} {'-':>18}")
    print(f"{2:>10} {ips2:>10.1f} {two['seconds'] / args.steps:>8.3f} {two['allreduce'] / args.steps:>18.4f}")
    print(f"distributed: scaling_2proc={ips2 / ips1:.2f} allreduce_share={share:.3f}")


if __name__ == "__main__":
    main()
