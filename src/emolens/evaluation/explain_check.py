"""Do explanation maps mean something? The check behind ``benchmarks/explain_sanity.py`` and the explanation
tests: hide the part of a face a map points at and see how much the explained emotion's probability drops,
against hiding its coldest part and random parts.

It sits on the recogniser (the face is classified again through :meth:`EmotionRecognizer.classify_boxes`), so
it lives here, with the other measurements, and :mod:`emolens.explain.maps` never needs the recogniser.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..explain.maps import Explanation, view_scale
from ..face.detect.base import Box
from ..recognizer import EmotionRecognizer


def region_drops(
    recognizer: EmotionRecognizer,
    ex: Explanation,
    *,
    region: float = 1 / 3,
    n_random: int = 5,
    rng: np.random.Generator | None = None,
    heatmap: np.ndarray | None = None,
) -> dict[str, float]:
    """Does the map mean something? Drops of the explained label's probability when one square of
    side ``region`` × the crop is hidden (filled with the crop's mean colour, a different
    perturbation from the maps' blur) at the map's hottest place (``top``), its coldest
    (``least``) and ``n_random`` uniformly random places (``random``: their mean).

    The occluded crop is classified by the recogniser's own road (TTA views around the face box
    inside the explained crop). ``heatmap`` replaces ``ex.heatmap`` (e.g. a shuffled control).
    """
    rng = rng or np.random.default_rng(0)
    heat = ex.heatmap if heatmap is None else heatmap
    crop = ex.crop
    side = crop.shape[0]
    r = max(1, round(side * region))
    inner = round(side / view_scale(recognizer.classifier, recognizer.crop_margin))  # the face box in the crop
    o = (side - inner) // 2
    box = Box(o, o, inner, inner)
    labels = recognizer.labels
    k = labels.index(ex.label)
    mean_map = cv2.boxFilter(heat.astype(np.float32), -1, (r, r), normalize=True, anchor=(0, 0),
                             borderType=cv2.BORDER_CONSTANT)[: side - r + 1, : side - r + 1]
    places = [np.unravel_index(int(np.argmax(mean_map)), mean_map.shape),
              np.unravel_index(int(np.argmin(mean_map)), mean_map.shape)]
    places += [tuple(rng.integers(0, side - r + 1, 2)) for _ in range(n_random)]
    fill = crop.reshape(side, side, -1).mean(axis=(0, 1)).round().astype(np.uint8)
    probs = []
    for y, x in [(None, None), *places]:
        img = crop.copy()
        if y is not None:
            img[y : y + r, x : x + r] = fill
        probs.append(recognizer.classify_boxes(img, [box])[0].scores[labels[k]])
    base = probs[0]
    return {"base": base, "top": base - probs[1], "least": base - probs[2], "random": base - float(np.mean(probs[3:]))}
