"""The shipped stub must describe the compiled module exactly (mypy.stubtest)."""

import subprocess
import sys
from pathlib import Path

import pytest

import mfr


def test_py_typed_and_stub_are_installed():
    pkg = Path(mfr.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()


@pytest.mark.slow
def test_stubtest_against_compiled_module(tmp_path):
    pytest.importorskip("mypy")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "mfr._core",
            "--concise",
            "--mypy-config-file",
            str(tmp_path / "none.ini"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_names_are_in_stub():
    stub = (Path(mfr.__file__).parent / "_core.pyi").read_text()
    public = [n for n in dir(mfr._core) if not n.startswith("__")]
    for name in public:
        assert (
            f"def {name}(" in stub or f"class {name}(" in stub or f"class {name}:" in stub or f"\n{name}: " in stub
        ), name
