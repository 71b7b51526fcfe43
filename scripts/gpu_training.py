"""A short real training run per setting, for the GPU check (scripts/gpu_check.sh): the Trainer on
the built-in synthetic domains, MFR in the lean and the shared meta-step schedule and pooled
ArcFace training (the plain baseline), each with amp off and bf16. Reports images per second (mean
over the steps after the first two) and the peak GPU memory each run allocated.

Last line: `gpu_training: mfr_lean_bf16_img_s=N mfr_lean_bf16_vs_plain=R` (the lean bf16 MFR run's
throughput and its ratio to plain bf16 training's).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import mfr
from mfr.experiments.train import Trainer


def run(data: mfr.FaceData, args: argparse.Namespace, method: str, lean: bool, amp: str | None) -> tuple[float, float]:
    config = mfr.TrainConfig(
        method=method,
        backbone=args.backbone,
        input_size=args.size,
        width=args.width,
        embedding_dim=args.dim,
        ids_per_domain=args.ids_per_domain,
        split="leave_one_out",
        steps=args.steps,
        device=args.device,
        lean=lean,
        amp=amp,
        eval_every=0,
        log_every=0,
        checkpoint_every=0,
    )
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    trainer = Trainer(config, data, progress=False)
    trainer.fit()
    if cuda:
        torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20 if cuda else float("nan")
    rates = [row["images_per_s"] for row in trainer.history[2:]] or [trainer.history[-1]["images_per_s"]]
    return statistics.mean(rates), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ids-per-domain", type=int, default=16)
    parser.add_argument("--domains", type=int, default=3, help="source domains (leave-one-out splits)")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    started = time.perf_counter()
    data = mfr.FaceData.synthetic(
        n_domains=args.domains, ids_per_domain=2 * args.ids_per_domain, images_per_id=2, size=args.size, seed=0
    )
    print(
        f"{args.backbone} width {args.width}, {args.size}x{args.size} RGB, {args.domains} domains x B={args.ids_per_domain}, "
        f"{args.steps} steps, {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'})"
    )
    print(f"{'run':<24} {'images/s':>10} {'peak MiB':>10}")
    results = {}
    for amp in (None, "bf16"):
        for name, method, lean in (
            ("mfr lean", "mfr", True),
            ("mfr shared", "mfr", False),
            ("plain arcface", "arcface", True),
        ):
            label = f"{name}, amp {amp or 'off'}"
            results[name, amp] = run(data, args, method, lean, amp)
            print(f"{label:<24} {results[name, amp][0]:>10.1f} {results[name, amp][1]:>10.0f}", flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    lean, plain = results["mfr lean", "bf16"][0], results["plain arcface", "bf16"][0]
    print(f"gpu_training: mfr_lean_bf16_img_s={lean:.1f} mfr_lean_bf16_vs_plain={lean / plain:.3f}")


if __name__ == "__main__":
    main()
