"""Export a checkpoint to ONNX with the metadata inference needs.

The metadata (``emolens`` key of the ONNX model's ``metadata_props``, a JSON object) is
what makes any exported model "just work" in :class:`emolens.Classifier`: label list,
input size, channels and normalisation.  See :mod:`emolens.modelmeta` for the fields.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from ..modelmeta import ModelMeta
from ..safefile import write_bytes, write_text
from .checkpoint import read_checkpoint
from .zoo import create_model, get_spec


def export_onnx(model: torch.nn.Module, meta: ModelMeta, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Export ``model`` (logits out) with ``meta`` embedded; batch size stays dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, meta.channels, meta.input_size, meta.input_size)
    buf = io.BytesIO()  # in memory: no temporary file beside the target (a fixed name there could be a link)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), buf, dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    meta.write_to(proto)
    onnx.checker.check_model(proto)
    return _save(proto, path)


def _save(proto: onnx.ModelProto, out: str | os.PathLike) -> Path:
    """Write ``proto`` to ``out`` through a unique temporary file (:mod:`emolens.safefile`), so an interrupted
    write or a full disk never leaves half a model, and no file or link of the user's is written through."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(out, proto.SerializeToString(), replace=True)


CheckpointPaths = str | os.PathLike | list[str | os.PathLike]
"""One checkpoint, or a list of checkpoints to export as one ensemble."""


class Ensemble(torch.nn.Module):
    """Several models of the same labels and input as one: the mean of their softmax probabilities.

    The output is the log of that mean, so softmax(output) is the mean and inference, temperature
    scaling and int8 quantization treat an ensemble like any other model."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.stack([m(x).float().softmax(dim=-1) for m in self.members]).mean(dim=0)
        return torch.log(p.clamp_min(1e-12))


def load_checkpoint(path: CheckpointPaths) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model saved in a ``best.pt`` / ``last.pt`` and return it with the checkpoint dict.

    A list of several checkpoints gives an :class:`Ensemble` (and the first one's dict, with
    ``architecture`` naming the members); they must share labels, input size, channels and
    normalisation, or ValueError says which differs."""
    paths = list(path) if isinstance(path, list | tuple) else [path]
    if not paths:
        raise ValueError("no checkpoint given")
    models, cks = [], []
    for p in paths:
        ck = read_checkpoint(p)
        model = create_model(ck["config"]["model"], num_classes=len(ck["classes"]))
        model.load_state_dict(ck["model"])
        models.append(model.eval())
        cks.append(ck)
    if len(models) == 1:
        return models[0], cks[0]
    first = meta_from_checkpoint(cks[0])
    for p, ck in zip(paths[1:], cks[1:]):
        other = meta_from_checkpoint(ck)
        for name in ("labels", "input_size", "channels", "mean", "std"):
            if getattr(other, name) != getattr(first, name):
                raise ValueError(f"{p}: its {name} ({getattr(other, name)}) differ from {paths[0]}'s "
                                 f"({getattr(first, name)}); an ensemble's members must share them")
    ck = dict(cks[0], architecture="ensemble(" + "+".join(c["config"]["model"] for c in cks) + ")")
    ck.pop("val_acc", None)  # a member's figure, not the ensemble's
    return Ensemble(models).eval(), ck


def meta_from_checkpoint(ck: dict, **extra) -> ModelMeta:
    cfg = ck["config"]
    spec = get_spec(cfg["model"])
    return ModelMeta(
        labels=list(ck["classes"]),
        input_size=spec.input_size,
        channels=spec.channels,
        mean=cfg["mean"],
        std=cfg["std"],
        architecture=ck.get("architecture", cfg["model"]),
        **extra,
    )


def export_checkpoint(ckpt: CheckpointPaths, out: str | os.PathLike, **extra) -> Path:
    """``best.pt`` (or a list of them: an :class:`Ensemble`) -> ``model.onnx`` with metadata
    (``extra`` goes into :class:`ModelMeta`)."""
    model, ck = load_checkpoint(ckpt)
    meta = meta_from_checkpoint(ck, **extra)
    if "val_acc" in ck and not meta.metrics:
        meta.metrics["train_loop_val_accuracy"] = round(float(ck["val_acc"]), 4)
    return export_onnx(model, meta, out)


def restamp(onnx_in: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
            metrics: dict | None = None) -> Path:
    """Copy an emolens ONNX model to ``out`` with a new ``name`` and/or extra ``metrics`` in its
    metadata (e.g. the evaluation of the final, quantized and calibrated model). The input is never changed."""
    import onnx

    from ..classify import Classifier

    meta = Classifier(onnx_in).meta
    if name:
        meta.name = name
    if metrics:
        meta.metrics = {**meta.metrics, **metrics}
    proto = onnx.load(str(onnx_in))
    meta.write_to(proto)
    return _save(proto, out)


_SHARED = ("labels", "input_size", "channels", "mean", "std", "crop_margin")


def ensemble_onnx(models: list[str | os.PathLike], out: str | os.PathLike, *, name: str | None = None,
                  metrics: dict | None = None, tta_hflip: bool | None = None,
                  tta_scales: list[float] | None = None) -> Path:
    """Several exported emolens models -> one ONNX model of their mean probability.

    For models whose training runs are gone (only the ``.onnx`` is left) or were quantized: the
    output is ``log(mean_i softmax(z_i / T_i + b_i))`` with each member's own calibration (temperature
    ``T_i`` and, where it has one, bias per class ``b_i``), so softmax(output) is the mean, as
    :class:`Ensemble` does for checkpoints. Members must
    share labels, input size, channels, normalisation and crop margin. The test-time views are
    ``tta_hflip`` / ``tta_scales`` when given, else the members' (which must then agree); ``metrics``
    (e.g. the ensemble's own evaluation) go into its metadata."""
    from onnx import compose, helper, version_converter

    from ..classify import Classifier

    if len(models) < 2:
        raise ValueError("an ensemble needs at least two models")
    metas = [Classifier(p).meta for p in models]
    first = metas[0]
    for p, m in zip(models[1:], metas[1:]):
        for field_name in _SHARED:
            if getattr(m, field_name) != getattr(first, field_name):
                raise ValueError(f"{p}: its {field_name} ({getattr(m, field_name)}) differ from {models[0]}'s "
                                 f"({getattr(first, field_name)}); an ensemble's members must share them")
    views = {(m.tta_hflip, tuple(m.tta_scales)) for m in metas}
    if tta_hflip is None and tta_scales is None and len(views) > 1:
        raise ValueError("the members use different test-time views; choose the ensemble's with "
                         "--tta-hflip / --tta-scales")
    protos = [onnx.load(str(p)) for p in models]
    opset = max(op.version for pr in protos for op in pr.opset_import if op.domain in ("", "ai.onnx"))
    graph_in = None
    nodes, inits, probs = [], [], []
    for i, (pr, m) in enumerate(zip(protos, metas)):
        if next(op.version for op in pr.opset_import if op.domain in ("", "ai.onnx")) != opset:
            pr = version_converter.convert_version(pr, opset)
        pr = compose.add_prefix(pr, f"m{i}/")
        g = pr.graph
        if graph_in is None:
            graph_in = onnx.ValueInfoProto()
            graph_in.CopyFrom(g.input[0])
            graph_in.name = "input"
        nodes.append(helper.make_node("Identity", ["input"], [g.input[0].name]))
        nodes.extend(g.node)
        inits.extend(g.initializer)
        t = f"m{i}/temperature"
        inits.append(onnx.numpy_helper.from_array(np.array(m.temperature, np.float32), t))
        nodes.append(helper.make_node("Div", [g.output[0].name, t], [f"m{i}/scaled"]))
        scaled = f"m{i}/scaled"
        if m.logit_bias is not None:  # a member calibrated with a bias per class keeps it
            inits.append(onnx.numpy_helper.from_array(np.array(m.logit_bias, np.float32), f"m{i}/bias"))
            nodes.append(helper.make_node("Add", [scaled, f"m{i}/bias"], [f"m{i}/biased"]))
            scaled = f"m{i}/biased"
        nodes.append(helper.make_node("Softmax", [scaled], [f"m{i}/probs"], axis=-1))
        probs.append(f"m{i}/probs")
    inits += [onnx.numpy_helper.from_array(np.array(1.0 / len(models), np.float32), "ensemble/weight"),
              onnx.numpy_helper.from_array(np.array(1e-12, np.float32), "ensemble/floor")]
    nodes += [helper.make_node("Sum", probs, ["ensemble/sum"]),
              helper.make_node("Mul", ["ensemble/sum", "ensemble/weight"], ["ensemble/mean"]),
              helper.make_node("Max", ["ensemble/mean", "ensemble/floor"], ["ensemble/clamped"]),
              helper.make_node("Log", ["ensemble/clamped"], ["logits"])]
    k = len(first.labels)
    graph = helper.make_graph(nodes, "emolens_ensemble", [graph_in],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", k])],
                              initializer=inits)
    domains = {op.domain: op.version for pr in protos for op in pr.opset_import if op.domain not in ("", "ai.onnx")}
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]
                              + [helper.make_opsetid(d, v) for d, v in domains.items()],
                              producer_name="emolens")
    proto.ir_version = max(pr.ir_version for pr in protos)
    meta = ModelMeta(**{f: getattr(first, f) for f in _SHARED},
                     architecture="ensemble(" + "+".join(m.architecture or "?" for m in metas) + ")",
                     tta_hflip=first.tta_hflip if tta_hflip is None else tta_hflip,
                     tta_scales=list(first.tta_scales) if tta_scales is None else list(tta_scales),
                     name=name or "", metrics=dict(metrics or {}))
    meta.write_to(proto)
    onnx.checker.check_model(proto)
    return _save(proto, out)


# ----------------------------------------------------------------------------- parity and int8
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def parity(model: torch.nn.Module, onnx_path: str | os.PathLike, images: np.ndarray) -> float:
    """Max absolute difference between the class probabilities of the PyTorch model and of the
    exported ONNX model (run by :class:`emolens.Classifier`) on the same preprocessed images."""
    from ..classify import Classifier

    clf = Classifier(onnx_path)
    x = clf.preprocess(list(images))
    with torch.no_grad():
        expected = _softmax(model.eval().float()(torch.from_numpy(x)).numpy())
    return float(np.abs(_softmax(clf.logits(x)) - expected).max())


def sample_images(
    run_or_data: str | os.PathLike, split: str, *, size: int, channels: int, per_class: int,
    classes: list[str] | None = None, data: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A few images per class of one split, from ``data`` or else the dataset a run was trained on
    (its ``data_split.json``): (uint8 N×size×size×C in BGR/gray as inference sees them, labels)."""
    from .data import MANIFEST_NAME, open_source

    run = Path(run_or_data)
    if data is not None:
        src = open_source(data)
    elif (run / MANIFEST_NAME).is_file():
        src = open_source(run)
    else:
        raise FileNotFoundError(f"{run}: no {MANIFEST_NAME} to find the training data; give --data")
    if split not in src.splits:
        split = src.default_splits()[0 if split == "train" else 1]
    ds = src.load(split, size=size, channels=channels, classes=classes, limit_per_class=per_class,
                  log=lambda _m: None)
    imgs = ds.images if channels == 1 else np.ascontiguousarray(ds.images[..., ::-1])
    return imgs, ds.labels


def _ms_per_face(onnx_path: str | os.PathLike, image: np.ndarray, repeats: int = 200) -> float:
    """Median single-thread milliseconds to classify one face (one preprocessed image, batch of 1)."""
    import time

    from ..classify import Classifier

    clf = Classifier(onnx_path, threads=1)
    x = clf.preprocess([image])
    for _ in range(10):
        clf.logits(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        clf.logits(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime.quantization reports harmless notes through the root logger; keep them off stderr."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def quantize_int8(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike,
    calib_images: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    mode: str = "static",
) -> dict:
    """Quantize an emolens ONNX model to int8 and measure what it changes.

    ``static`` (default): QDQ format, per-channel int8 weights, uint8 activations calibrated
    (min/max) on ``calib_images`` — what conv nets need to actually run int8 kernels;
    ``dynamic``: int8 weights only, activations quantized on the fly (mostly helps MatMul/Gemm).
    Weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI (AVX2 only) ONNX
    Runtime's uint8 x int8 kernels add products in 16 bits that overflow with full-range weights. On
    such a CPU (measured: an AMD EPYC with AVX2) the bundled model quantized with 8-bit weights agreed
    with its float self on 89% of the val faces and lost 1.5 points; with 7-bit weights, 99% and none.
    The metadata is copied over, so the result works everywhere the float model does.
    Returns accuracy of both models on ``val_images`` (single view, no TTA), the max probability
    difference, single-thread ms per face and file sizes."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..classify import Classifier

    src, out = Path(onnx_path), Path(out)
    clf = Classifier(src)
    meta = clf.meta

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            x = clf.preprocess(list(calib_images))
            self.batches = iter([{clf._input: x[i : i + 32]} for i in range(0, len(x), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        with warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            q = Path(tmp) / "q.onnx"
            if mode == "static":
                if not len(calib_images):
                    raise ValueError("static quantization needs calibration images")
                quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
            elif mode == "dynamic":
                quantize_dynamic(str(pre), str(q), weight_type=QuantType.QInt8, reduce_range=True)
            else:
                raise ValueError(f"unknown quantization mode {mode!r} (static or dynamic)")
        proto = onnx.load(str(q))
        meta.name = (meta.name + " int8").strip()
        meta.write_to(proto)
        _save(proto, out)

    qclf = Classifier(out)
    p32 = clf.predict_proba(list(val_images))
    p8 = qclf.predict_proba(list(val_images))
    acc32 = float((p32.argmax(1) == val_labels).mean())
    acc8 = float((p8.argmax(1) == val_labels).mean())
    ms32, ms8 = _ms_per_face(src, val_images[0]), _ms_per_face(out, val_images[0])
    return {
        "mode": mode, "model": str(src), "int8_model": str(out),
        "calibration_images": int(len(calib_images)) if mode == "static" else 0,
        "val_images": int(len(val_images)),
        "accuracy_fp32": acc32, "accuracy_int8": acc8, "accuracy_change": acc8 - acc32,
        "agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(p32 - p8).max()),
        "ms_per_face_fp32": ms32, "ms_per_face_int8": ms8, "speedup": ms32 / ms8,
        "size_mb_fp32": round(src.stat().st_size / 1e6, 2), "size_mb_int8": round(out.stat().st_size / 1e6, 2),
    }


def check_parity(ckpt: CheckpointPaths, onnx_path: str | os.PathLike, *, data: str | os.PathLike | None = None,
                 per_class: int = 8) -> tuple[float, int, str]:
    """:func:`parity` of a checkpoint and its export on a few validation images of the run's data
    (``data`` or the run's ``data_split.json``), or on random images when no data is at hand.
    Returns (max abs probability difference, number of images, what they were)."""
    from ..classify import Classifier

    meta = Classifier(onnx_path).meta
    model, _ = load_checkpoint(ckpt)
    try:
        first = ckpt[0] if isinstance(ckpt, list | tuple) else ckpt
        images, _ = sample_images(Path(first).parent, "val", size=meta.input_size, channels=meta.channels,
                                  per_class=per_class, classes=meta.labels, data=data)
        what = "validation images"
    except (ValueError, FileNotFoundError):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (32, meta.input_size, meta.input_size, meta.channels), dtype=np.uint8)
        what = "random images (no dataset found)"
    return parity(model, onnx_path, images), len(images), what


def quantize_model(
    onnx_path: str | os.PathLike, out: str | os.PathLike, *, run: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None, mode: str = "static", calib_per_class: int = 50,
    val_per_class: int = 100,
) -> dict:
    """:func:`quantize_int8` with calibration images from the train split and accuracy measured on
    the val split of ``data`` (or the run's own data); the results are also written to ``out``.json."""
    from ..classify import Classifier

    meta = Classifier(onnx_path).meta
    where = Path(run) if run is not None else Path(onnx_path).parent
    opts = dict(size=meta.input_size, channels=meta.channels, classes=meta.labels, data=data)
    calib, _ = sample_images(where, "train", per_class=calib_per_class, **opts)
    val, yv = sample_images(where, "val", per_class=val_per_class, **opts)
    res = quantize_int8(onnx_path, out, calib, val, yv, mode=mode)
    write_text(Path(out).with_suffix(".json"), json.dumps(res, indent=1), replace=True)
    return res
