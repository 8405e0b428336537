"""Explanation maps: which parts of a face crop drove the model's emotion call.

Model-agnostic and torch-free: the face crop is perturbed (parts of it replaced by a blurred copy)
and the ONNX model is asked again, in one batched run, how likely the explained emotion still is.

``occlusion`` (default)
    Square patches of two sizes (a quarter of the crop's side at 7×7 places and half of it at 5×5
    places) slide over the crop; a pixel's heat is the mean drop of the label's log-odds
    (``log p − log(1 − p)``) over the patches that hide it, averaged over both sizes. Log-odds, not
    probability, so a very confident face (p ≈ 0.9+, where hiding anything moves p by only a
    hundredth) still gives a map; the half-crop patches catch evidence that is spread over the
    face (a smile with smiling eyes survives any one small patch). A patch whose hiding *raises*
    the label's odds counts as 0 (the map shows what speaks for the label); the map is scaled to
    [0, 1] by its maximum.
``rise``
    RISE-style sensitivity (Petsiuk et al. 2018): random smooth masks hide about half the crop each;
    a pixel's heat is how much higher the label's probability is when the pixel is visible than
    when it is hidden. Less blocky, needs more model calls for the same noise level.

Large crops cost no more than small ones: the blurred copy is made on a crop of at most
:data:`WORK_SCALE` × the model's input side and scaled back, the masks live in a grid the size of
the model's input, and the map is upscaled to the crop only at the end.

Both explain what the model really sees: the perturbations are applied once in a working grid
over the largest crop the model's test-time augmentation uses, and every TTA view (crop scales,
mirror image) is cut from the perturbed crop and preprocessed exactly as in prediction, so the
probabilities are the ones :meth:`emolens.EmotionRecognizer.predict` would report.
Grad-CAM on a PyTorch checkpoint lives in :mod:`emolens.training.gradcam` (``[train]`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from ..classify import MAX_BATCH, Classifier
from ..face.align import aligned_crop
from ..results.draw import colour_for
from ..results.faces import Face

METHODS = ("occlusion", "rise")
"""Model-agnostic methods of :func:`saliency` (``gradcam`` needs a checkpoint and the ``[train]`` extra)."""

Method = str | Callable[[np.ndarray, str], np.ndarray]
"""A method name, or a callable ``(crop, label) -> heat map`` (see :func:`explain_faces`)."""

PANEL_SIDE = 240
"""Height in pixels of :meth:`Explanation.panel` (tiles are scaled to it)."""

WORK_SCALE = 4
"""The blurred fill of hidden regions is computed on the crop scaled down to at most this many times
the model's input side (× its largest TTA scale): the model sees 48 px, so more is wasted time."""

OCCLUSION_PATCHES = ((0.25, 7), (0.5, 5))
"""Occlusion: (patch side / crop side, places per row) of each patch size; 49 + 25 = 74 model inputs."""


@dataclass
class Explanation:
    """One face's explanation map.

    Attributes:
        face: the face being explained (box, predicted label, probabilities).
        label: the emotion the map explains (the predicted one unless another was asked for).
        crop: the face crop the model saw, BGR uint8 H×W×3 (the largest TTA view).
        heatmap: float32 H×W in [0, 1], same size as ``crop``; high = this region drove ``label``.
        method: how the map was made (``occlusion``, ``rise`` or ``gradcam``).
    """

    face: Face
    label: str
    crop: np.ndarray
    heatmap: np.ndarray
    method: str = "occlusion"

    def overlay(self) -> np.ndarray:
        """The crop with the heat map blended on (JET colours, stronger where the heat is higher)."""
        return overlay(self.crop, self.heatmap)

    def panel(self) -> np.ndarray:
        """crop | overlay | top-3 probabilities (and the explained emotion's, when it is not among
        them), BGR uint8, :data:`PANEL_SIDE` pixels high; the image tiles carry small captions."""
        side = PANEL_SIDE
        interp = cv2.INTER_AREA if self.crop.shape[0] > side else cv2.INTER_CUBIC
        crop = cv2.resize(self.crop, (side, side), interpolation=interp)
        heat = cv2.resize(self.heatmap, (side, side), interpolation=cv2.INTER_LINEAR)
        return np.hstack([_caption(crop, "face crop"), _caption(overlay(crop, heat), f"map of {self.label}"),
                          _bars(self.face, self.label, self.method, side)])


def overlay(crop: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Blend a [0, 1] heat map onto a BGR crop of the same size."""
    colour = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET).astype(np.float32)
    alpha = (0.15 + 0.5 * np.clip(heatmap, 0, 1))[..., None]
    return np.uint8(np.clip(crop.astype(np.float32) * (1 - alpha) + colour * alpha + 0.5, 0, 255))


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """The tile with ``text`` in white on a dark strip along its top edge."""
    out = tile.copy()
    font = cv2.FONT_HERSHEY_SIMPLEX
    (w, h), _ = cv2.getTextSize(text, font, 0.45, 1)
    strip = out[: h + 10, : w + 10]
    strip[:] = (strip.astype(np.float32) * 0.4).astype(np.uint8)
    cv2.putText(out, text, (5, h + 5), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def bar_entries(face: Face, label: str) -> list[tuple[str, float]]:
    """The emotions :meth:`Explanation.panel` shows: the three most probable, then the explained one if it
    is not among them."""
    ranked = sorted(face.scores.items(), key=lambda kv: kv[1], reverse=True)[:3]
    if label not in dict(ranked):
        ranked.append((label, face.scores[label]))
    return ranked


def _bars(face: Face, label: str, method: str, side: int) -> np.ndarray:
    """A tile listing the three most probable emotions as bars (plus the explained one when it is not
    among them), and what the map explains (marked ``<``)."""
    tile = np.full((side, int(side * 1.25), 3), 255, np.uint8)
    w = tile.shape[1]
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(tile, f"map: {label} ({method})", (8, 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ranked = bar_entries(face, label)
    row = (side - 40) // len(ranked)
    for i, (name, p) in enumerate(ranked):
        y = 40 + i * row
        text = f"{name} {p:.0%}" + ("  < map" if name == label else "")
        cv2.putText(tile, text, (8, y + 16), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.rectangle(tile, (8, y + 24), (w - 8, y + 24 + row // 3), (225, 225, 225), cv2.FILLED)
        cv2.rectangle(tile, (8, y + 24), (8 + round((w - 16) * p), y + 24 + row // 3), colour_for(name), cv2.FILLED)
    return tile


def check_label(labels: list[str], label: str | None) -> None:
    """Raise ValueError naming the valid labels when ``label`` is not one of the model's."""
    if label is not None and label not in labels:
        raise ValueError(f"unknown label {label!r}; this model's labels are: {', '.join(labels)}")


# ----------------------------------------------------------------------------- the model's views
def view_scale(classifier: Classifier, crop_margin: float) -> float:
    """Side of the explained crop × the face box: the largest crop any TTA view uses."""
    return (1.0 + 2.0 * crop_margin) * max(classifier.meta.tta_scales or [1.0])


class _Views:
    """The model's TTA views of one crop, ready to be perturbed by masks in a G×G working grid.

    View k is the centred square of relative side ``tta_scales[k] / max(tta_scales)`` of the crop
    (exactly how :meth:`EmotionRecognizer.classify_boxes` cuts its views around a face box).
    """

    def __init__(self, classifier: Classifier, crop: np.ndarray) -> None:
        self.classifier = classifier
        meta = classifier.meta
        scales = meta.tta_scales or [1.0]
        top = max(scales)
        self.grid = max(16, round(meta.input_size * top))
        fill = _blurred(crop, max(16, round(WORK_SCALE * meta.input_size * top)))
        side = crop.shape[0]
        self.x: list[np.ndarray] = []  # per view: 1×C×S×S input
        self.b: list[np.ndarray] = []  # per view: the same of the blurred crop
        self.windows: list[tuple[float, float]] = []  # per view: (start, end) in grid units
        for s in scales:
            f = s / top
            n = max(1, round(side * f))
            o = (side - n) // 2
            self.x.append(classifier.preprocess([crop[o : o + n, o : o + n]]))
            self.b.append(classifier.preprocess([fill[o : o + n, o : o + n]]))
            self.windows.append((self.grid * (1 - f) / 2, self.grid * (1 + f) / 2))

    def proba(self, masks: np.ndarray, chunk: int = MAX_BATCH) -> np.ndarray:
        """Probabilities (N×labels, averaged over the views) with each mask's 1-pixels blurred away.

        ``masks``: float N×G×G in [0, 1], 1 = hidden."""
        size = self.classifier.meta.input_size
        out = np.zeros((len(masks), len(self.classifier.labels)), np.float64)
        for (a, b), x, fill in zip(self.windows, self.x, self.b):
            for i in range(0, len(masks), chunk):
                m = _resize_masks(masks[i : i + chunk], a, b, size)[:, None]
                out[i : i + chunk] += self.classifier.probabilities(x * (1 - m) + fill * m)
        return (out / len(self.x)).astype(np.float32)


def _blurred(crop: np.ndarray, work: int | None = None) -> np.ndarray:
    """The crop with its features blurred away (what a hidden region is replaced by), the crop's size.

    The blur is a Gaussian of σ = side / 8, so its cost grows with the cube of the side: a crop
    larger than ``work`` pixels is blurred at ``work`` pixels and scaled back (the result is smooth,
    so nothing is lost; the model sees the crop at its input size anyway)."""
    h, w = crop.shape[:2]
    small = crop
    if work is not None and max(h, w) > work:
        small = cv2.resize(crop, (max(1, round(w * work / max(h, w))), max(1, round(h * work / max(h, w)))),
                           interpolation=cv2.INTER_AREA)
    sigma = max(1.0, small.shape[0] / 8)
    blurred = cv2.GaussianBlur(small, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    if small is crop:
        return blurred
    return cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR).reshape(crop.shape)


def _resize_masks(masks: np.ndarray, a: float, b: float, size: int) -> np.ndarray:
    """The window [a, b)² of each G×G mask, resampled to size×size (an affine warp, so fractional
    windows stay exact)."""
    k = size / (b - a)
    t = k * (0.5 - a) - 0.5  # pixel centres: dst + 0.5 = k * (src + 0.5 - a)
    warp = np.float32([[k, 0, t], [0, k, t]])
    out = np.empty((len(masks), size, size), np.float32)
    for i in range(0, len(masks), 256):  # cv2 takes up to 512 channels
        part = np.ascontiguousarray(masks[i : i + 256].transpose(1, 2, 0))
        warped = cv2.warpAffine(part, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[i : i + 256] = warped.reshape(size, size, -1).transpose(2, 0, 1)
    return out


# ----------------------------------------------------------------------------- the maps
def occlusion_masks(grid: int, patch: float = 0.25, steps: int = 7) -> np.ndarray:
    """``steps``² soft-edged square masks of side ``patch`` × grid, sliding from one edge to the other (half a patch
    past each edge, so border pixels are hidden as often as central ones)."""
    p = max(1, round(grid * patch))
    starts = np.round(np.linspace(-p / 2, grid - p / 2, steps)).astype(int)
    masks = np.zeros((steps * steps, grid, grid), np.float32)
    for i, (y, x) in enumerate((y, x) for y in starts for x in starts):
        masks[i, max(0, y) : max(0, y + p), max(0, x) : max(0, x + p)] = 1
        masks[i] = cv2.GaussianBlur(masks[i], (0, 0), p / 6)  # soft edges: no blocky map, no sharp new edges
    return masks


def rise_masks(grid: int, n: int = 160, cells: int = 6, p_hide: float = 0.5, seed: int = 0) -> np.ndarray:
    """``n`` RISE masks: random cells×cells on/off grids, bilinearly upsampled and randomly shifted."""
    rng = np.random.default_rng(seed)
    cell = int(np.ceil(grid / cells))
    up = (cells + 1) * cell
    masks = np.empty((n, grid, grid), np.float32)
    for i in range(n):
        coarse = (rng.random((cells + 1, cells + 1)) < p_hide).astype(np.float32)
        big = cv2.resize(coarse, (up, up), interpolation=cv2.INTER_LINEAR)
        dy, dx = rng.integers(0, cell, 2)
        masks[i] = big[dy : dy + grid, dx : dx + grid]
    return masks


def saliency(
    classifier: Classifier,
    crop: np.ndarray,
    label: int,
    *,
    method: str = "occlusion",
    seed: int = 0,
) -> np.ndarray:
    """The explanation map of class index ``label`` for one face crop: float32 H×W in [0, 1].

    ``crop`` is the largest TTA view (see :func:`view_scale`); gray or BGR uint8.
    """
    check_method(method)
    h, w = crop.shape[:2]
    if h != w:  # face crops are square; anything else is padded to one (edge pixels repeated)
        side = max(h, w)
        crop = cv2.copyMakeBorder(crop, 0, side - h, 0, side - w, cv2.BORDER_REPLICATE)
    views = _Views(classifier, crop)
    g = views.grid
    if method == "occlusion":
        base = log_odds(views.proba(np.zeros((1, g, g), np.float32))[:, label])[0]
        maps = []
        for patch, steps in OCCLUSION_PATCHES:
            masks = occlusion_masks(g, patch, steps)
            # a patch whose hiding raises the odds is no evidence for the label: it counts as 0, so it
            # does not cancel the evidence of an overlapping patch (the smile under the central patch)
            drop = np.maximum(base - log_odds(views.proba(masks)[:, label]), 0)
            maps.append(np.tensordot(drop, masks, axes=1) / np.maximum(masks.sum(axis=0), 1e-6))
        heat = np.mean(maps, axis=0)
        peak = float(heat.max())
        heat = heat / peak if peak > 1e-9 else np.zeros_like(heat)
    else:
        masks = rise_masks(g, seed=seed)
        score = views.proba(masks)[:, label]
        keep = 1 - masks
        heat = np.tensordot(score, keep, axes=1) / np.maximum(keep.sum(0), 1e-6) - np.tensordot(
            score, masks, axes=1
        ) / np.maximum(masks.sum(0), 1e-6)
        heat = normalise(heat)
    heat = cv2.resize(heat, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(heat[:h, :w], 0, 1).astype(np.float32)


def log_odds(p: np.ndarray) -> np.ndarray:
    """``log p − log(1 − p)`` (float64, p clipped to [1e-7, 1 − 1e-7])."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def normalise(heat: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (a constant map becomes all zeros)."""
    heat = np.asarray(heat, np.float32)
    lo, hi = float(heat.min()), float(heat.max())
    return (heat - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(heat)


def as_bgr(crop: np.ndarray) -> np.ndarray:
    """A gray (H×W or H×W×1) or BGR uint8 crop as BGR H×W×3."""
    if crop.ndim == 3 and crop.shape[2] == 3:
        return crop
    return cv2.cvtColor(crop.reshape(crop.shape[:2]), cv2.COLOR_GRAY2BGR)


def explain_faces(
    classifier: Classifier,
    bgr: np.ndarray,
    faces: list[Face],
    *,
    crop_margin: float = 0.0,
    label: str | None = None,
    method: Method = "occlusion",
    align: str = "none",
    max_faces: int | None = None,
    deadline: float | None = None,
) -> list[Explanation]:
    """One :class:`Explanation` per face of an image (faces as :meth:`EmotionRecognizer.classify_boxes`
    returns them, largest first); ``label`` = the emotion to explain, default each face's predicted one.

    ``method``: a name from :data:`METHODS`, or any callable ``(crop, label) -> H×W map in [0, 1]``
    (e.g. :class:`emolens.training.gradcam.GradCAM`; its ``name`` attribute names the method).
    ``align``: a mode from :data:`emolens.face.align.ALIGN_MODES`, the crop cut as prediction cuts it.
    ``max_faces``: explain only the first this many faces. ``deadline`` (a :func:`time.monotonic` time):
    start no face after it, so the explanations of the faces before it are returned (a face takes about
    0.7 s on one core)."""
    labels = classifier.labels
    check_label(labels, label)
    check_method(method)
    scale = view_scale(classifier, crop_margin)
    out = []
    for face in faces[:max_faces]:
        if deadline is not None and time.monotonic() > deadline:
            break
        target = label or face.label
        crop = aligned_crop(bgr, face.box, scale, mode=align, input_size=classifier.meta.input_size,
                            template=classifier.meta.landmark_template)
        if callable(method):
            heat = np.clip(np.asarray(method(crop, target), np.float32), 0, 1)
            if heat.shape != crop.shape[:2]:
                raise ValueError(f"explanation map is {heat.shape}, the crop {crop.shape[:2]}")
            name = str(getattr(method, "name", type(method).__name__))
        else:
            heat, name = saliency(classifier, crop, labels.index(target), method=method), method
        out.append(Explanation(face, target, as_bgr(crop).copy(), heat, name))
    return out


def check_method(method: Method) -> None:
    if not callable(method) and method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
