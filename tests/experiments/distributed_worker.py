"""One rank of the distributed tests (run by tests/experiments/test_distributed.py with torchrun's environment
variables set by hand: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Usage:
``python distributed_worker.py TASK OUT_DIR``; results go to OUT_DIR/rank<r>.*"""

import faulthandler
import json
import os
import sys
import time

import torch
from cli_args import TINY

# A rank that aborts (SIGABRT from C++) prints where: its Python stacks, in the stderr the test shows.
faulthandler.enable(all_threads=True)
torch.set_num_threads(1)

import mfr  # noqa: E402
from mfr import FaceData, TrainConfig, Trainer  # noqa: E402
from mfr.experiments.evaluate import evaluate_domain  # noqa: E402


def small_data():
    return FaceData.synthetic(n_domains=3, ids_per_domain=8, images_per_id=3, size=16, channels=1, seed=2)


def config(**kw):
    base = dict(
        input_size=16,
        channels=1,
        width=4,
        embedding_dim=16,
        ids_per_domain=4,
        warmup_steps=0,
        schedule="constant",
        grad_clip=None,
        dist_timeout=20.0,
    )
    base.update(kw)
    return TrainConfig(**base)


def main():
    task, out = sys.argv[1], sys.argv[2]
    rank = int(os.environ["RANK"])
    if task == "equivalence":
        # One step on float64: every rank one meta-batch, gradients averaged.
        tr = Trainer(
            config(steps=1, dtype="float64", momentum=0.0, weight_decay=0.0, lr=0.1, flip=False),
            small_data(),
            progress=False,
        )
        stream = [tr.sampler[j].flat_indices().tolist() for j in range(len(tr.sampler))]
        tr.fit()
        torch.save(
            {
                "params": [p.detach() for p in tr.method.parameters()],
                "buffers": tr.backbone.buffer_list(),
                "stream": stream,
            },
            f"{out}/rank{rank}.pt",
        )
    elif task == "reproduce":
        from mfr.experiments.cli import main as cli

        # Distributed evaluation first, in the group the CLI then reuses (and leaves at its end).
        data = small_data()
        torch.manual_seed(0)
        net = mfr.nn.Backbone("small_cnn", width=4, input_size=16, embedding_dim=16, in_channels=1)
        mfr.experiments.distributed.init_from_env()
        world = mfr.experiments.distributed.world_size()
        res = evaluate_domain(net, data, 1, n_bootstrap=20)
        if rank == 1 and os.environ.get("MFR_TEST_SLOW_READER"):
            # rank 1 reads the output folder late: rank 0 must not have written it yet
            from mfr.experiments.reproduce import runner

            adopt = runner.adopt_earlier

            def late(*args, **kw):
                time.sleep(float(os.environ["MFR_TEST_SLOW_READER"]))
                return adopt(*args, **kw)

            runner.adopt_earlier = late
        rc = cli(
            [
                "reproduce",
                *TINY,
                "--steps",
                "3",
                "--methods",
                "mfr,arcface",
                "--bootstrap",
                "10",
                "--no-progress",
                "--out",
                f"{out}/results",
            ]
        )
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"rc": rc, "eval": res["metrics"], "world": world}, f)
    elif task == "kill":
        # Rank 1 dies after step 3 (checkpoint at step 2); rank 0 must fail within the timeout.
        tr = Trainer(
            config(steps=50, checkpoint_every=2, dist_timeout=float(os.environ.get("MFR_TEST_TIMEOUT", "20"))),
            small_data(),
            out_dir=f"{out}/run",
            progress=False,
        )
        if rank == 1:
            real = tr.train_step

            def dying():
                if tr.step == 3:
                    os._exit(17)  # a hard crash: no clean-up, no message
                return real()

            tr.train_step = dying
        t0 = time.time()
        try:
            tr.fit()
        except mfr.experiments.distributed.DistributedError as e:
            with open(f"{out}/rank{rank}.err", "w") as f:
                f.write(f"{time.time() - t0:.1f}\n{e}")
            mfr.experiments.distributed.exit_after_failure(3)
    elif task == "prefetch":
        # Decoding ahead on every rank changes nothing: each rank prefetches its own batches.
        params = {}
        for prefetch in (0, 2):
            tr = Trainer(config(steps=5, prefetch=prefetch), small_data(), progress=False)
            tr.fit()
            params[prefetch] = [p.detach().clone() for p in tr.method.parameters()]
        torch.save(params, f"{out}/rank{rank}.prefetch.pt")
    elif task == "resume":
        tr = Trainer(config(steps=6, checkpoint_every=2), small_data(), out_dir=f"{out}/run", progress=False)
        tr.fit(resume=True)
        torch.save(
            {"step": tr.step, "params": [p.detach() for p in tr.method.parameters()]}, f"{out}/rank{rank}.resumed.pt"
        )
    elif task == "locked":
        # OUT/run is held by another process: rank 0 is refused, and rank 1 learns it at once
        # (not after the collective timeout); neither touches the folder.
        t0 = time.monotonic()
        try:
            Trainer(config(steps=4), small_data(), out_dir=f"{out}/run", progress=False).fit()
            got = "trained"
        except mfr.FolderInUseError as e:
            got = str(e)
        with open(f"{out}/rank{rank}.locked.json", "w") as f:
            json.dump({"error": got, "seconds": time.monotonic() - t0}, f)
    else:
        raise SystemExit(f"unknown task {task}")
    # Leave the group before the interpreter exits, as the CLI does: tearing gloo down during
    # interpreter shutdown could abort a rank ("terminate called without an active exception").
    mfr.experiments.distributed.shutdown()
    # Then end without interpreter finalization: a rank still aborted there, rarely, in two
    # fresh-clone CI runs (never in 40 local runs), after its results were written. What these
    # tests check is the training, not libtorch's static destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
