"""The MFR meta-step: parity with the pure-PyTorch reference, second order, BatchNorm policy,
training progress, determinism and bad input."""

import copy
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

import mfr
from mfr import MetaStep, MetaStepConfig, reference
from mfr.nn import Backbone

LOO3 = [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]


def make(seed=0, dtype=torch.float64, c=1, size=16, width=4, dim=16, b=4, n_domains=3, device="cpu"):
    torch.manual_seed(seed)
    net = Backbone(embedding_dim=dim, in_channels=c, input_size=size, width=width).to(dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(seed + 1)
    doms = [
        (torch.randn(2 * b, c, size, size, generator=gen, dtype=dtype) + 0.3 * d).to(device) for d in range(n_domains)
    ]
    return net, doms


def flat_grads(net):
    return torch.cat([p.grad.flatten() for p in net.parameter_list()])


def run_ours(net, doms, splits, cfg):
    for p in net.parameter_list():
        p.grad = None
    out = MetaStep(net, cfg).step(doms, splits)
    return flat_grads(net), out


def run_ref(net, doms, splits, cfg, buffers=None):
    return torch.cat(
        [
            g.flatten()
            for g in reference.meta_step(reference.small_cnn_forward, net.parameter_list(), buffers, doms, splits, cfg)
        ]
    )


def ref_losses(net, doms, splits, cfg):
    """Mean over splits of L_S(theta) and L_T(theta'), computed with the reference's pieces."""
    params, l_s_all, l_t_all = net.parameter_list(), [], []
    for train, test in splits:
        embs = [reference.small_cnn_forward(params, None, doms[d], False) for d in train]
        l_s = torch.stack([reference._domain_loss(e, cfg) for e in embs]).mean()
        if cfg.w_da:
            l_s = l_s + cfg.w_da * reference.domain_alignment(embs)
        grads = torch.autograd.grad(l_s, params)
        adapted = [p - cfg.alpha * g for p, g in zip(params, grads)]
        l_t = torch.stack(
            [reference._domain_loss(reference.small_cnn_forward(adapted, None, doms[d], False), cfg) for d in test]
        ).mean()
        l_s_all.append(l_s.item())
        l_t_all.append(l_t.item())
    return sum(l_s_all) / len(splits), sum(l_t_all) / len(splits)


@pytest.mark.parametrize(
    "kw,splits",
    [
        (dict(gamma=0.5), LOO3),
        (dict(gamma=0.0), LOO3),
        (dict(gamma=1.0), LOO3),
        (dict(gamma=0.3, first_order=True), LOO3),
        (dict(gamma=0.5, w_da=0.0, w_hp=2.0), [([0, 1], [2])]),
        (dict(gamma=0.7, tau_p=0.2, tau_n=0.6), [([2], [0, 1])]),
    ],
)
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "shared"])
def test_parity_with_reference_float64(kw, splits, lean):
    net, doms = make()
    kw = dict(kw)
    cfg = MetaStepConfig(alpha=0.1, tau_p=kw.pop("tau_p", 0.9), tau_n=kw.pop("tau_n", 0.1), scale=8.0, lean=lean, **kw)
    ours, out = run_ours(net, doms, splits, cfg)
    ref = run_ref(net, doms, splits, cfg)
    assert torch.allclose(ours, ref, rtol=1e-8, atol=1e-8 * ref.abs().max().item())
    assert set(mfr.meta.as_dict(out)) == {
        "loss_s",
        "loss_t",
        "objective",
        "loss_hp",
        "loss_cls",
        "loss_da",
        "hard_positives",
        "hard_negatives",
        "skipped",
    }
    assert not out.skipped
    l_s, l_t = ref_losses(net, doms, splits, cfg)
    assert out.loss_s == pytest.approx(l_s, rel=1e-10)
    assert out.loss_t == pytest.approx(l_t, rel=1e-10)
    assert out.objective == pytest.approx(cfg.gamma * l_s + (1 - cfg.gamma) * l_t, rel=1e-10)


# Domain 0 trains in splits 0 and 3 only (the lean schedule computes its forward twice); domain 2
# trains in splits 1 and 3 and is a meta-test domain in between.
SKIPPING = [([0, 1], [2]), ([2, 3], [0]), ([1, 3], [2]), ([0, 2], [1])]


@pytest.mark.parametrize("splits", [LOO3, SKIPPING, [([0, 1, 2], [3])]], ids=["loo3", "skipping", "one"])
@pytest.mark.parametrize("first_order", [False, True], ids=["second", "first"])
def test_lean_and_shared_schedules_agree(splits, first_order):
    """Same gradient (up to rounding), same running statistics (the first forward of each domain
    updates them, in the same order), same report."""
    results = []
    for lean in (True, False):
        net, doms = make(seed=5, n_domains=4)
        cfg = MetaStepConfig(alpha=0.2, tau_p=0.9, tau_n=0.1, scale=8.0, first_order=first_order, lean=lean)
        grads, out = run_ours(net, doms, splits, cfg)
        results.append((grads, [b.clone() for b in net.buffer_list()], mfr.meta.as_dict(out)))
    (g_lean, b_lean, r_lean), (g_shared, b_shared, r_shared) = results
    torch.testing.assert_close(g_lean, g_shared, rtol=1e-10, atol=1e-12 * g_shared.abs().max().item())
    assert all(torch.equal(a, b) for a, b in zip(b_lean, b_shared))
    assert r_lean.keys() == r_shared.keys()
    for key, value in r_shared.items():
        assert r_lean[key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "shared"])
def test_a_non_finite_last_split_writes_nothing(lean):
    """The lean schedule differentiates splits one by one, but writes .grad only after the last."""
    net, doms = make(seed=6, n_domains=4)
    doms[3][1, 0, 2, 2] = float("nan")  # domain 3 is used by the last split only
    for p in net.parameter_list():
        p.grad = torch.ones_like(p)
    before = [b.clone() for b in net.buffer_list()]
    with pytest.raises(mfr.InvalidInputError, match="L_S"):
        MetaStep(net, MetaStepConfig(lean=lean)).step(doms, [([0, 1], [2]), ([1, 2], [0]), ([3, 0], [1])])
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in net.parameter_list())
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))


def test_first_and_second_order_differ():
    net, doms = make()
    second, _ = run_ours(net, doms, LOO3, MetaStepConfig(alpha=0.2, gamma=0.0))
    first, _ = run_ours(net, doms, LOO3, MetaStepConfig(alpha=0.2, gamma=0.0, first_order=True))
    assert (second - first).norm() / second.norm() > 1e-3


def test_second_order_term_matches_finite_differences():
    # Thresholds outside [-1, 1] keep the hard-pair selection constant under the perturbation.
    net, doms = make(seed=3)
    cfg = MetaStepConfig(alpha=0.3, gamma=0.2, tau_p=2.0, tau_n=-2.0, scale=4.0)
    grad, _ = run_ours(net, doms, LOO3, cfg)
    params = [p.detach().clone() for p in net.parameter_list()]

    def objective(ps):
        ps = [p.clone().requires_grad_() for p in ps]
        total = 0.0
        for train, test in LOO3:
            embs = [reference.small_cnn_forward(ps, None, doms[d], False) for d in train]
            l_s = torch.stack(
                [reference._domain_loss(e, cfg) for e in embs]
            ).mean() + cfg.w_da * reference.domain_alignment(embs)
            g = torch.autograd.grad(l_s, ps)
            adapted = [p - cfg.alpha * gi for p, gi in zip(ps, g)]
            l_t = torch.stack(
                [reference._domain_loss(reference.small_cnn_forward(adapted, None, doms[d], False), cfg) for d in test]
            ).mean()
            total += float((cfg.gamma * l_s + (1 - cfg.gamma) * l_t).detach()) / len(LOO3)
        return total

    gen = torch.Generator().manual_seed(9)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    norm = torch.sqrt(sum((d * d).sum() for d in v))
    v = [d / norm for d in v]  # a unit direction: small steps stay clear of ReLU/max-pool kinks
    eps = 1e-6
    plus = objective([p + eps * d for p, d in zip(params, v)])
    minus = objective([p - eps * d for p, d in zip(params, v)])
    fd = (plus - minus) / (2 * eps)
    analytic = float(grad @ torch.cat([d.flatten() for d in v]))
    assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_batchnorm_running_stats_policy():
    net, doms = make(seed=4)
    before = [b.clone() for b in net.buffer_list()]
    ref_buffers = [b.clone() for b in before]
    run_ours(net, doms, LOO3, MetaStepConfig(alpha=0.1))
    run_ref(net, doms, LOO3, MetaStepConfig(alpha=0.1), buffers=ref_buffers)
    # Updated once per meta-train domain at theta (like the reference), never by theta' passes.
    for ours, ref, old in zip(net.buffer_list(), ref_buffers, before):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
        assert not torch.equal(ours, old)
    # A theta' forward (substituted params) leaves them untouched; eval mode uses them.
    snapshot = [b.clone() for b in net.buffer_list()]
    net.train()
    net(doms[0], params=[p.detach() + 0.01 for p in net.parameter_list()])
    assert all(torch.equal(a, b) for a, b in zip(net.buffer_list(), snapshot))
    net.eval()
    e1, e2 = net(doms[0][:2]), net(doms[0][:3])[:2]
    torch.testing.assert_close(e1, e2)  # eval: per-sample, independent of the batch


def test_training_lowers_both_losses_on_synthetic_domains():
    from mfr.data import normalize_images, synthetic_domains

    data = synthetic_domains(n_domains=3, ids_per_domain=12, images_per_id=2, size=32, channels=1, seed=0)
    torch.manual_seed(0)
    net = Backbone(embedding_dim=32, in_channels=1, input_size=32, width=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    sampler = mfr.DomainSampler(data.index, ids_per_domain=6, seed=0)
    step = MetaStep(net, MetaStepConfig(alpha=0.01, gamma=0.5, tau_p=0.8, tau_n=0.2, scale=16.0))
    images = normalize_images(data.images)
    history = []
    for epoch in range(12):
        sampler.set_epoch(epoch)
        for mb in sampler:
            doms = mfr.meta.domains_from_batch(mb, images[torch.from_numpy(mb.flat_indices())])
            opt.zero_grad()
            out = step.step(doms, mb.splits)
            opt.step()
            history.append((out.loss_s, out.loss_t))
    first = torch.tensor(history[:4]).mean(0)
    last = torch.tensor(history[-4:]).mean(0)
    assert last[0] < first[0] and last[1] < first[1], (first, last)


def test_deterministic_on_cpu():
    def train():
        net, doms = make(seed=5, dtype=torch.float32)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        step = MetaStep(net, MetaStepConfig(alpha=0.05))
        for _ in range(10):
            opt.zero_grad()
            step.step(doms, LOO3)
            opt.step()
        return [p.detach().clone() for p in net.parameter_list()]

    a, b = train(), train()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_state_dict_roundtrip(tmp_path):
    net, _ = make()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    other = Backbone(embedding_dim=16, in_channels=1, input_size=16, width=4).double()
    other.load_state_dict(torch.load(tmp_path / "net.pt"))
    assert list(net.state_dict()) == list(other.state_dict())
    assert next(iter(net.state_dict())) == "block0.conv.weight"
    assert all(torch.equal(a, b) for a, b in zip(net.parameter_list(), other.parameter_list()))


def test_bad_input():
    net, doms = make()
    step = MetaStep(net, MetaStepConfig())
    with pytest.raises(mfr.InvalidInputError, match=r"domain 1 must hold \[gallery; probe\]"):
        step.step([doms[0], doms[1][:7], doms[2]], LOO3)
    with pytest.raises(mfr.InvalidInputError, match="B >= 2"):
        step.step([d[:2] for d in doms], LOO3)
    with pytest.raises(mfr.InvalidInputError, match=r"images must be \(N, 1, 16, 16\)"):
        step.step([torch.randn(8, 1, 32, 32, dtype=torch.float64)] * 3, LOO3)
    with pytest.raises(mfr.InvalidInputError, match="parameters' dtype float64, got float32"):
        step.step([d.float() for d in doms], LOO3)
    with pytest.raises(
        mfr.InvalidInputError, match=r"argument 'splits\[0\] meta-test\[0\]' must be an integer in \[0, 2\], got 5"
    ):
        step.step(doms, [([0], [5])])
    with pytest.raises(mfr.InvalidInputError, match="both meta-train and meta-test"):
        step.step(doms, [([0, 1], [1])])
    for p in net.parameter_list():
        p.grad = None
    with (
        torch.no_grad(),
        pytest.raises(mfr.InvalidInputError, match="needs autograd"),
    ):  # refused before touching autograd
        step.step(doms, LOO3)
    assert all(p.grad is None for p in net.parameter_list())
    step.step(doms, LOO3)
    assert all(p.grad is not None for p in net.parameter_list())
    frozen = net.parameter_list()[0]
    frozen.requires_grad_(False)
    with pytest.raises(mfr.InvalidInputError, match="parameter 0 does not require grad"):
        step.step(doms, LOO3)
    frozen.requires_grad_(True)
    with pytest.raises(mfr.InvalidInputError, match="Backbone: unknown backbone 'resnet'"):
        Backbone("resnet")
    with pytest.raises(mfr.InvalidInputError, match="multiple of 16"):
        Backbone(input_size=20)
    bad = [d.clone() for d in doms]
    bad[0][0, 0, 0, 0] = float("nan")
    for p in net.parameter_list():
        p.grad = None
    before = [b.clone() for b in net.buffer_list()]
    with pytest.raises(mfr.InvalidInputError, match=r"(L_S|L_T|finite).*"):
        step.step(bad, LOO3)
    assert all(p.grad is None for p in net.parameter_list())  # nothing written
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))  # BatchNorm statistics untouched
    bad[0][0, 0, 0, 0] = float("inf")
    with pytest.raises(mfr.InvalidInputError):
        step.step(bad, LOO3)
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    net, doms = make(dtype=torch.float32)
    cpu, _ = run_ours(net, doms, LOO3, MetaStepConfig(alpha=0.05))
    gnet = copy.deepcopy(net).cuda()
    gpu, _out = run_ours(gnet, [d.cuda() for d in doms], LOO3, MetaStepConfig(alpha=0.05))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4 * cpu.abs().max().item())


def test_safetensors_roundtrip(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    net, doms = make(seed=6)
    run_ours(net, doms, LOO3, MetaStepConfig(alpha=0.1))  # running stats move away from their init
    safetensors_torch.save_file(net.state_dict(), tmp_path / "net.safetensors")
    other = Backbone(embedding_dim=16, in_channels=1, input_size=16, width=4).double()
    other.load_state_dict(safetensors_torch.load_file(tmp_path / "net.safetensors"))
    net.eval()
    other.eval()
    torch.testing.assert_close(other(doms[0]), net(doms[0]), rtol=0, atol=0)


_FAULTS_PER_STEP = textwrap.dedent(
    """
    import resource, sys, torch, mfr
    from mfr import MetaStep, MetaStepConfig
    from mfr.nn import Backbone
    torch.manual_seed(0); torch.set_num_threads(1)
    net = Backbone("small_cnn", embedding_dim=64, in_channels=3, input_size=32, width=16)
    doms = [torch.randn(32, 3, 32, 32) for _ in range(3)]
    step, splits = MetaStep(net, MetaStepConfig()), [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]
    if sys.argv[1] == "tune":
        mfr.tune_heap()
    for _ in range(3):  # the heap settles at the step's working set
        step.step(doms, splits)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        step.step(doms, splits)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4, mfr.build_info()["heap_tuned"])
    """
)


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="heap reuse is glibc's mallopt"
)
def test_tune_heap_makes_cpu_meta_steps_reuse_freed_heap():
    # Each step frees its whole working set; with glibc's defaults it is handed back to the kernel
    # and the next step page-faults it in again. The library leaves that alone (meta-steps do not
    # tune the heap); mfr.tune_heap() is the opt-in. Fresh processes: the setting is process-wide.
    def faults(mode):
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_STEP, mode], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        per_step, active = out.stdout.split()
        return float(per_step), active == "True"

    reused, active = faults("tune")
    trimmed, inactive = faults("default")
    assert active and not inactive
    assert reused * 5 < trimmed, (reused, trimmed)  # measured ~100-1,500 vs ~35,000-47,000


def test_step_config_and_result_are_the_rust_types():
    import copy
    import dataclasses
    import pickle

    from mfr.meta import MetaStepResult, as_dict, config_fields, replace

    cfg = MetaStepConfig(alpha=0.2, first_order=True)
    with pytest.raises(AttributeError):
        cfg.alpha = 0.3  # type: ignore[misc]  # frozen
    assert pickle.loads(pickle.dumps(cfg)) == cfg and copy.deepcopy(cfg) is cfg
    assert replace(cfg, gamma=0.25) == MetaStepConfig(alpha=0.2, gamma=0.25, first_order=True)
    with pytest.raises(mfr.InvalidInputError, match="MetaStepConfig: gamma must lie in"):
        replace(cfg, gamma=2.0)
    # The harness's flat copy of the fields stays in step with the Rust definition, defaults too.
    train_fields = {f.name: f.default for f in dataclasses.fields(mfr.TrainConfig)}
    assert all(train_fields[name] == value for name, value in as_dict(MetaStepConfig()).items())
    assert mfr.TrainConfig(alpha=0.2, first_order=True).meta_config() == cfg
    assert set(config_fields(MetaStepResult)) == {
        "loss_s",
        "loss_t",
        "objective",
        "loss_hp",
        "loss_cls",
        "loss_da",
        "hard_positives",
        "hard_negatives",
        "skipped",
    }
    assert MetaStepConfig().tau_p == mfr.losses.DEFAULT_TAU_P
