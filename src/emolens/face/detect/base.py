"""The face-detector interface: anything with ``detect(bgr) -> list[Box]`` is a detector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The five landmarks, in order; "left" is the image's left (the person's right on a frontal face)."""


@dataclass(frozen=True)
class Box:
    """A face box in pixel coordinates of the original image: top-left corner, width, height.

    ``landmarks``, where the detector gives them, are five (x, y) points in the same coordinates, in the
    order of :data:`LANDMARK_NAMES`: the eye on the image's left, the other eye, the nose tip, the mouth
    corner on the image's left, the other mouth corner. They may lie outside the picture for a cut-off face.
    """

    x: int
    y: int
    w: int
    h: int
    score: float = 1.0  # detector confidence, where the detector has one
    landmarks: tuple[tuple[float, float], ...] | None = None

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    @property
    def area(self) -> int:
        return self.w * self.h

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def expand(self, margin: float, width: int, height: int) -> Box:
        """Widen by ``margin`` × size on every side, clipped to a width×height image."""
        dx, dy = int(round(self.w * margin)), int(round(self.h * margin))
        x0, y0 = max(0, self.x - dx), max(0, self.y - dy)
        x1, y1 = min(width, self.x + self.w + dx), min(height, self.y + self.h + dy)
        return Box(x0, y0, max(1, x1 - x0), max(1, y1 - y0), self.score, self.landmarks)

    def moved_to(self, x: int, y: int, w: int, h: int) -> Box:
        """This face at another place and size (a tracked or smoothed box): the landmarks keep their
        positions relative to the box."""
        marks = None
        if self.landmarks is not None:
            sx, sy = w / max(1, self.w), h / max(1, self.h)
            marks = tuple((x + (px - self.x) * sx, y + (py - self.y) * sy) for px, py in self.landmarks)
        return Box(x, y, w, h, self.score, marks)

    def landmark_list(self) -> list[list[float]] | None:
        """The landmarks as ``[[x, y], ...]`` rounded to 0.1 px (what JSON output carries), or ``None``."""
        if self.landmarks is None:
            return None
        return [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in a uint8 H×W×3 BGR image, largest first."""
        ...


def merge_overlapping(boxes: list[Box], iou_threshold: float = 0.3) -> list[Box]:
    """Non-maximum suppression by size: of boxes overlapping more than the threshold, keep the largest."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: (b.score, b.area), reverse=True):
        if all(b.iou(k) <= iou_threshold for k in kept):
            kept.append(b)
    return sorted(kept, key=lambda b: b.area, reverse=True)
