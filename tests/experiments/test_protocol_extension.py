"""Extending a finished protocol: resume accepts added rows (methods, options) and refuses anything
else; runs record the machine that timed them, and equal-compute rows or cost ratios that would
compare machines use a calibration run instead; the verdict names the best method that is not MFR."""

import json

import pytest

import mfr
from mfr import FaceData, TrainConfig
from mfr.experiments.reproduce import ProtocolResult, records, run_protocol
from mfr.experiments.reproduce.stats import best_other, is_mfr_row


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=10, images_per_id=3, size=16, channels=1, seed=1)


def cfg(**kw):
    base = dict(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=4, steps=6, warmup_steps=1)
    return TrainConfig(**{**base, **kw})


def kw(data, **extra):
    return {
        "targets": [data.domain_names[0]],
        "config": cfg(),
        "progress": False,
        "log": None,
        "n_bootstrap": 10,
        "n_gallery_draws": 2,
        "budget": "time",
        **extra,
    }


def test_resume_adds_methods_and_rows_and_keeps_every_earlier_run(data, tmp_path):
    out = tmp_path / "run"
    first = run_protocol(data, "lodo", methods=["mfr", "cosface"], out_dir=out, **kw(data))
    earlier = {(r["method"], r["seed"]): r for r in first.runs}
    added = ["mfr", "cosface", "coral", "cosface+swad", "mfr+swad"]
    with pytest.raises(mfr.InvalidInputError, match="another config"):
        run_protocol(data, "lodo", methods=added, out_dir=out, resume=True, **kw(data, config=cfg(lr=0.01)))
    with pytest.raises(mfr.InvalidInputError, match="another evaluation"):
        run_protocol(data, "lodo", methods=added, out_dir=out, resume=True, **kw(data, n_bootstrap=11))
    extended = run_protocol(data, "lodo", methods=added, out_dir=out, resume=True, **kw(data))
    assert extended.complete and extended.methods == added
    rows = {r["method"] for r in extended.runs}
    assert rows == {"untrained", *added, "cosface:time", "coral:time", "cosface+swad:time"}
    for key, run in earlier.items():  # taken over untouched, never retrained
        again = next(r for r in extended.runs if (r["method"], r["seed"]) == key)
        assert json.dumps(again, sort_keys=True) == json.dumps(run, sort_keys=True)
    swad_run = next(r for r in extended.runs if r["method"] == "cosface+swad")
    assert swad_run["config"]["swad"] and swad_run["swad"]["losses"]
    assert all(r["machine"] == extended.machine for r in extended.runs)
    loaded = ProtocolResult.load(out)
    assert len(loaded.runs) == len(extended.runs) and loaded.machines == extended.machines


def test_an_extension_on_another_machine_budgets_from_a_calibration(data, tmp_path):
    out = tmp_path / "run"
    run_protocol(data, "lodo", methods=["mfr", "cosface"], out_dir=out, **kw(data))
    # pretend the first runs were timed elsewhere, 10x slower, as a run made on an older machine
    header = json.loads((out / records.HEADER).read_text())
    elsewhere = {"processor": "Elsewhere CPU", "cpu_count": 2, "torch_threads": 2}
    header["machines"] = {"Elsewhere CPU, 2 cores, 2 torch threads": elsewhere}
    header["hardware"] = elsewhere
    (out / records.HEADER).write_text(json.dumps(header))
    runs = records.read_folder(out)["runs"]
    for r in runs:
        r.pop("machine", None)  # runs written before machines were recorded
        r["step_seconds"] = 10 * r.get("step_seconds", 0.0)
    records.write_folder(out, header, runs)
    messages = []
    extended = run_protocol(
        data, "lodo", methods=["mfr", "cosface", "coral"], out_dir=out, resume=True, **kw(data, log=messages.append)
    )
    here = extended.machine
    assert list(extended.machines) == ["Elsewhere CPU, 2 cores, 2 torch threads", here]
    assert set(extended.calibration[here]) == {"mfr", "cosface"}
    assert any("calibration: mfr" in m for m in messages)
    coral = next(r for r in extended.runs if r["method"] == "coral" and r["seed"] == 0)
    timed = next(r for r in extended.runs if r["method"] == "coral:time" and r["seed"] == 0)
    mfr_run = next(r for r in extended.runs if r["method"] == "mfr" and r["seed"] == 0)
    per_step = coral["step_seconds"] / coral["steps"]
    expected = round(extended.calibration[here]["mfr"] * mfr_run["steps"] / per_step)
    assert timed["steps"] == max(1, expected)  # this machine's MFR speed, not the 10x slower record
    table = extended.markdown()
    assert "| machine |" in table and "Elsewhere CPU" in table and "x cosface" in table


def test_the_verdict_names_the_best_method_that_is_not_mfr(data):
    result = run_protocol(data, "lodo", methods=["mfr", "cosface", "coral", "mfr+swad"], **kw(data))
    grid = result.grid("tar@far=1e-2")
    other = best_other(grid)
    assert other in ("cosface", "coral") and not is_mfr_row("coral") and is_mfr_row("mfr+swad")
    assert is_mfr_row("mfr_no_da") and is_mfr_row("mfr@arcface") and not is_mfr_row("mldg@arcface")
    assert result.best_other(budget="time") in ("cosface:time", "coral:time")
    text = result.verdict()
    assert "best pooled baseline" in text and "best method that is not MFR" in text
    assert f"mfr - {other} =" in text


def test_cli_reproduce_runs_every_new_row(tmp_path, capsys):
    """The issue's command, on the built-in synthetic data (made tiny)."""
    from cli_args import TINY_GRAY

    from mfr.experiments.cli import main

    out = tmp_path / "o"
    methods = "coral,mixstyle,cdt,cosface+swad,mfr+swad"
    code = main(["reproduce", *TINY_GRAY, "--methods", methods, "--steps", "20", "--bootstrap", "5", "--out", str(out)])
    assert code == 0
    result = ProtocolResult.load(out)
    assert result.complete and result.rows() == ["untrained", *methods.split(",")]
    for row in methods.split(","):
        assert {r["target"] for r in result.runs if r["method"] == row} == set(result.targets)
    text = (out / "results.md").read_text()
    assert all(f"| {row} |" in text for row in methods.split(","))
