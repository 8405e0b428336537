"""The one table ``emolens batch`` writes: its Parquet columns, and the row every kind of input starts from.

One row per face of a picture, or per face per recognised frame of a video; a row with ``face = -1`` for a picture
(or a video window) without a face, and one with ``error`` for an input that cannot be read. Pictures leave the
video columns (``time_s``, ``frame``, ``window``, ``detected``) empty; in a video ``face`` is the face's track id,
counted within its window (``window``: 0, 1, 2 ... of ``--window`` seconds each).
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 2  # 2: the video columns


def schema(labels: list[str]):
    """The Parquet columns: one type each, so that every shard and window reads as one table."""
    import pyarrow as pa

    ints = [(c, pa.int32()) for c in ("face", "x", "y", "w", "h")]
    return pa.schema([("source", pa.string()), ("time_s", pa.float64()), ("frame", pa.int64()),
                      ("window", pa.int32()), *ints, ("landmarks", pa.list_(pa.list_(pa.float32()))),
                      ("label", pa.string()), ("score", pa.float32()), ("detected", pa.bool_()),
                      *[(f"p_{k}", pa.float32()) for k in labels], ("model", pa.string()), ("error", pa.string())])


def blank_row(source: str, labels: list[str], model: str, error: str | None = None) -> dict[str, Any]:
    """A row with no face in it (``face = -1``): the start of every row, and the whole row for a picture without
    a face or an input that cannot be read."""
    return {"source": source, "time_s": None, "frame": None, "window": None, "face": -1, "x": None, "y": None,
            "w": None, "h": None, "landmarks": None, "label": None, "score": None, "detected": None,
            **{f"p_{k}": None for k in labels}, "model": model, "error": error}
