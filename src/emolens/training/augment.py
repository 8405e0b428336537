"""Batched data augmentation on tensors: one affine warp for the whole batch, on the batch's device, then
the degradations of real photos (:mod:`emolens.training.photo`).

The random parameters are drawn on the CPU with the run's generator (a few numbers per image), so a run
draws the same augmentations on any device; the pixel work of the warp, contrast and erasing runs where the
batch is. The photo degradations (JPEG needs libjpeg) run on the CPU with OpenCV, and only when one is on.

Keys (``--augment KEY=VALUE``, the ``augment:`` block of a config); the photo keys are probabilities per
image and are off (0) unless set:

==============  =================================================================================
hflip           mirror half of the faces
rotate          rotation, ± degrees
shift, zoom     crop jitter: shift ± fraction of the side, scale in [1 - zoom, 1 + zoom]
shear           ± degrees
brightness      additive, ± on [0, 1] pixels
contrast        multiplicative, 1 ± contrast
gamma           gamma in [1 / (1 + gamma), 1 + gamma], log-uniform (0 = off)
erase           probability of one random-erasing rectangle
occlude         probability of an occluder: a hand-like blob (palm and fingers) or a patch over the eyes
                or the mouth, in a flat grey with soft edges
blur            probability of a blur: Gaussian (sigma 0.4-1.5 px of a 48-px face) or motion (a 3-7 px line)
downscale       probability of shrinking the face to 20-48 px and enlarging it back (a small, soft face)
noise           probability of sensor noise (Gaussian, sigma 0.01-0.06, plus a signal-dependent part)
jpeg            probability of JPEG re-compression at quality 10-60
==============  =================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    hflip: bool = True
    rotate: float = 10.0  # degrees, ±
    shift: float = 0.1  # fraction of the side, ±
    zoom: float = 0.1  # scale in [1-zoom, 1+zoom]
    shear: float = 0.0  # degrees, ±
    brightness: float = 0.2  # additive, ± (on [0, 1] pixels)
    contrast: float = 0.2  # multiplicative, 1 ± contrast
    erase: float = 0.25  # probability of one random-erasing rectangle per image
    gamma: float = 0.0  # gamma in [1/(1+gamma), 1+gamma] (0 = off)
    # real-photo degradations, each a probability per image (0 = off; see emolens.training.photo)
    occlude: float = 0.0
    blur: float = 0.0
    downscale: float = 0.0
    noise: float = 0.0
    jpeg: float = 0.0

    PROBABILITIES = ("erase", "occlude", "blur", "downscale", "noise", "jpeg")
    """The keys that are probabilities (in [0, 1]); the other numeric keys are ranges (>= 0)."""

    @classmethod
    def off(cls) -> AugmentConfig:
        """Every augmentation off (``--no-augment``)."""
        return cls(**{f.name: False if f.type in (bool, "bool") else 0.0 for f in fields(cls)})

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in (bool, "bool"):
                if not isinstance(v, bool):
                    raise ValueError(f"augment.{f.name} is on or off (true/false), not {v!r}")
            elif not isinstance(v, int | float) or isinstance(v, bool) or v < 0 or (
                    f.name in self.PROBABILITIES and v > 1):
                raise ValueError(f"augment.{f.name} must be "
                                 + ("a probability in [0, 1]" if f.name in self.PROBABILITIES else "a number >= 0")
                                 + f", not {v!r}")


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Augment a float batch N×C×H×W with pixel values in [0, 1] (on any device); returns a new tensor."""
    n, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=gen) * (hi - lo) + lo

    angle = uniform(-cfg.rotate, cfg.rotate) * math.pi / 180
    shear = uniform(-cfg.shear, cfg.shear) * math.pi / 180
    scale = uniform(1 - cfg.zoom, 1 + cfg.zoom)
    tx, ty = uniform(-cfg.shift, cfg.shift) * 2, uniform(-cfg.shift, cfg.shift) * 2
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output->input sampling matrix: inverse zoom, rotation, shear, then flip of the x axis.
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos / scale * flip
    theta[:, 0, 1] = (-sin + torch.tan(shear)) / scale
    theta[:, 1, 0] = sin / scale * flip
    theta[:, 1, 1] = cos / scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    if cfg.hflip or cfg.rotate or cfg.shift or cfg.zoom or cfg.shear:
        grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    else:  # no geometry: the pixels as they are (an identity warp would still resample them slightly)
        out = x.clone()

    if cfg.occlude or cfg.blur or cfg.downscale or cfg.noise or cfg.jpeg:
        from .photo import degrade_batch

        out = degrade_batch(out, cfg, gen, before_light=True)

    if cfg.gamma:
        g = torch.exp(uniform(-math.log1p(cfg.gamma), math.log1p(cfg.gamma))).view(n, 1, 1, 1).to(dev, x.dtype)
        out = out.clamp(min=0).pow(g)
    if cfg.contrast or cfg.brightness:
        c = uniform(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1).to(dev)
        b = uniform(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1).to(dev)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * c + mean + b).clamp_(0, 1)

    if cfg.blur or cfg.downscale or cfg.noise or cfg.jpeg:
        from .photo import degrade_batch

        out = degrade_batch(out, cfg, gen, before_light=False)

    if cfg.erase > 0:
        h, w = x.shape[2], x.shape[3]
        for i in torch.nonzero(torch.rand(n, generator=gen) < cfg.erase).flatten().tolist():
            eh = int(h * (0.15 + 0.25 * torch.rand(1, generator=gen).item()))
            ew = int(w * (0.15 + 0.25 * torch.rand(1, generator=gen).item()))
            y0 = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
            out[i, :, y0 : y0 + eh, x0 : x0 + ew] = torch.rand(1, generator=gen).item()
    return out
