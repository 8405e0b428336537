"""Start ``emolens serve`` in a child process and wait until it answers (used by the tests and the benchmark)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: str | None = None

    def log(self) -> str:
        if not self.log_path:
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()


@contextmanager
def serve_subprocess(
    args: Sequence[str] = (),
    *,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    timeout: float = 90.0,
    log_path: str | os.PathLike | None = None,
) -> Iterator[RunningServer]:
    """Run ``python -m emolens serve --host HOST --port <free> ARGS...`` until the block ends.

    Waits for ``GET /health`` to answer; raises RuntimeError (with the server's output) if it
    exits or does not answer within ``timeout`` seconds.
    """
    port = free_port(host)
    cmd = [sys.executable, "-m", "emolens", "serve", "--host", host, "--port", str(port), *args]
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = RunningServer(f"http://{host}:{port}", proc, str(log_path) if log_path else None)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{server.log()}")
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"`{' '.join(cmd)}` did not answer within {timeout:.0f} s:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]
