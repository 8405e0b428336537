"""Face detectors behind one small interface (:class:`Detector`); pick one by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Box, Detector, merge_overlapping
from .haar import HaarDetector

_DETECTORS: dict[str, Callable[..., Detector]] = {"haar": HaarDetector}


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def create_detector(name: str = "haar", **kwargs: Any) -> Detector:
    """Build a detector by name (``emolens predict --detector NAME``)."""
    try:
        factory = _DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; available: {', '.join(available_detectors())}") from None
    return factory(**kwargs)


__all__ = ["Box", "Detector", "HaarDetector", "available_detectors", "create_detector", "merge_overlapping"]
