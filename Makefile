# The two commands of the README: `make demo` (set up, build, run the main job) and `make test`.
# Both create .venv from scratch when missing; nothing is downloaded but packages from PyPI/crates.io.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

# torch-sys runs `python` from the active venv to find the libtorch inside the torch wheel.
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: setup install demo test lint rust-test py-test wheel-test docs bench wheel sdist gpu-bundle clean

$(VENV)/.installed: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

# A real (non-editable) install into the venv, as a user gets it.
install: setup
	$(PY) -m pip install --quiet --no-build-isolation --no-deps --force-reinstall .

demo: install
	$(VENV)/bin/mfr reproduce --force

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches scripts
	$(VENV)/bin/ruff format --check python tests benches scripts
	$(PY) -m mypy

rust-test: setup
	env -u LD_LIBRARY_PATH cargo test

py-test: install
	$(PY) -m pytest

test: lint rust-test py-test wheel-test docs

# Benchmarks print ratios against baselines measured in the same run (never thresholds).
bench: install
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) benches/metrics.py
	$(PY) benches/sampler.py
	$(PY) benches/meta_step.py
	$(PY) benches/pair_scores.py
	$(PY) benches/distributed.py

# A manylinux wheel for this machine's Python: dist/mfr-*.whl. maturin builds it; auditwheel gives it
# the most compatible manylinux tag its symbols allow (manylinux_2_34 on Debian 12: see docs/install.md)
# without copying libtorch, libc10 or the CUDA libraries in (the module links those of the installed torch).
wheel: setup
	rm -rf build/wheel dist/mfr-*.whl
	$(VENV)/bin/maturin build --release --out build/wheel
	$(VENV)/bin/auditwheel repair --exclude 'libtorch*.so' --exclude 'libc10*.so' -w dist build/wheel/mfr-*.whl
	$(VENV)/bin/auditwheel show dist/mfr-*.whl
	ls -la dist/mfr-*.whl

# The wheel as a user gets it: a fresh venv outside the tree, no Rust on PATH (scripts/test_wheel.py).
wheel-test: wheel
	$(PY) scripts/test_wheel.py $$(ls dist/mfr-*.whl)

# A source distribution (builds with `pip install --no-build-isolation` next to torch 2.11.0).
sdist: setup
	rm -f dist/mfr-*.tar.gz
	$(VENV)/bin/maturin sdist --out dist

# The documentation site (site/): mkdocs-material + mkdocstrings, warnings are errors.
docs: install
	$(PY) scripts/build_docs.py

# The CUDA check bundle for the GPU machines (Python 3.12 with torch 2.11.0, no Rust, no network):
# a cp312 wheel built against a cp312 torch in its own venv, in wheelhouse/ (carry it).
# pyenv machines keep 3.12 out of PATH; use it directly when present.
GPU_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3.12)
GPU_VENV   ?= .venv-gpu
gpu-bundle:
	test -x $(GPU_VENV)/bin/python || $(GPU_PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --quiet "torch==2.11.0" numpy "maturin>=1.7,<2"
	rm -rf wheelhouse && mkdir -p wheelhouse
	env VIRTUAL_ENV=$(abspath $(GPU_VENV)) PATH=$(abspath $(GPU_VENV))/bin:$$PATH CARGO_TARGET_DIR=target/gpu \
	    $(GPU_VENV)/bin/maturin build --release --interpreter $(GPU_VENV)/bin/python --out wheelhouse
	ls -la wheelhouse

clean:
	cargo clean
	rm -rf dist build site wheelhouse $(GPU_VENV)
