"""An exported emolens ONNX model back into a trainable PyTorch checkpoint, so a model whose run is gone can
be fine-tuned (``emolens train --init CKPT``) instead of trained again from scratch.

The export folds each BatchNorm that follows a convolution into the convolution (``W' = γ/σ W``,
``b' = β - γμ/σ``), so the original BatchNorm parameters cannot be read back. They are rebuilt so that the
network computes exactly the same function in eval mode and nearly the same in training mode:

* the convolution gets the folded weights ``W'`` (it has no bias of its own);
* the BatchNorm gets, as running statistics, the mean ``m`` and variance ``v`` of ``W'x`` measured on
  training images, ``γ = sqrt(v + eps)`` and ``β = m + b'``.

Then ``BN(W'x) = γ (W'x - m) / sqrt(v + eps) + β = W'x + b'`` for any ``m`` and ``v`` (eval mode: exact), and
a training batch, whose own statistics are close to ``m`` and ``v``, is normalised almost as the exported
network computes it, so fine-tuning starts from the exported model's accuracy rather than from a jolt.

Layers are matched in order: the model's Conv2d / Linear modules against the graph's Conv / Gemm nodes,
by weight shape. A quantized (QDQ int8) file is first turned into a float one (:mod:`.dequantize`); of an
ensemble, the first member is rebuilt.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..classify import Classifier
from .zoo import create_model, get_spec


def float_graph(path: str | os.PathLike):
    """The ONNX graph of an emolens model as float weights, the architecture of the net to rebuild, and the
    prefix of its nodes: an int8 (QDQ) model is dequantized; an ensemble gives its first member (``m0/``)."""
    import onnx

    from .dequantize import dequantize, is_quantized

    clf = Classifier(path)  # also resolves the bundled names ("default", "fast", ...)
    meta = clf.meta
    proto = onnx.load(str(clf.path))
    if is_quantized(proto):
        proto = dequantize(proto)
        if is_quantized(proto):
            raise ValueError(f"{path}: a dynamically quantized model, which cannot be turned back into float "
                             "weights; start from its float model")
    arch, prefix = meta.architecture, ""
    if arch.startswith("ensemble(") and arch.endswith(")"):
        arch, prefix = arch[len("ensemble("):-1].split("+")[0], "m0/"
    return proto, arch, prefix


Layer = tuple[str, np.ndarray, np.ndarray | None]


def _graph_weights(proto, prefix: str, path: str | os.PathLike) -> tuple[list[Layer], list[list[np.ndarray]]]:
    """The (op, weight, bias) of every Conv / Gemm node whose outputs start with ``prefix``, in graph order, and
    the (scale, bias, mean, var) of its BatchNormalization nodes (the head's BatchNorm1d), in order."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    layers, norms = [], []
    for n in g.node:
        if not n.output[0].startswith(prefix):
            continue
        if n.op_type == "BatchNormalization" and all(i in inits for i in n.input[1:5]):
            norms.append([inits[i] for i in n.input[1:5]])
        if n.op_type not in ("Conv", "Gemm"):
            continue
        if n.input[1] not in inits:
            raise ValueError(f"{path}: the weights of node {n.name or n.op_type} are not stored constants")
        w = inits[n.input[1]]
        if n.op_type == "Gemm" and any(a.name == "transB" and a.i == 0 for a in n.attribute):
            w = w.T
        b = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        layers.append((n.op_type, w, b))
    return layers, norms


def _layers(model: nn.Module) -> list[tuple[nn.Module, nn.BatchNorm2d | None]]:
    """The model's Conv2d / Linear modules in order, each with the BatchNorm2d that directly follows a conv."""
    mods = list(model.modules())
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d | nn.Linear):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            out.append((m, nxt if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d) else None))
    return out


@torch.no_grad()
def checkpoint_from_onnx(onnx_path: str | os.PathLike, model_name: str | None, images: np.ndarray) -> dict:
    """A ``best.pt``-style checkpoint (``model``, ``config``, ``classes``) rebuilt from an exported emolens model
    of architecture ``model_name`` (None: the one its metadata names; an int8 model is dequantized first, an
    ensemble gives its first member); ``images`` (uint8 N×H×W[×C] faces as inference sees them, a few hundred
    training faces) give the BatchNorm statistics. The eval-mode logits match the ONNX model's (checked by
    the caller with :func:`emolens.training.export.parity`)."""
    clf = Classifier(onnx_path)
    meta = clf.meta
    proto, arch, prefix = float_graph(onnx_path)
    model_name = model_name or arch
    spec = get_spec(model_name)
    if (spec.input_size, spec.channels) != (meta.input_size, meta.channels):
        raise ValueError(f"{onnx_path}: input {meta.input_size} px × {meta.channels} channel(s) does not fit "
                         f"{model_name} ({spec.input_size} px × {spec.channels})")
    model = create_model(model_name, num_classes=len(meta.labels)).eval()
    layers, norms = _graph_weights(proto, prefix, onnx_path)
    mine = _layers(model)
    if len(layers) != len(mine):
        raise ValueError(f"{onnx_path}: {len(layers)} conv/dense layers, {model_name} has {len(mine)}")
    folded_bias = []
    for k, ((op, w, b), (mod, bn)) in enumerate(zip(layers, mine)):
        if tuple(w.shape) != tuple(mod.weight.shape):
            raise ValueError(f"{onnx_path}: layer {k + 1} ({op}) has weights {tuple(w.shape)}, "
                             f"{model_name} expects {tuple(mod.weight.shape)}")
        mod.weight.copy_(torch.tensor(w))
        bias = torch.zeros(w.shape[0]) if b is None else torch.tensor(b)
        if mod.bias is not None:
            mod.bias.copy_(bias)
        elif bn is None:
            raise ValueError(f"{onnx_path}: layer {k + 1} ({op}) has a bias that {model_name} has no place for")
        if bn is not None:  # identity BatchNorm + the folded bias: exactly the graph's function in eval mode
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
        folded_bias.append(bias)
    # the BatchNorm1d the export keeps (the head's), matched in order
    bn1d = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    if len(norms) != len(bn1d):
        raise ValueError(f"{onnx_path}: {len(norms)} batch-norm nodes, {model_name} has {len(bn1d)}")
    for m, (scale, shift, mean, var) in zip(bn1d, norms):
        for t, v in ((m.weight, scale), (m.bias, shift), (m.running_mean, mean), (m.running_var, var)):
            t.copy_(torch.tensor(v))
    # measure each conv's output statistics on real faces, then move them into the BatchNorm
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [mod.register_forward_hook(lambda _m, _i, out, k=k: stats.__setitem__(
        k, (out.double().mean((0, 2, 3)), out.double().var((0, 2, 3), unbiased=False))))
        for k, (mod, bn) in enumerate(mine) if bn is not None]
    x = torch.from_numpy(clf.preprocess(list(images)))
    model(x)
    for h in hooks:
        h.remove()
    for k, (_mod, bn) in enumerate(mine):
        if bn is None:
            continue
        m, v = stats[k]
        bn.running_mean.copy_(m.float())
        bn.running_var.copy_(v.float())
        bn.weight.copy_(torch.sqrt(v + bn.eps).float())
        bn.bias.copy_((m + folded_bias[k].double()).float())
    config = {"model": model_name, "mean": meta.mean_array() if meta.channels > 1 else float(meta.mean),
              "std": meta.std_array() if meta.channels > 1 else float(meta.std), "source_onnx": str(onnx_path)}
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}, "config": config,
            "classes": list(meta.labels), "epoch": -1, "architecture": model_name}


def save_checkpoint_from_onnx(onnx_path: str | os.PathLike, model_name: str, data: str | os.PathLike,
                              out: str | os.PathLike, *, per_class: int = 100) -> tuple[Path, float]:
    """:func:`checkpoint_from_onnx` with the BatchNorm statistics from ``per_class`` training faces of
    ``data``; writes ``out`` (never over an existing file) and returns it with the eval-mode parity (the
    largest difference of any class probability between the checkpoint and the ONNX model, on val faces)."""
    from .checkpoint import write_checkpoint
    from .export import load_checkpoint, parity, sample_images

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another path")
    meta = Classifier(onnx_path).meta
    spec = get_spec(model_name)
    train, _ = sample_images(data, "train", size=spec.input_size, channels=spec.channels, per_class=per_class,
                             classes=meta.labels, data=data)
    ck = checkpoint_from_onnx(onnx_path, model_name, train)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, ck)
    model, _ = load_checkpoint(out)
    val, _ = sample_images(data, "val", size=spec.input_size, channels=spec.channels, per_class=20,
                           classes=meta.labels, data=data)
    return out, parity(model, onnx_path, val)
