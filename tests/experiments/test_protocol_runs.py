"""Protocols (lodo, multi), results files, the evaluation, and the CLI (reproduce, train, eval)."""

import csv
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_args import TINY

import mfr
from mfr import FaceData, TrainConfig
from mfr.experiments.cli import main
from mfr.experiments.evaluate import METRICS, evaluate_domain
from mfr.experiments.reproduce import run_protocol
from mfr.experiments.reproduce.records import read_folder

SMALL = [
    *TINY,
    "--no-progress",
]


@pytest.fixture(scope="module")
def data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=3, size=16, channels=1, seed=1)


def small_config(**kw):
    return TrainConfig(
        input_size=16, channels=1, width=4, embedding_dim=16, ids_per_domain=4, steps=3, warmup_steps=1, **kw
    )


def check_sane(result, methods, targets):
    assert result.targets == targets
    s = result.summary()
    assert set(s) == {"untrained", *methods}
    for method in s:
        assert set(s[method]) == set(targets)
        for t in targets:
            for key in METRICS:
                c = s[method][t][key]
                if key == "tar@far=1e-3" and np.isnan(c["mean"]):
                    continue  # small domains: fewer than 1000 impostor pairs
                # Percentile intervals of TAR at a low FAR on a domain of 8 identities need not hold
                # the estimate (a discrete, biased statistic under resampling); they lie in [0, 1].
                # Without resamples (n_bootstrap=0) a t-interval over seeds may leave [0, 1].
                lo, hi = (0.0, 1.0) if result.evaluation["n_bootstrap"] else (-np.inf, np.inf)
                assert lo <= c["low"] <= c["high"] <= hi + 1e-9 and 0.0 <= c["mean"] <= 1.0, (method, t, key, c)


def test_lodo_protocol_writes_complete_results(data, tmp_path):
    methods = ["mfr", "softmax", "mldg"]
    result = run_protocol(
        data, "lodo", methods=methods, config=small_config(), out_dir=tmp_path, n_bootstrap=20, progress=False, log=None
    )
    check_sane(result, methods, data.domain_names)
    assert len(result.runs) == 3 * (len(methods) + 1)
    saved = read_folder(tmp_path)  # the header and the runs file
    assert saved["protocol"] == "lodo" and len(saved["runs"]) == len(result.runs)
    assert all(r["sources"] == [d for d in data.domain_names if d != r["target"]] for r in saved["runs"])
    md = (tmp_path / "results.md").read_text()
    for title in ("TAR @ FAR=1e-2", "AUC", "Rank-1"):
        assert title in md
    # Metric tables, difference tables (not for TAR@FAR=1e-3: undefined below 1,000 impostor pairs), timing.
    assert md.count("| mldg |") == 1 + len(METRICS) + 3 + 1  # overview too
    assert "no difference table for tar@far=1e-3" in md
    assert "difference vs " in md and "Status: complete" in md and "Overview: mean over targets" in md
    assert saved["complete"] is True and saved["expected_runs"] == 9
    assert saved["provenance"]["mfr"] == mfr.__version__ and saved["command"]
    assert saved["fingerprint"]["images"] == len(data) and len(saved["fingerprint"]["sha256"]) == 64
    assert saved["evaluation"]["seed"] == 0 and saved["evaluation"]["n_bootstrap"] == 20
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.runs) * len(METRICS) and {r["method"] for r in rows} == {"untrained", *methods}
    tex = (tmp_path / "tables.tex").read_text()
    assert tex.count("\\begin{tabular}") == len(METRICS) and "\\textbf{" in tex and "mldg &" in tex
    assert (tmp_path / f"roc_{data.domain_names[0]}.svg").read_text().lstrip().startswith("<?xml")
    # One evaluation seed: every method of a target is scored on the same pairs.
    for t in data.domain_names:
        rows = [r for r in saved["runs"] if r["target"] == t]
        assert len({(r["n_genuine"], r["n_impostor"]) for r in rows}) == 1
    assert (tmp_path / f"roc_{data.domain_names[0]}.png").stat().st_size > 1000
    assert (tmp_path / "runs" / f"mfr-{data.domain_names[0]}-seed0" / "checkpoint.safetensors").exists()


def test_multi_protocol_and_seeds(data):
    names = data.domain_names
    result = run_protocol(
        data,
        "multi",
        sources=names[:2],
        targets=names[2:],
        methods=["arcface"],
        seeds=2,
        config=small_config(),
        n_bootstrap=0,
        progress=False,
        log=None,
    )
    check_sane(result, ["arcface"], names[2:])
    assert sorted({r["seed"] for r in result.runs}) == [0, 1]
    cell = result.summary()["arcface"][names[2]]["auc"]
    assert cell["n_seeds"] == 2 and cell["sd"] >= 0.0
    assert "±" in result.table("auc")


def test_protocol_bad_input(data):
    one = data.subset([0])
    with pytest.raises(mfr.InvalidInputError, match="needs at least 2"):
        run_protocol(one, "lodo", config=small_config(), log=None)
    with pytest.raises(mfr.InvalidInputError, match="domain 'mars' is not in the data"):
        run_protocol(data, "lodo", targets=["mars"], config=small_config(), log=None)
    with pytest.raises(mfr.InvalidInputError, match="unknown method\\(s\\) 'sphereface'"):
        run_protocol(data, "lodo", methods=["mfr", "sphereface"], config=small_config(), log=None)
    with pytest.raises(mfr.InvalidInputError, match="unknown protocol"):
        run_protocol(data, "gfr", config=small_config(), log=None)
    with pytest.raises(mfr.InvalidInputError, match="needs target domains"):
        run_protocol(data, "multi", config=small_config(), log=None)
    with pytest.raises(mfr.InvalidInputError, match="cannot simulate a domain shift"):
        run_protocol(
            data,
            "multi",
            sources=[data.domain_names[0]],
            targets=data.domain_names[1:],
            config=small_config(),
            log=None,
        )


def test_evaluation_matches_direct_computation(data):
    torch.manual_seed(0)
    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1).eval()
    res = evaluate_domain(net, data, 1, n_bootstrap=50, seed=3)
    dom = np.flatnonzero(data.index.domains == 1)
    x = mfr.data.normalize_images(data.images[torch.from_numpy(dom)])
    emb = torch.nn.functional.normalize(net(x), dim=1)
    ids = data.index.identities[dom]
    sims = (emb @ emb.T).detach().numpy()
    iu = np.triu_indices(len(dom), 1)
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score((ids[iu[0]] == ids[iu[1]]).astype(int), sims[iu])  # every pair: 276 < max_impostors
    assert res["metrics"]["auc"]["estimate"] == pytest.approx(auc, abs=1e-6)
    assert res["n_genuine"] == 8 * 3 and res["n_images"] == 24 and res["n_identities"] == 8
    assert np.isnan(res["metrics"]["tar@far=1e-3"]["estimate"])  # 252 impostor pairs < 1000
    r1 = res["metrics"]["rank1_single"]  # the paper's protocol: one probe per identity
    assert r1["low"] <= r1["high"] and r1["estimate"] in {k / 8 for k in range(9)}
    # Every probe image over 10 gallery draws: 8 identities x 2 probes, hits averaged over draws.
    assert res["n_probes"] == 16 and res["metrics"]["rank1"]["estimate"] * 160 == pytest.approx(
        round(res["metrics"]["rank1"]["estimate"] * 160)
    )
    assert len(res["resamples"]["rank1"]) == 50 and len(res["resamples"]["auc"]) == 50


def test_cli_reproduce_end_to_end(tmp_path, capsys):
    rc = main(
        [
            "reproduce",
            *SMALL,
            "--methods",
            "mfr,arcface",
            "--steps",
            "2",
            "--bootstrap",
            "10",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "TAR @ FAR=1e-2" in out and "| arcface |" in out and "done in" in out
    assert json.loads((tmp_path / "out" / "results.json").read_text())["command"].startswith("mfr ")


def test_cli_train_resume_and_eval(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "train",
        *SMALL,
        "--sources",
        "0,1",
        "--method",
        "mfr",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--out",
        str(out),
    ]
    assert main([*common, "--steps", "2"]) == 0
    assert main([*common, "--steps", "4", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "trained mfr for 4 steps" in text and "TAR@FAR=1e-2" in text
    # eval on a folder of domains and on an insightface-style .bin set
    data = mfr.synthetic.synthetic_domains(
        n_domains=2, ids_per_domain=5, images_per_id=3, size=16, channels=3, seed=4, root=tmp_path / "faces"
    )
    assert (
        main(["eval", str(out / "checkpoint.safetensors"), "--data", str(tmp_path / "faces"), "--bootstrap", "10"]) == 0
    )
    text = capsys.readouterr().out
    assert data.index.domain_names[1] in text and "auc" in text
    paths = data.index.paths
    bins = [(tmp_path / "faces" / paths[i]).read_bytes() for i in (0, 1, 0, 3, 3, 4, 6, 9)]
    with open(tmp_path / "set.bin", "wb") as f:
        pickle.dump((bins, [True, False, True, False]), f)
    assert main(["eval", str(out / "checkpoint.safetensors"), "--bin", str(tmp_path / "set.bin")]) == 0
    assert "4 pairs; 4-fold accuracy" in capsys.readouterr().out


def test_cli_user_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["reproduce", *SMALL, "--methods", "mfr,bogus", "--out", str(tmp_path)]) == 2
    assert "mfr: error: unknown method(s) 'bogus'" in capsys.readouterr().err
    assert main(["reproduce", *SMALL, "--targets", "mars", "--out", str(tmp_path)]) == 2
    assert "domain 'mars' is not in the data" in capsys.readouterr().err
    (tmp_path / "one" / "dom" / "id1").mkdir(parents=True)
    mfr._core.write_images(
        torch.zeros(2, 3, 16, 16, dtype=torch.uint8), [tmp_path / "one" / "dom" / "id1" / f"{i}.png" for i in range(2)]
    )
    assert main(["reproduce", *SMALL, "--data", str(tmp_path / "one"), "--out", str(tmp_path)]) == 2
    assert "needs at least 2" in capsys.readouterr().err
    (tmp_path / "broken.safetensors").write_bytes(b"not a checkpoint at all")
    assert main(["eval", str(tmp_path / "broken.safetensors"), "--data", str(tmp_path / "one")]) == 2
    assert "not a valid mfr checkpoint" in capsys.readouterr().err
    if not torch.cuda.is_available():
        proc = subprocess.run(
            [sys.executable, "-m", "mfr", "reproduce", *SMALL, "--device", "cuda", "--out", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and "CUDA is not available" in proc.stderr and "Traceback" not in proc.stderr
