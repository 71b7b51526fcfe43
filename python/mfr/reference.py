"""Pure-PyTorch reference implementations: the parity oracle of the Rust core, and a path for users'
own Python models: MFR's three losses, the small CNN and the per-split meta-step.

They follow the definitions in :mod:`mfr.losses` operation for operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

__all__ = [
    "IResNet",
    "MobileFaceNet",
    "domain_alignment",
    "hard_pair_attention",
    "meta_step",
    "module_forward",
    "small_cnn_forward",
    "soft_classification",
]


def _normalize(x: torch.Tensor) -> torch.Tensor:
    out: torch.Tensor = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return out


def hard_pair_attention(
    gallery: torch.Tensor, probe: torch.Tensor, tau_p: float, tau_n: float
) -> tuple[torch.Tensor, dict[str, float]]:
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


def small_cnn_forward(
    params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor] | None, x: torch.Tensor, update_running: bool
) -> torch.Tensor:
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


# ---- backbones as ordinary nn.Modules (the layouts of insightface's arcface_torch) -------------


class SmallCNN(torch.nn.Module):
    """The small CNN of :class:`mfr.nn.Backbone` as an ordinary module with the same
    ``state_dict`` names: four conv3x3 -> BatchNorm -> PReLU -> max-pool blocks, a linear layer and
    a BatchNorm1d on the embedding."""

    def __init__(self, width: int = 16, embedding_dim: int = 128, in_channels: int = 3, input_size: int = 64) -> None:
        super().__init__()
        nn = torch.nn
        cin = in_channels
        for i in range(4):
            cout = width * 2**i
            block = nn.Module()
            block.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            block.bn = nn.BatchNorm2d(cout, eps=1e-5)
            block.prelu = nn.PReLU(cout)
            setattr(self, f"block{i}", block)
            cin = cout
        side = input_size // 16
        self.fc = nn.Linear(cin * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            block = cast(torch.nn.Module, getattr(self, f"block{i}"))
            conv, bn, prelu = (cast(torch.nn.Module, getattr(block, n)) for n in ("conv", "bn", "prelu"))
            x = F.max_pool2d(prelu(bn(conv(x))), 2)
        out: torch.Tensor = self.features(self.fc(x.flatten(1)))
        return out


class _IRBlock(torch.nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        nn = torch.nn
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
            if stride != 1 or cin != planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        out: torch.Tensor = h + (x if self.downsample is None else self.downsample(x))
        return out


class IResNet(torch.nn.Module):
    """IR-ResNet (``blocks`` per stage; (2, 2, 2, 2) is iresnet18) with channels ``width`` x 1, 2,
    4, 8, for any input size (the fc takes whatever map the stages leave)."""

    def __init__(
        self,
        blocks: Sequence[int],
        width: int = 64,
        embedding_dim: int = 512,
        in_channels: int = 3,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin, side = width, input_size
        for i, n in enumerate(blocks):
            planes = width * 2**i
            layer = [_IRBlock(cin, planes, 2)] + [_IRBlock(planes, planes, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            cin, side = planes, (side - 1) // 2 + 1
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.fc = nn.Linear(cin * side * side, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        for i in range(1, 5):
            x = cast(torch.nn.Module, getattr(self, f"layer{i}"))(x)
        out: torch.Tensor = self.features(self.fc(self.bn2(x).flatten(1)))
        return out


class _ConvBN(torch.nn.Module):
    """conv -> BN (-> PReLU): arcface_torch's ``LinearBlock`` / ``ConvBlock``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, groups: int, act: bool) -> None:
        super().__init__()
        nn = torch.nn
        layers: list[torch.nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.PReLU(cout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class _DepthWise(torch.nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = torch.nn.Sequential(
            _ConvBN(cin, groups, 1, 1, 0, 1, True),
            _ConvBN(groups, groups, 3, stride, 1, groups, True),
            _ConvBN(groups, cout, 1, 1, 0, 1, False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.layers(x) if self.residual else self.layers(x)
        return out


class _Residual(torch.nn.Module):
    def __init__(self, c: int, n: int, groups: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*[_DepthWise(c, c, 1, groups, True) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class MobileFaceNet(torch.nn.Module):
    """MobileFaceNet (arcface_torch's ``get_mbf`` layout, blocks 1, 4, 6, 2) with base width
    ``width`` (128 = 64 x scale 2 in the published model)."""

    def __init__(self, width: int = 128, embedding_dim: int = 512, in_channels: int = 3, input_size: int = 112) -> None:
        super().__init__()
        nn, w = torch.nn, width
        self.layers = nn.ModuleList(
            [
                _ConvBN(in_channels, w, 3, 2, 1, 1, True),
                _ConvBN(w, w, 3, 1, 1, w // 2, True),
                _DepthWise(w, w, 2, w, False),
                _Residual(w, 4, w),
                _DepthWise(w, 2 * w, 2, 2 * w, False),
                _Residual(2 * w, 6, 2 * w),
                _DepthWise(2 * w, 2 * w, 2, 4 * w, False),
                _Residual(2 * w, 2, 2 * w),
            ]
        )
        self.conv_sep = _ConvBN(2 * w, 4 * w, 1, 1, 0, 1, True)
        side = input_size
        for _ in range(4):
            side = (side - 1) // 2 + 1
        self.features = nn.Module()
        self.features.layers = nn.Sequential(
            _ConvBN(4 * w, 4 * w, side, 1, 0, 4 * w, False),
            nn.Flatten(),
            nn.Linear(4 * w, embedding_dim, bias=False),
            nn.BatchNorm1d(embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        out: torch.Tensor = cast(torch.nn.Module, self.features.layers)(self.conv_sep(x))
        return out


def module_forward(module: torch.nn.Module, param_names: Sequence[str], buffer_names: Sequence[str]) -> Any:
    """A ``forward(params, buffers, x, update_running)`` for :func:`meta_step` from an ordinary
    module in training mode (``torch.func.functional_call``); running statistics go to
    ``buffers`` only when ``update_running`` (throwaway copies otherwise)."""

    def forward(
        params: Sequence[torch.Tensor], buffers: Sequence[torch.Tensor] | None, x: torch.Tensor, update_running: bool
    ) -> torch.Tensor:
        own = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        bufs = list(buffers) if buffers is not None else [own[n] for n in buffer_names]
        if not (update_running and buffers is not None):
            bufs = [b.clone() for b in bufs]
        state = {**dict(zip(param_names, params)), **dict(zip(buffer_names, bufs))}
        module.train()
        out: torch.Tensor = torch.func.functional_call(module, state, (x,))
        return out

    return forward


def _domain_loss(emb: torch.Tensor, cfg: Any) -> torch.Tensor:
    b = emb.shape[0] // 2
    g, p = emb[:b], emb[b:]
    loss: torch.Tensor = cfg.w_hp * hard_pair_attention(g, p, cfg.tau_p, cfg.tau_n)[
        0
    ] + cfg.w_cls * soft_classification(g, p, cfg.scale)
    return loss


def inner_update(
    loss: torch.Tensor, params: Sequence[torch.Tensor], alpha: float, first_order: bool
) -> list[torch.Tensor]:
    """theta' = theta - alpha grad L_S, the graph kept (second order) or the gradient detached
    (first order). The one copy of the inner step of the Python paths (this reference and the
    MLDG baseline); the Rust meta-step has its own, checked against this one."""
    grads = torch.autograd.grad(loss, list(params), create_graph=not first_order, retain_graph=True)
    return [p - alpha * (g.detach() if first_order else g) for p, g in zip(params, grads)]


def meta_step(
    forward: Any,
    params: Sequence[torch.Tensor],
    buffers: Any,
    domains: Sequence[torch.Tensor],
    splits: Sequence[tuple[Sequence[int], Sequence[int]]],
    cfg: Any,
) -> list[torch.Tensor]:
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
        adapted = inner_update(l_s, params, cfg.alpha, cfg.first_order)
        l_t = torch.stack([_domain_loss(forward(adapted, buffers, domains[d], False), cfg) for d in test]).mean()
        split_grads = torch.autograd.grad(cfg.gamma * l_s + (1 - cfg.gamma) * l_t, params)
        for acc, g in zip(total, split_grads):
            acc += g / len(splits)
    return total
