"""Accuracy by number of test-time views, for one model or the mean of several (an ensemble).

    python benchmarks/views.py MODEL [MODEL ...] [--data ../shared/datasets/fer2013] [--split val]

Each model classifies every face of the split as ``emolens predict --no-detect`` does, with its views
set to 1 (the crop), 2 (+ its mirror image) and 4 (+ a 1.1× wider crop, also mirrored), at temperature
1. With several models, their mean probability is scored too: what ``emolens export A.onnx B.onnx
[--tta-scales 1.0 | --tta-hflip] --out ens.onnx`` would give, without building each variant. Prints
accuracy, macro-F1 and disgust recall per row; the last line is the best row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emolens import EmotionRecognizer
from emolens.evaluation.metrics import classification_metrics, load_faces
from emolens.face.detect.base import Box

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"
VIEWS = {1: (False, [1.0]), 2: (True, [1.0]), 4: (True, [1.0, 1.1])}


def view_probs(model: str, data: Path, split: str) -> tuple[dict[int, np.ndarray], np.ndarray, list[str]]:
    """{views: N×K probabilities}, true labels and label names of one model on one split."""
    rec = EmotionRecognizer(model, threads=1)
    meta = rec.classifier.meta
    meta.temperature = 1.0
    _, ds, images = load_faces(rec, data, split)
    whole = [Box(0, 0, images.shape[2], images.shape[1])]
    out = {}
    for n, (hflip, scales) in VIEWS.items():
        meta.tta_hflip, meta.tta_scales = hflip, scales
        out[n] = np.array([[f.scores[lab] for lab in rec.classifier.labels]
                           for img in images for f in rec.classify_boxes(img, whole)])
    return out, ds.labels, rec.classifier.labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="val")
    args = ap.parse_args(argv)
    try:
        runs = [view_probs(m, args.data, args.split) for m in args.models]
    except (ValueError, FileNotFoundError) as e:
        print(f"views.py: error: {e}", file=sys.stderr)
        return 2
    y, labels = runs[0][1], runs[0][2]
    if any(r[2] != labels or not np.array_equal(r[1], y) for r in runs[1:]):
        print("views.py: error: the models do not share their labels", file=sys.stderr)
        return 2
    rows = [(Path(m).name, r[0]) for m, r in zip(args.models, runs)]
    if len(runs) > 1:
        rows.append(("mean of all", {n: np.mean([r[0][n] for r in runs], axis=0) for n in VIEWS}))
    best = None
    for name, probs in rows:
        for n, p in probs.items():
            r = classification_metrics(y, p.argmax(1), labels, p)
            dis = r["per_class"].get("disgust", {}).get("recall", float("nan"))
            line = (f"{name} {n} view(s): accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}  "
                    f"disgust recall {dis:.3f}")
            print(line)
            if best is None or r["accuracy"] > best[0]:
                best = (r["accuracy"], line)
    print(f"best: {best[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
