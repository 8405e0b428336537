"""Measure a model's landmark template: where the detector puts the 5 landmarks on its training faces; and
where the square ``emolens predict`` cuts around the detector's box falls on them (the box-crop framing).

    python scripts/measure_template.py ../shared/datasets/fer2013/train [--n 2000] [--write MODEL.onnx]

Each face (an image of a <class>/ folder under the given one, taken in a fixed spread over the classes)
is padded with 25% grey on every side and enlarged to 192 px, so that the detector sees a face in a
picture, as it does in users' photos; the landmarks of the face it finds are taken back to fractions
of the original crop. The template is the per-point median, made left-right symmetric
(:func:`emolens.face.align.measure_template`). It prints the template and, with ``--write``, stores it as
``landmark_template`` in that model's emolens metadata (the file is replaced atomically; the ``onnx``
package is needed for writing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from emolens.face.align import measure_template
from emolens.face.detect import create_detector


def landmarks_of(files: list[Path], detector_name: str, pad: float = 0.25, side: int = 192) -> np.ndarray:
    return faces_of(files, detector_name, pad, side)[0]


def faces_of(files: list[Path], detector_name: str, pad: float = 0.25, side: int = 192
             ) -> tuple[np.ndarray, np.ndarray]:
    """(N×5×2 landmarks, N×3 squares) of the faces found, as fractions of their crops; a square is the one
    ``emolens predict`` cuts around the detector's box: (centre x, centre y, side)."""
    det = create_detector(detector_name, retry_pads=())
    out, squares = [], []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            continue
        h, w = img.shape[:2]
        p = int(round(pad * max(h, w)))
        big = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        k = side / big.shape[0]
        big = cv2.resize(big, (round(big.shape[1] * k), side), interpolation=cv2.INTER_CUBIC)
        boxes = det.detect(big)
        if not boxes or boxes[0].landmarks is None:
            continue
        b = boxes[0]
        pts = np.asarray(b.landmarks) / k - p  # back to the crop's pixels
        out.append(pts / np.array([w, h]))
        squares.append((((b.x + b.w / 2) / k - p) / w, ((b.y + b.h / 2) / k - p) / h, max(b.w, b.h) / k / max(w, h)))
    return np.asarray(out), np.asarray(squares)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("faces", type=Path, help="a folder with one sub-folder of face crops per class")
    ap.add_argument("--n", type=int, default=2000, help="faces to measure (default 2000)")
    ap.add_argument("--detector", default="centerface")
    ap.add_argument("--write", type=Path, metavar="MODEL.onnx", help="store the template in this model")
    args = ap.parse_args(argv)

    files = sorted(f for f in args.faces.glob("*/*") if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    if not files:
        print(f"{args.faces}: no <class>/<image> files", file=sys.stderr)
        return 2
    step = max(1, len(files) // args.n)
    chosen = files[::step][: args.n]
    pts, squares = faces_of(chosen, args.detector)
    template = measure_template(pts)
    roll = np.degrees(np.arctan2(pts[:, 1, 1] - pts[:, 0, 1], pts[:, 1, 0] - pts[:, 0, 0]))
    print(f"{len(pts)} of {len(chosen)} faces with landmarks; median |roll| {np.median(np.abs(roll)):.1f} deg, "
          f"p90 {np.percentile(np.abs(roll), 90):.1f} deg")
    # the box crop users get, in the training crop's frame: is it the same framing, and how much does it vary?
    for name, col in (("centre x", 0), ("centre y", 1), ("side", 2)):
        v = squares[:, col]
        print(f"box crop {name}: median {np.median(v):.3f} of the crop, p10 {np.percentile(v, 10):.3f}, "
              f"p90 {np.percentile(v, 90):.3f}, std {v.std():.3f}")
    if args.write:
        write_template(args.write, template)
        print(f"stored in {args.write}")
    print(json.dumps(template))
    return 0


def write_template(path: Path, template: list[list[float]]) -> None:
    import onnx

    from emolens.modelmeta import META_KEY, ModelMeta

    proto = onnx.load(str(path))
    meta = ModelMeta.from_json(next(p.value for p in proto.metadata_props if p.key == META_KEY))
    meta.landmark_template = template
    meta.write_to(proto)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
