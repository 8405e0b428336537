"""Video files in ``emolens batch``: one task per time window of each file, sampled at ``fps``, one Parquet file each.

A video is cut into windows of ``window`` seconds (one window when its length is unknown, e.g. a URI), and every
window is one task for a pool of actors. An actor holds one recogniser (the fast video detector unless another is
asked for) and runs the same per-frame work as ``emolens video``: face search, tracking, smoothing
(:class:`emolens.video.FrameTracker`), on every N-th frame where N = round(video fps / ``fps``). Its rows are the
fields of ``emolens video --csv``: time, frame, the face's track id (counted within its window), box, label,
score, ``detected``, each label's smoothed probability and the landmarks.

Each window's rows are written by the actor itself to ``OUT/videos/<name>-<hash>/window-NNNNN.parquet``, first
under a hidden name and then renamed, so a re-run skips the windows already written and an interrupted one leaves
only complete files.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..safefile import atomic_file
from .rows import blank_row, schema

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
VIDEO_FOLDER = "videos"
FRAMES_KEY = b"emolens_frames"  # the Parquet metadata entry that says how many frames a window processed


def is_video(path: str) -> bool:
    return Path(path.split("?", 1)[0]).suffix.lower() in VIDEO_SUFFIXES


def video_folder(out: Path, source: str) -> Path:
    """Where one video's windows go: its name (made safe) and a hash of the whole path (names repeat)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source.split("?", 1)[0]).name)[:60] or "video"
    return out / VIDEO_FOLDER / f"{stem}-{hashlib.sha1(source.encode()).hexdigest()[:10]}"


def plan_windows(source: str, window_s: float) -> list[tuple[int, int | None]]:
    """``(start, end)`` frames of each window of ``source`` (end None: to the end of the file). A file whose
    length cannot be read here (a URI, an unreadable file) is one window; its task reports what it finds.

    The frame count a container claims is not taken on trust: when it makes more than one window, the last frame
    it claims is looked for, and if it is not there the real last frame is found by halving (a few dozen seeks
    at most). A 3-frame AVI that claimed 2^31 frames was planned as 715,828 windows."""
    import cv2

    from ..quiet import quiet_opencv

    if window_s <= 0 or "://" in source or not os.path.isfile(source):
        return [(0, None)]
    with quiet_opencv():
        cap = cv2.VideoCapture(source)
        try:
            frames = cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0 if cap.isOpened() else 0
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) if cap.isOpened() else 0
            frames = int(frames) if math.isfinite(frames) and 0 < frames < 2**62 else 0
            if frames > 0 and math.isfinite(fps) and fps >= 1 and frames > round(window_s * fps):
                frames = confirmed_frames(cap, frames)
        finally:
            cap.release()
    if frames <= 0 or not (math.isfinite(fps) and fps >= 1):
        return [(0, None)]
    step = max(1, round(window_s * fps))
    starts = list(range(0, frames, step))
    return [(s, s + step if i < len(starts) - 1 else None) for i, s in enumerate(starts)]


def confirmed_frames(cap, claimed: int) -> int:
    """How many frames an opened capture really has, at most ``claimed``: its last claimed frame is read; if it is
    not there, the last frame that is is found by halving the range (about log2(claimed) seeks, each reading at
    most a group of pictures). 0 when not even the first frame can be read."""
    import cv2

    def readable(index: int) -> bool:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        return bool(cap.grab())

    if readable(claimed - 1):
        return claimed
    lo, hi = -1, claimed - 1  # frame lo can be read (-1: none known), frame hi cannot
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if readable(mid):
            lo = mid
        else:
            hi = mid
    return lo + 1


class RecogniseVideo:
    """One actor's work: windows of videos in, one Parquet file per window out (rows: see the module docstring)."""

    def __init__(self, model: str | None, detector: str | None, threads: int, fps: float,
                 limits: dict | None = None) -> None:
        from .. import EmotionRecognizer
        from ..face.detect import FAST_DETECTOR

        self.rec = EmotionRecognizer(model, detector=detector or FAST_DETECTOR, threads=threads, **(limits or {}))
        self.labels = self.rec.labels
        self.model = self.rec.classifier.meta.name or Path(str(self.rec.classifier.path)).name
        self.schema = schema(self.labels)
        self.fps = fps

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        frames, rows = [], []
        for source, window, start, end, target in zip(batch["source"], batch["window"], batch["start"],
                                                      batch["end"], batch["target"]):
            end = None if end is None or end < 0 else int(end)
            table, n = self.window_table(str(source), int(window), int(start), end)
            write_atomic(table, Path(str(target)), n)
            frames.append(n)
            rows.append(table.num_rows)
        return {"frames": frames, "rows": rows}

    def window_table(self, source: str, window: int, start: int, end: int | None):
        """The rows of one window as a ``pyarrow.Table`` and the number of frames recognised."""
        import pyarrow as pa

        blank = blank_row(source, self.labels, self.model)
        blank["window"] = window
        rows, processed = [], 0
        local, cleanup = None, None
        try:
            local, cleanup = local_copy(source)
            processed, rows, stopped = self._recognise(local, source, start, end, blank)
            if stopped:
                rows.append({**blank, "error": stopped})
        except Exception as e:  # VideoError, a URI that cannot be fetched ...: this window's row says why
            why = (str(e).splitlines() or [type(e).__name__])[0]
            rows.append({**blank, "error": why})
        finally:
            if cleanup is not None:
                cleanup()
        if not rows:  # no face in the whole window: one row says the window was seen
            rows.append(blank)
        return pa.Table.from_pylist(rows, schema=self.schema), processed

    def _recognise(self, local: str, source: str, start: int, end: int | None, blank: dict):
        import cv2

        from ..video.frames import FrameTracker
        from ..video.sources import _capture_reader, open_source

        src = open_source(local, max_pixels=self.rec.max_pixels)  # missing, empty, undecodable, too large: one line
        fps, claimed = src.fps, src.frame_count
        src.release()
        every = max(1, round(fps / self.fps)) if self.fps > 0 else 1
        cap = cv2.VideoCapture(local)
        rows: list[dict] = []
        processed = 0
        try:
            if start:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            read = _capture_reader(cap, Path(local).name, self.rec.max_pixels)
            tracker = FrameTracker(self.rec, every=every)
            index = start
            while end is None or index < end:
                if index % every:
                    if not cap.grab():
                        break
                else:
                    frame = read()
                    if frame is None:
                        break
                    result = tracker.process(frame, index, index / fps)
                    processed += 1
                    rows += [self._row(blank, result.time_s, result.index, f) for f in result.faces]
                index += 1
        finally:
            cap.release()
        last = end if end is not None else claimed
        stopped = None
        if last is not None and last - index > 1:  # one frame of slack: some containers estimate their count
            stopped = f"the video stops at frame {index} of the {last} it claims (truncated or corrupt)"
        return processed, rows, stopped

    def _row(self, blank: dict, time_s: float, frame: int, f) -> dict:
        b = f.box
        return {**blank, "time_s": round(float(time_s), 3), "frame": int(frame), "face": int(f.id),
                "x": int(b.x), "y": int(b.y), "w": int(b.w), "h": int(b.h),
                "landmarks": b.landmark_list() if b.landmarks is not None else None,
                "label": f.label, "score": float(f.score), "detected": bool(f.found),
                **{f"p_{k}": float(f.scores.get(k, 0.0)) for k in self.labels}}


def local_copy(source: str):
    """A local path for ``source`` and what to call afterwards (None, or the removal of a downloaded copy): a URI
    is fetched through pyarrow's filesystems into a temporary file, as OpenCV reads only local files."""
    if "://" not in source:
        return source, None
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(source)
    fd, tmp = tempfile.mkstemp(suffix=Path(path).suffix or ".video", prefix="emolens-batch-")
    try:
        with os.fdopen(fd, "wb") as out, filesystem.open_input_stream(path) as stream:
            while chunk := stream.read(1 << 20):
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp, lambda: os.unlink(tmp)


def write_atomic(table, target: Path, frames: int) -> None:
    """``table`` to ``target`` under a unique hidden name first, then renamed: the file exists only when complete."""
    import pyarrow.parquet as pq

    target.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(table.schema.metadata or {})
    meta[FRAMES_KEY] = str(frames).encode()
    with atomic_file(target, replace=True) as f:  # a unique hidden name first (.window-NNNNN.parquet.<random>.tmp)
        pq.write_table(table.replace_schema_metadata(meta), f)


def window_frames(path: Path) -> int:
    """How many frames a written window recognised (from its Parquet metadata)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(FRAMES_KEY, b"0"))
