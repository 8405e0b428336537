"""The emotion-over-time plot: each face's emotions as lines, the label shown as a strip below."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..results.draw import colour_for


def _nice_step(span: float, max_ticks: int = 10) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if span / step <= max_ticks:
            return float(step)
    return 3600.0 * math.ceil(span / 3600 / max_ticks)


Series = dict[int, tuple[list[float], list[np.ndarray], list[str]]]
"""Per face id: times in s, probability vectors in ``labels`` order, and the label shown."""


def render_timeline(series: Series, labels: list[str], *,
                    width: int = 1200, panel_h: int = 150, max_faces: int = 8) -> np.ndarray:
    """A BGR image: per face id, each emotion's probability over time (a line per emotion), with a
    strip coloured by the label shown (in the video and the CSV's ``label``) below it. Drawn with
    OpenCV (no matplotlib needed).

    Args:
        series: face id -> (times in s, probability vectors in ``labels`` order, shown labels).
        max_faces: plot at most this many faces (those seen in most frames).
    """
    font = cv2.FONT_HERSHEY_SIMPLEX
    ids = sorted(series, key=lambda i: len(series[i][0]), reverse=True)[:max_faces]
    ids.sort()
    left, right, top, legend_h, strip = 70, 20, 10, 34, 10
    img_h = top + legend_h + max(1, len(ids)) * (panel_h + strip + 40) + 20
    img = np.full((img_h, width, 3), 255, np.uint8)
    x = left
    for lab in labels:  # legend
        cv2.rectangle(img, (x, top + 8), (x + 24, top + 20), colour_for(lab), cv2.FILLED)
        cv2.putText(img, lab, (x + 30, top + 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += 40 + cv2.getTextSize(lab, font, 0.5, 1)[0][0]
    if not ids:
        cv2.putText(img, "no faces found", (left, top + legend_h + 40), font, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
        return img
    t0 = min(series[i][0][0] for i in ids)
    t1 = max(series[i][0][-1] for i in ids)
    span = max(t1 - t0, 1e-3)
    pw = width - left - right

    def xpix(t: np.ndarray | float) -> np.ndarray:
        return left + (np.asarray(t) - t0) / span * pw

    step = _nice_step(span)
    for n, tid in enumerate(ids):
        y0 = top + legend_h + n * (panel_h + strip + 40) + 20
        times, probs, shown = series[tid]
        ts, ps = np.asarray(times, dtype=np.float64), np.asarray(probs, dtype=np.float64).reshape(len(times), -1)
        cv2.putText(img, f"face #{tid}", (left, y0 - 6), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(img, (left, y0), (left + pw, y0 + panel_h), (180, 180, 180), 1)
        for v in (0.0, 0.5, 1.0):
            y = int(round(y0 + panel_h * (1 - v)))
            cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
            cv2.putText(img, f"{v:.1f}", (left - 34, y + 4), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
        tick = math.ceil(t0 / step) * step
        while tick <= t1 + 1e-9:
            xt = int(round(float(xpix(tick))))
            cv2.line(img, (xt, y0 + panel_h + strip), (xt, y0 + panel_h + strip + 4), (90, 90, 90), 1)
            txt = f"{tick:g}s"
            cv2.putText(img, txt, (xt - 8, y0 + panel_h + strip + 18), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
            tick += step
        xs = xpix(ts)
        for k, lab in enumerate(labels):
            ys = y0 + panel_h * (1 - ps[:, k])
            pts = np.stack([xs, ys], axis=1).round().astype(np.int32).reshape(-1, 1, 2)
            if len(pts) == 1:
                cv2.circle(img, tuple(int(v) for v in pts[0, 0]), 2, colour_for(lab), cv2.FILLED)
            else:
                cv2.polylines(img, [pts], False, colour_for(lab), 2, cv2.LINE_AA)
        win = [labels.index(lab) for lab in shown]
        edges = np.append(xs, xs[-1] + max(1.0, pw / max(1, len(xs))))
        for j in range(len(ts)):
            xa, xb = int(round(edges[j])), max(int(round(edges[j])) + 1, int(round(edges[j + 1])))
            cv2.rectangle(img, (xa, y0 + panel_h + 2), (min(xb, left + pw), y0 + panel_h + strip),
                          colour_for(labels[int(win[j])]), cv2.FILLED)
    return img
