"""Showing results: a text table, JSON, JSON lines and annotated image files.

The writers print one picture's rows or object at a time, as soon as it is done, so a long run shows its
results as it goes and an interrupted one keeps every picture it finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..imageio import encode_image, printable
from ..safefile import write_unique
from .draw import annotate
from .faces import Face, ImageResult

JPEG_MAX_SIDE = 65500
"""JPEG cannot store a side longer than this: an image that long is written as PNG instead."""

TABLE_HEADER = ("file", "face", "box (x, y, w, h)", "emotion", "confidence", "runner-up")


def to_json(results: list[ImageResult]) -> str:
    """One JSON object per image, in a list: ``[{"file": ..., "faces": [...]}, ...]`` (what ``--json`` prints).

    An image that could not be read has ``"faces": []`` and an ``"error"`` message.
    """
    return json.dumps([r.to_dict() for r in results], indent=2)


def table_rows(result: ImageResult) -> list[tuple[str, ...]]:
    """The table's rows for one picture: one per face, or one saying there is none (``no face found``) or
    that the picture could not be read (``ERROR``; the message itself is the caller's to show, once). Labels are
    shown as :func:`emolens.imageio.printable` makes them: a control character cannot reach the terminal."""
    if result.error is not None:
        return [(result.source, "-", "-", "ERROR", "-", "-")]
    if not result.faces:
        return [(result.source, "-", "no face found", "-", "-", "-")]
    rows = []
    for i, f in enumerate(result.faces, 1):
        ranked = sorted(f.scores.items(), key=lambda kv: kv[1], reverse=True)
        second = f"{printable(ranked[1][0])} {ranked[1][1]:.0%}" if len(ranked) > 1 else "-"
        rows.append((result.source, str(i), ", ".join(map(str, f.box.as_list())), printable(f.label), f"{f.score:.1%}",
                     second))
    return rows


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def format_table(results: list[ImageResult]) -> str:
    """A readable fixed-width table of finished results, columns as wide as their longest cell."""
    rows = [row for r in results for row in table_rows(r)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(TABLE_HEADER)]
    return "\n".join([_line(TABLE_HEADER, widths), "  ".join("-" * w for w in widths),
                      *(_line(row, widths) for row in rows)])


class ResultWriter:
    """Writes results to ``stream`` one picture at a time (``write``), then ``close()``; flushes after each."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.count = 0

    def write(self, item: Any) -> None:
        self._write(item)
        self.count += 1
        self.stream.flush()

    def _write(self, item: Any) -> None:  # pragma: no cover - every writer has its own
        raise NotImplementedError

    def close(self) -> None:
        self.stream.flush()


class TableWriter(ResultWriter):
    """The text table, printed as the pictures are done: its columns are sized before the first row from
    what is known then (the longest input name and label), and a longer cell pushes only its own row."""

    def __init__(self, stream: IO[str], names: list[str], labels: list[str]) -> None:
        super().__init__(stream)
        longest = max((len(printable(lab)) for lab in labels), default=8)
        cells = (max(names, key=len, default=""), "999", "1000, 1000, 250, 250", "-" * longest, "100.0%",
                 "-" * longest + " 100%")
        self.widths = [max(len(h), len(c)) for h, c in zip(TABLE_HEADER, cells)]
        self.started = False

    def _write(self, result: ImageResult) -> None:
        if not self.started:
            self.stream.write(_line(TABLE_HEADER, self.widths) + "\n" + "  ".join("-" * w for w in self.widths) + "\n")
            self.started = True
        for row in table_rows(result):
            self.stream.write(_line(row, self.widths) + "\n")


class JsonWriter(ResultWriter):
    """``--json``: one JSON array of per-picture objects, exactly as :func:`to_json` makes it, written an
    object at a time (``[`` before the first, ``]`` from :meth:`close`). ``lines=True`` (``--jsonl``): one
    compact object per line and nothing else, the form batch tools read as a stream."""

    def __init__(self, stream: IO[str], *, lines: bool = False) -> None:
        super().__init__(stream)
        self.lines = lines

    def _write(self, item: ImageResult | dict) -> None:
        obj = item.to_dict() if isinstance(item, ImageResult) else item
        if self.lines:
            self.stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
            return
        text = "\n".join("  " + line for line in json.dumps(obj, indent=2).splitlines())
        self.stream.write(("[\n" if self.count == 0 else ",\n") + text)

    def close(self) -> None:
        if not self.lines:
            self.stream.write("\n]\n" if self.count else "[]\n")
        super().close()


def save_annotated(image: np.ndarray, faces: list[Face], source: str | os.PathLike, out_dir: str | os.PathLike,
                   *, landmarks: bool = True) -> Path:
    """Draw the faces (numbered as in the table) on a copy of the image and write it to
    ``out_dir/<name>_emolens<ext>`` (PNG for a side JPEG cannot hold).

    Never overwrites anything: when the name is taken, the copy is ``<name>_emolens-1<ext>``, ``-2`` ..., the first
    name free at the moment it is written, taken atomically (pictures of the same name from different folders,
    written at once by several workers, each get their own file). Written through :mod:`emolens.safefile`: a
    complete file or none.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = Path(os.fsdecode(source))
    stem = src.stem if src.stem and not str(src).startswith("<") else "image"
    ext = src.suffix.lower() if src.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
    if ext in (".jpg", ".jpeg") and max(image.shape[:2]) > JPEG_MAX_SIDE:
        ext = ".png"
    drawn = annotate(image, faces, landmarks=landmarks)
    buf = encode_image(drawn, ext)
    if buf is None and ext != ".png":  # e.g. WebP, whose sides stop at 16383
        ext, buf = ".png", encode_image(drawn, ".png")
    target = out_dir / f"{stem}_emolens{ext}"
    if buf is None:
        raise OSError(f"{target}: could not encode the annotated image")
    return write_unique(target, buf)
