"""What the browser benchmarks share: a folder served over HTTP on a free loopback port (as ``python -m
http.server`` serves an exported site), and Debian's headless chromium driven by Playwright."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".wasm": "application/wasm"}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a free port) until the block ends; yields the base URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def launcher(folder: Path) -> Path:
    """How to start chromium at the priority of the process that starts it (``nice -n 15 python ...``). Run as root,
    chromium sets its own processes' priority (nice -8 to 5) unless it lacks CAP_SYS_NICE; this launcher starts
    it without that capability (util-linux's setpriv)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return CHROMIUM
    path = folder / "chromium-at-our-priority"
    path.write_text(f'#!/bin/sh\nexec setpriv --bounding-set=-sys_nice --inh-caps=-sys_nice -- {CHROMIUM} "$@"\n')
    path.chmod(0o755)
    return path


def need_chromium() -> None:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
