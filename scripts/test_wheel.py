"""The built wheel tested as a user gets it (`make wheel-test`, part of `make test`).

1. Checks the wheel file: a manylinux platform tag, no vendored torch / CUDA library, metadata
   requiring torch==2.11.0 and numpy, under 30 MB (its size is printed).
2. Creates a fresh virtual environment outside the source tree, installs torch 2.11.0, the wheel
   and the test tools into it, copies `tests/` next to it (never `python/`), and runs the
   import-level and end-to-end tests there (metrics, sampler, meta-step, a short `mfr reproduce`,
   the README's snippets)
   with no Rust toolchain on PATH: the tests import the installed `mfr`, and a check in the run
   fails if `cargo` or `rustc` can be found or if `mfr` comes from anywhere but the new venv.

Usage: python scripts/test_wheel.py dist/mfr-*.whl [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 30 * 2**20
#: Libraries the wheel must link from the installed torch, never carry.
FOREIGN = ("libtorch", "libc10", "libcuda", "libcudart", "libcublas", "libcudnn", "libnccl", "libnvrtc", "libgomp")
#: The tests run against the installed wheel: import-level and end to end.
TESTS = [
    "tests/test_package.py",
    "tests/test_stubs.py",
    "tests/test_metrics_roc.py",
    "tests/test_metrics_report.py",
    "tests/test_metrics_distributions.py",
    "tests/test_sampler.py",
    "tests/test_meta_step.py",
    "tests/test_heap_policy.py",
    "tests/experiments/test_protocol_runs.py",
]
#: pytest settings of pyproject.toml (which is not copied: the tests run outside the source tree).
PYTEST_INI = """[pytest]
pythonpath = .
addopts = -ra --strict-markers -p no:cacheprovider
xfail_strict = true
filterwarnings = error
markers =
    cuda: needs an NVIDIA GPU (skipped when torch.cuda.is_available() is false)
    slow: takes more than a few seconds; still run in CI
"""
#: Loaded first in the run: the wheel's module is the one tested, and no toolchain is in reach.
CONFTEST_GUARD = """

def pytest_sessionstart(session):
    import shutil as _shutil
    import sys as _sys

    import mfr as _mfr

    assert _mfr.__file__.startswith(_sys.prefix), f"mfr imported from {_mfr.__file__}, not the wheel's venv"
    for tool in ("cargo", "rustc"):
        assert _shutil.which(tool) is None, f"{tool} is on PATH in the wheel test"
"""


def check_wheel(wheel: Path) -> None:
    size = wheel.stat().st_size
    print(f"wheel: {wheel.name}, {size / 2**20:.1f} MiB (limit {MAX_BYTES / 2**20:.0f} MiB)")
    if size > MAX_BYTES:
        sys.exit(f"test_wheel: {wheel.name} is {size / 2**20:.1f} MiB, over the 30 MiB limit")
    if "manylinux_" not in wheel.name:
        sys.exit(f"test_wheel: {wheel.name} has no manylinux platform tag (run `make wheel`)")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        carried = [n for n in names if Path(n).name.startswith(FOREIGN)]
        if carried:
            sys.exit(f"test_wheel: the wheel carries libraries it must link from torch: {carried}")
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for needed in ("torch==2.11.0", "numpy"):
        if not any(r.replace(" ", "").startswith(needed) for r in requires):
            sys.exit(f"test_wheel: the metadata does not require {needed} (Requires-Dist: {requires})")
    plain = [r for r in requires if "extra ==" not in r]
    print(f"wheel: no vendored torch/CUDA library; requires {', '.join(plain)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--keep", type=Path, default=None, help="build the venv here and keep it")
    args = parser.parse_args()
    wheel = args.wheel.resolve()
    check_wheel(wheel)
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="mfr-wheel-test-"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        tools = ["pytest>=8", "hypothesis>=6.100", "scikit-learn>=1.3", "mypy==2.4.1", "matplotlib>=3.7"]
        subprocess.run([*pip, "torch==2.11.0", str(wheel), *tools], check=True)
        tests = work / "tests"
        shutil.copytree(ROOT / "tests", tests, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        (tests / "pytest.ini").write_text(PYTEST_INI)
        shutil.copy(ROOT / "README.md", work / "README.md")  # its snippets run against the wheel
        conftest = tests / "conftest.py"
        conftest.write_text(conftest.read_text() + CONFTEST_GUARD)
        # No Rust toolchain and nothing of the source tree: the venv's bin and the system's.
        path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CARGO_HOME", "RUSTUP_HOME")
        }
        env.update(PATH=path, MFR_TEST_ANY_INSTALL="")
        selected = [str(work / t) for t in TESTS]
        print(f"wheel test: {len(TESTS)} test files against the installed wheel in {venv}", flush=True)
        return subprocess.run([str(py), "-m", "pytest", "-q", *selected], cwd=tests, env=env).returncode
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
