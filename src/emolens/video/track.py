"""Following faces from frame to frame: stable ids (:class:`IoUTracker`) and steady emotions (:class:`EmaSmoother`).

Pure numpy; knows nothing about video files, detectors or models, so it also works on boxes and
probabilities that come from anywhere.

    tracker, smoother = IoUTracker(), EmaSmoother(tau=0.25)
    for t, boxes, probs in stream:                       # boxes: list[Box], probs: N×C
        ids = tracker.update(boxes)
        steady = [smoother.update(i, p, t) for i, p in zip(ids, probs)]
        smoother.forget(tracker.ids())
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..face.detect.base import Box


@dataclass
class Track:
    """One face followed over time.

    Attributes:
        id: stable id, 1, 2, 3 ... in order of first appearance; never reused.
        box: where the face was last seen.
        vx, vy: estimated motion of the box centre, pixels per update (for prediction).
        hits: updates in which it was matched.
        missed: consecutive updates in which it was not matched (0 = seen in the last one).
    """

    id: int
    box: Box
    vx: float = 0.0
    vy: float = 0.0
    hits: int = 1
    missed: int = 0

    def predicted(self) -> Box:
        """The box moved by the track's velocity once per update since it was last seen."""
        k = self.missed + 1
        return self.box.moved_to(round(self.box.x + self.vx * k), round(self.box.y + self.vy * k), self.box.w,
                                 self.box.h)


def _centre(b: Box) -> tuple[float, float]:
    return b.x + b.w / 2, b.y + b.h / 2


class IoUTracker:
    """Gives each face box a stable id by matching it to the boxes of the previous updates.

    Matching is greedy, best pair first: first by overlap (IoU with the track's predicted box at
    least ``iou_threshold``), then, for what is left, by centre distance (at most ``max_distance``
    × the face size), which catches fast moves and sudden size changes. A box that matches no
    track starts a new one; a track unmatched for more than ``max_missed`` updates is dropped
    (a face that comes back later gets a new id).

    Args:
        iou_threshold: smallest overlap that counts as the same face.
        max_distance: largest centre distance, as a fraction of the mean face side, for the second pass.
        max_missed: how many updates a track survives without a match.
        velocity: how much of the newest motion enters the velocity estimate (0 = no prediction).
    """

    def __init__(self, *, iou_threshold: float = 0.3, max_distance: float = 0.6, max_missed: int = 10,
                 velocity: float = 0.5) -> None:
        if not 0 < iou_threshold <= 1:
            raise ValueError("iou_threshold must be in (0, 1]")
        if max_missed < 0:
            raise ValueError("max_missed must be >= 0")
        self.iou_threshold, self.max_distance, self.max_missed = iou_threshold, max_distance, max_missed
        self.velocity = velocity
        self.tracks: list[Track] = []
        self._next_id = 1

    def ids(self) -> list[int]:
        """Ids of the live tracks."""
        return [t.id for t in self.tracks]

    def get(self, track_id: int) -> Track | None:
        return next((t for t in self.tracks if t.id == track_id), None)

    def reset(self) -> None:
        """Forget every track (ids keep counting up)."""
        self.tracks = []

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Match this frame's boxes to the tracks; returns one id per box, in the order given."""
        preds = [t.predicted() for t in self.tracks]
        assigned: list[int | None] = [None] * len(boxes)
        free_t, free_b = set(range(len(self.tracks))), set(range(len(boxes)))

        pairs = [(b.iou(p), ti, bi) for ti, p in enumerate(preds) for bi, b in enumerate(boxes)]
        for score, ti, bi in sorted(pairs, key=lambda s: -s[0]):
            if score < self.iou_threshold:
                break
            if ti in free_t and bi in free_b:
                self._match(ti, boxes[bi])
                assigned[bi] = self.tracks[ti].id
                free_t.discard(ti)
                free_b.discard(bi)

        dists = []
        for ti in free_t:
            (px, py), p = _centre(preds[ti]), preds[ti]
            for bi in free_b:
                (bx, by), b = _centre(boxes[bi]), boxes[bi]
                d = math.hypot(px - bx, py - by) / max(1.0, (p.w + p.h + b.w + b.h) / 4)
                ratio = max(b.w, p.w) / max(1, min(b.w, p.w))
                if d <= self.max_distance and ratio <= 2.0:
                    dists.append((d, ti, bi))
        for _, ti, bi in sorted(dists):
            if ti in free_t and bi in free_b:
                self._match(ti, boxes[bi])
                assigned[bi] = self.tracks[ti].id
                free_t.discard(ti)
                free_b.discard(bi)

        for ti in free_t:
            self.tracks[ti].missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi in sorted(free_b):
            t = Track(self._next_id, boxes[bi])
            self._next_id += 1
            self.tracks.append(t)
            assigned[bi] = t.id
        return [int(i) for i in assigned]  # type: ignore[arg-type]

    def _match(self, ti: int, box: Box) -> None:
        t = self.tracks[ti]
        (ox, oy), (nx, ny) = _centre(t.box), _centre(box)
        steps = t.missed + 1
        a = self.velocity
        t.vx = (1 - a) * t.vx + a * (nx - ox) / steps
        t.vy = (1 - a) * t.vy + a * (ny - oy) / steps
        t.box, t.missed, t.hits = box, 0, t.hits + 1


class EmaSmoother:
    """Exponential moving average of each track's class probabilities (and, optionally, its box).

    The weights depend on the time between updates, not on the frame rate: after ``tau``
    seconds an old value has lost 63% of its weight, so a 15 fps webcam and a 60 fps file
    look alike. ``tau=0`` turns smoothing off (the raw values pass through).

    Two emotions that are nearly tied would still swap places often; :meth:`label` therefore
    keeps a track's current label until another one is ahead of it by ``hysteresis``.

    Args:
        tau: time constant for the probabilities, seconds (0 = off).
        box_tau: time constant for the box corners, seconds (0 = off; boxes lag moving faces
            by about this much, so keep it short).
        hysteresis: probability lead a new label needs to replace the current one (0 = plain argmax).
    """

    def __init__(self, tau: float = 0.25, box_tau: float = 0.0, hysteresis: float = 0.05) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in (tau, box_tau, hysteresis)):  # NaN gave NaN scores
            raise ValueError(f"smoothing time constants and hysteresis must be finite numbers >= 0, not "
                             f"{tau}, {box_tau}, {hysteresis}")
        self.tau, self.box_tau, self.hysteresis = tau, box_tau, hysteresis
        self._probs: dict[int, tuple[float, np.ndarray]] = {}
        self._boxes: dict[int, tuple[float, np.ndarray]] = {}
        self._labels: dict[int, int] = {}

    @property
    def enabled(self) -> bool:
        return self.tau > 0

    @staticmethod
    def _blend(state: dict[int, tuple[float, np.ndarray]], key: int, value: np.ndarray, t: float,
               tau: float) -> np.ndarray:
        prev = state.get(key)
        if prev is None or tau <= 0:
            out = value
        else:
            t0, old = prev
            alpha = 1.0 - math.exp(-max(0.0, t - t0) / tau)  # weight of the new value
            out = old + alpha * (value - old)
        state[key] = (t, out)
        return out

    def update(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        """The smoothed probabilities of ``track_id`` after adding ``probs`` observed at time ``t`` (s)."""
        p = np.asarray(probs, dtype=np.float64)
        out = self._blend(self._probs, track_id, p, t, self.tau)
        return out / out.sum() if out.sum() > 0 else out

    def label(self, track_id: int, probs: np.ndarray) -> int:
        """Index of the label to show for ``track_id``: the argmax, unless the current label is within
        ``hysteresis`` of it (then the current label stays)."""
        best = int(np.argmax(probs))
        cur = self._labels.get(track_id)
        if cur is not None and cur < len(probs) and probs[best] - probs[cur] < self.hysteresis:
            best = cur
        self._labels[track_id] = best
        return best

    def current(self, track_id: int) -> tuple[np.ndarray, int] | None:
        """The smoothed probabilities and label index of ``track_id`` as they are now, without a new
        observation (for a face that was not seen this frame); ``None`` for an unknown track."""
        prev = self._probs.get(track_id)
        if prev is None:
            return None
        p = prev[1]
        p = p / p.sum() if p.sum() > 0 else p
        return p, self._labels.get(track_id, int(np.argmax(p)))

    def update_box(self, track_id: int, box: Box, t: float) -> Box:
        """The smoothed box of ``track_id`` after adding ``box`` observed at time ``t`` (s)."""
        if self.box_tau <= 0:
            return box
        v = np.array([box.x, box.y, box.x + box.w, box.y + box.h], dtype=np.float64)
        x0, y0, x1, y1 = self._blend(self._boxes, track_id, v, t, self.box_tau)
        return box.moved_to(round(x0), round(y0), max(1, round(x1 - x0)), max(1, round(y1 - y0)))

    def forget(self, keep: Iterable[int]) -> None:
        """Drop the state of every track not in ``keep`` (call with the tracker's live ids)."""
        keep = set(keep)
        for state in (self._probs, self._boxes, self._labels):
            for k in [k for k in state if k not in keep]:
                del state[k]

    def reset(self) -> None:
        self._probs.clear()
        self._boxes.clear()
        self._labels.clear()


def count_switches(labels: Sequence[str]) -> int:
    """How often consecutive labels differ (a flicker measure)."""
    return sum(a != b for a, b in zip(labels, labels[1:]))
