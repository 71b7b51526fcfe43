"""The ``mfr`` command line (also ``python -m mfr``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np


def _cmd_info(args: argparse.Namespace) -> int:
    import mfr

    print(json.dumps(mfr.build_info(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """End-to-end run on the built-in synthetic domains: scores and metrics computed by the Rust core."""
    import mfr
    from mfr.metrics import verification_report
    from mfr.synthetic import synthetic_embeddings

    if args.threads is not None:
        mfr.set_num_threads(args.threads)
    info = mfr.build_info()
    print("mfr build:", ", ".join(f"{k}={info[k]}" for k in ("mfr", "torch", "cuda_available", "cuda_device_count", "num_threads")))
    data = synthetic_embeddings(n_domains=args.domains, ids_per_domain=args.ids, seed=args.seed)
    emb = data.embeddings.to(args.device)
    print(f"synthetic data: {args.domains} domains x {args.ids} identities, {len(data.identities)} embeddings on {emb.device}")
    print(f"verification per domain (95% CI from {args.bootstrap} bootstrap resamples of identities)")
    print(f"{'domain':>6} {'pairs':>8} {'AUC':>24} {'EER':>24} {'TAR@FAR=1e-3':>24}")
    for d in range(args.domains):
        pairs, labels = data.verification_pairs(d, n_impostors=args.impostors, seed=args.seed + d)
        t0 = time.perf_counter()
        scores = mfr.pair_scores(emb, pairs)
        groups = data.identities[pairs[:, 0]]
        rep = verification_report(scores, labels, fars=(1e-3,), n_bootstrap=args.bootstrap, groups=groups, seed=args.seed)
        dt = time.perf_counter() - t0
        cells = [str(rep.ci["auc"]), str(rep.ci["eer"]), str(rep.ci["tar@far=0.001"])]
        print(f"{d:>6} {len(pairs):>8} {cells[0]:>24} {cells[1]:>24} {cells[2]:>24}   ({dt:.2f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfr", description="Meta Face Recognition toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print build and runtime information as JSON")
    info.set_defaults(func=_cmd_info)
    demo = sub.add_parser("demo", help="score verification pairs on the built-in synthetic domains")
    demo.add_argument("--domains", type=int, default=4)
    demo.add_argument("--ids", type=int, default=200, help="identities per domain")
    demo.add_argument("--impostors", type=int, default=200_000, help="impostor pairs per domain")
    demo.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the confidence intervals")
    demo.add_argument("--device", default="cpu", help="cpu or cuda")
    demo.add_argument("--threads", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
