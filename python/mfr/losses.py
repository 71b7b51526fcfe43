"""MFR's three losses, one by one (Rust/libtorch; differentiable with ordinary autograd).

Every loss L2-normalizes its features first. For one domain, ``gallery`` and ``probe`` are (B, D)
features whose row b belongs to in-batch identity b (as :class:`mfr.MetaBatch` lays them out) and
``M = normalize(gallery) @ normalize(probe).T``.

* :func:`hard_pair_attention`: hard positives ``{i : M_ii < tau_p}`` are pulled together, hard
  negatives ``{(i, j), i != j : M_ij > tau_n}`` pushed apart:
  ``1/(2|Pos|) sum ||g_i - p_i||^2 - 1/(2|Neg|) sum ||g_i - p_j||^2`` (an empty set adds 0; the
  selection itself carries no gradient).
* :func:`soft_classification`: a B-way classifier whose weights are the in-batch prototypes
  ``normalize(g_b + p_b)``, scaled cosine logits ``scale * cos``, cross-entropy over all 2B features.
  Gradients flow through the prototypes as well.
* :func:`domain_alignment`: the spread of the domains' mean features:
  ``1/n sum_k ||mu_k - mean_k mu_k||^2`` (0 for a single domain).

The defaults of ``tau_p``, ``tau_n`` and ``scale`` are this library's choices (the paper's
released code is not available); they are arguments everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _core

__all__ = [
    "DEFAULT_SCALE",
    "DEFAULT_TAU_N",
    "DEFAULT_TAU_P",
    "domain_alignment",
    "hard_pair_attention",
    "soft_classification",
]

# Defined in Rust (src/meta/step.rs) with MetaStepConfig's defaults.
DEFAULT_TAU_P: float = _core.DEFAULT_TAU_P
DEFAULT_TAU_N: float = _core.DEFAULT_TAU_N
DEFAULT_SCALE: float = _core.DEFAULT_SCALE


def hard_pair_attention(
    gallery: torch.Tensor, probe: torch.Tensor, tau_p: float = DEFAULT_TAU_P, tau_n: float = DEFAULT_TAU_N
) -> tuple[torch.Tensor, dict[str, float]]:
    """Hard-pair attention loss and mining statistics (``hard_positives``, ``hard_negatives``,
    ``mean_positive_similarity``, ``mean_negative_similarity``)."""
    return _core.hard_pair_attention(gallery, probe, float(tau_p), float(tau_n))


def soft_classification(gallery: torch.Tensor, probe: torch.Tensor, scale: float = DEFAULT_SCALE) -> torch.Tensor:
    """Soft-classification loss over in-batch prototypes."""
    return _core.soft_classification(gallery, probe, float(scale))


def domain_alignment(domains: Sequence[torch.Tensor]) -> torch.Tensor:
    """Domain-alignment loss; ``domains[k]`` holds (N_k, D) features of meta-train domain k."""
    return _core.domain_alignment(list(domains))
