"""Keeping the decoders' own noise off the user's screen.

The C libraries under OpenCV write straight to the process's standard error (file descriptor 2):
libpng (``libpng error: IDAT: CRC error``), libjpeg (``Corrupt JPEG data: 2197 extraneous bytes before
marker 0xd9``), OpenCV's log (``[ERROR:0@2.8] global loadsave.cpp ... imencode``) and FFmpeg
(``[mpeg4 @ 0x55d0] ac-tex damaged``), and Ray's C++ core under ``emolens batch`` (``[2026-12-04 14:15:44,872 E
14145 14145] core_worker.cc:2465: Actor with class name ...``). emolens reports every such failure itself, as one
line that names the file, so these lines only repeat it in a form the user cannot act on.

- :func:`quiet_opencv` turns OpenCV's log off inside a block (any process, threads included).
- :func:`filtered_stderr` is for programs (the ``emolens`` command uses it): descriptor 2 goes through a
  pipe whose reader drops the decoders' lines (:data:`NOISE`) and passes everything else on, in order.
  Python's ``sys.stderr`` keeps writing to the terminal directly, so emolens' own messages and progress
  line are not delayed and ``isatty()`` still tells a terminal. A library should leave its host's
  descriptors alone, so importing emolens changes nothing.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

NOISE = re.compile(
    rb"^(?:libpng (?:error|warning)"  # libpng's default handlers (OpenCV keeps them)
    rb"|Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters for sequential JPEG"  # libjpeg warnings
    rb"|Inconsistent progression sequence|Warning: unknown JFIF revision|Unknown Adobe color transform"
    rb"|Application transferred too many scanlines"
    rb"|\[ ?(?:WARN|ERROR|INFO|DEBUG|FATAL|VERBOSE)(?::\d+)?(?:@[\d.]+)?\]"  # OpenCV's log: [ WARN:0@1.2] ...
    rb"|\[[\w,./ -]+ @ (?:0x)?[0-9a-fA-F]+\] "  # FFmpeg: [mpeg4 @ 0x55d0...] ...
    rb"|\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] \w+\.(?:cc|h):\d+: )"  # Ray's C++ core (emolens batch)
)
"""Lines of the decoders that :func:`filtered_stderr` drops (matched at the start of a line)."""

_cv_log = getattr(getattr(cv2, "utils", None), "logging", None)
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level: int | None = None


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (``[ WARN ]``/``[ERROR]`` about a bad file) inside the block.

    The failure itself still reaches the caller (as an :class:`emolens.ImageError` from
    :mod:`emolens.imageio`). Safe with threads: the level is saved by the first block to enter and
    restored by the last one to leave.
    """
    global _quiet_depth, _saved_level
    if _cv_log is None:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = _cv_log.getLogLevel()
            _cv_log.setLogLevel(_cv_log.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_level is not None:
                _cv_log.setLogLevel(_saved_level)
                _saved_level = None


def _is_process_stderr() -> bool:
    """True when ``sys.stderr`` is the process's own descriptor 2 (not a test's capture or a redirect)."""
    try:
        return sys.stderr is sys.__stderr__ and sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _pump(read_fd: int, out_fd: int) -> None:
    """Copy lines from ``read_fd`` to ``out_fd`` until end of file, leaving out the :data:`NOISE` lines."""
    rest = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
        try:
            _write_all(out_fd, kept)
        except OSError:  # the terminal or pipe behind stderr is gone: keep draining, so no writer blocks
            pass
    if rest and not NOISE.match(rest):
        try:
            _write_all(out_fd, rest)
        except OSError:
            pass


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Inside the block, lines the decoders write to descriptor 2 are dropped (see the module's docstring).

    Does nothing when ``sys.stderr`` is not the process's descriptor 2 (pytest's capture, an embedding
    application's redirect): then that owner decides what is shown.
    """
    if not _is_process_stderr():
        yield
        return
    old = sys.stderr
    old.flush()
    terminal = os.dup(2)  # where descriptor 2 pointed: the terminal, a file, a pipe
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    pump = threading.Thread(target=_pump, args=(read_fd, terminal), name="emolens-stderr", daemon=True)
    pump.start()
    # Buffered and flushed at each newline (as Python's own stderr is): ``print`` writes its text and its
    # end separately, and the pump's lines must not land between the two.
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(os.dup(terminal), "w")), encoding=old.encoding,
                                  errors="backslashreplace", line_buffering=True)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            mine, sys.stderr = sys.stderr, old
            mine.close()
            os.dup2(terminal, 2)  # closes the pipe's last write end: the pump reads to its end and stops
            pump.join(timeout=5)
            os.close(read_fd)
            os.close(terminal)
