"""Recognised video frames: faces with their track ids, one result per processed frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..results.faces import Face


class VideoError(ValueError):
    """A video, camera or display problem, with a message that says what to do."""


class OutputError(VideoError):
    """An output that could not be written (a full disk ...); none of the outputs was left behind."""


@dataclass
class TrackedFace(Face):
    """A :class:`emolens.Face` followed over time.

    ``scores`` are smoothed over time and ``label`` changes only when another emotion is clearly
    ahead (see :class:`emolens.video.track.EmaSmoother`); ``score`` is ``scores[label]``;
    ``raw_scores`` are this frame's own probabilities.

    Attributes:
        id: stable id of this face in the stream (1, 2, 3 ... in order of appearance).
        raw_scores: this frame's unsmoothed probabilities; empty when the face is held (``missed`` > 0).
        missed: 0 if the face was found in this frame; otherwise how many processed frames ago it
            was last found. Such a face is *held* for a few frames at its last place so detector
            misses do not flicker: it is not classified again (its box may show background), its
            ``scores`` and ``label`` stay as they were when it was last found.
    """

    id: int = 0
    raw_scores: dict[str, float] = field(default_factory=dict)
    missed: int = 0

    @property
    def found(self) -> bool:
        """Whether the face was found in this frame (``False``: held from an earlier frame)."""
        return self.missed == 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **super().to_dict()}


@dataclass
class FrameResult:
    """The faces of one processed frame.

    Attributes:
        index: frame number in the source, from 0 (skipped frames are counted too).
        time_s: seconds from the start (frame index / fps for files; wall clock for cameras).
        faces: the faces with their track ids, largest first.
        frame: the decoded BGR frame (not copied; draw on it or copy it).
        detected: whether a full face search ran on this frame (otherwise faces were followed locally).
    """

    index: int
    time_s: float
    faces: list[TrackedFace]
    frame: np.ndarray | None = field(default=None, repr=False)
    detected: bool = True
