"""The ``mfr`` command line (also ``python -m mfr``)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .flags import add_training_args, train_config, tuned_config_of, user_fields

if TYPE_CHECKING:  # the commands import lazily, so `mfr --help` stays fast
    from mfr.experiments.config import TrainConfig
    from mfr.facedata import FaceData


def _version() -> str:
    """``0.1.0 (commit <sha>, torch 2.11.0)``: what ``mfr --version`` prints after ``mfr``."""
    import mfr

    info = mfr.build_info()
    return f"{mfr.__version__} (commit {info['commit']}, torch {info['torch']})"


class _PrintVersion(argparse.Action):
    """``--version``: one unwrapped line (argparse's own action wraps it to the terminal)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"mfr {_version()}")
        parser.exit()


def _cmd_info(args: argparse.Namespace) -> int:
    import mfr

    print(json.dumps(mfr.build_info(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """End-to-end run on the built-in synthetic domains: scores and metrics computed by the Rust core."""
    import mfr
    from mfr.metrics import verification_report
    from mfr.synthetic import synthetic_embeddings

    _set_threads(args.threads)
    info = mfr.build_info()
    print(
        "mfr build:",
        ", ".join(f"{k}={info[k]}" for k in ("mfr", "torch", "cuda_available", "cuda_device_count", "num_threads")),
    )
    data = synthetic_embeddings(n_domains=args.domains, ids_per_domain=args.ids, seed=args.seed)
    emb = data.embeddings.to(args.device)
    print(
        f"synthetic data: {args.domains} domains x {args.ids} identities, {len(data.identities)} embeddings on {emb.device}"
    )
    print(f"verification per domain (95% CI from {args.bootstrap} bootstrap resamples of identities)")
    print(f"{'domain':>6} {'pairs':>8} {'AUC':>24} {'EER':>24} {'TAR@FAR=1e-3':>24}")
    for d in range(args.domains):
        pairs, labels = data.verification_pairs(d, n_impostors=args.impostors, seed=args.seed + d)
        t0 = time.perf_counter()
        scores = mfr.pair_scores(emb, pairs)
        groups = data.identities[pairs[:, 0]]
        rep = verification_report(
            scores, labels, fars=(1e-3,), n_bootstrap=args.bootstrap, groups=groups, seed=args.seed
        )
        dt = time.perf_counter() - t0
        cells = [str(rep.ci["auc"]), str(rep.ci["eer"]), str(rep.ci["tar@far=0.001"])]
        print(f"{d:>6} {len(pairs):>8} {cells[0]:>24} {cells[1]:>24} {cells[2]:>24}   ({dt:.2f} s)")
    return 0


def _set_threads(threads: int | None) -> None:
    """``--threads N``: the CPU threads of both torch and mfr's Rust core."""
    if threads is None:
        return
    import torch

    import mfr

    if threads < 1:
        raise mfr.InvalidInputError(f"--threads must be >= 1, got {threads}")
    mfr.set_num_threads(threads)
    torch.set_num_threads(threads)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _load_data(args: argparse.Namespace, config: TrainConfig) -> FaceData:
    from mfr.facedata import FaceData

    if args.data:
        return FaceData.from_folder(args.data)
    return FaceData.synthetic(
        n_domains=args.synthetic_domains,
        ids_per_domain=args.synthetic_ids,
        images_per_id=6,
        size=config.input_size,
        channels=config.channels,
        seed=0,
    )


def _search_count(value: int | None) -> int:
    """``--search N``: N >= 1 settings per method (absent: no search)."""
    import mfr

    if value is None:
        return 0
    if value < 1:
        raise mfr.InvalidInputError(
            f"--search needs a number of settings >= 1, got {value} (leave it out for no search)"
        )
    return value


def _holding_out(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` run with ``--out`` held (:mod:`mfr.experiments.folder_lock`) from before it
    decides whether the folder may be resumed or overwritten to its end; under torchrun rank 0
    holds it (a refused rank 0 exits 2 and torchrun stops its peers)."""

    @functools.wraps(command)
    def held(args: argparse.Namespace) -> int:
        from mfr.experiments import folder_lock
        from mfr.experiments.checkpoint import check_output_folder

        _set_threads(args.threads)
        check_output_folder(args.out, "--out")
        with contextlib.ExitStack() as stack:
            if int(os.environ.get("RANK", "0")) == 0:
                stack.enter_context(folder_lock.hold(args.out, "--out"))
            return command(args)

    return held


@_holding_out
def _cmd_reproduce(args: argparse.Namespace) -> int:
    """The GFR-style protocol: every method trained on source domains, evaluated on unseen ones."""
    import shlex

    from mfr.experiments.methods import METHODS
    from mfr.experiments.reproduce import run_protocol

    config = train_config(args)
    data = _load_data(args, config)
    methods = _csv(args.methods) or list(METHODS)
    search = _search_count(args.search)
    _show_config(config, None)  # results.json keeps it with the runs
    print(
        f"mfr reproduce: protocol {args.protocol} on {data.name}: {len(data)} images, domains {', '.join(data.domain_names)}"
    )
    print(
        f"methods: {', '.join(methods)}; {config.steps} steps each, {args.seeds} seed(s), {config.device}; results in {args.out}/"
    )
    command = "mfr " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if args.argv is None else args.argv))
    result = run_protocol(
        data,
        protocol=args.protocol,
        targets=_csv(args.targets),
        sources=_csv(args.sources),
        methods=methods,
        seeds=args.seeds,
        config=config,
        out_dir=args.out,
        n_bootstrap=args.bootstrap,
        bn=args.bn,
        progress=not args.no_progress if args.no_progress else None,
        command=command,
        eval_seed=args.eval_seed,
        search=search,
        search_steps=args.search_steps,
        select_metric=args.select_metric,
        validation_fraction=args.validation_fraction,
        budget=args.budget,
        stage1_fraction=args.stage1_fraction,
        resume=args.resume,
        force=args.force,
        tuned=not args.untuned,
        fixed=user_fields(args),
    )
    print()
    for metric in args.show.split(","):
        print(result.table(metric.strip()))
        print()
    print(result.difference_table("tar@far=1e-2", baseline=args.baseline))
    print()
    answer = result.verdict()
    if answer:
        print(answer.replace("**", ""))
        print()
    print(
        f"done in {result.wall_seconds:.0f} s; all metrics with CIs: {args.out}/results.md, {args.out}/results.json, ROC plots {args.out}/roc_*.png"
    )
    return 0


def _show_config(config: TrainConfig, out: str | None) -> None:
    """Print the resolved configuration and keep it with the run (``<out>/config.json``)."""
    import dataclasses

    resolved = dataclasses.asdict(config)
    print("configuration: " + json.dumps(resolved, sort_keys=True))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text(json.dumps(resolved, indent=2, sort_keys=True) + "\n")


def _check_run_folder(out: str, resume: bool, overwrite: bool) -> list[Path]:
    """A finished or interrupted run in ``out`` is continued (--resume) or replaced (--overwrite),
    never overwritten silently. Returns the run's files that --overwrite removes, which the command
    does only once its configuration, data and model are known to be good (:func:`_remove`)."""

    import mfr

    if resume and overwrite:
        raise mfr.InvalidInputError(
            "--resume continues the run in --out and --overwrite starts it over: give one of them"
        )
    run_files = [Path(out) / name for name in ("checkpoint.safetensors", "train.csv", "eval.csv", "tensorboard")]
    found = [p for p in run_files if p.exists()]
    if found and not (resume or overwrite):
        raise mfr.InvalidInputError(
            f"--out {out} already holds a run ({', '.join(p.name for p in found)}); add --resume to continue it "
            "or --overwrite to start it over"
        )
    return found if overwrite else []


def _remove(paths: list[Path]) -> None:
    import shutil

    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


@_holding_out
def _cmd_train(args: argparse.Namespace) -> int:
    """Train one method on source domains with checkpoints (resumable), evaluating the rest."""
    from mfr.experiments.train import Trainer

    replaced = _check_run_folder(args.out, args.resume, args.overwrite)
    config = tuned_config_of(args, train_config(args))
    data = _load_data(args, config)
    sources = _csv(args.sources) or data.domain_names
    held_out = [d for d in data.domain_names if d not in {data.domain_names[data.domain_number(s)] for s in sources}]
    eval_sets = {"held_out": data.subset(held_out)} if held_out else {}
    trainer = Trainer(
        config,
        data.subset(sources),
        out_dir=args.out,
        eval_sets=eval_sets,
        progress=None if not args.no_progress else False,
    )
    _remove(replaced)  # --overwrite: only now that the new run is set up
    _show_config(config, args.out)
    trainer.fit(resume=args.resume)
    print(
        f"trained {config.method} for {trainer.step} steps ({trainer.train_seconds:.0f} s); checkpoint: {args.out}/checkpoint.safetensors"
    )
    for row in trainer.eval_history[-len(held_out) :] if held_out else []:
        print(
            f"  {row['domain']}: TAR@FAR=1e-2 {row['tar@far=1e-2']:.3f}  AUC {row['auc']:.3f}  rank-1 {row['rank1']:.3f}"
        )
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    """Rewrite a protocol's results in the current format, the runs gzipped (any earlier format reads)."""
    from mfr.experiments.reproduce import ProtocolResult

    folder = Path(args.folder)
    result = ProtocolResult.load(folder)
    if not result.complete and not args.force:
        import mfr

        raise mfr.InvalidInputError(
            f"{folder}: the protocol is incomplete ({result.finished_runs()} of {result.expected_runs} runs); "
            "a resume appends to a compressed run file too, so --force compacts it anyway"
        )
    before = sum(p.stat().st_size for p in folder.glob("*") if p.is_file())
    result.save(folder, compress=True)
    after = sum(p.stat().st_size for p in folder.glob("*") if p.is_file())
    print(f"{folder}: {len(result.runs)} runs; {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint's backbone for deployment (see mfr.experiments.export)."""
    from mfr.experiments.export import export

    for path in export(args.checkpoint, args.out, onnx=args.onnx):
        print(f"wrote {path}")
    print(
        "load it without mfr: torch.export.load(path).module()(images) -> embeddings (images normalized as in training)"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint on a folder of domains or on an insightface .bin verification set."""
    import torch

    import mfr
    from mfr.data import load_verification_bin, normalize_images
    from mfr.experiments.evaluate import METRICS, evaluate_domain
    from mfr.experiments.weights import load_backbone
    from mfr.facedata import FaceData
    from mfr.metrics import UndefinedMetricWarning, kfold_accuracy, verification_report

    if (args.data is None) == (args.bin is None):
        raise mfr.InvalidInputError("give exactly one of --data DIR or --bin FILE")
    net, meta = load_backbone(args.checkpoint, args.device)
    print(
        f"checkpoint {args.checkpoint}: {meta['config']['method']} on {', '.join(meta['domains'])}, step {meta['step']}, backbone {net.extra_repr()}"
    )
    if args.bin:
        vs = load_verification_bin(args.bin, size=(net.input_size, net.input_size), channels=net.in_channels)  # type: ignore[arg-type]
        x = normalize_images(vs.images).to(net.parameter_list()[0].device)
        flip = args.flip_average != "off"  # .bin sets: flip-averaged embeddings by default, as insightface
        emb = torch.nn.functional.normalize(net.embed(x, bn=args.bn, flip=flip).float(), dim=1).cpu()
        scores = (emb[0::2] * emb[1::2]).sum(1).numpy()
        folds = min(10, vs.n_pairs)
        kf = kfold_accuracy(scores, vs.issame, n_folds=folds, protocol="insightface")
        with warnings.catch_warnings():  # fewer than 1/FAR impostor pairs: that TAR prints as nan
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            rep = verification_report(scores, vs.issame, fars=(1e-3, 1e-2))
        print(
            f"{args.bin}: {vs.n_pairs} pairs; {folds}-fold accuracy {kf.mean:.4f} +- {kf.std:.4f}; AUC {rep.auc:.4f}; EER {rep.eer:.4f}; "
            f"TAR@FAR=1e-3 {rep.tar_at_far[1e-3][0]:.4f}; TAR@FAR=1e-2 {rep.tar_at_far[1e-2][0]:.4f}"
        )
        return 0
    data = FaceData.from_folder(args.data)
    domains = _csv(args.domains) or data.domain_names
    print(f"{'domain':<28}" + "".join(f"{m:>24}" for m in METRICS))
    results = []
    for d in domains:
        res = evaluate_domain(
            net, data, d, seed=args.seed, n_bootstrap=args.bootstrap, bn=args.bn, flip=args.flip_average == "on"
        )
        cells = "".join(
            f"{v['estimate']:.3f} [{v['low']:.3f},{v['high']:.3f}]".rjust(24) for v in res["metrics"].values()
        )
        print(f"{res['domain']:<28}{cells}")
        results.append(res)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "checkpoint": str(args.checkpoint),
                    "seed": args.seed,
                    "n_bootstrap": args.bootstrap,
                    "bn": args.bn,
                    "domains": results,
                },
                indent=1,
            )
        )
        print(f"all numbers (with bootstrap resamples and ROC points): {args.json}")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the epilog's method list kept as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfr", description="Meta Face Recognition toolkit")
    parser.add_argument("--version", action=_PrintVersion, help="print the version, commit and torch, and exit")
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

    from mfr.experiments.methods import METHODS

    listing = "\n".join(f"  {name:<16} {spec.summary} [{spec.kind}]" for name, spec in METHODS.items())
    rep = sub.add_parser(
        "reproduce",
        help="GFR-style protocol: train every method on source domains, test on unseen ones",
        formatter_class=_HelpFormatter,
        epilog=f"methods (mfr.experiments.methods.METHODS):\n{listing}",
    )
    add_training_args(rep, "reproduce")
    rep.add_argument("--protocol", default="lodo", choices=("lodo", "multi"))
    rep.add_argument("--sources", default=None, help="comma-separated source domains (protocol multi)")
    rep.add_argument("--targets", default=None, help="comma-separated target domains (default for lodo: every domain)")
    rep.add_argument(
        "--methods",
        default=None,
        help=f"comma-separated, default all: {','.join(METHODS)}; two-stage X@P such as mfr@arcface (the methods are listed below)",
    )
    rep.add_argument("--seeds", type=int, default=1)
    rep.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the CIs")
    rep.add_argument("--bn", default="running", choices=("running", "target"), help="BatchNorm statistics at test time")
    rep.add_argument("--out", default="mfr_results")
    rep.add_argument("--show", default="tar@far=1e-3,tar@far=1e-2,rank1", help="metrics printed as tables")
    rep.add_argument(
        "--eval-seed",
        type=int,
        default=0,
        help="seed of the evaluation draws (pairs, folds, galleries, bootstrap); the same for every method and training seed",
    )
    rep.add_argument(
        "--baseline",
        default=None,
        help="method the difference table compares against (default: the best pooled baseline)",
    )
    rep.add_argument(
        "--search",
        type=int,
        default=None,
        metavar="N",
        help="random search of N settings per method, selected by training-domain validation (never the target)",
    )
    rep.add_argument("--search-steps", type=int, default=None, help="steps per search setting (default: --steps)")
    rep.add_argument(
        "--select-metric",
        default="auc",
        choices=("auc", "eer", "tar@far=1e-2", "accuracy"),
        help="validation metric of the search",
    )
    rep.add_argument(
        "--validation-fraction",
        type=float,
        default=0.25,
        help="share of every source domain's identities held out for validation",
    )
    rep.add_argument(
        "--budget",
        default="steps",
        choices=("steps", "time"),
        help="time: also train every method for the time MFR used (equal-compute rows)",
    )
    rep.add_argument(
        "--stage1-fraction",
        type=float,
        default=0.5,
        help="two-stage rows X@P: share of the steps the pooled stage P trains",
    )
    rep.add_argument("--resume", action="store_true", help="continue the protocol in --out (finished runs kept)")
    rep.add_argument("--force", action="store_true", help="start over even if --out holds results")
    rep.set_defaults(func=_cmd_reproduce)

    tr = sub.add_parser(
        "train",
        help="train one method with checkpoints; --resume continues a run",
        formatter_class=_HelpFormatter,
        epilog=f"methods (mfr.experiments.methods.METHODS):\n{listing}",
    )
    add_training_args(tr, "train")
    tr.add_argument(
        "--sources", default=None, help="comma-separated source domains (default: all); the others are evaluated"
    )
    tr.add_argument("--out", default="mfr_run")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    tr.add_argument("--overwrite", action="store_true", help="start over, replacing the run in --out")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on a folder of domains or a .bin verification set")
    ev.add_argument("checkpoint")
    ev.add_argument("--data", default=None)
    ev.add_argument("--domains", default=None, help="comma-separated (default: all)")
    ev.add_argument("--bin", default=None, help="an insightface .bin verification set")
    ev.add_argument("--bootstrap", type=int, default=200)
    ev.add_argument("--bn", default="running", choices=("running", "target"))
    ev.add_argument(
        "--flip-average",
        default="auto",
        choices=("auto", "on", "off"),
        help="embed each image and its mirror image, summed (auto: on for --bin, as insightface; off for folders)",
    )
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--seed", type=int, default=0, help="seed of the evaluation draws (as --eval-seed of reproduce)")
    ev.add_argument("--json", default=None, metavar="FILE", help="also write every number to FILE as JSON")
    ev.set_defaults(func=_cmd_eval)

    co = sub.add_parser("compact", help="rewrite a finished protocol's results compactly (runs gzipped)")
    co.add_argument("folder", help="the protocol's output folder (--out of mfr reproduce)")
    co.add_argument("--force", action="store_true", help="compact an incomplete protocol too")
    co.set_defaults(func=_cmd_compact)

    ex = sub.add_parser("export", help="a checkpoint's backbone as a model that loads without mfr (torch.export; ONNX)")
    ex.add_argument("checkpoint")
    ex.add_argument("out", help="the program file to write (e.g. model.pt2)")
    ex.add_argument("--onnx", action="store_true", help="also write <out>.onnx (needs the onnx package)")
    ex.set_defaults(func=_cmd_export)
    return parser


#: Set to 0 (or false/no) to keep glibc's malloc defaults in the training commands.
HEAP_ENV_VAR = "MFR_HEAP_REUSE"


def _tune_heap_for_training(device: str) -> bool:
    """The training commands are applications: on CPU they raise glibc's malloc thresholds for
    the whole process (``mfr.tune_heap()``; each CPU meta-step frees a working set of hundreds of
    MB that the default policy hands back to the kernel and faults in again next step) and say so
    in their log (stdout). ``MFR_HEAP_REUSE=0`` keeps the defaults. Returns whether the heap was
    tuned."""
    import mfr

    if not device.startswith("cpu"):
        return False
    if os.environ.get(HEAP_ENV_VAR, "1").strip().lower() in ("0", "false", "no"):
        print(f"mfr: glibc malloc defaults kept ({HEAP_ENV_VAR}=0)")
        return False
    if not mfr.tune_heap():
        return False  # not glibc: nothing to tune
    print(
        "mfr: heap tuned for CPU training: glibc keeps freed heap for reuse "
        f"(M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 2 GiB; {HEAP_ENV_VAR}=0 keeps the defaults)"
    )
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; user errors (bad arguments, data, devices, checkpoints) print one line
    ``mfr: error: ...`` and exit with status 2, without a traceback."""
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    import mfr

    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 prints results
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if args.func in (_cmd_train, _cmd_reproduce):
        _tune_heap_for_training(str(getattr(args, "device", "cpu")))

    try:
        rc = int(args.func(args))
        mfr.experiments.distributed.shutdown()
        return rc
    except mfr.MfrError as e:
        if isinstance(e, (mfr.InvalidInputError, mfr.DataError, mfr.DeviceError)):
            print(f"mfr: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, mfr.experiments.distributed.DistributedError):
            print(f"mfr: error: {e}", file=sys.stderr)
            mfr.experiments.distributed.exit_after_failure(3)
        raise
    except KeyboardInterrupt:
        print("mfr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
