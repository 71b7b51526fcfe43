"""Bad input never poisons training or crashes: non-finite configurations, autograd-free contexts,
single-image training batches, stale checkpoint temp files, unusable output folders."""

import math
import os
import re
import subprocess
import sys

import pytest
import torch
from cli_args import TINY

import mfr
from mfr import FaceData, TrainConfig, Trainer
from mfr.experiments.checkpoint import check_output_folder, remove_stale_temp_files
from mfr.experiments.cli import main
from mfr.experiments.reproduce import run_protocol
from mfr.meta import MetaStep, MetaStepConfig


@pytest.mark.parametrize("field", ["alpha", "gamma", "tau_p", "tau_n", "scale", "w_hp", "w_cls", "w_da"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_meta_step_config_refuses_non_finite(field, value):
    with pytest.raises(mfr.InvalidInputError, match=f"{field} must be a finite number"):
        MetaStepConfig(**{field: value})


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"alpha": -0.1}, "alpha must be >= 0"),
        ({"gamma": 1.5}, "gamma must lie in"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"w_da": -1.0}, "w_da must be >= 0"),
    ],
)
def test_meta_step_config_ranges(kw, message):
    with pytest.raises(mfr.InvalidInputError, match=message):
        MetaStepConfig(**kw)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"lr": math.nan}, "lr must be a finite number"),
        ({"lr": math.inf}, "lr must be a finite number"),
        ({"momentum": math.nan}, "momentum must be a finite number"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"grad_clip": math.nan}, "grad_clip must be a finite number"),
        ({"margin": math.inf}, "margin must be a finite number"),
        ({"head_scale": 0.0}, "head_scale must be > 0"),
        ({"alpha": math.nan}, "alpha must be a finite number"),
        ({"gamma": 2.0}, "gamma must lie in"),
    ],
)
def test_train_config_refuses_non_finite_and_out_of_range(kw, message):
    with pytest.raises(mfr.InvalidInputError, match=message):
        TrainConfig(**kw).check()


def test_cli_train_with_nan_lr_is_a_user_error(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                *TINY,
                "--steps",
                "1",
                "--lr",
                "nan",
                "--no-progress",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "lr must be a finite number" in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def _step_inputs():
    torch.manual_seed(0)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]
    return net, doms, [([0, 1], [2]), ([1, 2], [0]), ([0, 2], [1])]


def test_meta_step_refuses_inference_mode_and_no_grad():
    net, doms, splits = _step_inputs()
    step = MetaStep(net)
    with torch.inference_mode(), pytest.raises(mfr.InvalidInputError, match="needs autograd"):
        step.step(doms, splits)
    with torch.no_grad(), pytest.raises(mfr.InvalidInputError, match="needs autograd"):
        step.step(doms, splits)
    with torch.inference_mode():
        frozen = [d.clone() for d in doms]
    with pytest.raises(mfr.InvalidInputError, match="inference tensors"):
        step.step(frozen, splits)
    assert all(p.grad is None for p in net.parameters())
    out = step.step(doms, splits)  # still works afterwards
    assert math.isfinite(out.objective)


def test_meta_step_in_inference_mode_does_not_crash_the_interpreter():
    code = (
        "import torch, mfr\n"
        "net = mfr.nn.Backbone('small_cnn', width=4, input_size=16, embedding_dim=16, in_channels=1)\n"
        "doms = [torch.randn(8, 1, 16, 16) for _ in range(3)]\n"
        "try:\n"
        "    with torch.inference_mode():\n"
        "        mfr.MetaStep(net).step(doms, [([0, 1], [2])])\n"
        "except mfr.InvalidInputError:\n"
        "    print('refused')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "refused" in proc.stdout, proc.stderr


def test_single_image_training_batch_is_refused_and_buffers_stay_finite():
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    before = [b.clone() for b in net.buffer_list()]
    with pytest.raises(mfr.InvalidInputError, match="more than 1 image"):
        net(torch.randn(1, 1, 16, 16))
    assert all(torch.equal(a, b) for a, b in zip(before, net.buffer_list()))
    net.eval()
    assert net(torch.randn(1, 1, 16, 16)).shape == (1, 16)  # eval mode: fine


def test_stale_checkpoint_temp_files_are_removed_live_ones_kept(tmp_path):
    target = tmp_path / "checkpoint.safetensors"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".checkpoint.safetensors.tmp-{dead}"
    live = tmp_path / f".checkpoint.safetensors.tmp-{os.getppid()}"
    own = tmp_path / f".checkpoint.safetensors.tmp-{os.getpid()}"
    other = tmp_path / f".other.safetensors.tmp-{dead}"
    for p in (stale, live, own, other):
        p.write_bytes(b"x" * 1000)
    assert remove_stale_temp_files(target) == [stale]
    assert not stale.exists() and live.exists() and own.exists() and other.exists()
    # A training run cleans its own out dir when it starts.
    stale.write_bytes(b"x")
    data = FaceData.synthetic(n_domains=2, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    Trainer(
        TrainConfig(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=2, steps=1, warmup_steps=0),
        data,
        out_dir=tmp_path,
    ).fit()
    assert not stale.exists() and target.exists()


def test_unusable_output_folders_are_user_errors(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(mfr.InvalidInputError, match="file"):
            check_output_folder(bad, "--out")
        assert (
            main(
                [
                    "train",
                    *TINY,
                    "--steps",
                    "1",
                    "--no-progress",
                    "--out",
                    str(bad),
                ]
            )
            == 2
        )
        assert "mfr: error: --out" in capsys.readouterr().err
        assert (
            main(
                [
                    "reproduce",
                    *TINY,
                    "--steps",
                    "1",
                    "--no-progress",
                    "--methods",
                    "softmax",
                    "--out",
                    str(bad),
                ]
            )
            == 2
        )
        assert "mfr: error: --out" in capsys.readouterr().err  # the command names its flag, as train does
        with pytest.raises(mfr.InvalidInputError, match="out_dir"):  # the API its argument
            run_protocol(FaceData.synthetic(n_domains=3, ids_per_domain=4, size=16, channels=1), log=None, out_dir=bad)
    check_output_folder(tmp_path / "new" / "deeper", "--out")  # creatable: fine


def test_clear_errors_for_files_states_and_empty_galleries(tmp_path):
    import numpy as np

    from mfr.data import read_lfw_pairs
    from mfr.experiments.weights import load_backbone
    from mfr.sampler import DomainSampler

    (tmp_path / "pairs.txt").write_bytes(bytes(range(256)))
    with pytest.raises(mfr.DataError, match="not a text file"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path)
    data = FaceData.synthetic(n_domains=2, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    sampler = DomainSampler(data.index, ids_per_domain=2)
    state = sampler.state_dict()
    for bad in ({**state, "position": -1}, {**state, "position": len(sampler) + 1}, {**state, "epoch": "x"}):
        with pytest.raises(mfr.InvalidInputError, match=r"DomainSampler\.load_state_dict"):
            sampler.load_state_dict(bad)
    with pytest.raises(mfr.InvalidInputError, match="the gallery is empty"):
        mfr.metrics.identification(
            np.zeros((0, 4), np.float32), np.zeros(0), np.ones((2, 4), np.float32), np.array([0, 1])
        )
    # A diverged checkpoint is blamed, not the scoring function that would meet its NaNs.
    trainer = Trainer(
        TrainConfig(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=2, steps=0), data
    )
    with torch.no_grad():
        trainer.backbone.parameter_list()[0][0].fill_(float("nan"))
    path = trainer.save(tmp_path / "nan.safetensors")
    with pytest.raises(mfr.DataError, match="non-finite"):
        load_backbone(path)


@pytest.mark.parametrize("method", ["arcface", "mldg", "mfr"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_step_leaves_model_statistics_and_optimizer_as_they_were(method, value, monkeypatch):
    import mfr.experiments.train

    data = FaceData.synthetic(n_domains=3, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    trainer = Trainer(
        TrainConfig(
            method=method,
            input_size=16,
            channels=1,
            width=4,
            embedding_dim=16,
            ids_per_domain=2,
            steps=2,
            warmup_steps=0,
        ),
        data,
    )
    trainer.train_step()  # a healthy step first: statistics and momentum exist
    params = [p.detach().clone() for p in trainer.backbone.parameter_list()]
    buffers = [b.clone() for b in trainer.backbone.buffer_list()]
    momentum = [
        v.clone() for st in trainer.optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor)
    ]
    # Every image of the next batch is NaN/inf (as a corrupt decode would give).
    monkeypatch.setattr(mfr.experiments.train, "normalize_images", lambda x: torch.full(x.shape, value))
    with pytest.raises(mfr.MfrError, match=r"(?i)nan|inf|finite"):
        trainer.train_step()
    assert all(torch.equal(a, b) for a, b in zip(params, trainer.backbone.parameter_list()))
    assert all(torch.equal(a, b) for a, b in zip(buffers, trainer.backbone.buffer_list()))
    after = [v for st in trainer.optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    assert len(after) == len(momentum) and all(torch.equal(a, b) for a, b in zip(momentum, after))
    assert all(p.grad is None for p in trainer.method.parameters())
    assert trainer.step == 1


# ---- integer arguments and sizes (item 1) --------------------------------------------------------


@pytest.fixture(scope="module")
def small_index():
    import numpy as np

    return mfr.FaceIndex.from_arrays(
        [f"p{i}.png" for i in range(40)], list(np.repeat(["a", "b"], 20)), list(np.repeat(np.arange(8), 5))
    )


SCORES = ([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])

# (call, function named in the message, argument named): negative, huge, float and > 2**64 values.
BAD_INTEGERS = [
    (lambda ix: mfr.metrics.verification_report(*SCORES, n_bootstrap=10, seed=-1), "verification_report", "seed"),
    (lambda ix: mfr.metrics.verification_report(*SCORES, n_bootstrap=2**64), "verification_report", "n_bootstrap"),
    (lambda ix: mfr.metrics.verification_report(*SCORES, n_bootstrap=10**400), "verification_report", "n_bootstrap"),
    (lambda ix: mfr.metrics.kfold_accuracy(*SCORES, 2**63), "kfold_accuracy", "n_folds"),
    (lambda ix: mfr.metrics.kfold_accuracy(*SCORES, 2.5), "kfold_accuracy", "n_folds"),
    (lambda ix: mfr.DomainSampler(ix, ids_per_domain=2, seed=-1), "DomainSampler", "seed"),
    (lambda ix: mfr.DomainSampler(ix, ids_per_domain=2**64), "DomainSampler", "ids_per_domain"),
    (lambda ix: mfr.DomainSampler(ix, ids_per_domain=2, world_size=10**12), "DomainSampler", "world_size"),
    (lambda ix: mfr.DomainSampler(ix, ids_per_domain=2, rank=-1, world_size=2), "DomainSampler", "rank"),
    (lambda ix: mfr.DomainSampler(ix, ids_per_domain=2).set_epoch(2**64), "DomainSampler.set_epoch", "epoch"),
    (lambda ix: ix.verification_pairs(0, n_impostors=-1), "FaceIndex.verification_pairs", "n_impostors"),
    (lambda ix: ix.verification_pairs(0, seed=2**64), "FaceIndex.verification_pairs", "seed"),
    (lambda ix: ix.gallery_probe(-1), "FaceIndex.gallery_probe", "domain"),
    (lambda ix: ix.gallery_probe(0, draw=-3), "FaceIndex.gallery_probe", "draw"),
    (lambda ix: ix.filter(min_images=-1), "FaceIndex.filter", "min_images"),
    (lambda ix: ix.split_identities(0.5, seed=-1), "FaceIndex.split_identities", "seed"),
    (lambda ix: mfr.metrics.bootstrap_group_counts(-1, 10, 0), "bootstrap_group_counts", "n_groups"),
    (lambda ix: mfr.data.decode_images([b"x"], size=(16.5, 16)), "decode_images", "height"),
    (lambda ix: mfr.data.decode_images([b"x"], size=(16, 16), channels=-1), "decode_images", "channels"),
    (lambda ix: mfr.set_num_threads(2**70), "set_num_threads", "n"),
    (lambda ix: mfr.nn.Backbone("small_cnn", input_size=-32), "Backbone('small_cnn')", "input_size"),
    (lambda ix: mfr._core.name_seed(-1, ["a"]), "name_seed", "seed"),
]


@pytest.mark.parametrize(
    "call, func, arg", BAD_INTEGERS, ids=[f"{f}-{a}-{i}" for i, (_, f, a) in enumerate(BAD_INTEGERS)]
)
def test_integer_arguments_are_range_checked_where_they_enter(call, func, arg, small_index):
    with pytest.raises(mfr.InvalidInputError, match=rf"^{re.escape(func)}: argument '{arg}' must be an integer in \["):
        call(small_index)


def test_record_file_integer_arguments(tmp_path):
    (tmp_path / "x.rec").write_bytes(b"")
    rf = mfr.data.RecordFile(tmp_path / "x.rec")
    for call, arg in [
        (lambda: rf.read(-1), "key"),
        (lambda: rf.read_insightface(2**64), "key"),
        (lambda: rf.decode([0], -8, 8), "height"),
        (lambda: rf.decode([-1], 8, 8), r"keys\[0\]"),
        (lambda: rf.insightface_labels([0, -2]), r"keys\[1\]"),
    ]:
        with pytest.raises(mfr.InvalidInputError, match=rf"RecordFile\.\w+: argument '{arg}' must be an integer"):
            call()


def test_meta_step_split_domains_are_range_checked():
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    doms = [torch.randn(4, 1, 16, 16) for _ in range(3)]
    for splits in ([([0, 1], [-1])], [([0, 2**64], [2])], [([0, 1], [3])]):
        with pytest.raises(
            mfr.InvalidInputError,
            match=r"MetaStep: argument 'splits\[0\] meta-\w+\[\d\]' must be an integer in \[0, 2\]",
        ):
            mfr.MetaStep(net).step(doms, splits)


# Sizes that would allocate more than any machine holds: refused up front, each in its own
# interpreter so that a regression (an abort) fails this test instead of ending the run.
HUGE_REQUESTS = {
    "bootstrap": "mfr.metrics.verification_report([.9, .8, .3, .2], [1, 1, 0, 0], n_bootstrap=2**62)",
    "images_per_id": "mfr.DomainSampler(ix, ids_per_domain=2, images_per_id=2**60)",
    "decode": "mfr.data.decode_images([b'x'] * 4096, size=(16384, 16384))",
    "impostors": "ix.verification_pairs(0, n_impostors=2**60)",
    "backbone": "mfr.nn.Backbone('small_cnn', width=2**20)",
}


def test_huge_sizes_are_refused_with_the_figure():
    code = (
        "import re, numpy as np, mfr\n"
        "ix = mfr.FaceIndex.from_arrays([f'p{i}.png' for i in range(40)], list(np.repeat(['a', 'b'], 20)), list(np.repeat(np.arange(8), 5)))\n"
        "for name, expr in " + repr(HUGE_REQUESTS) + ".items():\n"
        "    try:\n"
        "        eval(expr)\n"
        "        print(name, 'ACCEPTED')\n"
        "    except mfr.InvalidInputError as e:\n"
        "        print(name, 'refused' if re.search(r'would need [0-9.]+ GiB, more than', str(e)) else 'OTHER: ' + str(e))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split("\n")[:-1] == [f"{name} refused" for name in HUGE_REQUESTS], proc.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_requests_past_an_address_space_limit_raise_memory_error():
    """Under ``ulimit -v`` a request the machine could hold but the process may not map is refused
    as a MemoryError (mfr.OutOfMemoryError), not an abort: decode_images at 2 GiB of output."""
    code = (
        "import resource, mfr\n"
        "used = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))\n"
        "try:\n"
        "    mfr.data.decode_images([b'x'] * 8, size=(8192, 8192))\n"
        "    print('ACCEPTED')\n"
        "except MemoryError as e:\n"
        "    assert isinstance(e, mfr.OutOfMemoryError) and isinstance(e, mfr.InvalidInputError)\n"
        "    print('refused:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("refused: decode_images:") and "address-space limit" in proc.stdout, proc.stdout


# ---- file names and corrupt files (item 4) -------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_non_utf8_folder_names_stay_distinct_end_to_end(tmp_path):
    import pickle

    import numpy as np

    root = os.fsencode(tmp_path)
    for ident in (b"id\xff", b"id\xfe", b"plain"):
        folder = os.path.join(root, b"dom\xfe", ident)
        os.makedirs(folder)
        for k in range(2):
            mfr._core.write_images(
                torch.full((1, 3, 8, 8), 40 * k, dtype=torch.uint8),
                [os.path.join(folder, b"%d.png" % k).decode("utf-8", "surrogateescape")],
            )
    index = mfr.FaceIndex.from_folder(tmp_path)
    assert index.n_identities == 3  # a lossy conversion merged id\xff and id\xfe into one person
    assert sorted(os.fsencode(n) for n in index.identity_names) == [b"id\xfe", b"id\xff", b"plain"]
    assert [os.fsencode(n) for n in index.domain_names] == [b"dom\xfe"]
    assert pickle.loads(pickle.dumps(index)) == index
    data = mfr.FaceData.from_folder(tmp_path)
    images = data.load(np.arange(len(index)), 8, 3)
    assert images.shape == (6, 3, 8, 8)
    assert len(data.subset(["dom\udcfe"]).index) == 6  # the domain by its (surrogate-escaped) name
    assert "dom\\xfe" in repr(index)  # shown with escapes
    with pytest.raises(mfr.InvalidInputError, match=r"domain 'nope' is not in the data; its domains are 'dom\\xfe'$"):
        index.gallery_probe("nope")


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_dangling_symlinks_are_reported(tmp_path):
    folder = tmp_path / "d" / "person"
    folder.mkdir(parents=True)
    mfr._core.write_images(torch.zeros((2, 3, 8, 8), dtype=torch.uint8), [str(folder / "a.png"), str(folder / "b.png")])
    (folder / "c.png").symlink_to(tmp_path / "missing.png")
    with pytest.warns(UserWarning, match=r"skipped 1 symbolic link\(s\) to nothing: .*person/c\.png"):
        index = mfr.FaceIndex.from_folder(tmp_path)
    assert len(index) == 2


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "BMP"])
def test_truncated_images_raise_or_are_skipped_and_reported(fmt):
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (32, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    whole = buf.getvalue()
    cut = whole[: len(whole) * 9 // 10]
    with pytest.raises(mfr.DataError, match="image 1: cannot decode"):
        mfr.data.decode_images([whole, cut], size=(32, 24))
    with pytest.warns(mfr.data.DecodeWarning, match="left out 1 image"):
        images, failed = mfr.data.decode_images([whole, cut, whole], size=(32, 24), on_error="skip", return_failed=True)
    assert images.shape[0] == 2 and [i for i, _ in failed] == [1]


# ---- clear messages instead of libtorch's text -----------------------------------------------------


def test_meta_and_sparse_tensors_are_named():
    meta = torch.randn(4, device="meta")
    with pytest.raises(mfr.DeviceError, match="verification_report: argument 'scores' is on the meta device"):
        mfr.metrics.verification_report(meta, [1, 1, 0, 0])
    with pytest.raises(mfr.DeviceError, match="cosine_scores: argument 'a' is on the meta device"):
        mfr.cosine_scores(torch.randn(4, 3, device="meta"), torch.randn(4, 3, device="meta"))
    with pytest.raises(
        mfr.InvalidInputError,
        match=r"argument 'scores' must be a dense tensor, got layout torch.sparse_coo; call .to_dense\(\)",
    ):
        mfr.metrics.roc_auc(torch.tensor([0.9, 0.8, 0.3, 0.2]).to_sparse(), [1, 1, 0, 0])


def test_mixed_dtype_buffers_and_inference_built_backbones_are_named():
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    for b in net.buffers():
        b.data = b.data.double()
    with pytest.raises(
        mfr.InvalidInputError,
        match=r"buffer block0\.bn\.running_mean must have the parameters' dtype float32, got float64",
    ):
        net(torch.randn(4, 1, 16, 16))
    with torch.inference_mode():
        built = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
        assert built.eval()(torch.randn(2, 1, 16, 16)).shape == (2, 16)  # inference use stays fine
    with pytest.raises(mfr.InvalidInputError, match="parameters are inference tensors"):
        built.train()(torch.randn(4, 1, 16, 16))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_scoring_function_refuses_non_finite_inputs(bad):
    emb = torch.randn(6, 4)
    emb[2, 1] = bad
    scores = torch.tensor([0.9, 0.8, bad, 0.2])
    labels = [1, 1, 0, 0]
    calls = [
        lambda: mfr.cosine_scores(emb, torch.randn(6, 4)),
        lambda: mfr.pair_scores(emb, [[0, 2], [1, 3]]),
        lambda: mfr.metrics.identification(emb, list(range(6)), torch.randn(6, 4), list(range(6))),
        lambda: mfr.metrics.roc_curve(scores, labels),
        lambda: mfr.metrics.roc_auc(scores, labels),
        lambda: mfr.metrics.eer(scores, labels),
        lambda: mfr.metrics.tar_at_far(scores, labels, [0.1]),
        lambda: mfr.metrics.verification_report(scores, labels),
        lambda: mfr.metrics.kfold_accuracy(scores, labels, 2),
    ]
    for call in calls:
        with pytest.raises(mfr.InvalidInputError, match="must be finite"):
            call()
