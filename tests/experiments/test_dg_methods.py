"""The domain-generalization baselines (coral, mixstyle, cdt) and SWAD: each loss or update against
a plain-PyTorch version written from its formula (gradients included), each trains on the built-in
data, and bad settings are errors or warnings, never silent no-ops."""

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F

import mfr
from mfr import FaceData, TrainConfig, Trainer
from mfr.experiments.dg_losses import coral_penalty, cross_domain_triplet, pair_covariances
from mfr.experiments.methods import CDTMethod, draw_style_mix, make_method
from mfr.experiments.rows import Row
from mfr.experiments.swad import Swad, SwadWarning
from mfr.meta import MetaStepConfig
from mfr.nn import Backbone, StyleMix
from mfr.reference import inner_update


@pytest.fixture(autouse=True)
def float64_by_default():
    """Parity at float64 precision (the trainers below name their dtype)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=10, images_per_id=3, size=16, channels=1, seed=0)


def cfg(**kw):
    base = dict(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=4, steps=4, warmup_steps=1)
    base.update(kw)
    return TrainConfig(**base)


# ---- CORAL ------------------------------------------------------------------------------------


def coral_by_hand(features):
    """DomainBed's CORAL penalty with every mean and covariance entry summed explicitly."""
    total, pairs = 0.0, 0
    for a, b in itertools.combinations(features, 2):
        d = a.shape[1]
        ma = [sum(a[k, i] for k in range(a.shape[0])) / a.shape[0] for i in range(d)]
        mb = [sum(b[k, i] for k in range(b.shape[0])) / b.shape[0] for i in range(d)]

        def cov(x, m, i, j):
            return sum((x[k, i] - m[i]) * (x[k, j] - m[j]) for k in range(x.shape[0])) / (x.shape[0] - 1)

        mean_term = sum((ma[i] - mb[i]) ** 2 for i in range(d)) / d
        cov_term = sum((cov(a, ma, i, j) - cov(b, mb, i, j)) ** 2 for i in range(d) for j in range(d)) / d**2
        total, pairs = total + mean_term + cov_term, pairs + 1
    return total / pairs


def test_coral_penalty_and_its_gradient_match_the_formula():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(5 + k, 3, generator=g, requires_grad=True) for k in range(3)]
    ours, ref = coral_penalty(feats), coral_by_hand(feats)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-10)
    g_ours = torch.autograd.grad(ours, feats)
    g_ref = torch.autograd.grad(ref, feats)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    same = [feats[0].detach()] * 2
    assert float(coral_penalty(same)) == 0.0
    with pytest.raises(ValueError):
        coral_penalty(feats[:1])


# ---- the (cross-domain) triplet loss ------------------------------------------------------------


def metrics_by_hand(emb):
    """Sigma_+ / Sigma_-: mean outer products of pair differences, loops over pairs, trace scaled to d."""
    n, d = emb.shape
    ident = [k % (n // 2) for k in range(n)]
    pos, neg = [], []
    for i in range(n):
        for j in range(i + 1, n):
            diff = emb[i] - emb[j]
            (pos if ident[i] == ident[j] else neg).append(torch.outer(diff, diff))
    out = []
    for group in (pos, neg):
        s = sum(group) / len(group)
        out.append(s * d / torch.trace(s))
    return out


def cdt_by_hand(emb, sp, sn, margin):
    n = emb.shape[0]
    ident = [k % (n // 2) for k in range(n)]
    terms = []
    for a in range(n):
        p = next(j for j in range(n) if j != a and ident[j] == ident[a])
        for neg in range(n):
            if ident[neg] == ident[a]:
                continue
            xp, xn = emb[a] - emb[p], emb[a] - emb[neg]
            dp = xp @ xp if sp is None else xp @ sp @ xp
            dn = xn @ xn if sn is None else xn @ sn @ xn
            terms.append(torch.clamp(dp - dn + margin, min=0.0))
    return sum(terms) / len(terms)


def test_cross_domain_triplet_and_its_gradients_match_the_formula():
    g = torch.Generator().manual_seed(1)
    x_i = torch.randn(8, 5, generator=g, requires_grad=True)  # the domain whose triplets are scored
    x_j = torch.randn(8, 5, generator=g, requires_grad=True)  # the domain whose metrics are used
    u_i, u_j = F.normalize(x_i), F.normalize(x_j)
    sp, sn = pair_covariances(u_j)
    rp, rn = metrics_by_hand(u_j)
    torch.testing.assert_close(sp, rp)
    torch.testing.assert_close(sn, rn)
    for margin in (0.3, 2.0):
        ours = cross_domain_triplet(u_i, sp, sn, margin)
        ref = cdt_by_hand(u_i, rp, rn, margin)
        assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-10) and float(ours.detach()) > 0
        for a, b in zip(
            torch.autograd.grad(ours, [x_i, x_j], retain_graph=True),
            torch.autograd.grad(ref, [x_i, x_j], retain_graph=True),
        ):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    plain = cross_domain_triplet(u_i, None, None, 0.3)
    assert float(plain.detach()) == pytest.approx(float(cdt_by_hand(u_i, None, None, 0.3).detach()), rel=1e-10)


def test_cdt_update_matches_its_objective_written_out(data):
    """CDTMethod's gradient is that of gamma L_S + (1 - gamma) L_T(theta') written with the
    loop-formula losses above (meta-train: CosFace + triplet; meta-test: CosFace + cross-domain
    triplet under the meta-train domains' metrics at theta)."""
    torch.manual_seed(0)
    net = Backbone("small_cnn", in_channels=1, input_size=16, width=4, embedding_dim=8).double()
    config = MetaStepConfig(alpha=0.05, gamma=0.4)
    method = CDTMethod(net, 12, config, head_scale=16.0, margin=0.2, weight=0.7, triplet_margin=0.4)
    method.head.double()
    g = torch.Generator().manual_seed(3)
    domains = [torch.randn(6, 1, 16, 16, generator=g) for _ in range(3)]
    labels = [torch.tensor([0, 1, 2, 0, 1, 2]) + 4 * d for d in range(3)]
    splits = [([0, 2], [1])]
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    method.step(domains, labels, splits)
    ours = [p.grad.clone() for p in method.parameters()]

    net.load_state_dict(state)
    for p in method.parameters():
        p.grad = None
    theta = net.parameter_list()
    params = [*theta, method.head.weight]

    def cosface(emb, y, weight):
        logits = F.normalize(emb) @ F.normalize(weight).T - 0.2 * F.one_hot(y, 12)
        return F.cross_entropy(16.0 * logits, y)

    emb = {d: net(domains[d]) for d in (0, 2)}
    l_s = sum(cosface(emb[d], labels[d], method.head.weight) for d in (0, 2)) / 2
    l_s = l_s + 0.7 * sum(cdt_by_hand(F.normalize(emb[d]), None, None, 0.4) for d in (0, 2)) / 2
    adapted = inner_update(l_s, params, 0.05, False)
    e = net(domains[1], params=adapted[:-1])
    cross = sum(cdt_by_hand(F.normalize(e), *metrics_by_hand(F.normalize(emb[j])), 0.4) for j in (0, 2)) / 2
    l_t = cosface(e, labels[1], adapted[-1]) + 0.7 * cross
    (0.4 * l_s + 0.6 * l_t).backward()
    for a, p in zip(ours, method.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-6, atol=1e-9)


# ---- MixStyle ---------------------------------------------------------------------------------


def mixstyle_by_hand(x, partners, weights):
    """MixStyle's formula: per sample and channel, mean and std over H, W (unbiased variance + 1e-6),
    detached; normalized features re-styled with the mixed statistics."""
    mu = x.mean((2, 3), keepdim=True).detach()
    sig = (x.var((2, 3), keepdim=True) + 1e-6).sqrt().detach()
    lam = weights.view(-1, 1, 1, 1)
    return (x - mu) / sig * (lam * sig + (1 - lam) * sig[partners]) + lam * mu + (1 - lam) * mu[partners]


def reference_with_mix(params, x, mix):
    """The small CNN of reference.small_cnn_forward with MixStyle after the blocks ``mix.points`` name."""
    for i in range(4):
        cw, bw, bb, pw = params[4 * i : 4 * i + 4]
        h = F.batch_norm(F.conv2d(x, cw, padding=1), None, None, bw, bb, training=True, eps=1e-5)
        x = F.max_pool2d(F.prelu(h, pw), 2)
        if i in mix.points:
            x = mixstyle_by_hand(x, mix.partners, mix.weights)
    ew, eb, nw, nb = params[16:20]
    return F.batch_norm(F.linear(x.flatten(1), ew, eb), None, None, nw, nb, training=True, eps=1e-5)


@pytest.mark.parametrize("points", [(0,), (0, 1), (1, 2)])
def test_mixstyle_forward_and_gradients_match_the_formula(points):
    torch.manual_seed(0)
    net = Backbone("small_cnn", in_channels=1, input_size=16, width=4, embedding_dim=8).double()
    assert net.spec.style_points == 3
    x = torch.randn(6, 1, 16, 16)
    mix = StyleMix(torch.tensor([3, 4, 5, 0, 1, 2]), torch.tensor([0.1, 0.9, 0.5, 0.0, 1.0, 0.3]), points)
    net.train()
    ours = net(x, params=net.parameter_list(), mix=mix)
    ref = reference_with_mix(net.parameter_list(), x, mix)
    torch.testing.assert_close(ours, ref)
    w = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * w).sum(), net.parameter_list())
    g_ref = torch.autograd.grad((ref * w).sum(), net.parameter_list())
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    plain = net(x, params=net.parameter_list())
    same = net(x, params=net.parameter_list(), mix=StyleMix(torch.arange(6), torch.ones(6), points))
    torch.testing.assert_close(plain, same)  # mixing with oneself (or weight 1) changes nothing


def test_mixstyle_partners_come_from_other_domains_and_evaluation_never_mixes():
    torch.manual_seed(0)
    draws = [draw_style_mix([4, 4, 4], 1.0, 0.1, (0, 1), torch.device("cpu")) for _ in range(20)]
    domain = torch.arange(12) // 4
    for mix in draws:
        assert mix is not None and mix.points == (0, 1)
        assert (domain[mix.partners] != domain).all()
        assert ((mix.weights >= 0) & (mix.weights <= 1)).all()
    assert all(draw_style_mix([4, 4], 0.0, 0.1, (0, 1), torch.device("cpu")) is None for _ in range(5))
    net = Backbone("small_cnn", in_channels=1, input_size=16, width=4, embedding_dim=8)
    net.eval()
    with pytest.raises(mfr.InvalidInputError, match="training passes only"):
        net(torch.randn(4, 1, 16, 16), mix=StyleMix(torch.tensor([1, 0, 3, 2]), torch.full((4,), 0.5), (0,)))


@pytest.mark.parametrize(
    "mix, message",
    [
        (StyleMix(torch.tensor([1, 0, 3, 9]), torch.full((4,), 0.5), (0,)), "partners must lie in"),
        (StyleMix(torch.tensor([1, 0, 3, 2]), torch.full((4,), 1.5), (0,)), "weights must lie in"),
        (StyleMix(torch.tensor([1, 0, 3]), torch.full((4,), 0.5), (0,)), "partners must be an int64"),
        (StyleMix(torch.tensor([1, 0, 3, 2]), torch.full((4,), 0.5), (7,)), "style point 7 does not exist"),
    ],
)
def test_bad_style_mixes_are_clear_errors(mix, message):
    net = Backbone("small_cnn", in_channels=1, input_size=16, width=4, embedding_dim=8)
    with pytest.raises(mfr.InvalidInputError, match=message):
        net(torch.randn(4, 1, 16, 16), mix=mix)


@pytest.mark.parametrize("name", ["iresnet18", "mobilefacenet"])
def test_every_backbone_has_three_style_points(name):
    net = Backbone(name, in_channels=3, input_size=32, width=4, embedding_dim=8)
    assert net.spec.style_points == 3
    x = torch.randn(4, 3, 32, 32)
    net.train()
    out = net(x, mix=StyleMix(torch.tensor([2, 3, 0, 1]), torch.full((4,), 0.3), (0, 1, 2)))
    assert out.shape == (4, 8) and torch.isfinite(out).all()


# ---- SWAD -------------------------------------------------------------------------------------


def window_of(losses):
    """SWAD's loss-valley rule on a list of segment losses, written plainly: the indices averaged."""
    n_conv, n_tol, ratio = 3, 6, 0.3
    start = next((i for i in range(len(losses) - n_conv + 1) if min(losses[i : i + n_conv]) == losses[i]), None)
    if start is None:
        return None
    threshold = (1 + ratio) * sum(losses[start : start + n_conv]) / n_conv
    chosen = [start]
    for i in range(start + 1, len(losses)):
        if min(losses[i : i + n_tol]) > threshold:
            break
        chosen.append(i)
    return chosen


@pytest.mark.parametrize(
    "losses",
    [
        [5, 4, 3, 2.5, 2.6, 2.7, 2.4, 2.5, 2.6, 2.8, 2.9, 3.0],  # opens at 2.5, never leaves
        [5, 4, 3, 2, 2.1, 2.2, 2.3, 4, 5, 6, 7, 8, 9, 9, 9],  # opens at 2, leaves the valley
        [5, 4, 3, 2, 1, 2, 2.5, 2.5, 2.6, 3.5, 2.0, 9, 9, 9, 9, 9, 9, 9],  # a bump inside the tolerance
    ],
)
def test_swad_averages_exactly_the_window_its_rule_picks(losses):
    torch.manual_seed(0)
    w = torch.zeros(3, requires_grad=False)
    swad = Swad([w])
    per_segment, step = [], 0
    for loss in losses:
        seen = []
        for _ in range(4):
            step += 1
            w.copy_(torch.randn(3))
            seen.append(w.clone())
            swad.accumulate(step)
        per_segment.append(torch.stack(seen))
        swad.end_segment(step, loss)
    chosen = window_of(losses)
    assert swad.finish()
    expected = torch.cat([per_segment[i] for i in chosen]).mean(0)
    torch.testing.assert_close(w, expected)
    assert swad.record()["window"] == [4 * chosen[0] + 1, 4 * (chosen[-1] + 1)]
    assert swad.record()["segments"] == len(chosen)


def test_swad_window_that_never_opens_warns_and_keeps_the_last_weights():
    w = torch.zeros(2)
    swad = Swad([w])
    for step, loss in enumerate([5.0, 4.0, 3.0, 2.0, 1.0], start=1):
        w.fill_(step)
        swad.accumulate(step)
        swad.end_segment(step, loss)
    with pytest.warns(SwadWarning, match="never opened"):
        assert not swad.finish()
    assert float(w[0]) == 5.0


def test_swad_training_resumes_bit_identical_and_costs_its_evaluations(data, tmp_path):
    c = cfg(method="cosface", steps=12, swad=True, swad_every=2, log_every=1)
    straight = Trainer(c, data, progress=False)
    straight.fit()
    assert straight.swad.applied and straight.swad.seconds > 0
    assert straight.data.index.n_identities == 24  # a fifth of each domain's identities held out
    first = Trainer(cfg(**{**c.__dict__, "checkpoint_every": 5}), data, out_dir=tmp_path, progress=False)
    real_step = first.train_step

    def dies_at_step_8():
        if first.step == 7:
            raise KeyboardInterrupt
        return real_step()

    first.train_step = dies_at_step_8
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    second = Trainer(cfg(**{**c.__dict__, "checkpoint_every": 5}), data, out_dir=tmp_path, progress=False)
    second.fit(resume=True)
    for a, b in zip(straight.backbone.state_dict().values(), second.backbone.state_dict().values()):
        assert torch.equal(a, b)
    assert second.swad.swad.record() == straight.swad.swad.record()
    again = Trainer(cfg(**{**c.__dict__, "checkpoint_every": 5}), data, out_dir=tmp_path, progress=False)
    again.fit(resume=True)  # a finished run loads; the average is not applied twice
    for a, b in zip(straight.backbone.state_dict().values(), again.backbone.state_dict().values()):
        assert torch.equal(a, b)


# ---- every new method trains; bad settings ---------------------------------------------------


@pytest.mark.parametrize("row", ["coral", "mixstyle", "cdt", "cosface+swad", "mfr+swad"])
def test_each_new_row_trains_and_its_loss_falls(row, data):
    r = Row.parse(row)
    torch.manual_seed(0)
    c = cfg(method=r.method, steps=40, lr=0.05, log_every=1, dtype="float32", **r.config_fields())
    with warnings.catch_warnings():
        warnings.simplefilter("error", SwadWarning)
        tr = Trainer(c, data, progress=False)
        history = tr.fit()
    first = sum(h["loss"] for h in history[:5]) / 5
    last = sum(h["loss"] for h in history[-5:]) / 5
    assert last < first, (row, first, last)
    if r.swad:
        assert tr.swad.swad.record()["window"] is not None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"coral_weight": -1.0}, "coral_weight must be >= 0"),
        ({"cdt_weight": -0.5}, "cdt_weight must be >= 0"),
        ({"cdt_margin": float("nan")}, "cdt_margin must be a finite number"),
        ({"mixstyle_p": 1.5}, "mixstyle_p is a probability"),
        ({"mixstyle_p": -0.1}, "mixstyle_p is a probability"),
        ({"mixstyle_alpha": 0.0}, "mixstyle_alpha must be > 0"),
        ({"swad": True, "steps": 10, "swad_every": 5}, "SWAD's window can only open after 3"),
        ({"swad_every": -1}, "swad_every must be >= 0"),
    ],
)
def test_bad_settings_are_errors(change, message):
    with pytest.raises(mfr.InvalidInputError, match=message):
        cfg(**change).check()


def test_rows_with_options_parse_and_unknown_options_are_refused():
    for name in ("cosface+swad", "mfr+swad@arcface", "cosface+swad:time"):
        assert str(Row.parse(name)) == name
    assert Row.parse("cosface+swad:time").at_steps == Row.parse("cosface+swad")
    assert Row.parse("mfr+swad").config_fields() == {"swad": True}
    assert "unknown option" in Row.parse("cosface+ema").problem()
    with pytest.raises(mfr.InvalidInputError, match="unknown option"):
        from mfr.experiments.reproduce import check_methods

        check_methods(["mfr", "cosface+ema"])
    from mfr.experiments.reproduce.spec import time_rows

    assert time_rows(["mfr", "mfr+swad", "cosface+swad", "coral", "mfr@arcface"]) == [
        "cosface+swad:time",
        "coral:time",
    ]


def test_make_method_reads_the_options_and_their_defaults():
    net = Backbone("small_cnn", in_channels=1, input_size=16, width=4, embedding_dim=8)
    meta = MetaStepConfig()
    assert make_method("coral", net, 5, meta, options={"coral_weight": 2.5}).weight == 2.5
    assert make_method("coral", net, 5, meta).weight == 1.0
    mix = make_method("mixstyle", net, 5, meta, options={"mixstyle_p": 0.2, "mixstyle_alpha": 0.3})
    assert (mix.p, mix.alpha) == (0.2, 0.3)
    cdt = make_method("cdt", net, 5, meta, margin=0.1, options={"cdt_weight": 3.0, "cdt_margin": 0.7})
    assert (cdt.weight, cdt.triplet_margin, cdt.head.margin) == (3.0, 0.7, 0.1)


@pytest.mark.cuda
@pytest.mark.parametrize("row", ["coral", "mixstyle", "cdt", "cosface+swad", "mfr+swad"])
def test_new_rows_train_on_cuda_tensors(row, data):
    r = Row.parse(row)
    torch.manual_seed(0)
    c = cfg(method=r.method, steps=12, device="cuda", dtype="float32", log_every=1, **r.config_fields())
    tr = Trainer(c, data, progress=False)
    history = tr.fit()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert all(p.device.type == "cuda" for p in tr.method.parameters())
