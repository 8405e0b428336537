"""A one-line progress report on stderr, for long runs (video frames, many pictures)."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A one-line progress report on stderr: items done, percent, rate, ETA (no tqdm needed).

    On a terminal the line is redrawn in place twice a second; otherwise a line is printed every 10 s, or
    nothing at all with ``terminal_only``.
    """

    def __init__(self, total: int | None, *, stream: IO[str] | None = None, enabled: bool = True,
                 unit: str = "frame", rate_unit: str = "fps", terminal_only: bool = False) -> None:
        self.total, self.stream, self.unit, self.rate_unit = total, stream or sys.stderr, unit, rate_unit
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled and (self.tty or not terminal_only)
        self.start = self._last = time.monotonic()
        self.n = 0
        self._shown = 0  # width of the line now on a terminal (0: none)

    def line(self) -> str:
        el = time.monotonic() - self.start
        fps = self.n / el if el >= 0.2 else 0.0  # no rate from the first instants: it would mean nothing
        rate = f"{fps:.1f} {self.rate_unit}" if fps > 0 else f"- {self.rate_unit}"
        if self.total:
            left = max(0, self.total - self.n)
            eta = left / fps if fps > 0 else None
            when = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else ("0:00" if not left else "-:--")
            return f"{self.unit} {self.n}/{self.total} {min(100, 100 * self.n // self.total):3d}%  {rate}  ETA {when}"
        return f"{self.unit} {self.n}  {rate}  {int(el // 60)}:{int(el % 60):02d} elapsed"

    def update(self, n: int) -> None:
        self.n = n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= (0.5 if self.tty else 10.0) or (self.tty and not self._shown and n):
            self._last = now
            if self.tty:
                text = self.line()
                self.stream.write("\r" + text.ljust(self._shown))
                self._shown = len(text)
            else:
                self.stream.write(self.line() + "\n")
            self.stream.flush()

    def clear(self) -> None:
        """Take the line off a terminal so that other output (a result row on the same screen) starts on a
        clean line; the next :meth:`update` draws it again."""
        if self.enabled and self.tty and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0

    def close(self) -> None:
        if self.enabled:
            self.clear()
            self.stream.write(self.line() + "\n")
            self.stream.flush()
