"""The method registry (mfr.experiments.methods.METHODS) and protocol rows (mfr.experiments.rows)."""

import pytest

import mfr
from mfr.experiments.cli import build_parser, main
from mfr.experiments.methods import METHODS, POOLED, MethodSpec
from mfr.experiments.reproduce import check_methods
from mfr.experiments.rows import Row
from mfr.experiments.train import TrainConfig
from mfr.experiments.tuned import TUNED


def test_every_method_is_one_entry_that_the_harness_reads():
    assert all(isinstance(s, MethodSpec) and s.name == n for n, s in METHODS.items())
    assert POOLED == ("softmax", "cosface", "arcface")
    assert {n: dict(s.tuned) for n, s in METHODS.items() if s.tuned} == TUNED
    fields = set(TrainConfig.__dataclass_fields__)
    for spec in METHODS.values():
        assert spec.kind in ("meta", "ablation", "pooled", "dg") and spec.summary and spec.reference
        assert set(spec.space) <= fields and set(spec.tuned) <= set(spec.space)
        assert all(p in POOLED for p in spec.stage1)
    help_text = build_parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
    assert all(name in help_text for name in METHODS)


@pytest.mark.parametrize("name", ["mfr", "mfr@arcface", "cosface:time", "untrained", "mldg@softmax"])
def test_a_row_name_parses_and_prints_back(name):
    assert str(Row.parse(name)) == name


def test_rows_are_checked_against_the_registry():
    assert Row.parse("mfr@cosface").parts == ("cosface", "mfr") and Row.parse("mfr@cosface").two_stage
    assert Row.parse("arcface:time").budget == "time" and Row.parse("arcface:time").method == "arcface"
    with pytest.raises(mfr.InvalidInputError, match="cannot fine-tune from 'mldg'"):
        Row.parse("mfr@mldg").check()
    with pytest.raises(mfr.InvalidInputError, match="unknown method 'sphereface'"):
        Row.parse("sphereface").check()
    check_methods(["mfr", "mfr_no_da@arcface", "cosface"])
    for bad in (["cosface@mfr"], ["mfr:time"], ["mfr", "mfr"]):
        with pytest.raises(mfr.InvalidInputError):
            check_methods(bad)


def test_training_flags_come_from_trainconfig_fields(capsys):
    parser = build_parser()
    a = parser.parse_args(["train", "--batch-ids", "5", "--no-flip", "--amp", "off", "--width", "none"])
    b = parser.parse_args(["train", "--ids-per-domain", "5", "--no-flip", "--amp", "off", "--width", "none"])
    assert a.ids_per_domain == b.ids_per_domain == 5 and a.flip is False and a.amp is None and a.width is None
    assert not hasattr(parser.parse_args(["train"]), "lr")  # not given: TrainConfig's default applies
    text = parser._subparsers._group_actions[0].choices["train"].format_help()
    for f in TrainConfig.__dataclass_fields__.values():
        assert f.metadata["help"] in " ".join(text.split()), f.name


def test_negative_step_counts_are_refused(tmp_path, capsys):
    assert main(["reproduce", "--eval-every", "-5", "--out", str(tmp_path / "o")]) == 2
    assert "eval_every must be >= 0, got -5" in capsys.readouterr().err
    with pytest.raises(mfr.InvalidInputError, match="checkpoint_every must be >= 0"):
        TrainConfig(checkpoint_every=-1).check()


def test_export_under_a_regular_file_is_a_user_error(tmp_path, capsys):
    (tmp_path / "some_file.png").write_text("not a folder")
    assert main(["export", str(tmp_path / "none.safetensors"), str(tmp_path / "some_file.png" / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "some_file.png: exists and is not a folder" in err
