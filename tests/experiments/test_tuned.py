"""Tuned defaults: every method starts from the setting the published run's search selected, for
the fields a user left at TrainConfig's defaults; ``--untuned`` / ``tuned=False`` and ``--search``
replace them, and a results.json records which ones trained."""

import json
from pathlib import Path

import pytest
from cli_args import TINY_GRAY

import mfr
from mfr import FaceData, TrainConfig
from mfr.experiments.cli import main
from mfr.experiments.reproduce import run_protocol
from mfr.experiments.tuned import TUNED, tuned_config, tuned_from_result, tuned_settings

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "runs" / "faces-lodo-1000" / "results.json"


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=4, size=16, channels=1, seed=1)


def cfg(**kw):
    base = {"input_size": 16, "channels": 1, "width": 4, "embedding_dim": 16, "ids_per_domain": 4, "steps": 3}
    return TrainConfig(**{**base, "warmup_steps": 1, **kw})


def quiet(**kw):
    return {"progress": False, "log": None, "n_bootstrap": 10, **kw}


def test_the_table_is_what_the_published_search_selected():
    settings = json.loads(PUBLISHED.read_text())["settings"]
    assert len(settings) == 9 * 7  # nine searched methods (three added by the extension), seven source-domain sets
    assert tuned_from_result(settings) == TUNED


def test_plurality_with_the_defaults_winning_ties():
    a, b = {"lr": 0.1}, {"lr": 0.2}
    assert tuned_from_result({"x|1": a, "x|2": a, "x|3": {}, "x|4": b}) == {"x": a}
    assert tuned_from_result({"x|1": a, "x|2": {}, "y|1": b, "y|2": a}) == {"y": b}  # a tie: defaults, then first


def test_tuned_settings_fill_only_fields_left_at_the_defaults():
    assert tuned_settings("mfr") == {}
    assert tuned_settings("softmax") == TUNED["softmax"]
    for row in ("mldg:time", "mldg@arcface"):  # a row trains its first method
        assert tuned_settings(row) == TUNED["mldg"]
    assert tuned_settings("softmax", TrainConfig(lr=0.2)) == {"head_scale": TUNED["softmax"]["head_scale"]}
    assert tuned_settings("softmax", fixed={"lr"}) == {"head_scale": TUNED["softmax"]["head_scale"]}
    c = tuned_config(TrainConfig(method="arcface", steps=7))
    assert (c.lr, c.head_scale, c.margin, c.steps) == (
        TUNED["arcface"]["lr"],
        TUNED["arcface"]["head_scale"],
        TUNED["arcface"]["margin"],
        7,
    )


def test_protocol_trains_each_method_with_its_tuned_setting(data):
    kw = quiet(targets=[data.domain_names[0]])
    tuned = run_protocol(data, "lodo", methods=["softmax", "mfr"], config=cfg(), **kw)
    assert tuned.tuned and tuned.settings == {
        f"softmax|{data.domain_names[0]}": TUNED["softmax"],
        f"mfr|{data.domain_names[0]}": {},
    }
    assert "Settings: every method started from its tuned setting" in tuned.markdown()
    by_hand = run_protocol(data, "lodo", methods=["softmax"], config=cfg(**TUNED["softmax"]), tuned=False, **kw)
    plain = run_protocol(data, "lodo", methods=["softmax"], config=cfg(), tuned=False, **kw)
    assert not plain.tuned and "Settings:" not in plain.markdown()
    softmax = [next(r for r in res.runs if r["method"] == "softmax")["metrics"] for res in (tuned, by_hand, plain)]
    assert json.dumps(softmax[0]) == json.dumps(softmax[1])  # (NaN where a FAR is out of reach)
    assert softmax[0]["auc"]["estimate"] != softmax[2]["auc"]["estimate"]
    fixed = run_protocol(data, "lodo", methods=["softmax"], config=cfg(), fixed={"lr"}, **kw)
    assert fixed.settings == {f"softmax|{data.domain_names[0]}": {"head_scale": TUNED["softmax"]["head_scale"]}}


def test_results_from_before_tuned_settings_resume_only_untuned(data, tmp_path):
    out = tmp_path / "out"
    kw = quiet(targets=[data.domain_names[0]], config=cfg(), out_dir=out)
    run_protocol(data, "lodo", methods=["softmax"], tuned=False, **kw)
    saved = json.loads((out / "results.json").read_text())
    del saved["tuned"]  # as the files of earlier versions are
    (out / "results.json").write_text(json.dumps(saved))
    before = (out / "results.json").read_bytes()
    with pytest.raises(mfr.InvalidInputError, match=r"another tuned: False earlier, True now .*tuned=False"):
        run_protocol(data, "lodo", methods=["softmax"], resume=True, **kw)
    assert (out / "results.json").read_bytes() == before
    assert run_protocol(data, "lodo", methods=["softmax", "arcface"], resume=True, tuned=False, **kw).complete


def test_resume_refuses_other_fixed_fields(data, tmp_path):
    out = tmp_path / "out"
    kw = quiet(targets=[data.domain_names[0]], config=cfg(), out_dir=out)
    run_protocol(data, "lodo", methods=["softmax"], **kw)
    with pytest.raises(mfr.InvalidInputError, match="softmax trained with the tuned setting"):
        run_protocol(data, "lodo", methods=["softmax"], resume=True, fixed={"lr"}, **kw)
    assert run_protocol(data, "lodo", methods=["softmax"], resume=True, **kw).complete


@pytest.mark.parametrize(
    ("extra", "lr"),
    [
        ([], TUNED["softmax"]["lr"]),
        (["--lr", "0.05"], 0.05),  # given on the command line, though the default
        (["--set", "lr=0.05"], 0.05),
        (["--untuned"], 0.05),
    ],
)
def test_cli_train_starts_from_the_tuned_setting_unless_told(extra, lr, tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train", *TINY_GRAY, "--method", "softmax", "--steps", "1", "--eval-every", "0", "--out", str(out)]
    assert main([*args, *extra]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == lr
    assert config["head_scale"] == (30.0 if "--untuned" in extra else TUNED["softmax"]["head_scale"])


def test_cli_reproduce_records_the_tuned_settings(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["reproduce", *TINY_GRAY, "--steps", "1", "--targets", "0", "--bootstrap", "5", "--out", str(out)]
    assert main([*base, "--methods", "mldg,softmax", "--set", "gamma=0.5"]) == 0
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert list(settings.values()) == [
        {k: v for k, v in TUNED["mldg"].items() if k != "gamma"},  # --set gamma=0.5: the user's
        TUNED["softmax"],
    ]
    assert "mldg: alpha=0.001576, lr=0.04397" in (out / "results.md").read_text()
