"""The actor of ``emolens batch``: one per slot of the pool, alive from the start of the run to its end.

It holds one recogniser (model and detector loaded once; ONNX Runtime on the actor's CPUs) and, once a video
comes, a second with the video detector. Each call gets one *unit*: a run of consecutive pictures of the input
list (at most ``--batch-size``) or one window of a video. It reads and decodes the pictures itself (two threads
ahead of the model: file reads and JPEG decoding overlap the network), recognises them one by one, and writes the
unit's rows to its own Parquet file, named by the unit's place in the input list and committed atomically
(emolens.safefile). So a unit is in the output whole or not at all, and a unit done twice (Ray retrying a task
whose node was lost after the file was written) is one file, not two: the second attempt finds it and skips.

An input that fails in any way (missing, unreadable, undecodable, too large, or an exception anywhere in its
recognition) gets one ``error`` row; the other inputs of the unit get their faces.

Profiled on the 889 wild val pictures (1 ONNX thread): decoding is under 2% of an actor's time, the detector and
the classifier about half each; the classifier is no faster per face in batches (28.7 ms a face at 1, 2, 16 and
32 faces a call), so faces are classified per picture, as ``emolens predict`` does.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..safefile import atomic_file
from .rows import blank_row, schema
from .videos import write_atomic

MISSING = "no such file"


def rss_bytes() -> int:
    """This process's resident memory (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def one_line(e: BaseException) -> str:
    why = (str(e).splitlines() or [type(e).__name__])[0] or type(e).__name__
    return why.split(": ", 1)[-1] if why.startswith("<") else why  # not "<14 bytes>: ..."


class Recognise:
    """One actor's work: units in (a column ``task`` of JSON), one line of figures per unit out."""

    def __init__(self, model: str | None, detector: str | None, threads: int, limits: dict | None = None,
                 fps: float = 5.0) -> None:
        from .. import EmotionRecognizer
        from ..face.detect import DEFAULT_DETECTOR

        self.args = (model, detector, threads, limits)
        self.rec = EmotionRecognizer(model, detector=detector or DEFAULT_DETECTOR, threads=threads, **(limits or {}))
        self.labels = self.rec.labels
        self.model = self.rec.classifier.meta.name or Path(str(self.rec.classifier.path)).name
        self.schema = schema(self.labels)
        self.fps = fps
        self.video = None  # the video recogniser, made when the first window comes
        self.readers = ThreadPoolExecutor(2, thread_name_prefix="emolens-read")
        self.filesystems: dict[str, Any] = {}

    # ------------------------------------------------------------------ pictures
    def read(self, source: str) -> np.ndarray:
        """A picture decoded under the recogniser's limits: a local path, or a URI through pyarrow."""
        if "://" not in source:
            if not os.path.isfile(source):
                raise FileNotFoundError(MISSING)
            return self.rec.load(source)
        filesystem, path = self._filesystem(source)
        with filesystem.open_input_stream(path) as stream:
            data = stream.read(self.rec.max_file_bytes + 1)
        if len(data) > self.rec.max_file_bytes:
            raise ValueError(f"{source}: larger than the {self.rec.max_file_bytes}-byte limit")
        return self.rec.load(data)

    def _filesystem(self, source: str) -> tuple[Any, str]:
        """(pyarrow filesystem, path in it) of a URI. The filesystem is made once per scheme and host or bucket
        (making one can cost a network call, e.g. S3's region lookup), not once per picture."""
        from pyarrow import fs

        scheme, rest = source.split("://", 1)
        key = f"{scheme}://{rest.split('/', 1)[0]}"
        if key not in self.filesystems:
            filesystem, path = fs.FileSystem.from_uri(source)
            # how much of what follows "://" is not the path (e.g. hdfs's host:port), None: no such simple rule
            self.filesystems[key] = (filesystem, len(rest) - len(path) if rest.endswith(path) else None)
            return filesystem, path
        filesystem, drop = self.filesystems[key]
        return (filesystem, rest[drop:]) if drop is not None else fs.FileSystem.from_uri(source)

    def _read_safely(self, source: str):
        try:
            return self.read(source), None
        except FileNotFoundError as e:
            return None, MISSING if str(e) == MISSING else one_line(e)
        except Exception as e:  # ImageError, OSError, anything a broken file brings: that picture's row
            return None, one_line(e)

    def rows_for(self, source: str, bgr: np.ndarray | None, error: str | None) -> list[dict[str, Any]]:
        blank = blank_row(source, self.labels, self.model, error)
        if error is not None:
            return [blank]
        try:
            faces = self.rec.predict_bgr(bgr)
            rows = []
            for i, f in enumerate(faces):
                x, y, w, h = f.box.as_list()
                rows.append({**blank, "face": i, "x": x, "y": y, "w": w, "h": h,
                             "landmarks": f.box.landmark_list() if f.box.landmarks is not None else None,
                             "label": f.label, "score": float(f.score),
                             **{f"p_{k}": float(v) for k, v in f.scores.items()}})
        except Exception as e:  # a poisoned input: its own error row, the rest of the unit goes on
            return [{**blank, "error": one_line(e)}]
        return rows or [blank]

    def picture_table(self, sources: list[str]):
        """The rows of a run of pictures as one ``pyarrow.Table``, in input order."""
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        for source, (bgr, error) in zip(sources, self.readers.map(self._read_safely, sources)):
            rows += self.rows_for(source, bgr, error)
        return pa.Table.from_pylist(rows, schema=self.schema)

    # ------------------------------------------------------------------ one unit
    def unit(self, task: dict) -> dict[str, Any]:
        import pyarrow.parquet as pq

        target = Path(task["target"])
        done = target.is_file() or ("shard" in task and Path(task["shard"]).is_dir())
        start, t0 = time.time(), time.perf_counter()
        frames = 0
        if done:  # an earlier attempt of this task wrote it (Ray retried the task): not twice
            table = None
        elif task["kind"] == "video":
            if self.video is None:
                from .videos import RecogniseVideo

                model, detector, threads, limits = self.args
                self.video = RecogniseVideo(model, detector, threads, self.fps, limits)
            end = task["end"]
            table, frames = self.video.window_table(task["source"], int(task["window"]), int(task["start"]),
                                                    None if end is None or end < 0 else int(end))
            write_atomic(table, target, frames)
        else:
            table = self.picture_table(task["sources"])
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target, replace=True) as f:  # complete or absent
                pq.write_table(table, f)
        faces = errors = 0
        if table is not None:
            face, error = table.column("face").to_numpy(zero_copy_only=False), table.column("error")
            faces, errors = int(np.sum(face >= 0)), len(error) - error.null_count
        return {"kind": task["kind"], "first": int(task.get("first", -1)), "inputs": int(task.get("n", 1)),
                "faces": faces, "errors": errors, "frames": int(frames), "skipped": bool(done),
                "start": start, "end": time.time(), "busy": time.perf_counter() - t0, "pid": os.getpid(),
                "rss": rss_bytes()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {}
        for text in batch["task"]:
            for k, v in self.unit(json.loads(str(text))).items():
                out.setdefault(k, []).append(v)
        return out
