"""Run records and how a protocol's results lie on disk.

A result folder holds (schema 2):

- ``results.json``: the header, everything but the runs (configuration, evaluation, search,
  settings, provenance, ``complete``), small and rewritten atomically after every run;
- ``runs.jsonl`` (or ``runs.jsonl.gz``): one compact JSON line per finished run, appended once when
  the run ends and never rewritten, so a run of hours costs one line of I/O. ROC points are stored as
  integer counts of false / true accepts (``fpr = fp / n_impostor`` exactly as the evaluation
  computed it; a record where that would not round-trip keeps its floats).

Schema 1 (one ``results.json`` with every run inside) still loads, and ``save`` or ``mfr compact``
converts it. gzip members concatenate, so a compressed file is appended to the same way.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypedDict, cast

from ... import _core

__all__ = ["HEADER", "RUNS", "RUNS_GZ", "SCHEMA", "RunRecord", "append_runs", "read_folder", "write_folder"]

#: The current schema of a result folder.
SCHEMA = 2
HEADER = "results.json"
RUNS = "runs.jsonl"
RUNS_GZ = "runs.jsonl.gz"


class RunRecord(TypedDict, total=False):
    """One run of one row on one target and seed: what the evaluation measured
    (:func:`mfr.experiments.evaluate.evaluate_domain`'s fields) and how it trained."""

    method: str  # the row's name (``X``, ``X@P``, ``X:time``, ``untrained``)
    target: str
    seed: int
    sources: list[str]
    domain: str
    n_identities: int
    n_images: int
    n_genuine: int
    n_impostor: int
    n_probes: int
    metrics: dict[str, dict[str, float]]  # metric -> estimate, low, high
    accuracy_folds: list[float]
    resamples: dict[str, list[float]]  # metric -> identity-bootstrap resamples
    roc: dict[str, list[float]]  # fpr, tpr
    roc_band: dict[str, list[float]]  # far, tar, low, high
    train_seconds: float
    step_seconds: float  # the steps only, pauses left out
    steps: int
    config: dict[str, Any]
    final_loss: float | None
    curve: list[dict[str, float]]  # training log every log_every steps
    eval_curve: list[dict[str, float]]  # target metrics every eval_every steps
    machine: str  # what timed it (ProtocolResult.machines); absent: the result's first machine
    swad: dict[str, Any]  # SWAD rows: the window, its segments, threshold and losses


def runs_path(folder: Path) -> Path:
    """The folder's runs file: the compressed one where it exists."""
    gz = folder / RUNS_GZ
    return gz if gz.exists() else folder / RUNS


def _encode(run: RunRecord) -> str:
    out: dict[str, Any] = dict(run)
    roc = run.get("roc")
    if roc is not None and {"n_genuine", "n_impostor"} <= run.keys():
        counts = _counts(roc, run["n_impostor"], run["n_genuine"])
        if counts is not None:
            out["roc"] = counts
    return json.dumps(out, separators=(",", ":"))


def _counts(roc: dict[str, list[float]], n_impostor: int, n_genuine: int) -> dict[str, list[int]] | None:
    """``roc`` as integer counts, or None where a rate is not exactly a count over its total."""
    if n_impostor <= 0 or n_genuine <= 0:
        return None
    fp = [round(x * n_impostor) for x in roc["fpr"]]
    tp = [round(x * n_genuine) for x in roc["tpr"]]
    if [k / n_impostor for k in fp] != roc["fpr"] or [k / n_genuine for k in tp] != roc["tpr"]:
        return None
    return {"fp": fp, "tp": tp}


def _decode(line: str) -> RunRecord:
    run: RunRecord = json.loads(line)
    roc: dict[str, Any] = run.get("roc") or {}
    if "fp" in roc:
        run["roc"] = {
            "fpr": [k / run["n_impostor"] for k in roc["fp"]],
            "tpr": [k / run["n_genuine"] for k in roc["tp"]],
        }
    return run


def _open(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return cast(IO[str], gzip.open(path, mode + "t", encoding="utf-8", compresslevel=9))
    return open(path, mode, encoding="utf-8")


def read_runs(path: Path) -> list[RunRecord]:
    """Every run of a runs file; a last line cut short (the writer was killed mid-line) is left out."""
    runs = []
    try:
        with _open(path, "r") as f:
            lines = list(_lines(f))
    except (OSError, EOFError) as e:
        raise _core.DataError(f"cannot read the runs of {path}: {e}") from e
    for k, line in enumerate(lines):
        try:
            runs.append(_decode(line))
        except ValueError as e:
            if k == len(lines) - 1 and not line.endswith("\n"):
                break  # an interrupted append: that run is not finished
            raise _core.DataError(f"{path}: line {k + 1} is not a run record: {e}") from e
    return runs


def _lines(f: IO[str]) -> Iterator[str]:
    for line in f:
        if line.strip():
            yield line


def append_runs(folder: Path, runs: Iterable[RunRecord]) -> None:
    """Append finished runs to the folder's runs file (flushed to disk before returning)."""
    path = runs_path(folder)
    with _open(path, "a") as f:
        for run in runs:
            f.write(_encode(run) + "\n")
        f.flush()
    _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_folder(
    folder: Path, header: dict[str, Any], runs: Iterable[RunRecord] | None, compress: bool = False
) -> None:
    """Write the header and, unless ``runs`` is None, the whole runs file (atomically: written
    beside and renamed), in the compressed form when ``compress``; a schema-1 ``results.json``
    becomes a header."""
    folder.mkdir(parents=True, exist_ok=True)
    if runs is not None:
        name = RUNS_GZ if compress else RUNS
        tmp = folder / f".{name}.tmp"
        with (
            gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) if compress else open(tmp, "w", encoding="utf-8")
        ) as f:
            for run in runs:
                f.write(_encode(run) + "\n")
        os.replace(tmp, folder / name)
        (folder / (RUNS if compress else RUNS_GZ)).unlink(missing_ok=True)
    tmp = folder / f".{HEADER}.tmp"
    tmp.write_text(json.dumps({"schema": SCHEMA, **header}, indent=1))
    os.replace(tmp, folder / HEADER)


def read_folder(path: Path) -> dict[str, Any]:
    """A result's fields, runs included, from ``results.json`` (or the folder holding it) of
    either schema."""
    p = path / HEADER if path.is_dir() else path
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise _core.DataError(f"cannot read {p}: {e}") from e
    if not isinstance(raw, dict):
        raise _core.DataError(f"{p} is not a protocol result (a JSON object was expected, got {type(raw).__name__})")
    schema = raw.pop("schema", 1)
    if schema == 1:
        return raw  # every run inside
    if schema != SCHEMA:
        raise _core.DataError(f"{p} has results schema {schema}; this mfr reads schemas 1 and {SCHEMA}")
    runs = runs_path(p.parent)
    raw["runs"] = read_runs(runs) if runs.exists() else []
    return raw
