"""Face detection on the real photos in ../shared/photos (face counts from its README)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emolens import load_image
from emolens.face.detect import (
    DEFAULT_DETECTOR,
    FAST_DETECTOR,
    LANDMARK_NAMES,
    Box,
    CenterFaceDetector,
    HaarDetector,
    available_detectors,
    create_detector,
    describe_detectors,
    merge_overlapping,
)

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
    with pytest.raises(ValueError, match="unknown detector 'nope'; available: centerface, centerface-fast, haar"):
        create_detector("nope")


# ----------------------------------------------------------------------------- every detector, learned ones
ALL = available_detectors()
LEARNED = [d.name for d in describe_detectors() if d.landmarks]


@pytest.fixture(scope="module")
def detectors() -> dict:
    return {name: create_detector(name) for name in ALL}


def _covers(b: Box, c) -> bool:
    return b.x <= c[0] <= b.x + b.w and b.y <= c[1] <= b.y + b.h


def test_the_default_detector_is_learned_and_gives_landmarks():
    assert DEFAULT_DETECTOR in LEARNED and FAST_DETECTOR in LEARNED
    assert {"haar", "haar-fast"} <= set(ALL)  # what worked before still works


@pytest.mark.parametrize("name", PORTRAITS)
@pytest.mark.parametrize("det", LEARNED)
def test_learned_detectors_find_the_one_face_of_each_portrait(detectors, photos_dir, name, det):
    img = load_image(photos_dir / name)
    boxes = detectors[det].detect(img)
    assert len(boxes) == 1, [b.as_list() for b in boxes]
    b = boxes[0]
    assert 0 <= b.x and 0 <= b.y and b.x + b.w <= img.shape[1] and b.y + b.h <= img.shape[0]
    assert 0 < b.score <= 1


@pytest.mark.parametrize("det", LEARNED)
def test_learned_detectors_find_all_six_group_faces_and_nothing_else(detectors, photos_dir, det):
    boxes = detectors[det].detect(load_image(photos_dir / "group_six.jpg"))
    assert len(boxes) == 6, [b.as_list() for b in boxes]  # Haar also boxes a hand here
    for c in GROUP_FACE_CENTRES:
        assert sum(_covers(b, c) for b in boxes) == 1, c


def test_landmarks_lie_inside_their_boxes_in_order(detectors, photos_dir):
    for name in [*PORTRAITS, "group_six.jpg"]:
        for b in detectors["centerface"].detect(load_image(photos_dir / name)):
            assert b.landmarks is not None and len(b.landmarks) == 5 == len(LANDMARK_NAMES)
            (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = b.landmarks
            if name != "portrait_obama_partial_face.jpg":  # its face runs past the picture's left edge
                assert all(b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h for x, y in b.landmarks), name
            assert lex < rex and mlx < mrx, name  # image-left eye first: upright faces
            assert max(ley, rey) < ny < min(mly, mry), name  # eyes above the nose above the mouth


@pytest.mark.parametrize("angle", [-45, -30, 30, 45])
def test_tilted_faces_are_found(detectors, photos_dir, angle):
    img = load_image(photos_dir / "portrait_obama.jpg")
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    rotated = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    boxes = detectors["centerface"].detect(rotated)
    assert len(boxes) == 1
    # the landmarks turn with the face: the eye line's angle follows the rotation (image y points down)
    (lx, ly), (rx, ry) = boxes[0].landmarks[:2]
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx)) + angle) < 12


@pytest.mark.parametrize("det", LEARNED)
def test_a_picture_that_is_only_a_face_is_found(detectors, photos_dir, det):
    img = load_image(photos_dir / "portrait_obama.jpg")
    b = detectors["centerface"].detect(img)[0]
    tight = img[b.y + b.h // 10: b.y + b.h, b.x: b.x + b.w]  # the face fills the picture, forehead cut
    for crop in (tight, cv2.resize(tight, (48, 48), interpolation=cv2.INTER_AREA)):
        found = detectors[det].detect(crop)
        assert len(found) == 1, crop.shape


@pytest.mark.parametrize("det", ALL)
def test_every_detector_takes_odd_pictures_without_error(detectors, det):
    d = detectors[det]
    assert d.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert d.detect(np.zeros((5, 5, 3), np.uint8)) == []
    assert d.detect(np.zeros((1, 3000, 3), np.uint8)) == []
    assert d.detect(np.zeros((64, 64), np.uint8)) == []  # gray, 2-D
    assert d.detect(np.zeros((64, 64, 4), np.uint8)) == []  # BGRA


def test_learned_detector_options_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        CenterFaceDetector(threshold=1.5)
    with pytest.raises(FileNotFoundError, match="not found"):
        CenterFaceDetector(model="/nonexistent/centerface.onnx")


def test_moved_box_keeps_landmarks_relative_to_it():
    b = Box(10, 20, 100, 100, 0.9, ((30.0, 50.0), (80.0, 50.0), (55.0, 70.0), (35.0, 95.0), (75.0, 95.0)))
    m = b.moved_to(110, 20, 200, 100)
    assert m.landmarks[0] == (110 + 20 * 2, 50.0) and m.score == 0.9
    assert b.expand(0.1, 1000, 1000).landmarks == b.landmarks


@pytest.mark.parametrize("det", ALL)
def test_one_detector_serves_several_threads(detectors, photos_dir, det):
    """`emolens predict` works on several pictures at once in threads sharing one detector (a shared Haar
    cascade failed an OpenCV assertion there); every thread gets what a lone call gets."""
    from concurrent.futures import ThreadPoolExecutor

    imgs = [load_image(photos_dir / n) for n in ("group_six.jpg", "portrait_obama.jpg", "portrait_biden.jpg")] * 4
    alone = [[b.as_list() for b in detectors[det].detect(i)] for i in imgs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda i: [b.as_list() for b in detectors[det].detect(i)], imgs))
    assert together == alone
