"""Face detectors behind one small interface (:class:`Detector`); pick one by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Box, Detector, merge_overlapping
from .haar import HaarDetector

FAST_HAAR: dict[str, Any] = {"angles": (0.0,), "max_side": 400, "min_size": 0.1, "scale_factor": 1.2}
"""``haar-fast`` (the video default): upright faces only, searched at most 400 px wide, faces at least 10% of
the shorter side, coarser scale steps. Several times faster than ``haar``; misses tilted heads and small faces."""


def _fast_haar(**kwargs: Any) -> HaarDetector:
    return HaarDetector(**{**FAST_HAAR, **kwargs})


_DETECTORS: dict[str, Callable[..., Detector]] = {"haar": HaarDetector, "haar-fast": _fast_haar}


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def create_detector(name: str = "haar", **kwargs: Any) -> Detector:
    """Build a detector by name (``emolens predict --detector NAME``)."""
    try:
        factory = _DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available_detectors())}") from None
    return factory(**kwargs)


__all__ = [
    "FAST_HAAR", "Box", "Detector", "HaarDetector", "available_detectors", "create_detector", "merge_overlapping",
]
