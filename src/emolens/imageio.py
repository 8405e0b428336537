"""Every way an image reaches emolens, decoded safely in one place.

:func:`load_image` accepts a path, raw bytes, a PIL image or a numpy array and
always returns an 8-bit, 3-channel **BGR** array (OpenCV's channel order).

Safety: what an image will cost is read from the file header *before* decoding (:func:`check_header`), and
nothing is decoded whose cost the header does not give: images with more than ``max_pixels`` pixels are refused,
so a small file that claims to be 30000×30000 (a "decompression bomb") never allocates gigabytes; a file far too
small for the size it claims is refused as corrupt; the decoded samples may take at most
:data:`DECODED_BYTES_PER_PIXEL` bytes a pixel of the cap (16-bit and float images); a JPEG may have at most
``max_scans`` scans (each one more pass over the image). PNG, JPEG, GIF, BMP, WebP and TIFF headers are read by
:func:`header_size`, the way their decoders read them; other formats are refused. Conversion to 8-bit BGR works in
strips of rows (:func:`to_bgr8`). OpenCV's own cap, which ``emolens/__init__.py`` sets to
:data:`DEFAULT_MAX_PIXELS` through ``OPENCV_IO_MAX_IMAGE_PIXELS`` before anything imports cv2, stays as a second
line. Every failure raises :class:`ImageError` with a message that names the input; OpenCV's own log lines about a
bad file are silenced while it decodes.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

DEFAULT_MAX_PIXELS = 100_000_000
"""Default cap on width × height (100 megapixels, bigger than any phone photo)."""

DEFAULT_MAX_SCANS = 32
"""Default cap on the scans of a JPEG. A progressive JPEG is decoded once per scan, over the whole image: libjpeg's
progressive files have 10 scans (6 for gray), while 500 copies of a 61-byte scan made a 264 KB file of 6000x6600
that took 32 s to decode. A baseline JPEG has 1 (3 when its components are stored apart)."""

DECODED_BYTES_PER_PIXEL = 8
"""The decoded array of an image may take at most this many bytes a pixel of the pixel cap: a 16-bit RGBA image at
the cap, whatever its depth (a TIFF of 32- or 64-bit samples must be that much smaller)."""

# OpenCV has its own (much larger) cap.  emolens/__init__.py sets this already, before any submodule
# imports cv2; repeated here so the module states its own requirement.  No effect once cv2 is loaded.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))
import cv2  # noqa: E402

from .quiet import quiet_opencv  # noqa: E402

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]  # noqa: UP007
"""Anything :func:`load_image` accepts (``Any`` stands for a ``PIL.Image.Image``)."""


class ImageError(ValueError):
    """An input could not be read as an image; the message names the input and the reason."""


def printable(text: str) -> str:
    """``text`` as any terminal or strict UTF-8 stream can show it, on one line.

    A file name's bytes that are not UTF-8 (Python keeps them as surrogate escapes) become ``\\xNN``
    (``b"a\\xe9\\xff.jpg"`` prints as ``a\\xe9\\xff.jpg``); control characters such as a newline
    become ``\\n``, ``\\x1b`` ...; everything else, accents and other scripts included, is kept.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape of an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def describe(src: object) -> str:
    """A short human-readable name for an input, used in error messages and results (a path through
    :func:`printable`, so it can always be printed)."""
    if isinstance(src, (str, os.PathLike)):
        return printable(os.fsdecode(src))
    if isinstance(src, memoryview):
        return f"<{src.nbytes} bytes>"
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    return f"<{type(src).__name__}>"


SIZED_FORMATS = ("png", "gif", "bmp", "webp", "jpeg", "tiff")
"""The formats whose width and height :func:`header_size` reads before anything is decoded: the only ones decoded."""
SIZED_NAMES = "PNG, JPEG, GIF, BMP, WebP or TIFF"


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

    Returns ``None`` when the format is not one of those or the header is unreadable (then :func:`decode_bytes`
    refuses the file: nothing is decoded whose size is not known first). The header is read the way the decoder
    reads it: JPEG markers as libjpeg finds them (:func:`jpeg_layout`), TIFF sizes of every integer type libtiff
    takes, signed ones included.
    """
    kind = image_format(data)
    try:
        if kind == "png" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if kind == "gif":
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if kind == "bmp":
            return _bmp_size(data)
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
            layout = jpeg_layout(data)
            return (layout.width, layout.height) if layout.sof is not None else None
        if kind == "tiff":
            tags = _tiff_tags(data, {256, 257})  # ImageWidth, ImageLength of the first image
            if tags is not None and 256 in tags and 257 in tags:
                return tags[256], tags[257]
            return None
    except (struct.error, IndexError):
        return None
    return None


BMP_HEADERS = {12: "BITMAPCOREHEADER (OS/2 1.x)", 16: "OS/2 2.x, short", 40: "BITMAPINFOHEADER",
               52: "BITMAPV2INFOHEADER", 56: "BITMAPV3INFOHEADER", 64: "OS/2 2.x BITMAPINFOHEADER2",
               108: "BITMAPV4HEADER", 124: "BITMAPV5HEADER"}
"""The BMP info headers by their size: only the 12-byte core header stores width and height in 16 bits."""


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a BMP file: unsigned 16-bit in the OS/2 1.x core header, signed 32-bit in every
    later one (a negative height means the rows are stored top-down; a negative width is invalid)."""
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        w, h = struct.unpack("<HH", data[18:22])
        return w, h
    if header >= 16:
        w, h = struct.unpack("<ii", data[18:26])
        return w, abs(h)
    return None


def _bmp_layout(data: bytes) -> tuple[int, int, int]:
    """(pixel data offset, bits per pixel, compression) of a BMP file; the core header has no compression."""
    (offset, header) = struct.unpack("<II", data[10:18])
    if header == 12:
        (bits,) = struct.unpack("<H", data[24:26])
        return offset, bits, 0
    (bits,) = struct.unpack("<H", data[28:30])
    (compression,) = struct.unpack("<I", data[30:34]) if header >= 20 else (0,)
    return offset, bits, compression


# TIFF field types that hold integers, as libtiff reads an integer tag from any of them: BYTE, SHORT, LONG, LONG8
# (BigTIFF) and the signed SBYTE, SSHORT, SLONG, SLONG8 (a size stored as SLONG once went unread and was decoded).
_TIFF_INT_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q", 6: "b", 8: "h", 9: "i", 17: "q"}


def _tiff_tags(tiff: bytes, wanted: set[int]) -> dict[int, int] | None:
    """The integer value (the first, for a tag with several) of the ``wanted`` tags in the first IFD of
    TIFF data (classic or BigTIFF).

    Used for the TIFF image size, samples and compression, and for the EXIF orientation (EXIF is
    TIFF-structured).  Returns ``None`` when the data is not TIFF, the IFD lies outside it or a wanted tag
    appears twice with different values (which one the decoder takes is not for emolens to guess); raises
    ``struct.error`` when cut short.
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
            fmt = order + _TIFF_INT_TYPES[kind]
            field, field_fmt = (8, "Q") if entry_size == 20 else (4, "I")  # the size of the count and value fields
            (count,) = struct.unpack(order + field_fmt, tiff[e + 4 : e + 4 + field])
            value_at = e + 4 + field  # the value is left-justified in its field ...
            if count * struct.calcsize(fmt) > field:  # ... unless it does not fit: then the field holds its offset
                (value_at,) = struct.unpack(order + field_fmt, tiff[value_at : value_at + field])
            (value,) = struct.unpack(fmt, tiff[value_at : value_at + struct.calcsize(fmt)])
            if found.setdefault(tag, value) != value:
                return None
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


# A marker, as libjpeg finds it: 0xFF (and any 0xFF fill bytes), then a code that is not 0x00 (a stuffed data byte),
# a restart marker RST0-7 or TEM (markers without a length, skipped). libjpeg skips any other bytes it meets where it
# expects a marker ("Corrupt JPEG data: N extraneous bytes before marker"), as this search does.
_JPEG_MARKER = re.compile(rb"\xff+([^\x00\x01\xd0-\xd7\xff])")
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..SOF15 but DHT, JPG and DAC


@dataclass
class JpegLayout:
    """What :func:`jpeg_layout` reads from a JPEG file's markers, the way libjpeg reads them."""

    sof: int | None = None
    """The first frame marker (0xC0 baseline ... 0xCF): which coding the image uses; ``None``: none found."""
    width: int = 0
    height: int = 0
    components: int = 0
    scans: int = 0
    """Start-of-scan markers before the end of the image: each is one more pass over the image's coefficients."""
    complete: bool = False
    """An end-of-image marker follows the scans (a file cut short inside its scan data has none)."""


def jpeg_layout(data: bytes) -> JpegLayout:
    """The frame size, the number of scans and whether the image is complete, from a JPEG file's markers.

    The markers are found as libjpeg finds them: bytes between segments that are not a marker are skipped (a
    stray byte before the frame header once hid the size from emolens while libjpeg decoded the image), a
    segment's length is skipped over, and the scan data is searched for the next marker (0xFF is stuffed there,
    restart markers belong to the scan). Segments inside others (an EXIF thumbnail in APP1) are not looked into;
    what follows the end of the image (a motion photo's video) is not read."""
    out = JpegLayout()
    if data[:2] != b"\xff\xd8":
        return out
    i, n = 2, len(data)
    while True:
        m = _JPEG_MARKER.search(data, i)
        if m is None:
            return out
        code, at = m.group(1)[0], m.start(1)
        if code == 0xD9:  # end of image
            out.complete = out.scans > 0
            return out
        if code == 0xD8:  # a second start of image: libjpeg stops with an error
            return out
        if at + 3 > n:
            return out
        (length,) = struct.unpack(">H", data[at + 1 : at + 3])
        if length < 2:
            return out
        if code in _JPEG_SOF and out.sof is None:
            if at + 9 > n:
                return out
            h, w = struct.unpack(">HH", data[at + 4 : at + 8])
            out.sof, out.width, out.height, out.components = code, w, h, data[at + 8]
        elif code == 0xDA:
            out.scans += 1
        i = at + 1 + length


DEFAULT_MAX_FILE_BYTES = 200 * 1024 * 1024
"""Default cap on an image file's size (200 MB), checked before a byte is read: four times a 100-megapixel
photo stored as a top-quality JPEG, and enough for most uncompressed ones."""

_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def read_file(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Read an image file's bytes, turning every OS error into a clear :class:`ImageError`.

    Only regular files are read, and only up to ``max_bytes``: both are checked on the opened file before
    anything is read from it (a named pipe would block until a writer comes, ``/dev/zero`` never ends).
    """
    name = describe(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)  # a pipe opens without waiting
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{name}: is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            what = next((kind for test, kind in _NOT_REGULAR if test(info.st_mode)), "not a regular file")
            raise ImageError(f"{name}: is {what}, not an image file; only regular files are read")
        if info.st_size > max_bytes:
            raise ImageError(f"{name}: file is {_size(info.st_size)}, over the limit of {_size(max_bytes)} for an "
                             "image file (raise it if you trust this file)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)  # a file that grows while it is read stops at the cap too
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ImageError(f"{name}: file is over the limit of {_size(max_bytes)} for an image file")
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    return data


DEFLATE_MAX_RATIO = 1032
"""Deflate (PNG, deflate TIFF) never expands more than 1032:1: 258 bytes per match of two 1-bit codes."""
LZW_MAX_PIXELS_PER_BYTE = 4096 * 8 / 12
"""LZW (GIF, LZW TIFF): a code is at least 12 bits once strings are long, and a string is at most 4096 long."""

# TIFF compression tag -> the most raw bytes one stored byte can hold (JPEG: see _smallest_file)
_TIFF_RATIO = {1: 1.0, 5: LZW_MAX_PIXELS_PER_BYTE, 8: DEFLATE_MAX_RATIO, 32946: DEFLATE_MAX_RATIO, 32773: 64.0}


def _smallest_file(data: bytes, kind: str | None, w: int, h: int, jpeg: JpegLayout | None = None) -> int:
    """The fewest bytes any valid file of this format can hold a ``w`` × ``h`` image in (0: no bound known).

    Each figure is the codec's own limit, not a guess, so no real file falls below it:

    - JPEG with Huffman coding (baseline, progressive, lossless): every 8×8 block of a full-resolution
      component costs at least one bit in its first scan (its DC code).  Arithmetic coding has no such floor.
    - PNG: the filtered rows, deflated (:data:`DEFLATE_MAX_RATIO`).
    - GIF: the screen's pixels, LZW-coded (:data:`LZW_MAX_PIXELS_PER_BYTE`).
    - BMP without compression: every row, padded to 4 bytes (the last one may lack its padding); RLE can
      skip pixels, so no floor.
    - TIFF: the raw samples under its compression (none, LZW, deflate, PackBits; JPEG as JPEG); CCITT and
      the rest: no floor.
    - WebP: no floor; its lossless coder stores a flat image in almost nothing (a flat 4000×4000 image in
      680 bytes), so only the pixel cap and WebP's own 16383-pixel side apply.
    """
    blocks = -(-w // 8) * -(-h // 8)
    if kind == "jpeg":
        sof = (jpeg or jpeg_layout(data)).sof
        return 0 if sof is None or sof >= 0xC9 else -(-blocks // 8)  # 0xC9..0xCF: arithmetic coding
    if kind == "png" and len(data) >= 26:
        depth, colour = data[24], data[25]
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
        row = 1 + -(-w * channels * depth // 8)  # the filter byte and the row's samples
        return -(-h * row // DEFLATE_MAX_RATIO)
    if kind == "gif":
        return int(w * h / LZW_MAX_PIXELS_PER_BYTE)
    if kind == "bmp":
        offset, bits, compression = _bmp_layout(data)
        if compression not in (0, 3, 6) or bits not in (1, 2, 4, 8, 16, 24, 32):  # RLE, embedded JPEG/PNG ...
            return 0
        row = -(-w * bits // 8)
        return offset + (h - 1) * (-(-row // 4) * 4) + row
    if kind == "tiff":
        tags = _tiff_tags(data, {258, 259, 277}) or {}
        compression = tags.get(259, 1)
        if compression in (6, 7):  # JPEG inside TIFF
            return -(-blocks // 8)
        raw = h * -(-w * max(1, tags.get(277, 1)) * max(1, tags.get(258, 1)) // 8)
        ratio = _TIFF_RATIO.get(compression)
        return int(raw / ratio) if ratio else 0
    return 0


def decode_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_scans: int = DEFAULT_MAX_SCANS) -> np.ndarray:
    """Decode an encoded PNG, JPEG, GIF, BMP, WebP or TIFF image into 8-bit BGR.

    The EXIF orientation of JPEG, PNG (``eXIf``), WebP and TIFF files is applied; 16-bit images
    are scaled to 8 bits; gray becomes 3-channel; transparent pixels of RGBA images are composited
    on white.

    Nothing is decoded before its cost is known from the header (:func:`check_header`): the size (over
    ``max_pixels``: refused), the file's floor (too small for that size: corrupt), the decoded samples (at most
    :data:`DECODED_BYTES_PER_PIXEL` bytes a pixel of the cap) and, for JPEG, the number of scans (over
    ``max_scans``: refused). Other formats (JPEG 2000, Radiance HDR, PNM ...) are refused: their size is not
    read before OpenCV decodes them.
    """
    if not data:
        raise ImageError(f"{name}: empty input (0 bytes)")
    kind = image_format(data)
    if kind is None:
        raise ImageError(f"{name}: cannot decode image (not a {SIZED_NAMES} file)")
    jpeg = jpeg_layout(data) if kind == "jpeg" else None
    check_header(data, name=name, max_pixels=max_pixels, max_scans=max_scans, jpeg=jpeg)
    buf = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR applies the EXIF orientation; IMREAD_UNCHANGED keeps alpha and 16 bits (and the
    # orientation of PNG/WebP is applied below; OpenCV's TIFF decoder applies TIFF's own). OpenCV reads an
    # OS/2 1.x BMP (12-byte header, no alpha) as gray with IMREAD_UNCHANGED, so it gets IMREAD_COLOR too.
    core_bmp = kind == "bmp" and data[14:18] == b"\x0c\0\0\0"
    flags = cv2.IMREAD_COLOR if jpeg is not None or core_bmp else cv2.IMREAD_UNCHANGED
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
        why = "truncated or corrupt JPEG" if jpeg is not None else f"corrupt {kind.upper()} file"
        raise ImageError(f"{name}: cannot decode image ({why})")
    if jpeg is not None and not jpeg.complete:
        # libjpeg pads a truncated file with grey and only warns; refuse it instead.
        raise ImageError(f"{name}: cannot decode image (truncated JPEG: end-of-image marker missing)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{name}: image is {img.shape[1]}x{img.shape[0]}, over the limit of {max_pixels:,} pixels")
    bgr = to_bgr8(img, name=name)  # in strips: 16-bit or float samples are never copied whole
    del img
    return bgr if jpeg is not None else apply_orientation(bgr, exif_orientation(data))


def check_header(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_scans: int = DEFAULT_MAX_SCANS, jpeg: JpegLayout | None = None) -> tuple[int, int]:
    """What an image will cost to decode, from its header only; raises :class:`ImageError` when it is too much or
    the header cannot say. Returns (width, height). See :func:`decode_bytes`."""
    kind = image_format(data)
    label = kind.upper() if kind else "image"
    size = header_size(data)
    if size is None:
        raise ImageError(f"{name}: cannot decode image (truncated or corrupt {label} file: its header gives no "
                         "image size, and nothing is decoded without one)")
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: image header gives an invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageError(
            f"{name}: image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
            "(raise max_pixels if you trust this file)"
        )
    if kind == "jpeg":
        jpeg = jpeg or jpeg_layout(data)
        if jpeg.scans > max_scans:
            raise ImageError(
                f"{name}: JPEG has {jpeg.scans:,} scans, over the limit of {max_scans:,} (each scan is one more pass "
                "over the whole image; raise max_scans if you trust this file)"
            )
    try:
        need = _smallest_file(data, kind, w, h, jpeg)
        samples = _decoded_bytes_per_pixel(data, kind)
    except (struct.error, IndexError):
        need, samples = 0, 0  # a header cut short: the decoder says what is wrong
    budget = max_pixels * DECODED_BYTES_PER_PIXEL
    if w * h * samples > budget:
        raise ImageError(
            f"{name}: image is {w}x{h} with {samples} bytes of samples a pixel: {_size(w * h * samples)} decoded, "
            f"over the limit of {_size(budget)} ({DECODED_BYTES_PER_PIXEL} bytes a pixel of the limit of "
            f"{max_pixels:,} pixels; raise max_pixels if you trust this file)"
        )
    if len(data) < need:
        raise ImageError(
            f"{name}: cannot decode image (corrupt {label} file: {len(data):,} bytes "
            f"cannot hold the {w}x{h} image its header claims; the smallest valid file is {need:,} bytes)"
        )
    return w, h


def _decoded_bytes_per_pixel(data: bytes, kind: str | None) -> int:
    """Bytes a pixel of the array OpenCV decodes a file into, where it can exceed 8 (a 16-bit RGBA PNG): TIFF
    with 32- or 64-bit samples, or more than 4 of them. 0 for the rest (at most 8 by their format)."""
    if kind != "tiff":
        return 0
    tags = _tiff_tags(data, {258, 277}) or {}
    bits, spp = max(1, tags.get(258, 1)), max(1, tags.get(277, 1))
    per_sample = 1 if bits <= 8 else 2 if bits <= 16 else 4 if bits <= 32 else 8
    return per_sample * spp


STRIP_BYTES = 4 * 2**20
""":func:`to_bgr8` converts an image a strip of rows at a time, each this many bytes of samples or fewer: a 16-bit
RGBA image of 6000x6600 composited whole made six float32 copies (2.3 GB for a 473 KB PNG)."""


def to_bgr8(arr: np.ndarray, *, name: str = "<array>") -> np.ndarray:
    """Normalise an array to contiguous uint8 H×W×3 (keeps channel order; composites alpha on white).

    uint16 is scaled by 1/256, floats in [0, 1] by 255 (values over 1.5 are taken as 0..255), other integers
    clipped to 0..255, bool gives 0 or 255. The work is done in strips of rows (:data:`STRIP_BYTES`): besides the
    input, the memory it takes is the 8-bit result and one strip.
    """
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{name}: image has no pixels (shape {arr.shape})")
    if not (arr.dtype in (np.uint8, np.uint16, np.bool_) or np.issubdtype(arr.dtype, np.floating)
            or np.issubdtype(arr.dtype, np.integer)):
        raise ImageError(f"{name}: unsupported array dtype {arr.dtype}")
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    rows = max(1, STRIP_BYTES // max(1, w * (arr.shape[2] if arr.ndim == 3 else 1) * arr.itemsize))
    scale = 1.0
    if np.issubdtype(arr.dtype, np.floating):
        top = 0.0
        for y in range(0, h, rows):
            strip = arr[y : y + rows]
            if not np.isfinite(strip).all():
                raise ImageError(f"{name}: float image contains NaN or infinity")
            top = max(top, float(strip.max(initial=0.0)))
        # floats are documented as [0, 1]; clearly larger values (> 1.5) are taken as 0..255
        scale = 255.0 if top <= 1.5 else 1.0
    out = np.empty((h, w, 3), np.uint8)
    for y in range(0, h, rows):
        _strip_to_bgr8(arr[y : y + rows], out[y : y + rows], scale)
    return out


def _strip_to_bgr8(arr: np.ndarray, out: np.ndarray, scale: float) -> None:
    """One strip of :func:`to_bgr8`: ``arr`` (any supported dtype, 1, 3 or 4 channels) into ``out`` (uint8 BGR)."""
    if arr.dtype == np.uint8:
        img = arr
    elif arr.dtype == np.uint16:
        img = (arr >> 8).astype(np.uint8)
    elif arr.dtype == np.bool_:
        img = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        img = np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    else:
        img = np.clip(arr, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        cv2.cvtColor(img, cv2.COLOR_GRAY2BGR, dst=out)
    elif img.shape[2] == 3:
        out[:] = img
    else:  # alpha on white, in 16-bit integers: round((c·a + 255·(255 − a)) / 255) = (255 − a) + round(c·a / 255),
        # and round(c·a / 255) = (t + (t >> 8)) >> 8 with t = c·a + 128, exact for every 8-bit c and a
        alpha = img[:, :, 3:4].astype(np.uint16)
        t = img[:, :, :3] * alpha
        t += 128
        t += t >> 8
        t >>= 8
        t += 255 - alpha
        out[:] = t


def load_image(src: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_scans: int = DEFAULT_MAX_SCANS) -> np.ndarray:
    """Load any supported input as a uint8 H×W×3 **BGR** array.

    Args:
        src: one of
            - a path (``str`` or ``pathlib.Path``) to an image file;
            - the encoded file contents as ``bytes`` / ``bytearray`` / ``memoryview``;
            - a ``PIL.Image.Image`` (any mode; its EXIF orientation is applied);
            - a numpy array in **BGR** order (as ``cv2.imread`` and ``cv2.VideoCapture``
              return it): H×W gray, H×W×3 BGR or H×W×4 BGRA, dtype uint8, uint16 or
              float in [0, 1].  Convert RGB arrays first (``arr[..., ::-1]``).
        max_pixels: refuse images with more pixels than this (checked before decoding); the decoded samples
            may take at most :data:`DECODED_BYTES_PER_PIXEL` bytes a pixel of it.
        max_file_bytes: refuse a path to a larger file (checked before reading it); only regular files
            are read (not a named pipe or a device).
        max_scans: refuse a JPEG of more scans (counted before decoding; see :data:`DEFAULT_MAX_SCANS`).

    Raises:
        ImageError: the input is missing, empty, not a regular file, not an image, corrupt or too large.
    """
    if isinstance(src, (str, os.PathLike)):
        return decode_bytes(read_file(src, max_bytes=max_file_bytes), name=describe(src), max_pixels=max_pixels,
                            max_scans=max_scans)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return decode_bytes(bytes(src), name=describe(src), max_pixels=max_pixels, max_scans=max_scans)
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


def expand_inputs(inputs: list[str | os.PathLike], *, recursive: bool = False) -> list[Path]:
    """Files as given, and each folder replaced by the image files directly inside it (sorted), or with
    ``recursive`` every image file under it, sub-folders included (sorted by path; hidden files and folders are
    left out, and symbolic links to folders are not followed, so a link loop cannot run for ever).

    Paths that do not exist are kept, so that reading them reports a clear error in its place.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += _images_under(p) if recursive else sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(p)
    return out


def _images_under(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def no_images_message(inputs: list[str | os.PathLike]) -> str:
    """The one-line error for inputs in which :func:`expand_inputs` found no image file; when a folder's pictures
    are in its sub-folders (a dataset of class folders), it says so and names ``--recursive``."""
    for item in inputs:
        p = Path(item)
        if p.is_dir() and _images_under(p):
            return (f"no image files directly in {printable(str(p))}: its sub-folders hold some, and they are not "
                    "searched unless you add --recursive")
    return "no image files found in the given folder(s)"


def encode_image(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes | None:
    """``image`` encoded as ``ext`` (``".png"``, ``".jpg"`` ...), or ``None`` when OpenCV cannot (without its log
    lines on stderr: the caller reports the failure)."""
    with quiet_opencv():
        try:
            ok, buf = cv2.imencode(ext, image, params or [])
        except cv2.error:
            return None
    return buf.tobytes() if ok else None
