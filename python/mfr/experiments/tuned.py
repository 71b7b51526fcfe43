"""Every method's tuned settings: what the published run's search selected, used as defaults.

A method can win or lose a comparison by its hand-picked defaults. The published run
(``docs/runs/faces-lodo-1000``: leave-one-domain-out on 7 real face datasets) searched 4 settings per
method on each of its 7 source-domain sets, selected by training-domain validation (never the
target; :mod:`mfr.experiments.search`). :data:`TUNED` holds, per method, the setting selected on the
most of those 7 (:func:`tuned_from_result` derives it from a results.json; a test checks the table
against the committed run). Where the defaults won, the method has no entry. The values live in
the method registry (:data:`mfr.experiments.methods.METHODS`); this module applies them.

``mfr reproduce`` and ``mfr train`` start each method from its tuned setting for every field the
user left at :class:`TrainConfig`'s default (``--untuned``: the plain defaults for every method);
``--search`` replaces them. :class:`TrainConfig` itself keeps one set of defaults for all methods,
so a config built in Python trains exactly what it says (:func:`tuned_config` applies the table).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from .config import TrainConfig
from .methods import METHODS
from .rows import Row

__all__ = ["TUNED", "tuned_config", "tuned_from_result", "tuned_settings"]

#: Per method: its registry entry's ``tuned`` setting (:attr:`MethodSpec.tuned`), the setting the
#: published run's search selected on the most source-domain sets. mfr (6 of 7), mfr_first_order
#: (5), cosface (4) and cdt (6) kept the defaults; mldg 3 of 7, softmax and arcface 4 of 7, coral 7
#: of 7, mixstyle 4 of 7 (the last three searched by the extension of issue 25).
TUNED: dict[str, dict[str, float]] = {name: dict(spec.tuned) for name, spec in METHODS.items() if spec.tuned}

_DEFAULTS = TrainConfig()


def tuned_settings(method: str, config: TrainConfig | None = None, fixed: Collection[str] = ()) -> dict[str, Any]:
    """``method``'s tuned values (:data:`TUNED`) for the fields ``config`` leaves at
    :class:`TrainConfig`'s defaults and ``fixed`` does not name (fields a user set, even to the
    default value). Two-stage and equal-compute rows use their trained method's entry."""
    config = config or _DEFAULTS
    return {
        name: value
        for name, value in TUNED.get(Row.parse(method).method, {}).items()
        if name not in fixed and getattr(config, name) == getattr(_DEFAULTS, name)
    }


def tuned_config(config: TrainConfig, fixed: Collection[str] = ()) -> TrainConfig:
    """``config`` with its method's tuned settings (:func:`tuned_settings`) filled in."""
    return dataclasses.replace(config, **tuned_settings(config.method, config, fixed))


def tuned_from_result(settings: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The :data:`TUNED` table a search's selections imply: ``settings`` is a results.json's
    ``settings`` (``"<method>|<targets>"`` -> selected setting, ``{}`` for the defaults); per method
    the setting selected for the most target groups (ties: the defaults, then the first selected),
    left out where that is the defaults."""
    votes: dict[str, Counter[str]] = {}
    chosen: dict[str, dict[str, dict[str, Any]]] = {}
    for key, setting in settings.items():
        method = key.split("|")[0]
        name = repr(sorted(setting.items()))
        votes.setdefault(method, Counter())[name] += 1
        chosen.setdefault(method, {}).setdefault(name, dict(setting))
    table = {}
    for method, counts in votes.items():
        top = max(counts.values())
        defaults = repr([])
        winner = defaults if counts.get(defaults) == top else next(n for n in chosen[method] if counts[n] == top)
        if chosen[method][winner]:
            table[method] = chosen[method][winner]
    return table
