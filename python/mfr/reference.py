"""Pure-PyTorch reference implementations: the parity oracle of the Rust core, and a path for users'
own Python models. So far: MFR's three losses (the meta-step follows with the meta-step issue).

They follow the definitions in :mod:`mfr.losses` operation for operation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["hard_pair_attention", "soft_classification", "domain_alignment"]


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
