"""The rows of a protocol's tables, parsed and printed in one place.

A row name is one of:

- ``untrained``: the seed's initialisation, evaluated without training;
- ``X``: method ``X`` of :data:`mfr.experiments.methods.METHODS`, trained for the step budget;
- ``X@P``: two-stage: pooled method ``P`` trains the first part of the steps, ``X`` fine-tunes its
  backbone for the rest;
- ``X:time``: equal compute: ``X`` trains for as many steps as fit in the time MFR used.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _core
from .methods import METHODS

__all__ = ["UNTRAINED", "Row"]

#: The row of the untrained network.
UNTRAINED = "untrained"


@dataclass(frozen=True)
class Row:
    """One row: the ``method`` that trains last, the pooled ``stage1`` it fine-tunes from (``X@P``),
    and its ``budget`` (``"steps"``, or ``"time"`` for ``X:time``). ``str(row)`` is its name."""

    method: str
    stage1: str | None = None
    budget: str = "steps"

    @classmethod
    def parse(cls, name: str) -> Row:
        """The row a name spells (no check that its methods exist: :meth:`check` does that)."""
        body, sep, budget = name.partition(":")
        method, at, stage1 = body.partition("@")
        return cls(method, stage1 if at else None, budget if sep else "steps")

    def __str__(self) -> str:
        name = self.method if self.stage1 is None else f"{self.method}@{self.stage1}"
        return name if self.budget == "steps" else f"{name}:{self.budget}"

    @property
    def untrained(self) -> bool:
        return self.method == UNTRAINED

    @property
    def two_stage(self) -> bool:
        return self.stage1 is not None

    @property
    def parts(self) -> tuple[str, ...]:
        """The methods this row trains, in order (a two-stage row's pooled stage first)."""
        return (self.method,) if self.stage1 is None else (self.stage1, self.method)

    def problem(self) -> str | None:
        """Why this row cannot be trained, or None."""
        if self.budget not in ("steps", "time"):
            return f"unknown budget {self.budget!r} (rows X:time train for MFR's time)"
        spec = METHODS.get(self.method)
        if spec is None:
            return f"unknown method {self.method!r}"
        if self.stage1 is not None and self.stage1 not in spec.stage1:
            accepted = ", ".join(spec.stage1) or "none"
            return f"{self.method} cannot fine-tune from {self.stage1!r} (first stages it accepts: {accepted})"
        if self.stage1 is not None and self.budget != "steps":
            return "two-stage rows train for the step budget only"
        return None

    def check(self) -> Row:
        """This row, or an error naming what is wrong with it."""
        problem = self.problem()
        if problem is not None:
            raise _core.InvalidInputError(f"row {str(self)!r}: {problem}")
        return self
