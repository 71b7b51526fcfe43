"""MFR's losses: Rust vs the pure-PyTorch reference (values and gradients), gradcheck, statistics."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mfr
from mfr import losses, reference

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def features(b, d, seed, device="cpu", dtype=torch.float64, spread=1.0):
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(b, d, generator=gen, dtype=dtype)
    g = base + spread * torch.randn(b, d, generator=gen, dtype=dtype)
    p = base + spread * torch.randn(b, d, generator=gen, dtype=dtype)
    return g.to(device).requires_grad_(), p.to(device).requires_grad_()


def grads(loss, inputs):
    return torch.autograd.grad(loss, inputs, allow_unused=False)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(1, 16), st.integers(0, 10_000), st.floats(-0.5, 1.0), st.floats(-0.5, 1.0))
def test_hard_pair_attention_matches_reference(b, d, seed, tau_p, tau_n):
    g, p = features(b, d, seed)
    loss, stats = losses.hard_pair_attention(g, p, tau_p, tau_n)
    ref, ref_stats = reference.hard_pair_attention(g, p, tau_p, tau_n)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    assert (
        stats["hard_positives"] == ref_stats["hard_positives"]
        and stats["hard_negatives"] == ref_stats["hard_negatives"]
    )
    assert stats["mean_positive_similarity"] == pytest.approx(ref_stats["mean_positive_similarity"], abs=1e-12)
    assert stats["mean_negative_similarity"] == pytest.approx(ref_stats["mean_negative_similarity"], abs=1e-12)
    for a, r in zip(grads(loss, (g, p)), grads(ref, (g, p))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


# d >= 2: with d = 1 a gallery and probe point in opposite directions half the time, their
# prototype normalize(g + p) is the normalization of a zero vector, and gradients there depend only
# on each implementation's eps (a singularity of the loss, not a difference of the formulas).
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(2, 16), st.integers(0, 10_000), st.floats(0.5, 64.0))
def test_soft_classification_matches_reference(b, d, seed, scale):
    g, p = features(b, d, seed)
    loss = losses.soft_classification(g, p, scale)
    ref = reference.soft_classification(g, p, scale)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(grads(loss, (g, p)), grads(ref, (g, p))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(1, 8), st.integers(0, 10_000))
def test_domain_alignment_matches_reference(sizes, d, seed):
    gen = torch.Generator().manual_seed(seed)
    doms = [torch.randn(n, d, generator=gen, dtype=torch.float64).requires_grad_() for n in sizes]
    loss = losses.domain_alignment(doms)
    ref = reference.domain_alignment(doms)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-14)
    if len(doms) > 1:
        for a, r in zip(grads(loss, doms), grads(ref, doms)):
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    else:
        assert loss.item() == 0.0


def test_gradcheck_through_the_rust_ops():
    g, p = features(4, 5, 0)
    assert torch.autograd.gradcheck(lambda a, b: losses.soft_classification(a, b, 8.0), (g, p))
    # Away from the mining thresholds the selection is locally constant, so gradcheck applies.
    assert torch.autograd.gradcheck(lambda a, b: losses.hard_pair_attention(a, b, 0.9, 0.1)[0], (g, p))
    doms = [torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda *d: losses.domain_alignment(d), doms)


def test_second_order_gradients_flow():
    g, p = features(5, 6, 1)
    loss = losses.soft_classification(g, p, 16.0) + losses.hard_pair_attention(g, p, 0.8, 0.0)[0]
    (gg,) = torch.autograd.grad(loss, g, create_graph=True)
    (hvp,) = torch.autograd.grad(gg.sum(), g)
    ref = reference.soft_classification(g, p, 16.0) + reference.hard_pair_attention(g, p, 0.8, 0.0)[0]
    (rg,) = torch.autograd.grad(ref, g, create_graph=True)
    (rhvp,) = torch.autograd.grad(rg.sum(), g)
    torch.testing.assert_close(hvp, rhvp, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_and_device(device):
    g, p = features(8, 32, 2, device=device, dtype=torch.float32)
    loss, stats = losses.hard_pair_attention(g, p)
    assert loss.device == g.device and loss.dtype == torch.float32 and loss.requires_grad
    assert 0 <= stats["hard_positives"] <= 8 and 0 <= stats["hard_negatives"] <= 56
    cls = losses.soft_classification(g, p)
    cls.backward()
    assert g.grad is not None and torch.isfinite(g.grad).all()


def test_empty_mining_sets_give_zero_with_a_graph():
    g, p = features(3, 4, 3)
    loss, stats = losses.hard_pair_attention(g, p, tau_p=-2.0, tau_n=2.0)
    assert (stats["hard_positives"], stats["hard_negatives"]) == (0, 0)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(g.grad, torch.zeros_like(g))


def test_bad_input():
    g, p = features(4, 3, 0)
    with pytest.raises(mfr.InvalidInputError, match=r"must both be \(B, D\)"):
        losses.hard_pair_attention(g, p[:3])
    with pytest.raises(mfr.InvalidInputError, match="B >= 2"):
        losses.soft_classification(g[:1], p[:1])
    with pytest.raises(mfr.InvalidInputError, match="scale must be a positive number"):
        losses.soft_classification(g, p, scale=0.0)
    with pytest.raises(mfr.InvalidInputError, match="argument 'gallery' must be finite"):
        losses.hard_pair_attention(torch.full((2, 2), float("nan")), torch.ones(2, 2))
    with pytest.raises(mfr.InvalidInputError, match="must be floating point, got int64"):
        losses.soft_classification(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(mfr.InvalidInputError, match="same feature size"):
        losses.domain_alignment([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(mfr.InvalidInputError, match="at least one domain"):
        losses.domain_alignment([])
