"""Models side by side on every labelled set we have, as users run them (ONNX Runtime, each model's own
test-time views and temperature), and the choice the README's rule makes.

    python benchmarks/accuracy.py [MODEL ...] [--fer ../shared/datasets/fer2013] [--wild ../shared/datasets/wild]
                                  [--split val] [--limit-per-class N] [--runs 200]

MODEL: an .onnx file, a run folder, ``default`` (the bundled model) or ``fast`` (its int8 copy); ``default``
when none is given. For each model, three evaluations (``emolens.evaluation.metrics.evaluate_model``):

* FER2013 val: the 48×48 crops as given (``--no-detect``);
* wild val as crops: each real press photo taken whole as the face;
* wild val end to end (``--detect``): the default detector finds the face, a picture with no face is wrong;

each with accuracy, macro-F1, ECE (15 bins) and the recall of every class; and the milliseconds to classify
one face (p50, one ONNX Runtime thread, the model's own views; a face of examples/obama.jpg). Nothing is
written.

The rule (README, "Choosing the default"): score = the mean of FER2013 val accuracy and wild val end-to-end
accuracy; among the models no slower per face than the first one given (the reference, e.g. today's
default) and with FER2013 val disgust recall >= 0.5, the highest score wins. The last line names it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from common import cpu_description
from emolens import EmotionRecognizer, load_image
from emolens.classify import ModelError
from emolens.evaluation.metrics import evaluate_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "obama.jpg"
DISGUST_RECALL_FLOOR = 0.5


def ms_per_face(model: str, runs: int) -> float:
    rec = EmotionRecognizer(model, threads=1)
    img = load_image(SAMPLE)
    box = rec.detector.detect(img)[:1]
    for _ in range(10):
        rec.classify_boxes(img, box)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rec.classify_boxes(img, box)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(model: str, args: argparse.Namespace) -> dict:
    row: dict = {"model": model}
    sets = (("fer", args.fer, False), ("crops", args.wild, False), ("e2e", args.wild, True))
    for key, data, detect in sets:
        r = evaluate_model(model, data, args.split, limit_per_class=args.limit_per_class, detect=detect).report
        row[key] = {"acc": r["accuracy"], "f1": r["macro_f1"], "ece": r["ece"],
                    "recall": {lab: c["recall"] for lab, c in r["per_class"].items()}}
        if detect:
            row[key]["found"] = f"{r['detection']['found']}/{r['detection']['total']}"
    row["ms"] = ms_per_face(model, args.runs)
    row["score"] = (row["fer"]["acc"] + row["e2e"]["acc"]) / 2
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["default"])
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--wild", type=Path, default=SHARED / "wild")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit-per-class", type=int)
    ap.add_argument("--runs", type=int, default=200, help="timed runs for ms a face")
    args = ap.parse_args(argv)
    for p in (args.fer, args.wild):
        if not p.is_dir():
            print(f"accuracy.py: error: {p}: no such folder", file=sys.stderr)
            return 2
    print(f"CPU: {cpu_description()}")
    rows = []
    for m in args.models:
        t = time.perf_counter()
        try:
            rows.append(measure(m, args))
        except (ModelError, ValueError, FileNotFoundError) as e:
            print(f"accuracy.py: error: {m}: {e}", file=sys.stderr)
            return 2
        print(f"  measured {m} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    ref = rows[0]
    w = max(12, *(len(r["model"]) for r in rows))
    print(f"\n{'model':<{w}}  {'ms/face':>7} {'x ref':>5} | {'FER val':>7} {'F1':>5} {'ECE':>5} {'disg.':>5} | "
          f"{'wild crops':>10} {'F1':>5} | {'wild e2e':>8} {'F1':>5} {'found':>7} | {'score':>6}")
    for r in rows:
        print(f"{r['model']:<{w}}  {r['ms']:7.2f} {r['ms'] / ref['ms']:5.2f} | {r['fer']['acc']:7.4f} "
              f"{r['fer']['f1']:5.3f} {r['fer']['ece']:5.3f} {r['fer']['recall']['disgust']:5.3f} | "
              f"{r['crops']['acc']:10.4f} {r['crops']['f1']:5.3f} | {r['e2e']['acc']:8.4f} {r['e2e']['f1']:5.3f} "
              f"{r['e2e']['found']:>7} | {r['score']:6.4f}")
    print("\nrecall per class (FER val / wild crops / wild end to end):")
    for r in rows:
        for key in ("fer", "crops", "e2e"):
            print(f"  {r['model']:<{w}} {key:<5} " + ", ".join(f"{lab} {v:.3f}" for lab, v in r[key]["recall"].items()))
    eligible = [r for r in rows
                if r["ms"] <= ref["ms"] * 1.05 and r["fer"]["recall"]["disgust"] >= DISGUST_RECALL_FLOOR]
    if not eligible:
        print(f"no model is within the reference's time (+5% timing noise) with FER val disgust recall >= "
              f"{DISGUST_RECALL_FLOOR}")
        return 1
    best = max(eligible, key=lambda r: r["score"])
    print(f"best by the rule: {best['model']} score {best['score']:.4f} (FER val {best['fer']['acc']:.4f}, "
          f"wild crops {best['crops']['acc']:.4f}, wild end to end {best['e2e']['acc']:.4f}, "
          f"{best['ms']:.2f} ms a face)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
