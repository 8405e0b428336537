"""emolens.imageio: every input kind becomes uint8 H×W×3 BGR; every bad input raises a clear ImageError."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from bad_inputs import gif_claiming, jpeg_claiming, make_bmp, png_claiming
from emolens.imageio import (
    ImageError,
    describe,
    exif_orientation,
    expand_inputs,
    header_size,
    load_image,
)

PORTRAIT = "portrait_obama3.jpg"


# ----------------------------------------------------------------------------- helpers
def assert_bgr8(img: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert isinstance(img, np.ndarray)
    assert img.dtype == np.uint8
    assert img.ndim == 3 and img.shape[2] == 3
    assert img.flags.c_contiguous
    if shape is not None:
        assert img.shape[:2] == shape


def encode(ext: str, arr: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, arr, params or [])
    assert ok
    return buf.tobytes()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR chunk (8-bit RGB) and nothing else: no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def tiff_gray(width: int, height: int, *, order: str = "<", dim_type: int = 3, pixels: bool = True) -> bytes:
    """A hand-made uncompressed 8-bit gray TIFF (pixel value = 10·x + y), little ("<") or big (">") endian.

    ``dim_type`` is the field type of ImageWidth/ImageLength: 3 (SHORT) or 4 (LONG).  With
    ``pixels=False`` only the header is there: a file that claims ``width``×``height`` in a few bytes.
    """
    data = bytes((10 * x + y) % 256 for y in range(height) for x in range(width)) if pixels else b""
    n = 9
    ifd = 8 + len(data)
    entries = [  # tag, type, count, value (sorted by tag, as TIFF requires)
        (256, dim_type, 1, width),
        (257, dim_type, 1, height),
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: BlackIsZero
        (273, 4, 1, 8),  # StripOffsets: right after the header
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, min(width * height, 2**32 - 1)),  # StripByteCounts
    ]
    out = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", ifd) + data
    out += struct.pack(order + "H", n)
    for tag, kind, count, value in entries:
        field = struct.pack(order + ("H" if kind == 3 else "I"), value).ljust(4, b"\0")  # left-justified
        out += struct.pack(order + "HHI", tag, kind, count) + field
    return out + struct.pack(order + "I", 0)  # no next IFD


def bigtiff_header_only(width: int, height: int) -> bytes:
    """A BigTIFF (version 43) header whose first IFD gives ImageWidth/ImageLength as LONG8."""
    out = b"II+\0" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", 2)
    for tag, value in ((256, width), (257, height)):
        out += struct.pack("<HHQQ", tag, 16, 1, value)
    return out + struct.pack("<Q", 0)


def exif_rotated_jpeg(width: int = 60, height: int = 30) -> bytes:
    """A width×height JPEG whose EXIF says Orientation=6 (display rotated 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "JPEG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.fixture(scope="module")
def portrait(photos_dir: Path) -> Path:
    return photos_dir / PORTRAIT


@pytest.fixture(scope="module")
def portrait_bgr(portrait: Path) -> np.ndarray:
    img = cv2.imread(str(portrait), cv2.IMREAD_COLOR)
    assert img is not None
    return img


# ----------------------------------------------------------------------------- paths and bytes
@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "Path"])
def test_path_to_real_photo(portrait, portrait_bgr, as_type):
    img = load_image(as_type(portrait))
    assert_bgr8(img, portrait_bgr.shape[:2])
    assert np.array_equal(img, portrait_bgr)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_encoded_bytes_of_real_photo(portrait, portrait_bgr, wrap):
    img = load_image(wrap(portrait.read_bytes()))
    assert_bgr8(img, portrait_bgr.shape[:2])
    assert np.array_equal(img, portrait_bgr)


def test_png_photo_path(photos_dir):
    img = load_image(photos_dir / "aligned_crop_112.png")
    assert_bgr8(img, (112, 112))


# ----------------------------------------------------------------------------- PIL images
def test_pil_rgb_channel_order_is_bgr():
    img = load_image(Image.new("RGB", (7, 5), (255, 0, 0)))
    assert_bgr8(img, (5, 7))
    assert (img == (0, 0, 255)).all()


def test_pil_real_photo_matches_path(portrait, portrait_bgr):
    with Image.open(portrait) as im:
        img = load_image(im)
    assert_bgr8(img, portrait_bgr.shape[:2])
    # PIL and OpenCV may use different JPEG IDCTs: allow a small difference.
    assert np.abs(img.astype(int) - portrait_bgr.astype(int)).mean() < 2.0


def test_pil_gray_l():
    img = load_image(Image.new("L", (6, 4), 77))
    assert_bgr8(img, (4, 6))
    assert (img == 77).all()


def test_pil_rgba_alpha_composited_on_white():
    im = Image.new("RGBA", (2, 1), (255, 0, 0, 255))
    im.putpixel((1, 0), (0, 0, 0, 0))  # fully transparent
    img = load_image(im)
    assert_bgr8(img, (1, 2))
    assert tuple(img[0, 0]) == (0, 0, 255)
    assert tuple(img[0, 1]) == (255, 255, 255)


def test_pil_palette_p():
    im = Image.new("RGB", (4, 4), (0, 255, 0)).convert("P")
    assert im.mode == "P"
    img = load_image(im)
    assert_bgr8(img, (4, 4))
    assert (img == (0, 255, 0)).all()


def test_pil_16bit_i16():
    arr = np.zeros((3, 4), dtype=np.uint16)
    arr[0, 0] = 65535
    im = Image.frombytes("I;16", (4, 3), arr.tobytes())
    assert im.mode == "I;16"
    img = load_image(im)
    assert_bgr8(img, (3, 4))
    assert tuple(img[0, 0]) == (255, 255, 255)
    assert tuple(img[2, 3]) == (0, 0, 0)


def test_pil_16bit_is_scaled_like_a_uint16_array():
    arr = np.full((3, 4), 1000, dtype=np.uint16)
    from_pil = load_image(Image.frombytes("I;16", (4, 3), arr.tobytes()))
    from_array = load_image(arr)
    assert np.abs(from_pil.astype(int) - from_array.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- numpy arrays
def test_array_gray_hw():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    img = load_image(arr)
    assert_bgr8(img, (3, 4))
    for c in range(3):
        assert np.array_equal(img[:, :, c], arr)


def test_array_hw1():
    arr = np.full((3, 4, 1), 9, dtype=np.uint8)
    img = load_image(arr)
    assert_bgr8(img, (3, 4))
    assert (img == 9).all()


def test_array_bgr_kept_as_is():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    img = load_image(arr)
    assert_bgr8(img, (5, 6))
    assert np.array_equal(img, arr)  # no channel swap


def test_array_bgr_non_contiguous_becomes_contiguous():
    arr = np.zeros((6, 8, 3), dtype=np.uint8)[::2, ::2]
    assert not arr.flags.c_contiguous
    assert_bgr8(load_image(arr), (3, 4))


def test_array_bgra_transparent_becomes_white():
    arr = np.zeros((1, 3, 4), dtype=np.uint8)
    arr[0, 0] = (10, 20, 30, 255)  # opaque: colour kept
    arr[0, 1] = (10, 20, 30, 0)  # transparent: white
    arr[0, 2] = (0, 0, 0, 128)  # half: grey
    img = load_image(arr)
    assert_bgr8(img, (1, 3))
    assert tuple(img[0, 0]) == (10, 20, 30)
    assert tuple(img[0, 1]) == (255, 255, 255)
    assert all(120 <= v <= 135 for v in img[0, 2])


def test_array_uint16():
    arr = np.array([[0, 65535]], dtype=np.uint16)
    img = load_image(arr)
    assert_bgr8(img, (1, 2))
    assert tuple(img[0, 0]) == (0, 0, 0)
    assert tuple(img[0, 1]) == (255, 255, 255)


def test_array_float_unit_range():
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    img = load_image(arr)
    assert_bgr8(img, (1, 3))
    assert img[0, 0, 0] == 0
    assert 127 <= img[0, 1, 0] <= 128
    assert img[0, 2, 0] == 255


# ----------------------------------------------------------------------------- encoded variants
def test_16bit_png_bytes():
    arr = np.zeros((4, 5, 3), dtype=np.uint16)
    arr[0, 0] = (65535, 0, 0)
    data = encode(".png", arr)
    img = load_image(data)
    assert_bgr8(img, (4, 5))
    assert tuple(img[0, 0]) == (255, 0, 0)  # still BGR: blue channel first


def test_16bit_gray_png_bytes():
    img = load_image(encode(".png", np.full((3, 4), 65535, dtype=np.uint16)))
    assert_bgr8(img, (3, 4))
    assert (img == 255).all()


def test_rgba_png_bytes_transparent_becomes_white():
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (10, 20, 30, 255)
    img = load_image(encode(".png", arr))
    assert_bgr8(img, (2, 2))
    assert tuple(img[0, 0]) == (10, 20, 30)
    assert tuple(img[1, 1]) == (255, 255, 255)


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".tiff"])
def test_other_formats_bytes(ext):
    arr = np.zeros((9, 11, 3), dtype=np.uint8)
    arr[:, :] = (255, 0, 0)
    img = load_image(encode(ext, arr))
    assert_bgr8(img, (9, 11))
    assert img[4, 5, 0] > 200 and img[4, 5, 2] < 50


def test_gif_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (33, 17), (255, 0, 0)).save(buf, "GIF")
    img = load_image(buf.getvalue())
    assert_bgr8(img, (17, 33))
    assert tuple(img[0, 0]) == (0, 0, 255)


# ----------------------------------------------------------------------------- EXIF orientation
def test_exif_orientation_bytes_is_applied():
    data = exif_rotated_jpeg(60, 30)
    assert header_size(data) == (60, 30)  # stored size
    img = load_image(data)
    assert_bgr8(img)
    assert img.shape == (60, 30, 3)


def test_exif_orientation_path_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    p.write_bytes(exif_rotated_jpeg(60, 30))
    assert load_image(p).shape == (60, 30, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_png_and_webp_match_pil(fmt, orientation):
    rng = np.random.default_rng(orientation)
    rgb = rng.integers(0, 256, size=(30, 60, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    data = buf.getvalue()
    assert exif_orientation(data) == orientation
    with Image.open(io.BytesIO(data)) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))[:, :, ::-1]
    img = load_image(data)
    assert img.shape == ((60, 30, 3) if orientation >= 5 else (30, 60, 3))
    assert np.array_equal(img, want)


def test_exif_orientation_png_with_alpha_and_without_exif():
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    Image.new("RGBA", (6, 4), (10, 20, 30, 0)).save(buf, "PNG", exif=exif.tobytes())
    img = load_image(buf.getvalue())
    assert_bgr8(img, (6, 4))  # rotated, alpha composited on white
    assert tuple(img[0, 0]) == (255, 255, 255)
    plain = encode(".png", np.zeros((4, 6, 3), np.uint8))
    assert exif_orientation(plain) == 1
    assert load_image(plain).shape == (4, 6, 3)


def test_tiff_orientation_tag_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.new("RGB", (60, 30), (200, 30, 30)).save(buf, "TIFF", exif=exif.tobytes())
    assert load_image(buf.getvalue()).shape == (60, 30, 3)


def test_exif_orientation_pil_is_applied():
    with Image.open(io.BytesIO(exif_rotated_jpeg(60, 30))) as im:
        assert im.size == (60, 30)
        img = load_image(im)
    assert img.shape == (60, 30, 3)


# ----------------------------------------------------------------------------- bad inputs
def test_missing_file(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="nope.jpg") as ei:
        load_image(p)
    assert "no such file" in str(ei.value)


def test_directory(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    with pytest.raises(ImageError, match="adir") as ei:
        load_image(d)
    assert "directory" in str(ei.value)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg") as ei:
        load_image(p)
    assert "empty" in str(ei.value).replace("empty.jpg", "")


def test_empty_bytes():
    with pytest.raises(ImageError, match="0 bytes"):
        load_image(b"")


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="x.jpg") as ei:
        load_image(p)
    assert "cannot decode" in str(ei.value)


def test_truncated_jpeg_file(tmp_path, portrait):
    data = portrait.read_bytes()
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="half.jpg") as ei:
        load_image(p)
    assert "truncated" in str(ei.value)


def test_truncated_jpeg_bytes(portrait):
    data = portrait.read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_truncated_jpeg_near_the_end(portrait):
    """Only the last few bytes missing: libjpeg pads with grey and just warns; load_image must refuse."""
    data = portrait.read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[:-100])


def test_jpeg_with_trailing_data_after_eoi_is_accepted(portrait, portrait_bgr):
    data = portrait.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 64  # e.g. an appended MP4
    assert np.array_equal(load_image(data), portrait_bgr)


def test_pil_image_of_truncated_jpeg_raises_image_error(portrait):
    data = portrait.read_bytes()
    with Image.open(io.BytesIO(data[: len(data) // 2])) as im:
        with pytest.raises(ImageError):
            load_image(im)


def assert_refused_from_header(path: Path, data: bytes, w: int, h: int) -> None:
    """``data`` written to ``path`` is refused within 0.5 s with a message naming the file, the limit and its size."""
    path.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=path.name) as ei:
        load_image(path)
    assert time.perf_counter() - t0 < 0.5
    assert "limit" in str(ei.value) and f"{w}x{h}" in str(ei.value)


def test_png_header_claiming_huge_size_is_refused_fast(tmp_path):
    data = png_header_only(30000, 30000)
    assert header_size(data) == (30000, 30000)
    assert_refused_from_header(tmp_path / "bomb.png", data, 30000, 30000)
    with pytest.raises(ImageError, match="limit"):
        load_image(data)


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("dim_type", [3, 4], ids=["SHORT", "LONG"])
def test_tiff_header_claiming_huge_size_is_refused_fast(tmp_path, order, dim_type):
    size = 60000 if dim_type == 3 else 70000  # a SHORT holds at most 65535
    data = tiff_gray(size, size, order=order, dim_type=dim_type, pixels=False)
    assert len(data) < 200
    assert header_size(data) == (size, size)
    assert_refused_from_header(tmp_path / "bomb.tif", data, size, size)


def test_real_tiff_with_patched_size_is_refused_from_its_header():
    """A TIFF written by OpenCV (deflate) whose ImageWidth/ImageLength are patched to 20000×20000."""
    data = bytearray(encode(".tiff", np.zeros((40, 50, 3), np.uint8), [cv2.IMWRITE_TIFF_COMPRESSION, 8]))
    assert header_size(bytes(data)) == (50, 40)
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    for e in range(ifd + 2, ifd + 2 + 12 * n, 12):
        tag, kind = struct.unpack("<HH", data[e : e + 4])
        if tag in (256, 257):
            data[e + 8 : e + 12] = struct.pack("<H" if kind == 3 else "<I", 20000).ljust(4, b"\0")
    assert header_size(bytes(data)) == (20000, 20000)
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match="20000x20000 = 400,000,000 pixels, over the limit"):
        load_image(bytes(data))
    assert time.perf_counter() - t0 < 0.5


def test_bigtiff_header_is_read():
    assert header_size(bigtiff_header_only(30000, 20000)) == (30000, 20000)
    with pytest.raises(ImageError, match="30000x20000"):
        load_image(bigtiff_header_only(30000, 20000))


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("dim_type", [3, 4], ids=["SHORT", "LONG"])
def test_ordinary_tiff_still_decodes(order, dim_type):
    data = tiff_gray(7, 5, order=order, dim_type=dim_type)
    assert header_size(data) == (7, 5)
    img = load_image(data)
    assert_bgr8(img, (5, 7))
    assert tuple(img[3, 4]) == (43, 43, 43)  # 10·x + y, gray in all three channels


def test_formats_whose_size_is_not_read_are_refused_and_opencvs_cap_is_set_in_a_fresh_process():
    """Formats header_size does not know (here PPM, JPEG 2000, Radiance HDR) are refused before decoding: nothing is
    decoded whose size is not read first (they used to meet only OpenCV's own cap, 100 megapixels, and a 4 MB HDR
    file of 8000x8000 took 13 s and 1.6 GB). OpenCV's cap, which ``import emolens`` sets before anything imports cv2
    (it used to be set too late: cv2 was already loaded), stays as a second line."""
    ppm = b"P6\n20000 20000\n255\n"  # claims 400 megapixels in 19 bytes
    assert header_size(ppm) is None
    code = (
        "import os, emolens, emolens.imageio as m\n"
        "assert os.environ['OPENCV_IO_MAX_IMAGE_PIXELS'] == str(m.DEFAULT_MAX_PIXELS)\n"
        "try:\n"
        f"    emolens.load_image({ppm!r})\n"
        "except emolens.ImageError as e:\n"
        "    print(e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"<{len(ppm)} bytes>: cannot decode image (not a PNG, JPEG, GIF, BMP, WebP or TIFF file)"
    assert r.stderr == ""
    for ext, img in ((".jp2", np.zeros((64, 64), np.uint8)), (".hdr", np.zeros((64, 64, 3), np.float32)),
                     (".ppm", np.zeros((64, 64, 3), np.uint8))):
        with pytest.raises(ImageError, match="not a PNG, JPEG, GIF, BMP, WebP or TIFF file"):
            load_image(encode(ext, img))


@pytest.mark.parametrize("cut", [0.5, 0.1], ids=["half", "tenth"])
def test_corrupt_tiff_gives_no_opencv_log_lines(capfd, cut):
    data = encode(".tiff", np.zeros((50, 60, 3), np.uint8))
    level = cv2.utils.logging.getLogLevel()
    with pytest.raises(ImageError, match="cannot decode image"):
        load_image(data[: int(len(data) * cut)])
    err = capfd.readouterr().err
    assert "[ERROR" not in err and "WARN" not in err and err == ""
    assert cv2.utils.logging.getLogLevel() == level  # OpenCV's level is restored afterwards


def test_png_header_with_zero_size():
    with pytest.raises(ImageError, match="invalid size"):
        load_image(png_header_only(0, 10))


@pytest.mark.parametrize(
    "arr",
    [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 5), np.uint8), np.zeros(10, np.uint8), np.zeros((2, 2, 2, 3))],
    ids=["HxWx2", "HxWx5", "1d", "4d"],
)
def test_array_bad_shape(arr):
    with pytest.raises(ImageError, match="shape"):
        load_image(arr)


def test_array_without_pixels():
    with pytest.raises(ImageError, match="no pixels"):
        load_image(np.zeros((0, 5, 3), np.uint8))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_float_array_nan_or_inf(value):
    arr = np.zeros((3, 3), dtype=np.float32)
    arr[1, 1] = value
    with pytest.raises(ImageError, match="NaN"):
        load_image(arr)


@pytest.mark.parametrize(
    "obj", [42, 3.5, None, [[0, 1], [2, 3]], {"a": 1}], ids=["int", "float", "None", "list", "dict"]
)
def test_unsupported_type(obj):
    with pytest.raises(ImageError, match=type(obj).__name__):
        load_image(obj)


def test_unsupported_dtype():
    with pytest.raises(ImageError, match="dtype"):
        load_image(np.zeros((2, 2), dtype=np.complex64))


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)


# ----------------------------------------------------------------------------- max_pixels
def test_max_pixels_array():
    arr = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ImageError, match="limit"):
        load_image(arr, max_pixels=5000)
    assert load_image(arr, max_pixels=10_000).shape == (100, 100, 3)


def test_max_pixels_bytes():
    data = encode(".png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="limit"):
        load_image(data, max_pixels=5000)
    assert load_image(data, max_pixels=10_000).shape == (100, 100, 3)


def test_max_pixels_path(tmp_path):
    p = tmp_path / "hundred.jpg"
    p.write_bytes(encode(".jpg", np.zeros((100, 100, 3), np.uint8)))
    with pytest.raises(ImageError, match="hundred.jpg"):
        load_image(p, max_pixels=5000)


def test_max_pixels_pil():
    with pytest.raises(ImageError, match="limit"):
        load_image(Image.new("RGB", (100, 100)), max_pixels=5000)


# ----------------------------------------------------------------------------- header_size
@pytest.mark.parametrize(
    "ext,params",
    [
        (".png", None),
        (".jpg", None),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".bmp", None),
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy: VP8
        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless: VP8L
    ],
    ids=["png", "jpeg", "jpeg-progressive", "bmp", "webp-lossy", "webp-lossless"],
)
def test_header_size_cv2_formats(ext, params):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(17, 33, 3), dtype=np.uint8)
    assert header_size(encode(ext, arr, params)) == (33, 17)


def test_header_size_gif():
    buf = io.BytesIO()
    Image.new("RGB", (33, 17), (1, 2, 3)).save(buf, "GIF")
    assert header_size(buf.getvalue()) == (33, 17)


def test_header_size_webp_extended():
    buf = io.BytesIO()
    Image.new("RGBA", (33, 17), (1, 2, 3, 100)).save(buf, "WEBP", quality=80)
    data = buf.getvalue()
    assert data[12:16] == b"VP8X"
    assert header_size(data) == (33, 17)


def test_header_size_large_dimensions():
    assert header_size(png_header_only(30000, 20000)) == (30000, 20000)


@pytest.mark.parametrize(
    "data",
    [
        b"II*\0\xff\xff\xff\x7f",  # first IFD far past the end
        b"II*\0\x08\0\0\0\x01\0",  # IFD cut short
        tiff_gray(3, 2)[: 8 + 6 + 2 + 12 + 5],  # cut inside the ImageLength entry
        b"MM\0*\0\0\0\x08\0\0",  # an empty IFD
    ],
    ids=["ifd-outside", "ifd-cut", "entries-cut", "empty-ifd"],
)
def test_header_size_unreadable_tiff_is_none(data):
    assert header_size(data) is None


def test_header_size_real_jpeg(portrait, portrait_bgr):
    h, w = portrait_bgr.shape[:2]
    assert header_size(portrait.read_bytes()) == (w, h)


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"GIF89a", b"RIFF\0\0\0\0WEBP"])
def test_header_size_unknown_or_short(data):
    assert header_size(data) is None


# ----------------------------------------------------------------------------- expand_inputs
def test_expand_inputs(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["b.png", "a.JPG", "c.webp", "notes.txt", "data.csv"]:
        (folder / name).write_bytes(b"x")
    (folder / "sub.jpg").mkdir()  # a folder named like an image is not a file
    single = tmp_path / "single.jpg"
    single.write_bytes(b"x")
    missing = tmp_path / "missing.jpg"
    out = expand_inputs([str(single), folder, missing])
    assert out == [single, folder / "a.JPG", folder / "b.png", folder / "c.webp", missing]
    assert all(isinstance(p, Path) for p in out)


def test_expand_inputs_empty_folder(tmp_path):
    assert expand_inputs([tmp_path]) == []


# ----------------------------------------------------------------------------- hardening (issue 20)
def test_every_bmp_header_variant_decodes_to_its_pixels():
    """BMP headers of 12 bytes (OS/2 1.x: 16-bit width and height; it used to be read as 32-bit, so a 64x64
    file was refused as 6.6 trillion pixels, and OpenCV decodes it as gray unless asked for colour), 40, 52,
    56, 64 (OS/2 2.x), 108 and 124 bytes, bottom-up and top-down (negative height): the exact pixels, as PIL
    reads them too."""
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = (0, 0, 255)
    img[:20, 32:] = (255, 0, 0)
    img[40, 7] = (1, 2, 3)
    for header in (12, 40, 52, 56, 64, 108, 124):
        for top_down in (False, True) if header != 12 else (False,):
            data = make_bmp(img, header, top_down=top_down)
            assert header_size(data) == (64, 64), (header, top_down)
            assert np.array_equal(load_image(data), img), (header, top_down)
            with Image.open(io.BytesIO(data)) as im:
                assert np.array_equal(np.asarray(im.convert("RGB"))[..., ::-1], img), (header, top_down)


def test_a_bmp_header_with_a_negative_width_is_refused():
    data = bytearray(make_bmp(np.zeros((4, 4, 3), np.uint8)))
    data[18:22] = struct.pack("<i", -4)
    with pytest.raises(ImageError, match="invalid size -4x4"):
        load_image(bytes(data))


@pytest.mark.parametrize("make, w, h, kind", [
    (jpeg_claiming, 9000, 9000, "JPEG"),  # the issue's 631-byte file: decoded to 578 MB before
    (jpeg_claiming, 6000, 6600, "JPEG"),  # under the server's 40 MP cap: the server took it with 200
    (png_claiming, 6000, 6000, "PNG"),
    (gif_claiming, 6000, 6000, "GIF"),
], ids=["jpeg-9000", "jpeg-6000x6600", "png", "gif"])
def test_a_file_far_too_small_for_the_size_it_claims_is_refused_as_corrupt(make, w, h, kind):
    data = make(w, h)
    assert header_size(data) == (w, h) and len(data) < 1000
    t = time.perf_counter()
    with pytest.raises(ImageError, match=f"corrupt {kind} file: {len(data):,} bytes cannot hold the {w}x{h} image"):
        load_image(data)
    assert time.perf_counter() - t < 0.1


def test_an_uncompressed_bmp_must_hold_every_row():
    img = np.full((300, 301, 3), 77, np.uint8)
    data = encode(".bmp", img)
    assert np.array_equal(load_image(data), img)
    with pytest.raises(ImageError, match="corrupt BMP file: [0-9,]+ bytes cannot hold the 301x300 image"):
        load_image(data[:-2])  # short of the last row (its padding, 1 byte, is not counted)


FLAT_FILES = {  # the flattest images each encoder makes, at its strongest compression: all must still load
    "png-9": lambda img: encode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9]),
    "jpeg-q1-progressive": lambda img: encode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 1, cv2.IMWRITE_JPEG_PROGRESSIVE,
                                                            1, cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
    "tiff-deflate": lambda img: encode(".tiff", img, [cv2.IMWRITE_TIFF_COMPRESSION, 8]),
    "tiff-lzw": lambda img: encode(".tiff", img, [cv2.IMWRITE_TIFF_COMPRESSION, 5]),
    "webp-lossless": lambda img: encode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101]),
    "bmp": lambda img: encode(".bmp", img),
}


@pytest.mark.parametrize("name", sorted(FLAT_FILES))
@pytest.mark.parametrize("channels", [1, 3])
def test_flat_images_at_the_strongest_compression_still_load(name, channels):
    img = np.full((1500, 1500, channels) if channels == 3 else (1500, 1500), 200, np.uint8)
    assert load_image(FLAT_FILES[name](img)).shape == (1500, 1500, 3)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGBA"])
@pytest.mark.parametrize("fmt, options", [("PNG", {"optimize": True}), ("GIF", {}),
                                          ("TIFF", {"compression": "packbits"}), ("TIFF", {"compression": "tiff_lzw"})],
                         ids=["png", "gif", "tiff-packbits", "tiff-lzw"])
def test_flat_pil_images_of_every_mode_still_load(mode, fmt, options):
    """1-bit and palette PNGs pack 8 pixels a byte before deflate, so their floor is 8x lower: read from IHDR."""
    buf = io.BytesIO()
    Image.new(mode, (1500, 1500), 1 if mode in ("1", "P") else (200 if mode == "L" else (200, 200, 200, 255))).save(
        buf, fmt, **options)
    assert load_image(buf.getvalue()).shape == (1500, 1500, 3)


def test_every_real_photo_passes_the_size_checks(photos_dir):
    for p in sorted(photos_dir.iterdir()):
        if p.suffix.lower() in (".jpg", ".png"):
            assert_bgr8(load_image(p))


def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    code = f"from emolens.imageio import load_image\ntry:\n    load_image({str(fifo)!r})\nexcept ValueError as e:\n" \
           "    print(e)\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == f"{fifo}: is a named pipe, not an image file; only regular files are read"


def test_a_device_and_a_file_over_the_size_cap_are_refused_before_reading(tmp_path):
    with pytest.raises(ImageError, match="/dev/zero: is a character device, not an image file"):
        load_image("/dev/zero")
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(300 * 2**20)  # sparse: no disk used, and nothing is read
    t = time.perf_counter()
    with pytest.raises(ImageError, match=r"big.jpg: file is 300.0 MB, over the limit of 200.0 MB"):
        load_image(big)
    assert time.perf_counter() - t < 0.1
    photo = tmp_path / "p.png"
    photo.write_bytes(encode(".png", np.zeros((50, 50, 3), np.uint8)))
    with pytest.raises(ImageError, match=r"p.png: file is 1\d\d bytes, over the limit of 105 bytes"):
        load_image(photo, max_file_bytes=105)


def test_names_that_are_not_utf8_print_escaped(tmp_path):
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/a\xe9\xff\n.jpg"))
    odd.write_bytes(b"not an image")
    with pytest.raises(ImageError) as ei:
        load_image(odd)
    message = str(ei.value)
    message.encode("utf-8")  # no surrogate left: any strict stream can print it
    assert message.startswith(f"{tmp_path}/a\\xe9\\xff\\n.jpg: cannot decode image")
    assert describe("caf\u00e9 \u5199\u771f.jpg") == "caf\u00e9 \u5199\u771f.jpg"  # real characters stay as they are


def test_the_command_filters_the_decoders_lines_from_stderr_and_keeps_the_rest():
    """What C libraries write to descriptor 2 passes a filter in the emolens command: libpng's, libjpeg's,
    OpenCV's and FFmpeg's lines go, anything else (and Python's own stderr, untouched) stays, in order."""
    code = (
        "import os, sys\n"
        "from emolens.quiet import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'libpng error: IDAT: CRC error\\nCorrupt JPEG data: 2197 extraneous bytes before marker"
        " 0xd9\\n[ERROR:0@2.849] global loadsave.cpp:1743 imencode\\n[ WARN:0@1.0] global cap.cpp\\n"
        "[mpeg4 @ 0x55d0c0] ac-tex damaged at 3 4\\nPremature end of JPEG file\\nsomething else\\n')\n"
        "    print('from python', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert sorted(r.stderr.splitlines()[:2]) == ["from python", "something else"] and r.stderr.endswith("after\n")
