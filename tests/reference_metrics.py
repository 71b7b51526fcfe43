"""Plain numpy re-implementations of the published k-fold protocols, loop for loop, used as parity
references by the tests and as the baseline of benches/metrics.py. Written from the algorithms'
descriptions (insightface eval/verification.py, FaceX-Zoo's LFW evaluator), not copied."""

from __future__ import annotations

import numpy as np


def kfold_splits(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """sklearn KFold(n_splits=k, shuffle=False): (train, test) index arrays."""
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    stops = np.cumsum(sizes)
    idx = np.arange(n)
    out = []
    for stop, size in zip(stops, sizes):
        test = idx[stop - size : stop]
        out.append((np.setdiff1d(idx, test), test))
    return out


def _accuracy(threshold, dist, issame):
    predict = dist < threshold
    tp = np.sum(predict & issame)
    tn = np.sum(~predict & ~issame)
    return float(tp + tn) / dist.size


def _val_far(threshold, dist, issame):
    predict = dist < threshold
    ta = np.sum(predict & issame)
    fa = np.sum(predict & ~issame)
    return float(ta) / float(np.sum(issame)), float(fa) / float(np.sum(~issame))


def insightface_kfold(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10, far_target: float = 1e-3) -> dict:
    dist = 2.0 - 2.0 * np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    splits = kfold_splits(len(dist), n_folds)
    thresholds = np.arange(0, 4, 0.01)
    accuracy, best = np.zeros(n_folds), np.zeros(n_folds)
    for f, (train, test) in enumerate(splits):
        acc_train = np.zeros(len(thresholds))
        for t_idx, t in enumerate(thresholds):
            acc_train[t_idx] = _accuracy(t, dist[train], issame[train])
        b = np.argmax(acc_train)
        accuracy[f] = _accuracy(thresholds[b], dist[test], issame[test])
        best[f] = thresholds[b]
    thresholds = np.arange(0, 4, 0.001)
    val, far, val_thr = np.zeros(n_folds), np.zeros(n_folds), np.zeros(n_folds)
    for f, (train, test) in enumerate(splits):
        far_train = np.zeros(len(thresholds))
        for t_idx, t in enumerate(thresholds):
            _, far_train[t_idx] = _val_far(t, dist[train], issame[train])
        t = np.interp(far_target, far_train, thresholds) if np.max(far_train) >= far_target else 0.0
        val[f], far[f] = _val_far(t, dist[test], issame[test])
        val_thr[f] = t
    return {
        "mean": np.mean(accuracy),
        "std": np.std(accuracy),
        "fold_accuracies": accuracy,
        "thresholds": best,
        "val_mean": np.mean(val),
        "val_std": np.std(val),
        "far_mean": np.mean(far),
        "val_thresholds": val_thr,
    }


def _facexzoo_threshold(scores, labels, num=1000):
    pos, neg = scores[labels == 1], scores[labels == 0]
    candidates = np.linspace(np.float64(np.min(scores)), np.float64(np.max(scores)), num)
    tpr, fpr = [], []
    for t in candidates:
        tpr.append(np.sum(pos > t) / len(pos))
        fpr.append(np.sum(neg > t) / len(neg))
    return candidates[np.argmax(np.array(tpr) - np.array(fpr))]


def facexzoo_kfold(scores: np.ndarray, labels: np.ndarray, n_folds: int = 10) -> dict:
    size = len(scores) // n_folds
    subsets = np.asarray(scores).astype(np.float32).reshape(n_folds, size)
    sublabels = np.asarray(labels).astype(np.int8).reshape(n_folds, size)
    use = np.ones(n_folds, bool)
    accs, thrs = [], []
    for f in range(n_folds):
        use[f] = False
        t = _facexzoo_threshold(subsets[use].flatten(), sublabels[use].flatten())
        use[f] = True
        test_s, test_l = subsets[f], sublabels[f]
        tp = np.sum(test_s[test_l == 1] > t)
        tn = np.sum(test_s[test_l == 0] < t)
        accs.append((tp + tn) / size)
        thrs.append(t)
    accs = np.array(accs)
    return {
        "mean": np.mean(accs),
        "std": np.std(accs, ddof=1) / np.sqrt(n_folds),
        "fold_accuracies": accs,
        "thresholds": np.array(thrs),
    }


def exact_kfold(scores: np.ndarray, labels: np.ndarray, n_folds: int = 10) -> dict:
    """Brute force of mfr's 'exact' protocol: every distinct training score as a `>=` threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    accs, thrs = [], []
    for train, test in kfold_splits(len(scores), n_folds):
        s, lab = scores[train], labels[train]
        cands = np.concatenate([[np.inf], np.unique(s)[::-1]])
        acc = np.array([np.sum((s >= t) == lab) for t in cands])
        k = int(np.argmax(acc))  # first = highest score among the best
        t = cands[k] if k == 0 or k == len(cands) - 1 else 0.5 * cands[k] + 0.5 * cands[k + 1]
        accs.append(np.mean((scores[test] >= t) == labels[test]))
        thrs.append(t)
    accs = np.array(accs)
    return {"mean": np.mean(accs), "std": np.std(accs), "fold_accuracies": accs, "thresholds": np.array(thrs)}
