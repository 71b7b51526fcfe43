"""Closed-set identification (CMC) against a numpy brute force."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mfr
from mfr.metrics import identification


def brute_force_ranks(gallery, gallery_ids, probes, probe_ids):
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    p = probes / np.maximum(np.linalg.norm(probes, axis=1, keepdims=True), 1e-12)
    s = p @ g.T
    ranks = []
    for i, pid in enumerate(probe_ids):
        mate = gallery_ids == pid
        best = s[i, mate].max()
        ranks.append(1 + int(np.sum((s[i] >= best) & ~mate)))
    return np.array(ranks)


def synthetic(n_ids=50, extra_gallery=2, dim=16, noise=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_ids, dim))
    gallery_ids = np.r_[np.arange(n_ids), rng.integers(0, n_ids, extra_gallery)]
    gallery = centers[gallery_ids] + noise * rng.standard_normal((len(gallery_ids), dim))
    probe_ids = rng.permutation(n_ids)
    probes = centers[probe_ids] + noise * rng.standard_normal((n_ids, dim))
    return gallery, gallery_ids, probes, probe_ids


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10), st.integers(1, 8), st.floats(0.0, 3.0), st.integers(0, 2**32 - 1))
def test_ranks_match_brute_force(n_ids, extra, dim, noise, seed):
    gallery, gids, probes, pids = synthetic(n_ids, extra, dim, noise, seed)
    res = identification(gallery, gids, probes, pids, ranks=(1, 2, 5))
    # float64 inputs are ranked in float64, like the reference.
    np.testing.assert_array_equal(res.probe_ranks, brute_force_ranks(gallery, gids, probes, pids))
    for k, acc in res.cmc.items():
        assert acc == np.mean(res.probe_ranks <= k)


def test_float32_tensor_input_and_curve():
    gallery, gids, probes, pids = synthetic(200, 50, 32, 1.0, 1)
    res = identification(
        torch.from_numpy(gallery).float(), torch.from_numpy(gids), torch.from_numpy(probes).float(), pids
    )
    ref = brute_force_ranks(
        gallery.astype(np.float32).astype(np.float64), gids, probes.astype(np.float32).astype(np.float64), pids
    )
    assert np.mean(res.probe_ranks == ref) > 0.99  # float32 vs float64 rounding may flip near-ties
    curve = res.curve(10)
    assert curve.shape == (10,) and np.all(np.diff(curve) >= 0)
    assert curve[0] == res.cmc[1] and curve[4] == res.cmc[5] and curve[9] == res.cmc[10]
    assert 0.2 < res.cmc[1] < res.cmc[10] <= 1.0


def test_chunking_covers_large_gallery():
    # More gallery entries than one tile row holds forces several tiles in both directions.
    rng = np.random.default_rng(2)
    gallery = rng.standard_normal((20_000, 8)).astype(np.float32)
    gids = np.arange(20_000)
    probe_ids = rng.integers(0, 20_000, 1_000)
    probes = gallery[probe_ids] + 0.05 * rng.standard_normal((1_000, 8)).astype(np.float32)
    res = identification(gallery, gids, probes, probe_ids)
    sub = rng.choice(1_000, 50, replace=False)
    ref = brute_force_ranks(gallery.astype(np.float64), gids, probes[sub].astype(np.float64), probe_ids[sub])
    assert np.mean(res.probe_ranks[sub] == ref) >= 0.96


@pytest.mark.cuda
def test_cuda_matches_cpu():
    gallery, gids, probes, pids = synthetic(300, 100, 64, 1.0, 3)
    g, p = torch.from_numpy(gallery).float(), torch.from_numpy(probes).float()
    cpu = identification(g, gids, p, pids)
    gpu = identification(g.cuda(), gids, p.cuda(), pids)
    assert np.mean(cpu.probe_ranks == gpu.probe_ranks) > 0.99


def test_bad_input():
    gallery, gids, probes, pids = synthetic(10, 0, 4, 0.5, 4)
    with pytest.raises(mfr.InvalidInputError, match=r"probe 0 has id 99 which does not"):
        identification(gallery, gids, probes, np.r_[99, pids[1:]])
    with pytest.raises(mfr.InvalidInputError, match=r"same embedding size, got 4 and 3"):
        identification(gallery, gids, probes[:, :3], pids)
    with pytest.raises(mfr.InvalidInputError, match=r"one id per row of 'probes' \(10\), got 9"):
        identification(gallery, gids, probes, pids[:9])
    with pytest.raises(mfr.InvalidInputError, match="'gallery_ids' must hold integer ids, got float64"):
        identification(gallery, gids.astype(float), probes, pids)
    with pytest.raises(mfr.InvalidInputError, match="'probes' must be finite, got a non-finite value in row 2"):
        bad = probes.copy()
        bad[2, 1] = np.inf
        identification(gallery, gids, bad, pids)
    with pytest.raises(mfr.InvalidInputError, match="ranks must be integers >= 1"):
        identification(gallery, gids, probes, pids, ranks=(0,))
