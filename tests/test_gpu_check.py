"""scripts/gpu_check.sh stays runnable while no GPU is lent: its CPU rehearsal (MFR_GPU_CHECK_DRY=1)
goes through every stage (cuda-marked tests, the meta-step benchmark with amp off and bf16, the
short trainings, the data pipeline) with tiny sizes and prints the summary table."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_gpu_check_dry_run_passes_every_stage(tmp_path):
    env = {**os.environ, "MFR_GPU_CHECK_DRY": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    for stage in ("cuda-marked tests", "meta-step benchmarks", "training runs", "data pipeline"):
        assert re.search(rf"\| {stage} +\| pass( [^|]*)? \|", out), stage
    assert re.search(r"\| rest of the suite +\| skipped \|", out)
    assert "amp off" in out and "amp bf16" in out
    assert re.search(r"gpu_training: mfr_lean_bf16_img_s=[0-9.]+ mfr_lean_bf16_vs_plain=[0-9.]+", out)
    assert "meta_step_lean: vs_reference=" in out
    assert re.search(r"pipeline: wait_share_sync=[0-9.]+ wait_share_prefetch=[0-9.]+", out)
    for name in ("cuda.xml", "bench.log", "training.log", "pipeline.log", "build_info.txt"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_gpu_check_full_mode_runs_the_issue_settings():
    text = SCRIPT.read_text()
    assert "--backbone iresnet50 --size 112 --width 64 --dim 512" in text
    assert "for AMP in off bf16" in text
    assert "BUDGET=480" in text  # the whole check within 8 minutes
