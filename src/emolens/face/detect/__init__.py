"""Face detectors behind one small interface (:class:`Detector`); pick one by name.

``emolens detectors`` lists them with what each is for (:func:`describe_detectors`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import LANDMARK_NAMES, Box, Detector, merge_overlapping
from .centerface import CenterFaceDetector
from .haar import HaarDetector

DEFAULT_DETECTOR = "centerface"
"""The detector of ``emolens predict``, ``explain``, ``evaluate --detect`` and the server."""

FAST_DETECTOR = "centerface-fast"
"""The detector of ``emolens video`` and ``webcam``."""

FAST_HAAR: dict[str, Any] = {"angles": (0.0,), "max_side": 400, "min_size": 0.1, "scale_factor": 1.2}
"""``haar-fast``: upright faces only, searched at most 400 px wide, faces at least 10% of the shorter side,
coarser scale steps. Several times faster than ``haar``; misses tilted heads and small faces."""

FAST_CENTERFACE: dict[str, Any] = {"max_side": 320}
"""``centerface-fast``: CenterFace searched at most 320 px on the longer side (a quarter of the pixels of
a 640×480 frame): faces down to about 1/20 of the frame's width, in about a quarter of the time."""


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    factory: Callable[..., Detector]
    landmarks: bool
    use: str
    threaded: bool = True  # runs on ONNX Runtime and takes ``threads``


_DETECTORS: dict[str, DetectorInfo] = {
    info.name: info
    for info in (
        DetectorInfo("centerface", CenterFaceDetector, True,
                     "photos (default): learned, finds covered, turned, tilted, small and border faces; 5 landmarks"),
        DetectorInfo("centerface-fast", lambda **kw: CenterFaceDetector(**{**FAST_CENTERFACE, **kw}), True,
                     "video and webcam (their default): CenterFace at 320 px, about 4x faster; 5 landmarks"),
        DetectorInfo("haar", HaarDetector, False,
                     "OpenCV's Haar cascade (frontal faces, 3 rotations); no landmarks, misses covered faces",
                     threaded=False),
        DetectorInfo("haar-fast", lambda **kw: HaarDetector(**{**FAST_HAAR, **kw}), False,
                     "Haar, upright faces only, coarse steps; no landmarks, misses tilted and small faces",
                     threaded=False),
    )
}


def available_detectors() -> list[str]:
    return list(_DETECTORS)


def describe_detectors() -> list[DetectorInfo]:
    """Every detector with whether it gives landmarks and what it is for (``emolens detectors``)."""
    return list(_DETECTORS.values())


def create_detector(name: str = DEFAULT_DETECTOR, **kwargs: Any) -> Detector:
    """Build a detector by name (``emolens predict --detector NAME``). ``threads`` (ONNX Runtime threads) is
    passed to the learned detectors only; ``None`` there means all cores."""
    try:
        info = _DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available_detectors())}") from None
    threads = kwargs.pop("threads", None)
    if info.threaded and threads is not None:
        kwargs["threads"] = threads
    return info.factory(**kwargs)


__all__ = [
    "DEFAULT_DETECTOR", "FAST_CENTERFACE", "FAST_DETECTOR", "FAST_HAAR", "LANDMARK_NAMES", "Box",
    "CenterFaceDetector", "Detector", "DetectorInfo", "HaarDetector", "available_detectors", "create_detector",
    "describe_detectors", "merge_overlapping",
]
