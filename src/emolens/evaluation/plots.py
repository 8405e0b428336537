"""PNG figures of an evaluation report (matplotlib, Agg backend: no display needed).

Each function takes the report dict of :func:`emolens.evaluation.metrics.classification_metrics`
(and, for the gallery, the images and probabilities) and writes one PNG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_matrices(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Counts and row-normalised confusion matrices side by side."""
    labels = report["labels"]
    k = len(labels)
    cm = np.array(report["confusion_matrix"])
    cmn = np.array(report["confusion_matrix_normalised"])
    side = 2.5 + 0.6 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, mat, title, fmt in ((axes[0], cm, "counts", "{:d}"), (axes[1], cmn, "row-normalised (recall)", "{:.2f}")):
        ax.imshow(cmn, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(k):
            for j in range(k):
                v = mat[i, j]
                ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else float(v)), ha="center", va="center",
                        fontsize=8, color="white" if cmn[i, j] > 0.5 else "black")
    fig.suptitle(f"{report.get('split', '')}: accuracy {report['accuracy']:.3f}, n={report['n']}")
    return _save(fig, path)


def roc_curves(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """One-vs-rest ROC curve of each class, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    for lab in report["labels"]:
        roc = report["roc"][lab]
        auc = report["per_class"][lab].get("auc")
        if auc is not None:
            ax.plot(roc["fpr"], roc["tpr"], label=f"{lab} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("one-vs-rest ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def reliability_diagram(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Accuracy vs. confidence per bin (bars) against the diagonal, with the share of samples per bin."""
    cal = report["calibration"]
    bins = cal["bins"]
    width = bins[0]["hi"] - bins[0]["lo"]
    centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(5.5, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    acc = [b["accuracy"] or 0.0 for b in bins]
    ax.bar(centres, acc, width=width * 0.95, color="tab:blue", edgecolor="k", label="accuracy")
    filled = [(c, b["confidence"]) for c, b in zip(centres, bins) if b["n"]]
    ax.plot([c for c, _ in filled], [v for _, v in filled], "o", color="tab:red", ms=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability: ECE {cal['ece']:.4f} ({cal['n_bins']} bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.bar(centres, [b["n"] for b in bins], width=width * 0.95, color="gray")
    ax2.set_xlabel("confidence (top-1 probability)")
    ax2.set_ylabel("samples")
    ax2.set_xlim(0, 1)
    return _save(fig, path)


def most_confident_mistakes(
    images: np.ndarray, probs: np.ndarray, y_true: np.ndarray, labels: list[str], *, top: int = 16
) -> list[int]:
    """Indices of the wrongly classified images, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:top].tolist()


def mistakes_gallery(
    images: np.ndarray, probs: np.ndarray, y_true: np.ndarray, labels: list[str], path: str | os.PathLike,
    *, top: int = 16,
) -> Path:
    """A grid of the most confident mistakes: each image with its true label and the wrong prediction."""
    idx = most_confident_mistakes(images, probs, y_true, labels, top=top)
    cols = 4
    rows = max(1, -(-len(idx) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        img = images[i]
        if img.shape[2] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img[:, :, ::-1])  # BGR -> RGB
        p = int(probs[i].argmax())
        ax.set_title(f"true {labels[y_true[i]]}\npred {labels[p]} {probs[i, p]:.0%}", fontsize=8)
    if not idx:
        axes.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("most confident mistakes")
    return _save(fig, path)
