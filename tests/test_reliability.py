"""Bad input never poisons training or crashes: non-finite configurations, autograd-free contexts,
single-image training batches, stale checkpoint temp files, unusable output folders."""

import math
import os
import subprocess
import sys

import pytest
import torch

import mfr
from mfr import FaceData, TrainConfig, Trainer
from mfr.checkpoint import check_output_folder, remove_stale_temp_files
from mfr.cli import main
from mfr.meta import MetaStep, MetaStepConfig


@pytest.mark.parametrize("field", ["alpha", "gamma", "tau_p", "tau_n", "scale", "w_hp", "w_cls", "w_da"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_meta_step_config_refuses_non_finite(field, value):
    with pytest.raises(mfr.InvalidInputError, match=f"{field} must be a finite number"):
        MetaStepConfig(**{field: value})


@pytest.mark.parametrize("kw, message", [({"alpha": -0.1}, "alpha must be >= 0"), ({"gamma": 1.5}, "gamma must lie in"), ({"scale": 0.0}, "scale must be > 0"), ({"w_da": -1.0}, "w_da must be >= 0")])
def test_meta_step_config_ranges(kw, message):
    with pytest.raises(mfr.InvalidInputError, match=message):
        MetaStepConfig(**kw)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr": math.inf}, "lr must be a finite number"),
        ({"momentum": math.nan}, "momentum must be a finite number"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"grad_clip": math.nan}, "grad_clip must be a finite number"),
        ({"margin": math.inf}, "margin must be a finite number"),
        ({"head_scale": 0.0}, "head_scale must be > 0"),
        ({"alpha": math.nan}, "alpha must be a finite number"),
        ({"gamma": 2.0}, "gamma must lie in"),
    ],
)
def test_train_config_refuses_non_finite_and_out_of_range(kw, message):
    with pytest.raises(mfr.InvalidInputError, match=message):
        TrainConfig(**kw).check()


def test_cli_train_with_nan_lr_is_a_user_error(tmp_path, capsys):
    assert main(["train", "--synthetic-domains", "3", "--synthetic-ids", "8", "--input-size", "16", "--width", "4", "--embedding-dim", "16",
                 "--batch-ids", "4", "--steps", "1", "--lr", "nan", "--no-progress", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "lr must be a finite number" in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def _step_inputs():
    torch.manual_seed(0)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]
    return net, doms, [([0, 1], [2]), ([1, 2], [0]), ([0, 2], [1])]


def test_meta_step_refuses_inference_mode_and_no_grad():
    net, doms, splits = _step_inputs()
    step = MetaStep(net)
    with torch.inference_mode(), pytest.raises(mfr.InvalidInputError, match="needs autograd"):
        step.step(doms, splits)
    with torch.no_grad(), pytest.raises(mfr.InvalidInputError, match="needs autograd"):
        step.step(doms, splits)
    with torch.inference_mode():
        frozen = [d.clone() for d in doms]
    with pytest.raises(mfr.InvalidInputError, match="inference tensors"):
        step.step(frozen, splits)
    assert all(p.grad is None for p in net.parameters())
    out = step.step(doms, splits)  # still works afterwards
    assert math.isfinite(out["objective"])


def test_meta_step_in_inference_mode_does_not_crash_the_interpreter():
    code = (
        "import torch, mfr\n"
        "net = mfr.nn.Backbone('small_cnn', width=4, input_size=16, embedding_dim=16, in_channels=1)\n"
        "doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]\n"
        "try:\n"
        "    with torch.inference_mode():\n"
        "        mfr.MetaStep(net).step(doms, [([0, 1], [2])])\n"
        "except mfr.InvalidInputError:\n"
        "    print('refused')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "refused" in proc.stdout, proc.stderr


def test_single_image_training_batch_is_refused_and_buffers_stay_finite():
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    before = [b.clone() for b in net.buffer_list()]
    with pytest.raises(mfr.InvalidInputError, match="more than 1 image"):
        net(torch.randn(1, 1, 16, 16))
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))
    net.eval()
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 16)  # eval mode: fine


def test_stale_checkpoint_temp_files_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "checkpoint.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".checkpoint.safetensors.tmp-{dead}"
    live = tmp_path / f".checkpoint.safetensors.tmp-{os.getppid()}"
    own = tmp_path / f".checkpoint.safetensors.tmp-{os.getpid()}"
    other = tmp_path / f".other.safetensors.tmp-{dead}"
    for p in (stale, live, own, other):
        p.write_bytes(b"x" * 1000)
    assert remove_stale_temp_files(target) == [stale]
    assert not stale.exists() and live.exists() and own.exists() and other.exists()
    # A training run cleans its own out dir when it starts.
    stale.write_bytes(b"x")
    data = FaceData.synthetic(n_domains=2, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    Trainer(TrainConfig(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=2, steps=1, warmup_steps=0), data, out_dir=tmp_path).fit()
    assert not stale.exists() and target.exists()


def test_unusable_output_folders_are_user_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(mfr.InvalidInputError, match="file"):
            check_output_folder(bad, "--out")
        assert main(["train", "--synthetic-domains", "3", "--synthetic-ids", "8", "--input-size", "16", "--width", "4", "--embedding-dim", "16",
                     "--batch-ids", "4", "--steps", "1", "--no-progress", "--out", str(bad)]) == 2
        assert "mfr: error: --out" in capsys.readouterr().err
        assert main(["reproduce", "--synthetic-domains", "3", "--synthetic-ids", "8", "--input-size", "16", "--width", "4", "--embedding-dim", "16",
                     "--batch-ids", "4", "--steps", "1", "--no-progress", "--methods", "softmax", "--out", str(bad)]) == 2
        assert "out_dir" in capsys.readouterr().err
    check_output_folder(tmp_path / "new" / "deeper", "--out")  # creatable: fine


def test_clear_errors_for_files_states_and_empty_galleries(tmp_path):
    import numpy as np

    from mfr.data import read_lfw_pairs
    from mfr.sampler import DomainSampler
    from mfr.train import load_backbone

    (tmp_path / "pairs.txt").write_bytes(bytes(range(256)))
    with pytest.raises(mfr.DataError, match="not a text file"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path)
    data = FaceData.synthetic(n_domains=2, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    sampler = DomainSampler(data.index, ids_per_domain=2)
    state = sampler.state_dict()
    for bad in ({**state, "position": -1}, {**state, "position": len(sampler) + 1}, {**state, "epoch": "x"}):
        with pytest.raises(mfr.InvalidInputError, match="DomainSampler.load_state_dict"):
            sampler.load_state_dict(bad)
    with pytest.raises(mfr.InvalidInputError, match="gallery are empty"):
        mfr.metrics.identification(np.zeros((0, 4), np.float32), np.zeros(0), np.ones((2, 4), np.float32), np.array([0, 1]))
    # A diverged checkpoint is blamed, not the scoring function that would meet its NaNs.
    trainer = Trainer(TrainConfig(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=2, steps=0), data)
    with torch.no_grad():
        trainer.backbone.parameter_list()[0][0].fill_(float("nan"))
    path = trainer.save(tmp_path / "nan.safetensors")
    with pytest.raises(mfr.DataError, match="non-finite"):
        load_backbone(path)


@pytest.mark.parametrize("method", ["arcface", "mldg", "mfr"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_step_leaves_model_statistics_and_optimizer_as_they_were(method, value, monkeypatch):
    import mfr.train

    data = FaceData.synthetic(n_domains=3, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    trainer = Trainer(TrainConfig(method=method, input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=2, steps=2, warmup_steps=0), data)
    trainer.train_step()  # a healthy step first: statistics and momentum exist
    params = [p.detach().clone() for p in trainer.backbone.parameter_list()]
    buffers = [b.clone() for b in trainer.backbone.buffer_list()]
    momentum = [v.clone() for st in trainer.optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    # Every image of the next batch is NaN/inf (as a corrupt decode would give).
    monkeypatch.setattr(mfr.train, "normalize_images", lambda x: torch.full(x.shape, value))
    with pytest.raises(mfr.MfrError, match="(?i)nan|inf|finite"):
        trainer.train_step()
    assert all(torch.equal(a, b) for a, b in zip(params, trainer.backbone.parameter_list()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, trainer.backbone.buffer_list()))
    after = [v for st in trainer.optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    assert len(after) == len(momentum) and all(torch.equal(a, b) for a, b in zip(momentum, after))
    assert all(p.grad is None for p in trainer.method.parameters())
    assert trainer.step == 1
