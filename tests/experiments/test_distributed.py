"""Distributed training on torch.distributed (gloo, 2 processes on localhost): equivalence with one
process averaging the same meta-batches, disjoint streams, a 2-rank reproduce, distributed
evaluation, and a rank dying mid-run (the other stops within the timeout; resume completes)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_args import TINY
from lock_holder import start_holder, stop

from mfr import FaceData, TrainConfig, Trainer
from mfr.data import normalize_images
from mfr.experiments.evaluate import evaluate_domain
from mfr.experiments.reproduce.records import read_folder
from mfr.meta import domains_from_batch

WORKER = Path(__file__).with_name("distributed_worker.py")

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(task, out, world=2, timeout=240, extra_env=None):
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            MFR_NUM_THREADS="1",
            # the worker imports the shared test helpers (cli_args) from tests/
            PYTHONPATH=os.pathsep.join(filter(None, [str(WORKER.parents[1]), os.environ.get("PYTHONPATH")])),
        )
        env.update(extra_env or {})
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), task, str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            for q in procs:  # reap them and close their pipes before failing
                q.communicate()
            raise
        results.append((p.returncode, o, e))
    return results


@pytest.mark.slow
def test_two_ranks_equal_one_process_averaging_their_batches(tmp_path):
    results = launch("equivalence", tmp_path)
    assert all(rc == 0 for rc, _, _ in results), results
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    # Same parameters and BatchNorm statistics on both ranks.
    for a, b in zip(r0["params"] + r0["buffers"], r1["params"] + r1["buffers"]):
        assert torch.equal(a, b)
    # Streams: disjoint, and their union is the single-process stream.
    data = FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=3, size=16, channels=1, seed=2)
    cfg = TrainConfig(
        input_size=16,
        channels=1,
        width=4,
        embedding_dim=16,
        ids_per_domain=4,
        warmup_steps=0,
        schedule="constant",
        grad_clip=None,
        steps=1,
        dtype="float64",
        momentum=0.0,
        weight_decay=0.0,
        lr=0.1,
        flip=False,  # each rank flips its own batch: the comparison is of gradient averaging
    )
    single = Trainer(cfg, data, progress=False)
    stream = [single.sampler[j].flat_indices().tolist() for j in range(len(single.sampler))]
    assert r0["stream"] == stream[0::2][: len(r0["stream"])] and r1["stream"] == stream[1::2][: len(r1["stream"])]
    # One process: gradients of batches 0 and 1, averaged, one SGD step.
    params = single.method.parameters()
    start = [p.detach().clone() for p in params]
    grads = []
    for j in (0, 1):
        mb = single.sampler[j]
        images = normalize_images(data.load(mb.flat_indices(), 16, 1)).double()
        ids = torch.as_tensor(mb.identities)
        single.optimizer.zero_grad(set_to_none=True)
        single.method.step(
            domains_from_batch(mb, images), [torch.cat([ids[d], ids[d]]) for d in range(mb.n_domains)], mb.splits
        )
        grads.append([p.grad.clone() for p in params])
    expected = [p - 0.1 * (g0 + g1) / 2 for p, g0, g1 in zip(start, *grads)]
    for got, want in zip(r0["params"], expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_two_rank_reproduce_and_distributed_evaluation(tmp_path):
    # rank 1 reads the output folder 3 s late, as a slower rank does: it must still find it empty
    results = launch("reproduce", tmp_path, extra_env={"MFR_TEST_SLOW_READER": "3"})
    assert all(rc == 0 for rc, _, _ in results), results
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(o["rc"] == 0 and o["world"] == 2 for o in outs)
    saved = read_folder(tmp_path / "results")  # written by rank 0
    assert saved["hardware"]["world_size"] == 2 and {r["method"] for r in saved["runs"]} == {
        "untrained",
        "mfr",
        "arcface",
    }
    assert "TAR @ FAR=1e-2" in results[0][1] and results[1][1] == ""  # only rank 0 prints
    # Distributed evaluation (each rank embeds a shard) equals single-process evaluation.
    data = FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=3, size=16, channels=1, seed=2)
    torch.manual_seed(0)
    import mfr

    net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
    single = evaluate_domain(net, data, 1, n_bootstrap=20)["metrics"]
    for o in outs:
        for key, v in single.items():
            for k in ("estimate", "low", "high"):
                assert o["eval"][key][k] == pytest.approx(v[k], abs=1e-6, nan_ok=True), (key, k)


@pytest.mark.slow
def test_a_dying_rank_stops_the_job_and_the_checkpoint_resumes(tmp_path):
    results = launch("kill", tmp_path, extra_env={"MFR_TEST_TIMEOUT": "20"})
    (rc0, _, err0), (rc1, _, _) = results
    assert rc1 == 17  # the crashed rank
    assert rc0 == 3, err0  # the survivor raised DistributedError instead of hanging
    seconds, message = (tmp_path / "rank0.err").read_text().split("\n", 1)
    assert float(seconds) < 60 and "rank 0 of 2" in message and "another rank stopped" in message
    # The last complete checkpoint (step 2) is intact; both ranks resume from it and finish.
    results = launch("resume", tmp_path)
    assert all(rc == 0 for rc, _, _ in results), results
    a, b = (torch.load(tmp_path / f"rank{r}.resumed.pt") for r in (0, 1))
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))


def test_prefetching_ranks_train_the_same_weights(tmp_path):
    results = launch("prefetch", tmp_path)
    assert all(rc == 0 for rc, _, _ in results), results
    a, b = (torch.load(tmp_path / f"rank{r}.prefetch.pt") for r in (0, 1))
    for run in (a, b):
        assert all(torch.equal(x, y) for x, y in zip(run[0], run[2]))
    assert all(torch.equal(x, y) for x, y in zip(a[2], b[2]))  # ranks stay in step


@pytest.mark.slow
def test_torchrun_launches_mfr_train(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    args = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mfr",
        "train",
        *TINY,
        "--steps",
        "4",
        "--sources",
        "0,1",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MFR_NUM_THREADS="1")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("trained mfr for 4 steps") == 1  # rank 0 only
    import mfr

    _, meta = mfr.experiments.weights.load_backbone(tmp_path / "run" / "checkpoint.safetensors")
    assert meta["world_size"] == 2 and len(meta["samplers"]) == 2 and meta["samplers"][1]["rank"] == 1


def test_gradient_buckets_group_by_size_dtype_and_device():
    from mfr.experiments.distributed import GradientAverager, world_size

    ts = [torch.zeros(10), torch.zeros(10), torch.zeros(10, dtype=torch.float64), torch.zeros(100), torch.zeros(5)]
    avg = GradientAverager([], bucket_bytes=100)
    assert avg._buckets(ts) == [[0, 1], [2], [3], [4]]
    # A single process: averaging is a no-op that leaves gradients untouched.
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert world_size() == 1
    GradientAverager([p])()
    assert torch.equal(p.grad, torch.full((3,), 2.0))


@pytest.mark.slow
def test_a_held_folder_refuses_every_rank_at_once(tmp_path):
    # one lock per run, held by rank 0: with another process holding the folder, every rank raises
    # mfr.FolderInUseError together, long before the 20 s collective timeout, and nothing is written
    holder = start_holder(tmp_path / "run")
    try:
        results = launch("locked", tmp_path)
    finally:
        stop(holder)
    assert all(rc == 0 for rc, _, _ in results), results
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.locked.json").read_text())
        assert f"out_dir {tmp_path / 'run'} is being written by pid {holder.pid} " in got["error"]
        assert got["seconds"] < 10
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".mfr-lock"]
