"""Export a trained backbone for deployment: an embedding model that loads with plain PyTorch,
without mfr (``torch.export``'s ``.pt2``: ``torch.export.load(path).module()(images)``; TorchScript,
``torch.jit``, is deprecated from torch 2.11), and ONNX when the ``onnx`` package is installed.

The exported model is the plain-PyTorch module of :mod:`mfr.reference` for the backbone's
architecture (``SmallCNN``, ``IResNet``, ``MobileFaceNet``; the same ``state_dict`` names), in eval
mode: ``float32 (N, C, S, S)`` images normalized as for training -> ``(N, D)`` embeddings, equal to
:meth:`mfr.nn.Backbone.embed`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from .. import _core, reference
from ..nn import Backbone
from .checkpoint import check_output_folder
from .weights import load_backbone

__all__ = ["export", "plain_module"]


def plain_module(backbone: Backbone) -> torch.nn.Module:
    """The backbone as an ordinary ``nn.Module`` of :mod:`mfr.reference` with its weights, in eval mode."""
    spec = backbone.spec
    module: torch.nn.Module
    if spec.name == "small_cnn":
        module = reference.SmallCNN(spec.width, spec.embedding_dim, spec.in_channels, spec.input_size)
    elif spec.name == "mobilefacenet":
        module = reference.MobileFaceNet(spec.width, spec.embedding_dim, spec.in_channels, spec.input_size)
    else:  # the iresnet family: the block counts read from the spec's parameter names
        blocks = tuple(
            len({n.split(".")[1] for n, _, _ in spec.params if n.startswith(f"layer{i}.")}) for i in range(1, 5)
        )
        module = reference.IResNet(blocks, spec.width, spec.embedding_dim, spec.in_channels, spec.input_size)
    result = module.load_state_dict(backbone.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise _core.MfrError(
            f"export: the plain {spec.name} module does not match the backbone (missing {missing}, unexpected {result.unexpected_keys})"
        )
    return module.to(next(backbone.parameters()).device).eval()


def export(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], onnx: bool = False) -> list[Path]:
    """Write ``out`` (a ``torch.export`` program, any batch size) and, with ``onnx``, ``out`` with
    the suffix ``.onnx``; returns the written paths. The exported model's embeddings are checked
    against the backbone's before anything is written."""
    import importlib.util

    if onnx and importlib.util.find_spec("onnx") is None:
        raise _core.InvalidInputError("export: --onnx needs the onnx package (pip install onnx)")
    out = Path(out)
    if out.is_dir():
        raise _core.InvalidInputError(
            f"export: {out} is a folder; give the program file to write (e.g. {out / 'model.pt2'})"
        )
    check_output_folder(out.parent, "export: output folder")
    net, _ = load_backbone(checkpoint)
    module = plain_module(net)
    c, s = net.in_channels, net.input_size
    example = torch.randn(4, c, s, s, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("n", min=1)},))
    with torch.no_grad():
        got, want = program.module()(example), net.embed(example)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        worst = float((got - want).abs().max())
        raise _core.MfrError(f"export: the exported model differs from the backbone (max {worst:.3g})")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_replacing(out, lambda tmp: torch.export.save(program, tmp))
    written = [out]
    if onnx:
        onnx_path = out.with_suffix(".onnx")
        _write_replacing(
            onnx_path,
            lambda tmp: torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["images"],
                output_names=["embeddings"],
                dynamic_axes={"images": {0: "n"}, "embeddings": {0: "n"}},
            ),
        )
        written.append(onnx_path)
    return written


def _write_replacing(path: Path, write: Callable[[str], object]) -> None:
    """``write`` a temporary file beside ``path``, then put it in place in one rename: two exports to
    one file never interleave (the last one wins whole), and a reader never sees half a file."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
