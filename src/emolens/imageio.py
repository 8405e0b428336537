"""Every way an image reaches emolens, decoded safely in one place.

:func:`load_image` accepts a path, raw bytes, a PIL image or a numpy array and
always returns an 8-bit, 3-channel **BGR** array (OpenCV's channel order).

Safety: the image's width and height are read from the file header *before*
decoding, and images with more than ``max_pixels`` pixels are refused, so a
small file that claims to be 30000×30000 (a "decompression bomb") never
allocates gigabytes.  PNG, JPEG, GIF, BMP, WebP and TIFF headers are read by
:func:`header_size`; for other formats OpenCV's own cap applies, which
``emolens/__init__.py`` sets to :data:`DEFAULT_MAX_PIXELS` through
``OPENCV_IO_MAX_IMAGE_PIXELS`` before anything imports cv2 (OpenCV reads it once,
when it is loaded, so it has no effect if cv2 was imported before emolens).
Every failure raises :class:`ImageError` with a message that names the input;
OpenCV's own log lines about a bad file are silenced while it decodes.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Union

import numpy as np

DEFAULT_MAX_PIXELS = 100_000_000
"""Default cap on width × height (100 megapixels, bigger than any phone photo)."""

# OpenCV has its own (much larger) cap.  emolens/__init__.py sets this already, before any submodule
# imports cv2; repeated here so the module states its own requirement.  No effect once cv2 is loaded.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
import cv2  # noqa: E402

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]  # noqa: UP007
"""Anything :func:`load_image` accepts (``Any`` stands for a ``PIL.Image.Image``)."""


class ImageError(ValueError):
    """An input could not be read as an image; the message names the input and the reason."""


def describe(src: object) -> str:
    """A short human-readable name for an input, used in error messages and results."""
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, memoryview):
        return f"<{src.nbytes} bytes>"
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    return f"<{type(src).__name__}>"


SIZED_FORMATS = ("png", "gif", "bmp", "webp", "jpeg", "tiff")
"""The formats whose width and height :func:`header_size` reads before anything is decoded."""


def image_format(data: bytes) -> str | None:
    """Which of :data:`SIZED_FORMATS` ``data`` is, from its first bytes (``None``: another format, or none)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):  # classic TIFF and BigTIFF, either byte order
        return "tiff"
    return None


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height read from the header of a PNG, JPEG, GIF, BMP, WebP or TIFF file.

    Returns ``None`` when the format is not one of those or the header is unreadable;
    the decoder then has the last word.
    """
    kind = image_format(data)
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if kind == "gif":
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if kind == "bmp" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "webp":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
                return w, h
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return w & 0x3FFF, h & 0x3FFF
            if chunk == b"VP8L":
                b = data[21:25]
                w = 1 + (((b[1] & 0x3F) << 8) | b[0])
                h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
                return w, h
            return None
        if kind == "jpeg":
            return _jpeg_size(data)
        if kind == "tiff":
            tags = _tiff_tags(data, {256, 257})  # ImageWidth, ImageLength of the first image
            if tags is not None and 256 in tags and 257 in tags:
                return tags[256], tags[257]
            return None
    except (struct.error, IndexError):
        return None
    return None


# TIFF field types that hold one unsigned integer: BYTE, SHORT, LONG, LONG8 (BigTIFF).
_TIFF_INT_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}


def _tiff_tags(tiff: bytes, wanted: set[int]) -> dict[int, int] | None:
    """The integer values of the ``wanted`` tags in the first IFD of TIFF data (classic or BigTIFF).

    Used for the TIFF image size and for the EXIF orientation (EXIF is TIFF-structured).  Returns
    ``None`` when the data is not TIFF or the IFD lies outside it; raises ``struct.error`` when cut short.
    """
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    (version,) = struct.unpack(order + "H", tiff[2:4])
    if version == 42:
        (ifd,) = struct.unpack(order + "I", tiff[4:8])
        count_fmt, entry_size, count_size = "H", 12, 2
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        (ifd,) = struct.unpack(order + "Q", tiff[8:16])
        count_fmt, entry_size, count_size = "Q", 20, 8
    else:
        return None
    if ifd < 8 or ifd + count_size > len(tiff):
        return None
    (n,) = struct.unpack(order + count_fmt, tiff[ifd : ifd + count_size])
    start = ifd + count_size
    n = min(n, (len(tiff) - start) // entry_size)
    found: dict[int, int] = {}
    for i in range(n):
        e = start + i * entry_size
        tag, kind = struct.unpack(order + "HH", tiff[e : e + 4])
        if tag in wanted and kind in _TIFF_INT_TYPES:
            value_at = e + (12 if entry_size == 20 else 8)  # the value is left-justified in its field
            fmt = order + _TIFF_INT_TYPES[kind]
            (found[tag],) = struct.unpack(fmt, tiff[value_at : value_at + struct.calcsize(fmt)])
    return found


def _exif_block(data: bytes) -> bytes | None:
    """The EXIF (TIFF-structured) block of a PNG (``eXIf`` chunk) or WebP (``EXIF`` chunk) file, if any."""
    block = None
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):  # chunk: length (big-endian), type, data, CRC
            (length,) = struct.unpack(">I", data[i : i + 4])
            kind = data[i + 4 : i + 8]
            if kind == b"eXIf":
                block = data[i + 8 : i + 8 + length]
                break
            if kind == b"IEND":
                break
            i += 12 + length
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):  # chunk: type, length (little-endian), data padded to an even length
            kind = data[i : i + 4]
            (length,) = struct.unpack("<I", data[i + 4 : i + 8])
            if kind == b"EXIF":
                block = data[i + 8 : i + 8 + length]
                break
            i += 8 + length + (length & 1)
    if block is not None and block[:6] == b"Exif\0\0":  # some writers keep the JPEG APP1 prefix
        block = block[6:]
    return block


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1..8) stored in a PNG or WebP file; 1 (as stored) when absent or unreadable."""
    try:
        block = _exif_block(data)
        tags = _tiff_tags(block, {0x0112}) if block else None
    except (struct.error, IndexError):
        return 1
    value = (tags or {}).get(0x0112, 1)
    return value if 1 <= value <= 8 else 1


_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # mirrored
    3: lambda a: a[::-1, ::-1],  # rotated 180°
    4: lambda a: a[::-1],  # flipped
    5: lambda a: a.swapaxes(0, 1),  # transposed
    6: lambda a: np.rot90(a, -1),  # shown rotated 90° clockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transversed
    8: lambda a: np.rot90(a, 1),  # shown rotated 90° counter-clockwise
}


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The image as it is meant to be shown, given its EXIF orientation (1..8)."""
    f = _ORIENT.get(orientation)
    return img if f is None else np.ascontiguousarray(f(img))


_cv_log = getattr(getattr(cv2, "utils", None), "logging", None)
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level: int | None = None


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own log lines (``[ WARN ]``/``[ERROR]`` about a bad file) inside the block.

    The failure itself still reaches the caller as an :class:`ImageError`.  Safe with threads: the
    level is saved by the first block to enter and restored by the last one to leave.
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


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        # SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _jpeg_complete(data: bytes) -> bool:
    """True if an end-of-image marker follows the image's first scan.

    Scan data never contains FF D9 (0xFF bytes are stuffed), so a file cut short inside its
    scan has none after it, while a complete JPEG does even if other data follows (motion
    photos append a video; EXIF thumbnails carry their own markers before the scan).
    """
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF or marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", i) != -1
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        i += 2 + length
    return False


def read_file(path: str | os.PathLike) -> bytes:
    """Read a file's bytes, turning every OS error into a clear :class:`ImageError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{p}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{p}: cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{p}: file is empty (0 bytes)")
    return data


def decode_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, BMP, WebP, TIFF, GIF ...) into 8-bit BGR.

    The EXIF orientation of JPEG, PNG (``eXIf``), WebP and TIFF files is applied; 16-bit images
    are scaled to 8 bits; gray becomes 3-channel; transparent pixels of RGBA images are composited
    on white.
    """
    if not data:
        raise ImageError(f"{name}: empty input (0 bytes)")
    size = header_size(data)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0:
            raise ImageError(f"{name}: image header gives an invalid size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(
                f"{name}: image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                "(raise max_pixels if you trust this file)"
            )
    buf = np.frombuffer(data, dtype=np.uint8)
    is_jpeg = image_format(data) == "jpeg"
    # IMREAD_COLOR applies the EXIF orientation; IMREAD_UNCHANGED keeps alpha and 16 bits (and the
    # orientation of PNG/WebP is applied below; OpenCV's TIFF decoder applies TIFF's own).
    flags = cv2.IMREAD_COLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        with quiet_opencv():
            img = cv2.imdecode(buf, flags)
    except cv2.error as e:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(e):
            cap = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")
            cap = f"{int(cap):,}" if cap.isdigit() else "its"
            raise ImageError(
                f"{name}: image is over OpenCV's limit of {cap} pixels "
                "(set OPENCV_IO_MAX_IMAGE_PIXELS before importing emolens if you trust this file)"
            ) from None
        raise ImageError(f"{name}: cannot decode image ({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        kind = "truncated or corrupt JPEG" if is_jpeg else "not a supported image format, or corrupt"
        raise ImageError(f"{name}: cannot decode image ({kind})")
    if is_jpeg and not _jpeg_complete(data):
        # libjpeg pads a truncated file with grey and only warns; refuse it instead.
        raise ImageError(f"{name}: cannot decode image (truncated JPEG: end-of-image marker missing)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{name}: image is {img.shape[1]}x{img.shape[0]}, over the limit of {max_pixels:,} pixels")
    if not is_jpeg:
        img = apply_orientation(img, exif_orientation(data))
    return to_bgr8(img, name=name)


def to_bgr8(arr: np.ndarray, *, name: str = "<array>") -> np.ndarray:
    """Normalise an array to contiguous uint8 H×W×3 (keeps channel order; composites alpha on white)."""
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    if arr.dtype == np.uint8:
        img = arr
    elif arr.dtype == np.uint16:
        img = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        img = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name}: float image contains NaN or infinity")
        # floats are documented as [0, 1]; clearly larger values (> 1.5) are taken as 0..255
        scale = 255.0 if float(arr.max(initial=0.0)) <= 1.5 else 1.0
        img = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        img = np.clip(arr, 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"{name}: unsupported array dtype {arr.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        colour = img[:, :, :3].astype(np.float32)
        img = (colour * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(img)


def load_image(src: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load any supported input as a uint8 H×W×3 **BGR** array.

    Args:
        src: one of
            - a path (``str`` or ``pathlib.Path``) to an image file;
            - the encoded file contents as ``bytes`` / ``bytearray`` / ``memoryview``;
            - a ``PIL.Image.Image`` (any mode; its EXIF orientation is applied);
            - a numpy array in **BGR** order (as ``cv2.imread`` and ``cv2.VideoCapture``
              return it): H×W gray, H×W×3 BGR or H×W×4 BGRA, dtype uint8, uint16 or
              float in [0, 1].  Convert RGB arrays first (``arr[..., ::-1]``).
        max_pixels: refuse images with more pixels than this (checked before decoding).

    Raises:
        ImageError: the input is missing, empty, not an image, corrupt or too large.
    """
    if isinstance(src, (str, os.PathLike)):
        return decode_bytes(read_file(src), name=str(src), max_pixels=max_pixels)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(src), name=describe(src), max_pixels=max_pixels)
    if isinstance(src, np.ndarray):
        if src.ndim >= 2 and src.shape[0] * src.shape[1] > max_pixels:
            raise ImageError(f"{describe(src)}: over the limit of {max_pixels:,} pixels")
        return to_bgr8(src, name=describe(src))
    if _is_pil_image(src):
        return _from_pil(src, max_pixels=max_pixels)
    raise ImageError(
        f"unsupported input type {type(src).__name__}: pass a path, bytes, a PIL image or a numpy array"
    )


def _is_pil_image(obj: object) -> bool:
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(obj).__mro__)


def _from_pil(img: Any, *, max_pixels: int) -> np.ndarray:
    from PIL import ImageOps  # only reached when the caller already has PIL

    w, h = img.size
    name = f"<PIL image {w}x{h}>"
    if w * h > max_pixels:
        raise ImageError(f"{name}: over the limit of {max_pixels:,} pixels")
    try:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit (or 32-bit integer) gray: the same scaling as a uint16 array
            return to_bgr8(np.clip(np.asarray(img), 0, 65535).astype(np.uint16), name=name)
        has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        rgb = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    except (OSError, ValueError, SyntaxError) as e:  # PIL reports truncated/corrupt data lazily
        raise ImageError(f"{name}: cannot decode image ({e})") from None
    order = [2, 1, 0, 3] if has_alpha else [2, 1, 0]
    return to_bgr8(np.ascontiguousarray(rgb[:, :, order]), name=name)


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, and each folder replaced by the image files directly inside it (sorted).

    Paths that do not exist are kept, so that reading them reports a clear error in its place.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out
