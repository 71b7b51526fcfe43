#!/usr/bin/env bash
# One prepared CUDA check for a machine with an NVIDIA GPU, torch 2.11.0 and no Rust toolchain
# (and no network). Build the bundle here first:   make gpu-bundle
# then, on the GPU machine, from the repository root:   bash scripts/gpu_check.sh
# It installs the prebuilt wheel into a throwaway venv that sees the system torch, runs the
# `cuda`-marked tests (and the rest of the suite as a sanity check) and prints a short table.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-wheelhouse}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/mfr_gpu_check}
mkdir -p "$OUT"

ls "$WHEELS"/mfr-*.whl >/dev/null 2>&1 || { echo "no $WHEELS/mfr-*.whl: run 'make gpu-bundle' on the build machine"; exit 2; }
"$PY" -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.11.0' else f'torch {v} found, 2.11.0 needed')" || exit 2

VENV="$OUT/venv"
"$PY" -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps "$WHEELS"/mfr-*.whl
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" pytest hypothesis 2>/dev/null \
  || echo "note: pytest/hypothesis not installable offline; using the system ones"

"$VENV/bin/python" - <<'PY' | tee "$OUT/build_info.txt"
import mfr
info = mfr.build_info()
for k in ("mfr", "torch", "torch_cuda", "linked_cuda", "cuda_available", "cuda_device_count", "cuda_devices", "num_threads"):
    print(f"{k:>18}: {info.get(k)}")
PY

"$VENV/bin/python" -m pytest tests -m cuda -v -p no:cacheprovider --junitxml="$OUT/cuda.xml" -o addopts="" | tee "$OUT/cuda.log"
CUDA_RC=${PIPESTATUS[0]}
"$VENV/bin/python" -m pytest tests -m "not cuda and not slow" -q -p no:cacheprovider -o addopts="" | tail -3 | tee "$OUT/rest.log"
REST_RC=${PIPESTATUS[0]}

echo
echo "| check                  | result |"
echo "|------------------------|--------|"
printf "| %-22s | %-6s |\n" "cuda-marked tests" "$([ "$CUDA_RC" = 0 ] && echo pass || echo FAIL)"
printf "| %-22s | %-6s |\n" "rest of suite" "$([ "$REST_RC" = 0 ] && echo pass || echo FAIL)"
grep -o 'tests="[0-9]*"\|failures="[0-9]*"\|skipped="[0-9]*"' "$OUT/cuda.xml" | head -3 | tr '\n' ' '; echo
[ "$CUDA_RC" = 0 ] && [ "$REST_RC" = 0 ]
