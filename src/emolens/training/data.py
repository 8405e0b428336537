"""Datasets as in-memory arrays: ``<root>/<split>/<class>/*`` folders decoded once.

Images are decoded with :mod:`emolens.imageio` (the same code inference uses),
converted to the model's channels and size, and kept as one uint8 array.
Unreadable files are skipped and listed, never fatal.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..imageio import IMAGE_SUFFIXES, ImageError, load_image
from ..labels import normalise_label


@dataclass
class ArrayDataset:
    """Images as uint8 N×H×W×C, integer labels, class names and the files they came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}


def list_class_folders(split_dir: Path) -> list[tuple[str, Path]]:
    """(normalised class name, folder) pairs of a split folder, sorted by class name."""
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: no such folder")
    pairs = [(normalise_label(d.name), d) for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
    if not pairs:
        raise ValueError(f"{split_dir}: expected one sub-folder per class, found none")
    names = [n for n, _ in pairs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"{split_dir}: several folders map to the same class {sorted(dupes)}")
    return sorted(pairs)


def prepare(img_bgr: np.ndarray, size: int, channels: int) -> np.ndarray:
    """BGR image -> uint8 size×size×channels (gray or RGB), resized with area interpolation."""
    if channels == 1:
        out = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2GRAY)
    else:
        out = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    if out.shape[0] != size or out.shape[1] != size:
        interp = cv2.INTER_AREA if out.shape[0] > size else cv2.INTER_LINEAR
        out = cv2.resize(out, (size, size), interpolation=interp)
    return out.reshape(size, size, channels)


def load_folder_split(
    root: str | os.PathLike,
    split: str,
    *,
    size: int = 48,
    channels: int = 1,
    classes: list[str] | None = None,
    limit_per_class: int | None = None,
    workers: int = 4,
) -> ArrayDataset:
    """Load ``<root>/<split>/<class>/*`` into memory.

    ``classes`` fixes the class order (e.g. the training split's) so that label indices
    agree across splits; a class folder missing from this split simply has no samples.
    ``limit_per_class`` takes the first N files of each class (sorted by name) for quick runs.
    """
    split_dir = Path(root) / split
    found = dict(list_class_folders(split_dir))
    if classes is None:
        classes = sorted(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{split_dir}: classes {unknown} are not in the model's label set {classes}")
    items: list[tuple[Path, int]] = []
    for idx, name in enumerate(classes):
        if name not in found:
            continue
        files = sorted(p for p in found[name].iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if limit_per_class is not None:
            files = files[:limit_per_class]
        items += [(p, idx) for p in files]
    if not items:
        raise ValueError(f"{split_dir}: no image files found")

    def read(item: tuple[Path, int]) -> np.ndarray | str:
        try:
            return prepare(load_image(item[0]), size, channels)
        except ImageError as e:
            return str(e)

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(read, items))
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    skipped = [(str(items[i][0]), str(d)) for i, d in enumerate(decoded) if isinstance(d, str)]
    if not keep:
        raise ValueError(f"{split_dir}: none of the {len(items)} image files could be read")
    images = np.stack([decoded[i] for i in keep])
    labels = np.array([items[i][1] for i in keep], dtype=np.int64)
    return ArrayDataset(images, labels, list(classes), [str(items[i][0]) for i in keep], skipped)
