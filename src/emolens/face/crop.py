"""Cutting faces out of an image for the classifier."""

from __future__ import annotations

import cv2
import numpy as np

from .detect.base import Box

DEFAULT_MAX_SIDE = 1024
"""Largest crop :func:`crop_face` returns unless told otherwise (a 1024×1024 BGR crop is 3 MB)."""


def crop_face(image: np.ndarray, box: Box, scale: float = 1.0, *, max_side: int | None = DEFAULT_MAX_SIDE
              ) -> np.ndarray:
    """The square region centred on ``box``, ``scale`` × its longer side, cut from ``image``.

    Where the square reaches past the image border (faces at the edge, zoomed-out views) the
    edge pixels are repeated, so the face keeps its proportions instead of being squashed.
    For a square box inside the image, ``scale=1`` and a side up to ``max_side`` this is exactly
    the box's pixels.

    A square larger than ``max_side`` comes back shrunk to ``max_side`` × ``max_side`` (area
    averaging), computed from the image pixels it covers without first building the full-size
    square: a 1×1,000,000 image taken as one face costs a ``max_side``² crop, not a 10¹² one.
    ``max_side=None`` returns the full-size square whatever its size.
    """
    h, w = image.shape[:2]
    side = max(1, round(max(box.w, box.h) * scale))
    x0 = round(box.x + box.w / 2 - side / 2)
    y0 = round(box.y + box.h / 2 - side / 2)
    x1, y1 = x0 + side, y0 + side
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        raise ValueError(f"face box {box.as_list()} lies outside the {w}x{h} image")
    inner = image[cy0:cy1, cx0:cx1]
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, not {max_side}")
    if max_side is None or side <= max_side:
        if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
            return inner
        return cv2.copyMakeBorder(inner, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_REPLICATE)
    # shrink only the real pixels to where they land in the max_side square, then repeat their edges
    f = max_side / side
    ox0, oy0 = _span(cx0 - x0, cx1 - x0, f, max_side), _span(cy0 - y0, cy1 - y0, f, max_side)
    small = cv2.resize(inner, (ox0[1] - ox0[0], oy0[1] - oy0[0]), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(small, oy0[0], max_side - oy0[1], ox0[0], max_side - ox0[1], cv2.BORDER_REPLICATE)


def _span(a: int, b: int, f: float, size: int) -> tuple[int, int]:
    """Pixels [a, b) of the full square scaled by ``f`` into [0, size): at least one pixel wide."""
    lo = min(round(a * f), size - 1)
    return lo, max(lo + 1, min(size, round(b * f)))
