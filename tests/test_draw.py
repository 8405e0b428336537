"""Annotated pictures: every label stays inside the picture, whole (a face near the right edge of the group photo
had its label cut off), and a label wider than the picture gets smaller type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import emolens.results.draw
from emolens.face.detect.base import Box
from emolens.results.draw import annotate, label_origin
from emolens.results.faces import Face


def _label_boxes(monkeypatch, image, faces):
    """The filled rectangles annotate draws (the labels' backgrounds) as (x0, y0, x1, y1)."""
    boxes = []
    real = emolens.results.draw.cv2.rectangle

    def spy(img, p0, p1, colour, thickness=1, *a, **k):
        if thickness == cv2.FILLED:
            boxes.append((*p0, *p1))
        return real(img, p0, p1, colour, thickness, *a, **k)

    monkeypatch.setattr(emolens.results.draw.cv2, "rectangle", spy)
    out = annotate(image, faces)
    return boxes, out


def _face(x, y, w, h, label="surprise"):
    return Face(Box(x, y, w, h), label, 0.99, {label: 0.99})


def test_labels_of_faces_at_every_edge_stay_whole_inside_the_picture(monkeypatch):
    img = np.zeros((120, 240, 3), np.uint8)
    faces = [_face(215, 40, 25, 25), _face(0, 0, 30, 30), _face(100, 95, 30, 25), _face(-5, 60, 20, 20)]
    boxes, out = _label_boxes(monkeypatch, img, faces)
    assert len(boxes) == 4
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 240 and 0 <= y0 < y1 <= 120, (x0, y0, x1, y1)
    # the right-edge face's label is drawn in full: its colour spans the whole label width
    x0, y0, x1, y1 = boxes[0]
    band = out[y0 + 1 : y1 - 1, :, :]
    colour = np.array(emolens.results.draw.colour_for("surprise"), np.uint8)
    cols = np.flatnonzero((band == colour).all(axis=2).any(axis=0))
    assert cols.max() - cols.min() + 1 >= x1 - x0 - 2 and cols.max() == 239


def test_a_label_wider_than_the_picture_gets_smaller_type(monkeypatch):
    img = np.zeros((60, 70, 3), np.uint8)
    boxes, _ = _label_boxes(monkeypatch, img, [_face(10, 20, 30, 30)])
    (x0, _, x1, _), = boxes
    assert 0 <= x0 and x1 <= 70


@pytest.mark.parametrize("x, top, bottom, w, h", [(300, 50, 90, 320, 200), (-20, 5, 40, 320, 200),
                                                   (10, 0, 199, 320, 200), (100, 180, 199, 320, 200)])
def test_label_origin_keeps_the_label_inside(x, top, bottom, w, h):
    tx, ty = label_origin(x, top, bottom, 60, 14, w, h)
    assert 0 <= tx and tx + 60 <= w and ty - 14 >= 0 and ty + 2 <= h


def test_the_group_photo_labels_stay_inside(monkeypatch, photos_dir):
    from emolens import EmotionRecognizer

    path = photos_dir / "group_six.jpg"
    faces = EmotionRecognizer().predict(path)
    img = cv2.imread(str(path))
    boxes, _ = _label_boxes(monkeypatch, img, faces)
    h, w = img.shape[:2]
    assert len(boxes) == len(faces) >= 5
    assert all(0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h for x0, y0, x1, y1 in boxes), (boxes, w, h)
