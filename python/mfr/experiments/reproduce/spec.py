"""What a protocol is: its source/target groups, its rows, the run count it expects, and the
names of the metrics its report shows."""

from __future__ import annotations

from collections.abc import Sequence

from ... import _core
from ...facedata import FaceData
from ..methods import METHODS, POOLED
from ..rows import Row

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_SHORT",
    "METRIC_TITLES",
    "POOLED",
    "check_methods",
    "groups",
    "settings_key",
    "time_rows",
]

METRIC_TITLES = {
    "tar@far=1e-3": "TAR @ FAR=1e-3",
    "tar@far=1e-2": "TAR @ FAR=1e-2",
    "auc": "AUC",
    "eer": "EER (lower is better)",
    "accuracy": "Verification accuracy (10-fold over disjoint identities, balanced pairs)",
    "rank1": "Rank-1 identification (1 gallery image per identity, every other image a probe, 10 gallery draws)",
    "rank1_single": "Rank-1 identification, the paper's protocol (1 gallery + 1 probe per identity, one draw)",
}

#: Short names for the headings of the difference tables.
METRIC_SHORT = {
    "tar@far=1e-3": "TAR@FAR=1e-3",
    "tar@far=1e-2": "TAR@FAR=1e-2",
    "auc": "AUC",
    "eer": "EER",
    "accuracy": "accuracy",
    "rank1": "rank-1",
    "rank1_single": "rank-1 (single draw)",
}

#: Metrics where a lower value is better.
LOWER_IS_BETTER = frozenset({"eer"})


def groups(
    data: FaceData, protocol: str, sources: Sequence[str] | None, targets: Sequence[str] | None
) -> list[tuple[list[str], list[str]]]:
    """The protocol's ``(sources, targets)`` groups: lodo one per target, multi one in all."""
    names = data.domain_names
    if len(names) < 2:
        raise _core.InvalidInputError(
            f"the data has {len(names)} domain ({', '.join(names)}); a domain-generalization protocol needs at least 2 (folders <root>/<domain>/<identity>/<image>)"
        )
    tgt = [names[data.domain_number(t)] for t in targets] if targets else None
    src = [names[data.domain_number(s)] for s in sources] if sources else None
    if protocol == "lodo":
        if src:
            raise _core.InvalidInputError(
                "protocol lodo trains on every domain but the target; --sources is for protocol multi"
            )
        return [([n for n in names if n != t], [t]) for t in (tgt or names)]
    if protocol == "multi":
        if not tgt:
            raise _core.InvalidInputError("protocol multi needs target domains (--targets)")
        src = src or [n for n in names if n not in tgt]
        overlap = set(src) & set(tgt)
        if overlap:
            raise _core.InvalidInputError(f"source and target domains overlap: {sorted(overlap)}")
        if not src:
            raise _core.InvalidInputError("protocol multi: no source domain is left to train on")
        return [(src, tgt)]
    raise _core.InvalidInputError(f"unknown protocol {protocol!r}; available: lodo, multi")


def check_methods(methods: Sequence[str]) -> None:
    """Protocol rows given as methods: the methods of :data:`METHODS` and two-stage variants ``X@P``
    (a method fine-tuned from a pooled baseline its registry entry accepts)."""
    if not methods:
        raise _core.InvalidInputError("no methods given")
    rows = {m: Row.parse(m) for m in methods}
    bad = [m for m, row in rows.items() if row.budget != "steps" or row.problem() is not None]
    if bad:
        two = ", ".join(f"{x}@{p}" for x in ("mfr", "mldg") for p in POOLED)
        problems = "; ".join(
            f"{m!r}: {rows[m].problem() or 'a budget is not chosen per row (budget=time adds X:time rows)'}"
            for m in bad
        )
        raise _core.InvalidInputError(
            f"unknown method(s) {problems}. Available: {', '.join(METHODS)}; two-stage variants X@P such as {two}; options X+swad"
        )
    if len(set(methods)) != len(methods):
        raise _core.InvalidInputError(f"methods repeat: {list(methods)}")


def time_rows(methods: Sequence[str]) -> list[str]:
    """The equal-compute rows of ``budget="time"``: ``X:time`` for every single-stage row whose
    method is not MFR (MFR with an option, as ``mfr+swad``, is timed against nothing)."""
    rows = [Row.parse(m) for m in methods]
    return [str(Row(r.method, None, "time", r.options)) for r in rows if not r.two_stage and r.method != "mfr"]


def settings_key(method: str, targets: Sequence[str]) -> str:
    """The key of a method's selected (or tuned) setting for one target group in ``settings``."""
    return f"{method}|{'+'.join(targets)}"
