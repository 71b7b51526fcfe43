"""Pure-PyTorch reference implementations: the parity oracle of the Rust core, and a path for users'
own Python models: MFR's three losses, the small CNN and the per-split meta-step.

They follow the definitions in :mod:`mfr.losses` operation for operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["hard_pair_attention", "soft_classification", "domain_alignment", "small_cnn_forward", "meta_step"]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def hard_pair_attention(gallery: torch.Tensor, probe: torch.Tensor, tau_p: float, tau_n: float) -> tuple[torch.Tensor, dict[str, float]]:
    g, p = _normalize(gallery), _normalize(probe)
    m = g @ p.T
    md = m.detach()
    b = m.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=m.device)
    pos = md.diagonal() < tau_p
    neg = (md > tau_n) & ~eye
    dist = 2 - 2 * m
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    loss = (dist.diagonal() * pos).sum() / (2 * max(n_pos, 1)) - (dist * neg).sum() / (2 * max(n_neg, 1))
    stats = {
        "hard_positives": n_pos,
        "hard_negatives": n_neg,
        "mean_positive_similarity": float(md.diagonal().double().mean()),
        "mean_negative_similarity": float(md[~eye].double().mean()),
    }
    return loss, stats


def soft_classification(gallery: torch.Tensor, probe: torch.Tensor, scale: float) -> torch.Tensor:
    g, p = _normalize(gallery), _normalize(probe)
    w = _normalize(g + p)
    logits = scale * torch.cat([g, p]) @ w.T
    labels = torch.arange(g.shape[0], device=g.device).repeat(2)
    return F.cross_entropy(logits, labels)


def domain_alignment(domains: Sequence[torch.Tensor]) -> torch.Tensor:
    means = torch.stack([_normalize(d).mean(0) for d in domains])
    return (means - means.mean(0, keepdim=True)).pow(2).sum(1).mean()


# ---- the meta-step ------------------------------------------------------------------------------


def small_cnn_forward(params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor] | None, x: torch.Tensor, update_running: bool) -> torch.Tensor:
    """The small CNN of :class:`mfr.nn.Backbone` in plain PyTorch (training-mode BatchNorm; running
    statistics updated only when ``update_running``)."""

    def bn(h: torch.Tensor, k: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        rm, rv = (buffers[2 * k], buffers[2 * k + 1]) if (update_running and buffers is not None) else (None, None)
        return F.batch_norm(h, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)

    for i in range(4):
        cw, bw, bb, pw = params[4 * i : 4 * i + 4]
        x = F.max_pool2d(F.prelu(bn(F.conv2d(x, cw, padding=1), i, bw, bb), pw), 2)
    ew, eb, nw, nb = params[16:20]
    return bn(F.linear(x.flatten(1), ew, eb), 4, nw, nb)


def _domain_loss(emb: torch.Tensor, cfg: Any) -> torch.Tensor:
    b = emb.shape[0] // 2
    g, p = emb[:b], emb[b:]
    return cfg.w_hp * hard_pair_attention(g, p, cfg.tau_p, cfg.tau_n)[0] + cfg.w_cls * soft_classification(g, p, cfg.scale)


def meta_step(forward: Any, params: Sequence[torch.Tensor], buffers: Any, domains: Sequence[torch.Tensor], splits: Sequence[tuple[Sequence[int], Sequence[int]]], cfg: Any) -> list[torch.Tensor]:
    """The straightforward per-split MFR step, as the paper writes it: for every split a fresh
    forward on its meta-train domains at theta, ``torch.autograd.grad(create_graph=True)``, the
    forward at theta', and that split's combined gradient; averaged over splits. Running
    statistics are updated by the first theta pass of each domain only (as the Rust step).
    ``forward(params, buffers, x, update_running)``. Returns the combined gradients."""
    params = list(params)
    total = [torch.zeros_like(p) for p in params]
    seen: set[int] = set()
    for train, test in splits:
        embs = []
        for d in train:
            embs.append(forward(params, buffers, domains[d], d not in seen))
            seen.add(d)
        l_s = torch.stack([_domain_loss(e, cfg) for e in embs]).mean()
        if cfg.w_da:
            l_s = l_s + cfg.w_da * domain_alignment(embs)
        grads = torch.autograd.grad(l_s, params, create_graph=not cfg.first_order, retain_graph=True)
        adapted = [p - cfg.alpha * (g.detach() if cfg.first_order else g) for p, g in zip(params, grads)]
        l_t = torch.stack([_domain_loss(forward(adapted, buffers, domains[d], False), cfg) for d in test]).mean()
        split_grads = torch.autograd.grad(cfg.gamma * l_s + (1 - cfg.gamma) * l_t, params)
        for acc, g in zip(total, split_grads):
            acc += g / len(splits)
    return total
