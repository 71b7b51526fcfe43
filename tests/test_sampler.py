"""DomainSampler: the guarantees of the sampler issue, on synthetic indexes and the real faces."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mfr
from mfr import DomainSampler, FaceIndex


def synthetic_index(ids_per_domain=(12, 9, 7), images=3, seed=0):
    rng = np.random.default_rng(seed)
    paths, domains, identities = [], [], []
    for d, n in enumerate(ids_per_domain):
        for i in range(n):
            for k in range(int(rng.integers(2, images + 3)) if images else 2):
                paths.append(f"d{d}/{i}/{k}.png")
                domains.append(f"d{d}")
                identities.append(i)
    return FaceIndex.from_arrays(paths, domains, identities)


def check_invariants(idx, sampler, batches):
    ids_of = idx.identities
    dom_of = idx.domains
    b, k = sampler.config["ids_per_domain"], sampler.config["images_per_id"]
    for mb in batches:
        assert mb.images.shape == (idx.n_domains, b, k)
        for d in range(idx.n_domains):
            ids = mb.identities[d]
            assert len(set(ids.tolist())) == b  # no identity twice in a domain's batch
            imgs = mb.images[d]
            assert np.all(dom_of[imgs] == d)
            assert np.all(ids_of[imgs] == ids[:, None])
            assert np.all(imgs[:, 0] != imgs[:, 1])  # gallery != probe
        assert mb.flat_indices().tolist() == mb.images.reshape(-1).tolist()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(2, 15), min_size=2, max_size=5),
    st.integers(1, 2),
    st.integers(2, 3),
    st.sampled_from(["leave_one_out", "random"]),
    st.integers(0, 1000),
)
def test_invariants_property(sizes, b, k, split, seed):
    idx = synthetic_index(sizes, seed=seed)
    s = DomainSampler(idx, ids_per_domain=b, images_per_id=k, split=split, seed=seed)
    batches = list(s)
    assert len(batches) == len(s) == -(-max(sizes) // b)
    check_invariants(idx, s, batches)
    # Every identity of a domain is used before any repeats.
    for d, n in enumerate(sizes):
        stream = np.concatenate([mb.identities[d] for mb in batches]).tolist()
        assert len(set(stream[:n])) == min(n, len(stream))
    for mb in batches:
        if split == "leave_one_out":
            assert [sp.meta_test for sp in mb.splits] == [(d,) for d in range(len(sizes))]
        else:
            (sp,) = mb.splits
            assert len(sp.meta_test) == 1 and set(sp.meta_train) | set(sp.meta_test) == set(range(len(sizes)))


def test_seeded_and_thread_independent():
    idx = synthetic_index((30, 20, 25))
    a = [mb.images for mb in DomainSampler(idx, 4, seed=3)]
    try:
        mfr.set_num_threads(1)
        b = [mb.images for mb in DomainSampler(idx, 4, seed=3)]
    finally:
        mfr.set_num_threads(0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = [mb.images for mb in DomainSampler(idx, 4, seed=4)]
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_epochs_differ_and_set_epoch_resets():
    idx = synthetic_index()
    s = DomainSampler(idx, 3, split="random", seed=1)
    e0 = [mb.images for mb in s]
    s.set_epoch(1)
    e1 = [mb.images for mb in s]
    assert not all(np.array_equal(x, y) for x, y in zip(e0, e1))
    s.set_epoch(0)
    assert all(np.array_equal(x, mb.images) for x, mb in zip(e0, s))
    with pytest.raises(
        mfr.InvalidInputError, match=r"set_epoch: argument 'epoch' must be an integer in \[0, 2\*\*64 - 1\], got -1"
    ):
        s.set_epoch(-1)


def test_ranks_are_disjoint_and_union_is_single_stream():
    idx = synthetic_index((21, 10, 14))
    single = DomainSampler(idx, 3, split="random", seed=9)
    assert len(single) == 7
    single.set_epoch(2)
    ref = {mb.number: mb.images for mb in single}
    got = {}
    for rank in range(2):
        s = DomainSampler(idx, 3, split="random", seed=9, rank=rank, world_size=2)
        s.set_epoch(2)
        assert len(s) == 4
        for mb in s:
            assert mb.number % 2 == rank and mb.number not in got
            got[mb.number] = mb.images
    assert sorted(got) == list(range(8))  # 7 padded to 8 from the same stream
    for n, imgs in ref.items():
        assert np.array_equal(got[n], imgs)


def test_resume_mid_epoch_is_exact():
    idx = synthetic_index((20, 16, 12))
    s = DomainSampler(idx, 2, seed=5)
    s.set_epoch(3)
    it = iter(s)
    first = [next(it) for _ in range(4)]
    state = s.state_dict()
    rest = [mb.images for mb in it]
    r = DomainSampler(idx, 2, seed=5)
    r.load_state_dict(state)
    resumed = [mb.images for mb in r]
    assert len(first) + len(resumed) == len(s)
    assert all(np.array_equal(x, y) for x, y in zip(rest, resumed))
    other = DomainSampler(idx, 3, seed=5)
    with pytest.raises(mfr.InvalidInputError, match="different configuration"):
        other.load_state_dict(state)


def test_dataloader_batch_sampler():
    idx = synthetic_index((8, 8))

    class Echo(torch.utils.data.Dataset):
        def __len__(self):
            return len(idx)

        def __getitem__(self, i):
            return i

    s = DomainSampler(idx, 4, seed=0)
    loader = torch.utils.data.DataLoader(Echo(), batch_sampler=s.batch_sampler())
    batches = [b.tolist() for b in loader]
    assert len(batches) == len(loader) == 2
    s2 = DomainSampler(idx, 4, seed=0)
    assert batches == [mb.flat_indices().tolist() for mb in s2]
    dom = s2[0].domain(1)
    assert dom.gallery.dtype == torch.int64 and dom.gallery.shape == (4,) and dom.identities.shape == (4,)


def test_bad_configurations():
    idx = synthetic_index((5, 3))
    with pytest.raises(mfr.InvalidInputError, match="domain 'd1' has 3 identities, fewer than ids_per_domain=4"):
        DomainSampler(idx, 4)
    with pytest.raises(mfr.InvalidInputError, match="index has 2 domain"):
        DomainSampler(idx, 1, meta_test_domains=2)
    with pytest.raises(
        mfr.InvalidInputError, match=r"DomainSampler: argument 'rank' must be an integer in \[0, 1\], got 2"
    ):
        DomainSampler(idx, 1, rank=2, world_size=2)
    with pytest.raises(mfr.InvalidInputError, match="split must be 'leave_one_out' or 'random', got 'loo'"):
        DomainSampler(idx, 1, split="loo")  # type: ignore[arg-type]
    with pytest.raises(
        mfr.InvalidInputError,
        match=r"DomainSampler: argument 'ids_per_domain' must be an integer in \[1, 2\*\*63 - 1\], got -1",
    ):
        DomainSampler(idx, -1)
    lonely = FaceIndex.from_arrays(["a", "b", "c", "d", "e"], ["x", "x", "x", "y", "y"], [1, 1, 2, 3, 3])
    with pytest.raises(mfr.InvalidInputError, match=r"identity '2' of domain 'x' has 1 image.*filter\(min_images=2\)"):
        DomainSampler(lonely, 1)
    assert len(DomainSampler(lonely.filter(2), 1)) == 1


def test_real_faces_sampler(faces_root):
    idx = FaceIndex.from_folder(faces_root).filter(2)
    s = DomainSampler(idx, ids_per_domain=15, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 5  # 62 identities in the largest domain
    check_invariants(idx, s, batches)
    assert len(batches[0].splits) == 7
