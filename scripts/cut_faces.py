"""Cut the face out of each picture of a class-folder dataset exactly as ``emolens predict`` cuts it, and save it
at the model's input size: real photos turned into training faces that look like what the model sees at run time.

    python scripts/cut_faces.py ../shared/datasets/wild/train --out data/wild_faces [--model default]
                                [--detector centerface] [--all-faces]

IN holds ``<class>/*`` pictures (or ``<split>/<class>/*``); OUT gets the same folders with one PNG per picture
(``NAME.png``; with ``--all-faces`` every face, ``NAME_2.png`` ...), cut with the model's framing (its crop margin,
the default alignment, the largest face first) and resized as the classifier resizes (area interpolation, gray for
a gray model). Pictures where no face is found are listed and left out. Nothing in OUT is overwritten: an existing
OUT is refused.

Used for issue 34's real calm faces (``wild/train``: 7,999 press photos, almost all neutral and happy); see
``scripts/soft_labels.py`` for the labels they train with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from emolens import EmotionRecognizer
from emolens.imageio import IMAGE_SUFFIXES, ImageError


def cut(rec: EmotionRecognizer, path: Path, all_faces: bool) -> list[np.ndarray]:
    bgr = rec.load(str(path))
    boxes = rec.face_boxes(bgr)
    if not boxes:
        return []
    boxes = sorted(boxes, key=lambda b: -b.w * b.h)[: None if all_faces else 1]
    meta = rec.classifier.meta
    out = []
    for crop in rec.view_crops(bgr, boxes)[:: len(meta.tta_scales or [1.0])]:  # the first view: the plain crop
        x = rec.classifier.preprocess([crop])[0]  # the network's input, back to pixels
        mean = np.asarray(meta.mean_array(), np.float32).reshape(-1, 1, 1)
        std = np.asarray(meta.std_array(), np.float32).reshape(-1, 1, 1)
        img = np.clip(((x * std + mean) * 255).round(), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        out.append(img if meta.channels == 1 else img[..., ::-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="default", help="the model whose framing and input size to cut for")
    ap.add_argument("--detector", default=None, help="default: emolens predict's")
    ap.add_argument("--all-faces", action="store_true", help="every face of a picture, not only the largest")
    args = ap.parse_args()
    if not args.src.is_dir():
        print(f"cut_faces.py: error: {args.src}: no such folder", file=sys.stderr)
        return 2
    if args.out.exists():
        print(f"cut_faces.py: error: {args.out} exists; give a new folder", file=sys.stderr)
        return 2
    kw = {"detector": args.detector} if args.detector else {}
    rec = EmotionRecognizer(None if args.model == "default" else args.model, **kw)
    files = sorted(p for p in args.src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        print(f"cut_faces.py: error: {args.src}: no pictures", file=sys.stderr)
        return 2
    found: dict[str, list[int]] = {}
    missed = []
    for i, path in enumerate(files, 1):
        rel = path.relative_to(args.src)
        cls = str(rel.parent)
        counts = found.setdefault(cls, [0, 0])
        counts[1] += 1
        try:
            faces = cut(rec, path, args.all_faces)
        except ImageError as e:
            print(f"skipped: {e}", file=sys.stderr)
            faces = []
        if not faces:
            missed.append(str(rel))
            continue
        counts[0] += 1
        (args.out / rel.parent).mkdir(parents=True, exist_ok=True)
        for k, face in enumerate(faces, 1):
            name = rel.stem + ("" if k == 1 else f"_{k}") + ".png"
            cv2.imwrite(str(args.out / rel.parent / name), face)
        if i % 500 == 0:
            print(f"  {i} / {len(files)}", file=sys.stderr)
    for m in missed:
        print(f"no face: {m}", file=sys.stderr)
    for cls, (n, total) in sorted(found.items()):
        print(f"{cls}: a face in {n} of {total} pictures")
    print(f"wrote {sum(n for n, _ in found.values())} faces to {args.out} ({len(missed)} pictures without one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
