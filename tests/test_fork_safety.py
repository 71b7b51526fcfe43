"""Rayon work after os.fork() must neither hang nor crash (DataLoader workers, notebooks)."""

import multiprocessing as mp

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import mfr

EMB = torch.randn(500, 32)
PAIRS = np.random.default_rng(0).integers(0, 500, size=(20_000, 2))


def _score_in_child(queue):
    queue.put(float(mfr.pair_scores(EMB, PAIRS).sum()))


def _in_two_forked_children(target):
    """What `target(queue)` puts, from each of two forked children (which must exit cleanly)."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [queue.get(timeout=5) for _ in procs]


def test_multiprocessing_fork_after_parallel_work():
    mfr.set_num_threads(2)
    try:
        expected = float(mfr.pair_scores(EMB, PAIRS).sum())  # the parent's pool now has live threads
        assert _in_two_forked_children(_score_in_child) == [expected, expected]
    finally:
        mfr.set_num_threads(0)


class _ScoringDataset(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.from_numpy(mfr.pair_scores(EMB, PAIRS[i * 100 : (i + 1) * 100]))


def test_dataloader_workers_call_the_core():
    mfr.set_num_threads(2)
    try:
        mfr.pair_scores(EMB, PAIRS)  # start the pool before the workers fork
        loader = DataLoader(_ScoringDataset(), batch_size=2, num_workers=2, multiprocessing_context="fork", timeout=60)
        batches = list(loader)
        assert len(batches) == 4
        got = torch.cat([b.flatten() for b in batches]).numpy()
        np.testing.assert_array_equal(got, mfr.pair_scores(EMB, PAIRS[:800]))
    finally:
        mfr.set_num_threads(0)


_BIG = np.random.default_rng(1).random(3_000_000), np.random.default_rng(2).random(3_000_000) < 0.5


def _report_in_child(queue):
    r = mfr.metrics.verification_report(*_BIG, fars=(1e-3,))
    queue.put((r.auc, r.eer, float(r.fpr.sum())))


def test_fork_with_kept_buffers_reports_the_same():
    # The parent's report leaves its key buffers in the metrics' scratch pool; forked children
    # inherit the pool and sort into them.
    r = mfr.metrics.verification_report(*_BIG, fars=(1e-3,))
    expected = (r.auc, r.eer, float(r.fpr.sum()))
    del r
    assert mfr.cached_memory() > 0
    assert _in_two_forked_children(_report_in_child) == [expected, expected]
    mfr.release_cached_memory()
