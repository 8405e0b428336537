"""Face detectors side by side: found / missed / false faces on ../shared/photos, faces found on the wild
val set, and time per 640×480 frame on one core — each as a ratio to Haar measured in the same run.

    python benchmarks/detect.py [--photos ../shared/photos] [--wild ../shared/datasets/wild/val]
                                [--detectors centerface centerface-fast haar haar-fast] [--draw OUT_DIR]

Photo faces are matched to the people counted in ``photos/README.md`` by hand-checked centres below
(a box containing a listed face centre is a hit, the others are false); ``--draw`` writes each photo
with its boxes and landmarks so a person can look. Wild val pictures show one face each, so a picture
counts as found when the detector returns any box. The last line is the default detector's summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from common import cpu_description
from emolens.face.detect import DEFAULT_DETECTOR, Box, create_detector

SHARED = Path(__file__).resolve().parents[2] / "shared"

FACE_CENTRES: dict[str, list[tuple[int, int]]] = {
    # (x, y) of each counted face's centre, read off the photos (photos/README.md gives the counts)
    "aligned_crop_112.png": [(50, 57)],
    "group_six.jpg": [(518, 340), (956, 133), (796, 412), (114, 331), (1180, 332), (322, 211)],
    "portrait_biden.jpg": [(572, 365)],
    "portrait_obama.jpg": [(493, 260)],
    "portrait_obama2.jpg": [(341, 438)],
    "portrait_obama3.jpg": [(780, 430)],
    "portrait_obama_partial_face.jpg": [(90, 259)],
    "portrait_obama_partial_face2.jpg": [(465, 259)],
}
"""Faces per photo; the face cut off at obama2's right edge is not counted (README: "1 (+1 cut off)"), and a
box on it is neither a hit nor a false face."""

CUT_OFF: dict[str, list[tuple[int, int]]] = {"portrait_obama2.jpg": [(595, 470)]}


def _contains(b: Box, pt: tuple[int, int]) -> bool:
    return b.x <= pt[0] <= b.x + b.w and b.y <= pt[1] <= b.y + b.h


def score_photo(name: str, boxes: list[Box]) -> tuple[int, int, int]:
    """(found, missed, false) for one photo."""
    centres = FACE_CENTRES[name]
    hit = [any(_contains(b, c) for b in boxes) for c in centres]
    false = sum(1 for b in boxes if not any(_contains(b, c) for c in centres + CUT_OFF.get(name, [])))
    return sum(hit), len(centres) - sum(hit), false


def draw(img: np.ndarray, boxes: list[Box], path: Path) -> None:
    out = img.copy()
    t = max(2, round(max(img.shape[:2]) / 400))
    for b in boxes:
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), (0, 255, 0), t)
        for x, y in b.landmarks or ():
            cv2.circle(out, (round(x), round(y)), t + 1, (0, 0, 255), cv2.FILLED)
    cv2.imwrite(str(path), out)


def frame_ms(det, frame: np.ndarray, runs: int) -> float:
    det.detect(frame)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        det.detect(frame)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--wild", type=Path, default=SHARED / "datasets" / "wild" / "val")
    ap.add_argument("--detectors", nargs="+", default=["centerface", "centerface-fast", "haar", "haar-fast"])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per detector on the 640x480 frame")
    ap.add_argument("--draw", type=Path, metavar="OUT_DIR", help="write the photos with their boxes here")
    args = ap.parse_args(argv)
    if not args.photos.is_dir():
        print(f"detect.py: {args.photos}: no such folder", file=sys.stderr)
        return 2
    names = ["haar", *[d for d in args.detectors if d != "haar"]]
    photos = {n: cv2.imread(str(args.photos / n)) for n in FACE_CENTRES if (args.photos / n).is_file()}
    wild = sorted(args.wild.glob("*/*.jpg")) if args.wild.is_dir() else []
    # a 640×480 frame with one face: the sample portrait, scaled and placed on a grey frame
    face = photos.get("portrait_obama.jpg")
    frame = np.full((480, 640, 3), 128, np.uint8)
    if face is not None:
        small = cv2.resize(face, (304, 380), interpolation=cv2.INTER_AREA)
        frame[50:430, 168:472] = small
    cv2.setNumThreads(1)
    rows = {}
    for name in names:
        det = create_detector(name, **({} if name.startswith("haar") else {"threads": 1}))
        found = missed = false = 0
        for pname, img in photos.items():
            boxes = det.detect(img)
            f, m, x = score_photo(pname, boxes)
            found, missed, false = found + f, missed + m, false + x
            if args.draw:
                args.draw.mkdir(parents=True, exist_ok=True)
                draw(img, boxes, args.draw / f"{Path(pname).stem}_{name}.jpg")
        t = time.perf_counter()
        wild_found = sum(bool(det.detect(cv2.imread(str(f)))) for f in wild)
        wild_s = time.perf_counter() - t
        rows[name] = dict(found=found, missed=missed, false=false, wild=wild_found,
                          wild_ms=1000 * wild_s / max(1, len(wild)), frame_ms=frame_ms(det, frame, args.runs))
    total = sum(len(v) for k, v in FACE_CENTRES.items() if k in photos)
    h = rows["haar"]
    print(f"CPU: {cpu_description()}")
    print(f"{'detector':16} {'photos found':>12} {'missed':>6} {'false':>5} {'wild found':>12} "
          f"{'ms/wild pic':>11} {'ms/640x480':>10} {'x Haar speed':>12}")
    for name in names:
        r = rows[name]
        print(f"{name:16} {r['found']:>7}/{total:<4} {r['missed']:>6} {r['false']:>5} {r['wild']:>7}/{len(wild):<4} "
              f"{r['wild_ms']:>11.1f} {r['frame_ms']:>10.1f} {h['frame_ms'] / r['frame_ms']:>12.1f}")
    d = rows.get(DEFAULT_DETECTOR, rows[names[-1]])
    print(f"{DEFAULT_DETECTOR}: {d['found']}/{total} photo faces, {d['false']} false, wild {d['wild']}/{len(wild)} "
          f"({d['wild'] / max(1, len(wild)):.1%}) vs Haar {h['wild']}, {d['frame_ms']:.1f} ms a 640x480 frame "
          f"({h['frame_ms'] / d['frame_ms']:.1f}x Haar's speed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
