"""The video CSV: one row per face per recognised frame."""

from __future__ import annotations

from ..face.detect import LANDMARK_NAMES
from .results import FrameResult

CSV_FIXED_COLUMNS = ["time_s", "frame", "face_id", "x", "y", "w", "h", "label", "score", "detected"]
"""The CSV's first columns; one column per emotion label (its smoothed probability) follows.
``detected`` is 1 when the face was found in that frame, 0 when it is held from earlier frames
(box, label and probabilities as last found; see :class:`FrameTracker`'s ``hold``)."""

CSV_LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y")]
"""The CSV's last columns: the face's 5 landmarks in pixels (moved with the smoothed box), empty for a
detector without landmarks."""


def csv_columns(labels: list[str]) -> list[str]:
    return CSV_FIXED_COLUMNS + list(labels) + CSV_LANDMARK_COLUMNS


def csv_rows(result: FrameResult, labels: list[str]) -> list[list[str]]:
    """One CSV row per face of a frame result (columns: :func:`csv_columns`)."""
    rows = []
    for f in result.faces:
        b = f.box
        rows.append([f"{result.time_s:.3f}", str(result.index), str(f.id), str(b.x), str(b.y), str(b.w), str(b.h),
                     f.label, f"{f.score:.4f}", "1" if f.found else "0",
                     *(f"{f.scores.get(k, 0.0):.4f}" for k in labels),
                     *([f"{v:.1f}" for p in b.landmarks for v in p] if b.landmarks else [""] * 10)])
    return rows
