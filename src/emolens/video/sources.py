"""Frame sources: a video file, a camera, a capture object or an iterable of frames, numbered and time-stamped."""

from __future__ import annotations

import math
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, Union

import cv2
import numpy as np

from ..imageio import DEFAULT_MAX_PIXELS, describe, quiet_opencv, to_bgr8
from .results import VideoError

# FFmpeg prints its own complaints ("moov atom not found") before our clearer error; keep it quiet
# unless the user asked for its logs. Read when OpenCV first opens a file with FFmpeg.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


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


def _over_cap(name: str, w: int, h: int, max_pixels: int, what: str = "its frames are") -> VideoError:
    return VideoError(f"{name}: {what} {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                      "(raise --max-pixels if you trust this file)")


def _capture_reader(cap: Any, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """A function that reads the next frame as uint8 BGR (``None`` at the end); a frame over ``max_pixels`` (a
    stream that grows mid-way past the size its container declared) stops the video with a :class:`VideoError`."""
    def read() -> np.ndarray | None:
        ok, frame = cap.read()
        if not ok or frame is None:
            return None
        if frame.ndim >= 2 and frame.shape[0] * frame.shape[1] > max_pixels:
            raise _over_cap(name, frame.shape[1], frame.shape[0], max_pixels, "a frame is")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            frame = to_bgr8(frame, name=name)
        return frame
    return read


def declared_size(cap: Any) -> tuple[int, int]:
    """The frame size a capture's container and codec declare, known once it is opened and before any frame is
    decoded (0, 0 when it does not say)."""
    try:
        w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    except Exception:  # noqa: BLE001 - fake or exotic capture objects
        return 0, 0
    return (int(w), int(h)) if math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0 else (0, 0)


def _capture_fps(cap: Any, default: float) -> float:
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    except Exception:  # noqa: BLE001 - fake or exotic capture objects
        return default
    return fps if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else default


def open_source(source: VideoInput | FrameSource, *, default_fps: float = 30.0,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """Open a video file, a camera (an ``int``), a capture object or an iterable of BGR arrays.

    ``max_pixels`` is the image cap applied to frames: a file whose container declares larger frames is refused
    once opened, before a frame is decoded (an MJPEG AVI of 12000x12000 frames, 2.6 MB on disk, took 2 GB), and a
    frame that turns out larger stops the video.

    Raises:
        VideoError: the file is missing, empty or not a video OpenCV can decode, its frames are over
            ``max_pixels``, or the camera cannot be opened. The message says which and what to try.
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
        return FrameSource(_capture_reader(cap, name, max_pixels), name=name, fps=_capture_fps(cap, default_fps),
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
        w, h = declared_size(cap)
        if w * h > max_pixels:
            cap.release()
            raise _over_cap(name, w, h, max_pixels)
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0
        n = int(count) if math.isfinite(count) and 0 < count < 2**62 else 0
        src = FrameSource(_capture_reader(cap, name, max_pixels), name=name, fps=_capture_fps(cap, default_fps),
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
        w, h = declared_size(cap)
        if w * h > max_pixels:
            raise _over_cap(name, w, h, max_pixels)
        return FrameSource(_capture_reader(cap, name, max_pixels), name=name, fps=_capture_fps(cap, default_fps))
    if isinstance(source, Iterable) and not isinstance(source, (bytes, bytearray, np.ndarray)):
        it = iter(source)

        def read() -> np.ndarray | None:
            frame = next(it, None)
            if frame is None:
                return None
            arr = np.asarray(frame)
            if arr.ndim >= 2 and arr.shape[0] * arr.shape[1] > max_pixels:
                raise _over_cap("<frames>", arr.shape[1], arr.shape[0], max_pixels, "a frame is")
            return to_bgr8(arr, name="<frame>")

        return FrameSource(read, name="<frames>", fps=default_fps)
    raise VideoError(
        f"unsupported video source {type(source).__name__}: pass a file path, a camera index, a capture object "
        "or an iterable of BGR frames"
    )
