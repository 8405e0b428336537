"""Starting a run from another model's weights: ``emolens train --data DATA --init SOURCE``.

SOURCE is a bundled model (``default``, ``fast``), any exported emolens ``.onnx`` model, a run
folder (its ``best.pt``) or a ``.pt`` checkpoint. An ONNX model is turned back into a PyTorch network
(:mod:`.from_onnx`): an int8 one is dequantized first (its weights keep their 8-bit values) and of an ensemble
the first member is taken (put the strongest net first; the bundled models are single nets: ``default`` starts
from its vgg_m, ``fast`` from its vgg_xs). The run trains that architecture at its input size and channels, with its
normalisation, so the data is converted as at inference.

When the data's labels differ from the source's, the backbone is kept and the classifier (the last dense layer)
is built anew for the data's labels: each label the source also has starts from the source's row for it, the
others from a fresh initialisation. So a folder of ``happy/`` and ``sad/`` pictures starts from a network that
already tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import read_checkpoint

BN_SAMPLE = 512  # training faces whose statistics rebuild the BatchNorm layers of an ONNX source


@dataclass
class InitSource:
    given: str  # as the user wrote it
    path: Path
    architecture: str
    mean: float | list[float]
    std: float | list[float]
    onnx: bool
    checkpoint: dict[str, Any] | None = None  # a .pt source, read once


def resolve_init(source: str) -> InitSource:
    """What ``--init SOURCE`` names, its architecture and normalisation (ValueError says why it cannot be used)."""
    from ..classify import Classifier, ModelError, bundled_model_path, is_bundled_name

    try:
        p = bundled_model_path(source) if is_bundled_name(source) else Path(source)
    except ModelError as e:
        raise ValueError(f"--init {source}: {e}") from None
    if p.is_dir():
        if not (p / "best.pt").is_file():
            raise ValueError(f"--init {source}: a folder without best.pt (give a run folder, a .pt checkpoint, "
                             "an .onnx model or default/fast)")
        p = p / "best.pt"
    if not p.is_file():
        raise ValueError(f"--init {source}: no such file (give a run folder, a .pt checkpoint, an .onnx model or "
                         "default/fast)")
    if p.suffix.lower() == ".onnx":
        try:
            meta = Classifier(p).meta
        except ModelError as e:
            raise ValueError(f"--init {source}: {e}") from None
        arch = meta.architecture
        if arch.startswith("ensemble(") and arch.endswith(")"):
            arch = arch[len("ensemble("):-1].split("+")[0]
        return InitSource(source, p, arch, meta.mean, meta.std, onnx=True)
    ck = read_checkpoint(p)
    cfg = ck.get("config") or {}
    if "model" not in ck or "classes" not in ck or "model" not in cfg:
        raise ValueError(f"--init {source}: not an emolens training checkpoint (no model weights, classes or "
                         "architecture in it)")
    return InitSource(source, p, cfg["model"], cfg.get("mean"), cfg.get("std"), onnx=False, checkpoint=ck)


def source_weights(src: InitSource, images: np.ndarray) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The source's state dict and labels; ``images`` (the run's training faces, uint8 as inference sees
    them) give an ONNX source's BatchNorm statistics."""
    if src.checkpoint is not None:
        return src.checkpoint["model"], list(src.checkpoint["classes"])
    from .from_onnx import checkpoint_from_onnx

    idx = np.linspace(0, len(images) - 1, min(len(images), BN_SAMPLE)).astype(int)  # every class, not the first
    ck = checkpoint_from_onnx(src.path, src.architecture, images[idx])
    return ck["model"], list(ck["classes"])


def classifier_layer(model: nn.Module) -> str:
    """The name of the model's last dense layer: the one that turns features into one score per label."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no dense layer to build a new classifier in")
    return names[-1]


@torch.no_grad()
def load_source(model: nn.Module, state: dict[str, torch.Tensor], source_labels: list[str],
                labels: list[str], given: str) -> str:
    """Copy the source's weights into ``model`` (built for ``labels``); a new classifier when the labels differ.
    Returns a line for the log."""
    head = classifier_layer(model)
    own = model.state_dict()
    for name, value in state.items():
        if name.startswith(head + ".") and source_labels != labels:
            continue
        if name not in own or tuple(own[name].shape) != tuple(value.shape):
            have = tuple(own[name].shape) if name in own else "nothing"
            raise ValueError(f"--init {given}: its {name} {tuple(value.shape)} does not fit this model ({have})")
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"--init {given}: it has no {missing[0]} (another architecture?)")
    if source_labels == labels:
        model.load_state_dict(state)
        return f"initialised from {given}"
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith(head + ".")}, strict=False)
    layer = model.get_submodule(head)
    shared = [c for c in labels if c in source_labels]
    for i, c in enumerate(labels):
        if c in source_labels:
            j = source_labels.index(c)
            layer.weight[i] = state[f"{head}.weight"][j]
            if layer.bias is not None:
                layer.bias[i] = state[f"{head}.bias"][j]
    kept = f"; {', '.join(shared)} start from its rows" if shared else ""
    return (f"initialised from {given} ({len(source_labels)} labels): its network, with a new classifier for "
            f"{', '.join(labels)}{kept}")
