"""Landmarks -> a face crop in the framing the classifier was trained on.

Three ways to cut a face for the classifier (``--align MODE``):

- ``none``: the square around the detector's box (:func:`emolens.face.crop.crop_face`), as before landmarks.
- ``level``: the same square, rotated about the box centre so the eyes are level.
- ``template``: the similarity transform (rotation, scale, shift) that puts the five landmarks closest to
  the model's landmark template — where its training faces have their eyes, nose and mouth — so every
  face is framed as the model's training faces were. The template is stored in the model's metadata
  (``landmark_template``); a model without one is taken to be framed as FER2013 (:data:`FER2013_TEMPLATE`).

Faces without landmarks (the Haar detectors) are always cut as ``none``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .crop import crop_face
from .detect.base import Box

ALIGN_MODES = ("none", "level", "template")

FER2013_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.3151, 0.4101), (0.6849, 0.4101), (0.5000, 0.6048), (0.3525, 0.7457), (0.6475, 0.7457),
)
"""Where FER2013 training faces have their landmarks, as fractions of the 48×48 crop (x, y), in the order of
:data:`emolens.face.detect.LANDMARK_NAMES`: CenterFace found 1,904 of 2,000 training faces (padded 25% grey,
enlarged to 192 px); per-point median, made left-right symmetric: ``python scripts/measure_template.py
../shared/datasets/fer2013/train --n 2000``. Eyes at (15.1, 19.7) and (32.9, 19.7) px of 48. The bundled
models carry it in their metadata."""

MAX_CROP_SIDE = 256
"""Aligned crops are warped to the face's own size in pixels, at most this (the classifier then shrinks
them to its input with area averaging, as it does box crops)."""


def check_mode(mode: str) -> str:
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment {mode!r}; choose one of: {', '.join(ALIGN_MODES)}")
    return mode


def eye_angle(landmarks: Sequence[tuple[float, float]]) -> float:
    """Roll of the face in degrees: the angle of the line from the image-left eye to the other eye."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def level_matrix(box: Box, scale: float, side: int) -> np.ndarray:
    """2×3 image -> crop matrix: the square of ``scale`` × the box's longer side around the box centre,
    turned so the eyes are level, as a ``side`` × ``side`` crop."""
    assert box.landmarks is not None
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    src_side = max(box.w, box.h) * scale
    m = cv2.getRotationMatrix2D((cx, cy), eye_angle(box.landmarks), side / src_side)
    m[0, 2] += side / 2 - cx
    m[1, 2] += side / 2 - cy
    return m


def template_matrix(landmarks: Sequence[tuple[float, float]], template: Sequence[Sequence[float]],
                    scale: float, side: int) -> np.ndarray:
    """2×3 image -> crop matrix: the least-squares similarity transform taking ``landmarks`` onto
    ``template`` (fractions of the crop) in a ``side`` crop, zoomed out by ``scale`` about the crop centre."""
    src = np.asarray(landmarks, dtype=np.float64)
    dst = (np.asarray(template, dtype=np.float64) - 0.5) / scale + 0.5
    return _similarity(src, dst * side)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + shift from ``src`` to ``dst`` points (Umeyama, no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = float((s * d).sum())  # Σ (sx dx + sy dy)
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum())  # Σ (sx dy - sy dx)
    norm = float((s ** 2).sum()) or 1.0
    c, k = a / norm, b / norm  # scale·cos, scale·sin
    rot = np.array([[c, -k], [k, c]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def crop_side(box: Box, scale: float, input_size: int) -> int:
    """The side of an aligned crop: the face square's own size in pixels, between the model's input and
    :data:`MAX_CROP_SIDE`."""
    return int(min(MAX_CROP_SIDE, max(input_size, round(max(box.w, box.h) * scale))))


def aligned_crop(image: np.ndarray, box: Box, scale: float, *, mode: str, input_size: int,
                 template: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """One classifier view of the face in ``box``: ``scale`` × the box (``none``, ``level``) or × the template
    framing (``template``), cut as ``mode`` says; pixels past the image edge repeat the edge."""
    if mode == "none" or box.landmarks is None:
        return crop_face(image, box, scale)
    side = crop_side(box, scale, input_size)
    if mode == "level":
        m = level_matrix(box, scale, side)
    else:
        m = template_matrix(box.landmarks, template or FER2013_TEMPLATE, scale, side)
    return cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def measure_template(points: np.ndarray, *, symmetric: bool = True) -> list[list[float]]:
    """A landmark template from N×5×2 landmark positions given as fractions of their crops: the per-point
    median, optionally made left-right symmetric (mirror pairs averaged, nose and centre on the midline)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2) or len(pts) == 0:
        raise ValueError(f"need N×5×2 landmark positions, got shape {pts.shape}")
    t = np.median(pts, axis=0)
    if symmetric:
        for a, b in ((0, 1), (3, 4)):
            y = (t[a, 1] + t[b, 1]) / 2
            dx = ((0.5 - t[a, 0]) + (t[b, 0] - 0.5)) / 2
            t[a], t[b] = (0.5 - dx, y), (0.5 + dx, y)
        t[2, 0] = 0.5
    return [[round(float(x), 4), round(float(y), 4)] for x, y in t]
