"""``emolens batch``: every face of many pictures into Parquet, on Ray Data (a local Ray or a cluster).

    from emolens.distributed.batch import run_batch
    summary = run_batch(["photos/", "more/*.jpg", "list.txt"], "faces.parquet/", actors=2)

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
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import IMAGE_SUFFIXES

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

    def line(self) -> str:
        rate = self.pictures / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.pictures} pictures, {self.faces} faces, {self.no_face} without a face, {self.errors} "
                f"errors; {self.shards_done} shards written, {self.shards_skipped} already done; "
                f"{self.seconds:.1f} s, {rate:.1f} pictures/s")


def list_inputs(inputs: list[str]) -> list[str]:
    """Folders (their images, recursively, sorted), globs, ``.txt`` files of paths or URIs (one a line, ``#``
    comments), single files and URIs, in the order given. A local path that does not exist is kept: its row
    says so."""
    out: list[str] = []
    for item in inputs:
        if item.startswith(URI_SCHEMES):
            out.append(item)
        elif os.path.isdir(item):
            out += sorted(str(p) for p in Path(item).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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

    def __init__(self, model: str | None, detector: str | None, threads: int) -> None:
        from .. import EmotionRecognizer
        from ..detect import DEFAULT_DETECTOR

        self.rec = EmotionRecognizer(model, detector=detector or DEFAULT_DETECTOR, threads=threads)
        self.labels = self.rec.labels
        self.model = self.rec.classifier.meta.name or Path(str(self.rec.classifier.path)).name
        self.schema = schema(self.labels)

    def rows_for(self, source: str, data: bytes | None, error: str | None) -> list[dict[str, Any]]:
        blank = {"source": source, "face": -1, "x": None, "y": None, "w": None, "h": None, "landmarks": None,
                 "label": None, "score": None, **{f"p_{k}": None for k in self.labels}, "model": self.model,
                 "error": error}
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


def schema(labels: list[str]):
    """The Parquet columns: one type each, so that shards with and without faces or errors read as one table."""
    import pyarrow as pa

    ints = [(c, pa.int32()) for c in ("face", "x", "y", "w", "h")]
    return pa.schema([("source", pa.string()), *ints, ("landmarks", pa.list_(pa.list_(pa.float32()))),
                      ("label", pa.string()), ("score", pa.float32()), *[(f"p_{k}", pa.float32()) for k in labels],
                      ("model", pa.string()), ("error", pa.string())])


def _check_manifest(out: Path, files: list[str], shard_size: int) -> None:
    path = out / MANIFEST
    want = {"inputs": files, "shard_size": shard_size}
    if path.is_file():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError):
            raise BatchError(f"{path}: unreadable; not an emolens batch folder") from None
        if have != want:
            raise BatchError(f"{out} holds a batch run over other inputs (or another --shard-size); pick another "
                             "--out, or run the same command again to finish that one")
        return
    if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
        raise BatchError(f"{out} is not empty and not an emolens batch folder; pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want))


def run_batch(inputs: list[str], out: str | os.PathLike, *, model: str | None = None, detector: str | None = None,
              address: str | None = None, actors: int | None = None, num_cpus: float = 1, num_gpus: float = 0,
              batch_size: int = 16, shard_size: int = 1000, verbose: bool = False, log=print) -> BatchSummary:
    """Recognise every picture of ``inputs`` into Parquet shards under ``out`` (see the module docstring)."""
    if not verbose:  # Ray Data's progress stays (bars on a terminal); its per-step INFO lines go (read at import)
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
    try:
        import ray
    except ImportError:
        raise BatchError("emolens batch needs the distributed extra: pip install 'emolens[distributed]'") from None
    files = list_inputs(inputs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BatchError(f"--out {out} is a file, not a folder")
    _check_manifest(out, files, shard_size)
    for stale in out.glob(".shard-*"):  # an interrupted run's unfinished shard
        shutil.rmtree(stale, ignore_errors=True)
    shards = [files[i : i + shard_size] for i in range(0, len(files), shard_size)]
    todo = [i for i in range(len(shards)) if not (out / f"shard-{i:05d}").is_dir()]
    summary = BatchSummary(shards_skipped=len(shards) - len(todo))
    if not todo:
        log(f"all {len(shards)} shards of {out} are done already")
        return _count(out, summary)
    address = address or os.environ.get("RAY_ADDRESS")
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    n_actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1)))
    t0 = time.perf_counter()
    for i in todo:
        shard = shards[i]
        local = [f for f in shard if not f.startswith(URI_SCHEMES)]
        missing = [f for f in local if not os.path.isfile(f)]
        readable = [f for f in shard if f not in missing]
        tmp, final = out / f".shard-{i:05d}", out / f"shard-{i:05d}"
        tmp.mkdir()
        if readable:
            # reading and writing are I/O: they take no CPU slot, so actors that fill every CPU cannot starve them
            # (with 2 actors on 2 cores, reads and writes waiting for a free CPU stalled the run for good)
            ds = ray.data.read_binary_files(readable, include_paths=True, num_cpus=0)
            ds = ds.map_batches(Recognise, fn_constructor_args=(model, detector, max(1, int(num_cpus))),
                                compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(readable))),
                                batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus, num_gpus=num_gpus)
            ds.write_parquet(str(tmp / "faces"), ray_remote_args={"num_cpus": 0})
        if missing:
            _write_error_rows(tmp / "missing", missing, model, detector)
        tmp.rename(final)
        summary.shards_done += 1
        log(f"shard {i + 1}/{len(shards)} done ({len(shard)} pictures)")
    summary.seconds = time.perf_counter() - t0
    return _count(out, summary)


def _write_error_rows(folder: Path, paths: list[str], model: str | None, detector: str | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rec = Recognise(model, detector, 1)
    rows = [r for p in paths for r in rec.rows_for(p, None, "no such file")]
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=rec.schema), folder / "rows.parquet")


def _count(out: Path, summary: BatchSummary) -> BatchSummary:
    """The totals over every complete shard (pictures, faces, pictures without one, errors)."""
    table = read_results(out, columns=["source", "face", "error"])
    summary.pictures = len(set(table.column("source").to_pylist()))
    faces = table.column("face").to_pylist()
    errors = table.column("error").to_pylist()
    summary.faces = sum(1 for f in faces if f is not None and f >= 0)
    summary.errors = sum(1 for e in errors if e is not None)
    summary.no_face = sum(1 for f, e in zip(faces, errors) if f == -1 and e is None)
    return summary


def read_results(out: str | os.PathLike, columns: list[str] | None = None):
    """Every row of the complete shards under ``out`` as one ``pyarrow.Table``."""
    import pyarrow.dataset as pads

    files = sorted(str(p) for p in Path(out).glob("shard-*/**/*.parquet"))
    if not files:
        import pyarrow as pa

        return pa.table({c: [] for c in (columns or ["source", "face", "error"])})
    return pads.dataset(files, format="parquet").to_table(columns=columns)
