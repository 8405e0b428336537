"""Metrics of an exported model on a labelled folder split, computed with scikit-learn.

The model is run through :class:`emolens.EmotionRecognizer` (ONNX Runtime), exactly as
``emolens predict --no-detect`` runs it, so the numbers describe what users get.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ..detect.base import Box
from ..recognizer import EmotionRecognizer
from ..training.data import load_folder_split


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=idx, average="weighted", zero_division=0)),
        "per_class": {
            lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }


def evaluate_model(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    split: str = "val",
    *,
    limit_per_class: int | None = None,
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class table and confusion matrix of an ONNX model on
    ``<data>/<split>/<class>/*`` (class folders must use the model's label names, after normalisation).

    Each image is one face, classified exactly as ``emolens predict --no-detect`` does it
    (including the model's test-time augmentation)."""
    rec = EmotionRecognizer(model)
    clf = rec.classifier
    m = clf.meta
    # keep the images at their own size when they are small (FER2013: 48×48), so every view is cut
    # from the real pixels; larger images are reduced to 4× the model's input size to save memory
    ds = load_folder_split(data, split, size=max(m.input_size, _common_size(data, split, 4 * m.input_size)),
                           channels=m.channels, classes=clf.labels, limit_per_class=limit_per_class)
    side = ds.images.shape[1]
    whole = [Box(0, 0, side, side)]
    probs = np.array([[f.scores[lab] for lab in clf.labels] for img in ds.images
                      for f in rec.classify_boxes(img, whole)])
    report = classification_metrics(ds.labels, probs.argmax(1), clf.labels)
    report.update(model=str(clf.path), data=str(data), split=split, skipped=[f for f, _ in ds.skipped])
    return report


def _common_size(data: str | os.PathLike, split: str, cap: int) -> int:
    """The side of the first image found in the split, capped (datasets like FER2013 share one size)."""
    import cv2

    for f in sorted(Path(data, split).glob("*/*")):
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            return min(cap, max(img.shape))
    return cap


def format_report(report: dict[str, Any]) -> str:
    """Markdown: headline numbers, the per-class table and the confusion matrix."""
    labels = report["labels"]
    lines = [
        f"**{report.get('split', '')}** ({report['n']} images): accuracy **{report['accuracy']:.4f}**, "
        f"macro-F1 {report['macro_f1']:.4f}, weighted-F1 {report['weighted_f1']:.4f}",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for lab in labels:
        c = report["per_class"][lab]
        lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    lines += ["", "Confusion matrix (rows = true, columns = predicted):", "",
              "| true \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)
