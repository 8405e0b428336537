"""Showing results: a text table, JSON, and annotated image files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from .draw import annotate
from .results import Face, ImageResult


def to_json(results: list[ImageResult]) -> str:
    """One JSON object per image, in a list: ``[{"file": ..., "faces": [...]}, ...]``.

    An image that could not be read has ``"faces": []`` and an ``"error"`` message.
    """
    return json.dumps([r.to_dict() for r in results], indent=2)


def format_table(results: list[ImageResult]) -> str:
    """A readable fixed-width table: one row per face (or per image without faces / with an error)."""
    header = ("file", "face", "box (x, y, w, h)", "emotion", "confidence", "runner-up")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.error is not None:
            rows.append((r.source, "-", "-", "ERROR", "-", r.error))
            continue
        if not r.faces:
            rows.append((r.source, "-", "no face found", "-", "-", "-"))
        for i, f in enumerate(r.faces, 1):
            ranked = sorted(f.scores.items(), key=lambda kv: kv[1], reverse=True)
            second = f"{ranked[1][0]} {ranked[1][1]:.0%}" if len(ranked) > 1 else "-"
            rows.append((r.source, str(i), ", ".join(map(str, f.box.as_list())), f.label, f"{f.score:.1%}", second))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)


def unique_path(path: Path) -> Path:
    """``path`` if nothing is there, else ``name-1.ext``, ``name-2.ext`` ... (never overwrite)."""
    if not path.exists():
        return path
    for i in range(1, 100_000):
        cand = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not cand.exists():
            return cand
    raise FileExistsError(f"{path}: too many files with this name")


def save_annotated(image: np.ndarray, faces: list[Face], source: str | os.PathLike, out_dir: str | os.PathLike,
                   *, landmarks: bool = True) -> Path:
    """Draw the faces on a copy of the image and write it to ``out_dir/<name>_emolens<ext>``.

    Never overwrites anything: an existing file gets a numbered sibling instead.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    src = Path(str(source))
    stem = src.stem if src.stem and not str(source).startswith("<") else "image"
    ext = src.suffix.lower() if src.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
    target = unique_path(out_dir / f"{stem}_emolens{ext}")
    ok, buf = cv2.imencode(ext, annotate(image, faces, landmarks=landmarks))
    if not ok:
        raise OSError(f"{target}: could not encode the annotated image")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(target)
    return target
