"""decode_images and the evaluation formats (.bin, LFW pairs.txt), on files the tests write."""

import io
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

import mfr
from mfr.data import DecodeWarning, decode_images, load_verification_bin, normalize_images, read_lfw_pairs


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:30]
    base = np.stack([xx * 8, yy * 6, (xx + yy) * 3], axis=-1)
    return np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "PPM", "GIF"])
def test_lossless_formats_decode_exactly(tmp_path, rgb, fmt):
    img = Image.fromarray(rgb)
    if fmt == "GIF":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE).convert("RGB")  # GIF is paletted
        rgb = np.asarray(img)
    path = tmp_path / f"x.{fmt.lower()}"
    img.save(path, format=fmt)
    out = decode_images([path], size=(40, 30))
    assert out.shape == (1, 3, 40, 30) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), rgb)


def test_jpeg_and_pgm_and_bytes(tmp_path, rgb):
    jpeg = encoded(rgb, "JPEG")
    ref = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    out = decode_images([jpeg], size=(40, 30))[0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(out - ref).mean() < 1.5  # JPEG decoders may differ by rounding (IDCT, upsampling)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.pgm")
    g = decode_images([tmp_path / "g.pgm"], size=(40, 30), channels=1)
    np.testing.assert_array_equal(g[0, 0].numpy(), gray)
    # grayscale source as RGB: replicated channels
    g3 = decode_images([str(tmp_path / "g.pgm")], size=(40, 30), channels=3)
    assert torch.equal(g3[0, 0], g3[0, 2]) and torch.equal(g3[0, 0], g[0, 0])


def test_resize_flip_and_gray_policy(rgb):
    png = encoded(rgb, "PNG")
    out = decode_images([png, png], size=(20, 15), flip=[False, True])
    assert out.shape == (2, 3, 20, 15)
    assert torch.equal(out[1], out[0].flip(-1))
    ref = np.asarray(Image.fromarray(rgb).resize((15, 20), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(out[0].permute(1, 2, 0).numpy().astype(int) - ref).mean() < 6
    gray = decode_images([png], size=(40, 30), channels=1)[0, 0].numpy().astype(float)
    luma709 = rgb @ np.array([0.2126, 0.7152, 0.0722])
    assert np.abs(gray - luma709).max() <= 1.0
    assert torch.equal(
        decode_images([png], size=(40, 30), flip=True)[0], decode_images([png], size=(40, 30))[0].flip(-1)
    )


def test_errors_name_the_file_or_are_skipped(tmp_path, rgb):
    good = encoded(rgb, "PNG")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(mfr.DataError, match=r"image 1: cannot decode .*corrupt.jpg"):
        decode_images([good, tmp_path / "corrupt.jpg"])
    with pytest.raises(mfr.DataError, match=r"cannot read .*missing.png"):
        decode_images([tmp_path / "missing.png"])
    with pytest.warns(DecodeWarning, match="left out 2 image"):
        out, failed = decode_images(
            [good, tmp_path / "corrupt.jpg", good, tmp_path / "missing.png"],
            size=(8, 8),
            on_error="skip",
            return_failed=True,
        )
    assert out.shape[0] == 2 and [i for i, _ in failed] == [1, 3]
    with pytest.raises(mfr.InvalidInputError, match="channels must be 1 or 3, got 2"):
        decode_images([good], channels=2)  # type: ignore[arg-type]
    with pytest.raises(mfr.InvalidInputError, match="source 0 must be a path"):
        decode_images([123])  # type: ignore[list-item]
    with pytest.raises(mfr.InvalidInputError, match="wrap it in a list"):
        decode_images(str(tmp_path / "x.png"))  # type: ignore[arg-type]
    with pytest.raises(mfr.InvalidInputError, match=r"flip must have one entry per image \(1\), got 2"):
        decode_images([good], flip=[True, False])
    assert decode_images([], size=(4, 4)).shape == (0, 3, 4, 4)


def test_normalize_images():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8).reshape(1, 3, 1, 1)
    y = normalize_images(x)
    torch.testing.assert_close(y.flatten(), torch.tensor([-1.0, 1.0, -0.6]))
    z = normalize_images(x, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 0.2])
    torch.testing.assert_close(z.flatten(), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(mfr.InvalidInputError, match="4-D uint8"):
        normalize_images(x.float())


def test_verification_bin_roundtrip(tmp_path, rgb):
    # insightface's format: pickle.dump((bins, issame_list)), bins = 2N encoded images.
    imgs = [encoded(np.roll(rgb, k, axis=1), "JPEG") for k in range(6)]
    issame = [True, False, True]
    with open(tmp_path / "set.bin", "wb") as f:
        pickle.dump((imgs, issame), f, protocol=pickle.HIGHEST_PROTOCOL)
    vs = load_verification_bin(tmp_path / "set.bin", size=(40, 30))
    assert vs.images.shape == (6, 3, 40, 30) and vs.issame.tolist() == issame and vs.n_pairs == 3
    # numpy issame arrays (as some releases store) load too
    with open(tmp_path / "np.bin", "wb") as f:
        pickle.dump((imgs, np.array(issame)), f)
    assert load_verification_bin(tmp_path / "np.bin", size=(8, 8)).issame.tolist() == issame
    with open(tmp_path / "bad.bin", "wb") as f:
        pickle.dump((imgs[:5], issame), f)
    with pytest.raises(mfr.DataError, match="holds 5 images for 3 pairs"):
        load_verification_bin(tmp_path / "bad.bin")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump((Evil(), []), f)
    with pytest.raises(mfr.DataError, match=r"refusing to load builtins\.print"):
        load_verification_bin(tmp_path / "evil.bin")


def test_lfw_pairs(tmp_path):
    text = "2\t2\nA\t1\t2\nB\t1\t3\nA\t1\tC\t4\nB\t2\tC\t1\nC\t1\t2\nA\t2\t3\nA\t1\tB\t1\nC\t2\tB\t3\n"
    (tmp_path / "pairs.txt").write_text(text)
    p = read_lfw_pairs(tmp_path / "pairs.txt", "/lfw")
    assert p.issame.tolist() == [True, True, False, False] * 2
    assert p.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert p.first[0] == "/lfw/A/A_0001.jpg" and p.second[2] == "/lfw/C/C_0004.jpg"
    (tmp_path / "short.txt").write_text("2\t2\nA\t1\t2\n")
    with pytest.raises(mfr.DataError, match="header announces 8 pairs, found 1"):
        read_lfw_pairs(tmp_path / "short.txt", "/lfw")
    (tmp_path / "bad.txt").write_text("1\t1\nA\t1\t2\nA\tx\tB\t1\n")
    with pytest.raises(mfr.DataError, match=r"bad.txt line 3: image number must be an integer, got 'x'"):
        read_lfw_pairs(tmp_path / "bad.txt", "/lfw")


def test_real_faces_decode(faces_root):
    idx = mfr.FaceIndex.from_folder(faces_root)
    sample = idx.paths[:: max(1, len(idx) // 200)]
    out = decode_images(sample, size=(112, 112), channels=3)
    assert out.shape == (len(sample), 3, 112, 112)
    assert 20 < out.float().mean() < 235
    ref = np.asarray(Image.open(sample[0]).convert("RGB").resize((112, 112), Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(out[0].permute(1, 2, 0).numpy().astype(int) - ref).mean() < 8


# ---- MXNet RecordIO, written here from the format description ----------------------------------

MAGIC = 0xCED7230A


def write_rec(path, records):
    """dmlc RecordIO: [magic][cflag<<29 | len][data][pad to 4]; data split at 4-aligned magic numbers."""
    import struct

    offsets = []
    with open(path, "wb") as f:
        for data in records:
            offsets.append(f.tell())
            magic = struct.pack("<I", MAGIC)
            cuts = [i for i in range(0, len(data) - 3, 4) if data[i : i + 4] == magic]
            parts, start = [], 0
            for c in cuts:
                parts.append(data[start:c])
                start = c + 4
            parts.append(data[start:])
            for j, part in enumerate(parts):
                cflag = 0 if len(parts) == 1 else 1 if j == 0 else 3 if j == len(parts) - 1 else 2
                f.write(struct.pack("<II", MAGIC, (cflag << 29) | len(part)))
                f.write(part + b"\0" * (-len(part) % 4))
    return offsets


def ir_pack(label, payload, id_=0):
    """insightface's IRHeader 'IfQQ' (+ float32 label array when the label is a list)."""
    import struct

    if isinstance(label, (list, tuple)):
        return struct.pack("<IfQQ", len(label), 0.0, id_, 0) + np.asarray(label, np.float32).tobytes() + payload
    return struct.pack("<IfQQ", 0, float(label), id_, 0) + payload


def test_insightface_record_file(tmp_path, rgb):
    import struct

    images = [encoded(np.roll(rgb, 3 * k, axis=0), "PNG") for k in range(5)]
    # One payload containing an aligned magic number forces a split record.
    tricky = ir_pack(4, images[4] + b"\0" * (-len(images[4]) % 4) + struct.pack("<I", MAGIC) + b"tail")
    labels = [0, 0, 1, 1]
    records = [ir_pack([5, 7], b"")] + [ir_pack(lab, img, i + 1) for i, (lab, img) in enumerate(zip(labels, images))]
    records[4] = tricky
    records += [ir_pack([1, 3], b""), ir_pack([3, 5], b"")]  # identity ranges
    offsets = write_rec(tmp_path / "train.rec", records)
    (tmp_path / "train.idx").write_text("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets)))

    rf = mfr.data.RecordFile(tmp_path / "train.rec", tmp_path / "train.idx")
    assert len(rf) == 7 and rf.keys.tolist() == list(range(7))
    assert rf.read(4) == tricky  # parts joined, magic restored
    lab, id_, _, payload = rf.read_insightface(2)
    assert lab.tolist() == [0.0] and id_ == 2 and payload == images[1]
    index, rf2 = mfr.data.index_from_record(tmp_path / "train.rec", tmp_path / "train.idx", domain="ms1m")
    assert len(index) == 4 and index.n_identities == 3  # labels 0, 1, 4
    assert index.paths[0].endswith("train.rec#1")
    out, failed = rf2.decode([1, 2, 3], 40, 30)
    assert failed == [] and out.shape == (3, 3, 40, 30)
    np.testing.assert_array_equal(out[2].permute(1, 2, 0).numpy(), np.roll(rgb, 6, axis=0))
    # Without .idx the file is scanned; keys are positions.
    scanned = mfr.data.RecordFile(tmp_path / "train.rec")
    assert len(scanned) == 7 and scanned.read(4) == tricky
    with pytest.raises(mfr.InvalidInputError, match="no record with key 99"):
        rf.read(99)
    (tmp_path / "bad.idx").write_text("0\t5\n")
    with pytest.raises(mfr.DataError, match=r"no record at byte 5 .*corrupt file or wrong .idx"):
        mfr.data.RecordFile(tmp_path / "train.rec", tmp_path / "bad.idx").read(0)
    with pytest.raises(mfr.DataError, match="cannot open"):
        mfr.data.RecordFile(tmp_path / "none.rec")


@pytest.mark.parametrize(
    "header, message",
    [([1e9, 1e9 + 2], "announces images 1 .. 1000000000.0 - 1"), ([float("nan"), 3], "announces images 1 .. nan")],
)
def test_crafted_record_headers_are_data_errors(tmp_path, header, message):
    write_rec(tmp_path / "t.rec", [ir_pack(header, b""), ir_pack(0, b"img")])
    with pytest.raises(mfr.DataError, match=re.escape(message) + ".*holds 2 records"):
        mfr.data.index_from_record(tmp_path / "t.rec")


def test_non_integral_identity_labels_are_data_errors(tmp_path):
    write_rec(tmp_path / "t.rec", [ir_pack(0, b"a"), ir_pack(float("nan"), b"b")])
    with pytest.raises(mfr.DataError, match="record 1 has identity label nan"):
        mfr.data.index_from_record(tmp_path / "t.rec")


@pytest.mark.parametrize("channels, size", [(1, 16), (3, 16), (1, 40), (3, 24)])
def test_one_image_gives_the_same_pixels_from_disk_and_from_memory(tmp_path, rgb, channels, size):
    """Grayscale conversion and resizing exist once (Rust): FaceData's in-memory images and
    decoded files go through the same code."""
    picture = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    mfr._core.write_images(picture, [str(tmp_path / "d" / "p" / "0.png")])
    from_disk = mfr.FaceData.from_folder(tmp_path).load([0], size, channels)
    index = mfr.FaceIndex.from_arrays(["0.png"], ["d"], ["p"])
    in_memory = mfr.FaceData(index, images=picture).load([0], size, channels)
    assert torch.equal(from_disk, in_memory)
