"""Video and webcam: frame source ─► recogniser ─► tracker ─► smoother ─► writers (video, CSV, plot) or a window.

For your own apps, :func:`track_frames` is a generator of per-frame results with stable face ids::

    from emolens import EmotionRecognizer
    from emolens.video import track_frames

    rec = EmotionRecognizer(detector=FAST_DETECTOR)
    for r in track_frames("clip.mp4", rec):            # a path, a camera index, a cv2.VideoCapture, or BGR arrays
        for face in r.faces:
            print(r.index, f"{r.time_s:.2f}", face.id, face.label, f"{face.score:.0%}")

Speed: a full face search (the slow part) runs at least every ``detect_every`` frames of the
source; between them each known face is searched for again in a small window around where it is
expected (a few ms), and every processed frame is classified (one ONNX Runtime thread by default:
for one small batch per frame that is faster than many). The emotion of each face is an exponential moving average over
``smoothing`` seconds (:class:`emolens.track.EmaSmoother`), so labels do not flicker.
"""

from __future__ import annotations

import csv
import math
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, Union

import cv2
import numpy as np

from .detect import FAST_DETECTOR, LANDMARK_NAMES, Box, Detector, HaarDetector, merge_overlapping
from .draw import colour_for
from .imageio import describe, quiet_opencv, to_bgr8
from .progress import Progress
from .recognizer import EmotionRecognizer
from .results import Face
from .track import EmaSmoother, IoUTracker

# FFmpeg prints its own complaints ("moov atom not found") before our clearer error; keep it quiet
# unless the user asked for its logs. Read when OpenCV first opens a file with FFmpeg.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_SUFFIXES: dict[str, str] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
"""Annotated-video file types and the codec written for each (all in every OpenCV wheel)."""

PLOT_SUFFIXES = (".png", ".jpg", ".jpeg")

HEADLESS_HINT = (
    "this OpenCV has no window support (opencv-python-headless, which emolens installs, cannot open windows). "
    "For the live window install the full OpenCV in its place: "
    "pip uninstall -y opencv-python-headless && pip install 'opencv-python>=4.9,<5'. "
    "Without a screen, use `emolens video` on a recorded file instead."
)


class VideoError(ValueError):
    """A video, camera or display problem, with a message that says what to do."""


# ----------------------------------------------------------------------------- results
@dataclass
class TrackedFace(Face):
    """A :class:`emolens.Face` followed over time.

    ``scores`` are smoothed over time and ``label`` changes only when another emotion is clearly
    ahead (see :class:`emolens.track.EmaSmoother`); ``score`` is ``scores[label]``;
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


# ----------------------------------------------------------------------------- sources
class Capture(Protocol):
    """What emolens needs from a capture object (``cv2.VideoCapture`` has it)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


VideoInput = Union[str, os.PathLike, int, Capture, Iterable[np.ndarray]]  # noqa: UP007
"""A video file path, a camera index, a capture object, or an iterable of BGR frames."""


class FrameSource:
    """Frames from a file, a camera, a capture object or an iterable, numbered and time-stamped.

    Iterating yields ``(index, time_s, bgr)``. Use :func:`open_source` to build one.

    Attributes:
        name: what to call the source in messages.
        fps: frames per second (from the file; ``default_fps`` when unknown; cameras: nominal).
        frame_count: frames in the file, or ``None`` when unknown (cameras, iterables).
        live: ``True`` for cameras: times are wall-clock seconds since the first frame.
    """

    def __init__(self, reader: Any, *, name: str, fps: float, frame_count: int | None = None,
                 live: bool = False, release: Any = None) -> None:
        self._reader, self._release = reader, release
        self.name, self.fps, self.frame_count, self.live = name, fps, frame_count, live
        self._first: np.ndarray | None = None

    def _read(self) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        return self._reader()

    def peek(self) -> np.ndarray:
        """The first frame (kept for iteration); raises :class:`VideoError` when there is none."""
        if self._first is None:
            self._first = self._reader()
        if self._first is None:
            if self.live:
                raise VideoError(f"{self.name}: opened, but it gave no picture (is another program using it?)")
            raise VideoError(f"{self.name}: no frame could be decoded (empty, truncated or corrupt video)")
        return self._first

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        start = None
        index = 0
        while True:
            frame = self._read()
            if frame is None:
                return
            if self.live:
                now = time.monotonic()
                start = now if start is None else start
                t = now - start
            else:
                t = index / self.fps
            yield index, t, frame
            index += 1

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _capture_reader(cap: Any, name: str) -> Any:
    def read() -> np.ndarray | None:
        ok, frame = cap.read()
        if not ok or frame is None:
            return None
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            frame = to_bgr8(frame, name=name)
        return frame
    return read


def _capture_fps(cap: Any, default: float) -> float:
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    except Exception:  # noqa: BLE001 - fake or exotic capture objects
        return default
    return fps if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else default


def open_source(source: VideoInput | FrameSource, *, default_fps: float = 30.0) -> FrameSource:
    """Open a video file, a camera (an ``int``), a capture object or an iterable of BGR arrays.

    Raises:
        VideoError: the file is missing, empty or not a video OpenCV can decode, or the camera
            cannot be opened. The message says which and what to try.
    """
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, bool):
        raise VideoError(f"not a video source: {source!r}")
    if isinstance(source, int):
        with quiet_opencv():  # no "[ WARN ... cap_v4l ...]" lines before our own message
            cap = cv2.VideoCapture(source)
            opened = cap.isOpened()
        if not opened:
            cap.release()
            raise VideoError(
                f"cannot open camera {source}: there is no camera with that number, or another program is using it, "
                "or this program may not use it. Try --camera 1, close other video apps, check the camera's "
                "permissions (Linux: ls /dev/video*, and membership of the 'video' group)"
            )
        name = f"camera {source}"
        return FrameSource(_capture_reader(cap, name), name=name, fps=_capture_fps(cap, default_fps),
                           live=True, release=cap.release)
    if isinstance(source, (str, os.PathLike)):
        p, name = Path(source), describe(source)
        if not p.exists():
            raise VideoError(f"{name}: no such file")
        if p.is_dir():
            raise VideoError(f"{name}: is a directory, not a video file")
        try:
            info = p.stat()
        except OSError as e:
            raise VideoError(f"{name}: cannot read ({e.strerror or e})") from None
        if not stat.S_ISREG(info.st_mode):  # a named pipe would block FFmpeg until a writer comes
            raise VideoError(f"{name}: is not a regular file (a pipe or a device); only video files are read")
        if info.st_size == 0:
            raise VideoError(f"{name}: file is empty (0 bytes)")
        if not os.access(p, os.R_OK):
            raise VideoError(f"{name}: permission denied")
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{name}: cannot decode: not a video format OpenCV can read, or the file is corrupt")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        src = FrameSource(_capture_reader(cap, name), name=name, fps=_capture_fps(cap, default_fps),
                          frame_count=n if n > 0 else None, release=cap.release)
        try:
            src.peek()
        except VideoError:
            src.release()
            raise
        return src
    if hasattr(source, "read"):  # cv2.VideoCapture or anything like it
        cap = source
        opened = getattr(cap, "isOpened", None)
        if opened is not None and not opened():
            raise VideoError("the capture object is not opened")
        name = f"<{type(cap).__name__}>"  # the caller's object: the caller releases it
        return FrameSource(_capture_reader(cap, name), name=name, fps=_capture_fps(cap, default_fps))
    if isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray, np.ndarray)):
        it = iter(source)

        def read() -> np.ndarray | None:
            frame = next(it, None)
            return None if frame is None else to_bgr8(np.asarray(frame), name="<frame>")

        return FrameSource(read, name="<frames>", fps=default_fps)
    raise VideoError(
        f"unsupported video source {type(source).__name__}: pass a file path, a camera index, a capture object "
        "or an iterable of BGR frames"
    )


# ----------------------------------------------------------------------------- per-frame work
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
            (with smoothing on; see :class:`emolens.track.EmaSmoother`).
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
    src = open_source(source)
    try:
        for index, t, frame in src:
            if index % every == 0:
                yield ft.process(frame, index, t)
    finally:
        if src is not source:
            src.release()


# ----------------------------------------------------------------------------- drawing
def draw_faces(frame: np.ndarray, faces: list[TrackedFace], *, bars: bool = True, fps: float | None = None,
               labels: list[str] | None = None) -> np.ndarray:
    """Draw, **in place**, each face's box, ``#id label 93%`` and (``bars``) a bar per emotion; and the fps.

    Returns ``frame``.
    """
    h, w = frame.shape[:2]
    base = max(h, w)
    thick = max(1, round(base / 500))
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = max(0.4, base / 1400)
    for face in faces:
        b, col = face.box, colour_for(face.label)
        cv2.rectangle(frame, (b.x, b.y), (b.x + b.w, b.y + b.h), col, thick + 1)
        text = f"#{face.id} {face.label} {face.score:.0%}"
        (tw, th), bl = cv2.getTextSize(text, font, fs, thick)
        ty = b.y - 4 if b.y - th - bl - 4 >= 0 else min(h - 1, b.y + b.h + th + bl + 4)
        cv2.rectangle(frame, (b.x, ty - th - bl), (b.x + tw + 4, ty + 2), col, cv2.FILLED)
        cv2.putText(frame, text, (b.x + 2, ty - bl // 2), font, fs, (0, 0, 0) if sum(col) > 380 else (255, 255, 255),
                    thick, cv2.LINE_AA)
        if bars and face.scores:
            _draw_bars(frame, face, labels or list(face.scores), fs * 0.8)
    if fps is not None:
        text = f"{fps:.1f} fps"
        (tw, th), bl = cv2.getTextSize(text, font, fs, thick)
        cv2.rectangle(frame, (0, 0), (tw + 8, th + bl + 8), (0, 0, 0), cv2.FILLED)
        cv2.putText(frame, text, (4, th + 4), font, fs, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


def _draw_bars(frame: np.ndarray, face: TrackedFace, labels: list[str], fs: float) -> None:
    """A small bar chart of every emotion's probability beside the face (right side if it fits, else left)."""
    h, w = frame.shape[:2]
    b = face.box
    row = max(10, int(22 * fs))
    name_w = cv2.getTextSize("surprise", cv2.FONT_HERSHEY_SIMPLEX, fs, 1)[0][0] + 4
    bar_w = max(30, int(b.w * 0.6))
    total_w = name_w + bar_w + 6
    x0 = b.x + b.w + 6 if b.x + b.w + 6 + total_w <= w else max(0, b.x - total_w - 6)
    y0 = max(0, min(b.y, h - row * len(labels)))
    cv2.rectangle(frame, (x0 - 2, y0), (min(w - 1, x0 + total_w), min(h - 1, y0 + row * len(labels) + 2)),
                  (30, 30, 30), cv2.FILLED)
    for i, lab in enumerate(labels):
        y = y0 + i * row
        if y + row > h:
            break
        p = face.scores.get(lab, 0.0)
        cv2.putText(frame, lab[:8], (x0, y + row - 3), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
        bx = x0 + name_w
        cv2.rectangle(frame, (bx, y + 2), (bx + bar_w, y + row - 2), (60, 60, 60), cv2.FILLED)
        cv2.rectangle(frame, (bx, y + 2), (bx + int(round(bar_w * p)), y + row - 2), colour_for(lab), cv2.FILLED)


# ----------------------------------------------------------------------------- writers
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


def _nice_step(span: float, max_ticks: int = 10) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= max_ticks:
            return float(step)
    return 3600.0 * math.ceil(span / 3600 / max_ticks)


Series = dict[int, tuple[list[float], list[np.ndarray], list[str]]]
"""Per face id: times in s, probability vectors in ``labels`` order, and the label shown."""


def render_timeline(series: Series, labels: list[str], *,
                    width: int = 1200, panel_h: int = 150, max_faces: int = 8) -> np.ndarray:
    """A BGR image: per face id, each emotion's probability over time (a line per emotion), with a
    strip coloured by the label shown (in the video and the CSV's ``label``) below it. Drawn with
    OpenCV (no matplotlib needed).

    Args:
        series: face id -> (times in s, probability vectors in ``labels`` order, shown labels).
        max_faces: plot at most this many faces (those seen in most frames).
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    ids = sorted(series, key=lambda i: len(series[i][0]), reverse=True)[:max_faces]
    ids.sort()
    left, right, top, legend_h, strip = 70, 20, 10, 34, 10
    img_h = top + legend_h + max(1, len(ids)) * (panel_h + strip + 40) + 20
    img = np.full((img_h, width, 3), 255, np.uint8)
    x = left
    for lab in labels:  # legend
        cv2.rectangle(img, (x, top + 8), (x + 24, top + 20), colour_for(lab), cv2.FILLED)
        cv2.putText(img, lab, (x + 30, top + 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += 40 + cv2.getTextSize(lab, font, 0.5, 1)[0][0]
    if not ids:
        cv2.putText(img, "no faces found", (left, top + legend_h + 40), font, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    t0 = min(series[i][0][0] for i in ids)
    t1 = max(series[i][0][-1] for i in ids)
    span = max(t1 - t0, 1e-3)
    pw = width - left - right

    def xpix(t: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(t) - t0) / span * pw

    step = _nice_step(span)
    for n, tid in enumerate(ids):
        y0 = top + legend_h + n * (panel_h + strip + 40) + 20
        times, probs, shown = series[tid]
        ts, ps = np.asarray(times, dtype=np.float64), np.asarray(probs, dtype=np.float64).reshape(len(times), -1)
        cv2.putText(img, f"face #{tid}", (left, y0 - 6), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, y0), (left + pw, y0 + panel_h), (180, 180, 180), 1)
        for v in (0.0, 0.5, 1.0):
            y = int(round(y0 + panel_h * (1 - v)))
            cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
            cv2.putText(img, f"{v:.1f}", (left - 34, y + 4), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        tick = math.ceil(t0 / step) * step
        while tick <= t1 + 1e-9:
            xt = int(round(float(xpix(tick))))
            cv2.line(img, (xt, y0 + panel_h + strip), (xt, y0 + panel_h + strip + 4), (90, 90, 90), 1)
            txt = f"{tick:g}s"
            cv2.putText(img, txt, (xt - 8, y0 + panel_h + strip + 18), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
            tick += step
        xs = xpix(ts)
        for k, lab in enumerate(labels):
            ys = y0 + panel_h * (1 - ps[:, k])
            pts = np.stack([xs, ys], axis=1).round().astype(np.int32).reshape(-1, 1, 2)
            if len(pts) == 1:
                cv2.circle(img, tuple(int(v) for v in pts[0, 0]), 2, colour_for(lab), cv2.FILLED)
            else:
                cv2.polylines(img, [pts], False, colour_for(lab), 2, cv2.LINE_AA)
        win = [labels.index(lab) for lab in shown]
        edges = np.append(xs, xs[-1] + max(1.0, pw / max(1, len(xs))))
        for j in range(len(ts)):
            xa, xb = int(round(edges[j])), max(int(round(edges[j])) + 1, int(round(edges[j + 1])))
            cv2.rectangle(img, (xa, y0 + panel_h + 2), (min(xb, left + pw), y0 + panel_h + strip),
                          colour_for(labels[int(win[j])]), cv2.FILLED)
    return img


def _fourcc_for(path: Path) -> str:
    try:
        return VIDEO_SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise VideoError(f"{path}: unsupported video file type; use one of {', '.join(VIDEO_SUFFIXES)}") from None


def check_outputs(
    source: VideoInput,
    *,
    out: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    force: bool = False,
) -> None:
    """Refuse outputs that exist (unless ``force``), that are the input, that coincide, have a wrong
    type, or cannot be written (their folder is a file, or is not writable). Creates nothing: the
    missing folders are made by :func:`prepare_outputs` once the input has been opened.

    Raises:
        VideoError: with a message naming the output and what to do.
    """
    outs = [(opt, Path(p)) for opt, p in (("--out", out), ("--csv", csv_path), ("--plot", plot)) if p is not None]
    if out is not None:
        _fourcc_for(Path(out))
    if plot is not None and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise VideoError(f"{plot}: the plot is an image; give a name ending in {', '.join(PLOT_SUFFIXES)}")
    src = Path(source) if isinstance(source, (str, os.PathLike)) else None
    seen: dict[Path, str] = {}
    for opt, p in outs:
        r = p.resolve()
        if src is not None and (r == src.resolve() or (p.exists() and src.exists() and os.path.samefile(p, src))):
            raise VideoError(f"{opt} {p}: that is the input video; choose another output name")
        if r in seen:
            raise VideoError(f"{opt} {p}: same file as {seen[r]}; give each output its own name")
        seen[r] = opt
        if p.is_dir():
            raise VideoError(f"{opt} {p}: is a directory; give a file name")
        if p.exists() and not force:
            raise VideoError(f"{opt} {p}: already exists; pass --force to replace it, or choose another name")
        _check_writable(opt, p)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (as anything: a file too)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(opt: str, path: Path) -> None:
    """A clear error unless a file can be created at ``path`` (its folder exists or can be made)."""
    parent = path.parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise VideoError(f"{opt} {path}: cannot create it: {base} is a file, not a folder")
    try:  # what counts is whether a file can really be made there (read-only mounts, /proc, ACLs ...)
        fd, probe = tempfile.mkstemp(prefix=".emolens-", suffix=".tmp", dir=base)
    except OSError as e:
        where = "its folder" if base == Path(os.path.abspath(parent)) else "the folder"
        raise VideoError(f"{opt} {path}: cannot write in {where} {base} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def prepare_outputs(
    *,
    out: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
) -> None:
    """Create the outputs' missing folders (after :func:`check_outputs`, before any work is done).

    Raises:
        VideoError: a folder cannot be created.
    """
    for opt, p in (("--out", out), ("--csv", csv_path), ("--plot", plot)):
        if p is None:
            continue
        parent = Path(p).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VideoError(f"{opt} {p}: cannot create the folder {parent} ({e.strerror or e})") from None


@dataclass
class VideoSummary:
    """What :func:`process_video` did."""

    source: str
    frames: int = 0
    """Frames read from the source."""
    expected: int | None = None
    """Frames the container says it holds (``None``: it does not say, e.g. a camera)."""
    processed: int = 0
    """Frames recognised (with ``every`` > 1, every N-th of them)."""
    written: int = 0
    """Frames in the annotated video."""
    rows: int = 0
    face_ids: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    outputs: list[Path] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def missing(self) -> int:
        """Frames the container claims that could not be read (0 when it claims none or after Ctrl-C)."""
        if self.expected is None or self.interrupted:
            return 0
        return max(0, self.expected - self.frames)

    @property
    def stopped_early(self) -> bool:
        """The frames stopped more than one frame before the count the container claims: a corrupt or truncated
        video. (One frame of slack: some containers only estimate their count from duration × frame rate.)"""
        return self.missing > 1


def process_video(
    source: VideoInput | FrameSource,
    *,
    out: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    recognizer: EmotionRecognizer | None = None,
    every: int = 1,
    force: bool = False,
    progress: bool = True,
    bars: bool = True,
    progress_stream: IO[str] | None = None,
    **options: Any,
) -> VideoSummary:
    """Recognise a whole video: an annotated copy, a CSV (one row per face per processed frame) and a plot.

    Every frame of the input goes into the annotated video; with ``every`` > 1 only every N-th frame
    is recognised and the frames in between show the last result. Ctrl-C (``KeyboardInterrupt``)
    stops early and still closes every output properly (a playable video, a complete CSV, the plot
    so far); the summary then has ``interrupted=True``.

    Args:
        source: a video path, camera index, capture object or iterable of frames.
        out: annotated video file (.mp4, .avi, .mkv, .mov, .m4v).
        csv_path: CSV file, columns :func:`csv_columns`.
        plot: PNG/JPEG of each face's emotions over time.
        every: recognise every N-th frame.
        force: replace existing output files (the input is never written over).
        **options: passed to :class:`FrameTracker`.

    Raises:
        VideoError: unreadable input, unusable or existing outputs. Every output is checked (and
            its folder created) before the first frame is processed, so a run does not fail at the
            end because of an output path.
    """
    if every < 1:
        raise VideoError("--every must be at least 1")
    check_outputs(source, out=out, csv_path=csv_path, plot=plot, force=force)
    src = open_source(source)
    summary = VideoSummary(src.name, expected=src.frame_count)
    writer = csv_file = None
    series: Series = {}
    try:
        prepare_outputs(out=out, csv_path=csv_path, plot=plot)
        first = src.peek()
        rec = recognizer or EmotionRecognizer(detector=FAST_DETECTOR, threads=1)
        ft = FrameTracker(rec, every=every, **options)
        labels = ft.labels
        h, w = first.shape[:2]
        if out is not None:
            op = Path(out)
            writer = cv2.VideoWriter(str(op), cv2.VideoWriter_fourcc(*_fourcc_for(op)), src.fps, (w, h))
            if not writer.isOpened():
                writer.release()
                writer = None
                raise VideoError(f"--out {op}: OpenCV cannot write this video file")
            summary.outputs.append(op)
        csv_w = None
        if csv_path is not None:
            cp = Path(csv_path)
            try:
                csv_file = open(cp, "w" if force else "x", newline="", encoding="utf-8")  # noqa: SIM115
            except FileExistsError:
                raise VideoError(f"--csv {cp}: already exists; pass --force to replace it") from None
            except OSError as e:
                raise VideoError(f"--csv {cp}: cannot write it ({e.strerror or e})") from None
            csv_w = csv.writer(csv_file)
            csv_w.writerow(csv_columns(labels))
            summary.outputs.append(cp)
        bar = Progress(src.frame_count, stream=progress_stream, enabled=progress)
        start = time.monotonic()
        last: FrameResult | None = None
        try:
            for index, t, frame in src:
                summary.frames = index + 1  # read; the counts below follow what was finished
                if index % every == 0:
                    last = ft.process(frame, index, t)
                    summary.processed += 1
                    if csv_w is not None:
                        rows = csv_rows(last, labels)
                        csv_w.writerows(rows)
                        summary.rows += len(rows)
                    for f in last.faces:
                        ts, ps, shown = series.setdefault(f.id, ([], [], []))
                        ts.append(t)
                        ps.append(np.array([f.scores[k] for k in labels], dtype=np.float32))
                        shown.append(f.label)
                if writer is not None:
                    drawn = draw_faces(frame, last.faces if last else [], bars=bars, labels=labels)
                    if drawn.shape[:2] != (h, w):  # streams that change size mid-way: the writer's size is fixed
                        drawn = cv2.resize(drawn, (w, h), interpolation=cv2.INTER_AREA)
                    writer.write(drawn)
                    summary.written += 1
                bar.update(summary.frames)
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.seconds = time.monotonic() - start
        bar.close()
        summary.face_ids = len(series)
        if plot is not None:
            pp = Path(plot)
            ok, buf = cv2.imencode(pp.suffix.lower(), render_timeline(series, labels))
            if not ok:
                raise VideoError(f"--plot {pp}: could not encode the image")
            try:
                with open(pp, "wb" if force else "xb") as f:
                    f.write(buf.tobytes())
            except FileExistsError:
                raise VideoError(f"--plot {pp}: was created by something else meanwhile; not replaced") from None
            except OSError as e:
                raise VideoError(f"--plot {pp}: cannot write it ({e.strerror or e})") from None
            summary.outputs.append(pp)
    finally:
        if writer is not None:
            writer.release()
        if csv_file is not None:
            csv_file.close()
        src.release()
    return summary


# ----------------------------------------------------------------------------- webcam
class Display(Protocol):
    """Where live frames go. :class:`CvDisplay` is an OpenCV window; tests use a fake."""

    def show(self, frame: np.ndarray) -> int:
        """Show a frame; return the key pressed meanwhile (-1 for none, or when the window was closed: ord('q'))."""
        ...

    def close(self) -> None: ...


class CvDisplay:
    """An OpenCV window (needs opencv-python, not -headless, and a screen)."""

    def __init__(self, title: str = "emolens (q quits)") -> None:
        if not _has_gui():
            raise VideoError(HEADLESS_HINT)
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise VideoError("no screen to show a window on (DISPLAY is not set): run it on a desktop session, "
                             "or use `emolens video` on a recorded file")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except (cv2.error, AttributeError):
            raise VideoError(HEADLESS_HINT) from None
        self._shown = False

    def show(self, frame: np.ndarray) -> int:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1)
        self._shown = True
        try:
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:  # window closed with the mouse
                return ord("q")
        except cv2.error:
            return ord("q")
        return key

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


def _has_gui() -> bool:
    """Whether this OpenCV build has any window backend."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True


def run_webcam(
    recognizer: EmotionRecognizer | None = None,
    *,
    camera: int | VideoInput = 0,
    display: Display | None = None,
    max_frames: int | None = None,
    bars: bool = True,
    **options: Any,
) -> int:
    """A live window with each face's box, id, emotion, confidence bars and the fps; ``q`` or Esc quits.

    Args:
        camera: a camera index, or any source :func:`open_source` accepts (tests pass a fake capture).
        display: where frames go (default: a :class:`CvDisplay` window).
        max_frames: stop after this many frames (default: until ``q``).
        **options: passed to :class:`FrameTracker`.

    Returns:
        the number of frames shown.

    Raises:
        VideoError: no window support / no screen, or no camera; the message says what to do.
    """
    disp = display if display is not None else CvDisplay()
    try:
        src = open_source(camera)
        try:
            if not isinstance(camera, int):
                src.live = True
            src.peek()
            rec = recognizer or EmotionRecognizer(detector=FAST_DETECTOR, threads=1)
            labels = rec.labels
            shown, fps, last = 0, 0.0, time.monotonic()
            for r in track_frames(src, rec, **options):
                now = time.monotonic()
                dt, last = now - last, now
                if dt > 0:
                    fps = 1 / dt if fps == 0 else 0.9 * fps + 0.1 / dt
                key = disp.show(draw_faces(r.frame, r.faces, bars=bars, fps=fps, labels=labels))
                shown += 1
                if key != -1 and (key & 0xFF) in (ord("q"), ord("Q"), 27):
                    break
                if max_frames is not None and shown >= max_frames:
                    break
            return shown
        finally:
            src.release()
    finally:
        disp.close()
