#!/usr/bin/env bash
# One prepared CUDA check for a GPU machine that has Python 3.12 with torch 2.11.0 (plus pytest,
# hypothesis, scikit-learn) but no Rust toolchain and no network.
#   here:             make gpu-bundle            (a cp312 wheel in wheelhouse/, ~2 MB)
#   on the GPU box:   bash scripts/gpu_check.sh  (from the repository root, wheelhouse/ carried)
# It installs the wheel into a private folder on PYTHONPATH (the machine's torch stays in charge),
# prints what the Rust core sees, runs the `cuda`-marked tests and then the rest of the suite, and
# ends with a short table. Outputs also go to $OUT (when set) or /tmp/mfr_gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-wheelhouse}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/mfr_gpu_check}
SITE=/tmp/mfr_gpu_site
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

ls "$WHEELS"/mfr-*.whl >/dev/null 2>&1 || { echo "no $WHEELS/mfr-*.whl: run 'make gpu-bundle' on the build machine"; exit 2; }
"$PY" -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.11.0' else f'torch {v} found, 2.11.0 needed')" || exit 2
rm -rf "$SITE"
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/mfr-*.whl || exit 2
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# The tests check a site-packages install by default; this one lives in $SITE on purpose.
export MFR_TEST_ANY_INSTALL=1

"$PY" - <<'PY' | tee "$OUT/build_info.txt"
import mfr
info = mfr.build_info()
for k in ("mfr", "torch", "torch_cuda", "linked_cuda", "cuda_available", "cuda_device_count", "cuda_devices", "num_threads"):
    print(f"{k:>18}: {info.get(k)}")
PY

START=$(date +%s)
"$PY" -m pytest tests -m cuda -v -p no:cacheprovider --junitxml="$OUT/cuda.xml" 2>&1 | tee "$OUT/cuda.log"
CUDA_RC=${PIPESTATUS[0]}
"$PY" -m pytest tests -m "not cuda and not slow" -q -p no:cacheprovider -x 2>&1 | tail -15 | tee "$OUT/rest.log"
REST_RC=${PIPESTATUS[0]}

# Benchmarks on the GPU (same run, same device): the meta-step on the small CNN and on iresnet18.
if [ "${GPU_BENCH:-1}" = 1 ]; then
  ( cd benches && "$PY" meta_step.py --device cuda --repeats 5 && \
    "$PY" meta_step.py --device cuda --backbone iresnet18 --size 112 --width 64 --dim 512 --repeats 3 ) 2>&1 | tee "$OUT/bench.log"
  BENCH_RC=${PIPESTATUS[0]}
fi

result() { [ "$1" = 0 ] && echo pass || echo "FAIL (rc $1)"; }
echo
echo "| check                   | result |"
echo "|-------------------------|--------|"
printf "| %-23s | %s |\n" "cuda-marked tests" "$(result "$CUDA_RC")"
printf "| %-23s | %s |\n" "rest of the suite" "$(result "$REST_RC")"
printf "| %-23s | %s |\n" "cuda tests run/failed" "$(grep -o 'tests="[0-9]*"' "$OUT/cuda.xml" | head -1) $(grep -o 'failures="[0-9]*"' "$OUT/cuda.xml" | head -1) $(grep -o 'skipped="[0-9]*"' "$OUT/cuda.xml" | head -1)"
[ -n "${BENCH_RC:-}" ] && printf "| %-23s | %s |\n" "cuda benchmarks" "$(result "$BENCH_RC")"
printf "| %-23s | %s s |\n" "wall time" "$(( $(date +%s) - START ))"
[ "$CUDA_RC" = 0 ] && [ "$REST_RC" = 0 ]
