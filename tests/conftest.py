"""Shared fixtures: the real data next to the repository (../shared), skipped when absent; model copies."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    """../shared/photos: real photos (portraits, a group photo, an aligned face crop)."""
    p = SHARED / "photos"
    if not p.is_dir():
        pytest.skip(f"real photos not found at {p}")
    return p


@pytest.fixture(scope="session")
def fer_root() -> Path:
    """../shared/datasets/fer2013: the FER2013 dataset as <split>/<class>/* folders."""
    p = SHARED / "datasets" / "fer2013"
    if not p.is_dir():
        pytest.skip(f"FER2013 dataset not found at {p}")
    return p


@pytest.fixture
def with_temperature():
    """``make(src, dst, temperature, bias=None) -> dst``: a copy of an emolens ONNX model whose metadata says
    softmax(logits / temperature + bias), as `emolens calibrate` writes (``temperature=1``, no bias: the raw
    softmax)."""

    def make(src, dst, temperature: float, bias: list[float] | None = None) -> Path:
        import onnx

        from emolens.classify import Classifier

        clf = Classifier(src)
        clf.meta.temperature, clf.meta.logit_bias = temperature, bias
        proto = onnx.load(str(clf.path))
        clf.meta.write_to(proto)
        onnx.save(proto, str(dst))
        return Path(dst)

    return make
