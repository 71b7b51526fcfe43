"""mfr.Trainer: every method trains, exact resume, atomic checkpoints, logs, bad input."""

import errno
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import mfr
from mfr import FaceData, TrainConfig, Trainer
from mfr.experiments.checkpoint import load_checkpoint, save_checkpoint
from mfr.experiments.methods import METHODS


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=6, images_per_id=3, size=16, channels=1, seed=0)


def cfg(**kw):
    base = dict(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=4, steps=4, warmup_steps=1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains(method, data):
    tr = Trainer(cfg(method=method, steps=3), data, progress=False)
    before = [p.detach().clone() for p in tr.method.parameters()]
    history = tr.fit()
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    moved = [not torch.equal(a, b.detach()) for a, b in zip(before, tr.method.parameters())]
    assert sum(moved) > len(moved) // 2


def test_lr_schedule():
    tr_cfg = cfg(steps=10, warmup_steps=2, lr=0.1)
    tr = Trainer(
        tr_cfg, FaceData.synthetic(n_domains=2, ids_per_domain=3, images_per_id=2, size=16, channels=1), progress=False
    )
    lrs = [tr.lr_at(s) for s in range(10)]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:])) and lrs[-1] < 0.01  # after warmup


@pytest.mark.parametrize("method", ["mfr", "arcface", "mldg"])
def test_resume_is_bit_identical(method, data, tmp_path):
    straight = Trainer(cfg(method=method, steps=6), data, progress=False)
    straight.fit()
    first = Trainer(
        cfg(method=method, steps=6, log_every=1, checkpoint_every=3), data, out_dir=tmp_path, progress=False
    )
    real_step = first.train_step

    def dies_at_step_5():
        if first.step == 4:
            raise KeyboardInterrupt  # killed after logging step 4, past the checkpoint of step 3
        return real_step()

    first.train_step = dies_at_step_5
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Trainer(cfg(method=method, steps=6, log_every=1), data, out_dir=tmp_path, progress=False)
    resumed.fit(resume=True)
    assert resumed.step == 6
    for (n, a), b in zip(straight.backbone.state_dict().items(), resumed.backbone.state_dict().values()):
        assert torch.equal(a, b), n
    for a, b in zip(straight.method.parameters(), resumed.method.parameters()):
        assert torch.equal(a, b)
    rows = (tmp_path / "train.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_checkpoint_contents_and_load_backbone(data, tmp_path):
    tr = Trainer(cfg(steps=2), data, out_dir=tmp_path, progress=False)
    tr.fit()
    tensors, meta = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert meta["step"] == 2 and meta["config"]["method"] == "mfr" and meta["sampler"]["position"] >= 1
    assert any(k.startswith("optimizer/") for k in tensors) and "rng/torch" in tensors
    net, _meta2 = mfr.experiments.weights.load_backbone(tmp_path / "checkpoint.safetensors")
    assert not net.training
    for a, b in zip(net.state_dict().values(), tr.backbone.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_another_backbone_or_config_is_rejected(data, tmp_path):
    Trainer(cfg(steps=1), data, out_dir=tmp_path, progress=False).fit()
    with pytest.raises(mfr.InvalidInputError, match=r"holds a .*small_cnn.* backbone, this trainer builds .*iresnet18"):
        Trainer(cfg(backbone="iresnet18"), data, out_dir=tmp_path, progress=False).fit(resume=True)
    with pytest.raises(mfr.InvalidInputError, match=r"another configuration.*'lr'"):
        Trainer(cfg(lr=0.5), data, out_dir=tmp_path, progress=False).fit(resume=True)


def test_corrupted_checkpoint_is_a_clear_error_and_previous_survives(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(5.0)}, {"step": 1})
    good = path.read_bytes()
    (tmp_path / "bad.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(mfr.DataError, match="not a valid mfr checkpoint"):
        load_checkpoint(tmp_path / "bad.safetensors")
    with pytest.raises(mfr.DataError, match="cannot read"):
        load_checkpoint(tmp_path / "missing.safetensors")
    assert isinstance(mfr.DataError("x"), OSError)


def test_out_of_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"a": torch.arange(5.0)}, {"step": 1})
    calls = {"n": 0}

    def full_disk(f, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        f.write(data)

    monkeypatch.setattr(mfr.experiments.checkpoint, "_CHUNK", 64)
    monkeypatch.setattr(mfr.experiments.checkpoint, "_write_chunk", full_disk)
    with pytest.raises(mfr.DataError, match="the disk is full; the previous checkpoint is intact"):
        save_checkpoint(path, {"a": torch.arange(1000.0)}, {"step": 2})
    tensors, meta = load_checkpoint(path)
    assert meta == {"step": 1} and torch.equal(tensors["a"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL timing test")
def test_killed_while_saving_leaves_a_whole_checkpoint(tmp_path):
    # A process saving in a loop is killed at arbitrary moments; the file is always loadable.
    script = textwrap.dedent(
        f"""
        import torch
        from mfr.experiments.checkpoint import save_checkpoint
        i = 0
        while True:
            i += 1
            save_checkpoint({str(tmp_path / "c.safetensors")!r}, {{"w": torch.full((300_000,), float(i))}}, {{"step": i}})
        """
    )
    for delay in (0.8, 1.1, 1.4):
        proc = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if (tmp_path / "c.safetensors").exists():
            tensors, meta = load_checkpoint(tmp_path / "c.safetensors")
            assert torch.all(tensors["w"] == float(meta["step"]))


def test_logs_and_held_out_evaluation(data, tmp_path):
    held = FaceData.synthetic(n_domains=1, ids_per_domain=5, images_per_id=3, size=16, channels=1, seed=7)
    tr = Trainer(
        cfg(steps=4, eval_every=2, log_every=1), data, out_dir=tmp_path, eval_sets={"held": held}, progress=False
    )
    tr.fit()
    assert len(tr.eval_history) == 2 and {"tar@far=1e-2", "auc", "rank1"} <= set(tr.eval_history[0])
    train_rows = (tmp_path / "train.csv").read_text().splitlines()
    assert len(train_rows) == 5 and "images_per_s" in train_rows[0]
    assert len((tmp_path / "eval.csv").read_text().splitlines()) == 3


def test_bad_configuration_and_data(data):
    with pytest.raises(mfr.InvalidInputError, match="unknown method 'sphereface'"):
        Trainer(cfg(method="sphereface"), data)
    with pytest.raises(mfr.InvalidInputError, match="split must be"):
        Trainer(cfg(split="all"), data)
    one = data.subset([0])
    with pytest.raises(mfr.InvalidInputError, match="at least 2 source domains"):
        Trainer(cfg(), one)
    with pytest.raises(mfr.InvalidInputError, match="domain 'nope' is not in the data"):
        data.subset(["nope"])
    if not torch.cuda.is_available():
        with pytest.raises(mfr.DeviceError, match="CUDA is not available"):
            Trainer(cfg(device="cuda"), data)
    with pytest.raises(mfr.InvalidInputError, match="device must be"):
        Trainer(cfg(device="tpu"), data)


def test_a_refused_checkpoint_leaves_the_trainer_as_it_was(data, tmp_path, monkeypatch):
    done = Trainer(cfg(method="arcface"), data, out_dir=tmp_path / "a")
    done.fit()
    fresh = Trainer(cfg(method="arcface"), data)
    before = {k: v.clone() for k, v in fresh.backbone.state_dict().items()}
    head_before = fresh.method.head.weight.detach().clone()
    fresh.world_size = 2  # the checkpoint was written by one rank
    with pytest.raises(mfr.InvalidInputError, match="written by 1 rank"):
        fresh.load(tmp_path / "a" / "checkpoint.safetensors")
    assert all(torch.equal(before[k], v) for k, v in fresh.backbone.state_dict().items())
    assert torch.equal(fresh.method.head.weight, head_before) and fresh.step == 0
    # A failure while restoring (here: the sampler state) puts back what was there.
    fresh.world_size = 1
    monkeypatch.setattr(
        fresh.sampler, "load_state_dict", lambda state: (_ for _ in ()).throw(mfr.InvalidInputError("boom"))
    )
    with pytest.raises(mfr.InvalidInputError, match="boom"):
        fresh.load(tmp_path / "a" / "checkpoint.safetensors")
    assert all(torch.equal(before[k], v) for k, v in fresh.backbone.state_dict().items()) and fresh.step == 0


def test_cli_never_overwrites_a_run_silently(tmp_path, capsys):
    from cli_args import TINY

    from mfr.experiments.cli import main

    run = [*TINY, "--steps", "2", "--eval-every", "0", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(["train", *run]) == 0
    before = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["train", *run]) == 2
    err = capsys.readouterr().err
    assert (
        "already holds a run (checkpoint.safetensors, train.csv)" in err and "--resume" in err and "--overwrite" in err
    )
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == before  # nothing lost
    assert main(["train", *run, "--resume", "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["train", *run, "--overwrite"]) == 0
    assert main(["train", *run, "--resume"]) == 0  # finished: nothing to do, still fine


def test_cli_refuses_a_bad_init_file_and_keeps_the_run(tmp_path, capsys):
    """--init of another architecture, a truncated checkpoint and a file that is no checkpoint:
    one-line error, exit 2, the run in --out untouched even with --overwrite."""
    from cli_args import TINY_GRAY

    from mfr.experiments.cli import main

    out = tmp_path / "run"
    assert main(["train", *TINY_GRAY, "--steps", "1", "--eval-every", "0", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = mfr.nn.Backbone("iresnet18", width=8, input_size=16, embedding_dim=16, in_channels=1)
    torch.save(other.state_dict(), tmp_path / "iresnet18.pth")
    whole = (out / "checkpoint.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "iresnet18.pth").read_bytes()[:3000])
    cases = [
        ("iresnet18.pth", "does not fit"),
        ("truncated.safetensors", "cannot read"),
        ("notes.pth", "cannot read"),
        ("truncated.pth", "cannot read"),
    ]
    for name, message in cases:
        capsys.readouterr()
        args = ["train", *TINY_GRAY, "--steps", "2", "--out", str(out), "--overwrite", "--init", str(tmp_path / name)]
        assert main(args) == 2, name
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (name, err)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, name  # nothing lost


def test_progress_lines_when_stderr_is_not_a_terminal(data, monkeypatch, capsys):
    import mfr.experiments.train as train_module

    monkeypatch.setattr(train_module, "PROGRESS_LINE_SECONDS", 0.0)
    Trainer(cfg(steps=3), data).fit()  # progress=None under pytest: stderr is captured, not a terminal
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mfr train:")]
    assert (
        len(lines) == 3 and lines[-1].startswith("mfr train: mfr step 3/3 (100%) loss ") and " ETA 0m00s" in lines[-1]
    )
    Trainer(cfg(steps=2), data, progress=False).fit()
    assert "mfr train:" not in capsys.readouterr().err
    Trainer(cfg(steps=2, amp="fp16"), data).fit()  # float16: the loss scale, and skipped steps
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mfr train:")]
    assert len(lines) == 2 and all(" loss scale " in line for line in lines)
    assert lines[0].endswith(" skipped") or " loss scale 65536" in lines[0]


@pytest.mark.parametrize(
    "name, kw",
    [
        ("small_cnn", dict(width=4, input_size=16, embedding_dim=16, channels=1)),
        ("iresnet18", dict(width=4, input_size=16, embedding_dim=8, channels=3)),
        ("mobilefacenet", dict(width=8, input_size=16, embedding_dim=8, channels=3)),
    ],
)
def test_export_loads_without_mfr_and_embeds_as_the_backbone(data, tmp_path, name, kw):
    import subprocess
    import sys

    from mfr.experiments.cli import main
    from mfr.experiments.weights import load_backbone

    if kw["channels"] == 3:
        rgb = FaceData.synthetic(n_domains=3, ids_per_domain=6, images_per_id=3, size=16, channels=3, seed=0)
    trainer = Trainer(cfg(backbone=name, steps=2, **kw), data if kw["channels"] == 1 else rgb, out_dir=tmp_path / "run")
    trainer.fit()
    assert main(["export", str(tmp_path / "run" / "checkpoint.safetensors"), str(tmp_path / "model.pt2")]) == 0
    net, _ = load_backbone(tmp_path / "run" / "checkpoint.safetensors")
    x = torch.randn(5, kw["channels"], 16, 16)
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch\n"
        "m = torch.export.load(sys.argv[1]).module(); x = torch.load(sys.argv[2]); torch.save(m(x), sys.argv[3])\n"
        "assert not [k for k in sys.modules if k.startswith('mfr')]\n"
    )
    args = [str(tmp_path / "model.pt2"), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), net.embed(x), rtol=1e-4, atol=1e-5)


def test_export_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    from mfr.experiments.cli import main

    (tmp_path / "notes.safetensors").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "notes.safetensors"), str(tmp_path / "m.pt2")]) == 2
    assert "mfr: error:" in capsys.readouterr().err and not (tmp_path / "m.pt2").exists()


def test_config_file_set_and_flags_resolve_in_order(tmp_path, capsys):
    import json

    from cli_args import TINY

    from mfr.experiments.cli import main

    (tmp_path / "run.toml").write_text("lr = 0.02\nalpha = 0.05\nhead_scale = 20\nsteps = 3\nlog_every = 1\n")
    out = tmp_path / "run"
    args = [
        "train",
        *TINY,
        "--config",
        str(tmp_path / "run.toml"),
        "--steps",
        "2",
        "--set",
        "gamma=0.25",
        "--set",
        "grad_clip=none",
    ]
    assert main([*args, "--eval-every", "0", "--no-progress", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    # the file sets what no flag gave (lr, alpha, head_scale as float), the explicit --steps wins over the file, --set wins over all
    assert (saved["lr"], saved["alpha"], saved["head_scale"], saved["steps"], saved["gamma"], saved["grad_clip"]) == (
        0.02,
        0.05,
        20.0,
        2,
        0.25,
        None,
    )
    assert "configuration: {" in capsys.readouterr().out
    bad = [
        ("nope = 1\n", "unknown TrainConfig field(s) 'nope'"),
        ('lr = "fast"\n', "lr must be float, got 'fast' (str)"),
        ("steps = 2.5\n", "steps must be int, got 2.5"),
        ("lr = [\n", "not valid TOML"),
    ]
    for text, message in bad:
        (tmp_path / "bad.toml").write_text(text)
        assert main(["train", *TINY, "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert main(["train", *TINY, "--set", "lr", "--out", str(tmp_path / "x")]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", *TINY, "--set", "steps=many", "--out", str(tmp_path / "x")]) == 2
    assert "steps must be int" in capsys.readouterr().err
    assert not (tmp_path / "x" / "checkpoint.safetensors").exists()


def test_prefetching_changes_nothing_but_speed(data):
    """The same weights with and without the background decoder, across epoch boundaries
    (the sampler's upcoming batches are exactly the ones training takes)."""
    runs = []
    for prefetch in (0, 2):
        tr = Trainer(cfg(steps=9, prefetch=prefetch), data, progress=False)
        assert len(tr.sampler) < 9  # several epochs
        tr.fit()
        runs.append([p.detach().clone() for p in tr.method.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_prefetching_resumes_bit_identical(data, tmp_path):
    """A resumed run refills its queue from the restored sampler position."""
    run = dict(prefetch=2, schedule="constant")  # the step budget may then change on resume
    straight = Trainer(cfg(steps=9, **run), data, progress=False)
    straight.fit()
    Trainer(cfg(steps=4, **run), data, out_dir=tmp_path, progress=False).fit()
    resumed = Trainer(cfg(steps=9, **run), data, out_dir=tmp_path, progress=False)
    resumed.fit(resume=True)
    assert resumed.step == 9
    assert all(torch.equal(a, b) for a, b in zip(straight.method.parameters(), resumed.method.parameters()))


def test_sampler_upcoming_follows_the_training_order(data):
    tr = Trainer(cfg(steps=1), data, progress=False)
    s = tr.sampler
    ahead = [s.upcoming(k) for k in range(2 * len(s) + 1)]
    taken = [tr._next_batch() for _ in range(2 * len(s) + 1)]
    assert [(b.epoch, b.number) for b in ahead] == [(b.epoch, b.number) for b in taken]
    assert all((a.images == b.images).all() for a, b in zip(ahead, taken))
