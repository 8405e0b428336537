"""Dataset sources, decoded once into in-memory arrays.

:func:`open_source` recognises three layouts and gives each the same interface
(:class:`DataSource`: ``splits``, ``default_splits()``, ``load(split, ...)``, ``write_manifest(run_dir)``):

``csv``            FER2013's ``fer2013.csv`` (columns ``emotion,pixels,Usage``): ``Usage`` gives the
                   splits, exposed as ``Training``→``train``, ``PublicTest``→``val``, ``PrivateTest``→``test``.
                   ``emotion`` is FER2013's index (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
                   6 neutral) or a class name. Without a ``Usage`` column the rows are split like flat folders.
``split-folders``  ``<root>/<split>/<class>/*`` (Kaggle ``train``/``test``, or ``train``/``val``/``test``;
                   ``validation``/``valid`` → ``val``, ``training`` → ``train``, ``testing`` → ``test``).
``class-folders``  ``<root>/<class>/*``: a stratified, seeded train/val/test split (default 70/15/15),
                   written to the run folder (``data_split.json``) by :meth:`DataSource.write_manifest`;
                   ``open_source(run_folder)`` reads it back, so evaluation uses the very same split.

Images are decoded with :mod:`emolens.imageio` (the same code inference uses), converted to the
requested channels and size and kept as one uint8 array: nothing is decoded again per epoch.
Large image-file sets are also cached on disk (``~/.cache/emolens/datasets``, or
``$EMOLENS_CACHE_DIR``), keyed by the file list, their sizes and modification times, and the
requested size/channels. Unreadable files (and bad CSV rows) are skipped, counted and listed.
Class names go through :func:`emolens.labels.normalise_label`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..imageio import IMAGE_SUFFIXES, ImageError, load_image
from ..labels import FER2013_CSV_ORDER, normalise_label

MANIFEST_NAME = "data_split.json"
CACHE_MIN_FILES = 1000  # smaller sets decode in a second or two: not worth a cache file
CACHE_MAX_BYTES = 2_000_000_000  # bigger arrays (e.g. FER2013 at 224 px RGB: 4.3 GB) are not written to disk

SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val", "dev": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}
"""Folder / ``Usage`` names (lower-cased) -> the split names emolens exposes."""

Log = Callable[[str], None]


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


# ----------------------------------------------------------------------------- helpers
def prepare(img: np.ndarray, size: int, channels: int) -> np.ndarray:
    """BGR (or gray H×W) image -> uint8 size×size×channels (gray or RGB), resized with area interpolation."""
    if img.ndim == 2 or img.shape[2] == 1:
        gray = img.reshape(img.shape[0], img.shape[1])
        out = gray if channels == 1 else cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    else:
        out = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if channels == 1 else cv2.COLOR_BGR2RGB)
    if out.shape[0] != size or out.shape[1] != size:
        interp = cv2.INTER_AREA if out.shape[0] > size else cv2.INTER_LINEAR
        out = cv2.resize(out, (size, size), interpolation=interp)
    return out.reshape(size, size, channels)


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (sub-folders included), sorted; hidden files left out."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_class_folders(split_dir: Path) -> list[tuple[str, Path]]:
    """(normalised class name, folder) pairs of a folder with one sub-folder per class, sorted by name."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir}: no such folder")
    pairs = [(normalise_label(d.name), d) for d in _subdirs(split_dir)]
    if not pairs:
        raise ValueError(f"{split_dir}: expected one sub-folder per class, found none")
    names = [n for n, _ in pairs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        folders = [d.name for n, d in pairs if n in dupes]
        raise ValueError(f"{split_dir}: folders {folders} all mean the class(es) {dupes}; merge or rename them")
    return sorted(pairs)


def _print_log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _fix_classes(found: Sequence[str], classes: Sequence[str] | None, where: str) -> list[str]:
    if classes is None:
        return sorted(set(found))
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"{where}: classes {unknown} are not in the model's label set {list(classes)}")
    return list(classes)


def _stratified_split(labels: list[str], fractions: Sequence[float], seed: int, where: str) -> list[np.ndarray]:
    """Indices of train/val/test, stratified by label, reproducible from ``seed``."""
    from sklearn.model_selection import train_test_split

    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split fractions must be three numbers (train, val, test), train > 0: {list(fractions)}")
    total = float(sum(fractions))
    f_train, f_val, f_test = (f / total for f in fractions)
    idx = np.arange(len(labels))
    y = np.array(labels)
    counts = {c: int((y == c).sum()) for c in sorted(set(labels))}
    need = 1 + (f_val > 0) + (f_test > 0)
    small = {c: n for c, n in counts.items() if n < need}
    if small:
        raise ValueError(f"{where}: too few images to split {small} (each class needs at least {need})")
    try:
        rest, test = (idx, idx[:0]) if f_test == 0 else train_test_split(
            idx, test_size=f_test, stratify=y, random_state=seed)
        if f_val == 0:
            train, val = rest, idx[:0]
        else:
            train, val = train_test_split(rest, test_size=f_val / (f_train + f_val), stratify=y[rest],
                                          random_state=seed)
    except ValueError as e:  # sklearn: a split too small to hold every class
        raise ValueError(f"{where}: cannot make a stratified {list(fractions)} split of {counts}: {e}") from None
    return [np.sort(train), np.sort(val), np.sort(test)]


# ----------------------------------------------------------------------------- decoding + cache
def _cache_dir() -> Path:
    return Path(os.environ.get("EMOLENS_CACHE_DIR") or Path.home() / ".cache" / "emolens") / "datasets"


def _cache_key(items: list[tuple[str, int]], size: int, channels: int) -> str | None:
    h = hashlib.sha1(f"v1 {size} {channels}\n".encode())
    for path, label in items:
        try:
            st = os.stat(path)
        except OSError:
            return None
        h.update(f"{path}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def decode_files(
    items: list[tuple[str, int]], *, size: int, channels: int, cache: bool = True, workers: int = 4
) -> tuple[np.ndarray, np.ndarray, list[str], list[tuple[str, str]]]:
    """Decode (file, label) pairs: (images, labels, kept files, skipped (file, reason)).

    Uses the on-disk cache for sets of at least ``CACHE_MIN_FILES`` files whose arrays take at most
    ``CACHE_MAX_BYTES`` (``cache=False`` turns it off)."""
    key = _cache_key(items, size, channels) if cache and len(items) >= CACHE_MIN_FILES else None
    cfile = _cache_dir() / f"{key}.npz" if key else None
    if cfile is not None and cfile.is_file():
        try:
            with np.load(cfile, allow_pickle=False) as z:
                skipped = [tuple(s.split("\t", 1)) for s in z["skipped"].tolist()]
                return z["images"], z["labels"], z["files"].tolist(), skipped  # type: ignore[return-value]
        except (OSError, ValueError, KeyError):
            pass  # a broken cache file is rebuilt below

    def read(item: tuple[str, int]) -> np.ndarray | str:
        try:
            return prepare(load_image(item[0]), size, channels)
        except ImageError as e:
            return str(e)

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(read, items))
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    skipped = [(items[i][0], str(d)) for i, d in enumerate(decoded) if isinstance(d, str)]
    images = (np.stack([decoded[i] for i in keep]) if keep
              else np.zeros((0, size, size, channels), dtype=np.uint8))
    labels = np.array([items[i][1] for i in keep], dtype=np.int64)
    files = [items[i][0] for i in keep]
    if cfile is not None and keep and images.nbytes <= CACHE_MAX_BYTES:
        try:
            cfile.parent.mkdir(parents=True, exist_ok=True)
            tmp = cfile.with_name(cfile.stem + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, images=images, labels=labels, files=np.array(files),
                     skipped=np.array([f"{f}\t{r}" for f, r in skipped], dtype=str))
            tmp.replace(cfile)
        except OSError:
            pass  # a read-only home: no cache, no harm
    return images, labels, files, skipped


# ----------------------------------------------------------------------------- sources
@dataclass
class DataSource:
    """A dataset on disk: its layout (``kind``), its split names, and how to load each split."""

    path: Path
    kind: str  # "csv" | "split-folders" | "class-folders"
    splits: list[str]
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    # image files (folders) or CSV row numbers, with their normalised class name, per split
    items: dict[str, list[tuple[str | int, str]]] = field(default_factory=dict)
    bad_rows: list[tuple[str, str]] = field(default_factory=list)  # CSV rows rejected while scanning
    from_manifest: bool = False
    _bad_reported: bool = False

    def default_splits(self) -> tuple[str, str]:
        """(train split, val split) to use when none is given: ``val`` if there is one, else ``test``
        (Kaggle's train/test layout validates on test, as the notebooks built on it do)."""
        train = "train" if "train" in self.splits else self.splits[0]
        for v in ("val", "test"):
            if v in self.splits and v != train:
                return train, v
        raise ValueError(f"{self.path}: needs a validation split besides {train!r}; found only {self.splits}")

    def classes(self, split: str | None = None) -> list[str]:
        """Sorted class names of one split (or of all splits)."""
        names = {c for s in ([split] if split else self.splits) for _, c in self._items_of(s)}
        return sorted(names)

    def _items_of(self, split: str) -> list[tuple[str | int, str]]:
        key = SPLIT_ALIASES.get(split.lower(), split)
        if key not in self.items:
            raise ValueError(f"{self.path}: no split {split!r}; this {self.kind} dataset has {self.splits}")
        return self.items[key]

    def load(
        self,
        split: str,
        *,
        size: int,
        channels: int,
        classes: Sequence[str] | None = None,
        limit_per_class: int | None = None,
        log: Log | None = None,
        cache: bool = True,
        skip_classes: Sequence[str] = (),
    ) -> ArrayDataset:
        """Decode one split into an :class:`ArrayDataset` (uint8 N×size×size×channels, gray or RGB).

        ``classes`` fixes the class order (e.g. the model's labels) so that label indices agree
        across splits; a class absent from this split simply has no samples. ``limit_per_class``
        keeps the first N items of each class (quick runs). Skipped files/rows go to ``log``.
        Items of ``skip_classes`` are left out (evaluating a model on data with classes it lacks)."""
        log = log or _print_log
        entries = self._items_of(split)
        if skip_classes:
            dropped = sum(c in skip_classes for _, c in entries)
            entries = [(r, c) for r, c in entries if c not in skip_classes]
            log(f"{self.path} [{split}]: left out {dropped} item(s) of class(es) {sorted(skip_classes)}")
        if self.bad_rows and not self._bad_reported:
            self._bad_reported = True
            for _, why in self.bad_rows:
                log(f"skipped: {why}")
            log(f"{self.path}: {len(self.bad_rows)} row(s) skipped (bad emotion or Usage)")
        where = f"{self.path} [{split}]"
        classes = _fix_classes([c for _, c in entries], classes, where)
        index = {c: i for i, c in enumerate(classes)}
        taken: dict[str, int] = {}
        chosen: list[tuple[str | int, int]] = []
        for ref, cls in entries:
            if limit_per_class is not None:
                if taken.get(cls, 0) >= limit_per_class:
                    continue
                taken[cls] = taken.get(cls, 0) + 1
            chosen.append((ref, index[cls]))
        if not chosen:
            raise ValueError(f"{where}: no images")
        if self.kind == "csv":
            images, labels, files, skipped = self._decode_rows(chosen, size, channels)
        else:
            images, labels, files, skipped = decode_files(
                [(str(r), y) for r, y in chosen], size=size, channels=channels, cache=cache)
        for f, why in skipped:
            log(f"skipped ({split}): {why}" if f in why else f"skipped ({split}): {f}: {why}")
        if skipped:
            log(f"{split}: {len(skipped)} of {len(chosen)} items could not be read and were skipped")
        if not len(labels):
            raise ValueError(f"{where}: none of the {len(chosen)} images could be read")
        return ArrayDataset(images, labels, classes, files, skipped)

    def _decode_rows(self, chosen: list[tuple[str | int, int]], size: int, channels: int):
        want = {int(r): y for r, y in chosen}
        images, labels, files, skipped = [], [], [], []
        for rowno, row in _csv_rows(self.path):
            if rowno not in want:
                continue
            name = f"{self.path.name}:{rowno}"
            pix = row.get("pixels", "")
            try:
                arr = np.array(pix.split(), dtype=np.int64)
            except ValueError:
                skipped.append((name, f"{name}: pixels are not whole numbers"))
                continue
            side = int(round(np.sqrt(arr.size)))
            if arr.size == 0 or side * side != arr.size or arr.min() < 0 or arr.max() > 255:
                skipped.append((name, f"{name}: pixels must be a square number of values 0-255, got {arr.size}"))
                continue
            images.append(prepare(arr.astype(np.uint8).reshape(side, side), size, channels))
            labels.append(want[rowno])
            files.append(name)
        empty = np.zeros((0, size, size, channels), dtype=np.uint8)
        return (np.stack(images) if images else empty), np.array(labels, dtype=np.int64), files, skipped

    def peek_size(self, split: str) -> int | None:
        """Side of the first readable item of ``split`` (datasets like FER2013 share one size)."""
        entries = self._items_of(split)
        if self.kind == "csv":
            for rowno, row in _csv_rows(self.path):
                n = len(row.get("pixels", "").split())
                side = int(round(np.sqrt(n)))
                if n and side * side == n:
                    return side
                if rowno > 100:
                    return None
            return None
        for ref, _ in entries[:20]:
            img = cv2.imread(str(ref), cv2.IMREAD_GRAYSCALE)
            if img is not None:
                return max(img.shape)
        return None

    def write_manifest(self, run_dir: str | os.PathLike) -> Path:
        """Write ``data_split.json`` into ``run_dir``: the source, and for seeded splits (flat class
        folders, CSV without ``Usage``) every split's items, so evaluation and re-runs use the same split."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        doc: dict = {"format": 1, "kind": self.kind, "path": str(self.path.resolve()), "splits": self.splits}
        if self.kind == "class-folders" or (self.kind == "csv" and self.seed_split):
            doc.update(seed=self.seed, fractions=list(self.fractions), items={
                s: [[_rel(r, self.path), c] for r, c in self.items[s]] for s in self.splits})
        path = run_dir / MANIFEST_NAME
        path.write_text(json.dumps(doc, indent=1))
        return path

    @property
    def seed_split(self) -> bool:
        """True when the splits were drawn here (seeded), not given by the data."""
        return self.kind == "class-folders" or (self.kind == "csv" and "usage" not in _csv_header(self.path))


def _rel(ref: str | int, root: Path) -> str | int:
    if isinstance(ref, int):
        return ref
    try:
        return str(Path(ref).relative_to(root))
    except ValueError:
        return str(ref)


def open_source(
    path: str | os.PathLike, *, split_seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> DataSource:
    """Open a dataset: a FER2013-style CSV, ``<root>/<split>/<class>/*`` folders, flat
    ``<root>/<class>/*`` folders (seeded stratified split), or a run folder / ``data_split.json``
    written by :meth:`DataSource.write_manifest` (the same split as at training time).

    Raises ``FileNotFoundError`` for a missing path and ``ValueError`` (with a message that says
    what was found) for anything that is not a usable dataset."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    fractions = tuple(float(f) for f in fractions)
    if p.is_file() and p.name == MANIFEST_NAME or p.is_dir() and (p / MANIFEST_NAME).is_file():
        return _from_manifest(p if p.is_file() else p / MANIFEST_NAME)
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".txt"):
            raise ValueError(f"{p}: not a dataset (give a CSV file with emotion,pixels[,Usage] columns or a folder)")
        return _open_csv(p, split_seed, fractions)
    subdirs = _subdirs(p)
    if not subdirs:
        raise ValueError(f"{p}: empty dataset folder (expected <class>/ or <split>/<class>/ sub-folders)")
    split_dirs = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    if split_dirs and any(_subdirs(d) for d in split_dirs.values()):
        items: dict[str, list[tuple[str | int, str]]] = {}
        for split, d in split_dirs.items():
            if not _subdirs(d):
                continue
            items[split] = [(str(f), c) for c, folder in list_class_folders(d) for f in _image_files(folder)]
        empty = [s for s, v in items.items() if not v]
        if empty:
            raise ValueError(f"{p}: split folder(s) {empty} hold no image files")
        order = [s for s in ("train", "val", "test") if s in items]
        return DataSource(p, "split-folders", order, split_seed, fractions, items)
    if split_dirs and len(split_dirs) == len(subdirs):
        raise ValueError(f"{p}: split folders {[d.name for d in subdirs]} need one sub-folder per class "
                         f"(<split>/<class>/*), found images or nothing directly inside")
    # flat class folders
    classes = list_class_folders(p)
    per_class = [(name, _image_files(d)) for name, d in classes]
    empty = [d.name for (name, d), (_, files) in zip(classes, per_class) if not files]
    if empty:
        raise ValueError(f"{p}: class folder(s) {empty} hold no image files")
    refs = [(str(f), name) for name, files in per_class for f in files]
    return _seeded(p, "class-folders", refs, split_seed, fractions)


def _seeded(p: Path, kind: str, refs: list[tuple[str | int, str]], seed: int, fractions) -> DataSource:
    parts = _stratified_split([c for _, c in refs], fractions, seed, str(p))
    items = {s: [refs[i] for i in idx] for s, idx in zip(("train", "val", "test"), parts) if len(idx)}
    return DataSource(p, kind, list(items), seed, fractions, items)


def _from_manifest(mpath: Path) -> DataSource:
    try:
        doc = json.loads(mpath.read_text())
        kind, root = doc["kind"], Path(doc["path"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{mpath}: not a readable {MANIFEST_NAME} ({e})") from None
    if not root.exists():
        raise FileNotFoundError(f"{mpath}: the dataset it was made from, {root}, is gone")
    if "items" not in doc:  # the data's own splits: just open it again
        return open_source(root)
    items = {s: [(v if isinstance(v, int) else str(root / v), c) for v, c in lst] for s, lst in doc["items"].items()}
    src = DataSource(root, kind, list(items), int(doc.get("seed", 0)), tuple(doc.get("fractions", (0.7, 0.15, 0.15))),
                     items, from_manifest=True)
    return src


# ----------------------------------------------------------------------------- CSV
def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        return [h.strip().lower() for h in next(csv.reader(f), [])]


def _csv_rows(path: Path):
    """(row number, {lower-cased column: value}) for each data row; row 1 is the first after the header."""
    csv.field_size_limit(1 << 26)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        for rowno, row in enumerate(reader, start=1):
            yield rowno, dict(zip(header, row))


def _csv_label(value: str) -> str | None:
    v = value.strip()
    if not v:
        return None
    if v.lstrip("-").isdigit():
        k = int(v)
        return FER2013_CSV_ORDER[k] if 0 <= k < len(FER2013_CSV_ORDER) else None
    return normalise_label(v)


def _open_csv(p: Path, seed: int, fractions) -> DataSource:
    header = _csv_header(p)
    missing = [c for c in ("emotion", "pixels") if c not in header]
    if missing:
        raise ValueError(f"{p}: CSV needs columns emotion,pixels[,Usage]; missing {missing}, found {header}")
    refs: list[tuple[str | int, str]] = []
    usage: list[str] = []
    bad: list[tuple[str, str]] = []
    has_usage = "usage" in header
    for rowno, row in _csv_rows(p):
        label = _csv_label(row.get("emotion", ""))
        name = f"{p.name}:{rowno}"
        if label is None:
            bad.append((name, f"{name}: emotion {row.get('emotion', '')!r} is not 0-6 or a class name"))
            continue
        split = "train"
        if has_usage:
            u = row.get("usage", "").strip().lower()
            if u not in SPLIT_ALIASES:
                bad.append((name, f"{name}: Usage {row.get('usage', '')!r} is not Training/PublicTest/PrivateTest"))
                continue
            split = SPLIT_ALIASES[u]
        refs.append((rowno, label))
        usage.append(split)
    if not refs:
        raise ValueError(f"{p}: no usable rows")
    if not has_usage:
        src = _seeded(p, "csv", refs, seed, fractions)
    else:
        items: dict[str, list[tuple[str | int, str]]] = {}
        for ref, split in zip(refs, usage):
            items.setdefault(split, []).append(ref)
        src = DataSource(p, "csv", [s for s in ("train", "val", "test") if s in items], seed, fractions, items)
    src.bad_rows = bad
    return src


# ----------------------------------------------------------------------------- the foundation's entry point
def load_folder_split(
    root: str | os.PathLike,
    split: str,
    *,
    size: int = 48,
    channels: int = 1,
    classes: list[str] | None = None,
    limit_per_class: int | None = None,
    log: Log | None = None,
) -> ArrayDataset:
    """Load ``<root>/<split>/<class>/*`` into memory (kept for existing callers: ``open_source(root).load(split)``)."""
    return open_source(root).load(split, size=size, channels=channels, classes=classes,
                                  limit_per_class=limit_per_class, log=log or (lambda _m: None))
