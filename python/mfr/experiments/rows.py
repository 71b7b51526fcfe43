"""The rows of a protocol's tables, parsed and printed in one place.

A row name is one of:

- ``untrained``: the seed's initialisation, evaluated without training;
- ``X``: method ``X`` of :data:`mfr.experiments.methods.METHODS`, trained for the step budget;
- ``X@P``: two-stage: pooled method ``P`` trains the first part of the steps, ``X`` fine-tunes its
  backbone for the rest;
- ``X:time``: equal compute: ``X`` trains for as many steps as fit in the time MFR used;
- ``X+swad`` (also ``X+swad@P``, ``X+swad:time``): ``X`` with SWAD's weight averaging
  (:mod:`mfr.experiments.swad`) on its last stage, with ``X``'s selected setting.

The grammar: ``<method>[+<option>...][@<first stage>][:<budget>]``; options: ``swad``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _core
from .methods import METHODS

__all__ = ["OPTIONS", "UNTRAINED", "Row"]

#: The row of the untrained network.
UNTRAINED = "untrained"

#: Training options a row may add to its method (``X+swad``): each a boolean TrainConfig field.
OPTIONS = ("swad",)


@dataclass(frozen=True)
class Row:
    """One row: the ``method`` that trains last, the pooled ``stage1`` it fine-tunes from (``X@P``),
    its ``budget`` (``"steps"``, or ``"time"`` for ``X:time``) and the ``options`` it trains with
    (``X+swad``). ``str(row)`` is its name."""

    method: str
    stage1: str | None = None
    budget: str = "steps"
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, name: str) -> Row:
        """The row a name spells (no check that its methods exist: :meth:`check` does that)."""
        body, sep, budget = name.partition(":")
        head, at, stage1 = body.partition("@")
        method, *options = head.split("+")
        return cls(method, stage1 if at else None, budget if sep else "steps", tuple(options))

    def __str__(self) -> str:
        name = "+".join((self.method, *self.options))
        name = name if self.stage1 is None else f"{name}@{self.stage1}"
        return name if self.budget == "steps" else f"{name}:{self.budget}"

    @property
    def swad(self) -> bool:
        return "swad" in self.options

    @property
    def at_steps(self) -> Row:
        """This row with the step budget: the equal-steps row an ``X:time`` row is timed against."""
        return Row(self.method, self.stage1, "steps", self.options)

    def config_fields(self) -> dict[str, bool]:
        """The TrainConfig fields this row's options set (the last stage's)."""
        return {option: True for option in self.options}

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
        unknown = [o for o in self.options if o not in OPTIONS]
        if unknown:
            return f"unknown option(s) {', '.join(map(repr, unknown))} (options: {', '.join(OPTIONS)}, as in {self.method}+swad)"
        if len(set(self.options)) != len(self.options):
            return f"an option repeats: {'+'.join(self.options)}"
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
