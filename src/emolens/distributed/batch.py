"""``emolens batch``: every face of many pictures and videos into Parquet, on Ray Data (a local Ray or a cluster).

    from emolens.distributed.batch import run_batch
    summary = run_batch(["photos/", "more/*.jpg", "interviews/", "list.txt"], "faces.parquet/", actors=2, fps=2)

One pipeline for the whole run: the pending work is cut into *units* (a run of at most ``batch_size`` consecutive
pictures of the input list, or one time window of a video), and one Ray Dataset over every unit goes through one
actor pool (``ActorPoolStrategy``) that lives from the start of the run to its end. Each actor
(:class:`emolens.distributed.actor.Recognise`) holds its recognisers (models and detector loaded once, ONNX Runtime
on the actor's CPUs), reads and decodes its pictures itself (local paths or any URI pyarrow has a filesystem for,
``s3://`` and ``gs://`` among them), recognises them, and writes each unit to its own Parquet file, atomically.
Ray Data streams the units to the actors with its own backpressure; what comes back to the driver is one short
line of figures per unit, so memory stays flat however many inputs there are. Actors that die (a lost node) are
restarted by Ray and their tasks retried; a unit whose file an earlier attempt already wrote is not written again.

One row per face: source, face index, box, landmarks, label, score, every label's probability, the model's name;
a row with ``face = -1`` for a picture without a face, and one with ``error`` for a file that cannot be read (the
rest goes on). Videos: one unit per window of ``window`` seconds, sampled at ``fps``, rows with time stamps as
``emolens video --csv`` writes them (distributed/videos.py). The columns: distributed/rows.py.

Resumable: a picture unit lands in ``parts/part-<first>-<end>.parquet`` (input indexes ``first`` to ``end - 1``)
only once complete; when every picture of a shard of ``shard_size`` is in parts, the driver merges them into one
``shard-00003/faces.parquet`` (written under a hidden folder, then renamed) and removes the parts. A re-run of the
same command skips every finished shard, part and video window, and an interrupted one leaves only complete
files. ``_manifest.json`` records the inputs; another run into the same folder with other inputs is refused.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..imageio import IMAGE_SUFFIXES
from ..safefile import atomic_file, make_temp_dir, write_text
from .actor import Recognise, rss_bytes
from .rows import SCHEMA_VERSION
from .videos import VIDEO_FOLDER, VIDEO_SUFFIXES, is_video, plan_windows, video_folder, window_frames

MANIFEST = "_manifest.json"
PARTS = "parts"
URI_SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "abfs://", "az://", "http://", "https://")
_PART = re.compile(r"part-(\d{10})-(\d{10})\.parquet")
MAX_BLOCKS = 5000  # Ray Data blocks of units: one unit a block up to this many units


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
    seconds: float = 0.0  # the whole call, Ray's start-up included
    videos: int = 0
    frames: int = 0  # video frames recognised
    face_rows: int = 0  # faces over every recognised video frame
    windows_done: int = 0
    windows_skipped: int = 0
    picture_seconds: float = 0.0  # from the first picture unit's start to the last one's end, in the actors
    video_seconds: float = 0.0
    units_done: int = 0  # units written in this run
    startup_seconds: float = 0.0  # from Ray's start to the first unit's start (actors loading their models)
    actor_rate: float = 0.0  # pictures a second per actor, over the actors' busy time
    actors: int = 0
    merge_seconds: float = 0.0  # the driver's time merging parts into shards (what a shard costs)
    pictures_done: int = 0  # pictures recognised in this run (not skipped)
    frames_done: int = 0  # video frames recognised in this run
    memory: list = field(default_factory=list)  # (inputs done, driver RSS, {actor pid: RSS}) after each unit

    def line(self) -> str:
        parts = []
        if self.pictures or not self.videos:
            parts.append(f"{self.pictures} pictures, {self.faces} faces, {self.no_face} without a face")
        if self.videos:
            parts.append(f"{self.videos} videos, {self.frames} frames, {self.face_rows} face rows")
        done = f"{self.shards_done} shards written, {self.shards_skipped} already done"
        if self.videos:
            done += f"; {self.windows_done} video windows written, {self.windows_skipped} already done"
        speed = []
        if self.units_done and self.picture_seconds > 0:
            speed.append(f"{self.pictures_done / self.picture_seconds:.1f} pictures/s")
        if self.frames and self.video_seconds > 0:
            speed.append(f"{self.frames_done / self.video_seconds:.1f} frames/s")
        took = f"{self.seconds:.1f} s"
        if self.startup_seconds > 0:
            took += f" ({self.startup_seconds:.1f} s of it starting Ray and the actors)"
        return f"{'; '.join(parts)}; {self.errors} errors; {done}; {took}" + (f", {', '.join(speed)}" if speed else "")


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
              verbose: bool = False, log=print, limits: dict | None = None, progress: bool = False) -> BatchSummary:
    """Recognise every picture and video of ``inputs`` into Parquet under ``out`` (see the module docstring).

    ``batch_size``: pictures per unit (one actor call, one file until its shard is merged). Videos are recognised
    at ``fps`` frames a second (0: every frame), in units of ``window`` seconds each (0: one per file); their
    detector is ``detector`` or, by default, the fast one ``emolens video`` uses. ``limits``: keyword arguments of
    every recogniser (``max_pixels``, ``max_scans``, ``trust_model`` ...). ``progress``: one line on stderr over
    the whole run (inputs done / total, rate, ETA) in place of Ray Data's own bars."""
    if fps < 0 or not math.isfinite(fps):
        raise BatchError(f"--fps must be 0 (every frame) or a positive number, not {fps:g}")
    if window < 0 or not math.isfinite(window):
        raise BatchError(f"--window must be 0 (one task per video) or a positive number of seconds, not {window:g}")
    if not verbose:  # Ray Data's per-step INFO lines go (read at import)
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
        logging.getLogger("ray._private").setLevel(logging.ERROR)  # "Token authentication is enabled ..."
    if num_cpus <= 0 or not math.isfinite(num_cpus) or num_gpus < 0 or not math.isfinite(num_gpus):
        raise BatchError(f"--num-cpus must be a positive number and --num-gpus 0 or more, not {num_cpus:g} and "
                         f"{num_gpus:g}")
    if batch_size < 1 or shard_size < 1:
        raise BatchError(f"--batch-size and --shard-size must be at least 1, not {batch_size} and {shard_size}")
    try:
        import ray
    except ImportError:
        raise BatchError("emolens batch needs the distributed extra: pip install 'emolens[distributed]'") from None
    t_call = time.perf_counter()
    files = list_inputs(inputs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is a file, not a folder")
    _check_manifest(out, files, shard_size, fps, window)
    for stale in out.glob(".shard-*"):  # an interrupted run's unfinished shard folders ...
        shutil.rmtree(stale, ignore_errors=True)
    for stale in [*out.glob(f"{VIDEO_FOLDER}/*/.window-*"), *out.glob(f"{PARTS}/.*")]:  # ... and files
        stale.unlink(missing_ok=True)
    pictures = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    plan = _Plan(out, len(pictures), shard_size)
    summary = BatchSummary(shards_skipped=len(plan.complete))
    plan.merge_ready(summary, log)  # shards whose parts were all written before an interruption
    units = plan.units(batch_size)
    tasks, missing_videos, n_windows = _video_tasks(out, videos, window)
    summary.windows_skipped = n_windows - len(tasks)
    if missing_videos:
        _write_error_rows(out / VIDEO_FOLDER / "_missing", missing_videos, model, detector, limits)
    tasks += [{"kind": "pictures", "first": a, "n": b - a, "sources": pictures[a:b], "target": str(plan.part(a, b)),
               "shard": str(plan.folder(a // shard_size))} for a, b in units]  # videos first: the longest units
    if not tasks:
        log(f"all {plan.shards} shards and {n_windows} video windows of {out} are done already")
        summary.seconds = time.perf_counter() - t_call
        return _count(out, summary)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1)))
    n_actors = min(n_actors, len(tasks))
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    if progress:
        ctx.enable_progress_bars = False  # our one line instead
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled ..."
    ds = ray.data.from_items([{"task": json.dumps(t)} for t in tasks], override_num_blocks=min(len(tasks), MAX_BLOCKS))
    ds = ds.map_batches(Recognise, fn_constructor_args=(model, detector, max(1, int(num_cpus)), limits, fps),
                        compute=ray.data.ActorPoolStrategy(size=n_actors), batch_size=1, batch_format="numpy",
                        num_cpus=num_cpus, num_gpus=num_gpus)
    try:
        _run(ds, tasks, plan, summary, n_actors, t_call, log, progress)
    finally:
        ctx.enable_progress_bars = bars
    summary.seconds = time.perf_counter() - t_call
    return _count(out, summary)


def _run(ds, tasks: list[dict], plan: _Plan, summary: BatchSummary, n_actors: int, t_call: float, log,
         progress: bool) -> None:
    """Consume the pipeline's figures: count, merge shards as they complete, report progress."""
    from ..progress import Progress

    bar = Progress(sum(t.get("n", 1) for t in tasks), enabled=progress, unit="inputs", rate_unit="inputs/s")

    def say(message: str) -> None:  # a log line starts on a clean line, not inside the progress line
        bar.clear()
        log(message)
    span: dict[str, list[float]] = {}
    busy: dict[int, list[float]] = {}
    actor_rss: dict[int, int] = {}
    t_wall0 = time.time() - (time.perf_counter() - t_call)
    first_start = None
    done = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["kind"])):
                kind, start, end = str(batch["kind"][i]), float(batch["start"][i]), float(batch["end"][i])
                first_start = start if first_start is None else min(first_start, start)
                done += int(batch["inputs"][i])
                actor_rss[int(batch["pid"][i])] = int(batch["rss"][i])
                if bool(batch["skipped"][i]):
                    continue
                s = span.setdefault(kind, [start, end])
                s[0], s[1] = min(s[0], start), max(s[1], end)
                if kind == "video":
                    summary.windows_done += 1
                    summary.frames_done += int(batch["frames"][i])
                    continue
                summary.units_done += 1
                summary.pictures_done += int(batch["inputs"][i])
                b = busy.setdefault(int(batch["pid"][i]), [0, 0.0])
                b[0] += int(batch["inputs"][i])
                b[1] += float(batch["busy"][i])
                first = int(batch["first"][i])
                plan.written(first, first + int(batch["inputs"][i]))
            plan.merge_ready(summary, say)
            summary.memory.append((done, rss_bytes(), dict(actor_rss)))
            bar.update(done)
    finally:
        if done:
            bar.close()
        if first_start is not None:
            summary.startup_seconds = max(0.0, first_start - t_wall0)
        if "pictures" in span:
            summary.picture_seconds = span["pictures"][1] - span["pictures"][0]
        if "video" in span:
            summary.video_seconds = span["video"][1] - span["video"][0]
        rates = [n / s for n, s in busy.values() if s > 0]
        summary.actors = len(busy)
        summary.actor_rate = sum(rates) / len(rates) if rates else 0.0
    if summary.windows_done:
        log(f"{summary.windows_done} video windows done")


def _video_tasks(out: Path, videos: list[str], window: float) -> tuple[list[dict], list[str], int]:
    """The windows still to do (one unit each), the local videos that do not exist, and the windows in all."""
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
                tasks.append({"kind": "video", "source": source, "window": w, "start": start,
                              "end": -1 if end is None else end, "target": str(target)})
    return tasks, missing, total


class _Plan:
    """Which pictures are done (merged shards, written parts) and what is still to do."""

    def __init__(self, out: Path, n: int, shard_size: int) -> None:
        self.out, self.n, self.shard_size = out, n, shard_size
        self.shards = -(-n // shard_size)
        self.complete = {s for s in range(self.shards) if self.folder(s).is_dir()}
        self.parts: dict[int, list[tuple[int, int]]] = {}  # shard: its written parts
        self.merged = 0
        for p in sorted((out / PARTS).glob("part-*.parquet")):
            m = _PART.fullmatch(p.name)
            if not m:
                continue
            a, b = int(m.group(1)), int(m.group(2))
            if a // shard_size in self.complete or b > n or a >= b or (b - 1) // shard_size != a // shard_size:
                p.unlink(missing_ok=True)  # left by a run stopped between a shard's merge and its clean-up
                continue
            self.parts.setdefault(a // shard_size, []).append((a, b))

    def folder(self, s: int) -> Path:
        return self.out / f"shard-{s:05d}"

    def part(self, a: int, b: int) -> Path:
        return self.out / PARTS / f"part-{a:010d}-{b:010d}.parquet"

    def size(self, s: int) -> int:
        return min(self.n, (s + 1) * self.shard_size) - s * self.shard_size

    def units(self, batch_size: int) -> list[tuple[int, int]]:
        """The runs of at most ``batch_size`` pictures still to do, none across a shard's edge."""
        todo = []
        for s in range(self.shards):
            if s in self.complete:
                continue
            covered = set()
            for a, b in self.parts.get(s, []):
                covered.update(range(a, b))
            run: list[int] = []
            for i in range(s * self.shard_size, s * self.shard_size + self.size(s)):
                if i in covered or (run and len(run) == batch_size):
                    if run:
                        todo.append((run[0], run[-1] + 1))
                    run = []
                if i not in covered:
                    run.append(i)
            if run:
                todo.append((run[0], run[-1] + 1))
        return todo

    def written(self, a: int, b: int) -> None:
        s = a // self.shard_size
        if s not in self.complete and (a, b) not in self.parts.setdefault(s, []):
            self.parts[s].append((a, b))

    def merge_ready(self, summary: BatchSummary, log) -> None:
        """Every shard whose pictures are all in parts becomes one shard folder (complete or absent)."""
        for s in sorted(self.parts):
            parts = sorted(self.parts[s])
            if s in self.complete or sum(b - a for a, b in parts) != self.size(s):
                continue
            t = time.perf_counter()
            _merge(self.out, self.folder(s), [self.part(a, b) for a, b in parts])
            summary.merge_seconds += time.perf_counter() - t
            self.complete.add(s)
            del self.parts[s]
            summary.shards_done += 1
            log(f"shard {s + 1}/{self.shards} done ({self.size(s)} pictures)")


def _merge(out: Path, final: Path, parts: list[Path]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(p) for p in parts])
    tmp = make_temp_dir(out, f".{final.name}-")  # a unique hidden name until complete
    with atomic_file(tmp / "faces.parquet") as f:
        pq.write_table(table, f)
    tmp.rename(final)
    for p in parts:  # a run stopped here leaves parts of a complete shard: the next run removes them
        p.unlink(missing_ok=True)


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
    """The Parquet files of every complete picture shard, written part (of a shard not yet merged) and video
    window under ``out``."""
    out = Path(out)
    try:
        shard_size = int(json.loads((out / MANIFEST).read_text())["shard_size"])
    except (OSError, ValueError, KeyError, TypeError):
        shard_size = 0
    parts = []
    for p in out.glob(f"{PARTS}/part-*.parquet"):
        m = _PART.fullmatch(p.name)
        if m and not (shard_size and (out / f"shard-{int(m.group(1)) // shard_size:05d}").is_dir()):
            parts.append(p)  # a part of a merged shard (a run stopped while removing them) is in the shard
    return sorted(str(p) for p in [*out.glob("shard-*/**/*.parquet"), *parts,
                                   *out.glob(f"{VIDEO_FOLDER}/*/*.parquet")] if not p.name.startswith("."))


def read_results(out: str | os.PathLike, columns: list[str] | None = None):
    """Every row of the complete shards and video windows under ``out`` as one ``pyarrow.Table``."""
    import pyarrow.dataset as pads

    files = result_files(out)
    if not files:
        import pyarrow as pa

        return pa.table({c: [] for c in (columns or ["source", "face", "error"])})
    return pads.dataset(files, format="parquet").to_table(columns=columns)
