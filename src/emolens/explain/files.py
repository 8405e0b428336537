"""Explain pictures into files: every face of each picture, its crop, overlay and panel PNGs written beside each
other, a picture's files all or none (what ``emolens explain`` does, as one call)::

    from emolens import EmotionRecognizer
    from emolens.explain import explain_files

    for picture in explain_files(EmotionRecognizer(), ["photos/"], out="maps"):
        print(picture.file, picture.error or [f["explanation"]["panel"] for f in picture.faces])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..imageio import ImageError, describe, expand_inputs, no_images_message, printable
from ..safefile import write_bytes
from .maps import Explanation, Method, check_method

if TYPE_CHECKING:  # a type only: the recogniser imports the maps, this module takes the recogniser it is given
    from ..recognizer import EmotionRecognizer


class ExplainError(ValueError):
    """Pictures that cannot be explained as asked (one line: a label the model does not have, an output that is a
    file, two inputs that would write the same files, no pictures at all)."""


class ExplainWriteError(OSError):
    """A picture's files could not be written to the output folder (a full disk, a folder that went away); the
    picture's files already written are removed again. ``str()`` is one line naming the folder."""


@dataclass
class ExplainedPicture:
    """One picture's explanations: ``faces`` are :meth:`emolens.Face.to_dict` objects with an ``explanation``
    (label, method and the ``crop``, ``overlay`` and ``panel`` files); ``error`` says why the picture was not
    explained (it could not be read, or its files are already there)."""

    file: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``emolens explain --json`` prints for the picture."""
        return {"file": self.file, "faces": self.faces, **({"error": self.error} if self.error else {})}


class Explaining:
    """The pictures :func:`explain_files` will explain: ``len()`` of them, each explained (and its files
    written) as the iteration reaches it."""

    def __init__(self, recognizer: EmotionRecognizer, paths: list[Path], out: Path, *, label: str | None,
                 method: Method, detect: bool, max_faces: int | None, force: bool) -> None:
        self.recognizer, self.paths, self.out = recognizer, paths, out
        self.label, self.method, self.detect, self.max_faces, self.force = label, method, detect, max_faces, force

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[ExplainedPicture]:
        for path in self.paths:
            yield self.explain_one(path)

    def explain_one(self, path: Path) -> ExplainedPicture:
        """Explain one picture and write its files."""
        name = describe(path)
        try:
            bgr = self.recognizer.load(path)
        except ImageError as e:
            return ExplainedPicture(name, error=str(e))
        explanations = self.recognizer.explain_bgr(bgr, label=self.label, detect=self.detect, method=self.method,
                                                   max_faces=self.max_faces)
        planned = output_files(explanations, path, self.out)
        try:
            write_files(planned, force=self.force)  # this picture's files: all or none
        except FileExistsError as e:
            return ExplainedPicture(name, error=f"{name}: {e}")
        except OSError as e:
            raise ExplainWriteError(f"--out {self.out}: cannot write ({e.strerror or e})") from e
        picture = ExplainedPicture(name)
        for i, ex in enumerate(explanations):
            crop, overlay, panel = (describe(p) for p, _ in planned[3 * i : 3 * i + 3])
            face = ex.face.to_dict()
            face["explanation"] = {"label": ex.label, "method": ex.method, "crop": crop, "overlay": overlay,
                                   "panel": panel}
            picture.faces.append(face)
        return picture


def check_label_of(labels: list[str], label: str | None) -> None:
    """:class:`ExplainError` naming the model's labels (printably) when ``label`` is not one of them."""
    if label is not None and label not in labels:
        raise ExplainError(f"--label {printable(label)}: not one of this model's labels "
                           f"({', '.join(map(printable, labels))})")


def explain_files(
    recognizer: EmotionRecognizer,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike = "explanations",
    *,
    label: str | None = None,
    method: Method = "occlusion",
    detect: bool = True,
    max_faces: int | None = None,
    force: bool = False,
    recursive: bool = False,
) -> Explaining:
    """Explain every face of the pictures in ``inputs`` (files and folders; ``recursive``: sub-folders too) with
    ``recognizer`` and write each face's PNGs into ``out`` (:func:`output_files` names them).

    Everything that can be checked is checked now (:class:`ExplainError`); the pictures are explained as the
    result is iterated, one :class:`ExplainedPicture` each, in order. ``label``: explain this emotion instead of
    each face's predicted one; ``method``: ``occlusion``, ``rise`` or a callable ``(crop, label) -> map`` such as
    :class:`emolens.training.gradcam.GradCAM`; ``max_faces``: only the largest faces; ``force``: replace files
    that are there (else such a picture gets an ``error`` and is left alone). A file that cannot be written
    raises :class:`ExplainWriteError` (an OSError)."""
    check_label_of(recognizer.labels, label)
    try:
        check_method(method)
    except ValueError as e:
        raise ExplainError(str(e)) from None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExplainError(f"--out {out}: exists and is not a folder")
    paths = expand_inputs(list(inputs), recursive=recursive)
    if not paths:
        raise ExplainError(no_images_message(list(inputs)))
    stems: dict[str, Path] = {}
    for path in paths:  # output names come from the file name: two inputs must not share one
        other = stems.setdefault(path.stem, path)
        if other != path:
            raise ExplainError(f"{describe(other)} and {describe(path)} have the same file name and would write the "
                               "same files; explain them apart (another --out)")
    return Explaining(recognizer, paths, out, label=label, method=method, detect=detect, max_faces=max_faces,
                      force=force)


def output_files(explanations: list[Explanation], source: str | os.PathLike, out_dir: str | os.PathLike
                 ) -> list[tuple[Path, np.ndarray]]:
    """What ``emolens explain`` writes for one image, as (path, BGR image) pairs, per face i (1 = largest):
    ``<stem>-face<i>-crop.png`` (the crop the model saw), ``<stem>-face<i>-<label>-<method>.png``
    (the overlay) and ``<stem>-face<i>-<label>-<method>-panel.png`` (crop | overlay | top-3)."""
    stem = Path(str(source)).stem or "image"
    out = []
    for i, ex in enumerate(explanations, 1):
        base = Path(out_dir) / f"{stem}-face{i}"
        out += [
            (base.with_name(f"{base.name}-crop.png"), ex.crop),
            (base.with_name(f"{base.name}-{ex.label}-{ex.method}.png"), ex.overlay()),
            (base.with_name(f"{base.name}-{ex.label}-{ex.method}-panel.png"), ex.panel()),
        ]
    return out


def write_files(files: list[tuple[Path, np.ndarray]], *, force: bool = False) -> list[Path]:
    """Write PNGs, all or nothing checked first: FileExistsError for a path that exists with other
    content (unless ``force``) or that two outputs share (two inputs with the same name).

    A file that already holds exactly the PNG to be written is left as it is (not a conflict): e.g.
    the crop, which does not depend on ``--label`` or ``--method``, when a face is explained again
    into the same folder. Returns the paths written (those left alone are not in it). Each file is written through
    :mod:`emolens.safefile` (a unique temporary file, then moved into place; without ``force`` never over a file
    that appeared meanwhile), and when one cannot be written (a full disk) those of this picture already written
    are removed again (without ``force``: they were new)."""
    seen: set[Path] = set()
    encoded: list[tuple[Path, bytes]] = []
    for path, image in files:
        if path in seen:
            raise FileExistsError(f"{path}: two inputs would write this file (same file name); explain them apart")
        seen.add(path)
        ok, buf = cv2.imencode(".png", image)
        if not ok:
            raise OSError(f"{path}: could not encode the image")
        data = buf.tobytes()
        if not force and (path.exists() or path.is_symlink()):
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                continue  # the same image is already there
            raise FileExistsError(f"{path} already exists; pass --force to replace it, or give another --out")
        encoded.append((path, data))
    written = []
    for folder in {path.parent for path, _ in encoded}:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        for path, data in encoded:  # each complete or absent (emolens.safefile); never over a file without force
            write_bytes(path, data, replace=force)
            written.append(path)
    except BaseException:
        for path in written:  # this picture's files: all or none
            if not force:
                path.unlink(missing_ok=True)
        raise
    return written
