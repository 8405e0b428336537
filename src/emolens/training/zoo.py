"""Model registry: ``create_model("name", num_classes=7)``, in the style of timm.

Each entry records the input size and channels it expects, so the data pipeline,
the exporter and the ONNX metadata all read them from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    channels: int  # 1 = grayscale, 3 = colour
    description: str


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, input_size: int, channels: int, description: str):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, fn, input_size, channels, description)
        return fn

    return deco


def list_models() -> list[ModelSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def create_model(name: str, num_classes: int = 7, **kwargs) -> nn.Module:
    """Build a registered model with ``num_classes`` outputs (logits)."""
    return get_spec(name).builder(num_classes=num_classes, **kwargs)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGNet(nn.Module):
    """VGG-style stack: ``len(widths)`` stages of ``depth`` 3×3 conv-BN-ReLU, each followed by 2×2 max-pool,
    then dropout, a hidden dense layer and the classifier."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        input_size: int = 48,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        depth: int = 2,
        hidden: int = 256,
        dropout: float = 0.4,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            for _ in range(depth):
                layers += _conv_bn(c, w)
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c * side * side, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("vgg_s", input_size=48, channels=1, description="VGG-style CNN, 4 stages × 2 conv (32-256), 48×48 gray")
def vgg_s(num_classes: int = 7, **kw) -> nn.Module:
    return VGGNet(num_classes, widths=(32, 64, 128, 256), **kw)


@register("vgg_m", input_size=48, channels=1, description="VGG-style CNN, 4 stages × 2 conv (64-512), 48×48 gray")
def vgg_m(num_classes: int = 7, **kw) -> nn.Module:
    return VGGNet(num_classes, widths=(64, 128, 256, 512), hidden=512, **kw)
