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

    def line(self) -> str:
        el = time.monotonic() - self.start
        fps = self.n / el if el > 0 else 0.0
        if self.total:
            eta = max(0, self.total - self.n) / fps if fps > 0 else 0.0
            return (f"{self.unit} {self.n}/{self.total} {min(100, 100 * self.n // self.total):3d}%  "
                    f"{fps:.1f} {self.rate_unit}  ETA {int(eta // 60)}:{int(eta % 60):02d}")
        return f"{self.unit} {self.n}  {fps:.1f} {self.rate_unit}  {int(el // 60)}:{int(el % 60):02d} elapsed"

    def update(self, n: int) -> None:
        self.n = n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= (0.5 if self.tty else 10.0):
            self._last = now
            self.stream.write(("\r" + self.line() + "  ") if self.tty else self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + self.line() + "  \n")
            self.stream.flush()
