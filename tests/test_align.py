"""Alignment: landmarks -> crops in the model's framing, on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emolens import EmotionRecognizer, load_image
from emolens.classify import Classifier
from emolens.face.align import (
    ALIGN_MODES,
    FER2013_TEMPLATE,
    aligned_crop,
    check_mode,
    eye_angle,
    measure_template,
    template_matrix,
)
from emolens.face.detect import Box, create_detector


@pytest.fixture(scope="module")
def tilted(photos_dir):
    """The sample portrait turned by 25 degrees, and its detected face."""
    img = load_image(photos_dir / "portrait_obama.jpg")
    h, w = img.shape[:2]
    img = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), (w, h),
                         borderMode=cv2.BORDER_REPLICATE)
    box = create_detector("centerface").detect(img)[0]
    return img, box


def _eyes_in_crop(crop: np.ndarray):
    """The detector's eye landmarks found again on the crop (padded so the face is not the whole picture)."""
    b = create_detector("centerface").detect(crop)
    assert b, "no face in the aligned crop"
    return b[0].landmarks[:2]


@pytest.mark.parametrize("mode", ["level", "template"])
def test_alignment_puts_the_eyes_level(tilted, mode):
    img, box = tilted
    assert abs(eye_angle(box.landmarks)) > 15  # the face really is tilted
    crop = aligned_crop(img, box, 1.4, mode=mode, input_size=48)
    assert crop.shape[0] == crop.shape[1] >= 48
    assert abs(eye_angle(_eyes_in_crop(crop))) < 5
    # a box crop keeps the tilt
    assert abs(eye_angle(_eyes_in_crop(aligned_crop(img, box, 1.4, mode="none", input_size=48)))) > 15


def test_template_alignment_puts_the_landmarks_on_the_template(tilted):
    img, box = tilted
    side = 96
    m = template_matrix(box.landmarks, FER2013_TEMPLATE, 1.0, side)
    pts = np.hstack([np.asarray(box.landmarks), np.ones((5, 1))]) @ m.T / side
    assert np.abs(pts - np.asarray(FER2013_TEMPLATE)).max() < 0.06  # 5 points, 4 degrees of freedom


def test_faces_without_landmarks_are_box_crops(photos_dir):
    img = load_image(photos_dir / "portrait_obama.jpg")
    box = Box(368, 86, 251, 347)
    for mode in ALIGN_MODES:
        crop = aligned_crop(img, box, 1.0, mode=mode, input_size=48)
        assert crop.shape[:2] == (347, 347)


def test_unknown_alignment_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown alignment 'tilt'; choose one of: none, level, template"):
        check_mode("tilt")
    with pytest.raises(ValueError, match="unknown alignment"):
        EmotionRecognizer(align="tilt")


def test_measured_template_is_symmetric_and_ordered():
    rng = np.random.default_rng(0)
    pts = np.asarray(FER2013_TEMPLATE)[None] + rng.normal(0, 0.02, (200, 5, 2))
    t = np.asarray(measure_template(pts))
    assert np.allclose(t[0, 0] + t[1, 0], 1.0) and t[0, 1] == t[1, 1] and t[2, 0] == 0.5
    assert np.abs(t - np.asarray(FER2013_TEMPLATE)).max() < 0.01
    with pytest.raises(ValueError, match="N×5×2"):
        measure_template(np.zeros((3, 4, 2)))


def test_the_bundled_models_carry_their_landmark_template():
    for name in ("default", "fast"):
        t = Classifier(name).meta.landmark_template
        assert t is not None and np.allclose(t, FER2013_TEMPLATE, atol=1e-4)


@pytest.mark.parametrize("mode", ALIGN_MODES)
def test_every_alignment_labels_the_clear_smile(photos_dir, mode):
    faces = EmotionRecognizer(align=mode).predict(photos_dir / "portrait_obama.jpg")
    assert len(faces) == 1 and faces[0].label == "happy" and faces[0].score > 0.6
