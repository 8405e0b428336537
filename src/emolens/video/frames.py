"""The per-frame work: find the faces (a full search every few frames, a local one between), classify,
follow and smooth them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..face.detect import FAST_DETECTOR, Box, Detector, HaarDetector, merge_overlapping
from ..recognizer import EmotionRecognizer
from .results import FrameResult, TrackedFace
from .sources import FrameSource, VideoInput, open_source
from .track import EmaSmoother, IoUTracker


def local_detector_for(detector: Detector) -> Detector:
    """A detector for the small window around a known face: a fast upright Haar search when
    the main detector is Haar, else the main detector itself."""
    if isinstance(detector, HaarDetector):
        return HaarDetector(angles=(0.0,), max_side=144, pad=0.05, min_size=0.2, min_size_px=20, scale_factor=1.15)
    return detector


class FrameTracker:
    """The work done on each frame: find faces, keep their ids, classify them, smooth the result.

    Args:
        recognizer: the :class:`EmotionRecognizer` (its detector does the full searches).
        detect_every: run a full face search at least every this many frames of the source
            (1 = every frame), so a new face is found within that many frames. In between, known
            faces are followed with a local search (``local_search``) or kept where they were.
        every: how many source frames each :meth:`process` call stands for (``track_frames``'s
            ``every``): full searches then run every ``max(1, detect_every // every)`` processed
            frames, e.g. on every processed frame when ``every >= detect_every``.
        smoothing: time constant in seconds of the emotion smoothing (0 = off, raw per-frame labels).
        hysteresis: a face's label changes only when another emotion is ahead by this much
            (with smoothing on; see :class:`emolens.video.track.EmaSmoother`).
        box_smoothing: time constant in seconds of the box smoothing (0 = off).
        hold: keep a face that was not found for up to this many processed frames at its last
            place, with the emotion it had (it is not classified again there; ``missed`` > 0).
        max_missed: frames a face may stay unseen and keep its id.
        local_search: follow known faces between full searches by searching a window around them.
        local_detector: the detector for that window (default: :func:`local_detector_for`).
    """

    def __init__(
        self,
        recognizer: EmotionRecognizer,
        *,
        detect_every: int = 5,
        every: int = 1,
        smoothing: float = 0.25,
        hysteresis: float = 0.05,
        box_smoothing: float = 0.0,
        hold: int = 3,
        max_missed: int = 10,
        local_search: bool = True,
        local_detector: Detector | None = None,
    ) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be >= 1")
        if every < 1:
            raise ValueError("every must be >= 1")
        if hold < 0:
            raise ValueError("hold must be >= 0")
        self.recognizer = recognizer
        self.detect_every, self.every, self.hold, self.local_search = detect_every, every, hold, local_search
        self.search_interval = max(1, detect_every // every)
        """Processed frames between full searches."""
        self.local_detector = local_detector or local_detector_for(recognizer.detector)
        self.tracker = IoUTracker(max_missed=max(max_missed, hold), max_distance=1.0)
        self.smoother = EmaSmoother(tau=smoothing, box_tau=box_smoothing, hysteresis=hysteresis if smoothing else 0.0)
        self._count = 0

    @property
    def labels(self) -> list[str]:
        return self.recognizer.labels

    def reset(self) -> None:
        """Forget every face (e.g. after a scene cut or a seek)."""
        self.tracker.reset()
        self.smoother.reset()
        self._count = 0

    def _search_near(self, frame: np.ndarray, box: Box) -> Box | None:
        h, w = frame.shape[:2]
        win = box.expand(1.0, w, h)  # 3× the face: it may have moved by up to one face width
        if win.w < 8 or win.h < 8:
            return None
        found = self.local_detector.detect(frame[win.y : win.y + win.h, win.x : win.x + win.w])
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        best, best_d = None, math.inf
        for b in found:
            if not 0.6 <= b.w / max(1, box.w) <= 1.6:
                continue
            d = math.hypot(win.x + b.x + b.w / 2 - cx, win.y + b.y + b.h / 2 - cy)
            if d < best_d:
                best, best_d = b.moved_to(win.x + b.x, win.y + b.y, b.w, b.h), d
        return best if best is not None and best_d <= box.w else None

    def process(self, frame: np.ndarray, index: int = 0, time_s: float = 0.0) -> FrameResult:
        """Faces of one uint8 BGR frame, with ids and smoothed emotions."""
        full = self._count % self.search_interval == 0 or not self.tracker.tracks
        self._count += 1
        if full:
            self._count = 1
            boxes = list(self.recognizer.detector.detect(frame))
            # known faces the full search missed (e.g. Haar flicker) get a local search too
            pending = [t for t in self.tracker.tracks if all(b.iou(t.predicted()) < 0.3 for b in boxes)]
        else:
            boxes = []
            pending = list(self.tracker.tracks)
        for t in pending:
            pred = t.predicted()
            b = self._search_near(frame, pred) if self.local_search else (pred if not full else None)
            if b is not None:
                boxes.append(b)
        boxes = merge_overlapping(boxes, iou_threshold=0.3)
        ids = self.tracker.update(boxes)

        report: list[tuple[int, Box, int]] = [(i, b, 0) for i, b in zip(ids, boxes)]
        for t in self.tracker.tracks:  # hold faces just missed, unless a found face is already there
            if 0 < t.missed <= self.hold and all(t.box.iou(b) < 0.3 for b in boxes):
                report.append((t.id, t.box, t.missed))
        h, w = frame.shape[:2]
        report = [(i, Box(max(0, b.x), max(0, b.y), min(w, b.x + b.w) - max(0, b.x),
                          min(h, b.y + b.h) - max(0, b.y), b.score, b.landmarks), m) for i, b, m in report]
        report = [r for r in report if r[1].w >= 2 and r[1].h >= 2]
        # only faces found in this frame are classified: a held face's box may show background now,
        # so it keeps the emotion it had when it was last found
        found = [r for r in report if r[2] == 0]
        faces_raw = self.recognizer.classify_boxes(frame, [b for _, b, _ in found])
        raw_of = {tid: f.scores for (tid, _, _), f in zip(found, faces_raw)}
        labels = self.labels
        faces: list[TrackedFace] = []
        for tid, box, missed in report:
            raw_scores = raw_of.get(tid)
            if raw_scores is not None:
                p = self.smoother.update(tid, np.array([raw_scores[k] for k in labels], dtype=np.float64), time_s)
                k = self.smoother.label(tid, p)
            else:
                state = self.smoother.current(tid)
                if state is None:  # never classified (cannot happen through process): nothing to show
                    continue
                p, k = state
                raw_scores = {}
            faces.append(TrackedFace(
                box=self.smoother.update_box(tid, box, time_s), label=labels[k], score=float(p[k]),
                scores={lab: float(v) for lab, v in zip(labels, p)}, id=tid, raw_scores=raw_scores, missed=missed,
            ))
        self.smoother.forget(self.tracker.ids())
        faces.sort(key=lambda f: f.box.area, reverse=True)
        return FrameResult(index, time_s, faces, frame, detected=full)


def track_frames(
    source: VideoInput | FrameSource,
    recognizer: EmotionRecognizer | None = None,
    *,
    every: int = 1,
    **options: Any,
) -> Iterator[FrameResult]:
    """Recognise and follow the faces of a video, camera or frame sequence, one result per processed frame.

    Args:
        source: a video file path, a camera index, a ``cv2.VideoCapture``-like object, or an
            iterable of BGR arrays (timed at 30 fps).
        recognizer: an :class:`EmotionRecognizer`; default: the bundled model with the
            ``centerface-fast`` detector.
        every: process every N-th frame only (the others are read and skipped).
        **options: passed to :class:`FrameTracker` (``detect_every``, ``smoothing``, ``hold`` ...);
            ``detect_every`` counts frames of the source, so a larger ``every`` does not delay new faces.

    Yields:
        :class:`FrameResult` with the frame's index, its time in seconds and the faces, each with a
        stable ``id``.

    Raises:
        VideoError: the source cannot be opened or decoded.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    rec = recognizer or EmotionRecognizer(detector=FAST_DETECTOR, threads=1)
    ft = FrameTracker(rec, every=every, **options)
    src = open_source(source, max_pixels=rec.max_pixels)
    try:
        for index, t, frame in src:
            if index % every == 0:
                yield ft.process(frame, index, t)
    finally:
        if src is not source:
            src.release()
