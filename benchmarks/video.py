"""Video speed, per stage, on one CPU core.

    python benchmarks/video.py [--frames 300] [--detector centerface-fast] [--detect-every 5] [--cores 1] [--threads 1]

(Detector accuracy on the real photos: ``benchmarks/detect.py``.)

1. A 640×480, 30 fps clip is generated from the sample photo (examples/obama.jpg): the head moves
   across the frame and grows and shrinks (written as MPEG-4 Part 2 .mp4 in a temporary folder).
2. It is read back and recognised the way ``emolens video`` does it (:class:`emolens.video.FrameTracker`):
   full face search every ``--detect-every`` frames, a local search around the known face in between,
   classification and smoothing on every frame, overlays drawn on every frame. The process is pinned
   to ``--cores`` CPU cores; OpenCV uses one thread, ONNX Runtime ``--threads`` (default 1, what
   ``emolens video`` and ``emolens webcam`` use: more threads than cores only add contention).
3. Per stage, the mean time per frame; writing the annotated video is timed too but is not part of
   the end-to-end figure (decode, detect, classify, track, draw), which is printed last.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from common import cpu_description
from emolens import EmotionRecognizer, load_image
from emolens.face.detect import FAST_DETECTOR, Box, Detector, create_detector
from emolens.video import FrameTracker, draw_faces, local_detector_for
from emolens.video.track import count_switches

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "obama.jpg"

class Stopwatch:
    """Accumulated seconds and calls."""

    def __init__(self) -> None:
        self.s, self.n = 0.0, 0

    def ms(self, frames: int) -> float:
        return self.s / max(1, frames) * 1000


class TimedDetector:
    """A detector that adds its time to a stopwatch."""

    def __init__(self, inner: Detector, watch: Stopwatch) -> None:
        self.inner, self.watch, self.name = inner, watch, getattr(inner, "name", "detector")

    def detect(self, image: np.ndarray) -> list[Box]:
        t = time.perf_counter()
        try:
            return self.inner.detect(image)
        finally:
            self.watch.s += time.perf_counter() - t
            self.watch.n += 1


def head_crop(photo: Path) -> np.ndarray:
    """The photo's largest face with a margin of 0.6 face sizes around it."""
    img = load_image(photo)
    faces = create_detector().detect(img)
    if not faces:
        raise SystemExit(f"{photo}: no face found to build the clip from")
    b = faces[0].expand(0.6, img.shape[1], img.shape[0])
    return img[b.y : b.y + b.h, b.x : b.x + b.w]


def clip_frame(head: np.ndarray, i: int, n: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """Frame ``i`` of ``n``: the head on a plain background, moving left-right and up-down, 30-80% of the height."""
    w, h = size
    frame = np.full((h, w, 3), (90, 110, 120), np.uint8)
    s = 0.55 + 0.25 * math.sin(2 * math.pi * i / n)
    hh = int(h * s)
    hw = int(head.shape[1] * hh / head.shape[0])
    hd = cv2.resize(head, (hw, hh), interpolation=cv2.INTER_AREA)
    cx = w / 2 + 0.23 * w * math.sin(3 * math.pi * i / n)
    cy = h / 2 + 0.08 * h * math.cos(2 * math.pi * i / n)
    x0, y0 = int(cx - hw / 2), int(cy - hh / 2)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + hw), min(h, y0 + hh)
    frame[ya:yb, xa:xb] = hd[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return frame


def write_clip(path: Path, photo: Path, frames: int, fps: float = 30.0) -> None:
    head = head_crop(photo)
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not wr.isOpened():
        raise SystemExit(f"cannot write {path}")
    for i in range(frames):
        wr.write(clip_frame(head, i, frames))
    wr.release()


def pin_cores(n: int) -> str:
    if n > 0 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[:n]
        os.sched_setaffinity(0, cores)
        return f"pinned to core(s) {cores}"
    return "not pinned"


def bench_speed(args: argparse.Namespace) -> None:
    pinned = pin_cores(args.cores)
    cv2.setNumThreads(1)
    det_w, cls_w = Stopwatch(), Stopwatch()
    inner = create_detector(args.detector)
    rec = EmotionRecognizer(threads=args.threads, detector=TimedDetector(inner, det_w))
    classify = rec.classify_boxes

    def timed_classify(frame: np.ndarray, boxes: list[Box]):
        t = time.perf_counter()
        try:
            return classify(frame, boxes)
        finally:
            cls_w.s += time.perf_counter() - t
            cls_w.n += 1

    rec.classify_boxes = timed_classify  # type: ignore[method-assign]
    ft = FrameTracker(rec, detect_every=args.detect_every,
                      local_detector=TimedDetector(local_detector_for(inner), det_w))
    labels = rec.labels
    with tempfile.TemporaryDirectory() as tmp:
        clip, out = Path(tmp) / "clip.mp4", Path(tmp) / "out.mp4"
        write_clip(clip, Path(args.photo), args.frames)
        cap = cv2.VideoCapture(str(clip))
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
        dec = proc = draw = enc = 0.0
        n = found = full = 0
        ids: set[int] = set()
        shown: list[str] = []
        raw: list[str] = []
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            t1 = time.perf_counter()
            if not ok:
                break
            r = ft.process(frame, n, n / 30.0)
            t2 = time.perf_counter()
            draw_faces(frame, r.faces, labels=labels)
            t3 = time.perf_counter()
            writer.write(frame)
            t4 = time.perf_counter()
            dec, proc, draw, enc = dec + t1 - t0, proc + t2 - t1, draw + t3 - t2, enc + t4 - t3
            n += 1
            found += bool(r.faces)
            full += r.detected
            ids.update(f.id for f in r.faces)
            for f in r.faces[:1]:
                if f.found:  # a held face has no raw scores of its own
                    shown.append(f.label)
                    raw.append(max(f.raw_scores, key=f.raw_scores.get))
        writer.release()
        cap.release()
    track = proc - det_w.s - cls_w.s
    e2e = dec + proc + draw
    print(f"clip: {n} frames 640x480 from {Path(args.photo).name}, detector {args.detector}, full search every "
          f"{args.detect_every} frames ({full} full searches), face found in {found}/{n} frames, "
          f"face ids {sorted(ids)}; {pinned}, OpenCV 1 thread, ONNX Runtime {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"CPU: {cpu_description()}")
    rows = [("decode", dec), ("detect (full + local)", det_w.s), ("classify", cls_w.s),
            ("track + smooth", track), ("draw", draw)]
    for name, s in rows:
        ms = s / n * 1000
        print(f"  {name:<22} {ms:7.2f} ms/frame  ({1000 / ms if ms > 0 else float('inf'):8.1f} fps alone)")
    print(f"  {'(write mp4v, not in e2e)':<22} {enc / n * 1000:7.2f} ms/frame")
    print(f"label changes of the largest face: {count_switches(raw)} frame by frame, "
          f"{count_switches(shown)} smoothed (as shown)")
    print(f"end to end (decode, detect, classify, track, draw): {e2e / n * 1000:.2f} ms/frame = {n / e2e:.1f} fps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--detector", default=FAST_DETECTOR)
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--photo", default=str(SAMPLE), help="photo the clip is made from")
    ap.add_argument("--cores", type=int, default=1, help="pin to this many CPU cores (0 = do not pin)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default: 1)")
    args = ap.parse_args()
    bench_speed(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
