"""Runs tests/bad_input_suite.py in its own interpreter: a crash, an abort or a hang there fails
this test (with the function it was in) instead of ending the test run."""

import os
import subprocess
import sys
from pathlib import Path


def test_bad_inputs_give_a_result_or_an_mfr_error():
    env = {**os.environ, "MFR_BAD_INPUT_EXAMPLES": os.environ.get("MFR_BAD_INPUT_EXAMPLES", "300")}
    suite = Path(__file__).with_name("bad_input_suite.py")
    proc = subprocess.run([sys.executable, str(suite)], capture_output=True, text=True, timeout=600, env=env)
    where = proc.stdout.strip().splitlines()[-1:] if proc.returncode < 0 else []
    assert proc.returncode == 0, (
        f"exit {proc.returncode} (last function: {where})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert proc.stdout.strip().endswith("bad-input suite: 0 problem(s)"), proc.stdout[-3000:]
