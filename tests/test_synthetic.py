"""The built-in synthetic multi-domain faces."""

import torch

import mfr
from mfr.data import DOMAIN_SHIFTS, decode_images, synthetic_domains


def test_shapes_determinism_and_index():
    a = synthetic_domains(n_domains=3, ids_per_domain=5, images_per_id=4, size=32, seed=1)
    b = synthetic_domains(n_domains=3, ids_per_domain=5, images_per_id=4, size=32, seed=1)
    c = synthetic_domains(n_domains=3, ids_per_domain=5, images_per_id=4, size=32, seed=2)
    assert a.images.shape == (60, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.shifts == DOMAIN_SHIFTS[:3]
    assert a.index.n_domains == 3 and a.index.n_identities == 15 and len(a.index) == 60
    assert a.index.summary()["domain0_illumination"]["images"] == 20
    # index order matches image order: domain-major, identity, image
    assert a.index.paths[:2] == ["domain0_illumination/id0000/00.png", "domain0_illumination/id0000/01.png"]
    g = synthetic_domains(n_domains=1, ids_per_domain=2, images_per_id=2, size=16, channels=1)
    assert g.images.shape == (4, 1, 16, 16)
    many = synthetic_domains(n_domains=9, ids_per_domain=1, images_per_id=2, size=16)
    assert len(set(many.shifts)) == 9 and "+" in many.shifts[8]


def test_identities_are_recognizable_and_domains_shift():
    s = synthetic_domains(n_domains=7, ids_per_domain=12, images_per_id=4, size=48, seed=3)
    x = s.images.float().reshape(7, 12, 4, -1) / 255
    for d in range(7):
        v = x[d] - x[d].mean(dim=-1, keepdim=True)
        v = v / v.norm(dim=-1, keepdim=True)
        sims = torch.einsum("iad,jbd->ijab", v, v)
        same = torch.stack([sims[i, i][~torch.eye(4, dtype=bool)].mean() for i in range(12)]).mean()
        diff = sims[~torch.eye(12, dtype=bool)].mean()
        assert same > diff + 0.05, (s.shifts[d], float(same), float(diff))
    imgs = s.images.float().reshape(7, 48, 3, 48, 48)
    gray = s.shifts.index("grayscale")
    assert torch.equal(imgs[gray, :, 0], imgs[gray, :, 2])
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert hf(imgs[s.shifts.index("low_resolution")]) < 0.6 * hf(imgs[s.shifts.index("noise")])
    assert hf(imgs[s.shifts.index("blur")]) < hf(imgs[s.shifts.index("contrast")]) * 1.5


def test_folder_roundtrip(tmp_path):
    s = synthetic_domains(n_domains=2, ids_per_domain=3, images_per_id=2, size=24, root=tmp_path)
    assert (tmp_path / "domain1_blur" / "id0002" / "01.png").is_file()
    idx = mfr.FaceIndex.from_folder(tmp_path)
    assert idx.paths == s.index.paths and len(idx) == 12
    back = decode_images(idx.paths, size=(24, 24))
    assert torch.equal(back, s.images)
    sampler = mfr.DomainSampler(idx, ids_per_domain=3)
    assert len(sampler) == 1 and len(next(iter(sampler)).splits) == 2


def test_bad_arguments():
    import pytest

    with pytest.raises(mfr.InvalidInputError, match="synthetic_domains"):
        synthetic_domains(n_domains=0)
    with pytest.raises(mfr.InvalidInputError):
        synthetic_domains(channels=2)
    with pytest.raises(mfr.InvalidInputError, match="write_images: need one path per image"):
        mfr._core.write_images(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), ["a.png"])
