"""Writing output files: never over a file that was there, never a partial file, never through a link.

Every file emolens writes (annotated copies, explanation PNGs, the video's CSV, plot and annotated copy, reports,
models, batch tables) goes through here:

- The content is written to a fresh temporary file in the target's folder, created exclusively (``O_EXCL``: a
  name that exists, even as a dangling symbolic link, is never opened) under a random hidden name
  (``.NAME.<random>.tmp``).
- Only when it is complete is it moved to its name, atomically. By default the name must be free: the file is
  linked there (``link`` fails if anything, a file or a symbolic link, took the name meanwhile), so nothing is
  overwritten. With ``replace=True`` (``--force``) it is renamed over the name: a file there is replaced, and a
  symbolic link there is replaced itself, never the file it points to.
- On any failure (a full disk, a folder that cannot be written, Ctrl-C) the temporary file is removed: the
  target is either complete or untouched.

:func:`write_unique` reserves ``name``, ``name-1``, ``name-2`` ... atomically, so writers running at the same time
never take the same name. :func:`staged` writes several files all or nothing (an evaluation report).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
MAX_NUMBERED = 100_000
"""Most numbered siblings :func:`write_unique` tries (``name-1`` ... ``name-99999``)."""


def new_temp(target: Path) -> tuple[int, Path]:
    """A new, empty file beside ``target`` under a random hidden name, opened for writing (its descriptor)."""
    name = target.name
    for _ in range(100):
        tmp = target.with_name(f".{name}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"{target.parent}: no free temporary name")  # pragma: no cover


def make_temp_dir(folder: str | os.PathLike, prefix: str) -> Path:
    """A new, empty folder inside ``folder`` under a random hidden name ``PREFIX<random>.tmp``, created exclusively
    (with the usual permissions, unlike :func:`tempfile.mkdtemp`'s private ones: it may be renamed into place)."""
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{folder}: no free temporary name")  # pragma: no cover


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def commit(tmp: Path, target: Path, *, replace: bool = False) -> None:
    """Move the complete file ``tmp`` to ``target`` (same folder), atomically.

    Without ``replace`` the name must be free (``FileExistsError`` otherwise, and ``tmp`` stays for the caller
    to remove); with it, whatever has the name is replaced (a symbolic link itself, not what it points to).
    """
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(f"{target} already exists") from None
    except OSError as e:  # a file system without hard links (FAT, some network mounts): reserve the name first
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o666)
        except FileExistsError:
            raise FileExistsError(f"{target} already exists") from None
        os.close(fd)
        os.replace(tmp, target)  # over the empty file just made: nothing of anyone else's
        return
    _remove(tmp)


@contextmanager
def atomic_file(target: str | os.PathLike, *, replace: bool = False, text: bool = False,
                newline: str | None = None) -> Iterator[IO]:
    """A file object on a new temporary file beside ``target``; when the block ends without an error it becomes
    ``target`` (see the module docstring), otherwise it is removed.

    Raises ``FileExistsError`` when ``target`` exists and ``replace`` is false (checked first, and again when
    the file is moved into place), and ``OSError`` for what the disk says (``ENOSPC`` ...).
    """
    target = Path(target)
    if not replace and os.path.lexists(target):
        raise FileExistsError(f"{target} already exists")
    fd, tmp = new_temp(target)
    try:
        f = os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None, newline=newline)
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    try:
        with f:
            yield f
        commit(tmp, target, replace=replace)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(target: str | os.PathLike, data: bytes, *, replace: bool = False) -> Path:
    """``data`` as the file ``target``, all or nothing (see :func:`atomic_file`)."""
    with atomic_file(target, replace=replace) as f:
        f.write(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str, *, replace: bool = False) -> Path:
    """``text`` (UTF-8) as the file ``target``, all or nothing."""
    return write_bytes(target, text.encode("utf-8"), replace=replace)


def numbered(path: Path, i: int) -> Path:
    """``name.ext`` for 0, ``name-1.ext``, ``name-2.ext`` ... for the others."""
    return path if i == 0 else path.with_name(f"{path.stem}-{i}{path.suffix}")


def write_unique(target: str | os.PathLike, data: bytes) -> Path:
    """``data`` under ``target``'s name, or the first of ``name-1.ext``, ``name-2.ext`` ... that is free when the file
    is moved into place (each name is taken atomically: two writers at once never get the same one). Returns the
    path written."""
    target = Path(target)
    fd, tmp = new_temp(target)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        for i in range(MAX_NUMBERED):
            cand = numbered(target, i)
            if os.path.lexists(cand):
                continue
            try:
                commit(tmp, cand)
            except FileExistsError:  # taken between the look and the link
                continue
            return cand
        raise FileExistsError(f"{target}: too many files with this name")
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def temp_path(target: str | os.PathLike) -> Iterator[Path]:
    """A new, empty temporary file beside ``target`` with the same extension, for writers that need a path
    (OpenCV's VideoWriter); removed when the block ends unless it was committed (:func:`commit`) to a name."""
    fd, tmp = new_temp(Path(target))
    os.close(fd)
    try:
        yield tmp
    finally:
        _remove(tmp)


@contextmanager
def staged(folder: str | os.PathLike, *, replace: bool = False) -> Iterator[Callable[[str], Path]]:
    """Write several files into ``folder`` all or nothing: ``path = stage(name)`` gives where to write ``name``
    (a private temporary folder inside ``folder``); when the block ends without an error every staged file is
    moved to ``folder/name`` (without ``replace``: only where the name is free, else ``FileExistsError`` and the
    files already moved are taken back); on an error none is, and the temporary folder is removed."""
    folder = Path(folder)
    stage_dir = make_temp_dir(folder, ".emolens-")
    names: list[str] = []

    def stage(name: str) -> Path:
        names.append(name)
        return stage_dir / name

    try:
        yield stage
        commit_all([(stage_dir / name, folder / name) for name in names], replace=replace)
    finally:
        shutil.rmtree(stage_dir, ignore_errors=True)


def commit_all(pairs: list[tuple[Path, Path]], *, replace: bool = False) -> None:
    """:func:`commit` each ``(temporary file, target)``; without ``replace``, when one name is taken the files
    moved so far (new ones, ours) are taken back, so the outputs appear together or not at all."""
    done: list[Path] = []
    try:
        for tmp, target in pairs:
            commit(tmp, target, replace=replace)
            done.append(target)
    except BaseException:
        if not replace:
            for p in done:
                _remove(p)
        raise
