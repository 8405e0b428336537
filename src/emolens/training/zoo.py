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
    mean: tuple[float, ...] = (0.5,)  # default input normalisation: pixel/255 -> (x - mean) / std, per channel
    std: tuple[float, ...] = (0.25,)
    transfer: bool = False  # a pretrained backbone: accepts weights=, freeze=, unfreeze_last=


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, *, input_size: int, channels: int, description: str, **extra):
    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = ModelSpec(name, fn, input_size, channels, description, **extra)
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


def count_params(model: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Backbone(nn.Module):
    """emolens' own nets: ``features`` (conv stages, each ending in a 2×2 max-pool: the blocks of
    ``unfreeze_last``) and ``head``. Fine-tuning from another model can freeze the stages, as for the transfer
    models: frozen stages keep their weights and stay in eval mode (their BatchNorm statistics too)."""

    features: nn.Sequential

    def blocks(self) -> list[list[nn.Module]]:
        out: list[list[nn.Module]] = [[]]
        for m in self.features:
            out[-1].append(m)
            if isinstance(m, nn.MaxPool2d):
                out.append([])
        return [b for b in out if b]

    def set_trainable(self, freeze: bool, unfreeze_last: int = 0) -> None:
        blocks = self.blocks()
        for i, block in enumerate(blocks):
            on = not freeze or i >= len(blocks) - unfreeze_last
            for m in block:
                for p in m.parameters():
                    p.requires_grad_(on)

    def train(self, mode: bool = True) -> _Backbone:
        super().train(mode)
        for block in self.blocks():
            if not any(p.requires_grad for m in block for p in m.parameters()):
                for m in block:
                    m.eval()
        return self


class VGGNet(_Backbone):
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


@register("vgg_xs", input_size=48, channels=1, description="VGG-style CNN, 4 stages × 2 conv (24-192), 48×48 gray")
def vgg_xs(num_classes: int = 7, **kw) -> nn.Module:
    """vgg_s at three quarters of its width (0.57 of its multiply-adds): the ``fast`` model's size. Trained by
    pruning a vgg_s's channels (scripts/prune_vgg.py) and distilling, or from scratch."""
    return VGGNet(num_classes, widths=(24, 48, 96, 192), hidden=192, **kw)


@register("vgg_m", input_size=48, channels=1, description="VGG-style CNN, 4 stages × 2 conv (64-512), 48×48 gray")
def vgg_m(num_classes: int = 7, **kw) -> nn.Module:
    return VGGNet(num_classes, widths=(64, 128, 256, 512), hidden=512, **kw)


# ----------------------------------------------------------------------------- the seed projects' CNNs
# Written from each seed's description (layer types, widths, dense sizes, dropout, input); where a seed does not
# state a width, the choice is noted in the docstring.


class _Seq(_Backbone):
    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("seed003_cnn", input_size=48, channels=1,
          description="seed 003: 4 conv+BN (64-512), dense 256/128, dropout 0.25, 48x48 gray")
def seed003_cnn(num_classes: int = 7, in_chans: int = 1, input_size: int = 48) -> nn.Module:
    """Seed 003's 48x48 CNN: four blocks of conv3x3-BN-ReLU-maxpool-dropout(0.25) with 64, 128, 256, 512
    filters (the seed gives "4 conv + BN"; the widths are the usual ones for this Kaggle design), then
    dense 256 and dense 128 (each BN-ReLU-dropout 0.25) and the classifier."""
    layers: list[nn.Module] = []
    c = in_chans
    for w in (64, 128, 256, 512):
        layers += [*_conv_bn(c, w), nn.MaxPool2d(2), nn.Dropout(0.25)]
        c = w
    side = input_size // 16
    head: list[nn.Module] = [nn.Flatten()]
    d = c * side * side
    for h in (256, 128):
        head += [nn.Linear(d, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Dropout(0.25)]
        d = h
    head.append(nn.Linear(d, num_classes))
    return _Seq(nn.Sequential(*layers), nn.Sequential(*head))


@register("seed001_cnn", input_size=48, channels=1,
          description="seed 001: 6 conv (3 blocks x 2, 64-256), dense 1024, dropout 0.5, 48x48 gray")
def seed001_cnn(num_classes: int = 7, in_chans: int = 1, input_size: int = 48) -> nn.Module:
    """Seed 001's custom CNN: six 3x3 conv-ReLU layers in three blocks of two (64, 128, 256 filters; BN after
    each conv), 2x2 max-pool and dropout 0.25 after each block, then Dense(1024)-ReLU-dropout(0.5) and the
    classifier."""
    layers: list[nn.Module] = []
    c = in_chans
    for w in (64, 128, 256):
        layers += [*_conv_bn(c, w), *_conv_bn(w, w), nn.MaxPool2d(2), nn.Dropout(0.25)]
        c = w
    side = input_size // 8
    head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(1024, num_classes))
    return _Seq(nn.Sequential(*layers), head)


@register("seed002_cnn", input_size=256, channels=3,
          description="seed 002: binary CNN, 3 conv (32/64/128), dense 512, dropout 0.5, 256x256 colour")
def seed002_cnn(num_classes: int = 2, in_chans: int = 3, input_size: int = 256) -> nn.Module:
    """Seed 002's happy/sad CNN: three conv3x3-ReLU-maxpool blocks with 32, 64 and 128 filters on 256x256
    colour images, flattened (32x32x128) into Dense(512)-ReLU, dropout 0.5 and the classifier (the seed's single
    sigmoid unit is two softmax logits here, so the same loss and export serve every label set)."""
    layers: list[nn.Module] = []
    c = in_chans
    for w in (32, 64, 128):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = w
    side = input_size // 8
    head = nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(512, num_classes))
    return _Seq(nn.Sequential(*layers), head)


# ----------------------------------------------------------------------------- transfer learning (torchvision)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TransferNet(nn.Module):
    """A torchvision ImageNet backbone (``base``, its classifier removed) + global average pooling + a new head.

    ``blocks`` are the backbone's layers in order, the unit of ``unfreeze_last``. Frozen blocks stay in eval
    mode while training (their BatchNorm statistics are not updated), as with Keras' ``trainable = False``."""

    def __init__(self, base: nn.Module, blocks: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.base, self.head = base, head
        self.blocks = blocks  # plain list: the same modules as in base, not registered twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.base(x), 1), 1))

    def set_trainable(self, freeze: bool, unfreeze_last: int = 0) -> None:
        for i, block in enumerate(self.blocks):
            on = not freeze or i >= len(self.blocks) - unfreeze_last
            for p in block.parameters():
                p.requires_grad_(on)

    def train(self, mode: bool = True) -> TransferNet:
        super().train(mode)
        for block in self.blocks:
            if not any(p.requires_grad for p in block.parameters()):
                block.eval()
        return self


def _torchvision():
    """torchvision, or a ValueError saying how to fix an install where it does not load.

    A torchvision wheel only works with the torch build it was made for: torchvision 0.28 from PyPI next to
    the CPU-only torch 2.13.0 fails on import ("operator torchvision::nms does not exist")."""
    try:
        import torchvision
    except Exception as e:  # ImportError when absent; RuntimeError when its compiled ops do not match torch
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"the transfer models need torchvision, which does not load here ({why}); install a "
                         f"torch/torchvision pair built together, e.g. pip install torch==2.14.1 "
                         f"torchvision==0.29.1 (torch {torch.__version__} is installed)") from None
    return torchvision


def _load_imagenet(net: nn.Module, name: str, weights: str | None) -> None:
    """``weights``: None (random init), "imagenet" (torchvision's download) or the path of a state dict."""
    if weights is None:
        return
    if weights == "imagenet":
        enum = _torchvision().models.get_model_weights(name).IMAGENET1K_V1
        try:
            state = enum.get_state_dict(progress=False)
        except OSError as e:  # urllib's URLError is an OSError
            raise ValueError(f"cannot download the ImageNet weights of {name} ({e}); offline? pass --weights PATH "
                             f"to a local copy of {enum.url.rsplit('/', 1)[-1]}") from None
    else:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as e:  # a bad file surfaces as pickle, zip, index or runtime errors
            why = (str(e).splitlines() or [type(e).__name__])[0]
            raise ValueError(f"--weights {weights}: cannot read a state dict ({why})") from None
        if not isinstance(state, dict):
            raise ValueError(f"--weights {weights}: holds a {type(state).__name__}, not a state dict")
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        example = (missing + unexpected)[0]
        raise ValueError(f"--weights {weights}: not {name} ImageNet weights "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {example})")


def _head(features: int, hidden: int, num_classes: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, num_classes))


_TRANSFER = dict(channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, transfer=True)


@register("mobilenet_v2", input_size=96, **_TRANSFER,
          description="seed 000: MobileNetV2 (ImageNet) frozen base + dense 128 + classifier, 96px")
def mobilenet_v2(num_classes: int = 7, weights: str | None = None, freeze: bool = True,
                 unfreeze_last: int = 0) -> nn.Module:
    """Seed 000's transfer model: torchvision MobileNetV2 features (19 blocks), global average pooling,
    Dense(128)-ReLU-dropout(0.3) and the classifier. Base frozen by default. 96x96 input: gray FER faces are
    replicated to 3 channels and upscaled 2x (the seeds use 224; 96 keeps CPU epochs to a minute or two)."""
    net = _torchvision().models.mobilenet_v2()
    _load_imagenet(net, "mobilenet_v2", weights)
    model = TransferNet(net.features, list(net.features), _head(1280, 128, num_classes, 0.3))
    model.set_trainable(freeze, unfreeze_last)
    return model


@register("vgg16", input_size=112, **_TRANSFER,
          description="seed 001: VGG16 (ImageNet) frozen conv base + dense 256 + classifier, 112px")
def vgg16(num_classes: int = 7, weights: str | None = None, freeze: bool = True, unfreeze_last: int = 0) -> nn.Module:
    """Seed 001's VGG16 transfer model: torchvision VGG16's 13 conv layers (frozen by default; each conv is
    one block for ``unfreeze_last``), global average pooling, Dense(256)-ReLU-dropout(0.5), classifier; 112px."""
    net = _torchvision().models.vgg16()
    _load_imagenet(net, "vgg16", weights)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    model = TransferNet(net.features, convs, _head(512, 256, num_classes, 0.5))
    model.set_trainable(freeze, unfreeze_last)
    return model


@register("resnet50", input_size=112, **_TRANSFER,
          description="seed 001: ResNet50 (ImageNet), last N blocks trainable (default 3) + dense 256, 112px")
def resnet50(num_classes: int = 7, weights: str | None = None, freeze: bool = True,
             unfreeze_last: int = 3) -> nn.Module:
    """Seed 001's ResNet50 fine-tuning: torchvision ResNet50 (stem + 16 bottleneck blocks; ``unfreeze_last``
    counts bottleneck blocks, default the last 3 = layer4), global average pooling, Dense(256)-ReLU-dropout(0.5),
    classifier; 112px."""
    net = _torchvision().models.resnet50()
    _load_imagenet(net, "resnet50", weights)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    base = nn.Sequential(stem, net.layer1, net.layer2, net.layer3, net.layer4)
    blocks = [stem, *net.layer1, *net.layer2, *net.layer3, *net.layer4]
    model = TransferNet(base, blocks, _head(2048, 256, num_classes, 0.5))
    model.set_trainable(freeze, unfreeze_last)
    return model
