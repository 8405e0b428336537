"""OpenCV's Haar-cascade face detector: no extra download, ships inside opencv-python-headless (<5)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from .base import Box, merge_overlapping


class HaarDetector:
    """Frontal faces with OpenCV's ``haarcascade_frontalface_alt2`` cascade.

    The image is searched at most ``max_side`` pixels wide/high (bigger images are
    downscaled first: faster, and Haar does not need the detail), with a grey border of
    ``pad`` × the shorter side so faces cut by the image edge are still found.  Haar only
    sees upright faces, so the image is also searched rotated by each of ``angles`` (degrees)
    to catch tilted heads. Boxes come back in the original image's coordinates (axis-aligned,
    centred on the face), overlapping ones merged, upright detections preferred.

    Args:
        min_size: smallest face as a fraction of the searched image's shorter side.
        min_neighbors: how many overlapping raw detections an upright face needs
            (higher = fewer false faces); ``min_neighbors_rotated`` for the rotated passes.
        scale_factor: step between the pyramid's scales (smaller = slower, finds more).
        angles: rotations to search; ``(0,)`` is fastest (upright faces only, ~3× faster).
        min_inside: drop boxes with less than this fraction of their area inside the image
            (the grey border lets faces cut by the edge be found, not faces that are mostly outside).

    Measured on the 8 photos in ``../shared/photos`` (tests/test_detect.py): with the
    defaults every face is found, with one false face (a hand) in the group photo.
    """

    name = "haar"

    def __init__(
        self,
        *,
        cascade: str | Path | None = None,
        max_side: int = 640,
        pad: float = 0.1,
        min_size: float = 0.04,
        min_size_px: int = 20,
        min_neighbors: int = 4,
        min_neighbors_rotated: int = 6,
        scale_factor: float = 1.1,
        angles: tuple[float, ...] = (0.0, -25.0, 25.0),
        min_inside: float = 0.6,
    ) -> None:
        path = Path(cascade) if cascade else Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt2.xml"
        if not path.is_file():
            raise FileNotFoundError(
                f"Haar cascade not found at {path}; install opencv-python-headless>=4.9,<5 "
                "(OpenCV 5 wheels no longer ship the cascades)"
            )
        if cv2.CascadeClassifier(str(path)).empty():
            raise ValueError(f"{path}: not a valid Haar cascade file")
        self._path = str(path)
        # a cascade object must not run in two threads at once (OpenCV's scale data is per object: an
        # assertion error, seen with `emolens predict --workers 2`); each thread gets its own
        self._local = threading.local()
        self.max_side, self.pad = max_side, pad
        self.min_size, self.min_size_px = min_size, min_size_px
        self.min_neighbors, self.min_neighbors_rotated = min_neighbors, min_neighbors_rotated
        self.scale_factor, self.angles, self.min_inside = scale_factor, tuple(angles), min_inside

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        p = int(self.pad * min(gray.shape))
        if p:
            gray = cv2.copyMakeBorder(gray, p, p, p, p, cv2.BORDER_CONSTANT, value=128)
        side = max(self.min_size_px, int(self.min_size * min(gray.shape)))
        if side > min(gray.shape):
            return []
        boxes = []
        for angle in self.angles:
            for cx, cy, bw, bh in self._search(gray, angle, side):
                # back from the padded, scaled search image to the original image
                x0, y0 = max(0, round((cx - bw / 2 - p) / scale)), max(0, round((cy - bh / 2 - p) / scale))
                x1, y1 = min(w, round((cx + bw / 2 - p) / scale)), min(h, round((cy + bh / 2 - p) / scale))
                inside = max(0, x1 - x0) * max(0, y1 - y0) * scale * scale / (bw * bh)
                if inside >= self.min_inside and x1 - x0 >= 2 and y1 - y0 >= 2:
                    boxes.append(Box(int(x0), int(y0), int(x1 - x0), int(y1 - y0), 1.0 if angle == 0 else 0.5))
        return merge_overlapping(boxes, iou_threshold=0.2)

    def _cascade(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "cascade", None)
        if cascade is None:
            cascade = self._local.cascade = cv2.CascadeClassifier(self._path)
        return cascade

    def _search(self, gray: np.ndarray, angle: float, side: int) -> list[tuple[float, float, int, int]]:
        """Face centres and sizes found in ``gray`` rotated by ``angle`` degrees, in ``gray``'s coordinates."""
        inverse = None
        img = gray
        if angle:
            h, w = gray.shape
            m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
            cos, sin = abs(m[0, 0]), abs(m[0, 1])
            nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
            m[0, 2] += nw / 2 - w / 2
            m[1, 2] += nh / 2 - h / 2
            img = cv2.warpAffine(gray, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=128)
            inverse = cv2.invertAffineTransform(m)
        neighbours = self.min_neighbors if angle == 0 else self.min_neighbors_rotated
        found = self._cascade().detectMultiScale(
            img, scaleFactor=self.scale_factor, minNeighbors=neighbours, minSize=(side, side)
        )
        out = []
        for x, y, bw, bh in np.asarray(found).reshape(-1, 4):
            cx, cy = x + bw / 2, y + bh / 2
            if inverse is not None:
                cx, cy = inverse @ np.array([cx, cy, 1.0])
            out.append((float(cx), float(cy), int(bw), int(bh)))
        return out
