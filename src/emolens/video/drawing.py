"""Drawing on video frames: each face's box, id, label and confidence bars."""

from __future__ import annotations

import cv2
import numpy as np

from ..results.draw import colour_for
from .results import TrackedFace


def draw_faces(frame: np.ndarray, faces: list[TrackedFace], *, bars: bool = True, fps: float | None = None,
               labels: list[str] | None = None) -> np.ndarray:
    """Draw, **in place**, each face's box, ``#id label 93%`` and (``bars``) a bar per emotion; and the fps.

    Returns ``frame``.
    """
    h, w = frame.shape[:2]
    base = max(h, w)
    thick = max(1, round(base / 500))
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = max(0.4, base / 1400)
    for face in faces:
        b, col = face.box, colour_for(face.label)
        cv2.rectangle(frame, (b.x, b.y), (b.x + b.w, b.y + b.h), col, thick + 1)
        text = f"#{face.id} {face.label} {face.score:.0%}"
        (tw, th), bl = cv2.getTextSize(text, font, fs, thick)
        ty = b.y - 4 if b.y - th - bl - 4 >= 0 else min(h - 1, b.y + b.h + th + bl + 4)
        cv2.rectangle(frame, (b.x, ty - th - bl), (b.x + tw + 4, ty + 2), col, cv2.FILLED)
        cv2.putText(frame, text, (b.x + 2, ty - bl // 2), font, fs, (0, 0, 0) if sum(col) > 380 else (255, 255, 255),
                    thick, cv2.LINE_AA)
        if bars and face.scores:
            _draw_bars(frame, face, labels or list(face.scores), fs * 0.8)
    if fps is not None:
        text = f"{fps:.1f} fps"
        (tw, th), bl = cv2.getTextSize(text, font, fs, thick)
        cv2.rectangle(frame, (0, 0), (tw + 8, th + bl + 8), (0, 0, 0), cv2.FILLED)
        cv2.putText(frame, text, (4, th + 4), font, fs, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


def _draw_bars(frame: np.ndarray, face: TrackedFace, labels: list[str], fs: float) -> None:
    """A small bar chart of every emotion's probability beside the face (right side if it fits, else left)."""
    h, w = frame.shape[:2]
    b = face.box
    row = max(10, int(22 * fs))
    name_w = cv2.getTextSize("surprise", cv2.FONT_HERSHEY_SIMPLEX, fs, 1)[0][0] + 4
    bar_w = max(30, int(b.w * 0.6))
    total_w = name_w + bar_w + 6
    x0 = b.x + b.w + 6 if b.x + b.w + 6 + total_w <= w else max(0, b.x - total_w - 6)
    y0 = max(0, min(b.y, h - row * len(labels)))
    cv2.rectangle(frame, (x0 - 2, y0), (min(w - 1, x0 + total_w), min(h - 1, y0 + row * len(labels) + 2)),
                  (30, 30, 30), cv2.FILLED)
    for i, lab in enumerate(labels):
        y = y0 + i * row
        if y + row > h:
            break
        p = face.scores.get(lab, 0.0)
        cv2.putText(frame, lab[:8], (x0, y + row - 3), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
        bx = x0 + name_w
        cv2.rectangle(frame, (bx, y + 2), (bx + bar_w, y + row - 2), (60, 60, 60), cv2.FILLED)
        cv2.rectangle(frame, (bx, y + 2), (bx + int(round(bar_w * p)), y + row - 2), colour_for(lab), cv2.FILLED)
