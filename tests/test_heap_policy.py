"""The library never changes the process's malloc policy; `mfr.tune_heap()` and the training
commands do, and the commands say so.

glibc has no getter for its thresholds, so the check is behavioural: a fresh process frees 96 MB
of small heap blocks and reads how much of it glibc handed back to the kernel. With glibc's
policy (trim threshold at most 64 MiB even after its own dynamic raise) most of it goes back; after
`mallopt(M_TRIM_THRESHOLD, INT_MAX)` (what `tune_heap` sets) none does.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest
from cli_args import TINY_GRAY

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds"
)

_PROBE = textwrap.dedent(
    """
    import ctypes, sys, warnings
    import numpy as np, torch, mfr
    from mfr import MetaStep, MetaStepConfig
    from mfr.nn import Backbone

    if "tune" in sys.argv:
        mfr.tune_heap()
    if "work" in sys.argv:  # what a library user does: metrics of every dtype and size, meta-steps
        rng = np.random.default_rng(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n in (3_000, 300_000, 3_000_000):
                labels = rng.random(n) < 0.3
                scores = rng.normal(0, 0.1, n) + 0.5 * labels
                for dtype in (np.float64, np.float32):
                    mfr.metrics.verification_report(scores.astype(dtype), labels, fars=(1e-3,), n_bootstrap=5)
                    mfr.metrics.roc_curve(scores.astype(dtype), labels)
        emb = torch.nn.functional.normalize(torch.randn(200, 16), dim=1)
        mfr.pair_scores(emb, torch.randint(0, 200, (100_000, 2)))
        torch.manual_seed(0)
        net = Backbone("small_cnn", embedding_dim=16, in_channels=1, input_size=16, width=4)
        doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]
        step = MetaStep(net, MetaStepConfig())
        for _ in range(3):
            step.step(doms, [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])])

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    # 64 KiB blocks: under glibc's default mmap threshold (128 KiB), so they come from the heap.
    blocks = [libc.malloc(64 << 10) for _ in range(1536)]
    for b in blocks:
        libc.memset(b, 1, 64 << 10)
    before = rss()
    for b in reversed(blocks):
        libc.free(b)
    print((before - rss()) >> 20, mfr.build_info()["heap_tuned"])
    """
)


def _returned_mib(*modes: str) -> tuple[int, bool]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modes], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    mib, tuned = out.stdout.split()
    return int(mib), tuned == "True"


def test_importing_mfr_and_library_calls_leave_glibcs_thresholds_alone():
    returned, tuned = _returned_mib("work")
    assert not tuned
    assert returned >= 30, f"only {returned} MiB of 96 freed went back to the kernel: the trim threshold was raised"


def test_tune_heap_is_the_opt_in_and_keeps_freed_heap():
    returned, tuned = _returned_mib("tune")
    assert tuned
    assert returned <= 8, f"{returned} MiB went back to the kernel although the heap was tuned"


def test_the_training_commands_tune_the_heap_and_say_so(tmp_path):
    script = textwrap.dedent(
        """
        import sys, mfr
        from mfr.experiments.cli import main
        code = main(sys.argv[1:])
        print("tuned" if mfr.build_info()["heap_tuned"] else "untouched")
        sys.exit(code)
        """
    )
    args = ["train", *TINY_GRAY, "--steps", "1", "--eval-every", "0", "--out", str(tmp_path / "run")]

    def run(env_value: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "MFR_HEAP_REUSE"}
        if env_value is not None:
            env["MFR_HEAP_REUSE"] = env_value
        tests = os.path.dirname(__file__)
        env["PYTHONPATH"] = os.pathsep.join([tests, env.get("PYTHONPATH", "")])
        return subprocess.run(
            [sys.executable, "-c", script, *args, "--overwrite"], capture_output=True, text=True, timeout=300, env=env
        )

    tuned = run(None)
    assert tuned.returncode == 0, tuned.stderr
    assert tuned.stdout.strip().endswith("tuned")
    assert "mfr: heap tuned for CPU training" in tuned.stdout
    kept = run("0")
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip().endswith("untouched")
    assert "glibc malloc defaults kept (MFR_HEAP_REUSE=0)" in kept.stdout
