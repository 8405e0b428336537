"""Latency of the bundled (or a given) model on this machine.

    python benchmarks/latency.py [--model PATH] [--runs 500]

1. Classification per face: ONNX Runtime with 1 thread, one face of a real photo; the time
   includes cropping every test-time-augmentation view, preprocessing, the model and softmax
   (what ``EmotionRecognizer.classify_boxes`` does), with the model's TTA and without it.
2. End to end on a 640×480 frame with one face (the sample photo, scaled): detect + crop +
   classify + draw, 1 thread, for every detector (``emolens detectors``).

The last line printed is the headline figure: p50 classification latency per face in ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from common import cpu_description
from emolens import EmotionRecognizer, load_image
from emolens.face.detect import available_detectors, create_detector
from emolens.results.draw import annotate

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "obama.jpg"


def timings(fn, runs: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def frame_640x480() -> np.ndarray:
    """A 640×480 frame with one face: the sample photo's upper part, letterboxed."""
    img = load_image(SAMPLE)
    h, w = img.shape[:2]
    top = img[: int(w * 0.75)]  # 4:3 crop from the top (the face is in the upper half)
    return cv2.resize(top, (640, 480), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an emolens .onnx model (default: the bundled one)")
    ap.add_argument("--runs", type=int, default=500)
    args = ap.parse_args()

    rec = EmotionRecognizer(args.model, threads=1)
    frame = frame_640x480()
    faces = rec.predict_bgr(frame)
    if len(faces) != 1:
        raise SystemExit(f"expected one face in the benchmark frame, found {len(faces)}")
    box = faces[0].box
    clf = rec.classifier
    m = clf.meta
    print(f"CPU: {cpu_description()}")
    print(f"model: {clf.path.name} ({m.architecture}, {clf.path.stat().st_size / 1e6:.1f} MB), input {m.input_size}px, "
          f"TTA: mirror={m.tta_hflip} scales={m.tta_scales}; ONNX Runtime 1 thread")

    # per face, as predict() does it: crop(s) + preprocessing + model + softmax + averaging of the views
    cls = timings(lambda: rec.classify_boxes(frame, [box]), args.runs)
    views = len(m.tta_scales) * (2 if m.tta_hflip else 1)
    print(f"classify 1 face ({views} views): p50 {pct(cls, 50):.3f} ms  p95 {pct(cls, 95):.3f} ms  ({args.runs} runs)")
    tta = (m.tta_hflip, m.tta_scales)
    m.tta_hflip, m.tta_scales = False, [1.0]
    single = timings(lambda: rec.classify_boxes(frame, [box]), args.runs)
    m.tta_hflip, m.tta_scales = tta
    print(f"classify 1 face (1 view, no TTA): p50 {pct(single, 50):.3f} ms  p95 {pct(single, 95):.3f} ms")

    for name in available_detectors():
        rec_e2e = EmotionRecognizer(args.model, threads=1, detector=create_detector(name))
        n = max(20, args.runs // 10)
        e2e = timings(lambda r=rec_e2e: annotate(frame, r.predict_bgr(frame)), n, warmup=3)
        med = statistics.median(e2e)
        print(f"end to end 640x480 (detect + classify + draw), detector {name:<15}: p50 {med:.1f} ms = "
              f"{1000 / med:.1f} fps  p95 {pct(e2e, 95):.1f} ms  ({n} frames)")

    print(f"classification latency per face, p50: {pct(cls, 50):.3f} ms")


if __name__ == "__main__":
    main()
