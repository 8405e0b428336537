"""Temperature scaling (Guo et al. 2017): confidences that mean what they say.

One number T divides the model's logits before the softmax; T is fitted by minimising the negative
log-likelihood of the true labels on a held-out split, through the model's own test-time views
(the probabilities are softmax(z / T) of each view, averaged, exactly as
:meth:`emolens.Classifier.probabilities` computes them). The ranking of the classes in each view
does not change; the averaged top-1 can, rarely.

    from emolens.evaluation.calibration import calibrate_model
    result = calibrate_model("model.onnx", "../shared/datasets/fer2013", "val", out="model.cal.onnx")
    result["temperature"], result["ece_before"], result["ece_after"], result["ece_cross_fitted"]

``ece_after`` is measured on the data T was fitted on; ``ece_cross_fitted`` is the honest figure:
T fitted on one half of the split, ECE measured on the other half, and the other way round.

``class_bias=True`` (``emolens calibrate --class-bias``) fits a bias per class beside T, softmax(z / T + b),
also by the negative log-likelihood ("bias-corrected temperature scaling", Alexandari et al. 2020). One
temperature cannot undo a shift in how often a model predicts each class (training with class weights or
heavy augmentation makes such a shift); the bias can. It can change the top-1 label of a face, so the copy's
accuracy is reported beside the ECE; the biases are centred (sum 0), as a softmax ignores a common shift.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ..classify import softmax_views
from ..face.detect.base import Box
from ..recognizer import EmotionRecognizer
from ..safefile import write_bytes
from .metrics import ECE_BINS, calibration, classification_metrics, headline_metrics, load_faces, resolve_model


def view_logits(rec: EmotionRecognizer, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The model's raw outputs for every test-time view of each face image: N×V×labels
    (V = crop scales × mirror), cut and preprocessed exactly as :meth:`EmotionRecognizer.classify_boxes` does."""
    clf = rec.classifier
    whole = [Box(0, 0, images.shape[2], images.shape[1])]
    out = []
    for i in range(0, len(images), chunk):
        crops = [c for img in images[i : i + chunk] for c in rec.view_crops(img, whole)]
        z = clf.view_logits(clf.preprocess(crops))  # (n·S)×M×K
        n = len(images[i : i + chunk])
        out.append(z.reshape(n, -1, z.shape[-1]))
    return np.concatenate(out) if out else np.zeros((0, 1, len(clf.labels)), np.float32)


def nll(z: np.ndarray, y: np.ndarray, temperature: float, bias: np.ndarray | None = None) -> float:
    """Mean negative log-likelihood of ``y`` under softmax(z / T + bias), averaged over the views, in float64
    (the optimiser's finite differences are lost in float32)."""
    p = softmax_views(z, temperature, bias, dtype=np.float64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the negative log-likelihood of ``y`` under softmax(z / T)."""
    if len(y) == 0:
        raise ValueError("no samples to fit a temperature on")
    res = minimize_scalar(lambda t: nll(z, y, float(np.exp(t))), bounds=(np.log(0.05), np.log(20.0)),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def fit_temperature_bias(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """T and a bias per class (centred) that minimise the negative log-likelihood of ``y`` under
    softmax(z / T + b), started from the temperature alone. A tiny L2 penalty on b keeps it finite
    for a class the split never shows."""
    t0 = fit_temperature(z, y)
    k = z.shape[-1]

    def loss(p: np.ndarray) -> float:
        return nll(z, y, float(np.exp(p[0])), p[1:]) + 1e-4 * float(p[1:] @ p[1:])

    res = minimize(loss, np.concatenate([[np.log(t0)], np.zeros(k)]), method="L-BFGS-B",
                   bounds=[(np.log(0.05), np.log(20.0))] + [(-5.0, 5.0)] * k)
    b = res.x[1:] - res.x[1:].mean()
    return float(np.exp(res.x[0])), b


def cross_fitted_ece(z: np.ndarray, y: np.ndarray, *, folds: int = 2, seed: int = 0,
                     n_bins: int = ECE_BINS, class_bias: bool = False) -> float:
    """ECE of the calibration on data it was not fitted on: a stratified ``folds``-fold split;
    each fold is scored with the T (and bias) fitted on the others; the ECE of all the out-of-fold probabilities."""
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(y), z.shape[-1]), np.float32)
    for fit, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        if class_bias:
            t, b = fit_temperature_bias(z[fit], y[fit])
            probs[test] = softmax_views(z[test], t, b)
        else:
            probs[test] = softmax_views(z[test], fit_temperature(z[fit], y[fit]))
    return calibration(probs, y, n_bins)["ece"]


def calibrated_path(model: str | os.PathLike | None) -> Path:
    """Where ``emolens calibrate`` writes a model's calibrated copy by default: ``<model>.calibrated.onnx`` beside
    the model, or in the current folder for a bundled or Hub model (not into the package or the Hub's cache)."""
    from ..classify import BUNDLED_MODELS, default_model_path
    from ..hub import is_hub

    onnx_path, _ = resolve_model(model)
    src = onnx_path or default_model_path()
    bundled = onnx_path is None or str(model) in BUNDLED_MODELS or is_hub(model)
    return Path(src.name if bundled else src).with_suffix(".calibrated.onnx")


def calibrate_model(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    split: str = "val",
    *,
    out: str | os.PathLike | None = None,
    limit_per_class: int | None = None,
    class_bias: bool = False,
    log=None,
    replace: bool = True,
) -> dict[str, Any]:
    """Fit the softmax temperature of an emolens ONNX model (with ``class_bias``, also a bias per class) on a
    labelled split and, with ``out``, write a copy of the model with them in its metadata (the input is never
    changed; a fit replaces the model's earlier calibration, bias included),
    and with the split's accuracy, F1 and ECE as the calibrated copy scores them, plus the cross-fitted ECE
    (fitted on a sample, ``limit_per_class``, the copy keeps the input's figures, less its stale ECE).

    Returns the temperature (and ``logit_bias``: the biases, or None), the split's size, accuracy and ECE
    (15 bins) before and after, and the cross-fitted ECE (see the module docstring). ``replace=False``: ``out``
    must not exist (``FileExistsError``, checked first and again when the copy is written); the copy is written
    whole or not at all. :func:`calibrated_path` is where ``emolens calibrate`` puts it."""
    import onnx

    from ..classify import default_model_path

    onnx_path, run = resolve_model(model)
    if out is not None:  # fail before the slow part
        out = Path(out)
        if out.exists() and not replace:
            raise FileExistsError(f"{out} already exists; pass --force to replace it, or give another --out")
        if out.resolve() == (onnx_path or default_model_path()).resolve():
            raise ValueError(f"--out {out} is the model itself; write the calibrated copy elsewhere")
    rec = EmotionRecognizer(onnx_path)
    clf = rec.classifier
    _, ds, images = load_faces(rec, data, split, run=run, limit_per_class=limit_per_class, log=log)
    if not len(images):
        raise ValueError(f"split {split!r} of {data} has no readable images")
    z = view_logits(rec, images).astype(np.float64)
    y = ds.labels
    t_old, b_old = float(clf.meta.temperature), clf.meta.logit_bias
    before = softmax_views(z, t_old, b_old)
    # rounded as stored in the copy's metadata, so its figures are the copy's
    if class_bias:
        t, b = fit_temperature_bias(z, y)
        t, bias = round(t, 4), [round(float(v), 4) for v in b]
    else:
        t, bias = round(fit_temperature(z, y), 4), None
    after = softmax_views(z, t, bias)
    result = {
        "model": str(clf.path), "data": str(data), "split": split, "n": int(len(y)), "labels": list(clf.labels),
        "temperature_before": t_old, "temperature": t, "logit_bias_before": b_old, "logit_bias": bias,
        "accuracy_before": float((before.argmax(1) == y).mean()),
        "accuracy_after": float((after.argmax(1) == y).mean()),
        "nll_before": nll(z, y, t_old, b_old), "nll_after": nll(z, y, t, bias),
        "ece_before": calibration(before, y)["ece"], "ece_after": calibration(after, y)["ece"],
        "ece_cross_fitted": cross_fitted_ece(z, y, class_bias=class_bias),
    }
    if out is not None:
        proto = onnx.load(str(clf.path))
        meta = clf.meta
        meta.temperature, meta.logit_bias = t, bias
        if limit_per_class is None:
            scored = classification_metrics(y, after.argmax(1), clf.labels, after)
            meta.metrics = {**meta.metrics, **headline_metrics(scored, split),
                            f"{split}_ece_cross_fitted": round(result["ece_cross_fitted"], 4)}
        else:  # a sample of the split: keep the stored figures, less the ECE the new temperature changed
            meta.metrics = {k: v for k, v in meta.metrics.items() if not k.startswith(f"{split}_ece")}
        meta.write_to(proto)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(out, proto.SerializeToString(), replace=replace)  # complete or absent, never through a link
        result["out"] = str(out)
    return result
