"""The emolens web service: a REST API and a web page over one :class:`~emolens.EmotionRecognizer`.

Needs the ``[serve]`` extra (FastAPI, uvicorn, python-multipart). Start it with ``emolens serve``;
build the app yourself with :func:`create_app` (e.g. to mount it in a bigger ASGI application).
"""

from __future__ import annotations

from .app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
