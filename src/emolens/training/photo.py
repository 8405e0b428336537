"""What real photos do to faces, as training augmentations: occluders, blur, small faces, noise, JPEG.

FER2013's faces are tidy 48×48 crops; the faces users bring are covered by hands, blurred by motion or
focus, a few dozen pixels wide, noisy and JPEG-compressed. :func:`degrade_batch` applies those to a batch
(the ``occlude``, ``blur``, ``downscale``, ``noise`` and ``jpeg`` keys of
:class:`~emolens.training.augment.AugmentConfig`, each a probability per image), drawing every random number
from the run's generator so a resumed run draws the same. The pixels are worked on the CPU with OpenCV
(libjpeg for the JPEG step); a batch of 48×48 faces takes a few milliseconds.

Sizes are given for a 48-px face and scale with the model's input (a 224-px transfer model gets a
blur 224/48 times wider), except ``downscale``, whose 20–48 px are real face sizes in any input.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ..face.align import FER2013_TEMPLATE

DOWNSCALE_SIDES = (20, 48)
"""``downscale``: the face is shrunk to a side drawn from this range (pixels), then enlarged back."""
JPEG_QUALITY = (10, 60)
"""``jpeg``: the quality a face is re-compressed at, drawn from this range."""
BLUR_SIGMA = (0.4, 1.5)
"""``blur``, Gaussian half: sigma in pixels of a 48-px face."""
MOTION_LENGTH = (3, 7)
"""``blur``, motion half: the length of the blur's line in pixels of a 48-px face, at any angle."""
NOISE_SIGMA = (0.01, 0.06)
"""``noise``: the Gaussian part's sigma on [0, 1] pixels; a signal-dependent part up to 0.03 × sqrt(pixel)."""

_EYES_Y = FER2013_TEMPLATE[0][1]  # where FER2013-framed faces have their eyes and mouth (fractions)
_MOUTH_Y = FER2013_TEMPLATE[3][1]


class _Draw:
    """Uniform draws from the run's generator."""

    def __init__(self, gen: torch.Generator | None) -> None:
        self.gen = gen

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * torch.rand(1, generator=self.gen).item()

    def fire(self, n: int, p: float) -> list[int]:
        """Which of ``n`` images get an augmentation applied with probability ``p`` (always n draws)."""
        return torch.nonzero(torch.rand(n, generator=self.gen) < p).flatten().tolist() if p > 0 else []


def degrade_batch(x: torch.Tensor, cfg, gen: torch.Generator | None, *, before_light: bool) -> torch.Tensor:
    """Apply the photo degradations of ``cfg`` to a batch N×C×H×W in [0, 1], returning a new tensor on the
    batch's device. ``before_light``: the scene part (occluders), applied before brightness, contrast and
    gamma; else the camera part (blur, then downscale, noise, JPEG), applied after them."""
    d = _Draw(gen)
    arr = x.detach().float().cpu().numpy().transpose(0, 2, 3, 1).copy()  # N×H×W×C
    n, side = arr.shape[0], arr.shape[1]
    f = side / 48.0
    if before_light:
        for i in d.fire(n, cfg.occlude):
            arr[i] = occlude(arr[i], d)
    else:
        for i in d.fire(n, cfg.blur):
            arr[i] = blur(arr[i], d, f)
        for i in d.fire(n, cfg.downscale):
            arr[i] = downscale(arr[i], d)
        for i in d.fire(n, cfg.noise):
            sigma, k = d.u(*NOISE_SIGMA), d.u(0.0, 0.03)
            z1 = torch.randn(arr[i].shape, generator=gen).numpy()
            z2 = torch.randn(arr[i].shape, generator=gen).numpy()
            arr[i] = np.clip(arr[i] + sigma * z1 + k * np.sqrt(np.clip(arr[i], 0, 1)) * z2, 0, 1)
        for i in d.fire(n, cfg.jpeg):
            arr[i] = jpeg(arr[i], round(d.u(JPEG_QUALITY[0], JPEG_QUALITY[1] + 0.999) - 0.5))
    out = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    return out.to(x.device, x.dtype)


def _shape(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    """OpenCV drops a single channel's axis: put it back."""
    return out.reshape(img.shape) if out.ndim == 2 else out


def blur(img: np.ndarray, d: _Draw, f: float = 1.0) -> np.ndarray:
    """Half Gaussian (focus), half motion blur (a line at any angle)."""
    if d.u() < 0.5:
        return _shape(img, cv2.GaussianBlur(img, (0, 0), sigmaX=d.u(*BLUR_SIGMA) * f,
                                            borderType=cv2.BORDER_REFLECT))
    length = max(2, round(d.u(*MOTION_LENGTH) * f))
    angle = d.u(0, math.pi)
    size = length if length % 2 else length + 1
    k = np.zeros((size, size), np.float32)
    c, dx, dy = size // 2, math.cos(angle) * (length - 1) / 2, math.sin(angle) * (length - 1) / 2
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    k /= k.sum()
    return _shape(img, cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT))


def downscale(img: np.ndarray, d: _Draw) -> np.ndarray:
    """The face shrunk to 20–48 px (at most its own side) with area averaging, enlarged back bilinearly."""
    side = img.shape[0]
    lo, hi = DOWNSCALE_SIDES[0], min(DOWNSCALE_SIDES[1], side)
    if side <= lo:
        return img
    t = min(hi, int(d.u(lo, hi + 1)))
    small = cv2.resize(img, (t, t), interpolation=cv2.INTER_AREA)
    return _shape(img, cv2.resize(small, (side, img.shape[1]), interpolation=cv2.INTER_LINEAR))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-compressed as a JPEG of this quality (1-100) and decoded again."""
    u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - libjpeg takes any uint8 image
        return img
    flag = cv2.IMREAD_GRAYSCALE if img.shape[2] == 1 else cv2.IMREAD_COLOR
    return _shape(img, cv2.imdecode(buf, flag).astype(np.float32) / 255)


def occluder_mask(side: int, d: _Draw) -> tuple[np.ndarray, str]:
    """A soft mask (side × side, 0..1) of something in front of the face, and what it is: ``hand`` (a palm with
    three or four fingers, in the lower two thirds: at the mouth, chin or cheek), ``eyes`` (a band over both
    eyes, as sunglasses or a hand) or ``mouth`` (a patch over the mouth)."""
    m = np.zeros((side, side), np.float32)
    kind = "hand" if (r := d.u()) < 0.5 else "eyes" if r < 0.75 else "mouth"
    if kind == "hand":
        cx, cy = d.u(0.15, 0.85) * side, d.u(0.5, 1.0) * side
        ax, ay, rot = d.u(0.14, 0.24) * side, d.u(0.11, 0.18) * side, d.u(0, 360)
        cv2.ellipse(m, (round(cx), round(cy)), (round(ax), round(ay)), rot, 0, 360, 1.0, -1, cv2.LINE_AA)
        up = d.u(-math.pi * 0.85, -math.pi * 0.15)  # the fingers point up-ish, fanned out
        for j in range(3 + (d.u() < 0.5)):
            a = up + (j - 1.5) * d.u(0.18, 0.32)
            length, width = d.u(0.16, 0.28) * side, d.u(0.035, 0.055) * side
            fx, fy = cx + math.cos(a) * (ax * 0.6 + length / 2), cy + math.sin(a) * (ay * 0.6 + length / 2)
            cv2.ellipse(m, (round(fx), round(fy)), (max(1, round(length / 2)), max(1, round(width))),
                        math.degrees(a), 0, 360, 1.0, -1, cv2.LINE_AA)
    else:
        y = (_EYES_Y if kind == "eyes" else _MOUTH_Y) + d.u(-0.04, 0.04)
        w = d.u(0.6, 0.9) if kind == "eyes" else d.u(0.35, 0.6)
        h = d.u(0.12, 0.2) if kind == "eyes" else d.u(0.15, 0.25)
        x0, x1 = round((0.5 + d.u(-0.05, 0.05) - w / 2) * side), round((0.5 + d.u(-0.05, 0.05) + w / 2) * side)
        cv2.rectangle(m, (x0, round((y - h / 2) * side)), (x1, round((y + h / 2) * side)), 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), sigmaX=max(0.5, side / 64)), kind


def occlude(img: np.ndarray, d: _Draw) -> np.ndarray:
    """``img`` with an occluder (:func:`occluder_mask`) in a flat grey (a hand: skin-like 0.3-0.85, shaded
    across its width; sunglasses are darker) blended over it."""
    side = img.shape[0]
    m, kind = occluder_mask(side, d)
    level = d.u(0.0, 0.35) if kind == "eyes" and d.u() < 0.5 else d.u(0.3, 0.85)
    shade = np.linspace(-1, 1, side, dtype=np.float32)[None, :] * d.u(-0.08, 0.08)
    fill = np.clip(level + shade, 0, 1)[:, :, None]
    m = m[:, :, None]
    return img * (1 - m) + fill * m
