"""`emolens predict` end to end: in-process through emolens.cli.main, and a few real subprocesses.

These tests check the command's contract: the shape of the answer (one face, valid probabilities,
label = argmax of scores), errors, exit codes, files written and pipes.  Which emotion the bundled
model finds is asserted in tests/test_api.py (the acceptance photo through `emolens predict`, and
the open smiles in the API).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import pytest

from emolens.cli import main

PORTRAIT = "portrait_obama3.jpg"
CROP = "aligned_crop_112.png"


# ----------------------------------------------------------------------------- helpers
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_main(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emolens", "predict", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(out: str) -> list[str]:
    """The data rows of the predict table (header and dashed rule removed)."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines[0].split()[:2] == ["file", "face"], out
    assert set(lines[1].replace(" ", "")) == {"-"}, out
    return lines[2:]


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("emolens: error:")]


def png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.fixture(scope="module")
def labels() -> list[str]:
    from emolens.classify import Classifier

    return Classifier().labels


@pytest.fixture
def portrait(photos_dir: Path) -> Path:
    return photos_dir / PORTRAIT


@pytest.fixture
def bad_files(tmp_path: Path, photos_dir: Path) -> list[Path]:
    """Five unreadable inputs: missing, empty, text named .jpg, truncated JPEG, a 30000×30000 PNG header."""
    bad = tmp_path / "bad"
    bad.mkdir()
    missing = bad / "missing.jpg"
    empty = bad / "empty.jpg"
    empty.write_bytes(b"")
    text = bad / "text.jpg"
    text.write_text("not an image at all\n")
    data = (photos_dir / PORTRAIT).read_bytes()
    truncated = bad / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    bomb = bad / "bomb.png"
    bomb.write_bytes(png_header_only(30000, 30000))
    return [missing, empty, text, truncated, bomb]


def check_face_dict(face: dict, labels: list[str], width: int, height: int) -> None:
    assert set(face) - {"landmarks"} == {"box", "label", "score", "scores"}
    if "landmarks" in face:  # five [x, y] points, from the learned detectors
        assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    box = face["box"]
    assert isinstance(box, list) and len(box) == 4 and all(isinstance(v, int) for v in box)
    x, y, w, h = box
    assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width and y + h <= height
    scores = face["scores"]
    assert list(scores) == labels  # every label, in the model's order
    assert all(0.0 <= p <= 1.0 for p in scores.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-3)
    assert face["label"] in labels
    assert face["label"] == max(scores, key=scores.get)
    assert face["score"] == pytest.approx(scores[face["label"]], abs=1e-4)


# ----------------------------------------------------------------------------- one portrait
def test_portrait_table_lists_one_face(capsys, portrait):
    code, out, err = run_main(capsys, portrait)
    assert code == 0, err
    rows = table_rows(out)
    assert len(rows) == 1, out
    row = rows[0]
    assert row.startswith(str(portrait))
    assert row[len(str(portrait)) :].split()[0] == "1"  # face number 1
    assert "ERROR" not in out and "no face found" not in out
    assert "Traceback" not in err


def test_portrait_json(capsys, portrait, labels):
    code, out, err = run_main(capsys, "--json", portrait)
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, list) and len(data) == 1
    (item,) = data
    assert set(item) == {"file", "faces"}
    assert item["file"] == str(portrait)
    assert len(item["faces"]) == 1
    h, w = cv2.imread(str(portrait)).shape[:2]
    check_face_dict(item["faces"][0], labels, w, h)


def test_no_tta_flag_gives_the_same_faces_from_one_view(capsys, portrait):
    code, out, err = run_main(capsys, "--json", portrait)
    code_fast, out_fast, err_fast = run_main(capsys, "--json", "--no-tta", portrait)
    assert code == code_fast == 0, err + err_fast
    (full,), (fast,) = json.loads(out)[0]["faces"], json.loads(out_fast)[0]["faces"]
    assert fast["box"] == full["box"] and fast["scores"] != full["scores"]


def test_no_detect_on_aligned_crop_uses_whole_image(capsys, photos_dir, labels):
    code, out, err = run_main(capsys, "--json", "--no-detect", photos_dir / CROP)
    assert code == 0, err
    (item,) = json.loads(out)
    assert len(item["faces"]) == 1
    face = item["faces"][0]
    assert face["box"] == [0, 0, 112, 112]
    check_face_dict(face, labels, 112, 112)


def test_no_detect_table(capsys, photos_dir):
    code, out, _ = run_main(capsys, "--no-detect", photos_dir / CROP)
    assert code == 0
    (row,) = table_rows(out)
    assert "0, 0, 112, 112" in row


# ----------------------------------------------------------------------------- bad inputs beside a good one
def test_bad_inputs_reported_good_one_still_processed_table(capsys, portrait, bad_files):
    code, out, err = run_main(capsys, *bad_files, portrait)
    assert code == 1
    assert "Traceback" not in err
    errs = error_lines(err)
    assert len(errs) == len(bad_files), err
    for bad in bad_files:
        mine = [ln for ln in errs if str(bad) in ln]
        assert len(mine) == 1, (bad, err)
    assert "limit" in next(ln for ln in errs if "bomb.png" in ln)
    rows = table_rows(out)
    good = [r for r in rows if r.startswith(str(portrait))]
    assert len(good) == 1 and "ERROR" not in good[0]
    assert sum("ERROR" in r for r in rows) == len(bad_files)


def test_bad_inputs_reported_good_one_still_processed_json(capsys, portrait, bad_files, labels):
    code, out, err = run_main(capsys, "--json", *bad_files, portrait)
    assert code == 1
    assert "Traceback" not in err
    assert len(error_lines(err)) == len(bad_files)
    data = json.loads(out)
    assert [d["file"] for d in data] == [str(p) for p in [*bad_files, portrait]]  # input order kept
    for d, bad in zip(data[:-1], bad_files):
        assert set(d) == {"file", "faces", "error"}
        assert d["faces"] == []  # consumers can index faces on every entry
        assert bad.name in d["error"]
    good = data[-1]
    assert "error" not in good
    assert len(good["faces"]) == 1
    h, w = cv2.imread(str(portrait)).shape[:2]
    check_face_dict(good["faces"][0], labels, w, h)


def test_only_bad_inputs_exit_1(capsys, bad_files):
    code, out, err = run_main(capsys, *bad_files)
    assert code == 1
    assert len(error_lines(err)) == len(bad_files)
    assert "Traceback" not in err


def test_bad_inputs_subprocess(tmp_path, portrait, bad_files):
    r = run_cli(*bad_files, portrait, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errs = error_lines(r.stderr)
    assert len(errs) == len(bad_files), r.stderr
    for bad in bad_files:
        assert sum(str(bad) in ln for ln in errs) == 1
    # nothing but our one-line errors on stderr (no decoder warnings either)
    assert [ln for ln in r.stderr.splitlines() if ln.strip()] == errs
    rows = table_rows(r.stdout)
    assert sum(row.startswith(str(portrait)) and "ERROR" not in row for row in rows) == 1


def test_portrait_json_subprocess(tmp_path, portrait, labels):
    r = run_cli("--json", portrait, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    (item,) = json.loads(r.stdout)
    assert len(item["faces"]) == 1
    h, w = cv2.imread(str(portrait)).shape[:2]
    check_face_dict(item["faces"][0], labels, w, h)


# ----------------------------------------------------------------------------- closed pipes
def test_stdout_closed_before_output_exits_quietly(tmp_path, portrait):
    """The reader is gone before anything is printed: every write hits a closed pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emolens", "predict", "--json", str(portrait)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    assert err == ""  # no traceback, no "Exception ignored ... BrokenPipeError"


def test_reader_that_stops_early_like_head(tmp_path):
    """`emolens predict --json MANY | head -5`: output larger than the pipe buffer, reader leaves after 5 lines."""
    names = [f"missing-{i:04d}.jpg" for i in range(1500)]  # JSON far over the 64 KiB a pipe holds
    with open(tmp_path / "stderr.txt", "wb") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emolens", "predict", "--json", *names],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=err_file,
        )
        head = [proc.stdout.readline() for _ in range(5)]
        proc.stdout.close()
        code = proc.wait(timeout=120)
    assert head[0] == b"[\n" and b'"file": "missing-0000.jpg"' in head[2] and head[3] == b'    "faces": [],\n'
    assert code == 1
    err = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
    assert all(ln.startswith("emolens: error: missing-") for ln in err.splitlines())


# ----------------------------------------------------------------------------- --annotate
def test_annotate_writes_a_new_file_each_run(capsys, tmp_path, portrait):
    src = tmp_path / "in" / PORTRAIT
    src.parent.mkdir()
    shutil.copy(portrait, src)
    before = sha256(src)
    out_dir = tmp_path / "out"  # does not exist yet: created
    stem = src.stem

    code, out, err = run_main(capsys, src, "--annotate", out_dir)
    assert code == 0, err
    first = out_dir / f"{stem}_emolens.jpg"
    assert first.is_file()
    assert f"annotated: {first}" in err
    img = cv2.imread(str(first))
    assert img is not None and img.shape == cv2.imread(str(src)).shape

    code, out, err = run_main(capsys, "--json", src, "--annotate", out_dir)
    assert code == 0, err
    second = out_dir / f"{stem}_emolens-1.jpg"
    assert second.is_file()
    assert json.loads(out)[0]["annotated"] == str(second)
    assert cv2.imread(str(second)).shape == img.shape
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([first.name, second.name])  # no temp files left
    assert sha256(src) == before
    assert sha256(portrait) == sha256(src)


def test_annotate_into_the_input_folder_never_overwrites_the_input(capsys, tmp_path, photos_dir):
    # A JPEG face crop (and --no-detect) keeps this fast; the name mimics an earlier annotation.
    crop = cv2.imread(str(photos_dir / CROP))
    src = tmp_path / "face_emolens.jpg"
    assert cv2.imwrite(str(src), crop)
    before = sha256(src)
    for _ in range(3):
        code, _out, err = run_main(capsys, "--no-detect", src, "--annotate", tmp_path)
        assert code == 0, err
    assert sha256(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "face_emolens.jpg",
        "face_emolens_emolens-1.jpg",
        "face_emolens_emolens-2.jpg",
        "face_emolens_emolens.jpg",
    ]
    for p in tmp_path.iterdir():
        assert cv2.imread(str(p)).shape == crop.shape


def test_annotate_same_folder_plain_name(capsys, tmp_path, photos_dir):
    src = tmp_path / "face.jpg"
    assert cv2.imwrite(str(src), cv2.imread(str(photos_dir / CROP)))
    before = sha256(src)
    for _ in range(2):
        assert run_main(capsys, "--no-detect", src, "--annotate", tmp_path)[0] == 0
    assert sha256(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg", "face_emolens-1.jpg", "face_emolens.jpg"]


def test_annotate_png_input_gives_png(capsys, tmp_path, photos_dir):
    out_dir = tmp_path / "out"
    code, _, err = run_main(capsys, "--no-detect", photos_dir / CROP, "--annotate", out_dir)
    assert code == 0, err
    out = out_dir / "aligned_crop_112_emolens.png"
    assert cv2.imread(str(out)).shape == (112, 112, 3)


def test_annotate_target_is_a_file(capsys, tmp_path, photos_dir):
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    code, _, err = run_main(capsys, "--no-detect", photos_dir / CROP, "--annotate", not_dir)
    assert code == 2
    assert "file.txt" in err and "not a folder" in err
    assert not_dir.read_text() == "x"


def test_annotate_under_a_file_is_a_clean_error(capsys, tmp_path, photos_dir):
    not_dir = tmp_path / "file.txt"
    not_dir.write_text("x")
    code, _, err = run_main(capsys, "--no-detect", photos_dir / CROP, "--annotate", not_dir / "sub")
    assert code == 2
    assert "file.txt" in err


# ----------------------------------------------------------------------------- folders
def test_folder_processes_every_image(capsys, tmp_path, photos_dir, labels):
    folder = tmp_path / "imgs"
    folder.mkdir()
    crop = cv2.imread(str(photos_dir / CROP))
    names = ["a.png", "b.jpg", "c.bmp"]
    for name in names:
        assert cv2.imwrite(str(folder / name), crop)
    (folder / "notes.txt").write_text("not an image")
    code, out, err = run_main(capsys, "--json", "--no-detect", folder)
    assert code == 0, err
    data = json.loads(out)
    assert [Path(d["file"]).name for d in data] == names
    for d in data:
        assert len(d["faces"]) == 1
        check_face_dict(d["faces"][0], labels, 112, 112)


def test_folder_and_file_together(capsys, tmp_path, photos_dir):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(photos_dir / CROP, folder / "one.png")
    code, out, err = run_main(capsys, "--json", "--no-detect", photos_dir / CROP, folder)
    assert code == 0, err
    assert [Path(d["file"]).name for d in json.loads(out)] == [CROP, "one.png"]


def test_empty_folder_exit_2(capsys, tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    code, out, err = run_main(capsys, tmp_path)
    assert code == 2
    assert out == ""
    assert err.startswith("emolens: error:") and "no image files" in err
    assert len(err.strip().splitlines()) == 1


def test_empty_folder_subprocess(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli(empty, cwd=tmp_path)
    assert r.returncode == 2
    assert "no image files" in r.stderr
    assert "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- --model
def test_missing_model_exit_2(capsys, tmp_path, photos_dir):
    model = tmp_path / "nope.onnx"
    code, out, err = run_main(capsys, "--model", model, photos_dir / CROP)
    assert code == 2
    assert out == ""
    assert str(model) in err and "not found" in err
    assert "Traceback" not in err


def test_non_onnx_model_exit_2(capsys, tmp_path, photos_dir):
    model = tmp_path / "fake.onnx"
    model.write_text("this is not a protobuf")
    code, out, err = run_main(capsys, "--model", model, photos_dir / CROP)
    assert code == 2
    assert out == ""
    assert str(model) in err and "ONNX" in err
    assert len(err.strip().splitlines()) == 1


def test_model_is_a_folder_exit_2(capsys, tmp_path, photos_dir):
    code, _, err = run_main(capsys, "--model", tmp_path, photos_dir / CROP)
    assert code == 2
    assert str(tmp_path) in err


@pytest.mark.parametrize("kind", ["missing", "not-onnx"])
def test_bad_model_subprocess(tmp_path, photos_dir, kind):
    model = tmp_path / "model.onnx"
    if kind == "not-onnx":
        model.write_bytes(b"\x00garbage\xff" * 10)
    r = run_cli("--model", model, photos_dir / CROP, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("emolens: error:") and "model.onnx" in r.stderr
    assert r.stdout == ""


def test_unknown_detector_exit_2(capsys, photos_dir):
    code, _, err = run_main(capsys, "--detector", "bogus", photos_dir / CROP)
    assert code == 2
    assert "bogus" in err
