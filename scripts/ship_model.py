"""Make a model ready to ship in the package: calibrated on FER2013 val, named, and carrying its figures.

    python scripts/ship_model.py MODEL.onnx --name emolens-NAME --out src/emolens/assets/FILE.onnx
                                 [--class-bias] [--fer ../shared/datasets/fer2013] [--wild ../shared/datasets/wild]

1. Fit the softmax temperature (``--class-bias``: and a bias per class) on all of FER2013 val (``emolens
   calibrate``): the copy stores val accuracy,
   macro-F1, ECE and the cross-fitted ECE at that temperature.
2. Store, as ``val_sample_accuracy``, the accuracy on the first 20 val faces of each class (the shipped-model
   test reproduces it), and the wild val figures: as crops and end to end with the default detector.
3. A model without a landmark template (an ensemble, a net exported from a checkpoint) gets FER2013's:
   every emolens net here was trained on FER2013's framing.
4. Write ``--out`` with ``--name`` (never over an existing file: remove the old one first, on purpose).

Prints every figure it stores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

from emolens.classify import Classifier
from emolens.evaluation.calibration import calibrate_model
from emolens.evaluation.metrics import evaluate_model
from emolens.face.align import FER2013_TEMPLATE
from emolens.training.export import restamp

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLE_PER_CLASS = 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--wild", type=Path, default=SHARED / "wild")
    ap.add_argument("--class-bias", action="store_true", help="calibrate a bias per class too (emolens calibrate)")
    args = ap.parse_args()
    if args.out.exists():
        print(f"ship_model.py: error: {args.out} exists; remove it first if it is to be replaced", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        cal = Path(tmp) / "calibrated.onnx"
        r = calibrate_model(args.model, args.fer, "val", out=cal, class_bias=args.class_bias)
        print(f"temperature {r['temperature']:.4f}, bias {r['logit_bias']}: "
              f"ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f} "
              f"(cross-fitted {r['ece_cross_fitted']:.4f}); val accuracy {r['accuracy_after']:.4f}")
        sample = evaluate_model(cal, args.fer, "val", limit_per_class=SAMPLE_PER_CLASS).report
        crops = evaluate_model(cal, args.wild, "val").report
        e2e = evaluate_model(cal, args.wild, "val", detect=True).report
        metrics = {
            "val_sample_accuracy": round(sample["accuracy"], 4),
            "wild_val_crops_accuracy": round(crops["accuracy"], 4),
            "wild_val_crops_macro_f1": round(crops["macro_f1"], 4),
            "wild_val_end_to_end_accuracy": round(e2e["accuracy"], 4),
            "wild_val_end_to_end_macro_f1": round(e2e["macro_f1"], 4),
        }
        for k, v in metrics.items():
            print(f"{k}: {v}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        framed = Path(tmp) / "framed.onnx"
        proto = onnx.load(str(cal))
        meta = Classifier(cal).meta
        if meta.landmark_template is None:
            meta.landmark_template = [list(p) for p in FER2013_TEMPLATE]
        meta.write_to(proto)
        onnx.save(proto, str(framed))
        print(f"wrote {restamp(framed, args.out, name=args.name, metrics=metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
