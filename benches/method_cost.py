"""Each training method's cost per step against CosFace (the pooled baseline MFR is compared with),
measured in the same process on the same data and machine: the published run's configuration
(small CNN, 32x32 RGB, width 8, 64-d, 8 identities x 2 images per source domain, 6 source domains
of the shared faces with att_orl held out; the built-in synthetic data when the faces are absent).

Each method trains ``--steps`` steps from the same seed; its cost is the median step after the first
``--skip`` (start-up left out). For the ``+swad`` rows SWAD's cost is added as the published run
pays it: 20 source-validation evaluations and one BatchNorm pass spread over ``--budget`` steps
(1000), each timed here (the bench's own run evaluates every ``--steps // 4`` steps). One line per row, then, last:
``method_cost: coral=R mixstyle=R cdt=R cosface+swad=R mfr+swad=R mfr=R`` (seconds per step / CosFace's).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from mfr import FaceData, TrainConfig, Trainer
from mfr.experiments.rows import Row

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces"
ROWS = ("cosface", "coral", "mixstyle", "cdt", "cosface+swad", "mfr+swad", "mfr")


def seconds_per_step(row: str, data: FaceData, steps: int, skip: int, budget: int) -> float:
    r = Row.parse(row)
    fields = {**r.config_fields(), **({"swad_every": steps // 4} if r.swad else {})}
    config = TrainConfig(method=r.method, steps=steps, flip=False, lean=False, log_every=1, **fields)
    torch.manual_seed(0)
    trainer = Trainer(config, data, progress=False)
    trainer.fit()
    median = statistics.median(float(h["seconds"]) for h in trainer.history[skip:])
    if trainer.swad is None:
        return median
    s = trainer.swad
    per_evaluation = (s.seconds - s.bn_seconds) / max(1, s.evaluations)
    return median + (20 * per_evaluation + s.bn_seconds) / budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=int, default=1000, help="the steps SWAD's cost is spread over")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if FACES.is_dir():
        faces = FaceData.from_folder(FACES)
        data = faces.subset([d for d in faces.domain_names if d != "att_orl"])
        where = f"the shared faces without att_orl ({len(data)} images)"
    else:
        data = FaceData.synthetic(n_domains=7, ids_per_domain=20, images_per_id=8, size=32, channels=3, seed=0)
        where = "synthetic data (the shared faces are absent)"
    print(f"method_cost: {args.steps} steps per row on {where}, {torch.get_num_threads()} threads")
    cost = {row: seconds_per_step(row, data, args.steps, args.skip, args.budget) for row in ROWS}
    base = cost["cosface"]
    for row, s in cost.items():
        print(f"{row:<14} {1000 * s:8.1f} ms per step  {s / base:5.2f}x cosface")
    print("method_cost: " + " ".join(f"{row}={cost[row] / base:.2f}" for row in ROWS[1:]))


if __name__ == "__main__":
    main()
