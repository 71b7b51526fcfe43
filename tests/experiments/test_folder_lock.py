"""One writer per output folder (mfr.experiments.folder_lock): concurrent runs on one --out are
refused with a line naming the holder, never interleaved; a killed holder leaves no lock."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from cli_args import TINY_GRAY
from lock_holder import start_holder, stop

import mfr
from mfr.experiments import folder_lock
from mfr.experiments.config import TrainConfig
from mfr.experiments.reproduce import run_protocol
from mfr.experiments.train import Trainer
from mfr.facedata import FaceData

BUSY = r"is being written by pid \d+ on .+, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d; wait for it or use another"


def test_a_folder_made_for_a_refused_run_is_removed(tmp_path):
    folder = tmp_path / "new" / "run"
    with pytest.raises(mfr.InvalidInputError), folder_lock.hold(folder, "--out"):
        raise mfr.InvalidInputError("a bad flag found after the folder was held")
    assert not folder.exists() and (tmp_path / "new").exists()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_second_process_is_refused_with_the_holder_and_changes_nothing(tmp_path):
    folder = tmp_path / "run"
    holder = start_holder(folder)
    try:
        details = json.loads((folder / folder_lock.LOCK_NAME).read_text())
        assert details["pid"] == holder.pid and details["host"] and details["started"]
        before = _snapshot(folder)
        busy = pytest.raises(mfr.FolderInUseError, match=f"--out {folder} " + BUSY + " --out")
        with busy as e, folder_lock.hold(folder, "--out"):
            pass
        assert f"pid {holder.pid} " in str(e.value)
        assert isinstance(e.value, mfr.DataError) and isinstance(e.value, OSError)
        assert _snapshot(folder) == before
    finally:
        stop(holder)
    with folder_lock.hold(folder, "--out"):  # the killed holder left no lock
        assert (folder / folder_lock.LOCK_NAME).exists()
    assert not (folder / folder_lock.LOCK_NAME).exists()  # let go: the lock file is gone
    assert list(folder.iterdir()) == []  # made by the killed holder: kept, empty


def test_reentrant_in_its_thread_refused_in_another(tmp_path):
    with folder_lock.hold(tmp_path, "out_dir"):
        with folder_lock.hold(tmp_path / ".", "out_dir"):  # the same folder, another spelling
            pass
        assert (tmp_path / folder_lock.LOCK_NAME).exists()  # still held by the outer block
        errors: list[BaseException] = []

        def other() -> None:
            try:
                with folder_lock.hold(tmp_path, "out_dir"):
                    pass
            except mfr.FolderInUseError as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert len(errors) == 1 and "another thread of this process" in str(errors[0])
    assert tmp_path.exists() and not (tmp_path / folder_lock.LOCK_NAME).exists()  # not made by it: kept


def test_the_apis_refuse_a_held_folder(tmp_path):
    data = FaceData.synthetic(n_domains=3, ids_per_domain=6, images_per_id=3, size=16, channels=1, seed=0)
    config = TrainConfig(
        steps=2, input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=3, warmup_steps=0
    )
    holder = start_holder(tmp_path)
    try:
        before = _snapshot(tmp_path)
        with pytest.raises(mfr.FolderInUseError, match="out_dir .* " + BUSY + " out_dir"):
            Trainer(config, data, out_dir=tmp_path, progress=False).fit()
        with pytest.raises(mfr.FolderInUseError, match="out_dir .* " + BUSY + " out_dir"):
            run_protocol(data, methods=["cosface"], config=config, out_dir=tmp_path, log=None, n_bootstrap=0)
        assert _snapshot(tmp_path) == before
    finally:
        stop(holder)
    Trainer(config, data, out_dir=tmp_path, progress=False).fit()  # free again
    assert (tmp_path / "checkpoint.safetensors").exists() and not (tmp_path / folder_lock.LOCK_NAME).exists()


def test_a_filesystem_without_locks_warns_once_and_goes_on(tmp_path, monkeypatch):
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(folder_lock.fcntl, "flock", no_locks)
    warned = pytest.warns(mfr.FolderLockWarning, match="has no working file locks .* going on without one")
    with warned, folder_lock.hold(tmp_path, "--out"):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time in this process: no second warning
        with folder_lock.hold(tmp_path, "--out"):
            assert not (tmp_path / folder_lock.LOCK_NAME).exists()  # no lock file claims a lock


def test_other_errors_of_the_filesystem_are_not_hidden(tmp_path, monkeypatch):
    def broken(fd: int, op: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(folder_lock.fcntl, "flock", broken)
    with pytest.raises(OSError, match="Input/output error"), folder_lock.hold(tmp_path, "--out"):
        pass
    monkeypatch.undo()
    with folder_lock.hold(tmp_path, "--out"):  # the failed attempt held nothing
        pass


def _mfr(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mfr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _race(first: list[str], second: list[str], delay: float) -> list[tuple[int, str]]:
    a = _mfr(*first)
    time.sleep(delay)
    b = _mfr(*second)
    out = []
    for p in (a, b):
        _, err = p.communicate(timeout=300)
        out.append((p.returncode, err))
    return out


TRAIN = ["train", *TINY_GRAY, "--log-every", "10"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("order", ["seed0-first", "seed5-first"])
def test_two_train_commands_on_one_out_one_runs_the_other_exits_2(tmp_path, delay, order):
    out = tmp_path / "run"
    run = [*TRAIN, "--steps", "150", "--checkpoint-every", "5", "--out", str(out)]
    runs = {0: [*run, "--seed", "0"], 5: [*run, "--seed", "5"]}
    seeds = [0, 5] if order == "seed0-first" else [5, 0]
    results = dict(zip(seeds, _race(runs[seeds[0]], runs[seeds[1]], delay)))
    codes = sorted(rc for rc, _ in results.values())
    assert codes == [0, 2], results
    winner = next(s for s, (rc, _) in results.items() if rc == 0)
    loser_err = next(err for rc, err in results.values() if rc == 2)
    assert loser_err.strip().splitlines()[-1].startswith(f"mfr: error: --out {out} is being written by pid ")
    assert "wait for it or use another --out" in loser_err
    # the folder holds the winner's run only: its configuration, one row per logged step
    assert json.loads((out / "config.json").read_text())["seed"] == winner
    with open(out / "train.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 150
    assert not (out / folder_lock.LOCK_NAME).exists()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.5])
def test_two_reproduce_commands_on_one_out_one_runs_the_other_exits_2(tmp_path, delay):
    out = tmp_path / "results"
    args = ["reproduce", *TINY_GRAY, "--methods", "cosface", "--steps", "60", "--bootstrap", "0", "--out", str(out)]
    (rc_a, err_a), (rc_b, err_b) = _race(args, args, delay)
    assert sorted([rc_a, rc_b]) == [0, 2], (err_a, err_b)
    loser = err_a if rc_a == 2 else err_b
    assert f"mfr: error: --out {out} is being written by pid " in loser
    result = mfr.ProtocolResult.load(out)
    assert result.complete and len(result.runs) == len({(r["method"], r["target"], r["seed"]) for r in result.runs})


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL test")
def test_kill_9_of_the_holder_lets_the_next_resume_proceed_at_once(tmp_path):
    out = tmp_path / "run"
    args = [*TRAIN, "--steps", "400", "--checkpoint-every", "2", "--out", str(out)]
    proc = _mfr(*args)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert (out / folder_lock.LOCK_NAME).exists()  # the file is left, its lock is not
    t0 = time.monotonic()
    with folder_lock.hold(out, "--out"):
        waited = time.monotonic() - t0
    assert waited < 1.0
    done = subprocess.run(
        [sys.executable, "-m", "mfr", *args, "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "for 400 steps" in done.stdout
