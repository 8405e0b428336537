"""A corpus of bad inputs, made fresh by the tests: every kind of file that once hung, crashed or misled emolens.

:func:`corpus_bytes` gives the ones that are bytes (for the library and the server); :func:`corpus_files` writes
them into a folder and adds what only a path can be (a named pipe, a device, a folder named like a picture, a
missing file, a name that is not UTF-8, a file over the size cap). Each has a short key that says what it is.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
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


def progressive_jpeg(width: int, height: int, *, extra_scans: int = 0, color: bool = True) -> bytes:
    """A flat progressive JPEG (libjpeg's 10 scans; 6 in gray) with ``extra_scans`` copies of its last scan added
    (61 bytes each): libjpeg decodes it, warning "Inconsistent progression sequence", one more pass over the whole
    image per scan (500 extra scans: 264 KB, 32 s at 6000x6600)."""
    img = np.full((height, width, 3) if color else (height, width), 128, np.uint8)
    data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    eoi = data.rindex(b"\xff\xd9")
    last = data.rindex(b"\xff\xda", 0, eoi)
    return data[:eoi] + data[last:eoi] * extra_scans + data[eoi:]


def with_stray_byte_before_sof(jpeg: bytes) -> bytes:
    """A JPEG with one byte of garbage before its frame header: libjpeg skips it ("Corrupt JPEG data: 1 extraneous
    bytes before marker 0xc0") and decodes the image; emolens' header reader once stopped there, knew no size and
    let the file be decoded unchecked."""
    sof = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1, 0xC2))
    return jpeg[:sof] + b"\x00" + jpeg[sof:]


def tiff_signed_size(width: int, height: int, *, pixels: bool = False) -> bytes:
    """A little-endian 8-bit gray TIFF whose ImageWidth and ImageLength are SLONG (signed, type 9), as libtiff
    accepts them; with ``pixels=False`` no pixel data at all (a header that claims ``width`` x ``height``)."""
    data = b"\x80" * (width * height) if pixels else b""
    entries = [(256, 9, width), (257, 9, height), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1),
               (278, 4, height), (279, 4, min(width * height, 2**32 - 1))]
    out = b"II*\0" + struct.pack("<I", 8 + len(data)) + data + struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        out += struct.pack("<HHI", tag, kind, 1) + struct.pack("<H" if kind == 3 else "<I", value).ljust(4, b"\0")
    return out + struct.pack("<I", 0)


def png16_rgba(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG of transparent black, deflated row by row (6000x6600: 473 KB, 317 MB decoded; no large
    array is made to write it)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    z = zlib.compressobj(9)
    row = b"\0" * (1 + 8 * width)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def mjpeg_avi(frames: list[bytes], width: int, height: int, *, fps: int = 5,
              claimed_frames: int | None = None) -> bytes:
    """An MJPEG AVI of the given JPEG frames whose headers declare ``width`` x ``height`` and ``claimed_frames``
    frames (default: as many as there are)."""
    def chunk(fourcc: bytes, body: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(body)) + body + b"\0" * (len(body) % 2)

    n = claimed_frames or len(frames)
    avih = struct.pack("<14I", 1_000_000 // fps, 0, 0, 0x10, n, 0, 1, 0, width, height, 0, 0, 0, 0)
    strh = b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, fps, 0, n, 0, 2**32 - 1, 0, 0, 0,
                                     min(width, 32767), min(height, 32767))
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    strl = chunk(b"LIST", b"strl" + chunk(b"strh", strh) + chunk(b"strf", strf))
    hdrl = chunk(b"LIST", b"hdrl" + chunk(b"avih", avih) + strl)
    movi, index, offset = b"", b"", 4
    for f in frames:
        c = chunk(b"00dc", f)
        index += b"00dc" + struct.pack("<III", 0x10, offset, len(f))
        offset += len(c)
        movi += c
    body = b"AVI " + hdrl + chunk(b"LIST", b"movi" + movi) + chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def peak_rss_mb(args: list[str], *, timeout: float = 120, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``args`` and return it with its peak resident memory in MB (the largest of its process tree's: measured
    by a small Python parent whose only child it is)."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:])\n"
            "sys.stderr.write('\\npeak_rss_kb=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(r.returncode)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=timeout, **kwargs)
    err = r.stderr.decode("utf-8", "replace")
    head, _, tail = err.rpartition("\npeak_rss_kb=")
    r.stderr = head.encode("utf-8")
    return r, int(tail.strip()) / 1024


def corpus_bytes(photo: bytes) -> dict[str, bytes]:
    """Bad inputs as bytes, by key; ``photo`` is a real JPEG to damage. Every one must be refused with a clear
    error (the library's ImageError, the server's 4xx), except ``noisy_jpeg``, which decodes (with libjpeg
    warnings that must not reach the user). Each is refused from its header: the JPEG of 2,010 scans (about 120 KB)
    for its scans, the one with a stray byte before its frame header and the TIFFs whose size is SLONG for the size
    they claim."""
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
        # issue 28: what the header reader could not read, and work the header hides
        "jpeg_2000_scans": progressive_jpeg(256, 256, extra_scans=2000),
        "jpeg_stray_byte_claims_6000x6600": with_stray_byte_before_sof(jpeg_claiming(6000, 6600)),
        "tiff_slong_claims_9000x9000": tiff_signed_size(9000, 9000),
        "tiff_slong_claims_6000x6000": tiff_signed_size(6000, 6000),
    }


def corpus_files(folder: Path, photo: bytes, *, big_mb: float = 250) -> list[Path]:
    """Every bad input of :func:`corpus_bytes` as a file in ``folder``, plus those only a path can be: a named
    pipe, /dev/zero, a missing file, a symlink loop, a file over the size cap (``big_mb``, sparse: it takes no
    disk space), and garbage under a name that is not UTF-8."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, data in corpus_bytes(photo).items():
        ext = ".png" if "png" in key else ".gif" if "gif" in key else ".bmp" if "bmp" in key else \
            ".tif" if "tiff" in key else ".jpg"
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


# ----------------------------------------------------------------------------- hostile models (need the onnx package)
GOOD_META = {"labels": ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"], "input_size": 48,
             "channels": 1, "mean": 0.5, "std": 0.25, "name": "tiny", "format": 1}
"""The metadata of :func:`tiny_model`'s default: a valid emolens model of 7 labels on 48x48 gray crops."""


def tiny_model(path: Path, meta: dict | str | None = None, *, outputs: int = 7, channels: int = 1, size: int = 48,
               dynamic_outputs: bool = False, body: str = "plain") -> Path:
    """A small emolens ONNX model: N×C×S×S in, N×``outputs`` logits out (each logit the crop's mean times a weight).

    ``meta``: the metadata (a dict, or the raw text stored under the ``emolens`` key; default :data:`GOOD_META`);
    ``dynamic_outputs``: the output's size is not written in the graph (only a call tells it); ``body``: ``plain``,
    ``loop`` (a Loop of 10^15 iterations first) or ``expand`` (a 60000x60000 Expand first, 14 GB of floats)."""
    import json as _json

    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             h.make_node("Unsqueeze", ["m", "ax"], ["m2"]), h.make_node("Mul", ["m2", "w"], ["z"])]
    inits = [h.make_tensor("ax", T.INT64, [1], [1]),
             h.make_tensor("w", T.FLOAT, [1, outputs], [0.1 * (k + 1) for k in range(outputs)])]
    if body == "loop":
        loop_body = h.make_graph(
            [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v_in", "one"], ["v_out"])],
            "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                     h.make_tensor_value_info("v_in", T.FLOAT, [])],
            [h.make_tensor_value_info("cond_out", T.BOOL, []), h.make_tensor_value_info("v_out", T.FLOAT, [])],
            initializer=[h.make_tensor("one", T.FLOAT, [], [1.0])])
        nodes += [h.make_node("Loop", ["trips", "cond", "v0"], ["extra"], body=loop_body)]
        inits += [h.make_tensor("trips", T.INT64, [], [10**15]), h.make_tensor("cond", T.BOOL, [], [True]),
                  h.make_tensor("v0", T.FLOAT, [], [0.0])]
    elif body == "expand":
        nodes += [h.make_node("Expand", ["one", "shape"], ["big"]), h.make_node("ReduceMax", ["big"], ["extra"],
                                                                                  keepdims=0)]
        inits += [h.make_tensor("one", T.FLOAT, [1], [0.0]), h.make_tensor("shape", T.INT64, [2], [60000, 60000])]
    if body != "plain":
        nodes += [h.make_node("Add", ["z", "extra"], ["zz"])]
    final = "zz" if body != "plain" else "z"
    if dynamic_outputs:  # N×K with K known only when it runs: reshaped to (the batch, -1)
        nodes += [h.make_node("Shape", ["input"], ["in_shape"]),
                  h.make_node("Slice", ["in_shape", "zero", "one_i"], ["batch"]),
                  h.make_node("Concat", ["batch", "minus_one"], ["out_shape"], axis=0),
                  h.make_node("Reshape", [final, "out_shape"], ["logits"])]
        inits += [h.make_tensor("zero", T.INT64, [1], [0]), h.make_tensor("one_i", T.INT64, [1], [1]),
                  h.make_tensor("minus_one", T.INT64, [1], [-1])]
    else:
        nodes += [h.make_node("Identity", [final], ["logits"])]
    out_shape = ["N", "K" if dynamic_outputs else outputs]
    graph = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("input", T.FLOAT, ["N", channels, size, size])],
                         [h.make_tensor_value_info("logits", T.FLOAT, out_shape)], initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 8
    text = meta if isinstance(meta, str) else _json.dumps(GOOD_META if meta is None else meta)
    entry = model.metadata_props.add()
    entry.key, entry.value = "emolens", text
    onnx.save(model, str(path))
    return Path(path)
