"""The losses of the domain-generalization baselines, each written once in plain PyTorch:
CORAL's penalty and the (cross-domain) triplet losses of CDT. ``docs/methods.md`` states every
formula and the choices the papers leave open.

Embeddings of one source domain in a meta-batch come as ``(2B, d)``: B gallery images, then the
B probes of the same identities in the same order (:func:`mfr.meta.domains_from_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["coral_penalty", "cross_domain_triplet", "pair_covariances", "triplet_distances"]


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centred = x - x.mean(0, keepdim=True)
    return centred.T @ centred / (x.shape[0] - 1)


def coral_penalty(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """CORAL's penalty in DomainBed's form (Sun & Saenko, ECCV-W 2016; Gulrajani & Lopez-Paz,
    ICLR 2021): the mean over every pair of domains ``i < j`` of ``mean((mu_i - mu_j)^2) +
    mean((C_i - C_j)^2)``, ``mu`` the feature mean and ``C`` the unbiased feature covariance of a
    domain's samples."""
    if len(features) < 2:
        raise ValueError("coral_penalty needs the features of at least 2 domains")
    total = features[0].new_zeros(())
    pairs = 0
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            a, b = features[i], features[j]
            total = total + (a.mean(0) - b.mean(0)).pow(2).mean() + (_covariance(a) - _covariance(b)).pow(2).mean()
            pairs += 1
    return total / pairs


def _identity_labels(n: int, device: torch.device) -> torch.Tensor:
    """Identity k of a domain's ``(2B, d)`` block: rows k (gallery) and B + k (probe)."""
    return torch.arange(n // 2, device=device).repeat(2)


def pair_covariances(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Sigma_plus, Sigma_minus)`` of one domain (CDT's similarity metrics): the mean outer
    product ``(f_a - f_b)(f_a - f_b)^T`` over its positive pairs (the B gallery-probe pairs of one
    identity) and over its negative pairs (every unordered pair of images of two identities),
    each scaled to mean eigenvalue 1 (trace = d) so that ``Sigma = I`` is the plain triplet loss's
    metric. ``emb``: unit-normalized ``(2B, d)`` embeddings."""
    n, d = emb.shape
    labels = _identity_labels(n, emb.device)
    i, j = torch.triu_indices(n, n, 1, device=emb.device)
    diff = emb[i] - emb[j]
    same = labels[i] == labels[j]

    def metric(v: torch.Tensor) -> torch.Tensor:
        cov = v.T @ v / v.shape[0]
        return cov * (d / cov.diagonal().sum().clamp_min(1e-12))

    return metric(diff[same]), metric(diff[~same])


def triplet_distances(
    emb: torch.Tensor, sigma_plus: torch.Tensor | None = None, sigma_minus: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances ``(x^T Sigma_+ x for anchor-positive, x^T Sigma_- x for anchor-negative)``
    of every triplet of one domain: each of the 2B images an anchor, the other image of its identity
    the positive, each of the 2B - 2 images of the other identities a negative; shapes ``(2B, 1)``
    and ``(2B, 2B - 2)``. Without metrics, Euclidean (``Sigma = I``)."""
    n = emb.shape[0]
    labels = _identity_labels(n, emb.device)
    partner = (torch.arange(n, device=emb.device) + n // 2) % n
    negatives = (labels[None, :] != labels[:, None]).nonzero()[:, 1].view(n, n - 2)

    def quadratic(x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return x.pow(2).sum(-1) if sigma is None else torch.einsum("...i,ij,...j->...", x, sigma, x)

    pos = quadratic(emb - emb[partner], sigma_plus)[:, None]
    neg = quadratic(emb[:, None, :] - emb[negatives], sigma_minus)
    return pos, neg


def cross_domain_triplet(
    emb: torch.Tensor,
    sigma_plus: torch.Tensor | None,
    sigma_minus: torch.Tensor | None,
    margin: float,
) -> torch.Tensor:
    """The (cross-domain) triplet loss of one domain's unit embeddings: the mean over its triplets of
    ``[x_ap^T Sigma_+ x_ap - x_an^T Sigma_- x_an + margin]_+``, with the metrics of another domain
    (:func:`pair_covariances`), or ``Sigma = I`` (the ordinary triplet loss) when they are None."""
    pos, neg = triplet_distances(emb, sigma_plus, sigma_minus)
    return F.relu(pos - neg + margin).mean()
