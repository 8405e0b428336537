"""What recognition returns: one :class:`Face` per face found (a :class:`Faces` list), or an :class:`ImageResult`
per picture; in Jupyter each shows itself (:mod:`emolens.results.notebook`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..face.detect.base import Box
from ..imageio import printable


@dataclass
class Face:
    """One face: where it is and what it shows.

    Attributes:
        box: position in the input image (x, y, width, height in pixels); ``box.landmarks`` holds the
            five landmarks where the detector gives them (:data:`emolens.face.detect.LANDMARK_NAMES`).
        label: the most probable emotion.
        score: that emotion's probability (0..1).
        scores: every label's probability, in the model's label order.
    """

    box: Box
    label: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...] | None:
        """The face's five (x, y) landmarks, or ``None`` (a detector without them, or ``detect=False``)."""
        return self.box.landmarks

    def to_dict(self) -> dict[str, Any]:
        """``{"box", "label", "score", "scores"}``, plus ``"landmarks"`` (``[[x, y] × 5]``, in the order of
        :data:`emolens.face.detect.LANDMARK_NAMES`) when the detector gave them."""
        d: dict[str, Any] = {
            "box": self.box.as_list(),
            "label": self.label,
            "score": round(float(self.score), 4),
            "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
        }
        if self.box.landmarks is not None:
            d["landmarks"] = self.box.landmark_list()
        return d

    def _repr_html_(self) -> str:  # Jupyter: a one-row table
        from .notebook import faces_html

        return faces_html([self])


class Faces(list):
    """The faces of one picture, largest first (what :meth:`EmotionRecognizer.predict` returns): a plain
    ``list`` of :class:`Face` that shows itself in Jupyter as a compact table."""

    def _repr_html_(self) -> str:
        from .notebook import faces_html

        return faces_html(self)


@dataclass
class ImageResult:
    """The outcome for one input: its faces, or the error that stopped it.

    Attributes:
        source: the input's name as it can be printed (:func:`emolens.imageio.describe`: a file name's bytes
            that are not UTF-8 and control characters written as ``\\xNN`` escapes).
        faces: the faces found, largest first.
        error: why the input could not be read (``faces`` is then empty).
        annotated: the annotated copy written, if one was asked for.
        annotate_error: why the annotated copy could not be written (the faces are still valid).
    """

    source: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    annotated: Path | None = None
    annotate_error: str | None = None

    @property
    def ok(self) -> bool:
        """The input was read and recognised (an annotated copy that could not be written aside)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"file", "faces"}``, plus ``"error"`` when the input could not be read (``"faces"`` is then
        ``[]``, so a consumer can always index it), plus ``"annotated"`` when an annotated copy was saved or
        ``"annotate_error"`` when it could not be."""
        d: dict[str, Any] = {"file": self.source, "faces": [f.to_dict() for f in self.faces]}
        if self.error is not None:
            d["error"] = self.error
        if self.annotated is not None:
            d["annotated"] = printable(os.fsdecode(self.annotated))
        if self.annotate_error is not None:
            d["annotate_error"] = self.annotate_error
        return d

    def _repr_html_(self) -> str:  # Jupyter: the annotated picture (read again from its file) and its table
        from .notebook import result_html

        return result_html(self)
