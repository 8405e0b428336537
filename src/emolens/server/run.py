"""Serving: the app on a socket under uvicorn until SIGTERM or Ctrl-C (what ``emolens serve`` does, as one call)::

    from emolens.server import ServeConfig
    from emolens.server.run import serve

    serve(ServeConfig(model="fast", concurrency=2), host="127.0.0.1", port=8000)

The port is bound before the model loads, so a taken port is one clear :class:`ServeError`; with ``port=0`` the
system picks a free one, which the start-up line on stderr names.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import sys
from pathlib import Path

from .app import API_KEY_ENV, ServeConfig, create_app, json_error_protocol


class ServeError(ValueError):
    """The server cannot start as asked (one line: a port that cannot be bound, a key file that cannot be read,
    a limit that is not a positive number)."""


def read_api_key(path: str | os.PathLike | None = None) -> str | None:
    """The API key: the first line of ``path`` when given, else the ``EMOLENS_API_KEY`` environment variable
    (``None``: no key, the API is open)."""
    if path is None:
        return os.environ.get(API_KEY_ENV) or None
    try:
        key = Path(path).read_text().strip()
    except OSError as e:
        raise ServeError(f"--api-key-file {path}: cannot read ({e.strerror or e})") from None
    if not key:
        raise ServeError(f"--api-key-file {path}: the file is empty")
    return key


def check_config(config: ServeConfig, port: int = 8000) -> None:
    """What the config's numbers must be before anything starts (ServeError)."""
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be 0..65535, not {port}")
    for name in ("explain_timeout", "queue_timeout", "request_timeout", "body_timeout"):
        if not (math.isfinite(getattr(config, name)) and getattr(config, name) > 0):
            raise ServeError(f"--{name.replace('_', '-')} must be a positive number of seconds")


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` for uvicorn to listen on (ServeError when it cannot be bound)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog from now on, not refused until uvicorn starts
    except OSError as e:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


def serve(config: ServeConfig | None = None, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          access_log: bool = False) -> None:
    """Serve the REST API and the web page of ``config`` on ``host``:``port`` until SIGTERM or Ctrl-C (the work in
    flight stops then). Says where on stderr, and warns when the API is open to the network without a key.
    Raises :class:`ServeError` (or :class:`emolens.ModelError` for the model) before serving."""
    import uvicorn

    from ..onnxrun import stop_all

    config = config or ServeConfig()
    check_config(config, port)
    sock = listening_socket(host, port)  # a clear error before loading the model
    try:
        app = create_app(config)
    except BaseException:
        sock.close()
        raise
    svc = app.state.service
    address, port = sock.getsockname()[:2]  # the port bound: port 0 asks the system for a free one
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(f"emolens: serving {svc.model_id} on {where}  (web page {where}/, API docs {where}/docs"
          f"{', API key required' if config.api_key else ''})", file=sys.stderr, flush=True)
    if not config.api_key and not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        print(f"emolens: warning: listening on {host} without an API key: anyone who can reach this machine "
              f"on the network can call the API; set {API_KEY_ENV} or --api-key-file, or serve on 127.0.0.1",
              file=sys.stderr, flush=True)
    server_log = logging.getLogger("emolens.server")  # its lines beside uvicorn's, in the same form
    if not server_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        server_log.addHandler(handler)
        server_log.setLevel(log_level.upper())
        server_log.propagate = False

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:  # SIGTERM, Ctrl-C: the work in flight stops now
            stop_all()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, log_level=log_level, access_log=access_log, server_header=False,
                                   http=json_error_protocol(), timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
