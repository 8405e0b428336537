"""Cutting faces out of an image for the classifier."""

from __future__ import annotations

import cv2
import numpy as np

from .detect.base import Box


def crop_face(image: np.ndarray, box: Box, scale: float = 1.0) -> np.ndarray:
    """The square region centred on ``box``, ``scale`` × its longer side, cut from ``image``.

    Where the square reaches past the image border (faces at the edge, zoomed-out views) the
    edge pixels are repeated, so the face keeps its proportions instead of being squashed.
    For a square box inside the image and ``scale=1`` this is exactly the box's pixels.
    """
    h, w = image.shape[:2]
    side = max(1, round(max(box.w, box.h) * scale))
    x0 = round(box.x + box.w / 2 - side / 2)
    y0 = round(box.y + box.h / 2 - side / 2)
    x1, y1 = x0 + side, y0 + side
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return image[y0:y1, x0:x1]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        raise ValueError(f"face box {box.as_list()} lies outside the {w}x{h} image")
    inner = image[cy0:cy1, cx0:cx1]
    return cv2.copyMakeBorder(inner, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
