"""Export a checkpoint to ONNX with the metadata inference needs.

The metadata (``emolens`` key of the ONNX model's ``metadata_props``, a JSON object) is
what makes any exported model "just work" in :class:`emolens.Classifier`: label list,
input size, channels and normalisation.  See :mod:`emolens.modelmeta` for the fields.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx
import torch

from ..modelmeta import ModelMeta
from .zoo import create_model, get_spec


def export_onnx(model: torch.nn.Module, meta: ModelMeta, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Export ``model`` (logits out) with ``meta`` embedded; batch size stays dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, meta.channels, meta.input_size, meta.input_size)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load(str(tmp))
    meta.write_to(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved in a ``best.pt`` / ``last.pt`` and return it with the checkpoint dict."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = create_model(ck["config"]["model"], num_classes=len(ck["classes"]))
    model.load_state_dict(ck["model"])
    return model.eval(), ck


def meta_from_checkpoint(ck: dict, **extra) -> ModelMeta:
    cfg = ck["config"]
    spec = get_spec(cfg["model"])
    return ModelMeta(
        labels=list(ck["classes"]),
        input_size=spec.input_size,
        channels=spec.channels,
        mean=cfg["mean"],
        std=cfg["std"],
        architecture=cfg["model"],
        **extra,
    )


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, **extra) -> Path:
    """``best.pt`` -> ``model.onnx`` with metadata (``extra`` goes into :class:`ModelMeta`)."""
    model, ck = load_checkpoint(ckpt)
    meta = meta_from_checkpoint(ck, **extra)
    if "val_acc" in ck and not meta.metrics:
        meta.metrics["train_loop_val_accuracy"] = round(float(ck["val_acc"]), 4)
    return export_onnx(model, meta, out)
