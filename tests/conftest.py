"""Shared fixtures: the real data next to the repository (../shared), skipped when absent."""

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
