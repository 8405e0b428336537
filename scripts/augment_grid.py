"""Draw what the model trains on: public-domain faces through each augmentation key alone, and through a
config's whole augmentation (README's grid).

    python scripts/augment_grid.py [--config configs/fer2013_vgg_s_wild.yaml] [--out docs/img/augment_grid.png]

Rows: the faces of the public-domain portraits (examples/obama.jpg and the whole-face portraits of
../shared/photos when present), cut as ``emolens predict`` cuts them (the default detector's box, 48×48
gray). Columns: the face as the model sees it, each real-photo key alone at probability 1 (gamma at 0.5;
no other augmentation), then four draws of the config's full augmentation. Every image is enlarged 3×
(nearest neighbour) so its pixels can be seen.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from emolens import EmotionRecognizer, load_image
from emolens.training.augment import AugmentConfig, augment_batch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "photos"
KEYS = ("occlude", "blur", "downscale", "noise", "jpeg", "gamma")


def faces(size: int = 48) -> list[np.ndarray]:
    rec = EmotionRecognizer()
    out = []
    names = ("portrait_biden.jpg", "portrait_obama2.jpg", "portrait_obama3.jpg")
    for path in [ROOT / "examples" / "obama.jpg", *(PHOTOS / n for n in names if (PHOTOS / n).is_file())]:
        bgr = load_image(path)
        boxes = rec.detector.detect(bgr)
        if boxes:
            crop = rec.view_crops(bgr, boxes[:1])[0]
            gray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
            out.append(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "fer2013_vgg_s_wild.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "augment_grid.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    aug = yaml.safe_load(args.config.read_text()).get("augment", {})
    full = AugmentConfig(**aug)
    imgs = faces()
    x = torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32) / 255)
    gen = torch.Generator().manual_seed(args.seed)
    cols = [("as cut", x)]
    for key in KEYS:
        one = dataclasses.replace(AugmentConfig.off(), **{key: 0.5 if key == "gamma" else 1.0})
        cols.append((key, augment_batch(x, one, gen)))
    for k in range(4):
        cols.append((f"training {k + 1}", augment_batch(x, full, gen)))
    scale, pad, head = 3, 4, 18
    cell = 48 * scale
    w = len(cols) * (cell + pad) + pad
    h = head + len(imgs) * (cell + pad) + pad
    canvas = np.full((h, w), 255, np.uint8)
    for c, (name, batch) in enumerate(cols):
        x0 = pad + c * (cell + pad)
        cv2.putText(canvas, name, (x0 + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, 0, 1, cv2.LINE_AA)
        for r in range(len(imgs)):
            y0 = head + pad + r * (cell + pad)
            face = (batch[r, 0].numpy() * 255).round().clip(0, 255).astype(np.uint8)
            canvas[y0:y0 + cell, x0:x0 + cell] = cv2.resize(face, (cell, cell), interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), canvas)
    print(f"wrote {args.out} ({len(imgs)} faces x {len(cols)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
