"""The output files of a video run (annotated video, CSV, plot): checked, and their folders made, before
the first frame is read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .results import VideoError
from .sources import VideoInput

VIDEO_SUFFIXES: dict[str, str] = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}
"""Annotated-video file types and the codec written for each (all in every OpenCV wheel)."""

PLOT_SUFFIXES = (".png", ".jpg", ".jpeg")


def _fourcc_for(path: Path) -> str:
    try:
        return VIDEO_SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise VideoError(f"{path}: unsupported video file type; use one of {', '.join(VIDEO_SUFFIXES)}") from None


def check_outputs(
    source: VideoInput,
    *,
    out: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
    force: bool = False,
) -> None:
    """Refuse outputs that exist (unless ``force``), that are the input, that coincide, have a wrong
    type, or cannot be written (their folder is a file, or is not writable). Creates nothing: the
    missing folders are made by :func:`prepare_outputs` once the input has been opened.

    Raises:
        VideoError: with a message naming the output and what to do.
    """
    outs = [(opt, Path(p)) for opt, p in (("--out", out), ("--csv", csv_path), ("--plot", plot)) if p is not None]
    if out is not None:
        _fourcc_for(Path(out))
    if plot is not None and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise VideoError(f"{plot}: the plot is an image; give a name ending in {', '.join(PLOT_SUFFIXES)}")
    src = Path(source) if isinstance(source, (str, os.PathLike)) else None
    seen: dict[Path, str] = {}
    for opt, p in outs:
        r = p.resolve()
        if src is not None and (r == src.resolve() or (p.exists() and src.exists() and os.path.samefile(p, src))):
            raise VideoError(f"{opt} {p}: that is the input video; choose another output name")
        if r in seen:
            raise VideoError(f"{opt} {p}: same file as {seen[r]}; give each output its own name")
        seen[r] = opt
        if p.is_dir():
            raise VideoError(f"{opt} {p}: is a directory; give a file name")
        if p.exists() and not force:
            raise VideoError(f"{opt} {p}: already exists; pass --force to replace it, or choose another name")
        _check_writable(opt, p)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (as anything: a file too)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(opt: str, path: Path) -> None:
    """A clear error unless a file can be created at ``path`` (its folder exists or can be made)."""
    parent = path.parent
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise VideoError(f"{opt} {path}: cannot create it: {base} is a file, not a folder")
    try:  # what counts is whether a file can really be made there (read-only mounts, /proc, ACLs ...)
        fd, probe = tempfile.mkstemp(prefix=".emolens-", suffix=".tmp", dir=base)
    except OSError as e:
        where = "its folder" if base == Path(os.path.abspath(parent)) else "the folder"
        raise VideoError(f"{opt} {path}: cannot write in {where} {base} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


def prepare_outputs(
    *,
    out: str | os.PathLike | None = None,
    csv_path: str | os.PathLike | None = None,
    plot: str | os.PathLike | None = None,
) -> None:
    """Create the outputs' missing folders (after :func:`check_outputs`, before any work is done).

    Raises:
        VideoError: a folder cannot be created.
    """
    for opt, p in (("--out", out), ("--csv", csv_path), ("--plot", plot)):
        if p is None:
            continue
        parent = Path(p).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VideoError(f"{opt} {p}: cannot create the folder {parent} ({e.strerror or e})") from None
