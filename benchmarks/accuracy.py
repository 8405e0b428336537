"""Accuracy of an emolens model on a labelled split, as users get it (ONNX Runtime, the model's own
test-time augmentation and temperature).

    python benchmarks/accuracy.py [MODEL] [--data ../shared/datasets/fer2013] [--split val]

MODEL: an .onnx file, a run folder, or ``default`` (the bundled model; also when left out).
Prints the per-class recall, ECE (15 bins), model size and time, and last the headline:
accuracy and macro-F1. Nothing is written; ``emolens evaluate`` writes the full report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emolens.evaluation.metrics import evaluate_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default="default")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit-per-class", type=int)
    args = ap.parse_args(argv)

    t = time.perf_counter()
    try:
        ev = evaluate_model(args.model, args.data, args.split, limit_per_class=args.limit_per_class)
    except (ValueError, FileNotFoundError) as e:
        print(f"accuracy.py: error: {e}", file=sys.stderr)
        return 2
    r = ev.report
    info = r.get("model_info", {})
    print(f"model {r['model']} ({info.get('architecture', '?')}, {info.get('size_mb', '?')} MB), "
          f"{args.split} of {args.data}: {r['n']} images, {time.perf_counter() - t:.0f} s")
    print("recall per class: " + ", ".join(f"{lab} {c['recall']:.3f}" for lab, c in r["per_class"].items()))
    print(f"ECE {r['ece']:.4f}, weighted-F1 {r['weighted_f1']:.4f}, macro ROC AUC {r['macro_auc']:.4f}")
    print(f"accuracy {r['accuracy']:.4f}  macro-F1 {r['macro_f1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
