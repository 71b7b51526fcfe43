#!/usr/bin/env bash
# One prepared CUDA check for a GPU machine that has Python 3.12 with torch 2.11.0 (plus pytest,
# hypothesis, scikit-learn) but no Rust toolchain and no network.
#   here:             make gpu-bundle            (a cp312 wheel in wheelhouse/, ~2 MB)
#   on the GPU box:   bash scripts/gpu_check.sh  (from the repository root, wheelhouse/ carried)
# It installs the wheel into a private folder on PYTHONPATH (the machine's torch stays in charge),
# prints what the Rust core sees, runs the `cuda`-marked tests, the meta-step benchmark on iresnet50
# at 112x112 (amp off and bf16: mfr lean and shared vs the per-split reference vs plain training,
# images/s and peak GPU memory), a short real training per setting (scripts/gpu_training.py), then
# the data pipeline (sync vs prefetch, benches/pipeline.py), the rest of the suite with the time
# left, and ends with a short table. Every stage has a time
# limit so that the whole check fits in 8 minutes. Outputs also go to $OUT (when set) or
# /tmp/mfr_gpu_check.
#   MFR_GPU_CHECK_DRY=1: a CPU rehearsal (the installed mfr, tiny sizes, no wheel, no rest of the
#   suite), run by tests/test_gpu_check.py so the script cannot rot while no GPU is lent.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-wheelhouse}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/mfr_gpu_check}
SITE=/tmp/mfr_gpu_site
DRY=${MFR_GPU_CHECK_DRY:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  NET="--backbone iresnet18 --size 16 --width 4 --dim 16 --ids-per-domain 2"
  SMALL="--size 16 --width 4 --dim 16 --ids-per-domain 2 --repeats 1 --no-memory"
  BENCH_EXTRA="--no-memory"
  REPEATS=1; STEPS=3; BUDGET=120
  PIPE_SIZE=32; PIPE="--size 32 --width 4 --ids 2 --steps 2"
else
  DEVICE=cuda
  NET="--backbone iresnet50 --size 112 --width 64 --dim 512 --ids-per-domain 16"
  SMALL="--repeats 5"; BENCH_EXTRA=""
  REPEATS=3; STEPS=12; BUDGET=480
  PIPE_SIZE=112; PIPE="--size 112 --width 64 --ids 8 --steps 20"
  ls "$WHEELS"/mfr-*.whl >/dev/null 2>&1 || { echo "no $WHEELS/mfr-*.whl: run 'make gpu-bundle' on the build machine"; exit 2; }
  "$PY" -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '2.11.0' else f'torch {v} found, 2.11.0 needed')" || exit 2
  rm -rf "$SITE"
  "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/mfr-*.whl || exit 2
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # The tests check a site-packages install by default; this one lives in $SITE on purpose.
  export MFR_TEST_ANY_INSTALL=1
fi

"$PY" - <<'PY' | tee "$OUT/build_info.txt"
import mfr
info = mfr.build_info()
for k in ("mfr", "torch", "torch_cuda", "linked_cuda", "cuda_available", "cuda_device_count", "cuda_devices", "num_threads"):
    print(f"{k:>18}: {info.get(k)}")
PY

START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
timeout 150 "$PY" -m pytest tests -m cuda -v -p no:cacheprovider --junitxml="$OUT/cuda.xml" 2>&1 | tee "$OUT/cuda.log"
CUDA_RC=${PIPESTATUS[0]}

# The meta-step on the device: small CNN, then iresnet50 at 112x112 with amp off and bf16.
( cd benches && timeout 45 "$PY" meta_step.py --device "$DEVICE" $SMALL ) 2>&1 | tee "$OUT/bench.log"
BENCH_RC=${PIPESTATUS[0]}
for AMP in off bf16; do
  ( cd benches && timeout 75 "$PY" meta_step.py --device "$DEVICE" $NET $BENCH_EXTRA --repeats "$REPEATS" --amp "$AMP" ) 2>&1 | tee -a "$OUT/bench.log"
  RC=${PIPESTATUS[0]}; [ "$RC" = 0 ] || BENCH_RC=$RC
done

# Short real trainings (the Trainer): mfr lean / shared and plain ArcFace, amp off and bf16.
timeout 90 "$PY" scripts/gpu_training.py --device "$DEVICE" $NET --steps "$STEPS" 2>&1 | tee "$OUT/training.log"
TRAIN_RC=${PIPESTATUS[0]}

# The data pipeline on the device: faces decoded from disk for every batch (synthetic ones written
# to a folder: the real faces are not on the GPU machine), sync vs prefetch.
"$PY" -c "import sys, mfr.synthetic as s; s.synthetic_domains(n_domains=3, ids_per_domain=24, images_per_id=3, size=int(sys.argv[2]), seed=0).to_folder(sys.argv[1])" \
  "$OUT/faces" "$PIPE_SIZE" >/dev/null 2>&1
( cd benches && timeout 45 "$PY" pipeline.py --device "$DEVICE" --data "$OUT/faces" $PIPE ) 2>&1 | tee "$OUT/pipeline.log"
PIPE_RC=${PIPESTATUS[0]}

if [ "$DRY" = 1 ]; then
  REST_RC=skipped
elif [ "$(left)" -gt 30 ]; then
  timeout "$(left)" "$PY" -m pytest tests -m "not cuda and not slow" -q -p no:cacheprovider -x 2>&1 | tail -15 | tee "$OUT/rest.log"
  REST_RC=${PIPESTATUS[0]}
else
  REST_RC="not run (no time left)"
fi

result() { case "$1" in 0) echo pass ;; 124) echo "TIMED OUT" ;; skipped|not*) echo "$1" ;; *) echo "FAIL (rc $1)" ;; esac; }
echo
echo "| check                   | result |"
echo "|-------------------------|--------|"
printf "| %-23s | %s |\n" "cuda-marked tests" "$(result "$CUDA_RC")"
printf "| %-23s | %s |\n" "cuda tests run/failed" "$(grep -o 'tests="[0-9]*"' "$OUT/cuda.xml" | head -1) $(grep -o 'failures="[0-9]*"' "$OUT/cuda.xml" | head -1) $(grep -o 'skipped="[0-9]*"' "$OUT/cuda.xml" | head -1)"
printf "| %-23s | %s |\n" "meta-step benchmarks" "$(result "$BENCH_RC")"
printf "| %-23s | %s |\n" "training runs" "$(result "$TRAIN_RC")"
printf "| %-23s | %s |\n" "lean bf16 training" "$(grep '^gpu_training:' "$OUT/training.log" | cut -d' ' -f2-)"
printf "| %-23s | %s |\n" "data pipeline" "$(result "$PIPE_RC") $(grep '^pipeline:' "$OUT/pipeline.log" | cut -d' ' -f2-)"
printf "| %-23s | %s |\n" "rest of the suite" "$(result "$REST_RC")"
printf "| %-23s | %s s |\n" "wall time" "$(( $(date +%s) - START ))"
[ "$CUDA_RC" = 0 ] && [ "$BENCH_RC" = 0 ] && [ "$TRAIN_RC" = 0 ] && [ "$PIPE_RC" = 0 ] && { [ "$REST_RC" = 0 ] || [ "$REST_RC" = skipped ]; }
