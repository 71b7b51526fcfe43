"""Protocol features for decisive comparisons: hyperparameter search by training-domain validation,
two-stage variants, equal-compute rows, resuming an interrupted protocol, pretrained starts, and
the command line's refusals."""

import json

import pytest
import torch
from cli_args import TINY_GRAY

import mfr
from mfr import FaceData, TrainConfig, Trainer
from mfr.experiments.cli import main
from mfr.experiments.evaluate import METRICS
from mfr.experiments.methods import METHODS
from mfr.experiments.reproduce import ProtocolResult, run_protocol
from mfr.experiments.search import sample_settings


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=4, size=16, channels=1, seed=1)


def cfg(**kw):
    return TrainConfig(
        **{
            "input_size": 16,
            "channels": 1,
            "width": 4,
            "embedding_dim": 16,
            "ids_per_domain": 4,
            "steps": 3,
            "warmup_steps": 1,
            **kw,
        }
    )


def quiet(**kw):
    return {"progress": False, "log": None, "n_bootstrap": 10, **kw}


def test_search_settings_are_seeded_and_in_range():
    for method, spec in METHODS.items():
        space = spec.space
        settings = sample_settings(method, 6, seed=3)
        assert settings[0] == {} and settings == sample_settings(method, 6, seed=3)
        assert settings != sample_settings(method, 6, seed=4)
        for s in settings[1:]:
            assert set(s) == set(space)
            for name, (_, low, high) in space.items():
                assert low <= s[name] <= high, (method, name, s[name])
                assert name in {f for f in TrainConfig.__dataclass_fields__}
    with pytest.raises(mfr.InvalidInputError, match=">= 1"):
        sample_settings("mfr", 0)
    with pytest.raises(mfr.InvalidInputError, match="no search space"):
        sample_settings("sphereface", 2)


@pytest.mark.slow
def test_search_selects_on_validation_never_on_the_target(tmp_path):
    data = FaceData.synthetic(n_domains=4, ids_per_domain=8, images_per_id=4, size=16, channels=1, seed=1)
    names = data.domain_names
    kw = quiet(protocol="multi", sources=names[:2], methods=["mfr", "arcface"], config=cfg(), search=3, search_steps=2)
    r = run_protocol(data, targets=[names[2]], out_dir=tmp_path, **kw)
    assert {s["method"] for s in r.searches} == {"mfr", "arcface"}
    for s in r.searches:
        assert len(s["candidates"]) == 3 and s["select_metric"] == "auc"
        vals = [c["validation"] for c in s["candidates"]]
        assert s["selected"] == max(range(3), key=lambda i: (vals[i], -i))
        chosen = s["candidates"][s["selected"]]["setting"]
        run = next(x for x in r.runs if x["method"] == s["method"])
        assert all(run["config"][k] == v for k, v in chosen.items())  # every seed trains the selection
        assert set(s["oracle"]) == {names[2]}
    md = (tmp_path / "results.md").read_text()
    assert "Model selection" in md and "oracle" in md
    # The target cannot influence the selection: the same sources with another target, the same
    # candidates, validation scores and selections (only the oracle's target scores differ).
    other = run_protocol(data, targets=[names[3]], **kw)
    assert [s["selected"] for s in other.searches] == [s["selected"] for s in r.searches]
    assert [[c["validation"] for c in s["candidates"]] for s in other.searches] == [
        [c["validation"] for c in s["candidates"]] for s in r.searches
    ]


@pytest.mark.slow
def test_two_stage_equal_time_and_curves(data, tmp_path):
    names = data.domain_names
    r = run_protocol(
        data,
        "lodo",
        targets=[names[0]],
        methods=["mfr", "softmax", "mfr@arcface"],
        config=cfg(steps=4, eval_every=2),
        out_dir=tmp_path,
        budget="time",
        **quiet(),
    )
    rows = r.rows()
    assert rows == ["untrained", "mfr", "softmax", "mfr@arcface", "softmax:time"]
    two = next(x for x in r.runs if x["method"] == "mfr@arcface")
    assert two["config"]["method"] == "mfr" and two["config"]["steps"] == 2 and two["steps"] == 4
    assert two["config"]["init"].endswith("stage1.safetensors")
    assert [p["step"] for p in two["eval_curve"]] == [4]  # stage 2 evaluates at its step 2 = step 4 overall
    assert (tmp_path / "runs" / f"arcface-stage1-{names[0]}-seed0" / "stage1.safetensors").exists()
    mfr_run = next(x for x in r.runs if x["method"] == "mfr")
    soft = next(x for x in r.runs if x["method"] == "softmax")
    timed = next(x for x in r.runs if x["method"] == "softmax:time")
    assert timed["steps"] == max(1, round(mfr_run["step_seconds"] / (soft["step_seconds"] / soft["steps"])))
    assert timed["steps"] >= soft["steps"]  # a pooled step is cheaper than a meta-step
    assert [p["step"] for p in mfr_run["eval_curve"]] == [2, 4]
    assert "hard_positives" in mfr_run["curve"][0]
    assert (tmp_path / f"curves_{names[0]}.png").exists() and (tmp_path / f"curves_{names[0]}.svg").exists()
    md = (tmp_path / "results.md").read_text()
    assert (
        "| softmax:time |" in md
        and "difference vs softmax:time" in md
        and r.best_pooled(budget="time") == "softmax:time"
    )
    # the diagnostics in the report: learning curves (mean over runs) and the hard pairs over training
    curves = r.curve_table()
    assert "| step 2 | step 4 |" in curves
    assert (
        f"| mfr | {mfr_run['eval_curve'][0]['tar@far=1e-2']:.3f} | {mfr_run['metrics']['tar@far=1e-2']['estimate']:.3f} |"
        in curves
    )
    first, last = mfr_run["curve"][0], mfr_run["curve"][-1]
    hard = r.hard_pair_table()
    assert f"| mfr | {first['hard_positives']:.1f} / {first['hard_negatives']:.1f} |" in hard
    assert hard.split("\n")[-2].endswith(f"{last['hard_positives']:.1f} / {last['hard_negatives']:.1f} |")
    assert "| softmax |" not in hard  # no hard-pair loss
    assert curves in md and hard in md
    with pytest.raises(mfr.InvalidInputError, match="include mfr"):
        run_protocol(data, "lodo", methods=["softmax"], config=cfg(), budget="time", **quiet())
    with pytest.raises(mfr.InvalidInputError, match="unknown method"):
        run_protocol(data, "lodo", methods=["arcface@mfr"], config=cfg(), **quiet())


def test_step_seconds_leave_out_interrupted_steps():
    class Fake:
        step = 12
        train_seconds = 99.0
        restored_step_seconds = None
        swad = None
        history = [{"seconds": 0.1}] * 10 + [{"seconds": 30.0}]  # one step paused; one step's row missing (resumed)

    assert Trainer.step_seconds(Fake()) == pytest.approx(0.1 * 12)
    Fake.history = []  # no per-step times: the measured total
    assert Trainer.step_seconds(Fake()) == 99.0
    Fake.history = [{"seconds": 0.2}, {"seconds": 0.1}, {"seconds": 0.4}]  # nothing over 3x the median: the plain mean
    assert Trainer.step_seconds(Fake()) == pytest.approx(0.7 / 3 * 12)


def test_a_finished_run_loaded_from_its_checkpoint_keeps_its_step_time(data, tmp_path):
    """Two-stage rows share their first stage: the second row loads it finished, and its cost must
    still leave out a pause the first stage had (it has no per-step times then)."""
    first = Trainer(cfg(method="softmax", steps=4), data, out_dir=tmp_path / "s1")
    first.fit()
    first.history[1]["seconds"] = 500.0  # paused in one step
    first.train_seconds += 500.0
    first.save()
    robust = first.step_seconds()
    assert robust < 100
    again = Trainer(cfg(method="softmax", steps=4), data, out_dir=tmp_path / "s1")
    again.fit(resume=True)  # finished: loads, trains nothing
    assert again.history == [] and again.train_seconds > 500
    assert again.step_seconds() == pytest.approx(robust)


@pytest.mark.slow
def test_resume_continues_and_refuses_other_configurations(data, tmp_path):
    names = data.domain_names
    kw = quiet(targets=[names[0]], config=cfg())
    whole = run_protocol(data, "lodo", methods=["softmax", "mfr"], **kw)

    def stop(_msg):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(data, "lodo", methods=["softmax", "mfr"], out_dir=out, **{**kw, "log": stop})
    first = ProtocolResult.load(out)
    assert not first.complete and {r["method"] for r in first.runs} == {"untrained", "softmax"}
    with pytest.raises(mfr.InvalidInputError, match="already holds results"):
        run_protocol(data, "lodo", methods=["softmax", "mfr"], out_dir=out, **kw)
    before = (out / "results.json").read_bytes()
    with pytest.raises(mfr.InvalidInputError, match="another config"):
        run_protocol(
            data, "lodo", methods=["softmax", "mfr"], out_dir=out, resume=True, **{**kw, "config": cfg(steps=5)}
        )
    other = FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=4, size=16, channels=1, seed=2)
    with pytest.raises(mfr.InvalidInputError, match="other data"):
        run_protocol(other, "lodo", methods=["softmax", "mfr"], out_dir=out, resume=True, **kw)
    assert (out / "results.json").read_bytes() == before  # nothing lost
    resumed = run_protocol(data, "lodo", methods=["softmax", "mfr"], out_dir=out, resume=True, **kw)
    assert resumed.complete
    kept = next(r for r in resumed.runs if r["method"] == "softmax")
    assert (
        kept["train_seconds"] == next(r for r in first.runs if r["method"] == "softmax")["train_seconds"]
    )  # not retrained
    for metric in METRICS:
        assert resumed.table(metric) == whole.table(metric)
    # force starts over
    again = run_protocol(data, "lodo", methods=["softmax"], out_dir=out, force=True, **kw)
    assert {r["method"] for r in again.runs} == {"untrained", "softmax"}


def test_init_from_an_arcface_torch_state_dict(data, tmp_path):
    torch.manual_seed(5)
    donor = mfr.nn.Backbone("iresnet18", width=8, input_size=16, embedding_dim=16, in_channels=1)
    state = {f"module.{k}": v for k, v in donor.state_dict().items()}  # as DataParallel saves it
    torch.save(state, tmp_path / "backbone.pth")
    c = cfg(backbone="iresnet18", width=8, steps=1, init=str(tmp_path / "backbone.pth"), method="arcface")
    trainer = Trainer(c, data.subset(data.domain_names[:2]))
    for (k, a), b in zip(trainer.backbone.state_dict().items(), donor.state_dict().values()):
        assert torch.equal(a, b), k
    trainer.fit()  # fine-tunes
    assert not torch.equal(trainer.backbone.parameter_list()[0], donor.parameter_list()[0])
    # mfr checkpoints and safetensors state dicts are accepted too; mismatches are named.
    ckpt = trainer.save(tmp_path / "ck.safetensors")
    Trainer(cfg(backbone="iresnet18", width=8, init=str(ckpt)), data.subset(data.domain_names[:2]))
    with pytest.raises(mfr.InvalidInputError, match="does not fit"):
        Trainer(cfg(init=str(tmp_path / "backbone.pth")), data.subset(data.domain_names[:2]))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(mfr.DataError, match="cannot read"):
        Trainer(cfg(init=str(tmp_path / "junk.pth")), data.subset(data.domain_names[:2]))
    with pytest.raises(mfr.DataError, match="not a file"):
        Trainer(cfg(init=str(tmp_path / "missing.pth")), data.subset(data.domain_names[:2]))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--search", "0"], "--search needs a number of settings >= 1"),
        (["--search", "-2"], "--search needs a number of settings >= 1"),
        (["--budget", "time", "--methods", "arcface"], "include mfr"),
        (["--protocol", "multi", "--sources", "0,1", "--targets", "1"], "overlap"),
        (["--methods", "mfr@mfr"], "unknown method"),
    ],
)
def test_cli_refuses_bad_protocols(extra, message, tmp_path, capsys):
    assert main(["reproduce", *TINY_GRAY, "--steps", "1", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_resume_into_other_configuration_keeps_the_results(tmp_path, capsys):
    out = tmp_path / "o"
    assert (
        main(
            [
                "reproduce",
                *TINY_GRAY,
                "--steps",
                "1",
                "--methods",
                "softmax",
                "--targets",
                "0",
                "--bootstrap",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert (
        main(
            [
                "reproduce",
                *TINY_GRAY,
                "--steps",
                "2",
                "--methods",
                "softmax",
                "--targets",
                "0",
                "--bootstrap",
                "5",
                "--out",
                str(out),
                "--resume",
            ]
        )
        == 2
    )
    assert "cannot resume" in capsys.readouterr().err
    assert (
        main(
            [
                "reproduce",
                *TINY_GRAY,
                "--steps",
                "1",
                "--methods",
                "softmax",
                "--targets",
                "0",
                "--bootstrap",
                "5",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert json.loads((out / "results.json").read_text())["complete"] is True


def test_cli_version_and_threads(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    info = mfr.build_info()
    expected = f"mfr {mfr.__version__} (commit {info['commit']}, torch {info['torch']})"
    assert e.value.code == 0 and capsys.readouterr().out.strip() == expected
    threads = torch.get_num_threads()
    try:
        (tmp_path / "file").write_text("x")
        assert (
            main(
                [
                    "reproduce",
                    *TINY_GRAY,
                    "--steps",
                    "1",
                    "--methods",
                    "softmax",
                    "--targets",
                    "0",
                    "--threads",
                    "1",
                    "--out",
                    str(tmp_path / "file" / "x"),
                ]
            )
            == 2
        )
        assert torch.get_num_threads() == 1 and mfr.get_num_threads() == 1  # set for torch and mfr before anything else
    finally:
        torch.set_num_threads(threads)
        mfr.set_num_threads(threads)
    assert main(["train", *TINY_GRAY, "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_fine_tune_from_arcface_torch_weights_with_a_config_file(tmp_path, capsys):
    """The issue's end-to-end path: arcface_torch-layout iresnet18 weights (a torch.save'd state dict
    of reference.IResNet, DataParallel prefixes) fine-tuned by `mfr train --config`."""
    from cli_args import TINY

    torch.manual_seed(3)
    donor = mfr.reference.IResNet((2, 2, 2, 2), 4, 16, 3, 16)
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, tmp_path / "arcface_r18.pth")
    (tmp_path / "finetune.toml").write_text(
        'backbone = "iresnet18"\nwidth = 4\nembedding_dim = 16\ninput_size = 16\nchannels = 3\n'
        f'init = "{tmp_path / "arcface_r18.pth"}"\nmethod = "mfr"\nsteps = 2\nlr = 0.01\n'
    )
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            *TINY,
            "--config",
            str(tmp_path / "finetune.toml"),
            "--eval-every",
            "0",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    net, meta = mfr.experiments.weights.load_backbone(out / "checkpoint.safetensors")
    assert meta["config"]["init"].endswith("arcface_r18.pth") and net.spec.name == "iresnet18"
    assert not torch.equal(net.state_dict()["conv1.weight"], donor.state_dict()["conv1.weight"])  # it trained


def test_results_from_before_a_new_field_resume_with_that_fields_old_value(data, tmp_path):
    """results.json written before TrainConfig had `flip` (training then never flipped) resumes
    only with flip=False, and says so otherwise."""
    names = data.domain_names
    out = tmp_path / "out"
    run_protocol(data, "lodo", methods=["softmax"], out_dir=out, **quiet(targets=[names[0]], config=cfg(flip=False)))
    saved = json.loads((out / "results.json").read_text())
    del saved["config"]["flip"]  # as the files of earlier versions are
    (out / "results.json").write_text(json.dumps(saved))
    with pytest.raises(mfr.InvalidInputError, match=r"another config: \{'flip': \(False, True\)\}"):
        run_protocol(
            data, "lodo", methods=["softmax"], out_dir=out, resume=True, **quiet(targets=[names[0]], config=cfg())
        )
    resumed = run_protocol(
        data, "lodo", methods=["softmax"], out_dir=out, resume=True, **quiet(targets=[names[0]], config=cfg(flip=False))
    )
    assert resumed.complete


def test_training_flips_are_seeded_per_step_and_rank():
    from mfr.experiments.train import _random_flips

    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.uint8).reshape(2, 1, 2, 3).repeat(50, 1, 1, 1)
    a, b = _random_flips(images, 7), _random_flips(images, 7)
    assert torch.equal(a, b) and not torch.equal(a, _random_flips(images, 8))
    mirrored = (a != images).flatten(1).any(1)
    assert 30 < int(mirrored.sum()) < 70  # about half
    assert torch.equal(a[mirrored], images[mirrored].flip(-1)) and torch.equal(a[~mirrored], images[~mirrored])


def test_flip_averaged_embeddings():
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=8, in_channels=1).eval()
    x = torch.randn(5, 1, 16, 16)
    torch.testing.assert_close(net.embed(x, flip=True), net.embed(x) + net.embed(x.flip(-1)))
