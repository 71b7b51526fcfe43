"""The MFR meta-step: mfr's Rust step against (a) the straightforward per-split PyTorch reference
(`mfr.reference.meta_step`, the algorithm as the paper writes it) and (b) a plain forward+backward
of the same backbone over the same images (every domain once), same thread count, same device.

Gradients of mfr and the reference are checked equal before timing. mfr's advantages: each domain's
forward at theta is shared by the splits that use it, and its PReLU is written as
`relu(x) - a relu(-x)` (same values) whose second-order backward is much cheaper than aten::prelu's,
and the library leaves glibc's malloc policy alone. `--tune-heap` calls `mfr.tune_heap()` first (what
`mfr train` / `mfr reproduce` do on CPU: glibc keeps freed heap for reuse, where by default it returns
the step's working set to the kernel at the end of every step and page-faults it back in next step);
it is process-wide, so every contestant runs under it then. Peak memory (RSS growth) of all three
is reported: on CPU the RSS high-water mark one call adds in a fresh process of its own.

mfr runs in both schedules: `lean` (the default: each split differentiated at once, peak memory
near the reference's) and `shared` (`MetaStepConfig(lean=False)`: every split's graph held for one
final backward). Last two lines, for the 3-domain leave-one-out meta-batch on the small CNN:
`meta_step_lean: vs_reference=R mem_vs_reference=R` (lean time and peak memory / the reference's;
goals <= 0.85 and <= 1.2) and `meta_step: vs_reference=R vs_plain=R` for the shared schedule:
vs_reference = time / reference time (goal <= 0.8), vs_plain = (time / splits) / plain time
(goal <= 3.0).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch
from _timing import best_of

import mfr
from mfr import MetaStep, MetaStepConfig, reference
from mfr.nn import Backbone


def loo(n):
    return [([d for d in range(n) if d != t], [t]) for t in range(n)]


def rss_mib():
    # The high-water mark of this process's own memory map. (getrusage's ru_maxrss would carry the
    # parent's high-water mark across fork + exec into the measuring child.)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_forward(net):
    """The reference's forward of the same architecture (plain PyTorch modules)."""
    if net.name == "small_cnn":
        return reference.small_cnn_forward
    c, s, w, d = net.in_channels, net.input_size, net.width, net.embedding_dim
    blocks = {
        "iresnet18": (2, 2, 2, 2),
        "iresnet34": (3, 4, 6, 3),
        "iresnet50": (3, 4, 14, 3),
        "resnet28": (2, 3, 5, 3),
    }
    module = (
        reference.MobileFaceNet(w, d, c, s)
        if net.name == "mobilefacenet"
        else reference.IResNet(blocks[net.name], w, d, c, s)
    )
    module.load_state_dict(net.state_dict(), strict=False)
    return reference.module_forward(module.to(net.parameter_list()[0].device), net.param_names, net.buffer_names)


def contestants(n_domains, args):
    """The three functions timed, on one network and one leave-one-out meta-batch."""
    b, size, device = args.ids_per_domain, args.size, args.device
    torch.manual_seed(0)
    net = Backbone(args.backbone, embedding_dim=args.dim, in_channels=3, input_size=size, width=args.width).to(device)
    ref_forward = reference_forward(net)
    doms = [torch.randn(2 * b, 3, size, size, device=device) for _ in range(n_domains)]
    splits = loo(n_domains)
    amp = None if args.amp == "off" else args.amp
    cfg = MetaStepConfig(alpha=0.01, amp=amp)
    shared_step = MetaStep(net, mfr.meta.replace(cfg, lean=False))
    lean_step = MetaStep(net, mfr.meta.replace(cfg, lean=True))
    params = net.parameter_list()

    def run(step):
        def ours():
            for p in params:
                p.grad = None
            step.step(doms, splits)
            return [p.grad for p in params]

        return ours

    def under_amp(fn):
        # the reference and plain training under torch.autocast, forwards in the low precision
        # (the step's own autocast covers its forwards only; their losses stay float32 either way)
        if amp is None:
            return fn
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16

        def wrapped():
            with torch.autocast(torch.device(device).type, dtype=dtype):
                return fn()

        return wrapped

    @under_amp
    def ref():
        return reference.meta_step(ref_forward, params, None, doms, splits, cfg)

    @under_amp
    def plain():
        for p in params:
            p.grad = None
        loss = 0
        for d in doms:
            emb = net(d).float()
            g, p = emb[:b], emb[b:]
            loss = loss + mfr.losses.soft_classification(g, p) + mfr.losses.hard_pair_attention(g, p)[0]
        loss.backward()

    return {"plain": plain, "reference": ref, "mfr": run(shared_step), "mfr_lean": run(lean_step)}, len(splits)


def peak_memory_mib(fn, name, n_domains, args):
    """Peak memory one call of `fn[name]` adds. CUDA: the allocator's peak above what was allocated
    before (in this process; `fn` has been timed, so it is warm). CPU: the RSS high-water mark a
    fresh process reaches above its set-up (one process per contestant, since a high-water mark
    never comes down; the median of three such processes)."""
    if args.device.startswith("cuda"):
        fn = fn[name]
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20

    def flag(k: str, v: object) -> str:
        k = k.replace("_", "-")
        return (f"--{k}" if v else f"--no-{k}") if isinstance(v, bool) else f"--{k}={v}"

    argv = [sys.executable, __file__, "--measure-rss", name, "--domains", str(n_domains)] + [
        flag(k, v) for k, v in vars(args).items() if k not in ("measure_rss", "domains", "memory")
    ]
    # The median of three fresh processes: one process's high-water mark varies by ~5% with how
    # glibc happens to place its arenas.
    runs = sorted(
        float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()[-1]) for _ in range(3)
    )
    return runs[1]


def measure_rss(args):
    fn, _ = contestants(args.domains, args)
    before = rss_mib()
    fn[args.measure_rss]()
    print(rss_mib() - before)


CONTESTANTS = ("plain", "reference", "mfr", "mfr_lean")


def bench(n_domains, args):
    fn, k = contestants(n_domains, args)
    r = torch.cat([g.flatten() for g in fn["reference"]()])
    for name in ("mfr", "mfr_lean"):
        a = torch.cat([g.flatten() for g in fn[name]()])
        # float32 through a deep second-order graph: agreement in norm (float64 parity, 1e-8 and
        # better, is a test); elementwise checks trip on near-zero entries.
        rel = ((a - r).norm() / r.norm()).item()
        # under amp both run their forwards in bf16/fp16 with different op orders: agreement to
        # the low precision's error only (tests/test_mixed_precision.py states it)
        limit = 1e-3 if args.amp == "off" else 0.5
        if args.amp != "off" and args.device == "cpu":
            # CPU bf16/fp16 without native support (no AVX512-BF16, e.g. AMD EPYC Zen 2/3) is emulated
            # with other roundings than the reference's ops: measured 1.5 on iresnet18 width 4 here
            # (under 0.5 on AVX-512 Xeons). The parity under amp is tests/test_mixed_precision.py's;
            # on the CPU this bench only reports it.
            if rel >= limit:
                print(
                    f"note: {name} under {args.amp} on this CPU: gradients differ from the reference by {rel:.1e} (relative)"
                )
            continue
        assert rel < limit, f"{name}: gradients differ from the reference: relative difference {rel:.1e}"
    times = {name: best_of(fn[name], args.repeats, warmup=True) for name in CONTESTANTS}
    nan = float("nan")
    mems = {name: peak_memory_mib(fn, name, n_domains, args) if args.memory else nan for name in CONTESTANTS}
    return times, mems, k


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="small_cnn", help="also: iresnet18, resnet28, mobilefacenet, ...")
    parser.add_argument("--ids-per-domain", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"), help="mixed-precision forwards")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure peak memory (on CPU: 3 fresh processes per contestant)",
    )
    parser.add_argument(
        "--tune-heap",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="call mfr.tune_heap() first, as the mfr command does on CPU (default: the library's own behaviour)",
    )
    parser.add_argument("--measure-rss", choices=CONTESTANTS, help=argparse.SUPPRESS)
    parser.add_argument("--domains", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tune_heap:
        mfr.tune_heap()
    if args.measure_rss:
        return measure_rss(args)
    print(
        f"{args.backbone} width {args.width}, {args.size}x{args.size} RGB, B={args.ids_per_domain}, {torch.get_num_threads()} torch threads, {args.device}, amp {args.amp}"
    )
    mem = "peak CUDA memory of one call MiB" if args.device.startswith("cuda") else "peak RSS growth of one call MiB"
    print(
        f"{'meta-batch':<16} {'plain s':>9} {'reference s':>12} {'shared s':>9} {'lean s':>9} {'vs_reference':>13} {'vs_plain/split':>15}   {mem} (plain/ref/shared/lean)"
    )
    result = lean = None
    for n in (3, 4):
        t, m, k = bench(n, args)
        ratios = {name: (t[name] / t["reference"], t[name] / k / t["plain"]) for name in ("mfr", "mfr_lean")}
        print(
            f"{f'LOO {n} domains':<16} {t['plain']:>9.4f} {t['reference']:>12.4f} {t['mfr']:>9.4f} {t['mfr_lean']:>9.4f} "
            f"{ratios['mfr'][0]:>6.2f}/{ratios['mfr_lean'][0]:.2f} {ratios['mfr'][1]:>8.2f}/{ratios['mfr_lean'][1]:.2f}   "
            + "/".join(f"{m[name]:.0f}" for name in CONTESTANTS)
        )
        images = n * 2 * args.ids_per_domain
        print(
            f"{'':<16} images/s: plain {images / t['plain']:.0f}, reference {images / t['reference']:.0f}, "
            f"shared {images / t['mfr']:.0f}, lean {images / t['mfr_lean']:.0f}"
        )
        if n == 3:
            result = ratios["mfr"]
            lean = (ratios["mfr_lean"][0], m["mfr_lean"] / m["reference"])
    print(f"heap tuned (mfr.tune_heap, --tune-heap): {'yes' if mfr.build_info()['heap_tuned'] else 'no'}")
    if args.backbone != "small_cnn":
        print("(the last line's contract is the small CNN; this run used another backbone)")
    print(f"meta_step_lean: vs_reference={lean[0]:.2f} mem_vs_reference={lean[1]:.2f}")
    print(f"meta_step: vs_reference={result[0]:.2f} vs_plain={result[1]:.2f}")


if __name__ == "__main__":
    main()
