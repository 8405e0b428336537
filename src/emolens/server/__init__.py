"""The emolens web service: a REST API and a web page over one :class:`~emolens.EmotionRecognizer`.

Needs the ``[serve]`` extra (FastAPI, uvicorn, python-multipart). Start it with ``emolens serve``;
from Python with :func:`serve`, or build the app yourself with :func:`create_app` (e.g. to mount it in a bigger
ASGI application).
"""

from __future__ import annotations

from .app import ServeConfig, create_app
from .run import ServeError, serve

__all__ = ["ServeConfig", "ServeError", "create_app", "serve"]
