"""Bad-input suite, run by tests/test_bad_input_suite.py in its own interpreter (a crash or an
abort then fails that test instead of ending the test run).

For every public function, hypothesis draws arguments of the declared Python types with any value:
tensors of random shapes (including empty), dtypes (floating, integer, bool, complex), devices
(cpu, meta), layouts (sparse, non-contiguous) and contents (NaN, inf), given as tensors, numpy
arrays or lists; integers at the extremes (negative, 2**31, 2**63, 2**64, 10**30) and floats where
an integer is expected; odd strings. The only outcomes allowed are a result or an `mfr.MfrError`.
Each function prints its name before it runs, so a crash shows where it happened.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfr

EXAMPLES = int(os.environ.get("MFR_BAD_INPUT_EXAMPLES", "40"))
failures: list[str] = []

INTS = st.one_of(
    st.integers(-3, 12),
    st.sampled_from([-1, -(2**31), 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -(10**30)]),
)
INT_LIKE = st.one_of(INTS, st.floats(allow_nan=True, allow_infinity=True), st.just(np.int64(3)), st.just(True))


def mostly(valid: st.SearchStrategy, bad: st.SearchStrategy = INT_LIKE) -> st.SearchStrategy:
    """A valid value three times in four, so the calls get past their first check."""
    return st.one_of(valid, valid, valid, bad)


def knobs(draw: st.DrawFn, valid: dict[str, st.SearchStrategy], bad: st.SearchStrategy = INT_LIKE) -> dict[str, object]:
    """Valid values for every argument but at most one (chosen at random), which gets a bad one:
    deep paths are reached and every argument's check is exercised."""
    pick = draw(st.sampled_from([*valid, None, None]))
    return {k: draw(bad if k == pick else v) for k, v in valid.items()}


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5]))
DTYPES = [
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.int8,
    torch.bool,
    torch.complex64,
]
FORMS = ["tensor", "nan", "inf", "meta", "sparse", "noncontiguous", "numpy", "list", "requires_grad"]


@st.composite
def tensors(draw: st.DrawFn, max_dims: int = 3, max_side: int = 6) -> object:
    shape = tuple(draw(st.integers(0, max_side)) for _ in range(draw(st.integers(0, max_dims))))
    dtype = draw(st.sampled_from(DTYPES))
    base = torch.randn(shape, dtype=torch.complex64) if dtype.is_complex else (torch.randn(shape) * 3).to(dtype)
    form = draw(st.sampled_from(FORMS))
    try:
        if form in ("nan", "inf") and dtype.is_floating_point and base.numel():
            base.view(-1)[draw(st.integers(0, base.numel() - 1))] = float(form)
        elif form == "meta":
            return base.to("meta")
        elif form == "sparse" and base.dim():
            return base.to_sparse()
        elif form == "noncontiguous" and base.dim() >= 2:
            return base.transpose(0, 1)
        elif form == "numpy" and dtype != torch.bfloat16:
            return base.numpy()
        elif form == "list":
            return base.tolist()
        elif form == "requires_grad" and dtype.is_floating_point:
            return base.requires_grad_()
    except (RuntimeError, TypeError):
        pass
    return base


def embeddings(draw: st.DrawFn, n: int, d: int) -> object:
    """Mostly well-formed (n, d) float32 embeddings, sometimes with a NaN or inf, sometimes anything."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(tensors())
    e = torch.randn(n, d)
    if n and d and kind == 1:
        e[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([float("nan"), float("inf")]))
    return e


def scores_and_labels(draw: st.DrawFn) -> tuple[object, object]:
    """Mostly valid scores with both classes, sometimes one bad value, sometimes anything."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(tensors(max_dims=2)), draw(tensors(max_dims=2))
    n = draw(st.integers(2, 12))
    s = np.asarray(draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)), dtype=np.float64)
    labels = np.arange(n) % 2
    if kind == 1:
        s[draw(st.integers(0, n - 1))] = draw(FLOATS)
    elif kind == 2:
        labels[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, 2, 255]))
    elif kind == 3:
        labels[:] = draw(st.integers(0, 1))
    return s, labels


def check(name: str, fn: object, *args: object, **kwargs: object) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)  # type: ignore[operator]
    except mfr.MfrError:
        pass
    except Exception as e:
        failures.append(f"{name}: {type(e).__name__}: {e}"[:400])


def run(name: str, strategy_fn: object) -> None:
    print(name, flush=True)
    cfg = settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    cfg(given(st.data())(lambda data: strategy_fn(data.draw)))()  # type: ignore[operator]


def index_of(draw: st.DrawFn) -> mfr.FaceIndex:
    n_dom, n_id, k = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    paths, doms, ids = [], [], []
    for d in range(n_dom):
        label = draw(st.sampled_from([f"d{d}", d, f"\udcff{d}"]))  # a name, a number, a non-UTF-8 name
        for i in range(n_id):
            for j in range(k):
                paths.append(f"d{d}/i{i}/{j}.png")
                doms.append(label)
                ids.append(f"i{i}")
    try:
        return mfr.FaceIndex.from_arrays(paths, doms, ids)
    except mfr.MfrError:
        return mfr.FaceIndex.from_arrays(
            ["a/0.png", "a/1.png", "b/0.png", "b/1.png"], ["a", "a", "b", "b"], ["x", "x", "y", "y"]
        )


def main() -> int:
    def metrics_pairwise(draw: st.DrawFn) -> None:
        s, labels = scores_and_labels(draw)
        fars = draw(st.lists(FLOATS, max_size=3))
        check("roc_curve", mfr.metrics.roc_curve, s, labels, draw(st.booleans()))
        check("roc_auc", mfr.metrics.roc_auc, s, labels)
        check("eer", mfr.metrics.eer, s, labels)
        check("tar_at_far", mfr.metrics.tar_at_far, s, labels, fars)
        check(
            "verification_report",
            mfr.metrics.verification_report,
            s,
            labels,
            fars or 1e-2,
            n_bootstrap=draw(mostly(st.integers(0, 8))),
            seed=draw(mostly(st.integers(0, 9))),
            confidence=draw(mostly(st.just(0.95), FLOATS)),
        )
        check(
            "kfold_accuracy",
            mfr.metrics.kfold_accuracy,
            s,
            labels,
            draw(mostly(st.integers(2, 4))),
            draw(st.sampled_from(["exact", "insightface", "facexzoo", "x"])),
        )
        check(
            "bootstrap_group_counts", mfr.metrics.bootstrap_group_counts, draw(INT_LIKE), draw(INT_LIKE), draw(INT_LIKE)
        )

    def embeddings_fns(draw: st.DrawFn) -> None:
        n, d = draw(st.integers(0, 6)), draw(st.integers(0, 5))
        a, b = embeddings(draw, n, d), embeddings(draw, n, d)
        check("cosine_scores", mfr.cosine_scores, a, b)
        check("pair_scores", mfr.pair_scores, a, draw(tensors(max_dims=2)))
        check("identification", mfr.metrics.identification, a, draw(tensors(max_dims=1)), b, draw(tensors(max_dims=1)))
        check("hard_pair_attention", mfr.losses.hard_pair_attention, a, b, draw(FLOATS), draw(FLOATS))
        check("soft_classification", mfr.losses.soft_classification, a, b, draw(FLOATS))
        check("domain_alignment", mfr.losses.domain_alignment, [a, b][: draw(st.integers(0, 2))])

    def index_fns(draw: st.DrawFn) -> None:
        ix = index_of(draw)
        dom = draw(st.one_of(INT_LIKE, st.sampled_from(["d0", "d1", "", "\udcff0", "nope"])))
        check("FaceIndex.filter", ix.filter, draw(mostly(st.integers(0, 3))))
        check(
            "FaceIndex.split_identities",
            ix.split_identities,
            draw(mostly(st.floats(0.2, 0.8), FLOATS)),
            draw(mostly(st.integers(0, 9))),
        )
        check(
            "FaceIndex.verification_pairs",
            ix.verification_pairs,
            dom,
            draw(mostly(st.integers(0, 20))),
            draw(mostly(st.integers(0, 9))),
        )
        check(
            "FaceIndex.gallery_probe",
            ix.gallery_probe,
            dom,
            draw(mostly(st.integers(0, 9))),
            draw(mostly(st.integers(0, 3))),
            draw(st.booleans()),
        )
        kw = knobs(
            draw,
            {
                "ids_per_domain": st.integers(1, 2),
                "images_per_id": st.integers(2, 3),
                "meta_test_domains": st.just(1),
                "seed": st.integers(0, 9),
                "rank": st.just(0),
                "world_size": st.integers(1, 3),
            },
        )

        def sample() -> None:
            sampler = mfr.DomainSampler(ix, split=draw(st.sampled_from(["leave_one_out", "random"])), **kw)
            sampler.set_epoch(draw(st.one_of(st.integers(0, 3), INTS)))
            for _, batch in zip(range(2), sampler):
                batch.flat_indices()

        check("DomainSampler", sample)

    png = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(png, "PNG")
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(jpeg, "JPEG")

    def decode_fns(draw: st.DrawFn) -> None:
        pool = [
            png.getvalue(),
            jpeg.getvalue(),
            jpeg.getvalue()[:-30],
            png.getvalue()[:40],
            b"",
            b"\xff\xd8\xff",
            os.urandom(30),
            "/no/such/file.png",
            "\udcff.png",
        ]
        sources = draw(st.lists(st.sampled_from(pool), max_size=4))
        size = (draw(st.one_of(st.integers(1, 12), INT_LIKE)), draw(st.one_of(st.integers(1, 12), INT_LIKE)))
        check(
            "decode_images",
            mfr.data.decode_images,
            sources,
            size=size,
            channels=draw(INT_LIKE),
            flip=draw(st.one_of(st.none(), st.booleans())),
            on_error=draw(st.sampled_from(["raise", "skip"])),
        )
        with tempfile.TemporaryDirectory() as tmp:
            rec = os.path.join(tmp, "x.rec")
            with open(rec, "wb") as f:
                f.write(draw(st.binary(max_size=64)))
            check("index_from_record", mfr.data.index_from_record, rec)

            def record() -> None:
                rf = mfr.data.RecordFile(rec)
                check("RecordFile.read", rf.read, draw(INT_LIKE))
                check("RecordFile.decode", rf.decode, [draw(INT_LIKE)], draw(INT_LIKE), draw(INT_LIKE))

            check("RecordFile", record)

    def network_fns(draw: st.DrawFn) -> None:
        name = draw(st.sampled_from(["small_cnn", "small_cnn", "small_cnn", "iresnet18", "resnet28", "nope"]))
        kw = knobs(
            draw,
            {
                "in_channels": st.sampled_from([1, 3]),
                "input_size": st.just(16),
                "width": st.integers(2, 4),
                "embedding_dim": st.integers(1, 8),
            },
        )

        def build_and_use() -> None:
            net = mfr.nn.Backbone(name, **kw)
            good = torch.randn(4, net.in_channels, net.input_size, net.input_size)
            images = draw(st.one_of(tensors(max_dims=4), st.just(good), st.just(good)))
            net.train(draw(st.booleans()))
            check("Backbone.forward", net, images)
            domains = [
                draw(mostly(st.just(good), tensors(max_dims=4)))
                for _ in range(draw(mostly(st.just(3), st.integers(0, 4))))
            ]
            splits = draw(
                mostly(
                    st.just([([0, 1], [2])]),
                    st.lists(st.tuples(st.lists(INTS, max_size=2), st.lists(INTS, max_size=2)), max_size=2),
                )
            )
            check("MetaStep.step", mfr.MetaStep(net).step, domains, splits)

        check("Backbone", build_and_use)

    def threads(draw: st.DrawFn) -> None:
        before = mfr.get_num_threads()
        check("set_num_threads", mfr.set_num_threads, draw(mostly(st.integers(0, 4))))
        mfr.set_num_threads(before)

    for name, fn in [
        ("metrics", metrics_pairwise),
        ("embeddings and losses", embeddings_fns),
        ("index and sampler", index_fns),
        ("decoding and RecordIO", decode_fns),
        ("networks and the meta-step", network_fns),
        ("threads", threads),
    ]:
        run(name, fn)
    for f in sorted(set(failures)):
        print("NOT AN MFR ERROR:", f)
    print(f"bad-input suite: {len(set(failures))} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
