"""Batched data augmentation on tensors: one affine warp for the whole batch, on the batch's device.

The random parameters are drawn on the CPU with the run's generator (a few numbers per image), so a run
draws the same augmentations on any device; the pixel work (warp, contrast, erasing) runs where the batch is."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    grid = F.affine_grid(theta.to(dev, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    if cfg.contrast or cfg.brightness:
        c = uniform(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1).to(dev)
        b = uniform(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1).to(dev)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * c + mean + b).clamp_(0, 1)

    if cfg.erase > 0:
        h, w = x.shape[2], x.shape[3]
        for i in torch.nonzero(torch.rand(n, generator=gen) < cfg.erase).flatten().tolist():
            eh = int(h * (0.15 + 0.25 * torch.rand(1, generator=gen).item()))
            ew = int(w * (0.15 + 0.25 * torch.rand(1, generator=gen).item()))
            y0 = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
            x0 = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
            out[i, :, y0 : y0 + eh, x0 : x0 + ew] = torch.rand(1, generator=gen).item()
    return out
