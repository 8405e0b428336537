"""Results that show themselves in Jupyter: HTML for :class:`~emolens.results.faces.Face`, a list of them
(:class:`~emolens.results.faces.Faces`, what :meth:`EmotionRecognizer.predict` returns) and
:class:`~emolens.results.faces.ImageResult` (the annotated picture above its table).

Plain HTML with the picture inline as a JPEG data URL: no dependency beyond what emolens already needs, and
the notebook keeps it when saved. Names are escaped; a picture that can no longer be read shows its table.
(The results call these functions; this module does not import them back.)
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MAX_SIDE = 640
"""The inline picture's longest side in pixels (a notebook cell, not the full photo)."""

_TABLE = '<table style="border-collapse:collapse;font-family:monospace;font-size:12px">'
_CELL = 'style="padding:2px 8px;text-align:left;border-bottom:1px solid #ddd"'


def _row(cells: Sequence[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag} {_CELL}>{html.escape(c)}</{tag}>" for c in cells) + "</tr>"


def faces_html(faces: Sequence[Any]) -> str:
    """A compact table: face number, emotion, confidence, runner-up, box."""
    if not faces:
        return "<p><i>no face found</i></p>"
    rows = [_row(("face", "emotion", "confidence", "runner-up", "box (x, y, w, h)"), "th")]
    for i, f in enumerate(faces, 1):
        ranked = sorted(f.scores.items(), key=lambda kv: kv[1], reverse=True)
        second = f"{ranked[1][0]} {ranked[1][1]:.0%}" if len(ranked) > 1 else "-"
        rows.append(_row((str(i), f.label, f"{f.score:.1%}", second, ", ".join(map(str, f.box.as_list())))))
    return _TABLE + "".join(rows) + "</table>"


def image_html(bgr: np.ndarray, faces: Sequence[Any], alt: str = "") -> str:
    """The picture with its faces drawn (as ``--annotate`` draws them), at most :data:`MAX_SIDE` pixels."""
    from ..imageio import encode_image
    from .draw import annotate

    drawn = annotate(bgr, list(faces))
    h, w = drawn.shape[:2]
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        drawn = cv2.resize(drawn, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    data = encode_image(drawn, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 85])
    if data is None:
        return ""
    src = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return f'<img src="{src}" alt="{html.escape(alt, quote=True)}" style="max-width:100%"/>'


def result_html(result: Any) -> str:
    """A picture's result: its name, the annotated picture (read again from its file) and the faces' table, or
    the error that stopped it."""
    title = f"<p><b>{html.escape(result.source)}</b></p>"
    if result.error is not None:
        return title + f'<p style="color:#b00">error: {html.escape(result.error)}</p>'
    picture = ""
    path = Path(result.source)
    if path.is_file():
        from ..imageio import ImageError, load_image

        try:
            picture = image_html(load_image(path), result.faces, alt=result.source)
        except (ImageError, OSError):
            picture = ""
    return title + picture + faces_html(result.faces)
