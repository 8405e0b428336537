"""A whole video: every frame through the per-frame work into the annotated video, the CSV and the plot."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..face.detect import FAST_DETECTOR
from ..imageio import DEFAULT_MAX_PIXELS
from ..progress import Progress
from ..quiet import quiet_opencv
from ..recognizer import EmotionRecognizer
from ..safefile import commit_all, new_temp
from .csvfile import csv_columns, csv_rows
from .drawing import draw_faces
from .frames import FrameTracker
from .outputs import _fourcc_for, check_outputs, prepare_outputs
from .results import FrameResult, OutputError, VideoError
from .sources import FrameSource, VideoInput, open_source
from .timeline import Series, render_timeline


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

    Each output is written under a unique temporary name beside it and moved into place when the run ends
    (:mod:`emolens.safefile`): a run that fails on the way (a full disk) leaves none of them, and none is
    written through a symbolic link. Frames over the recogniser's ``max_pixels`` are refused from the size the
    container declares, before one is decoded.

    Raises:
        VideoError: unreadable input, frames over the pixel cap, unusable or existing outputs, an output that
            cannot be written. Every output is checked (and its folder created) before the first frame is
            processed, so a run does not fail at the end because of an output path.
    """
    if every < 1:
        raise VideoError("--every must be at least 1")
    check_outputs(source, out=out, csv_path=csv_path, plot=plot, force=force)
    max_pixels = recognizer.max_pixels if recognizer is not None else DEFAULT_MAX_PIXELS
    src = open_source(source, max_pixels=max_pixels)
    summary = VideoSummary(src.name, expected=src.frame_count)
    writer = csv_file = None
    series: Series = {}
    # Each output is written to a unique temporary file beside it and moved into place only at the end (also after
    # Ctrl-C): a failure on the way (a full disk) leaves none of them, and nothing is written through a link.
    temps: list[tuple[str, Path, Path]] = []  # (option, temporary file, output)
    try:
        prepare_outputs(out=out, csv_path=csv_path, plot=plot)
        first = src.peek()
        rec = recognizer or EmotionRecognizer(detector=FAST_DETECTOR, threads=1)
        ft = FrameTracker(rec, every=every, **options)
        labels = ft.labels
        h, w = first.shape[:2]
        if out is not None:
            op = Path(out)
            tmp = _temp_for("--out", op, temps)
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*_fourcc_for(op)), src.fps, (w, h))
            if not writer.isOpened():
                writer.release()
                writer = None
                raise VideoError(f"--out {op}: OpenCV cannot write this video file")
        csv_w = None
        if csv_path is not None:
            tmp = _temp_for("--csv", Path(csv_path), temps)
            csv_file = open(tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in the finally
            csv_w = csv.writer(csv_file)
            with _writing("--csv", csv_path):
                csv_w.writerow(csv_columns(labels))
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
                        with _writing("--csv", csv_path):
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
            tmp = _temp_for("--plot", pp, temps)
            with _writing("--plot", pp), open(tmp, "wb") as f:
                f.write(buf.tobytes())
        if csv_file is not None:
            with _writing("--csv", csv_path):
                csv_file.close()  # a full disk can show up here too: still before anything is in place
        if writer is not None:
            writer.release()
            writer = None
            _check_video(next(t for opt, t, _ in temps if opt == "--out"), Path(str(out)), summary.written)
        try:
            commit_all([(tmp, target) for _, tmp, target in temps], replace=force)
        except FileExistsError as e:
            raise VideoError(f"{e}: created by something else meanwhile; not replaced (--force replaces it)") from None
        summary.outputs = [target for _, _, target in temps]
    except OSError as e:  # a full disk, a folder that went away ...: one line, and no output left half-written
        which = next((f"{opt} {target}" for opt, _, target in temps), "an output")
        raise OutputError(f"{which}: cannot write it ({e.strerror or e})") from None
    finally:
        if writer is not None:
            writer.release()
        if csv_file is not None:
            try:
                csv_file.close()
            except OSError:  # already reported; the file is removed below
                pass
        for _, tmp, _ in temps:  # what was not moved into place
            tmp.unlink(missing_ok=True)
        src.release()
    return summary


@contextmanager
def _writing(opt: str, path: str | os.PathLike | None) -> Iterator[None]:
    """An OSError inside (a full disk) as the one-line VideoError that names the output."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{opt} {path}: cannot write it ({e.strerror or e})") from None


def _temp_for(opt: str, target: Path, temps: list[tuple[str, Path, Path]]) -> Path:
    """A new temporary file beside ``target`` (its extension kept: OpenCV picks the container by it), noted."""
    fd, tmp = new_temp(target)
    os.close(fd)
    temps.append((opt, tmp, target))
    return tmp


def _check_video(tmp: Path, out: Path, written: int) -> None:
    """OpenCV's VideoWriter reports no write error (a full disk): read the file back and check it holds the frames."""
    if written == 0:
        return
    with quiet_opencv():
        cap = cv2.VideoCapture(str(tmp))
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else -1
        finally:
            cap.release()
    if n < 0 or (n and n < written - 1):
        raise OutputError(f"--out {out}: cannot write it (the video written is incomplete: is the disk full?)")
