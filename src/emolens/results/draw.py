"""Overlays: a box, the label and its confidence on each face."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # a type only: the results import the drawing (for Jupyter), never the reverse
    from .faces import Face

COLOURS: dict[str, tuple[int, int, int]] = {  # BGR
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (30, 200, 255),
    "neutral": (200, 200, 200),
    "sad": (200, 120, 40),
    "surprise": (60, 200, 120),
}


def colour_for(label: str) -> tuple[int, int, int]:
    if label in COLOURS:
        return COLOURS[label]
    h = sum(ord(c) * 31**i for i, c in enumerate(label)) % 180  # stable colour for custom labels
    hsv = np.uint8([[[h, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def annotate(image: np.ndarray, faces: list[Face], *, landmarks: bool = True, numbers: bool = True) -> np.ndarray:
    """Return a copy of a BGR image with each face's box and "1 happy 93%" drawn on it (``numbers``: the face's
    place in ``faces`` from 1, as the table and the JSON list them), and (``landmarks``) a small dot on each of
    its landmarks where the detector gave them."""
    out = image.copy()
    h, w = out.shape[:2]
    base = max(h, w)
    thick = max(1, round(base / 400))
    font_scale = max(0.4, base / 1400)
    for number, face in enumerate(faces, 1):
        b = face.box
        col = colour_for(face.label)
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), col, thick + 1)
        if landmarks and b.landmarks:
            r = max(1, round(min(b.w, b.h) / 60))
            for px, py in b.landmarks:
                cv2.circle(out, (round(px), round(py)), r + 1, (0, 0, 0), cv2.FILLED, cv2.LINE_AA)
                cv2.circle(out, (round(px), round(py)), r, col, cv2.FILLED, cv2.LINE_AA)
        text = f"{number} {face.label} {face.score:.0%}" if numbers else f"{face.label} {face.score:.0%}"
        scale = font_scale
        (tw, th), base_line = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        while tw + 4 > w and scale > 0.2:  # a label wider than the picture: smaller type
            scale *= 0.8
            (tw, th), base_line = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        tx, ty = label_origin(b.x, b.y, b.y + b.h, tw + 4, th + base_line, w, h)
        cv2.rectangle(out, (tx, ty - th - base_line), (tx + tw + 4, ty + 2), col, cv2.FILLED)
        text_col = (0, 0, 0) if sum(col) > 380 else (255, 255, 255)
        cv2.putText(out, text, (tx + 2, ty - base_line // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, text_col,
                    thick, cv2.LINE_AA)
    return out


def label_origin(x: int, top: int, bottom: int, tw: int, th: int, w: int, h: int) -> tuple[int, int]:
    """Where a ``tw`` × ``th`` label of a box (left ``x``, ``top``, ``bottom``) goes in a ``w`` × ``h`` picture: the
    left end and the baseline. Above the box where there is room, else below it, else inside its top; shifted left
    so that it never runs off the right edge (a face near the edge of a group photo), never off the left."""
    ty = top - 4 if top - th - 4 >= 0 else (bottom + th + 4 if bottom + th + 4 <= h - 3 else max(top, 0) + th + 2)
    ty = min(max(ty, th), h - 3)
    tx = min(max(x, 0), max(w - tw, 0))
    return tx, ty
