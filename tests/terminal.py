"""Run a command with its stderr on a pseudo-terminal, as a user at a terminal would see it."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_with_terminal_stderr(cmd: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """(exit code, stdout through a pipe, everything written to the terminal that stderr was)."""
    main_fd, child_fd = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=child_fd)
    os.close(child_fd)
    out, _ = proc.communicate(timeout=timeout)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the terminal's other side is closed: all was read
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_fd)
    return proc.returncode, out.decode(), seen.decode(errors="replace")
