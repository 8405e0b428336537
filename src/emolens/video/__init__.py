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
``smoothing`` seconds (:class:`emolens.video.track.EmaSmoother`), so labels do not flicker.
"""

from __future__ import annotations

from .csvfile import CSV_FIXED_COLUMNS, CSV_LANDMARK_COLUMNS, csv_columns, csv_rows
from .drawing import draw_faces
from .frames import FrameTracker, local_detector_for, track_frames
from .outputs import PLOT_SUFFIXES, VIDEO_SUFFIXES, check_outputs, prepare_outputs
from .results import FrameResult, OutputError, TrackedFace, VideoError
from .run import VideoSummary, process_video
from .sources import Capture, FrameSource, VideoInput, open_source
from .timeline import Series, render_timeline
from .webcam import HEADLESS_HINT, CvDisplay, Display, run_webcam

__all__ = [
    "CSV_FIXED_COLUMNS",
    "CSV_LANDMARK_COLUMNS",
    "Capture",
    "CvDisplay",
    "Display",
    "FrameResult",
    "FrameSource",
    "FrameTracker",
    "HEADLESS_HINT",
    "OutputError",
    "PLOT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "check_outputs",
    "prepare_outputs",
    "Series",
    "TrackedFace",
    "VideoError",
    "VideoInput",
    "VideoSummary",
    "csv_columns",
    "csv_rows",
    "draw_faces",
    "local_detector_for",
    "open_source",
    "process_video",
    "render_timeline",
    "run_webcam",
    "track_frames",
]
