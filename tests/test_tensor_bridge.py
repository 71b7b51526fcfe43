"""Tensors in and out of the Rust core: devices, dtypes, shapes, layouts, and the error messages."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfr

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def reference_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    na = np.maximum(np.linalg.norm(a, axis=1), 1e-12)
    nb = np.maximum(np.linalg.norm(b, axis=1), 1e-12)
    return (a * b).sum(1) / (na * nb)


@pytest.mark.parametrize("device", DEVICES)
def test_cosine_scores_stays_on_device_and_matches_torch(device):
    a = torch.randn(64, 32, device=device)
    b = torch.randn(64, 32, device=device)
    out = mfr.cosine_scores(a, b)
    assert out.device == a.device and out.dtype == torch.float32 and out.shape == (64,)
    expected = torch.nn.functional.cosine_similarity(a, b, dim=1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_pair_scores_returns_float64_numpy(device):
    emb = torch.randn(40, 16, device=device)
    pairs = np.stack([np.arange(40), (np.arange(40) * 7) % 40], axis=1)
    out = mfr.pair_scores(emb, pairs)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (40,)
    e = emb.cpu().numpy()
    np.testing.assert_allclose(out, reference_cosine(e[pairs[:, 0]], e[pairs[:, 1]]), rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    emb=hnp.arrays(
        np.float32, st.tuples(st.integers(1, 12), st.integers(1, 9)), elements=st.floats(-1e3, 1e3, width=32)
    ),
    data=st.data(),
)
def test_pair_scores_property_matches_float64_reference(emb, data):
    n = emb.shape[0]
    pairs = data.draw(hnp.arrays(np.int64, st.tuples(st.integers(0, 20), st.just(2)), elements=st.integers(0, n - 1)))
    out = mfr.pair_scores(emb, pairs)
    expected = reference_cosine(emb[pairs[:, 0]], emb[pairs[:, 1]]) if len(pairs) else np.zeros(0)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-9)
    assert np.all(np.abs(out) <= 1 + 1e-9)


def test_inputs_accept_numpy_and_sequences():
    a = np.array([[1.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    assert mfr.cosine_scores(a, a).tolist() == pytest.approx([1.0, 1.0])
    assert mfr.pair_scores([[1.0, 0.0], [0.0, 1.0]], torch.tensor([[0, 1]], dtype=torch.int32)).tolist() == [0.0]
    assert mfr.pair_scores(a, np.zeros((0, 2), dtype=np.int64)).shape == (0,)


def test_wrong_dtype_is_invalid_input():
    with pytest.raises(mfr.InvalidInputError, match=r"cosine_scores: argument 'a' must be float32, got float64"):
        mfr.cosine_scores(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="argument 'embeddings' must be float32, got float64"):
        mfr.pair_scores(np.zeros((3, 4)), [[0, 1]])
    with pytest.raises(mfr.InvalidInputError, match="argument 'pairs' must hold integer indices, got float32"):
        mfr.pair_scores(torch.zeros(3, 4), torch.zeros(2, 2))


def test_wrong_rank_is_invalid_input():
    with pytest.raises(mfr.InvalidInputError, match=r"argument 'b' must be 2-D, got a 3-D tensor of shape \[2, 3, 4\]"):
        mfr.cosine_scores(torch.zeros(2, 3), torch.zeros(2, 3, 4))
    with pytest.raises(mfr.InvalidInputError, match=r"must have shape \(M, 2\), got \[4, 3\]"):
        mfr.pair_scores(torch.zeros(3, 4), torch.zeros(4, 3, dtype=torch.int64))


def test_non_contiguous_is_invalid_input():
    a = torch.randn(8, 4).t()
    with pytest.raises(mfr.InvalidInputError, match=r"argument 'a' must be contiguous \(call .contiguous\(\) first\)"):
        mfr.cosine_scores(a, torch.randn(4, 8))
    # The same data, made contiguous, works.
    assert mfr.cosine_scores(a.contiguous(), torch.randn(4, 8)).shape == (4,)


def test_bad_values_and_types():
    with pytest.raises(mfr.InvalidInputError, match=r"got \[0, 3\] at row 1"):
        mfr.pair_scores(torch.zeros(3, 2), [[0, 1], [0, 3]])
    with pytest.raises(mfr.InvalidInputError, match=r"must be finite, got NaN at index 3"):
        mfr.pair_scores(torch.tensor([[0.0, 1.0], [2.0, float("nan")]]), [[0, 1]])
    with pytest.raises(
        mfr.InvalidInputError, match=r"must be a torch\.Tensor, a numpy array or a sequence of numbers, got str"
    ):
        mfr.cosine_scores("abc", torch.zeros(1, 1))
    with pytest.raises(mfr.InvalidInputError, match="same shape"):
        mfr.cosine_scores(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(mfr.InvalidInputError, match="must not be empty"):
        mfr.pair_scores(torch.zeros(0, 3), [])


@pytest.mark.cuda
def test_device_mismatch_is_device_error():
    with pytest.raises(mfr.DeviceError, match=r"arguments 'a' and 'b' must be on the same device, got cuda:0 and cpu"):
        mfr.cosine_scores(torch.zeros(2, 3, device="cuda"), torch.zeros(2, 3))


def test_gil_is_released_during_rust_work():
    # Two Python threads calling the core concurrently must both finish and agree.
    import threading

    emb = torch.randn(2000, 64)
    pairs = torch.randint(0, 2000, (400_000, 2))
    results = []

    def work():
        results.append(mfr.pair_scores(emb, pairs))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 3
    assert all((r == results[0]).all() for r in results)
