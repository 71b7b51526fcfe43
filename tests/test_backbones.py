"""The functional backbones (IR-ResNets, ResNet-28, MobileFaceNet, small CNN): forward parity with
independent nn.Module implementations of arcface_torch's layouts, published sizes, meta-step
parity on a real architecture, target-domain BatchNorm statistics, checkpoints and bad input."""

import copy

import pytest
import torch

import mfr
from mfr import MetaStep, MetaStepConfig, reference
from mfr.nn import BACKBONES, Backbone

LOO3 = [([1, 2], [0]), ([0, 2], [1]), ([0, 1], [2])]

# Narrow, small-input versions (CPU, float64) and the reference module each must equal.
SMALL = {
    "iresnet18": (
        dict(width=8, input_size=32, embedding_dim=16),
        lambda: reference.IResNet((2, 2, 2, 2), 8, 16, 3, 32),
    ),
    "resnet28": (
        dict(width=4, input_size=24, embedding_dim=8, in_channels=1),
        lambda: reference.IResNet((2, 3, 5, 3), 4, 8, 1, 24),
    ),
    "mobilefacenet": (dict(width=16, input_size=32, embedding_dim=16), lambda: reference.MobileFaceNet(16, 16, 3, 32)),
}


def own_keys(module):
    return [k for k in module.state_dict() if not k.endswith("num_batches_tracked")]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_parity_with_reference_modules(name):
    kw, make_ref = SMALL[name]
    torch.manual_seed(0)
    net = Backbone(name, **kw).double()
    ref = make_ref().double()
    assert sorted(own_keys(ref)) == sorted(net.state_dict())
    ref.load_state_dict(net.state_dict(), strict=False)
    with torch.no_grad():  # non-trivial BN scales, shifts and running statistics
        for t in list(net.parameters()) + list(net.buffers()):
            t.add_(0.05 * torch.randn_like(t)).abs_() if t.dim() == 1 else None
    ref.load_state_dict(net.state_dict(), strict=False)
    c, s = kw.get("in_channels", 3), kw["input_size"]
    x = torch.randn(6, c, s, s, dtype=torch.float64)
    net.train()
    ref.train()
    torch.testing.assert_close(net(x), ref(x), rtol=1e-12, atol=1e-12)
    for k, v in net.state_dict().items():  # running statistics updated the same way
        torch.testing.assert_close(v, ref.state_dict()[k], rtol=1e-12, atol=1e-12)
    net.eval()
    ref.eval()
    torch.testing.assert_close(net(x), ref(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "name,blocks,params",
    [
        ("iresnet18", (2, 2, 2, 2), 24_025_088),
        ("iresnet50", (3, 4, 14, 3), 43_590_336),
        ("mobilefacenet", None, 2_059_520),
    ],
)
def test_published_layouts(name, blocks, params):
    # The published 112x112 -> 512 models: arcface_torch's state_dict names and parameter counts.
    net = Backbone(name)
    assert (net.input_size, net.embedding_dim) == (112, 512)
    ref = reference.IResNet(blocks) if blocks else reference.MobileFaceNet()
    assert sorted(net.state_dict()) == sorted(own_keys(ref))
    assert (
        sum(p.numel() for p in net.parameters())
        == params
        == sum(p.numel() for p in ref.parameters() if p.requires_grad)
    )
    assert net(torch.randn(2, 3, 112, 112)).shape == (2, 512)


def test_arcface_torch_checkpoint_loads():
    kw, make_ref = SMALL["iresnet18"]
    torch.manual_seed(1)
    ref = make_ref().double()
    ref.train()
    ref(torch.randn(4, 3, 32, 32, dtype=torch.float64))  # running stats and num_batches_tracked move
    net = Backbone("iresnet18", **kw).double()
    net.load_state_dict(ref.state_dict())  # num_batches_tracked entries are ignored
    net.eval()
    ref.eval()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-12, atol=1e-12)
    assert not net.features.weight.requires_grad and "features.weight" not in dict(net.named_parameters())


def test_checkpoint_of_another_backbone_is_a_clear_error():
    a = Backbone("iresnet18", width=4, input_size=16, embedding_dim=8)
    with pytest.raises(mfr.InvalidInputError, match=r"does not fit name='mobilefacenet'.*missing: .*unexpected"):
        Backbone("mobilefacenet", width=8, input_size=16, embedding_dim=8).load_state_dict(a.state_dict())
    with pytest.raises(
        mfr.InvalidInputError, match=r"wrong shape: conv1.weight \(4, 3, 3, 3\) \(expected \(8, 3, 3, 3\)\)"
    ):
        Backbone("iresnet18", width=8, input_size=16, embedding_dim=8).load_state_dict(a.state_dict())


def test_meta_step_parity_on_iresnet18():
    kw, _make_ref = SMALL["iresnet18"]
    kw = dict(kw, input_size=16)
    torch.manual_seed(2)
    net = Backbone("iresnet18", **kw).double()
    ref = reference.IResNet((2, 2, 2, 2), 8, 16, 3, 16).double()
    gen = torch.Generator().manual_seed(3)
    doms = [torch.randn(8, 3, 16, 16, generator=gen, dtype=torch.float64) + 0.2 * d for d in range(3)]
    cfg = MetaStepConfig(alpha=0.05, gamma=0.5, tau_p=0.9, tau_n=0.1, scale=8.0)
    ref_buffers = [b.clone() for b in net.buffer_list()]
    forward = reference.module_forward(ref, net.param_names, net.buffer_names)
    expected = reference.meta_step(forward, net.parameter_list(), ref_buffers, doms, LOO3, cfg)
    out = MetaStep(net, cfg).step(doms, LOO3)
    ours = torch.cat([p.grad.flatten() for p in net.parameter_list()])
    ref_flat = torch.cat([g.flatten() for g in expected])
    torch.testing.assert_close(ours, ref_flat, rtol=1e-9, atol=1e-10 * ref_flat.abs().max().item())
    for a, b in zip(net.buffer_list(), ref_buffers):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert out.loss_s > 0


@pytest.mark.parametrize("name", BACKBONES)
def test_one_meta_step_on_every_backbone(name):
    torch.manual_seed(0)
    net = Backbone(name, width=4, input_size=16, embedding_dim=8, in_channels=1)
    doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]
    out = MetaStep(net, MetaStepConfig(alpha=0.05, first_order=name == "resnet28")).step(doms, LOO3)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert out.objective == pytest.approx(0.5 * out.loss_s + 0.5 * out.loss_t, rel=1e-5)


def test_embed_with_running_and_target_statistics():
    torch.manual_seed(0)
    net = Backbone("small_cnn", width=4, input_size=16, embedding_dim=8, in_channels=1).double()
    net.train()
    for _ in range(3):
        net(torch.randn(16, 1, 16, 16, dtype=torch.float64))
    state = copy.deepcopy(net.state_dict())
    target = 3.0 + 2.0 * torch.randn(40, 1, 16, 16, dtype=torch.float64)  # a shifted domain
    net.eval()
    torch.testing.assert_close(net.embed(target, batch_size=7), net(target))
    adapted = net.embed(target, batch_size=10, bn="target")
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())  # module untouched
    # Equals PyTorch's cumulative re-estimation (momentum=None) over the same chunks, then eval.
    ref_net = copy.deepcopy(net)
    params = ref_net.parameter_list()
    buffers = [b.clone() for b in ref_net.buffer_list()]
    for i in range(0, len(buffers), 2):
        buffers[i].zero_()
        buffers[i + 1].fill_(1.0)
    for k, chunk in enumerate(target.split(10)):
        h = chunk
        for blk in range(4):
            cw, bw, bb, pw = params[4 * blk : 4 * blk + 4]
            h = torch.nn.functional.conv2d(h, cw, padding=1)
            h = torch.nn.functional.batch_norm(
                h, buffers[2 * blk], buffers[2 * blk + 1], bw, bb, training=True, momentum=1 / (k + 1)
            )
            h = torch.nn.functional.max_pool2d(torch.nn.functional.prelu(h, pw), 2)
        h = torch.nn.functional.linear(h.flatten(1), params[16], params[17])
        torch.nn.functional.batch_norm(
            h, buffers[8], buffers[9], params[18], params[19], training=True, momentum=1 / (k + 1)
        )
    with torch.no_grad():
        for b, v in zip(ref_net.buffer_list(), buffers):
            b.copy_(v)
    torch.testing.assert_close(adapted, ref_net(target), rtol=1e-10, atol=1e-10)
    net.adapt_batchnorm(target.split(10))
    torch.testing.assert_close(net(target), adapted, rtol=1e-12, atol=1e-12)
    with pytest.raises(mfr.InvalidInputError, match="bn must be"):
        net.embed(target, bn="batch")
    with pytest.raises(mfr.InvalidInputError, match="at least one batch"):
        net.adapt_batchnorm([target[:1]])
    assert net.embed(target[:0]).shape == (0, 8)


def test_config_rebuilds_the_architecture():
    net = Backbone("mobilefacenet", width=8, input_size=32, embedding_dim=16, in_channels=1)
    again = Backbone(**net.config())
    assert again.config() == net.config() and list(again.state_dict()) == list(net.state_dict())


def test_bad_backbone_arguments():
    with pytest.raises(mfr.InvalidInputError, match="input_size must be at least 16"):
        Backbone("iresnet18", input_size=8)
    with pytest.raises(mfr.InvalidInputError, match="in_channels must be 1 or 3"):
        Backbone("iresnet18", in_channels=2)
    with pytest.raises(mfr.InvalidInputError, match="do not split into"):
        Backbone("mobilefacenet", width=9)
    with pytest.raises(mfr.InvalidInputError, match="width must be >= 2"):
        Backbone("resnet28", width=1)
    net = Backbone("iresnet18", width=4, input_size=16, embedding_dim=8)
    with pytest.raises(mfr.InvalidInputError, match=r"images must be \(N, 3, 16, 16\)"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(mfr.InvalidInputError, match="momentum"):
        mfr._core.backbone_forward(
            net.spec, net.parameter_list(), net.buffer_list(), torch.randn(2, 3, 16, 16), "train", 1.5
        )


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_cuda_step_stays_on_gpu_and_matches_cpu(name):
    torch.manual_seed(0)
    net = Backbone(name, width=16, input_size=32, embedding_dim=32)
    doms = [torch.randn(16, 3, 32, 32) + 0.2 * d for d in range(3)]
    gnet = copy.deepcopy(net).cuda()
    cfg = MetaStepConfig(alpha=0.01)
    cpu_out = MetaStep(net, cfg).step(doms, LOO3)
    gpu_out = MetaStep(gnet, cfg).step([d.cuda() for d in doms], LOO3)
    assert all(p.grad.is_cuda for p in gnet.parameters()) and all(b.is_cuda for b in gnet.buffers())
    cpu = torch.cat([p.grad.flatten() for p in net.parameter_list()])
    gpu = torch.cat([p.grad.flatten() for p in gnet.parameter_list()]).cpu()
    assert (gpu - cpu).norm() / cpu.norm() < 1e-3
    assert gpu_out.loss_s == pytest.approx(cpu_out.loss_s, rel=1e-4)
    for a, b in zip(net.buffer_list(), gnet.buffer_list()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-4)
    gnet.eval()
    torch.testing.assert_close(
        gnet.embed(doms[0].cuda(), bn="target").cpu(), net.eval().embed(doms[0], bn="target"), rtol=1e-3, atol=1e-3
    )


@pytest.mark.cuda
def test_parameters_on_two_devices_are_a_device_error():
    net = Backbone("iresnet18", width=4, input_size=16, embedding_dim=8)
    net.layer2.cuda()  # half the network on the GPU
    doms = [torch.randn(8, 3, 16, 16) for _ in range(3)]
    with pytest.raises(mfr.DeviceError, match=r"is on cuda:0 but conv1\.weight on cpu"):
        MetaStep(net, MetaStepConfig()).step(doms, LOO3)
    with pytest.raises(mfr.DeviceError, match="images are on cpu but the parameters on cuda:0"):
        gnet = Backbone("iresnet18", width=4, input_size=16, embedding_dim=8).cuda()
        MetaStep(gnet, MetaStepConfig()).step(doms, LOO3)


def test_backbone_spec_is_built_once_and_travels_with_the_module():
    import copy
    import pickle

    net = Backbone("small_cnn", width=4, input_size=16, embedding_dim=8, in_channels=1)
    spec = net.spec
    assert (spec.name, spec.in_channels, spec.input_size, spec.width, spec.embedding_dim) == ("small_cnn", 1, 16, 4, 8)
    assert [n for n, _, _ in spec.params] == net.param_names and [tuple(s) for _, s, _ in spec.params] == [
        tuple(p.shape) for p in net.parameter_list()
    ]
    assert pickle.loads(pickle.dumps(spec)) == spec and repr(spec).startswith("BackboneSpec('small_cnn'")
    twin = copy.deepcopy(net)
    assert twin.spec == spec
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(twin.eval()(x), net.eval()(x))
    assert mfr._core.BackboneSpec("small_cnn", 1, 16, 4, 8) != mfr._core.BackboneSpec("small_cnn", 1, 16, 4, 16)
