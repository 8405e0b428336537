"""The live window: a camera through the per-frame work onto the screen."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Protocol

import cv2
import numpy as np

from ..face.detect import FAST_DETECTOR
from ..imageio import DEFAULT_MAX_PIXELS
from ..recognizer import EmotionRecognizer
from .drawing import draw_faces
from .frames import track_frames
from .results import VideoError
from .sources import VideoInput, open_source

HEADLESS_HINT = (
    "this OpenCV has no window support (opencv-python-headless, which emolens installs, cannot open windows). "
    "For the live window install the full OpenCV in its place: "
    "pip uninstall -y opencv-python-headless && pip install 'opencv-python>=4.9,<5'. "
    "Without a screen, use `emolens video` on a recorded file instead."
)


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
        src = open_source(camera, max_pixels=recognizer.max_pixels if recognizer is not None else DEFAULT_MAX_PIXELS)
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
