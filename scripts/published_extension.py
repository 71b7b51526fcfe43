"""Carry the published run's extension (issue 25's rows) from session to session.

    python scripts/published_extension.py restore   # runs/faces-lodo-1000 from the committed state
    python scripts/published_extension.py snapshot  # the committed state from runs/faces-lodo-1000

The published run (docs/runs/faces-lodo-1000) stays as it was published until the extension is
complete. Its extension in progress is kept beside it as two files: the extension's results.json
header (``faces-lodo-1000.extension-header.json``: the searches and settings so far) and the runs
it added (``faces-lodo-1000.extension-runs.jsonl.gz``: the lines appended after the published
run's). ``restore`` lays them out as a run folder that ``mfr reproduce --resume`` continues (the
runs file is the published gzip with the added lines as a further gzip member, which the records
loader reads as one file); ``snapshot`` writes them back. Both print the command that resumes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "runs" / "faces-lodo-1000"
HEADER = PUBLISHED.with_name("faces-lodo-1000.extension-header.json")
ADDED = PUBLISHED.with_name("faces-lodo-1000.extension-runs.jsonl.gz")
RUN = ROOT / "runs" / "faces-lodo-1000"


def _lines(path: Path) -> list[bytes]:
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line.strip()]


def restore(force: bool) -> None:
    if (RUN / "results.json").exists() and not force:
        sys.exit(f"{RUN} holds a run already: snapshot it first, or --force to replace it")
    RUN.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HEADER, RUN / "results.json")
    added = ADDED.read_bytes() if ADDED.exists() else b""
    (RUN / "runs.jsonl.gz").write_bytes(PUBLISHED.joinpath("runs.jsonl.gz").read_bytes() + added)
    print(
        f"restored {RUN}: {len(_lines(PUBLISHED / 'runs.jsonl.gz'))} published + {len(_lines(ADDED)) if added else 0} added records"
    )


def snapshot() -> None:
    published, now = _lines(PUBLISHED / "runs.jsonl.gz"), _lines(RUN / "runs.jsonl.gz")
    if now[: len(published)] != published:
        sys.exit(f"{RUN}/runs.jsonl.gz does not start with the published run's records: not the extension")
    ADDED.write_bytes(gzip.compress(b"".join(line + b"\n" for line in now[len(published) :]), mtime=0))
    shutil.copyfile(RUN / "results.json", HEADER)
    print(f"snapshot: {len(now) - len(published)} added records -> {ADDED.name}; header -> {HEADER.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["restore", "snapshot"])
    parser.add_argument("--force", action="store_true", help="restore over an existing runs/faces-lodo-1000")
    args = parser.parse_args()
    restore(args.force) if args.action == "restore" else snapshot()
    header = json.loads(HEADER.read_text())
    done = sum(1 for r in map(json.loads, _lines(RUN / "runs.jsonl.gz")) if r.get("method") != "untrained")
    print(f"{done} of {header['expected_runs']} runs; resume (from the repository root) with:")
    print(f"  {header['command']}")


if __name__ == "__main__":
    main()
