"""The foundation: installation, build info, version pin, exception tree, thread settings."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mfr


def test_version_and_build_info_keys():
    info = mfr.build_info()
    for key in ("mfr", "torch", "cuda_available", "cuda_device_count", "num_threads"):
        assert key in info
    assert info["mfr"] == mfr.__version__
    assert info["torch"].split("+")[0] == "2.11.0"
    assert info["libtorch"] == "2.11.0"
    assert info["cuda_available"] == torch.cuda.is_available()
    assert info["cuda_device_count"] == torch.cuda.device_count()
    assert info["num_threads"] == mfr.get_num_threads() >= 1


def test_one_version_everywhere_and_the_commit_recorded():
    # Cargo.toml is the one version source: the wheel's metadata, mfr.__version__, build_info()
    # and `mfr --version` all show it, with the commit the core was built from.
    import importlib.metadata
    import re

    root = Path(__file__).resolve().parents[1]
    cargo = root / "Cargo.toml"
    if cargo.exists():  # the [package] table comes first
        assert re.search(r'^version = "([^"]+)"', cargo.read_text(), re.M).group(1) == mfr.__version__
    assert importlib.metadata.version("mfr") == mfr.__version__
    commit = mfr.build_info()["commit"]
    assert commit == "unknown" or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    if head.returncode == 0 and commit != "unknown" and not commit.endswith("-dirty"):
        # A clean build records the commit it was built from (CI builds a fresh clone's HEAD).
        assert commit == head.stdout.strip()
    out = subprocess.run(
        [sys.executable, "-m", "mfr", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == f"mfr {mfr.__version__} (commit {commit}, torch {torch.__version__})"


def test_installed_module_is_not_the_source_tree_copy():
    # The tests exercise the installed package, as a user gets it.
    assert (
        "site-packages" in mfr._core.__file__
        or "dist-packages" in mfr._core.__file__
        or os.environ.get("MFR_TEST_ANY_INSTALL")
    )


@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd not available")
def test_core_links_libtorch_cuda_from_installed_torch():
    out = subprocess.run(["ldd", mfr._core.__file__], capture_output=True, text=True, check=True).stdout
    torch_lib = Path(torch.__file__).parent / "lib"
    lines = {line.split()[0]: line for line in out.splitlines() if "=>" in line}
    for lib in ("libtorch_cpu.so", "libc10.so") + (
        ("libtorch_cuda.so",) if (torch_lib / "libtorch_cuda.so").exists() else ()
    ):
        assert lib in lines, f"{lib} not linked:\n{out}"
        assert "not found" not in lines[lib] or os.environ.get("MFR_TEST_ANY_INSTALL"), out
    if (torch_lib / "libtorch_cuda.so").exists():
        assert mfr.build_info()["linked_cuda"] is True


def test_exception_hierarchy():
    assert issubclass(mfr.MfrError, Exception)
    assert issubclass(mfr.InvalidInputError, mfr.MfrError) and issubclass(mfr.InvalidInputError, ValueError)
    assert issubclass(mfr.DataError, mfr.MfrError) and issubclass(mfr.DataError, OSError)
    assert issubclass(mfr.DeviceError, mfr.MfrError) and issubclass(mfr.DeviceError, RuntimeError)
    assert issubclass(mfr.DistributedError, mfr.MfrError) and issubclass(mfr.DistributedError, RuntimeError)
    assert mfr.experiments.distributed.DistributedError is mfr.DistributedError
    # Warnings: one tree too, rooted at mfr.MfrWarning.
    assert issubclass(mfr.MfrWarning, UserWarning) and issubclass(mfr.DataWarning, mfr.MfrWarning)
    assert issubclass(mfr.data.DecodeWarning, mfr.DataWarning) and issubclass(
        mfr.metrics.UndefinedMetricWarning, mfr.MfrWarning
    )
    for cls in (
        mfr.MfrError,
        mfr.InvalidInputError,
        mfr.DataError,
        mfr.DeviceError,
        mfr.DistributedError,
        mfr.MfrWarning,
        mfr.DataWarning,
        mfr.data.DecodeWarning,
        mfr.metrics.UndefinedMetricWarning,
    ):
        assert cls.__module__ == "mfr"
        assert cls.__doc__
    with pytest.raises(mfr.InvalidInputError, match="synthetic_embeddings: all sizes must be >= 1"):
        mfr.synthetic.synthetic_embeddings(0)


def test_rust_panic_becomes_mfr_error_not_abort():
    with pytest.raises(mfr.MfrError, match=r"internal error.*kaboom 42"):
        mfr._core._raise_panic_for_tests("kaboom 42")
    # The interpreter and the core keep working afterwards.
    assert mfr.pair_scores(torch.eye(2), [[0, 1]]).tolist() == [0.0]


def test_set_num_threads_roundtrip_and_validation():
    before = mfr.get_num_threads()
    try:
        mfr.set_num_threads(3)
        assert mfr.get_num_threads() == 3
        assert mfr.build_info()["num_threads"] == 3
        e = torch.randn(100, 8)
        pairs = torch.randint(0, 100, (1000, 2))
        mfr.set_num_threads(1)
        one = mfr.pair_scores(e, pairs)
        mfr.set_num_threads(2)
        assert (mfr.pair_scores(e, pairs) == one).all()
        with pytest.raises(
            mfr.InvalidInputError, match=r"set_num_threads: argument 'n' must be an integer in \[0, 4096\], got -1"
        ):
            mfr.set_num_threads(-1)
    finally:
        mfr.set_num_threads(0)
    assert mfr.get_num_threads() == before or os.environ.get("MFR_NUM_THREADS")


def test_env_var_sets_default_threads():
    code = "import mfr; print(mfr.get_num_threads())"
    env = dict(os.environ, MFR_NUM_THREADS="5")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "5"


def test_import_order_is_torch_first():
    # mfr imports torch itself; a fresh interpreter importing only mfr must work.
    out = subprocess.run(
        [sys.executable, "-c", "import mfr, sys; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "True"


def test_cli_demo_runs_end_to_end():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfr",
            "demo",
            "--domains",
            "2",
            "--ids",
            "20",
            "--impostors",
            "500",
            "--bootstrap",
            "50",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mfr build: mfr=" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2
    for row in rows:
        auc, low, high = float(row[2]), float(row[3].strip("[,")), float(row[4].strip("]"))
        assert 0.5 < auc <= 1.0 and low <= auc <= high


def test_cli_info_is_json():
    import json

    out = subprocess.run([sys.executable, "-m", "mfr", "info"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["mfr"] == mfr.__version__


def test_the_library_imports_without_the_harness_and_loads_its_names_on_first_use():
    code = (
        "import sys, mfr\n"
        "assert not [m for m in sys.modules if m.startswith('mfr.experiments')], sorted(sys.modules)\n"
        "from mfr.experiments.train import TrainConfig\n"
        "import mfr.experiments.reproduce as r\n"
        "assert TrainConfig is mfr.TrainConfig is mfr.experiments.TrainConfig\n"
        "assert mfr.run_protocol is r.run_protocol and mfr.ProtocolResult is r.ProtocolResult\n"
        "assert not any(type(f).__name__ == 'HarnessAlias' for f in sys.meta_path)\n"
        "try:\n    import mfr.train\nexcept ModuleNotFoundError:\n    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_no_import_cycles_between_modules():
    """Every module imports at top level only modules below it: library < harness, and nothing
    inside the library imports the harness."""
    import ast
    from pathlib import Path

    root = Path(mfr.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        in_function = {
            id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and id(node) in in_function
                and node.level > 0
                and path.name != "__init__.py"
            ):
                raise AssertionError(
                    f"{path.relative_to(root)}:{node.lineno}: a deferred relative import (a cycle held by laziness)"
                )
            if (
                "experiments" not in path.parts
                and path.name != "__main__.py"
                and isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith(("experiments", "mfr.experiments"))
            ):
                raise AssertionError(f"{path.relative_to(root)}:{node.lineno}: the library imports the harness")


#: Tests of the repository itself (its docs and sources), skipped where only the tests were copied
#: next to an installed wheel (scripts/test_wheel.py).
_in_source_tree = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "src").is_dir(), reason="needs the source tree (a wheel test)"
)


@_in_source_tree
def test_the_architecture_page_names_every_source_file():
    """docs/architecture.md is a file-by-file map: every Rust and Python source is in it."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "architecture.md").read_text()
    block = page.split("```", 2)[1]
    lines = [line.split("  ")[0] for line in block.splitlines() if line.strip()]
    files = [
        *root.glob("src/**/*.rs"),
        *root.glob("python/mfr/**/*.py"),
        *root.glob("python/mfr/**/*.pyi"),
        root / "python/mfr/py.typed",
    ]

    def named(path: Path) -> bool:
        rel = path.relative_to(root).as_posix()
        folder, name = rel.rsplit("/", 1)
        if name == "mod.rs" and any(line.startswith("src/*/mod.rs") or line.startswith(rel) for line in lines):
            return True
        for line in lines:
            head = line.split(",")[0].strip()
            if head == rel or (
                head.startswith(folder + "/")
                and "/" not in head[len(folder) + 1 :]
                and name in [t.strip() for t in line.split(",")]
            ):
                return True
        return False

    missing = [p.relative_to(root).as_posix() for p in files if not named(p)]
    assert not missing, f"docs/architecture.md does not name: {missing}"


@_in_source_tree
def test_every_relative_link_in_the_readme_and_docs_resolves():
    """A newcomer follows links from the README into docs/: none of them may lead nowhere."""
    import re

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:|^#", target) or "{" in target:  # a template placeholder
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(root)} -> {target}")
    assert not broken, broken
    assert len(pages) > 5


def test_the_readme_snippets_run():
    """The README's Python snippets are what a newcomer pastes first: each must run as written."""
    import re

    root = Path(__file__).resolve().parents[1]
    snippets = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), flags=re.S)
    assert len(snippets) >= 2
    for code in snippets:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{code}\n{proc.stderr[-2000:]}"
