"""Dataset sources: FER2013 CSV, split folders, flat class folders, bad input — on real FER2013
images (../shared) and tiny generated datasets."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest

pytest.importorskip("sklearn")

from emolens.labels import normalise_label  # noqa: E402
from emolens.training import data as data_mod  # noqa: E402
from emolens.training.data import MANIFEST_NAME, open_source  # noqa: E402


def _img(seed: int, shape=(48, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_flat(root, counts: dict[str, int], ext=".png"):
    for name, n in counts.items():
        d = root / name
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"{i:03d}{ext}"), _img(hash((name, i)) % 2**32))
    return root


def write_csv(path, rows, header=("emotion", "pixels", "Usage")):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def pix(img: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in img.ravel())


# ----------------------------------------------------------------------------- split folders
def test_fer_folders_are_split_folders_with_train_and_val(fer_root):
    src = open_source(fer_root)
    assert src.kind == "split-folders" and src.splits == ["train", "val"]
    assert src.default_splits() == ("train", "val")
    ds = src.load("val", size=48, channels=1, limit_per_class=5, log=lambda m: None)
    assert ds.images.shape == (35, 48, 48, 1) and ds.images.dtype == np.uint8
    assert ds.classes == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert ds.class_counts() == dict.fromkeys(ds.classes, 5)
    first = sorted((fer_root / "val" / "angry").iterdir())[0]
    assert np.array_equal(ds.images[0, :, :, 0], cv2.imread(str(first), cv2.IMREAD_GRAYSCALE))


def test_kaggle_train_test_layout_validates_on_test_and_names_are_normalised(tmp_path):
    for split in ("Train", "Test"):
        make_flat(tmp_path / split, {"Happiness": 3, "SADNESS": 3, "anger": 3})
    src = open_source(tmp_path)
    assert src.splits == ["train", "test"] and src.default_splits() == ("train", "test")
    ds = src.load("train", size=32, channels=1, log=lambda m: None)
    assert ds.classes == ["angry", "happy", "sad"]


def test_missing_split_lists_the_ones_that_exist(fer_root):
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train', 'val'\]"):
        open_source(fer_root).load("test", size=48, channels=1)


def test_a_split_with_a_class_outside_the_label_set_is_refused(fer_root):
    with pytest.raises(ValueError, match=r"classes \['surprise'\] are not in the model's label set"):
        open_source(fer_root).load("val", size=48, channels=1, limit_per_class=1,
                                   classes=["angry", "disgust", "fear", "happy", "neutral", "sad"])


# ----------------------------------------------------------------------------- flat class folders
def test_flat_folders_get_a_seeded_stratified_70_15_15_split(tmp_path):
    root = make_flat(tmp_path / "data", {"happy": 40, "sad": 20})
    src = open_source(root)
    assert src.kind == "class-folders" and src.splits == ["train", "val", "test"]
    sizes = {s: len(v) for s, v in src.items.items()}
    assert sizes == {"train": 42, "val": 9, "test": 9}
    for s, items in src.items.items():  # stratified: every split keeps the 2:1 ratio (±1)
        n_happy = sum(c == "happy" for _, c in items)
        assert abs(n_happy - 2 * (len(items) - n_happy)) <= 2, s
    all_files = [f for v in src.items.values() for f, _ in v]
    assert len(set(all_files)) == 60
    assert open_source(root).items == src.items  # same seed, same split
    assert open_source(root, split_seed=1).items["test"] != src.items["test"]


def test_the_split_written_to_the_run_folder_is_read_back_identically(tmp_path):
    root = make_flat(tmp_path / "data", {"happy": 10, "sad": 10})
    src = open_source(root, split_seed=7, fractions=(0.6, 0.2, 0.2))
    path = src.write_manifest(tmp_path / "run")
    assert path.name == MANIFEST_NAME
    doc = json.loads(path.read_text())
    assert doc["seed"] == 7 and doc["fractions"] == [0.6, 0.2, 0.2]
    make_flat(tmp_path / "data" / "happy" / "later", {"x": 3})  # files added after training stay out
    again = open_source(tmp_path / "run")
    assert again.from_manifest and again.items == src.items


def test_too_few_images_to_stratify_is_a_clear_error(tmp_path):
    root = make_flat(tmp_path / "d", {"happy": 10, "sad": 2})
    with pytest.raises(ValueError, match=r"too few images to split \{'sad': 2\}"):
        open_source(root)


def test_duplicate_class_names_after_normalisation_are_refused(tmp_path):
    root = make_flat(tmp_path / "d", {"happy": 3, "Happiness": 3})
    with pytest.raises(ValueError, match="all mean the class"):
        open_source(root)


def test_colour_and_gray_of_any_size_load_at_the_requested_shape(tmp_path):
    d = tmp_path / "d"
    (d / "happy").mkdir(parents=True)
    (d / "sad").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(d / "happy" / f"c{i}.jpg"), rng.integers(0, 256, (120 + i, 90, 3), dtype=np.uint8))
        cv2.imwrite(str(d / "sad" / f"g{i}.png"), rng.integers(0, 256, (30, 31), dtype=np.uint8))
    src = open_source(d, fractions=(0.5, 0.25, 0.25))
    rgb = src.load("train", size=64, channels=3, log=lambda m: None)
    gray = src.load("train", size=48, channels=1, log=lambda m: None)
    assert rgb.images.shape == (4, 64, 64, 3) and gray.images.shape == (4, 48, 48, 1)
    # a gray source image becomes three equal channels
    sad = rgb.images[rgb.labels == rgb.classes.index("sad")][0]
    assert np.array_equal(sad[..., 0], sad[..., 2])


def test_unreadable_files_are_skipped_counted_and_listed(tmp_path):
    root = make_flat(tmp_path / "d", {"happy": 8, "sad": 8})
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "happy" / "empty.png").write_bytes(b"")
    src = open_source(root, fractions=(1, 0, 0))
    lines: list[str] = []
    ds = src.load("train", size=48, channels=1, log=lines.append)
    assert len(ds) == 16 and len(ds.skipped) == 2
    assert {os.path.basename(f) for f, _ in ds.skipped} == {"broken.jpg", "empty.png"}
    assert any("broken.jpg" in m for m in lines) and any("2 of 18 items could not be read" in m for m in lines)


def test_a_split_where_nothing_can_be_read_is_an_error(tmp_path):
    d = tmp_path / "d"
    for c in ("happy", "sad"):
        (d / c).mkdir(parents=True)
        for i in range(3):
            (d / c / f"{i}.jpg").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 6 images could be read"):
        open_source(d, fractions=(1, 0, 0)).load("train", size=48, channels=1, log=lambda m: None)


@pytest.mark.parametrize("layout", ["missing", "empty", "empty-class", "file", "splits-without-classes"])
def test_bad_paths_get_clear_errors(tmp_path, layout):
    target = tmp_path / "data"
    if layout == "empty":
        target.mkdir()
        err, match = ValueError, "empty dataset folder"
    elif layout == "empty-class":
        make_flat(target, {"happy": 3})
        (target / "sad").mkdir()
        err, match = ValueError, r"class folder\(s\) \['sad'\] hold no image files"
    elif layout == "splits-without-classes":
        make_flat(target, {"train": 3, "val": 3})
        err, match = ValueError, r"need one sub-folder per class \(<split>/<class>/\*\)"
    elif layout == "file":
        target = tmp_path / "data.npy"
        target.write_bytes(b"x")
        err, match = ValueError, "not a dataset"
    else:
        err, match = FileNotFoundError, "no such file or folder"
    with pytest.raises(err, match=match):
        open_source(target)


# ----------------------------------------------------------------------------- CSV
def test_fer2013_csv_from_real_images(fer_root, tmp_path):
    """Real FER2013 JPEGs written as CSV rows decode to the same pixels, with Usage -> split and
    FER2013's emotion index order (4 = sad, 6 = neutral)."""
    picks = [("sad", 4, "Training"), ("neutral", 6, "Training"), ("happy", 3, "PublicTest"),
             ("angry", 0, "PrivateTest"), ("sad", 4, "PublicTest")]
    rows, originals = [], []
    for i, (cls, idx, usage) in enumerate(picks):
        f = sorted((fer_root / "val" / cls).iterdir())[i]
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        originals.append(img)
        rows.append([idx, pix(img), usage])
    src = open_source(write_csv(tmp_path / "fer2013.csv", rows))
    assert src.kind == "csv" and src.splits == ["train", "val", "test"]
    assert src.default_splits() == ("train", "val")
    tr = src.load("train", size=48, channels=1, log=lambda m: None)
    assert tr.classes == ["neutral", "sad"]
    assert [tr.classes[k] for k in tr.labels] == ["sad", "neutral"]
    assert np.array_equal(tr.images[0, :, :, 0], originals[0])
    va = src.load("PublicTest", size=48, channels=1, classes=["angry", "happy", "neutral", "sad"], log=lambda m: None)
    assert [va.classes[k] for k in va.labels] == ["happy", "sad"]
    assert src.load("test", size=24, channels=3, log=lambda m: None).images.shape == (1, 24, 24, 3)


def test_csv_bad_rows_are_counted_and_skipped(tmp_path):
    good = pix(_img(1))
    rows = [[3, good, "Training"], [3, "1 2 3", "Training"], [5, "12 x 7", "Training"],
            [9, good, "Training"], [4, good, "Nowhere"], [4, good, "Training"], [3, "300 " * 2304, "Training"]]
    src = open_source(write_csv(tmp_path / "d.csv", rows))
    assert len(src.bad_rows) == 2  # emotion 9 and Usage "Nowhere"
    lines: list[str] = []
    ds = src.load("train", size=48, channels=1, log=lines.append)
    assert len(ds) == 2 and len(ds.skipped) == 3
    text = "\n".join(lines)
    assert "d.csv:2" in text and "not whole numbers" in text and "emotion '9'" in text and "Nowhere" in text


def test_csv_with_class_names_and_no_usage_gets_a_seeded_split(tmp_path):
    rows = [[name, pix(_img(i))] for i in range(10) for name in ("Happiness", "sadness")]
    src = open_source(write_csv(tmp_path / "d.csv", rows, header=("emotion", "pixels")))
    assert src.kind == "csv" and src.splits == ["train", "val", "test"]
    assert src.classes() == ["happy", "sad"]
    src.write_manifest(tmp_path / "run")
    assert open_source(tmp_path / "run").items == src.items


@pytest.mark.parametrize("header", [("label", "pixels", "Usage"), ("emotion", "image"), ("a",)])
def test_csv_with_wrong_columns_is_refused(tmp_path, header):
    path = write_csv(tmp_path / "d.csv", [["0"] * len(header)], header=header)
    with pytest.raises(ValueError, match=r"CSV needs columns emotion,pixels\[,Usage\]; missing"):
        open_source(path)


# ----------------------------------------------------------------------------- cache and names
def test_decoded_arrays_are_cached_on_disk_and_invalidated_by_a_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_mod, "CACHE_MIN_FILES", 1)
    root = make_flat(tmp_path / "d", {"happy": 4, "sad": 4})
    first = open_source(root, fractions=(1, 0, 0)).load("train", size=32, channels=1, log=lambda m: None)
    cached = list((tmp_path / "cache" / "datasets").glob("*.npz"))
    assert len(cached) == 1
    calls = []
    monkeypatch.setattr(data_mod, "load_image", lambda p: calls.append(p))  # would break decoding
    again = open_source(root, fractions=(1, 0, 0)).load("train", size=32, channels=1, log=lambda m: None)
    assert not calls and np.array_equal(again.images, first.images) and again.files == first.files
    monkeypatch.undo()
    monkeypatch.setenv("EMOLENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_mod, "CACHE_MIN_FILES", 1)
    f = root / "sad" / "000.png"
    cv2.imwrite(str(f), np.zeros((48, 48), np.uint8))
    os.utime(f, ns=(1, 1))
    changed = open_source(root, fractions=(1, 0, 0)).load("train", size=32, channels=1, log=lambda m: None)
    assert len(list((tmp_path / "cache" / "datasets").glob("*.npz"))) == 2
    assert not np.array_equal(changed.images, first.images)


@pytest.mark.parametrize("name,expected", [
    ("anger", "angry"), ("Happiness", "happy"), ("sadness", "sad"), ("Surprised", "surprise"),
    ("fearful", "fear"), ("disgusted", "disgust"), ("3 - Happy", "happy"), ("0_angry", "angry"),
    ("neutrals", "neutral"), ("thumbs up", "thumbs_up"), ("Contempt", "contempt"),
])
def test_class_names_are_normalised(name, expected):
    assert normalise_label(name) == expected
