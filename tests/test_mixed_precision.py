"""Mixed precision: bf16/fp16 autocast inside the Rust meta-step and the baselines, float32 master
weights, float16's dynamic loss scale (skips, backoff, growth, checkpointed), and bad input.

Stated tolerance (CPU, measured when this was written): with the hard-pair selection held fixed
(thresholds outside [-1, 1]) the bf16 combined gradient of a leave-one-out meta-batch is within
13% (small CNN) and 7% (iresnet18) relative L2 error of float32's, the same as bf16's error on the
plain first-order gradient of L_S (14% and 8%): the second-order path adds no error of its own.
fp16 (unscaled): 6% and 3%. With the default thresholds some pairs change sides and the bf16 error
grows to 29% and 10%.
"""

import math

import pytest
import torch

import mfr
from mfr import MetaStep, MetaStepConfig
from mfr.experiments.precision import LossScaler
from mfr.nn import Backbone

LOO3 = [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]
FIXED_SELECTION = dict(tau_p=2.0, tau_n=-2.0)


def make(arch="small_cnn", size=32, width=8, seed=0):
    torch.manual_seed(seed)
    net = Backbone(arch, embedding_dim=32, in_channels=3, input_size=size, width=width)
    doms = [torch.randn(16, 3, size, size) + 0.3 * d for d in range(3)]
    return net, doms


def combined_gradient(net, doms, splits, loss_scale=1.0, **kw):
    """The step's gradient (divided by loss_scale) and result; running statistics put back."""
    saved = [b.clone() for b in net.buffer_list()]
    for p in net.parameter_list():
        p.grad = None
    out = MetaStep(net, MetaStepConfig(alpha=0.05, **kw)).step(doms, splits, loss_scale)
    grads = None if out.skipped else torch.cat([p.grad.flatten() for p in net.parameter_list()]) / loss_scale
    with torch.no_grad():
        for b, s in zip(net.buffer_list(), saved):
            b.copy_(s)
    return grads, out


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("arch", "bound"), [("small_cnn", 0.2), ("iresnet18", 0.12)])
def test_bf16_combined_gradient_agrees_with_float32(arch, bound):
    net, doms = make(arch)
    full, out32 = combined_gradient(net, doms, LOO3, **FIXED_SELECTION)
    half, out16 = combined_gradient(net, doms, LOO3, amp="bf16", **FIXED_SELECTION)
    plain32, _ = combined_gradient(net, doms, LOO3, gamma=1.0, **FIXED_SELECTION)
    plain16, _ = combined_gradient(net, doms, LOO3, gamma=1.0, amp="bf16", **FIXED_SELECTION)
    assert rel(half, full) < bound
    assert torch.nn.functional.cosine_similarity(half, full, 0) > 0.98
    # no worse than bf16 on the first-order gradient of L_S alone
    assert rel(half, full) < 1.5 * rel(plain16, plain32)
    assert out16.loss_s == pytest.approx(out32.loss_s, rel=0.02, abs=5e-3)
    assert out16.loss_t == pytest.approx(out32.loss_t, rel=0.02, abs=5e-3)
    assert all(p.dtype == torch.float32 for p in net.parameter_list())  # master weights


def test_bf16_really_lowers_precision_and_leaves_autocast_off_afterwards():
    net, doms = make()
    full, _ = combined_gradient(net, doms, LOO3, **FIXED_SELECTION)
    half, _ = combined_gradient(net, doms, LOO3, amp="bf16", **FIXED_SELECTION)
    assert rel(half, full) > 1e-4  # a float32 step would agree to ~1e-6
    assert not torch.is_autocast_enabled("cpu")
    assert net(doms[0]).dtype == torch.float32


def test_a_callers_autocast_region_is_followed_and_losses_stay_float32():
    net, doms = make()
    expected, _ = combined_gradient(net, doms, LOO3, amp="bf16", **FIXED_SELECTION)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, out = combined_gradient(net, doms, LOO3, **FIXED_SELECTION)
    assert torch.isfinite(got).all() and math.isfinite(out.loss_s)
    assert rel(got, expected) < 1e-6
    assert torch.is_autocast_enabled("cpu") is False


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "shared"])
def test_fp16_overflow_is_a_skipped_step_that_writes_nothing(lean):
    net, doms = make()
    before = [b.clone() for b in net.buffer_list()]
    for p in net.parameter_list():
        p.grad = None
    out = MetaStep(net, MetaStepConfig(alpha=0.05, amp="fp16", lean=lean)).step(doms, LOO3, loss_scale=2.0**16)
    assert out.skipped
    assert all(p.grad is None for p in net.parameter_list())
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))
    # the same step unscaled goes through, close to float32
    grads, out = combined_gradient(net, doms, LOO3, amp="fp16", lean=lean, **FIXED_SELECTION)
    full, _ = combined_gradient(net, doms, LOO3, lean=lean, **FIXED_SELECTION)
    assert not out.skipped
    assert rel(grads, full) < 0.1


def test_loss_scale_multiplies_the_written_gradient_only():
    net, doms = make()
    a, out_a = combined_gradient(net, doms, LOO3, **FIXED_SELECTION)
    b, out_b = combined_gradient(net, doms, LOO3, loss_scale=8.0, **FIXED_SELECTION)
    assert rel(b, a) < 1e-5  # divided by the scale again in combined_gradient; theta' unchanged
    assert out_b.loss_t == pytest.approx(out_a.loss_t, rel=1e-5)


def test_non_finite_input_is_still_an_error_without_fp16():
    net, doms = make()
    doms[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(mfr.InvalidInputError, match=r"L_S|L_T|finite"):
        MetaStep(net, MetaStepConfig(amp="bf16")).step(doms, LOO3)


def test_bad_input():
    with pytest.raises(mfr.InvalidInputError, match=r"amp must be None, 'bf16' or 'fp16', got 'fp8'"):
        MetaStepConfig(amp="fp8")
    net, doms = make()
    with pytest.raises(mfr.InvalidInputError, match="loss_scale must be a finite number > 0"):
        MetaStep(net, MetaStepConfig()).step(doms, LOO3, loss_scale=float("inf"))
    with pytest.raises(mfr.InvalidInputError, match="loss_scale must be a finite number > 0"):
        MetaStep(net, MetaStepConfig()).step(doms, LOO3, loss_scale=0.0)
    net64 = net.double()
    with pytest.raises(mfr.InvalidInputError, match="amp needs float32 parameters"):
        MetaStep(net64, MetaStepConfig(amp="bf16")).step([d.double() for d in doms], LOO3)
    for bad, match in (
        (dict(amp="fp8"), "amp must be None, 'bf16' or 'fp16'"),
        (dict(amp="bf16", dtype="float64"), "amp needs float32 weights"),
    ):
        with pytest.raises(mfr.InvalidInputError, match=match):
            mfr.TrainConfig(**bad).check()
    assert MetaStepConfig(amp="bf16").amp == "bf16" and MetaStepConfig().amp is None
    assert mfr.TrainConfig(amp="fp16").meta_config().amp == "fp16"


def test_loss_scaler_backs_off_grows_and_round_trips():
    s = LossScaler(True, init_scale=8.0, growth_interval=2)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 16.0)
    assert s.unscale([p]) and torch.equal(p.grad, torch.full((3,), 2.0))
    s.update(True)
    s.update(True)
    assert s.scale == 16.0
    p.grad = torch.tensor([1.0, math.inf, 0.0])
    assert not s.unscale([p])
    s.update(False)
    assert s.scale == 8.0 and s.skipped == 1 and s.good_steps == 0
    t = LossScaler(True)
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    with pytest.raises(mfr.DataError, match="loss scale must be a finite number > 0"):
        t.load_state_dict({"scale": float("nan"), "good_steps": 0, "skipped": 0})
    tiny = LossScaler(True, init_scale=2.0**-24)
    with pytest.raises(mfr.DataError, match="not finite at any loss scale"):
        tiny.update(False)
    off = LossScaler(False)
    assert off.scale == 1.0 and off.unscale([p])  # disabled: never skips, never rescales


def _trainer(tmp_path, name, **kw):
    from mfr.experiments.train import Trainer

    data = mfr.FaceData.synthetic(n_domains=3, ids_per_domain=6, images_per_id=3, size=16, seed=0)
    base = dict(steps=6, input_size=16, width=4, embedding_dim=16, ids_per_domain=4, eval_every=0, log_every=0)
    cfg = mfr.TrainConfig(**{**base, **kw})
    return Trainer(cfg, data, out_dir=tmp_path / name, progress=False)


@pytest.mark.parametrize("method", ["mfr", "mldg", "arcface"])
def test_fp16_training_skips_overflowing_steps_then_trains(tmp_path, method):
    trainer = _trainer(tmp_path, method, method=method, amp="fp16")
    trainer.fit()
    rows = trainer.history
    scales = [r["loss_scale"] for r in rows]
    skipped = [r["skipped"] for r in rows]
    # each skipped step halved the scale for the next one; a taken step changed the weights
    for a, b, s in zip(scales, scales[1:], skipped):
        assert b == (a / 2 if s else a)
    assert trainer.scaler.skipped == sum(skipped)
    assert all(torch.isfinite(p).all() for p in trainer.method.parameters())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_resume_is_bit_identical_with_flips(tmp_path, amp):
    straight = _trainer(tmp_path, "straight", amp=amp, flip=True)
    straight.fit()
    first = _trainer(tmp_path, "split", amp=amp, flip=True, steps=3)
    first.fit()
    second = _trainer(tmp_path, "split", amp=amp, flip=True)
    second.fit(resume=True)
    assert second.step == 6
    for a, b in zip(straight.method.parameters(), second.method.parameters()):
        assert torch.equal(a, b)
    assert straight.scaler.state_dict() == second.scaler.state_dict()


@pytest.mark.cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_step_agrees_with_cpu_float32(amp):
    net, doms = make("iresnet18")
    full, _ = combined_gradient(net, doms, LOO3, **FIXED_SELECTION)
    net = net.to("cuda")
    got, out = combined_gradient(net, [d.cuda() for d in doms], LOO3, amp=amp, **FIXED_SELECTION)
    assert not out.skipped
    assert rel(got.cpu(), full) < 0.12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "amp=fp8"], "amp must be None, 'bf16' or 'fp16', got 'fp8'"),
        (["--amp", "fp8"], "invalid choice: 'fp8'"),
        (["--amp", "bf16", "--set", "dtype=float64"], "amp needs float32 weights"),
        (["--set", "lean=maybe"], "lean must be bool"),
    ],
)
def test_cli_refuses_bad_precision_settings_and_keeps_the_run(tmp_path, capsys, args, message):
    from cli_args import TINY_GRAY

    from mfr.experiments.cli import main

    out = tmp_path / "run"
    assert main(["train", *TINY_GRAY, "--steps", "1", "--eval-every", "0", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    try:
        code = main(["train", *TINY_GRAY, "--steps", "2", "--out", str(out), "--overwrite", *args])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing in the out dir lost
