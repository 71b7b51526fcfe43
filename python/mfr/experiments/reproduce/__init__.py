"""GFR-style protocols: train every method on source domains, evaluate on unseen target domains.

- ``lodo`` (as the paper's GFR-R): each target domain in turn is held out; every method trains on
  all the other domains and is evaluated on it.
- ``multi`` (as GFR-V): every method trains once on the named source domains and is evaluated on
  each named target domain.

Every method gets the same backbone, data, meta-batches and step budget (:class:`TrainConfig`);
``seeds`` repeats everything with seeds 0..K-1. The untrained network (the seed's initialisation)
is evaluated too, as row ``untrained``. Every run of a target is evaluated with one evaluation
seed, so all methods and seeds are scored on the same pairs, folds, galleries and identity draws
(see :mod:`mfr.experiments.evaluate`), which makes paired comparisons possible (:meth:`ProtocolResult.compare`).

Results (kept after each run, so an interrupted protocol keeps what it finished and says it is
incomplete): ``runs.jsonl`` (every run with its metrics, CIs, bootstrap resamples, ROC points and
timings, one line appended per run), ``results.json`` (the mfr version, git commit, command line,
data fingerprint, machine, configuration and search), ``results.md`` (method x target tables,
paired differences against the best pooled baseline, cost), ``results.csv``, ``tables.tex`` (booktabs) and ``roc_<target>.png`` / ``.svg`` (matplotlib, when
installed).

The package, one concern per module:

- :mod:`.spec`: target groups, row checks, metric names (rows themselves: :mod:`mfr.experiments.rows`);
- :mod:`.runner`: :func:`run_protocol` and its named steps; :mod:`.resume`: what may be resumed;
- :mod:`.records`: the typed run record and the files; :mod:`.provenance`: machine, build, data;
- :mod:`.stats`: paired intervals, summaries, comparisons, curves, timings (pure functions of records);
- :mod:`.report`: the Markdown sections, CSV and LaTeX; :mod:`.plots`: the figures;
- :mod:`.result`: :class:`ProtocolResult`, which ties them together.
"""

from __future__ import annotations

from .provenance import data_fingerprint, provenance
from .records import RunRecord
from .result import ProtocolResult
from .runner import run_protocol
from .spec import METRIC_TITLES, check_methods
from .stats import Comparison, Difference

__all__ = [
    "METRIC_TITLES",
    "Comparison",
    "Difference",
    "ProtocolResult",
    "RunRecord",
    "check_methods",
    "data_fingerprint",
    "provenance",
    "run_protocol",
]
