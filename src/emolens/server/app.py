"""The FastAPI application: ``/v1/predict``, ``/v1/predict/batch``, ``/v1/model``, ``/health`` and the web page.

Safety: the model is loaded once; decoding and inference run in a thread pool (never on the event loop)
with at most ``concurrency`` images at a time, at most ``max_queue`` waiting for a place (more, or a wait
over ``queue_timeout`` seconds, get 503 with a Retry-After) and at most ``explain_concurrency``
explanation requests at a time (more get 429 with a Retry-After). Every image's work is bounded: the
``max_faces`` largest faces are classified, the ``max_explain_faces`` largest explained, and no face's
explanation starts after ``explain_timeout`` seconds. Uploads are capped in bytes (checked while the body
streams in, not only from ``Content-Length``) and in pixels (checked from the image header before
decoding, by :func:`emolens.imageio.decode_bytes`, which also refuses a file too small for the size it
claims); content is checked by decoding it, never by file name or declared type. Every error is a JSON
body ``{"error": {"code", "message"}}`` with a 4xx status (503 when busy); an unexpected failure is
logged and answered without a stack trace (in a batch, as that image's error). The docs page (``/docs``)
uses the Swagger UI files shipped with ``fastapi-offline``: nothing is fetched from outside this server
(there is no ``/redoc``: ReDoc loads its logo from a CDN).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import itertools
import json
import logging
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import __version__
from ..face.detect import DEFAULT_DETECTOR, available_detectors, create_detector
from ..imageio import DEFAULT_MAX_SCANS, ImageError, decode_bytes, encode_image, image_format
from ..onnxrun import MAX_THREADS, DeadlineExceeded, check_deadline, check_threads, deadline, stop_all
from ..recognizer import EmotionRecognizer
from ..results.draw import annotate as draw_faces
from ..results.output import JPEG_MAX_SIDE
from ..web.site import JS_DIR, browser_detectors, manifest_files
from ..web.site import manifest as browser_manifest

log = logging.getLogger("emolens.server")

API_KEY_HEADER = "X-API-Key"
API_KEY_ENV = "EMOLENS_API_KEY"
RAW_TYPES = ("image/*", "application/octet-stream")
STATIC_DIR = Path(str(resources.files("emolens") / "server" / "static"))


@dataclass
class ServeConfig:
    """Everything ``emolens serve`` can set.

    Args:
        model: an emolens ``.onnx`` model (``None`` = the bundled one).
        detector: the face detector of requests that do not name one (``?detector=``), one of
            :func:`emolens.face.detect.available_detectors`. Every detector is built at start-up; the web page's
            live mode asks for ``centerface-fast``.
        threads: ONNX Runtime threads per inference (``None`` = 1: concurrency comes from ``concurrency``).
        concurrency: at most this many images are decoded and recognised at the same time.
        max_upload_bytes: larger request bodies get 413.
        max_pixels: images with more pixels (read from the header before decoding) get 413.
        max_batch: most images in one ``/v1/predict/batch`` request.
        max_faces: most faces classified in one image, the largest (``faces_found`` says how many there were).
        max_explain_faces: most faces explained in one image (``?explain=true``), the largest; a map costs
            about 0.7 s a face on one core, a classification a few milliseconds.
        explain_concurrency: most explanation requests at a time; more get 429 with a Retry-After. Keep it
            below ``concurrency`` so ordinary requests always have a slot.
        explain_timeout: seconds after which no further face of an image is explained.
        max_queue: most images waiting for a slot; more get 503 with a Retry-After.
        queue_timeout: seconds an image may wait for a slot before it gets 503 with a Retry-After.
        request_timeout: seconds an image may hold a slot: then its work stops (model calls are stopped, the
            steps between them check the time), it gets 503 ``timeout`` and the slot is free again.
        body_timeout: seconds a request body may take to arrive (a client sending a byte a second); then 408.
        max_scans: most scans of a JPEG, counted before decoding (each is one more pass over the image).
        trust_model: run ``model`` without the limits put on a model that is not bundled (see
            :class:`emolens.classify.Classifier`).
        api_key: when set, every ``/v1/...`` request needs it in the ``X-API-Key`` header.
    """

    model: str | os.PathLike | None = None
    detector: str = DEFAULT_DETECTOR
    threads: int | None = None
    concurrency: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch: int = 16
    max_faces: int = 100
    max_explain_faces: int = 8
    explain_concurrency: int | None = None
    explain_timeout: float = 20.0
    max_queue: int = 32
    queue_timeout: float = 30.0
    request_timeout: float = 60.0
    body_timeout: float = 60.0
    max_scans: int = DEFAULT_MAX_SCANS
    trust_model: bool | None = None
    api_key: str | None = None

    @property
    def heavy_slots(self) -> int:
        """Explanations at a time: ``explain_concurrency``, by default one fewer than ``concurrency`` (at least 1)."""
        return self.explain_concurrency or max(1, self.concurrency - 1)

    def validate(self) -> None:
        for name in ("concurrency", "max_upload_bytes", "max_pixels", "max_batch", "max_faces", "max_explain_faces",
                     "max_queue", "max_scans"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.explain_concurrency is not None and self.explain_concurrency < 1:
            raise ValueError(f"explain_concurrency must be at least 1, not {self.explain_concurrency}")
        for name in ("explain_timeout", "queue_timeout", "request_timeout", "body_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        check_threads(self.threads)
        if self.concurrency > MAX_THREADS:
            raise ValueError(f"concurrency must be at most {MAX_THREADS} (4 a CPU core), not {self.concurrency}")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty; unset it to serve without one")


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}`` with ``status`` (and ``headers``)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class Gate:
    """At most ``slots`` holders at a time, at most ``queue`` waiting for a place, none waiting more than
    ``wait_s`` seconds: the rest are turned away at once (a queue never grows without end).

    ``busy(retry_after)`` makes the error for those turned away; ``retry_after`` is an estimate in whole
    seconds of when a place will be free, from the mean time a holder keeps one.
    """

    def __init__(self, slots: int, queue: int, wait_s: float, busy: Any, hold_s: float | None = None) -> None:
        self.slots, self.queue, self.wait_s, self.busy, self.hold_s = slots, queue, wait_s, busy, hold_s
        self._sem = asyncio.Semaphore(slots)
        self.waiting = 0
        self.mean_s = 1.0  # moving average of the seconds a place is held
        self._held: dict[int, float] = {}  # when each current holder took its place
        self._ids = itertools.count()

    def retry_after(self) -> int:
        """Seconds until a place is likely free for one more request: from the mean time a place is held and how
        long the current holders have held theirs (a holder past the mean is expected to keep its place until
        ``hold_s``, the longest it may: two uploads that held every slot for 30 s were answered Retry-After: 1)."""
        now = time.monotonic()
        ages = sorted(now - t for t in self._held.values())
        if len(ages) < self.slots:
            soonest = self.mean_s
        else:
            left = [self.mean_s - a if a < self.mean_s else (self.hold_s or 2 * a) - a for a in ages]
            soonest = max(0.0, min(left))
        ahead = self.waiting / self.slots
        return max(1, math.ceil(soonest + ahead * self.mean_s))

    @asynccontextmanager
    async def place(self):
        if self._sem.locked() and self.waiting >= self.queue:
            raise self.busy(self.retry_after())
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            raise self.busy(self.retry_after()) from None
        finally:
            self.waiting -= 1
        start = time.monotonic()
        me = next(self._ids)
        self._held[me] = start
        try:
            yield
        finally:
            del self._held[me]
            self.mean_s = 0.8 * self.mean_s + 0.2 * (time.monotonic() - start)
            self._sem.release()


def busy_error(retry_after: int) -> ApiError:
    return ApiError(503, "busy", f"the server is busy: every recognition slot is taken and the queue is full or "
                    f"moving too slowly; retry in {retry_after} s", {"Retry-After": str(retry_after)})


def explain_busy_error(slots: int, retry_after: int) -> ApiError:
    return ApiError(429, "too_many_explanations", f"at most {slots} explanation request(s) at a time; one is being "
                    f"made; retry in {retry_after} s (predictions without ?explain are still taken)",
                    {"Retry-After": str(retry_after)})


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


FORMATS = "PNG, JPEG, GIF, BMP, WebP or TIFF"
"""What the server decodes: :data:`emolens.imageio.SIZED_FORMATS`, whose size is read before decoding.
OpenCV decodes more (JPEG 2000, Radiance HDR, ...), but only after allocating the whole image: a 4 MB HDR file of
8000x8000 zeros took 13 s and 1.6 GB before the pixel cap could refuse it."""


def _image_error(e: ImageError) -> ApiError:
    msg = str(e)
    if "over the limit" in msg:  # the pixel cap (imageio words it this way)
        return ApiError(413, "too_many_pixels", msg)
    return ApiError(400, "invalid_image", msg)


def _data_url(img: np.ndarray, ext: str) -> str:
    if ext == ".jpg" and max(img.shape[:2]) > JPEG_MAX_SIDE:  # JPEG cannot store it: sent as PNG instead
        ext = ".png"
    data = encode_image(img, ext, [cv2.IMWRITE_JPEG_QUALITY, 88] if ext == ".jpg" else None)
    if data is None:  # pragma: no cover - OpenCV encodes any uint8 BGR image as PNG
        raise RuntimeError(f"cannot encode {ext}")
    mime = "image/jpeg" if ext == ".jpg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ----------------------------------------------------------------------------- upload size guard
class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: from ``Content-Length`` before reading,
    and while streaming for bodies sent without one (chunked). A body that has not arrived whole within
    ``timeout_s`` seconds of the request's start gets 408 (a client sending a byte a second held a slot for as
    long as it liked)."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float = 60.0) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    def _too_large(self) -> JSONResponse:
        mb = self.max_bytes / (1024 * 1024)
        return error_response(413, "upload_too_large", f"request body is over the upload limit of {mb:g} MB")

    def _too_slow(self) -> JSONResponse:
        return error_response(408, "body_timeout", f"the request body did not arrive within {self.timeout_s:g} s "
                              "(--body-timeout)", {"Connection": "close"})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
                if n < 0:
                    raise ValueError
            except ValueError:
                await error_response(400, "bad_request", "invalid Content-Length header")(scope, receive, send)
                return
            if n > self.max_bytes:
                await self._too_large()(scope, receive, send)
                return
        received = 0
        started = False
        deadline = time.monotonic() + self.timeout_s
        finished = False

        async def limited_receive() -> dict:
            nonlocal received, finished
            if finished:  # the body is in: what is left to wait for is the client leaving
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise _BodyTooSlow from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
                finished = not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                raise _ClientLeft
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large()(scope, receive, send)
        except _BodyTooSlow:
            log.info("%s %s: the body did not arrive within %g s; answered 408", scope.get("method"),
                     scope.get("path"), self.timeout_s)
            if not started:
                await self._too_slow()(scope, receive, send)
        except _ClientLeft:
            log.info("%s %s: the client left before its request was answered", scope.get("method"), scope.get("path"))


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class _ClientLeft(Exception):
    pass


def json_error_protocol() -> type:
    """uvicorn's HTTP protocol whose answer to a request it cannot parse (a negative or non-numeric
    Content-Length, a malformed request line) is the JSON error every other failure gets, not plain text."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class JsonErrorProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": {"code": "bad_request", "message": f"malformed HTTP request: {msg}"}}).encode()
            head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
            self.transport.write(head + body)
            self.transport.close()

    return JsonErrorProtocol


# ----------------------------------------------------------------------------- the service
class Service:
    """The loaded model, the inference pool and the request handling that is not HTTP plumbing."""

    def __init__(self, config: ServeConfig) -> None:
        config.validate()
        self.config = config
        self.recognizer = EmotionRecognizer(
            config.model, detector=config.detector, threads=config.threads or 1, max_pixels=config.max_pixels,
            max_scans=config.max_scans, trust_model=config.trust_model,
        )
        meta = self.recognizer.classifier.meta
        self.model_id = meta.name or self.recognizer.classifier.path.stem
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="emolens-infer")
        self.slots = Gate(config.concurrency, config.max_queue, config.queue_timeout, busy_error,
                          config.request_timeout)
        self.heavy = Gate(config.heavy_slots, 0, config.queue_timeout,
                          lambda retry: explain_busy_error(config.heavy_slots, retry), config.request_timeout)
        self._local = threading.local()
        self.detectors = available_detectors()
        # Build every detector in every pool thread now, at start-up, not on a request: the barrier holds
        # each task until all have started, so each runs in its own thread.
        barrier = threading.Barrier(config.concurrency)

        def build() -> None:
            barrier.wait(timeout=120)
            for name in self.detectors:
                self._thread_recognizer(name)

        for f in [self.pool.submit(build) for _ in range(config.concurrency)]:
            f.result()

    @property
    def can_explain(self) -> bool:
        return hasattr(self.recognizer, "explain_bgr")

    def _thread_recognizer(self, detector: str | None = None) -> EmotionRecognizer:
        """This pool thread's recognizer with ``detector`` (default: the configured one). They share the one
        ONNX session (thread-safe); each has its own detector, as OpenCV's cascade classifier keeps per-call
        state and is not shared across threads. All are built at start-up."""
        recs: dict[str, EmotionRecognizer] | None = getattr(self._local, "recs", None)
        if recs is None:
            recs = self._local.recs = {}
        name = detector or self.config.detector
        if name not in recs:
            rec = copy.copy(self.recognizer)
            rec.detector = create_detector(name, threads=self.config.threads or 1)
            recs[name] = rec
        return recs[name]

    def model_info(self) -> dict[str, Any]:
        clf = self.recognizer.classifier
        m = clf.meta
        return {
            "id": self.model_id,
            "name": m.name,
            "architecture": m.architecture,
            "file": clf.path.name,
            "labels": list(m.labels),
            "input_size": m.input_size,
            "channels": m.channels,
            "metrics": dict(m.metrics),
            "tta": {"hflip": m.tta_hflip, "scales": list(m.tta_scales)},
            "detector": self.config.detector,
            "detectors": list(self.detectors),
            "explain": self.can_explain,
            "limits": {
                "max_upload_bytes": self.config.max_upload_bytes,
                "max_pixels": self.config.max_pixels,
                "max_batch": self.config.max_batch,
                "max_faces": self.config.max_faces,
                "max_explain_faces": self.config.max_explain_faces,
                "explain_timeout_s": self.config.explain_timeout,
                "concurrency": self.config.concurrency,
                "explain_concurrency": self.config.heavy_slots,
                "max_queue": self.config.max_queue,
                "queue_timeout_s": self.config.queue_timeout,
                "request_timeout_s": self.config.request_timeout,
                "body_timeout_s": self.config.body_timeout,
                "max_scans": self.config.max_scans,
            },
            "emolens_version": __version__,
        }

    def recognise(self, data: bytes, name: str, *, annotate: bool, explain: bool, detect: bool,
                  label: str | None = None, method: str = "occlusion", detector: str | None = None
                  ) -> dict[str, Any]:
        """Decode, recognise and optionally draw/explain one image (runs in a pool thread);
        ``detector`` = a name from :attr:`detectors` (``None``: the configured default).

        All of it under ``request_timeout`` (:func:`emolens.onnxrun.deadline`): model calls are stopped when it
        passes and the steps between them check it, so the slot is free again soon after
        (:class:`~emolens.onnxrun.DeadlineExceeded`, answered 503 ``timeout``)."""
        if not data:
            raise ApiError(400, "empty_body", f"{name}: empty upload (0 bytes)")
        if image_format(data) is None:
            raise ApiError(400, "invalid_image", f"{name}: cannot decode image (not a {FORMATS} file; this server "
                                                 "takes those, whose size it checks before decoding)")
        cfg = self.config
        t0 = time.perf_counter()
        with deadline(cfg.request_timeout) as until:
            try:
                bgr = decode_bytes(data, name=name, max_pixels=cfg.max_pixels, max_scans=cfg.max_scans)
            except ImageError as e:
                raise _image_error(e) from None
            check_deadline()
            rec = self._thread_recognizer(detector)
            boxes = rec.face_boxes(bgr, detect=detect)
            check_deadline()
            faces = rec.classify_boxes(bgr, boxes[: cfg.max_faces])  # the largest: the detector sorts them
            out: dict[str, Any] = {
                "image": {"name": name, "width": int(bgr.shape[1]), "height": int(bgr.shape[0])},
                "faces_found": len(boxes),
                "faces": [f.to_dict() for f in faces],
            }
            if explain:
                started = time.monotonic() - (time.perf_counter() - t0)
                stop = min(started + cfg.explain_timeout, until if until is not None else math.inf)
                explanations = rec.explain_bgr(bgr, faces=faces, label=label, method=method,
                                               max_faces=cfg.max_explain_faces, deadline=stop)
                for d, ex in zip(out["faces"], explanations):
                    check_deadline()
                    d["explanation"] = {"label": ex.label, "method": ex.method,
                                        "overlay": _data_url(ex.overlay(), ".png"),
                                        "panel": _data_url(ex.panel(), ".png")}
                out["faces_explained"] = len(explanations)
            if annotate:
                check_deadline()
                out["annotated_image"] = _data_url(draw_faces(bgr, faces), ".jpg")
        out["time_ms"] = round(1000 * (time.perf_counter() - t0), 1)
        return out

    async def run(self, data: bytes, name: str, **kwargs: Any) -> dict[str, Any]:
        """Recognise one image in the pool: through a place in :attr:`slots` (and :attr:`heavy` with explain)."""
        async with self.slots.place():
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self.pool, lambda: self.recognise(data, name, **kwargs))
            except DeadlineExceeded:
                log.warning("image %r: gave up after --request-timeout %g s", name, self.config.request_timeout)
                raise ApiError(503, "timeout", f"{name}: gave up on this image after {self.config.request_timeout:g} "
                                               "s (--request-timeout); the slot is free again") from None
            except (cv2.error, MemoryError) as e:  # an image that decodes but is too much to process: its fault
                log.warning("cannot process image %r", name, exc_info=True)
                why = "not enough memory" if isinstance(e, MemoryError) else (getattr(e, "err", "") or "OpenCV error")
                raise ApiError(422, "unprocessable_image", f"{name}: cannot process this image ({why})") from None
            finally:
                if kwargs.get("explain"):
                    await loop.run_in_executor(self.pool, release_free_memory)


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; nothing elsewhere): after an
    explanation's large buffers are freed, the process would otherwise keep them."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim: Any = None


async def read_images(request: Request, *, many: bool, max_files: int) -> list[tuple[str, bytes]]:
    """The uploaded images: multipart file parts, or the raw body for ``image/*`` / octet-stream."""
    ctype = request.headers.get("content-type", "")
    mime = ctype.split(";")[0].strip().lower()
    if mime == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files + 1, max_fields=100)
        except StarletteHTTPException as e:
            if str(e.detail).startswith("Too many files"):  # the parser stops at one past the limit
                raise ApiError(413, "too_many_files", f"got more than {max_files} files, over the "
                                                      f"{'batch ' if many else ''}limit of {max_files}") from None
            status = e.status_code if 400 <= e.status_code < 500 else 400
            raise ApiError(status, "bad_multipart", str(e.detail)) from None
        try:
            files = [
                (v.filename or key, await v.read()) for key, v in form.multi_items() if isinstance(v, UploadFile)
            ]
        finally:
            await form.close()
        if not files:
            raise ApiError(400, "no_file", "the multipart body has no file part; send the image as a file field 'file'")
        if not many and len(files) > 1:
            raise ApiError(400, "too_many_files", f"got {len(files)} files; send one, or use /v1/predict/batch")
        if len(files) > max_files:
            raise ApiError(413, "too_many_files", f"got {len(files)} files, over the batch limit of {max_files}")
        return files
    if many:
        raise ApiError(
            415, "unsupported_media_type", "a batch must be multipart/form-data with one file part per image"
        )
    if mime.startswith("image/") or mime == "application/octet-stream":
        return [("<body>", await request.body())]
    what = f"Content-Type {mime!r}" if mime else "a missing Content-Type"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"cannot take {what}: upload the image as multipart/form-data (field 'file') "
        "or as the raw body with Content-Type image/* or application/octet-stream",
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "the image, as a multipart file field `file` or as the raw body",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "description": "one multipart file part per image (any field name, e.g. `files`)",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            }
        },
    }
}


def create_app(config: ServeConfig | None = None) -> FastAPI:
    """The emolens ASGI application; loads the model now (raises ModelError/ValueError on a bad config)."""
    config = config or ServeConfig()
    service = Service(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        stop_all()  # the work still running stops at its next model call or step
        service.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPIOffline(  # FastAPI whose /docs uses Swagger UI files from the package, no CDN
        title="emolens",
        version=__version__,
        summary="Facial emotion recognition: find every face, classify its emotion.",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        redoc_url=None,
    )
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes, timeout_s=config.body_timeout)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": API_KEY_HEADER} if e.status == 401 else e.headers
        return error_response(e.status, e.code, e.message, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "upload_too_large"}
        return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail),
                              getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
        return error_response(422, "invalid_parameter", "; ".join(parts) or "invalid request")

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, e: ClientDisconnect) -> JSONResponse:
        log.info("%s %s: the client left before its request was read", request.method, request.url.path)
        return error_response(400, "client_disconnected", "the client left before the request was read")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error while handling the request (logged on the server)")

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,  # declared in OpenAPI: Swagger's "Authorize"
                              description="needed when the server was started with an API key")

    async def check_key(given: str | None = Security(key_header)) -> None:
        if config.api_key is None:
            return
        if not given:
            raise ApiError(401, "missing_api_key", f"this server needs an API key in the {API_KEY_HEADER} header")
        if not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise ApiError(401, "invalid_api_key", f"the API key in the {API_KEY_HEADER} header is not valid")

    def options(
        annotate: bool = Query(False, description="also return the annotated image (JPEG data URL)"),
        explain: bool = Query(False, description="per face, a heat map of what drove the prediction (PNG data URL)"),
        detect: bool = Query(True, description="false: the whole image is one already-cropped face"),
        label: str | None = Query(None, description="with explain: the emotion to explain (default: each face's "
                                                    "predicted one)"),
        method: str = Query("occlusion", description="with explain: occlusion (default) or rise"),
        detector: str | None = Query(
            None, description=f"face detector for this request (default: {config.detector}); centerface-fast "
            "is about 4x faster (faces down to 1/20 of the picture's width), for live video",
            json_schema_extra={"enum": service.detectors}),
    ) -> dict[str, Any]:
        if explain and not service.can_explain:
            raise ApiError(400, "explain_unavailable", "explanations are not available in this emolens version")
        labels = service.recognizer.labels
        if label is not None and label not in labels:
            raise ApiError(422, "invalid_parameter", f"label: unknown label {label!r}; this model's labels are: "
                                                     f"{', '.join(labels)}")
        if method not in ("occlusion", "rise"):
            raise ApiError(422, "invalid_parameter", f"method: unknown explanation method {method!r}; choose "
                                                     "occlusion or rise")
        if detector is not None and detector not in service.detectors:
            raise ApiError(422, "invalid_parameter",
                           f"detector: unknown detector {detector!r}; choose one of: {', '.join(service.detectors)}")
        return {"annotate": annotate, "explain": explain, "detect": detect, "label": label, "method": method,
                "detector": detector}

    @app.get("/health", tags=["service"], summary="liveness: the model is loaded")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": service.model_id, "api_key_required": config.api_key is not None}

    @app.get("/v1/model", tags=["model"], dependencies=[Depends(check_key)],
             summary="the model: labels, input size, metrics from its model card, limits")
    async def model() -> dict[str, Any]:
        return service.model_info()

    @app.post("/v1/predict", tags=["predict"], dependencies=[Depends(check_key)], openapi_extra=_UPLOAD_BODY,
              summary="faces and emotions in one image")
    async def predict(request: Request, opts: dict[str, Any] = Depends(options)) -> dict[str, Any]:
        (name, data), = await read_images(request, many=False, max_files=1)  # the whole body first (--body-timeout)
        if opts["explain"]:  # a heavy request: a place among the few explanations, or 429 at once
            async with service.heavy.place():
                result = await service.run(data, name, **opts)
        else:
            result = await service.run(data, name, **opts)
        return {"model": service.model_id, **result}

    @app.post("/v1/predict/batch", tags=["predict"], dependencies=[Depends(check_key)], openapi_extra=_BATCH_BODY,
              summary="faces and emotions in several images (one result or error per image, in order)")
    async def predict_batch(request: Request, opts: dict[str, Any] = Depends(options)) -> dict[str, Any]:
        if opts["explain"]:
            raise ApiError(400, "explain_one_image", "?explain=true is for /v1/predict, one image at a time (a map "
                                                     "takes about 0.7 s a face on one core)")
        files = await read_images(request, many=True, max_files=config.max_batch)

        async def one(name: str, data: bytes) -> dict[str, Any]:
            try:
                return await service.run(data, name, **opts)
            except ApiError as e:
                return {"image": {"name": name}, "error": {"code": e.code, "message": e.message}}
            except Exception:  # a bug, not the request's fault: this image's error, the others still answered
                log.exception("unexpected error on image %r of a batch", name)
                msg = f"{name}: internal error on this image (logged on the server)"
                return {"image": {"name": name}, "error": {"code": "internal_error", "message": msg}}

        results = await asyncio.gather(*(one(n, d) for n, d in files))
        return {"model": service.model_id, "results": list(results)}

    # "Run in this browser": the page's ES module (/web/) loads the server's own model and detector from here
    web: dict[str, Any] = {}

    def web_assets() -> dict[str, Any]:  # built on first use: hashing the model files takes a moment
        if not web:
            clf = service.recognizer.classifier
            photo = config.detector if config.detector in browser_detectors() else DEFAULT_DETECTOR
            m = browser_manifest(clf, detector=photo, prefix="files/", max_pixels=config.max_pixels)
            web.update(manifest=m, files=manifest_files(m, clf))
        return web

    @app.get("/v1/web/manifest.json", tags=["model"], dependencies=[Depends(check_key)],
             summary="what the web page's 'Run in this browser' loads: the model, the detectors, their settings")
    async def web_manifest() -> dict[str, Any]:
        return (await asyncio.get_running_loop().run_in_executor(None, web_assets))["manifest"]

    @app.get("/v1/web/files/{name}", tags=["model"], dependencies=[Depends(check_key)],
             summary="a model file that /v1/web/manifest.json names")
    async def web_file(name: str) -> FileResponse:
        files = (await asyncio.get_running_loop().run_in_executor(None, web_assets))["files"]
        if name not in files:
            raise ApiError(404, "not_found", f"no file {name!r} here; /v1/web/manifest.json names: {', '.join(files)}")
        return FileResponse(files[name], media_type="application/octet-stream")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={  # WebAssembly needs 'wasm-unsafe-eval' (no eval)
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                                       "style-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'",
            "Cache-Control": "no-cache",
        })

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/web", StaticFiles(directory=JS_DIR), name="web")
    return app
