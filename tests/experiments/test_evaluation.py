"""Evaluation draws keyed by names: one checkpoint, one number, whatever entry point, subset or order
evaluated it; the evaluation details (two-way identity bootstrap, identity folds, rank-1 over every
probe) against brute-force computations; paired comparisons of methods."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from cli_args import TINY_NET_GRAY

import mfr
from mfr import FaceData, TrainConfig
from mfr.data import FaceIndex
from mfr.experiments.cli import main
from mfr.experiments.evaluate import METRICS, RESAMPLED_METRICS, evaluate_domain, t_quantile
from mfr.experiments.reproduce import ProtocolResult, run_protocol
from mfr.experiments.reproduce.records import read_folder
from mfr.experiments.weights import load_backbone
from mfr.metrics import bootstrap_group_counts, roc_auc, verification_report
from mfr.synthetic import synthetic_domains


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    synthetic_domains(n_domains=3, ids_per_domain=8, images_per_id=4, size=16, channels=1, seed=4).to_folder(root)
    return root


def _subset_folder(root, dst, domains):
    """Another folder holding only ``domains`` (links), as a user's second copy would."""
    dst.mkdir()
    for d in domains:
        os.symlink(root / d, dst / d)
    return dst


@pytest.mark.slow
def test_one_checkpoint_four_entry_points(folder, tmp_path):
    names = sorted(p.name for p in folder.iterdir())
    target, sources = names[1], [names[0], names[2]]
    # 1. mfr reproduce: trains on the sources, evaluates the target (results.json).
    assert (
        main(
            [
                "reproduce",
                "--data",
                str(folder),
                "--targets",
                target,
                "--methods",
                "mfr",
                "--steps",
                "3",
                "--bootstrap",
                "30",
                "--out",
                str(tmp_path / "rep"),
                *TINY_NET_GRAY,
            ]
        )
        == 0
    )
    rep = read_folder(tmp_path / "rep")
    from_reproduce = next(r for r in rep["runs"] if r["method"] == "mfr")
    ckpt = tmp_path / "rep" / "runs" / f"mfr-{target}-seed0" / "checkpoint.safetensors"
    # 2. mfr train with the same configuration: the same checkpoint, and eval.csv of the held-out target.
    assert (
        main(
            [
                "train",
                "--data",
                str(folder),
                "--sources",
                ",".join(sources),
                "--method",
                "mfr",
                "--steps",
                "3",
                "--eval-every",
                "3",
                "--out",
                str(tmp_path / "tr"),
                *TINY_NET_GRAY,
            ]
        )
        == 0
    )
    net_rep, _ = load_backbone(ckpt)
    net_tr, _ = load_backbone(tmp_path / "tr" / "checkpoint.safetensors")
    for (k, a), (_, b) in zip(net_rep.state_dict().items(), net_tr.state_dict().items()):
        assert torch.equal(a, b), k
    with open(tmp_path / "tr" / "eval.csv", newline="") as f:
        from_train = next(r for r in csv.DictReader(f) if r["domain"] == target)
    # 3. mfr eval on another folder holding the target only (other domain numbers).
    only = _subset_folder(folder, tmp_path / "only", [target])
    assert main(["eval", str(ckpt), "--data", str(only), "--bootstrap", "30", "--json", str(tmp_path / "ev.json")]) == 0
    from_eval = json.loads((tmp_path / "ev.json").read_text())["domains"][0]
    # 4. The Python API on the whole folder's data, reordered (paths listed backwards, identities renamed in order).
    idx = FaceIndex.from_folder(folder)
    order = np.arange(len(idx))[::-1]
    shuffled = FaceIndex.from_arrays(
        [idx.paths[i] for i in order],
        [idx.domain_names[idx.domains[i]] for i in order],
        [idx.identity_names[idx.identities[i]] for i in order],
    )
    assert shuffled != idx and shuffled.domain_names == idx.domain_names
    from_api = evaluate_domain(net_rep, FaceData(shuffled), target, n_bootstrap=30)

    for key in METRICS:
        values = [
            from_reproduce["metrics"][key]["estimate"],
            from_eval["metrics"][key]["estimate"],
            from_api["metrics"][key]["estimate"],
            float(from_train[key]),
        ]
        assert np.allclose(values, values[0], equal_nan=True, rtol=0, atol=1e-12), (key, values)
        intervals = [
            (r["metrics"][key]["low"], r["metrics"][key]["high"]) for r in (from_reproduce, from_eval, from_api)
        ]
        assert np.allclose(intervals, intervals[0], equal_nan=True, rtol=0, atol=1e-12), (key, intervals)
    for key in RESAMPLED_METRICS:
        assert np.allclose(from_reproduce["resamples"][key], from_api["resamples"][key], equal_nan=True, atol=1e-6)


def test_draws_follow_names_not_positions():
    s = synthetic_domains(n_domains=2, ids_per_domain=6, images_per_id=3, size=16, channels=1, seed=2)
    data = FaceData(s.index, images=s.images)
    d1 = data.domain_names[1]
    sub = data.subset([d1])
    for seed in (0, 5):
        a, la = data.index.verification_pairs(d1, n_impostors=40, seed=seed)
        b, lb = sub.index.verification_pairs(0, n_impostors=40, seed=seed)
        pa = [(data.index.paths[i], data.index.paths[j]) for i, j in a]
        pb = [(sub.index.paths[i], sub.index.paths[j]) for i, j in b]
        assert pa == pb and (la == lb).all()
        for draw in range(3):
            ga, qa = data.index.gallery_probe(d1, seed=seed, draw=draw, all_probes=True)
            gb, qb = sub.index.gallery_probe(0, seed=seed, draw=draw, all_probes=True)
            assert [data.index.paths[i] for i in ga] == [sub.index.paths[i] for i in gb]
            assert [data.index.paths[i] for i in qa] == [sub.index.paths[i] for i in qb]
    assert mfr._core.name_seed(0, ["a", "b"]) != mfr._core.name_seed(0, ["ab"])


def _brute_two_way(scores, labels, groups, weights):
    """AUC of the pairs repeated w_a * w_b times (w_a for a pair within one identity)."""
    w = np.where(groups[:, 0] == groups[:, 1], weights[groups[:, 0]], weights[groups[:, 0]] * weights[groups[:, 1]])
    return roc_auc(np.repeat(scores, w), np.repeat(labels, w))


def test_two_way_bootstrap_resamples_both_identities():
    rng = np.random.default_rng(0)
    n_ids, per = 12, 3
    ident = np.repeat(np.arange(n_ids), per)
    emb = rng.normal(size=(n_ids, 8))[ident] + 0.8 * rng.normal(size=(len(ident), 8))
    iu = np.triu_indices(len(ident), 1)
    groups = np.stack([ident[iu[0]], ident[iu[1]]], 1)
    labels = groups[:, 0] == groups[:, 1]
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    scores = (e[iu[0]] * e[iu[1]]).sum(1)
    rep = verification_report(scores, labels, fars=(0.1,), n_bootstrap=25, groups=groups, n_groups=n_ids, seed=7)
    counts = bootstrap_group_counts(n_ids, 25, 7)
    assert counts.shape == (25, n_ids) and (counts.sum(1) == n_ids).all()
    for b in range(25):
        assert rep.resamples["auc"][b] == pytest.approx(_brute_two_way(scores, labels, groups, counts[b]), abs=1e-12)
    # One-way (first identity only) is a different, narrower resampling of the impostors.
    one = verification_report(scores, labels, fars=(0.1,), n_bootstrap=25, groups=groups[:, 0], n_groups=n_ids, seed=7)
    assert not np.allclose(one.resamples["auc"], rep.resamples["auc"])
    with pytest.raises(mfr.InvalidInputError, match="groups must lie in"):
        verification_report(scores, labels, n_bootstrap=5, groups=groups, n_groups=3)
    with pytest.raises(mfr.InvalidInputError, match="shape"):
        verification_report(scores, labels, n_bootstrap=5, groups=np.zeros((len(scores), 3), int))


def test_identity_folds_and_sample_std():
    torch.manual_seed(0)
    data = FaceData.synthetic(n_domains=2, ids_per_domain=24, images_per_id=4, size=16, channels=1, seed=3)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1).eval()
    res = evaluate_domain(net, data, 0, n_bootstrap=0)
    folds = res["accuracy_folds"]
    assert len(folds) == 10
    half = t_quantile(0.975, 9) * np.std(folds, ddof=1) / np.sqrt(10)
    acc = res["metrics"]["accuracy"]
    assert acc["estimate"] == pytest.approx(np.mean(folds))
    assert acc["high"] == pytest.approx(min(1.0, np.mean(folds) + half)) and acc["low"] == pytest.approx(
        max(0.0, np.mean(folds) - half)
    )
    assert res["resamples"] == {}
    assert t_quantile(0.975, 9) == pytest.approx(2.2621571627409915, abs=1e-8)
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736174698, abs=1e-6)
    assert t_quantile(0.995, 30) == pytest.approx(2.749995653567, abs=1e-8)


def test_identity_folds_never_share_an_identity():
    from mfr.experiments.evaluate import _identity_folds

    rng = np.random.default_rng(1)
    ranks = rng.integers(0, 30, size=(3000, 2))
    labels = ranks[:, 0] == ranks[:, 1]
    chosen, folds, k = _identity_folds(ranks, labels, 30, seed=0, domain="d")
    assert k == 10 and set(folds) == set(range(10))
    owner: dict[int, int] = {}
    for (a, b), f in zip(ranks[chosen], folds):
        for i in (a, b):
            assert owner.setdefault(int(i), int(f)) == f  # an identity lives in one fold
    for f in range(k):  # balanced within each fold
        assert labels[chosen][folds == f].sum() * 2 == (folds == f).sum()


def test_rank1_over_every_probe_matches_brute_force():
    torch.manual_seed(1)
    data = FaceData.synthetic(n_domains=2, ids_per_domain=10, images_per_id=4, size=16, channels=1, seed=5)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1).eval()
    res = evaluate_domain(net, data, 1, n_bootstrap=10, n_gallery_draws=3, seed=2)
    dom = np.flatnonzero(data.index.domains == 1)
    with torch.no_grad():
        emb = torch.nn.functional.normalize(
            net(mfr.data.normalize_images(data.images[torch.from_numpy(dom)])), dim=1
        ).numpy()
    pos = {int(i): k for k, i in enumerate(dom)}
    ids = data.index.identities
    hits = total = 0
    for draw in range(3):
        g, p = data.index.gallery_probe(1, seed=2, draw=draw, all_probes=True)
        sims = emb[[pos[i] for i in p]] @ emb[[pos[i] for i in g]].T
        best = np.asarray(g)[sims.argmax(1)]
        hits += int((ids[best] == ids[p]).sum())
        total += len(p)
    assert total == 3 * 10 * 3
    assert res["metrics"]["rank1"]["estimate"] == pytest.approx(hits / total)
    assert res["n_probes"] == 30


def _fake_result(diffs, n_res=400, seeds=3, noise=0.02):
    """Two methods on three targets whose per-resample metrics differ by ``diffs[t]``."""
    rng = np.random.default_rng(0)
    runs = []
    for t, delta in enumerate(diffs):
        base = 0.5 + noise * rng.normal(size=n_res)  # identity resampling noise, shared by methods
        for s in range(seeds):
            for method, shift in (("mfr", delta), ("arcface", 0.0)):
                res = base + shift + 0.001 * rng.normal(size=n_res)
                metric = {"estimate": 0.5 + shift, "low": 0, "high": 1}
                runs.append(
                    {
                        "method": method,
                        "target": f"t{t}",
                        "seed": s,
                        "metrics": {k: metric for k in METRICS},
                        "resamples": {k: res.tolist() for k in RESAMPLED_METRICS},
                        "accuracy_folds": list(0.5 + shift + 0.01 * rng.normal(size=10)),
                        "train_seconds": 1.0,
                        "steps": 10,
                    }
                )
    r = ProtocolResult("lodo", "fake", {}, ["mfr", "arcface"], [f"t{t}" for t in range(len(diffs))], seeds, runs=runs)
    r.evaluation = {"seed": 0}
    return r


def test_compare_is_paired_and_counts_wins():
    r = _fake_result([0.05, 0.0, -0.05])
    c = r.compare("mfr", "arcface", "tar@far=1e-2")
    assert c.per_target["t0"].estimate == pytest.approx(0.05) and c.per_target["t0"].low > 0.04
    assert c.per_target["t1"].low < 0 < c.per_target["t1"].high
    assert c.per_target["t2"].high < -0.04
    assert (c.wins, c.losses) == (1, 1)
    assert c.mean.estimate == pytest.approx(0.0, abs=1e-12) and c.mean.low < 0 < c.mean.high
    # Pairing matters: an unpaired interval from the cells' own widths would be ~30x wider.
    cell = r.summary()["mfr"]["t0"]["tar@far=1e-2"]
    assert (cell["high"] - cell["low"]) > 10 * (c.per_target["t0"].high - c.per_target["t0"].low)
    # EER: lower is better, so a positive difference is a loss.
    e = r.compare("mfr", "arcface", "eer")
    assert (e.wins, e.losses) == (1, 1)
    acc = r.compare("mfr", "arcface", "accuracy")
    assert acc.per_target["t0"].low > 0 and acc.per_target["t2"].high < 0
    assert r.best_pooled() == "arcface"
    table = r.difference_table("tar@far=1e-2")
    assert "difference vs arcface" in table and "| mfr |" in table and "1 / 1" in table
    with pytest.raises(mfr.InvalidInputError, match="not in this result"):
        r.compare("mfr", "cosface")
    with pytest.raises(mfr.InvalidInputError, match="unknown metric"):
        r.compare("mfr", "arcface", "speed")


def test_results_load_and_mark_incomplete(tmp_path):
    data = FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=3, size=16, channels=1, seed=1)
    cfg = TrainConfig(input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=4, steps=2, warmup_steps=1)
    calls = []

    def stop_after_first(msg):
        calls.append(msg)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_protocol(
            data,
            "lodo",
            targets=[data.domain_names[0]],
            methods=["softmax", "mfr"],
            config=cfg,
            out_dir=tmp_path,
            n_bootstrap=10,
            progress=False,
            log=stop_after_first,
        )
    saved = ProtocolResult.load(tmp_path)
    assert saved.complete is False and saved.expected_runs == 2
    assert "INCOMPLETE: 1 of 2 runs finished" in (tmp_path / "results.md").read_text()
    with pytest.raises(mfr.DataError, match="cannot read"):
        ProtocolResult.load(tmp_path / "missing.json")


def test_evaluation_bad_input():
    data = FaceData.synthetic(n_domains=2, ids_per_domain=4, images_per_id=2, size=16, channels=1, seed=0)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1).eval()
    for kw, msg in (
        ({"seed": -1}, "seed must lie"),
        ({"n_gallery_draws": 0}, "n_gallery_draws"),
        ({"n_bootstrap": -2}, "n_bootstrap"),
    ):
        with pytest.raises(mfr.InvalidInputError, match=msg):
            evaluate_domain(net, data, 0, **kw)
    with pytest.raises(mfr.InvalidInputError, match="eval_seed"):
        run_protocol(data, "lodo", eval_seed=-1, log=None)
    with pytest.raises(mfr.InvalidInputError, match=r"argument 'n_groups' must be an integer in \[0, 16777216\]"):
        bootstrap_group_counts(-1, 3)
    with pytest.raises(mfr.InvalidInputError, match="folds must lie"):
        mfr.metrics.kfold_accuracy([0.1, 0.9, 0.2, 0.8], [0, 1, 0, 1], n_folds=2, folds=[0, 1, 2, 0])


@pytest.mark.parametrize(
    ("diffs", "answer"),
    [
        ([0.05, 0.05, 0.05], "**yes**"),
        ([0.05, 0.0, -0.05], "**not shown**"),
        ([-0.05, -0.05, 0.0], "**no**: mfr is worse"),
    ],
)
def test_verdict_answers_with_the_paired_interval(diffs, answer):
    r = _fake_result(diffs)
    text = r.verdict()
    c = r.compare("mfr", "arcface")
    assert answer in text and f"{c.mean.estimate:+.3f} [{c.mean.low:+.3f}, {c.mean.high:+.3f}]" in text
    assert "equal compute" not in text and "interim" in text  # no :time rows; not marked complete
    better = [t for t, d in c.per_target.items() if d.excludes_zero and d.estimate > 0]
    assert f"better on {', '.join(f'{t} ({c.per_target[t].estimate:+.3f})' for t in better) or 'none'};" in text
    r.config = dataclasses.asdict(TrainConfig())
    assert text in r.markdown()
    if answer == "**yes**":  # a higher EER is worse
        assert "**no**: mfr is worse" in r.verdict(metric="eer")
    r.complete = True
    assert "interim" not in r.verdict()
    assert r.verdict("mldg") == ""  # not in the result
    r.runs = [x for x in r.runs if x["method"] == "arcface"]
    assert r.verdict() == ""  # mfr has not run yet


def test_timing_outliers_name_runs_a_shared_machine_slowed():
    r = _fake_result([0.0, 0.0, 0.0])
    assert r.timing_outliers() == [] and "off their method's median" not in r.timing_table()
    assert r.seconds_per_step("arcface") == pytest.approx(0.1) and np.isnan(r.seconds_per_step("mldg"))
    slow = next(x for x in r.runs if x["method"] == "arcface" and x["target"] == "t1" and x["seed"] == 2)
    slow["step_seconds"] = 3.5 * slow["train_seconds"]  # every step 3.5x slower: no single step stands out
    assert [(m, t, s, round(x, 2)) for m, t, s, x in r.timing_outliers()] == [("arcface", "t1", 2, 3.5)]
    assert "arcface on t1 seed 2 (3.5x)" in r.timing_table()


def test_curve_and_hard_pairs_average_the_same_runs():
    r = _fake_result([0.0, 0.0, 0.0])
    mfr_runs = [x for x in r.runs if x["method"] == "mfr"]
    for i, x in enumerate(mfr_runs):
        # every run evaluates steps 5 and 10; only the first also step 15 (an equal-compute row went longer)
        x["eval_curve"] = [{"step": 5, "tar@far=1e-2": 0.1 + i}, {"step": 10, "tar@far=1e-2": 0.2 + i}]
        x["curve"] = [{"step": s, "hard_positives": 10 - s + i, "hard_negatives": 2 * i} for s in range(11)]
    mfr_runs[0]["eval_curve"].append({"step": 15, "tar@far=1e-2": 0.9})
    n = len(mfr_runs)
    mean_i = (n - 1) / 2
    assert r.curve("mfr") == pytest.approx({5: 0.1 + mean_i, 10: 0.2 + mean_i})  # step 15: one run only
    assert r.curve("arcface") == {}  # no run evaluated during training
    mfr_runs[-1]["eval_curve"] = []
    assert r.curve("mfr") == {}  # a run without a curve: no mean over fewer runs
    at = r.hard_pairs("mfr", (0.0, 0.5, 1.0))
    assert at == [(10 + mean_i, 2 * mean_i), (5 + mean_i, 2 * mean_i), (mean_i, 2 * mean_i)]  # exact: integer means
    assert r.hard_pairs("arcface") == []
    assert r.hard_pair_table().startswith("**Hard pairs") and "| arcface |" not in r.hard_pair_table()


@pytest.mark.parametrize("n_methods", [8, 12])
def test_plot_styles_tell_every_row_apart(n_methods):
    r = _fake_result([0.0])
    r.methods = ["mfr", "arcface", *(f"m{k}" for k in range(n_methods - 2))]
    r.runs += [{**x, "method": x["method"] + ":time"} for x in r.runs]  # equal-compute rows of both
    styles = r.line_styles()
    assert list(styles) == r.rows() and len(set(styles.values())) == len(styles)
    assert styles["untrained"] == ("#000000", "--")
    assert styles["mfr:time"] == (styles["mfr"][0], "-.") and styles["arcface:time"][0] == styles["arcface"][0]
    colours = [styles[m][0] for m in r.methods]
    assert len(set(colours)) == n_methods  # a colour per trained method; tab10's first colours when they fit
    assert (colours[:2] == ["#1f77b4", "#ff7f0e"]) == (n_methods <= 10)
