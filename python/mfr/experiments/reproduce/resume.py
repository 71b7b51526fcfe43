"""Resuming a protocol: which earlier results a new run may continue, and taking them over."""

from __future__ import annotations

import copy
from pathlib import Path

from ... import _core
from . import records
from .result import ProtocolResult

__all__ = ["adopt_earlier"]


#: What must match for ``resume`` (methods and seeds may grow).
_RESUME_KEYS = ("protocol", "targets", "config", "evaluation", "search", "budget", "stage1_fraction", "tuned")

#: TrainConfig fields added after results were first written, with the value that reproduces the
#: training of that time: a results.json without them resumes only with that value.
_CONFIG_ADDED = {
    "flip": False,
    "lean": False,
    "amp": None,
    "tf32": False,
    # the settings of the methods added by issue 25: no earlier method reads them
    "coral_weight": 1.0,
    "mixstyle_p": 0.5,
    "mixstyle_alpha": 0.1,
    "cdt_weight": 1.0,
    "cdt_margin": 0.5,
    "swad": False,
    "swad_every": 0,
}
#: TrainConfig fields that change speed, not results.
_PERFORMANCE_ONLY = ("prefetch",)


def adopt_earlier(result: ProtocolResult, out: Path, resume: bool, force: bool) -> None:
    """Take over the finished runs of ``out/results.json`` when resuming; refuse to overwrite it
    otherwise (unless ``force``), and refuse to resume what another configuration or data made."""
    path = out / records.HEADER
    if not path.exists():
        return
    if force:
        return
    if not resume:
        raise _core.InvalidInputError(
            f"{out} already holds results (results.json): resume continues them (--resume), force starts over (--force)"
        )
    earlier = ProtocolResult.load(path)
    mine = {key: copy.deepcopy(getattr(result, key)) for key in _RESUME_KEYS}
    theirs = {key: copy.deepcopy(getattr(earlier, key)) for key in _RESUME_KEYS}
    theirs["config"] = {**_CONFIG_ADDED, **theirs.get("config", {})}
    for fields in (mine["config"], theirs["config"]):  # how fast, not what: never a reason to refuse
        for key in _PERFORMANCE_ONLY:
            fields.pop(key, None)
    for key in _RESUME_KEYS:
        if mine.get(key) != theirs.get(key):
            a, b = theirs.get(key), mine.get(key)
            if isinstance(a, dict) and isinstance(b, dict):
                diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
                detail = f"{diff} (earlier, now)"
            else:
                detail = f"{a!r} earlier, {b!r} now"
            hint = (
                " (--untuned or tuned=False: TrainConfig's plain defaults for every method)" if key == "tuned" else ""
            )
            raise _core.InvalidInputError(f"cannot resume {out}: it was made with another {key}: {detail}{hint}")
    if earlier.fingerprint.get("sha256") != result.fingerprint.get("sha256"):
        raise _core.InvalidInputError(
            f"cannot resume {out}: it was made from other data ({earlier.fingerprint.get('name')}, {earlier.fingerprint.get('images')} images; now {result.fingerprint.get('name')}, {result.fingerprint.get('images')} images)"
        )
    machines = dict(earlier.machines)
    machines.setdefault(result.machine, dict(result.hardware))
    result.machines = machines
    result.calibration = copy.deepcopy(earlier.calibration)
    result.runs = list(earlier.runs)
    result.searches = list(earlier.searches)
    result.settings = dict(earlier.settings)
    result.wall_seconds = earlier.wall_seconds
    result.methods = list(dict.fromkeys([*earlier.methods, *result.methods]))
    result.seeds = max(result.seeds, earlier.seeds)
