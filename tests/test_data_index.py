"""FaceIndex: folder / list / arrays, summary, filtering, identity splits, verification pairs."""

from pathlib import Path

import numpy as np
import pytest

import mfr
from mfr.data import FaceIndex


def make_tree(root: Path, layout: dict[str, dict[str, int]]) -> None:
    for domain, ids in layout.items():
        for ident, n in ids.items():
            d = root / domain / ident
            d.mkdir(parents=True)
            for k in range(n):
                (d / f"{k}.png").write_bytes(b"not decoded by the index")
    (root / "README.md").write_text("ignored")


def test_from_folder_layout_and_order(tmp_path):
    make_tree(tmp_path, {"b_dom": {"x": 2, "y": 3}, "a_dom": {"x": 1, "z": 4}})
    (tmp_path / "a_dom" / "z" / "notes.txt").write_text("not an image")
    idx = FaceIndex.from_folder(tmp_path)
    assert len(idx) == 10 and idx.n_domains == 2 and idx.n_identities == 4
    assert idx.domain_names == ["a_dom", "b_dom"]
    assert idx.identity_names == ["x", "z", "x", "y"]  # 'x' of a_dom and 'x' of b_dom are two people
    assert idx.identity_domains.tolist() == [0, 0, 1, 1]
    assert idx.paths[0].endswith("a_dom/x/0.png")
    assert np.all(idx.domains == idx.identity_domains[idx.identities])
    s = idx.summary()
    assert s["a_dom"] == {
        "identities": 2,
        "images": 5,
        "min_images_per_identity": 1,
        "mean_images_per_identity": 2.5,
        "max_images_per_identity": 4,
    }
    assert "FaceIndex(10 images, 4 identities, 2 domains" in repr(idx)
    assert FaceIndex.from_folder(tmp_path).paths == idx.paths  # deterministic


def test_from_list_and_arrays_agree(tmp_path):
    lines = ["# comment", "", "img/1.jpg dA 7", "img/2.jpg dA 7", "/abs/3.jpg dB 7"]
    (tmp_path / "list.txt").write_text("\n".join(lines))
    idx = FaceIndex.from_list(tmp_path / "list.txt", root=tmp_path)
    assert idx.paths == [str(tmp_path / "img/1.jpg"), str(tmp_path / "img/2.jpg"), "/abs/3.jpg"]
    arr = FaceIndex.from_arrays(idx.paths, ["dA", "dA", "dB"], [7, 7, 7])
    assert arr.identities.tolist() == idx.identities.tolist() == [0, 0, 1]


def test_filter_split_pairs():
    paths = [f"p{i}" for i in range(60)]
    domains = ["d0"] * 30 + ["d1"] * 30
    ids = [i // 3 for i in range(60)]  # 10 identities per domain, 3 images each; one with 1 image below
    idx = FaceIndex.from_arrays([*paths, "lonely"], [*domains, "d1"], [*ids, 99])
    assert idx.filter(min_images=2).n_identities == 20
    train, test = idx.filter().split_identities(0.3, seed=4)
    assert (train.n_identities, test.n_identities) == (14, 6)
    assert not set(train.paths) & set(test.paths)
    assert idx.filter().split_identities(0.3, seed=4)[1].paths == test.paths
    pairs, labels = idx.verification_pairs("d0", n_impostors=50, seed=1)
    assert pairs.shape == (30 + 50, 2) and labels.sum() == 30
    same = idx.identities[pairs[:, 0]] == idx.identities[pairs[:, 1]]
    np.testing.assert_array_equal(same, labels)
    assert len({tuple(p) for p in pairs}) == len(pairs)
    g, p = idx.gallery_probe(1, seed=0)
    assert len(g) == 10  # the 1-image identity has no probe
    assert np.all(g != p) and np.all(idx.identities[g] == idx.identities[p])


def test_bad_input(tmp_path):
    with pytest.raises(mfr.DataError, match="is not a folder"):
        FaceIndex.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(mfr.DataError, match="no images under"):
        FaceIndex.from_folder(tmp_path / "empty")
    (tmp_path / "bad.txt").write_text("a d i\nb d\n")
    with pytest.raises(mfr.DataError, match=r"bad.txt line 2: expected 3 fields 'path domain identity', got 2"):
        FaceIndex.from_list(tmp_path / "bad.txt")
    with pytest.raises(mfr.DataError, match="cannot read"):
        FaceIndex.from_list(tmp_path / "nope.txt")
    with pytest.raises(mfr.InvalidInputError, match="same length"):
        FaceIndex.from_arrays(["a"], ["d", "e"], [1])
    idx = FaceIndex.from_arrays(["a", "b"], ["d", "d"], [1, 2])
    with pytest.raises(mfr.InvalidInputError, match="domain 'x' is not in the data"):
        idx.gallery_probe("x")
    with pytest.raises(mfr.InvalidInputError, match="only 0 impostor pairs, 5 requested"):
        FaceIndex.from_arrays(["a", "b"], ["d", "d"], [1, 1]).verification_pairs(0, 5)
    with pytest.raises(mfr.InvalidInputError, match="test_fraction must lie in"):
        idx.split_identities(1.5)


def test_real_faces(faces_root):
    idx = FaceIndex.from_folder(faces_root)
    assert idx.n_domains == 7 and len(idx) > 2000
    for name, s in idx.summary().items():
        assert 15 <= s["identities"] <= 62, name
    assert all(not p.endswith(".md") for p in idx.paths)


def test_pickle_roundtrip_keeps_numbering():
    import pickle

    idx = FaceIndex.from_arrays([f"p{i}" for i in range(6)], ["b", "b", "a", "a", "b", "a"], [9, 9, 1, 2, 3, 1])
    back = pickle.loads(pickle.dumps(idx))
    assert back == idx and back.identities.tolist() == idx.identities.tolist()
    assert back.domain_names == ["a", "b"]
