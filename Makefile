# The two commands of the README: `make demo` (set up, build, run the main job) and `make test`.
# Both create .venv from scratch when missing; nothing is downloaded but packages from PyPI/crates.io.

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

# torch-sys runs `python` from the active venv to find the libtorch inside the torch wheel.
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
export LIBTORCH_USE_PYTORCH := 1

.PHONY: setup install demo test lint rust-test py-test bench wheel gpu-bundle clean

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
	$(VENV)/bin/mfr demo

lint: setup
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

rust-test: setup
	env -u LD_LIBRARY_PATH cargo test

py-test: install
	$(PY) -m pytest

test: lint rust-test py-test

# Benchmarks print ratios against baselines measured in the same run (never thresholds).
bench: install
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) benches/metrics.py
	$(PY) benches/sampler.py
	$(PY) benches/pair_scores.py

# A wheel for another machine that has torch 2.11.0 (e.g. the GPU check): dist/mfr-*.whl
wheel: setup
	$(VENV)/bin/maturin build --release --out dist

# Everything scripts/gpu_check.sh needs offline: the mfr wheel and the test tools' wheels.
gpu-bundle: wheel
	rm -rf wheelhouse && mkdir -p wheelhouse
	cp dist/mfr-*.whl wheelhouse/
	$(PY) -m pip download --quiet --dest wheelhouse pytest hypothesis

clean:
	cargo clean
	rm -rf dist wheelhouse
