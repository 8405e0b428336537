"""Metrics of an exported model on a labelled dataset split, computed with scikit-learn.

The model is run through :class:`emolens.EmotionRecognizer` (ONNX Runtime), exactly as
``emolens predict --no-detect`` runs it, so the numbers describe what users get.
Plots live in :mod:`emolens.evaluation.plots`, files in :mod:`emolens.evaluation.report`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from ..classify import bundled_model_path, is_bundled_name
from ..face.detect import DEFAULT_DETECTOR
from ..face.detect.base import Box
from ..hub import is_hub
from ..recognizer import DEFAULT_ALIGN, EmotionRecognizer
from ..training.data import MANIFEST_NAME, DataSource, open_source

ECE_BINS = 15


def calibration(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error of the top-1 confidence over ``n_bins`` equal-width bins, and the
    bins themselves (for the reliability diagram): ECE = Σ |accuracy - confidence| × share of samples."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        n = int(m.sum())
        acc = float(correct[m].mean()) if n else None
        mean_conf = float(conf[m].mean()) if n else None
        if n:
            ece += abs(acc - mean_conf) * n / len(y_true)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
                     "accuracy": acc, "confidence": mean_conf})
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}


def headline_metrics(report: dict[str, Any], split: str) -> dict[str, float]:
    """What a model's metadata stores about a split, from a :func:`classification_metrics` report (or an
    `emolens evaluate` report.json): ``{split}_accuracy``, ``_macro_f1``, ``_weighted_f1`` and, when
    measured, ``_ece``, rounded to 4 places."""
    out = {f"{split}_{k}": round(float(report[k]), 4) for k in ("accuracy", "macro_f1", "weighted_f1")}
    if report.get("ece") is not None:
        out[f"{split}_ece"] = round(float(report["ece"]), 4)
    return out


def roc_per_class(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC curve and AUC of each class (``None`` where the class has no positives or no negatives)."""
    out: dict[str, dict[str, Any]] = {}
    for i, lab in enumerate(labels):
        pos = y_true == i
        if pos.all() or not pos.any():
            out[lab] = {"auc": None, "fpr": [], "tpr": []}
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, i])
        out[lab] = {"auc": float(roc_auc_score(pos, probs[:, i])), "fpr": fpr.tolist(), "tpr": tpr.tolist()}
    return out


def confused_pairs(cm: np.ndarray, labels: list[str], top: int = 5) -> list[dict[str, Any]]:
    """The off-diagonal cells with the most samples: (true, predicted, count, share of the true class)."""
    rows = cm.sum(1)
    cells = [(int(cm[i, j]), i, j) for i in range(len(labels)) for j in range(len(labels)) if i != j and cm[i, j]]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [{"true": labels[i], "predicted": labels[j], "count": n, "share_of_true": n / rows[i]}
            for n, i, j in cells[:top]]


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], probs: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix (counts and
    row-normalised) and the most confused pairs; with ``probs`` also per-class ROC AUC and calibration."""
    idx = list(range(len(labels)))
    # macro averages run over the classes the data has: a class with no images (CK+ has no neutral) is not a 0
    present = sorted({int(y) for y in y_true})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=idx)
    rows = cm.sum(1, keepdims=True)
    report: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "classes_present": [labels[i] for i in present],
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "labels": labels,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalised": np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0).round(4).tolist(),
        "most_confused": confused_pairs(cm, labels),
    }
    if probs is not None:
        roc = roc_per_class(y_true, probs, labels)
        for lab in labels:
            report["per_class"][lab]["auc"] = roc[lab]["auc"]
        aucs = [v["auc"] for v in roc.values() if v["auc"] is not None]
        report["macro_auc"] = float(np.mean(aucs)) if aucs else None
        report["roc"] = {lab: {"fpr": v["fpr"], "tpr": v["tpr"]} for lab, v in roc.items()}
        report["calibration"] = calibration(probs, y_true)
        report["ece"] = report["calibration"]["ece"]
    return report


@dataclass
class Evaluation:
    """A model's report on a split, with what the plots need: probabilities, images, true labels."""

    report: dict[str, Any]
    probs: np.ndarray
    y_true: np.ndarray
    images: np.ndarray  # uint8 N×H×W×C as classified (gray, or BGR for colour models)
    files: list[str]
    found: np.ndarray | None = None  # with detection: which pictures had a face (the others have no probs)
    written: list[Path] = field(default_factory=list)  # the report's files, when it was written


def resolve_model(model: str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """(``.onnx`` path or None for the bundled model, run folder or None) of a model argument:
    ``None``/``"default"``, ``"fast"`` (the bundled models), an ``.onnx`` file, or a run folder holding
    ``model.onnx``."""
    if model is None or str(model) == "default":
        return None, None
    if is_bundled_name(model):
        return bundled_model_path(str(model)), None
    if is_hub(model):
        from ..hub import HubError, download

        try:
            return download(str(model)), None
        except HubError as e:
            raise FileNotFoundError(str(e)) from None
    p = Path(model)
    if p.is_dir():
        if not (p / "model.onnx").is_file():
            raise FileNotFoundError(f"{p}: a folder without model.onnx (give an .onnx file or a run folder)")
        return p / "model.onnx", p
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such model (give an .onnx file, a run folder, or 'default' or 'fast')")
    run = p.parent if (p.parent / MANIFEST_NAME).is_file() else None
    return p, run


def open_eval_source(data: str | os.PathLike, run: Path | None) -> DataSource:
    """The dataset to evaluate on. For a run trained on flat class folders (or a CSV without Usage),
    the split stored in the run folder is reused when ``data`` is the dataset it was drawn from;
    for data elsewhere (a moved copy) the split is drawn again with the run's seed and fractions."""
    seed, fractions = 0, (0.7, 0.15, 0.15)
    if run is not None and (run / MANIFEST_NAME).is_file():
        try:
            doc = json.loads((run / MANIFEST_NAME).read_text())
            seed, fractions = int(doc.get("seed", seed)), tuple(doc.get("fractions", fractions))
            root = Path(doc["path"])
        except (OSError, ValueError, KeyError, TypeError):
            doc, root = {}, None
        if "items" in doc and root is not None and root.exists() and Path(data).resolve() == root.resolve():
            return open_source(run)
    return open_source(data, split_seed=seed, fractions=fractions)


def evaluate_model(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    split: str = "val",
    *,
    limit_per_class: int | None = None,
    log=None,
    detect: bool = False,
    detector: str = DEFAULT_DETECTOR,
    align: str = DEFAULT_ALIGN,
    skip_unknown: bool = False,
    progress: Callable[[int, int], None] | None = None,
    votes: str | os.PathLike | None = None,
) -> Evaluation:
    """Evaluate an emolens ONNX model (path, run folder, or ``None``/``"default"`` for the bundled one)
    on one split of any dataset :func:`emolens.training.data.open_source` reads (class names must be
    the model's labels, after normalisation; with ``skip_unknown`` images of other classes are left out).

    Without ``detect`` each image is one face, classified exactly as ``emolens predict --no-detect`` does
    it (including the model's test-time augmentation). With ``detect`` each picture goes through the
    detector and alignment as ``emolens predict`` does, and its largest face is scored; a picture where no
    face is found counts as wrong (``report["detection"]`` says how many were found; ROC and calibration
    are over the found faces). ``progress(done, total)`` is called as the images are scored.

    With ``votes`` (a votes CSV, :mod:`emolens.training.votes`) the truth is each face's majority vote instead
    of its folder: faces whose top vote is tied, or is not one of the model's labels (FER+'s contempt, unknown,
    not-a-face), or that have no row are left out, and ``report["votes"]`` counts them."""
    if votes is not None and detect:
        raise ValueError("--votes scores face crops against their annotators' majority; leave out --detect")
    votes_table = None
    if votes is not None:  # read first: a bad CSV fails before the slow part
        from ..training.votes import read_votes

        votes_table = read_votes(votes, roots=[data])
    onnx_path, run = resolve_model(model)
    rec = EmotionRecognizer(onnx_path, detector=detector, align=align)
    tick = progress or (lambda done, total: None)
    if detect:
        return _evaluate_detected(rec, data, split, run=run, limit_per_class=limit_per_class, log=log,
                                  skip_unknown=skip_unknown, progress=tick)
    clf = rec.classifier
    source, ds, images = load_faces(rec, data, split, run=run, limit_per_class=limit_per_class, log=log,
                                    skip_unknown=skip_unknown)
    whole = [Box(0, 0, images.shape[2], images.shape[1])]
    rows = []
    for i, img in enumerate(images):
        rows += [[f.scores[lab] for lab in clf.labels] for f in rec.classify_boxes(img, whole)]
        tick(i + 1, len(images))
    probs = np.array(rows)
    y_true, files, votes_info = ds.labels, ds.files, None
    if votes_table is not None:
        majority, left = votes_table.majority(ds.files, clf.labels)
        keep = majority >= 0
        if not keep.any():
            raise ValueError(f"votes {votes}: none of the {len(keep)} faces of {data} [{split}] has a majority vote "
                             f"among the model's labels (left out: {_left_text(left)})")
        votes_info = {"file": str(votes), "scored": int(keep.sum()), "total": int(len(keep)), "left_out": left,
                      "folder_label_agrees": float((ds.labels[keep] == majority[keep]).mean())}
        y_true, probs, images = majority[keep], probs[keep], images[keep]
        files = [f for f, k in zip(ds.files, keep) if k]
    report = classification_metrics(y_true, probs.argmax(1), clf.labels, probs)
    report.update(model=str(clf.path), data=str(data), split=split, source=source.kind,
                  skipped=[f for f, _ in ds.skipped], model_info=model_info(clf.path))
    if votes_info is not None:
        report["votes"] = votes_info
    return Evaluation(report, probs, y_true, images, files)


def _left_text(left: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(left.items())) or "none"


def _evaluate_detected(rec: EmotionRecognizer, data: str | os.PathLike, split: str, *, run: Path | None,
                       limit_per_class: int | None, log, skip_unknown: bool,
                       progress: Callable[[int, int], None]) -> Evaluation:
    from ..classify import preprocess
    from ..imageio import ImageError

    clf = rec.classifier
    source = open_eval_source(data, run)
    if source.kind == "csv":
        raise ValueError(f"{data}: --detect needs pictures (image folders); a CSV holds face crops only")
    items = _known_items(source, split, clf.labels, skip_unknown, limit_per_class, log)
    index = {c: i for i, c in enumerate(clf.labels)}
    k = len(clf.labels)
    y, probs, found, thumbs, files, skipped = [], [], [], [], [], []
    for done, (ref, cls) in enumerate(items):
        progress(done, len(items))
        try:
            bgr = rec.load(str(ref))
        except ImageError as e:
            skipped.append(str(ref))
            (log or (lambda m: None))(f"skipped ({split}): {e}")
            continue
        faces = rec.predict_bgr(bgr)
        y.append(index[cls])
        files.append(str(ref))
        found.append(bool(faces))
        if faces:
            face = faces[0]  # largest first
            probs.append([face.scores[lab] for lab in clf.labels])
            crop = rec.view_crops(bgr, [face.box])[0]
        else:
            probs.append([1.0 / k] * k)
            crop = bgr
        x = preprocess([crop], clf.meta)[0]  # the network's view, back to pixels for the mistakes gallery
        mean = np.asarray(clf.meta.mean_array(), np.float32).reshape(-1, 1, 1)
        std = np.asarray(clf.meta.std_array(), np.float32).reshape(-1, 1, 1)
        thumbs.append(np.clip(((x * std + mean) * 255).round(), 0, 255).astype(np.uint8).transpose(1, 2, 0))
    progress(len(items), len(items))
    if not y:
        raise ValueError(f"{data} [{split}]: none of the pictures could be read")
    y_true, p, ok = np.array(y), np.array(probs, dtype=np.float32), np.array(found)
    pred = np.where(ok, p.argmax(1), -1)  # -1: no face, wrong whatever the label
    report = classification_metrics(y_true, pred, clf.labels)
    if ok.any():
        scored = classification_metrics(y_true[ok], p[ok].argmax(1), clf.labels, p[ok])
        for key in ("roc", "calibration", "ece", "macro_auc"):
            report[key] = scored[key]
        for lab in clf.labels:
            report["per_class"][lab]["auc"] = scored["per_class"][lab]["auc"]
        report["found_accuracy"] = scored["accuracy"]
    else:
        raise ValueError(f"{data} [{split}]: no face found in any of the {len(ok)} pictures")
    report["detection"] = {"detector": _detector_name(rec), "align": rec.align, "found": int(ok.sum()),
                           "total": int(len(ok)), "missed": [f for f, hit in zip(files, ok) if not hit]}
    report.update(model=str(clf.path), data=str(data), split=split, source=source.kind, skipped=skipped,
                  model_info=model_info(clf.path))
    images = np.stack(thumbs)
    return Evaluation(report, np.where(ok[:, None], p, 0.0).astype(np.float32), y_true, images, files, found=ok)


def _detector_name(rec: EmotionRecognizer) -> str:
    return str(getattr(rec, "detector_name", None) or getattr(rec.detector, "name", type(rec.detector).__name__))


def _known_items(source: DataSource, split: str, labels: list[str], skip_unknown: bool,
                 limit_per_class: int | None, log) -> list[tuple[Any, str]]:
    """The (file, class) items of a split whose classes the model knows; other classes are an error
    unless ``skip_unknown`` (then they are left out, and ``log`` says how many)."""
    entries = source._items_of(split)
    unknown = sorted({c for _, c in entries} - set(labels))
    if unknown and not skip_unknown:
        raise ValueError(unknown_classes_message(source.path, split, unknown, labels))
    if unknown and log:
        n = sum(c in unknown for _, c in entries)
        log(f"{source.path} [{split}]: left out {n} image(s) of class(es) {unknown} the model does not know")
    taken: dict[str, int] = {}
    out = []
    for ref, c in entries:
        if c in unknown:
            continue
        if limit_per_class is not None:
            if taken.get(c, 0) >= limit_per_class:
                continue
            taken[c] = taken.get(c, 0) + 1
        out.append((ref, c))
    if not out:
        raise ValueError(f"{source.path} [{split}]: no images of the model's classes {labels}")
    return out


def unknown_classes_message(path: Any, split: str, unknown: list[str], labels: list[str]) -> str:
    return (f"{path} [{split}]: class(es) {unknown} are not among the model's labels {labels}; "
            "pass --skip-unknown to leave their images out")


def load_faces(rec: EmotionRecognizer, data: str | os.PathLike, split: str, *, run: Path | None = None,
               limit_per_class: int | None = None, log=None, skip_unknown: bool = False
               ) -> tuple[DataSource, Any, np.ndarray]:
    """One split of a dataset as the recogniser's model takes it: (source, dataset, uint8 N×H×W×C images,
    gray or BGR). Each image is one face crop, classified with the box ``(0, 0, W, H)``."""
    clf = rec.classifier
    m = clf.meta
    source = open_eval_source(data, run)
    # keep the images at their own size when they are small (FER2013: 48×48), so every view is cut
    # from the real pixels; larger images are reduced to 2× the model's input size to save memory
    native = source.peek_size(split) or m.input_size
    size = max(m.input_size, min(native, 2 * m.input_size))
    unknown = sorted(set(source.classes(split)) - set(clf.labels))
    if unknown and not skip_unknown:
        raise ValueError(unknown_classes_message(source.path, split, unknown, clf.labels))
    ds = source.load(split, size=size, channels=m.channels, classes=clf.labels,
                     limit_per_class=limit_per_class, log=log, skip_classes=unknown)
    images = ds.images if m.channels == 1 else np.ascontiguousarray(ds.images[..., ::-1])  # RGB -> BGR
    return source, ds, images


def model_info(path: str | os.PathLike) -> dict[str, Any]:
    """Size on disk, parameter count (ONNX initialisers) and architecture of an ONNX model."""
    import onnx

    from ..modelmeta import META_KEY, ModelMeta

    path = Path(path)
    info: dict[str, Any] = {"file": str(path), "size_mb": round(path.stat().st_size / 1e6, 2)}
    try:
        proto = onnx.load(str(path), load_external_data=False)
        info["params"] = int(sum(int(np.prod(t.dims)) for t in proto.graph.initializer))
        meta = {p.key: p.value for p in proto.metadata_props}
        if META_KEY in meta:
            mm = ModelMeta.from_json(meta[META_KEY])
            info.update(architecture=mm.architecture, input_size=mm.input_size, channels=mm.channels)
    except Exception:  # noqa: BLE001 - the info is a courtesy; the evaluation itself already worked
        pass
    return info
