"""Face detection on the real photos in ../shared/photos (face counts from its README)."""

from __future__ import annotations

import numpy as np
import pytest

from emolens import load_image
from emolens.detect import Box, HaarDetector, create_detector, merge_overlapping

PORTRAITS = [
    "portrait_obama.jpg",
    "portrait_obama2.jpg",
    "portrait_obama3.jpg",
    "portrait_biden.jpg",
    "portrait_obama_partial_face.jpg",
    "portrait_obama_partial_face2.jpg",
    "aligned_crop_112.png",
]

# Where a person sees the six faces of group_six.jpg (centre x, y in pixels).
GROUP_FACE_CENTRES = [(516, 342), (115, 327), (311, 213), (1172, 338), (783, 413), (934, 130)]


@pytest.fixture(scope="module")
def detector() -> HaarDetector:
    return HaarDetector()


@pytest.mark.parametrize("name", PORTRAITS)
def test_one_face_in_each_portrait(detector, photos_dir, name):
    boxes = detector.detect(load_image(photos_dir / name))
    assert len(boxes) == 1, [b.as_list() for b in boxes]


def test_six_faces_in_group_photo(detector, photos_dir):
    img = load_image(photos_dir / "group_six.jpg")
    boxes = detector.detect(img)
    assert 5 <= len(boxes) <= 7
    # every real face is covered by a box (the count alone could hide misses + false faces)
    for cx, cy in GROUP_FACE_CENTRES:
        assert any(b.x <= cx <= b.x + b.w and b.y <= cy <= b.y + b.h for b in boxes), (cx, cy)
    for b in boxes:
        assert 0 <= b.x and 0 <= b.y and b.x + b.w <= img.shape[1] and b.y + b.h <= img.shape[0]


def test_upright_only_search_misses_tilted_faces_that_rotation_finds(photos_dir):
    img = load_image(photos_dir / "group_six.jpg")
    upright = HaarDetector(angles=(0,)).detect(img)
    rotated = HaarDetector().detect(img)
    def covered(boxes, c):
        return any(b.x <= c[0] <= b.x + b.w and b.y <= c[1] <= b.y + b.h for b in boxes)
    assert sum(covered(rotated, c) for c in GROUP_FACE_CENTRES) > sum(covered(upright, c) for c in GROUP_FACE_CENTRES)


def test_no_face_in_blank_or_tiny_images(detector):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert detector.detect(np.zeros((5, 5, 3), np.uint8)) == []


def test_merge_overlapping_keeps_the_largest_of_a_cluster():
    boxes = [Box(10, 10, 100, 100), Box(15, 12, 90, 90), Box(300, 300, 50, 50)]
    merged = merge_overlapping(boxes)
    assert [b.as_list() for b in merged] == [[10, 10, 100, 100], [300, 300, 50, 50]]


def test_box_expand_is_clipped_to_the_image():
    b = Box(5, 5, 20, 20).expand(0.5, width=30, height=28)
    assert b.as_list() == [0, 0, 30, 28]


def test_unknown_detector_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown detector 'nope'; available: haar"):
        create_detector("nope")
