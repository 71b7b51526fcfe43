"""The MFR meta-step: mfr's Rust step against (a) the straightforward per-split PyTorch reference
(`mfr.reference.meta_step`, the algorithm as the paper writes it) and (b) a plain forward+backward
of the same backbone over the same images (every domain once), same thread count, same device.

Gradients of mfr and the reference are checked equal before timing. mfr's advantages: each domain's
forward at theta is shared by the splits that use it, and its PReLU is written as
`relu(x) - a relu(-x)` (same values) whose second-order backward is much cheaper than aten::prelu's,
and its first CPU step makes glibc keep freed heap for reuse (`MFR_HEAP_REUSE`; the step frees its
whole working set at its end, which glibc otherwise returns to the kernel only to page-fault it
back in next step). That setting is process-wide, so the reference and plain timings run under it
too (the gradient check runs mfr's step before any timing). Peak memory (RSS growth) of all three
is reported: on CPU the RSS high-water mark one call adds in a fresh process of its own.

Last line: `meta_step: vs_reference=R vs_plain=R` for the 3-domain leave-one-out meta-batch on
the small CNN: vs_reference = mfr time / reference time (goal <= 0.8), vs_plain =
(mfr time / splits) / plain time (goal <= 3.0).
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
    cfg = MetaStepConfig(alpha=0.01)
    step = MetaStep(net, cfg)
    params = net.parameter_list()

    def ours():
        for p in params:
            p.grad = None
        step.step(doms, splits)
        return [p.grad for p in params]

    def ref():
        return reference.meta_step(ref_forward, params, None, doms, splits, cfg)

    def plain():
        for p in params:
            p.grad = None
        loss = 0
        for d in doms:
            emb = net(d)
            g, p = emb[:b], emb[b:]
            loss = loss + mfr.losses.soft_classification(g, p) + mfr.losses.hard_pair_attention(g, p)[0]
        loss.backward()

    return {"plain": plain, "reference": ref, "mfr": ours}, len(splits)


def peak_memory_mib(fn, name, n_domains, args):
    """Peak memory one call of `fn[name]` adds. CUDA: the allocator's peak above what was allocated
    before (in this process; `fn` has been timed, so it is warm). CPU: the RSS high-water mark a
    fresh process reaches above its set-up (one process per contestant, since a high-water mark
    never comes down)."""
    if args.device.startswith("cuda"):
        fn = fn[name]
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    argv = [sys.executable, __file__, "--measure-rss", name, "--domains", str(n_domains)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("measure_rss", "domains")
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def measure_rss(args):
    fn, _ = contestants(args.domains, args)
    before = rss_mib()
    fn[args.measure_rss]()
    print(rss_mib() - before)


def bench(n_domains, args):
    fn, k = contestants(n_domains, args)
    a, r = torch.cat([g.flatten() for g in fn["mfr"]()]), torch.cat([g.flatten() for g in fn["reference"]()])
    # float32 through a deep second-order graph: agreement in norm (float64 parity, 1e-8 and better,
    # is a test); elementwise checks trip on near-zero entries.
    rel = ((a - r).norm() / r.norm()).item()
    assert rel < 1e-3, f"gradients differ from the reference: relative difference {rel:.1e}"
    times = {name: best_of(fn[name], args.repeats, warmup=True) for name in ("plain", "reference", "mfr")}
    mems = {name: peak_memory_mib(fn, name, n_domains, args) for name in ("plain", "reference", "mfr")}
    return times, mems, k


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="small_cnn", help="also: iresnet18, resnet28, mobilefacenet, ...")
    parser.add_argument("--ids-per-domain", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--measure-rss", choices=("plain", "reference", "mfr"), help=argparse.SUPPRESS)
    parser.add_argument("--domains", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_rss:
        return measure_rss(args)
    print(
        f"{args.backbone} width {args.width}, {args.size}x{args.size} RGB, B={args.ids_per_domain}, {torch.get_num_threads()} torch threads, {args.device}"
    )
    mem = "peak CUDA memory of one call MiB" if args.device.startswith("cuda") else "peak RSS growth of one call MiB"
    print(
        f"{'meta-batch':<16} {'plain s':>9} {'reference s':>12} {'mfr s':>9} {'vs_reference':>13} {'vs_plain/split':>15}   {mem} (plain/ref/mfr)"
    )
    result = None
    for n in (3, 4):
        t, m, k = bench(n, args)
        vs_ref, vs_plain = t["mfr"] / t["reference"], t["mfr"] / k / t["plain"]
        print(
            f"{f'LOO {n} domains':<16} {t['plain']:>9.4f} {t['reference']:>12.4f} {t['mfr']:>9.4f} {vs_ref:>13.2f} {vs_plain:>15.2f}   {m['plain']:.0f}/{m['reference']:.0f}/{m['mfr']:.0f}"
        )
        if n == 3:
            result = (vs_ref, vs_plain)
    print(f"heap reuse (MFR_HEAP_REUSE): {'on' if mfr.build_info()['heap_reuse'] else 'off'}")
    if args.backbone != "small_cnn":
        print("(the last line's contract is the small CNN; this run used another backbone)")
    print(f"meta_step: vs_reference={result[0]:.2f} vs_plain={result[1]:.2f}")


if __name__ == "__main__":
    main()
