"""A process that holds an output folder's lock (mfr.experiments.folder_lock) until it is killed,
for the tests of one writer per folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from mfr.experiments import folder_lock
    with folder_lock.hold(sys.argv[1], "--out"):
        print("held", flush=True)
        time.sleep(600)
    """
)


def start_holder(folder: Path) -> subprocess.Popen[str]:
    """The holder of ``folder``, returned once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill the holder (SIGKILL: the lock goes with it) and close its pipe."""
    proc.kill()
    proc.communicate()
