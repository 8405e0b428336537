"""``emolens batch``: every face of many pictures and videos into Parquet, on Ray Data (a local Ray or a cluster).

    from emolens.distributed.batch import run_batch
    summary = run_batch(["photos/", "more/*.jpg", "interviews/", "list.txt"], "faces.parquet/", actors=2, fps=2)

The pipeline: the input files are read as bytes (``read_binary_files``: local paths or any URI pyarrow has a
filesystem for, ``s3://`` and ``gs://`` among them) → an actor pool (``ActorPoolStrategy``), each actor holding
one recogniser (model and detector loaded once, ONNX Runtime on the actor's CPUs) that decodes with emolens' own
safe decoder, detects and classifies → Parquet. One row per face: source, face index, box, landmarks, label,
score, every label's probability, the model's name; a row with ``face = -1`` for a picture without a face, and
one with ``error`` for a file that cannot be read (the rest goes on).

Resumable: the inputs are cut into shards of ``shard_size`` pictures, each written to its own folder
(``shard-00003/``) only once complete (written to a hidden folder, then renamed), so a re-run of the same
command skips the shards already done and an interrupted one leaves only complete shards. ``_manifest.json``
records the inputs; another run into the same folder with other inputs is refused.

Video files go their own way into the same table (distributed/videos.py): one task per time window of each file,
sampled at ``fps``, rows with time stamps as ``emolens video --csv`` writes them. The columns: distributed/rows.py.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import IMAGE_SUFFIXES
from ..safefile import atomic_file, make_temp_dir, write_text
from .rows import SCHEMA_VERSION, blank_row, schema
from .videos import VIDEO_FOLDER, VIDEO_SUFFIXES, RecogniseVideo, is_video, plan_windows, video_folder, window_frames

MANIFEST = "_manifest.json"
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "az://", "http://", "https://")


class BatchError(ValueError):
    """Inputs or an output folder that a batch run cannot use, said in one line."""


@dataclass
class BatchSummary:
    pictures: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    shards_done: int = 0
    shards_skipped: int = 0
    seconds: float = 0.0
    videos: int = 0
    frames: int = 0  # video frames recognised
    face_rows: int = 0  # faces over every recognised video frame
    windows_done: int = 0
    windows_skipped: int = 0
    picture_seconds: float = 0.0
    video_seconds: float = 0.0

    def line(self) -> str:
        parts = []
        if self.pictures or not self.videos:
            rate = self.pictures / self.picture_seconds if self.picture_seconds > 0 else 0.0
            parts.append(f"{self.pictures} pictures, {self.faces} faces, {self.no_face} without a face")
        if self.videos:
            parts.append(f"{self.videos} videos, {self.frames} frames, {self.face_rows} face rows")
        done = f"{self.shards_done} shards written, {self.shards_skipped} already done"
        if self.videos:
            done += f"; {self.windows_done} video windows written, {self.windows_skipped} already done"
        speed = []
        if self.pictures and self.picture_seconds > 0:
            speed.append(f"{rate:.1f} pictures/s")
        if self.frames and self.video_seconds > 0:
            speed.append(f"{self.frames / self.video_seconds:.1f} frames/s")
        return (f"{'; '.join(parts)}; {self.errors} errors; {done}; {self.seconds:.1f} s"
                + (f", {', '.join(speed)}" if speed else ""))


def list_inputs(inputs: list[str]) -> list[str]:
    """Folders (their images and videos, recursively, sorted), globs, ``.txt`` files of paths or URIs (one a line,
    ``#`` comments), single files and URIs, in the order given. A local path that does not exist is kept: its row
    says so."""
    out: list[str] = []
    for item in inputs:
        if item.startswith(URI_SCHEMES):
            out.append(item)
        elif os.path.isdir(item):
            wanted = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)
            out += sorted(str(p) for p in Path(item).rglob("*") if p.suffix.lower() in wanted and p.is_file())
        elif item.endswith(".txt") and os.path.isfile(item):
            for line in Path(item).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line)
        elif any(c in item for c in "*?["):
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                raise BatchError(f"{item}: no file matches")
            out += [f for f in found if os.path.isfile(f)]
        else:
            out.append(item)
    if not out:
        raise BatchError("no pictures to work on: give folders, globs, files or a .txt list of them")
    return out


class Recognise:
    """One actor's work: bytes of pictures in, rows of faces out (a dict of equal-length columns)."""

    def __init__(self, model: str | None, detector: str | None, threads: int, limits: dict | None = None) -> None:
        from .. import EmotionRecognizer
        from ..detect import DEFAULT_DETECTOR

        self.rec = EmotionRecognizer(model, detector=detector or DEFAULT_DETECTOR, threads=threads, **(limits or {}))
        self.labels = self.rec.labels
        self.model = self.rec.classifier.meta.name or Path(str(self.rec.classifier.path)).name
        self.schema = schema(self.labels)

    def rows_for(self, source: str, data: bytes | None, error: str | None) -> list[dict[str, Any]]:
        blank = blank_row(source, self.labels, self.model, error)
        if error is not None:
            return [blank]
        try:
            faces = self.rec.predict_bgr(self.rec.load(data))
        except Exception as e:  # emolens.ImageError and anything a broken file brings: that picture's row
            why = (str(e).splitlines() or [type(e).__name__])[0]
            return [{**blank, "error": why.split(": ", 1)[-1] if why.startswith("<") else why}]  # not "<14 bytes>"
        if not faces:
            return [blank]
        rows = []
        for i, f in enumerate(faces):
            x, y, w, h = f.box.as_list()
            rows.append({**blank, "face": i, "x": x, "y": y, "w": w, "h": h,
                         "landmarks": f.box.landmark_list() if f.box.landmarks is not None else None,
                         "label": f.label, "score": float(f.score),
                         **{f"p_{k}": float(v) for k, v in f.scores.items()}})
        return rows

    def __call__(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        for path, data in zip(batch["path"], batch["bytes"]):
            rows += self.rows_for(str(path), bytes(data), None)
        return pa.Table.from_pylist(rows, schema=self.schema)


def _check_manifest(out: Path, files: list[str], shard_size: int, fps: float, window: float) -> None:
    path = out / MANIFEST
    want = {"inputs": files, "shard_size": shard_size, "version": SCHEMA_VERSION}
    if any(is_video(f) for f in files):
        want.update(fps=fps, window=window)
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError):
            raise BatchError(f"{path}: unreadable; not an emolens batch folder") from None
        if have.get("version", 1) != SCHEMA_VERSION:
            raise BatchError(f"{out} was written by an earlier emolens with other columns; pick another --out")
        if have != want:
            raise BatchError(f"{out} holds a batch run over other inputs (or another --shard-size, --fps or "
                             "--window); pick another --out, or run the same command again to finish that one")
        return
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise BatchError(f"{out} is not empty and not an emolens batch folder; pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(want))


def run_batch(inputs: list[str], out: str | os.PathLike, *, model: str | None = None, detector: str | None = None,
              address: str | None = None, actors: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
              batch_size: int = 16, shard_size: int = 1000, fps: float = 5.0, window: float = 600.0,
              verbose: bool = False, log=print, limits: dict | None = None) -> BatchSummary:
    """Recognise every picture and video of ``inputs`` into Parquet under ``out`` (see the module docstring).

    Videos are recognised at ``fps`` frames a second (0: every frame), in tasks of ``window`` seconds each (0: one
    task per file); their detector is ``detector`` or, by default, the fast one ``emolens video`` uses. ``limits``:
    keyword arguments of every recogniser (``max_pixels``, ``max_scans``, ``trust_model`` ...)."""
    if fps < 0 or not math.isfinite(fps):
        raise BatchError(f"--fps must be 0 (every frame) or a positive number, not {fps:g}")
    if window < 0 or not math.isfinite(window):
        raise BatchError(f"--window must be 0 (one task per video) or a positive number of seconds, not {window:g}")
    if not verbose:  # Ray Data's progress stays (bars on a terminal); its per-step INFO lines go (read at import)
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
        logging.getLogger("ray._private").setLevel(logging.ERROR)  # "Token authentication is enabled ..."
    if num_cpus <= 0 or not math.isfinite(num_cpus) or num_gpus < 0 or not math.isfinite(num_gpus):
        raise BatchError(f"--num-cpus must be a positive number and --num-gpus 0 or more, not {num_cpus:g} and "
                         f"{num_gpus:g}")
    try:
        import ray
    except ImportError:
        raise BatchError("emolens batch needs the distributed extra: pip install 'emolens[distributed]'") from None
    files = list_inputs(inputs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is a file, not a folder")
    _check_manifest(out, files, shard_size, fps, window)
    for stale in out.glob(".shard-*"):  # an interrupted run's unfinished shard folders ...
        shutil.rmtree(stale, ignore_errors=True)
    for stale in out.glob(f"{VIDEO_FOLDER}/*/.window-*"):  # ... and window files
        stale.unlink(missing_ok=True)
    pictures = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    shards = [pictures[i : i + shard_size] for i in range(0, len(pictures), shard_size)]
    todo = [i for i in range(len(shards)) if not (out / f"shard-{i:05d}").is_dir()]
    tasks, missing_videos, n_windows = _video_tasks(out, videos, window)
    summary = BatchSummary(shards_skipped=len(shards) - len(todo), windows_skipped=n_windows - len(tasks))
    if missing_videos:
        _write_error_rows(out / VIDEO_FOLDER / "_missing", missing_videos, model, detector, limits)
    if not todo and not tasks:
        log(f"all {len(shards)} shards and {n_windows} video windows of {out} are done already")
        return _count(out, summary)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1)))
    t0 = time.perf_counter()
    _run_pictures(ray, out, shards, todo, summary, model=model, detector=detector, n_actors=n_actors,
                  num_cpus=num_cpus, num_gpus=num_gpus, batch_size=batch_size, log=log, limits=limits)
    summary.picture_seconds = time.perf_counter() - t0
    if tasks:
        t1 = time.perf_counter()
        ds = ray.data.from_items(tasks, override_num_blocks=len(tasks))
        ds = ds.map_batches(RecogniseVideo, fn_constructor_args=(model, detector, max(1, int(num_cpus)), fps, limits),
                            compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(tasks))), batch_size=1,
                            batch_format="pandas", num_cpus=num_cpus, num_gpus=num_gpus)
        for done in ds.iter_batches(batch_size=None, batch_format="pandas"):  # each actor wrote its windows' files
            summary.windows_done += len(done)
        summary.video_seconds = time.perf_counter() - t1
        log(f"{summary.windows_done} video windows done")
    summary.seconds = time.perf_counter() - t0
    return _count(out, summary)


def _video_tasks(out: Path, videos: list[str], window: float) -> tuple[list[dict], list[str], int]:
    """The windows still to do (one task each), the local videos that do not exist, and the windows in all."""
    tasks, missing, total = [], [], 0
    for source in videos:
        if "://" not in source and not os.path.isfile(source):
            missing.append(source)
            continue
        folder = video_folder(out, source)
        for w, (start, end) in enumerate(plan_windows(source, window)):
            total += 1
            target = folder / f"window-{w:05d}.parquet"
            if not target.is_file():
                tasks.append({"source": source, "window": w, "start": start, "end": -1 if end is None else end,
                              "target": str(target)})
    return tasks, missing, total


def _run_pictures(ray, out: Path, shards: list[list[str]], todo: list[int], summary: BatchSummary, *, model, detector,
                  n_actors: int, num_cpus: float, num_gpus: float, batch_size: int, log,
                  limits: dict | None = None) -> None:
    for i in todo:
        shard = shards[i]
        local = [f for f in shard if not f.startswith(URI_SCHEMES)]
        missing = [f for f in local if not os.path.isfile(f)]
        readable = [f for f in shard if f not in missing]
        final = out / f"shard-{i:05d}"
        tmp = make_temp_dir(out, f".shard-{i:05d}-")  # a unique hidden name until complete
        if readable:
            # reading and writing are I/O: they take no CPU slot, so actors that fill every CPU cannot starve them
            # (with 2 actors on 2 cores, reads and writes waiting for a free CPU stalled the run for good)
            ds = ray.data.read_binary_files(readable, include_paths=True, num_cpus=0)
            ds = ds.map_batches(Recognise, fn_constructor_args=(model, detector, max(1, int(num_cpus)), limits),
                                compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(readable))),
                                batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus, num_gpus=num_gpus)
            ds.write_parquet(str(tmp / "faces"), ray_remote_args={"num_cpus": 0})
        if missing:
            _write_error_rows(tmp / "missing", missing, model, detector, limits)
        tmp.rename(final)
        summary.shards_done += 1
        log(f"shard {i + 1}/{len(shards)} done ({len(shard)} pictures)")


def _write_error_rows(folder: Path, paths: list[str], model: str | None, detector: str | None,
                      limits: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = Recognise(model, detector, 1, limits)
    rows = [r for p in paths for r in rec.rows_for(p, None, "no such file")]
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / "rows.parquet", replace=True) as f:  # complete or absent
        pq.write_table(pa.Table.from_pylist(rows, schema=rec.schema), f)


def _count(out: Path, summary: BatchSummary) -> BatchSummary:
    """The totals over every complete shard and video window (pictures, faces, pictures without one, videos,
    frames, errors)."""
    table = read_results(out, columns=["source", "window", "face", "error"])
    sources = table.column("source").to_pylist()
    windows = table.column("window").to_pylist()
    faces = table.column("face").to_pylist()
    errors = table.column("error").to_pylist()
    video_sources = {s for s, w in zip(sources, windows) if w is not None}
    video_sources |= {s for s in sources if is_video(s)}  # a video that is missing has only an error row
    summary.pictures = len(set(sources) - video_sources)
    summary.videos = len(video_sources)
    summary.faces = sum(1 for s, f in zip(sources, faces) if f is not None and f >= 0 and s not in video_sources)
    summary.face_rows = sum(1 for s, f in zip(sources, faces) if f is not None and f >= 0 and s in video_sources)
    summary.errors = sum(1 for e in errors if e is not None)
    summary.no_face = sum(1 for s, f, e in zip(sources, faces, errors)
                          if f == -1 and e is None and s not in video_sources)
    summary.frames = sum(window_frames(p) for p in Path(out).glob(f"{VIDEO_FOLDER}/*/window-*.parquet"))
    return summary


def result_files(out: str | os.PathLike) -> list[str]:
    """The Parquet files of every complete picture shard and video window under ``out``."""
    out = Path(out)
    return sorted(str(p) for p in [*out.glob("shard-*/**/*.parquet"), *out.glob(f"{VIDEO_FOLDER}/*/*.parquet")]
                  if not p.name.startswith("."))


def read_results(out: str | os.PathLike, columns: list[str] | None = None):
    """Every row of the complete shards and video windows under ``out`` as one ``pyarrow.Table``."""
    import pyarrow.dataset as pads

    files = result_files(out)
    if not files:
        import pyarrow as pa

        return pa.table({c: [] for c in (columns or ["source", "face", "error"])})
    return pads.dataset(files, format="parquet").to_table(columns=columns)
