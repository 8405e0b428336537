"""A corpus of bad inputs, made fresh by the tests: every kind of file that once hung, crashed or misled emolens.

:func:`corpus_bytes` gives the ones that are bytes (for the library and the server); :func:`corpus_files` writes
them into a folder and adds what only a path can be (a named pipe, a device, a folder named like a picture, a
missing file, a name that is not UTF-8, a file over the size cap). Each has a short key that says what it is.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def jpeg_claiming(width: int, height: int) -> bytes:
    """A complete 8×8 JPEG (about 630 bytes) whose frame header claims ``width`` × ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR for ``width`` × ``height`` (8-bit gray) and a few hundred bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100_000, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A 2×2 GIF whose logical screen claims ``width`` × ``height``."""
    buf = io.BytesIO()
    Image.new("L", (2, 2), 7).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def make_bmp(img: np.ndarray, header: int = 40, *, top_down: bool = False, height_field: int | None = None) -> bytes:
    """A 24-bit BMP of a BGR image with an info header of ``header`` bytes: 12 (OS/2 1.x BITMAPCOREHEADER,
    16-bit width and height), 40, 52, 56, 64 (OS/2 2.x), 108 or 124; ``top_down``: a negative height, rows
    stored top first. ``height_field`` overrides the stored height (a header that lies)."""
    h, w = img.shape[:2]
    stride = (w * 3 + 3) // 4 * 4
    pixels = b"".join(row.tobytes().ljust(stride, b"\0") for row in (img if top_down else img[::-1]))
    stored_h = height_field if height_field is not None else (-h if top_down else h)
    if header == 12:
        info = struct.pack("<IHHHH", 12, w, stored_h, 1, 24)
    else:
        info = struct.pack("<IiiHHIIiiII", header, w, stored_h, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
        info = info.ljust(header, b"\0")
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def corrupt_png(photo: bytes) -> bytes:
    """A real photo as PNG with bytes in its image data overwritten: libpng stops with a CRC error."""
    img = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    data = bytearray(cv2.imencode(".png", cv2.resize(img, (160, 200)))[1].tobytes())
    data[200:260] = b"x" * 60
    return bytes(data)


def noisy_jpeg(photo: bytes) -> bytes:
    """A real photo with 40 bytes of its scan zeroed: libjpeg decodes it, printing "Corrupt JPEG data" warnings."""
    data = bytearray(photo)
    middle = len(data) // 2
    data[middle : middle + 40] = b"\0" * 40
    return bytes(data)


def corpus_bytes(photo: bytes) -> dict[str, bytes]:
    """Bad inputs as bytes, by key; ``photo`` is a real JPEG to damage. Every one must be refused with a clear
    error (the library's ImageError, the server's 4xx), except ``noisy_jpeg``, which decodes (with libjpeg
    warnings that must not reach the user)."""
    tiny = cv2.imencode(".png", np.full((40, 40, 3), 90, np.uint8))[1].tobytes()
    huge_tiff = cv2.imencode(".tiff", np.zeros((11000, 11000), np.uint8), [cv2.IMWRITE_TIFF_COMPRESSION, 8])[1]
    bmp = make_bmp(np.zeros((4, 4, 3), np.uint8))
    return {
        "text": b"this is not an image\n",
        "html": b"<!doctype html><html><body>hello</body></html>",
        "truncated_jpeg": photo[: len(photo) // 2],
        "jpeg_missing_tail": photo[:-100],
        "jpeg_header_only": photo[:600],
        "corrupt_png": corrupt_png(photo),
        "truncated_png": tiny[: len(tiny) // 2],
        "png_signature_only": b"\x89PNG\r\n\x1a\n",
        "jpeg_claims_9000x9000": jpeg_claiming(9000, 9000),
        "jpeg_claims_6000x6600": jpeg_claiming(6000, 6600),
        "jpeg_claims_0x100": jpeg_claiming(0, 100),
        "png_claims_6000x6000": png_claiming(6000, 6000),
        "png_claims_30000x30000": png_claiming(30000, 30000),
        "gif_claims_6000x6000": gif_claiming(6000, 6000),
        "bmp_claims_6000x6000": bmp[:18] + struct.pack("<ii", 6000, 6000) + bmp[26:],
        "bmp_negative_width": bmp[:18] + struct.pack("<i", -4) + bmp[22:],
        "tiff_11000x11000": huge_tiff.tobytes(),
        "ppm_claims_20000x20000": b"P6\n20000 20000\n255\n",
        "zero_bytes_after_riff": b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 20,
        "noisy_jpeg": noisy_jpeg(photo),
    }


def corpus_files(folder: Path, photo: bytes, *, big_mb: float = 250) -> list[Path]:
    """Every bad input of :func:`corpus_bytes` as a file in ``folder``, plus those only a path can be: a named
    pipe, /dev/zero, a missing file, a symlink loop, a file over the size cap (``big_mb``, sparse: it takes no
    disk space), and garbage under a name that is not UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, data in corpus_bytes(photo).items():
        ext = ".png" if "png" in key else ".gif" if "gif" in key else ".bmp" if "bmp" in key else ".jpg"
        p = folder / f"{key}{ext}"
        p.write_bytes(data)
        paths.append(p)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    fifo = folder / "named_pipe.jpg"
    os.mkfifo(fifo)
    loop = folder / "loop.jpg"
    os.symlink(loop.name, loop)
    big = folder / "over_the_size_cap.jpg"
    with open(big, "wb") as f:
        f.truncate(int(big_mb * 2**20))
    odd = Path(os.fsdecode(bytes(folder) + b"/not_utf8_\xe9\xff.jpg"))
    odd.write_bytes(b"garbage")
    return [*paths, empty, fifo, loop, big, odd, folder / "missing.jpg", Path("/dev/zero")]
