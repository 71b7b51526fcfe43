"""Run records on disk (mfr.experiments.reproduce.records): the header plus append-only runs,
gzip, the schema-1 single file, interrupted appends, and files that are not results."""

import dataclasses
import gzip
import json

import pytest

import mfr
from mfr.experiments.reproduce import ProtocolResult, report
from mfr.experiments.reproduce.records import RUNS, RUNS_GZ, append_runs, read_folder
from mfr.experiments.train import TrainConfig


def _run(method, target, seed, n_impostor=7, n_genuine=3):
    fp = [0, 1, 1, 4, 7]
    tp = [0, 1, 2, 3, 3]
    return {
        "method": method,
        "target": target,
        "seed": seed,
        "sources": ["a", "b"],
        "n_genuine": n_genuine,
        "n_impostor": n_impostor,
        "metrics": {"auc": {"estimate": 0.9, "low": 0.8, "high": 1.0}},
        "roc": {"fpr": [k / n_impostor for k in fp], "tpr": [k / n_genuine for k in tp]},
        "train_seconds": 1.5,
        "steps": 4,
    }


def _result(runs):
    config = dataclasses.asdict(TrainConfig(steps=4))
    return ProtocolResult("lodo", "toy", config, ["mfr"], ["t"], 1, runs=runs)


@pytest.mark.parametrize("compress", [False, True])
def test_a_saved_result_loads_back_exactly_and_runs_append(tmp_path, compress):
    r = _result([_run("mfr", "t", 0)])
    r.save(tmp_path, compress=compress)
    assert (tmp_path / (RUNS_GZ if compress else RUNS)).exists()
    assert not (tmp_path / (RUNS if compress else RUNS_GZ)).exists()
    header = json.loads((tmp_path / "results.json").read_text())
    assert header["schema"] == 2 and "runs" not in header
    with gzip.open(tmp_path / RUNS_GZ, "rt") if compress else open(tmp_path / RUNS) as f:
        line = f.read()
    assert '"fp":[0,1,1,4,7]' in line  # ROC points stored as exact counts
    append_runs(tmp_path, [_run("mfr", "t", 1)])
    back = ProtocolResult.load(tmp_path)
    assert back.runs == [_run("mfr", "t", 0), _run("mfr", "t", 1)]


def test_a_rate_that_is_not_a_count_keeps_its_floats(tmp_path):
    odd = _run("mfr", "t", 0)
    odd["roc"]["fpr"][1] = 0.123456789
    _result([odd]).save(tmp_path)
    assert '"fpr"' in (tmp_path / RUNS).read_text()
    assert ProtocolResult.load(tmp_path).runs == [odd]


def test_an_append_cut_short_is_left_out_and_a_corrupt_line_is_an_error(tmp_path):
    _result([_run("mfr", "t", 0)]).save(tmp_path)
    with open(tmp_path / RUNS, "a") as f:
        f.write('{"method": "mfr", "tar')  # killed mid-line
    assert len(ProtocolResult.load(tmp_path).runs) == 1
    (tmp_path / RUNS).write_text('{"method": "mfr"\n' + json.dumps(_run("mfr", "t", 1)) + "\n")
    with pytest.raises(mfr.DataError, match="line 1 is not a run record"):
        ProtocolResult.load(tmp_path)


def test_the_single_file_format_of_earlier_versions_loads_and_converts(tmp_path):
    r = _result([_run("mfr", "t", 0)])
    (tmp_path / "results.json").write_text(json.dumps(r.to_dict()))  # schema 1: runs inside
    old = ProtocolResult.load(tmp_path)
    assert old.runs == r.runs
    old.save(tmp_path)
    assert "runs" not in json.loads((tmp_path / "results.json").read_text())
    assert read_folder(tmp_path)["runs"] == r.runs


def test_a_file_that_is_not_a_complete_result_is_an_mfr_error_naming_it(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"protocol": "lodo", "runs": []}))
    with pytest.raises(mfr.DataError, match=r"results.json is not a complete protocol result: it lacks data, config"):
        ProtocolResult.load(tmp_path)
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(mfr.DataError, match="a JSON object was expected"):
        ProtocolResult.load(tmp_path / "results.json")
    (tmp_path / "results.json").write_text(json.dumps({"schema": 9}))
    with pytest.raises(mfr.DataError, match="schema 9"):
        ProtocolResult.load(tmp_path)


def test_finished_runs_count_target_groups_as_expected_runs_does():
    """protocol multi: one trained run per row and seed evaluates every target of its group."""
    runs = [dict(_run(m, t, s), sources=["a", "b"]) for m in ("mfr", "untrained") for t in ("c", "d") for s in (0, 1)]
    r = _result(runs)
    r.protocol, r.targets, r.seeds, r.expected_runs = "multi", ["c", "d"], 2, 3
    assert r.finished_runs() == 2  # not 4: two targets per run
    assert "Status: INCOMPLETE: 2 of 3 runs finished." in report.header(r)
