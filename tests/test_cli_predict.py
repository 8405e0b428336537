"""`emolens predict` end to end: in-process through emolens.cli.main, and a few real subprocesses.

These tests check the command's contract: the shape of the answer (one face, valid probabilities,
label = argmax of scores), errors, exit codes, files written and pipes.  Which emotion the bundled
model finds is asserted in tests/test_api.py (the acceptance photo through `emolens predict`, and
the open smiles in the API).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from bad_inputs import corpus_files
from emolens.cli import main
from emolens.imageio import describe
from terminal import run_with_terminal_stderr

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


def test_class_folders_say_recursive_and_recursive_searches_them(capsys, tmp_path, fer_root):
    """A data set of class folders (data/happy/*.jpg, data/sad/*.jpg) said only "no image files found"; now the
    error says the sub-folders hold pictures and names --recursive, which finds every one of them (sorted, hidden
    files and folders left out, a link loop not followed)."""
    data = tmp_path / "data"
    for cls in ("happy", "sad"):
        (data / cls).mkdir(parents=True)
        for f in sorted((fer_root / "val" / cls).iterdir())[:2]:
            shutil.copy(f, data / cls / f.name)
    (data / ".hidden").mkdir()
    shutil.copy(next((fer_root / "val" / "happy").iterdir()), data / ".hidden" / "x.jpg")
    (data / "sad" / "loop").symlink_to(data)
    code, out, err = run_main(capsys, data)
    assert code == 2 and out == ""
    assert err.strip() == (f"emolens: error: no image files directly in {data}: its sub-folders hold some, and they "
                           "are not searched unless you add --recursive")
    code, out, err = run_main(capsys, "--recursive", "--no-detect", "--json", data)
    assert code == 0, err
    files = [Path(d["file"]).relative_to(data).as_posix() for d in json.loads(out)]
    assert len(files) == 4 and files == sorted(files) and all(f.split("/")[0] in ("happy", "sad") for f in files)
    from emolens import EmotionRecognizer

    results = list(EmotionRecognizer().predict_files([data], detect=False, recursive=True))
    assert [Path(r.source).relative_to(data).as_posix() for r in results] == files


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


# ----------------------------------------------------------------------------- hardening (issue 20)
def run_predict(*args: str | Path, cwd: Path, env: dict | None = None, timeout: float = 120
                ) -> subprocess.CompletedProcess:
    """`python -m emolens predict ARGS` in a real process (its stderr filter is on, as for a user)."""
    return subprocess.run([sys.executable, "-m", "emolens", "predict", *map(str, args)], cwd=cwd,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_the_bad_input_corpus_in_one_call_with_two_good_photos(tmp_path, photos_dir):
    """Every kind of bad input at once (tests/bad_inputs.py: a named pipe, /dev/zero, a 631-byte JPEG claiming
    9000x9000, a corrupt PNG, a name that is not UTF-8 ...) with two good photos, under a strict UTF-8 stdout:
    both good results printed, one error line per bad file and nothing else on stderr (no traceback, no libpng
    or libjpeg line), exit 1, in bounded time; the same in --jsonl."""
    photo = (photos_dir / "portrait_obama.jpg").read_bytes()
    bad = corpus_files(tmp_path / "bad", photo)
    good = [photos_dir / "portrait_obama3.jpg", photos_dir / "group_six.jpg"]
    inputs = [good[0], *bad, good[1]]
    refused = [p for p in bad if "noisy_jpeg" not in p.name]  # that one decodes (libjpeg only warns)
    names = {p: describe(p) for p in inputs}
    for mode in ("table", "jsonl"):
        t = time.perf_counter()
        r = run_predict(*([] if mode == "table" else ["--jsonl"]), *inputs, cwd=tmp_path,
                        env={"PYTHONIOENCODING": "utf-8"})
        assert time.perf_counter() - t < 60
        out, err = r.stdout.decode("utf-8"), r.stderr.decode("utf-8")
        assert r.returncode == 1, err
        lines = err.splitlines()
        assert all(ln.startswith("emolens: error: ") for ln in lines), err  # nothing but our one-line errors
        for p in refused:
            assert sum(ln.startswith(f"emolens: error: {names[p]}: ") for ln in lines) == 1, (p, err)
        assert len(lines) == len(refused)
        if mode == "table":
            rows = table_rows(out)
            by_file = {p: [row for row in rows if row.startswith(names[p] + " ")] for p in inputs}
            assert len(by_file[good[0]]) == 1 and by_file[good[0]][0].split()[len(names[good[0]].split())] == "1"
            assert len(by_file[good[1]]) >= 5  # the group photo's faces, numbered rows
            assert all(len(by_file[p]) == 1 and " ERROR " in by_file[p][0] for p in refused)
            assert len(rows) == sum(map(len, by_file.values()))  # nothing else, and no error text in the table
        else:
            items = [json.loads(ln) for ln in out.splitlines()]
            assert [i["file"] for i in items] == [names[p] for p in inputs]
            assert len(items[0]["faces"]) == 1 and len(items[-1]["faces"]) >= 5
            assert sum("error" in i for i in items) == len(refused)


def test_a_name_that_is_not_utf8_prints_escaped_in_every_mode(tmp_path, photos_dir):
    """A good photo named with the bytes e9 ff, under PYTHONIOENCODING=utf-8: a UnicodeEncodeError in the table
    printer used to lose every result of the call. Now the name prints as a\\xe9\\xff.jpg everywhere."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/a\xe9\xff.jpg"))
    shutil.copy(photos_dir / "portrait_obama3.jpg", odd)
    other = photos_dir / "portrait_biden.jpg"
    shown = f"{tmp_path}/a\\xe9\\xff.jpg"
    for mode in ([], ["--json"], ["--jsonl"]):
        r = run_predict(*mode, odd, other, cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8"})
        out = r.stdout.decode("utf-8")
        assert r.returncode == 0 and r.stderr == b"", r.stderr
        if not mode:
            rows = table_rows(out)
            assert rows[0].startswith(shown + " ") and rows[1].startswith(str(other) + " ")
        else:
            items = json.loads(out) if mode == ["--json"] else [json.loads(ln) for ln in out.splitlines()]
            assert [i["file"] for i in items] == [shown, str(other)]
            assert all(len(i["faces"]) == 1 for i in items)


def test_json_and_jsonl_print_the_same_objects_and_json_is_exactly_to_json(capsys, photos_dir, bad_files):
    from emolens import EmotionRecognizer
    from emolens.results.output import to_json

    inputs = [photos_dir / "portrait_obama3.jpg", bad_files[2], photos_dir / "group_six.jpg"]
    code, out_json, _ = run_main(capsys, "--json", *inputs)
    code_l, out_lines, _ = run_main(capsys, "--jsonl", *inputs)
    assert code == code_l == 1
    assert out_json == to_json(list(EmotionRecognizer().predict_files(inputs))) + "\n"
    lines = out_lines.splitlines()
    assert len(lines) == 3 and [json.loads(ln) for ln in lines] == json.loads(out_json)
    with pytest.raises(SystemExit):  # one or the other
        main(["predict", "--json", "--jsonl", str(inputs[0])])


def _default_sigint() -> None:
    # A suite started in the background (`pytest &`) ignores SIGINT, and children inherit that: Ctrl-C must
    # reach the command as it does at a terminal.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_predict(*args: str | Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emolens", "predict", "--workers", "1", *map(str, args)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=open(cwd / "stderr.txt", "w"),  # noqa: SIM115
                            text=True, preexec_fn=_default_sigint)


@pytest.mark.parametrize("mode", ["table", "json"])
def test_results_arrive_as_each_picture_is_done_and_ctrl_c_keeps_them(tmp_path, photos_dir, mode):
    """Rows (or objects) are printed picture by picture: the first arrives while the others are still being
    worked on, and Ctrl-C then leaves every finished picture's result (--json: a closed, valid array)."""
    import signal

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(40):
        shutil.copy(photos_dir / "group_six.jpg", folder / f"g{i:02d}.jpg")
    proc = start_predict(*(["--json"] if mode == "json" else []), folder, cwd=tmp_path)
    first = [proc.stdout.readline() for _ in range(3)]  # table: header, rule, first row; JSON: [, {, "file"
    assert "g00.jpg" in first[-1] and proc.poll() is None  # printed before the run is over
    proc.send_signal(signal.SIGINT)
    out = "".join(first) + proc.stdout.read()  # (communicate() would skip what readline() has buffered)
    assert proc.wait(timeout=60) == 130
    err = (tmp_path / "stderr.txt").read_text()
    assert "interrupted after" in err and "Traceback" not in err
    if mode == "json":
        items = json.loads(out)
        assert 1 <= len(items) < 40 and all(len(i["faces"]) >= 5 for i in items)
    else:
        files = {row.split()[0] for row in table_rows(out)}
        assert 1 <= len(files) < 40


def test_an_annotated_copy_that_cannot_be_written_hides_no_face(capsys, tmp_path, photos_dir, monkeypatch):
    """The disk is full: one error line on stderr, the faces still in the table (not behind ERROR), exit 1;
    the JSON keeps the faces and says why in annotate_error."""
    import emolens.recognizer

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emolens.recognizer, "save_annotated", full_disk)
    portrait = photos_dir / "portrait_obama3.jpg"
    code, out, err = run_main(capsys, "--annotate", tmp_path / "ann", portrait)
    assert code == 1
    (row,) = table_rows(out)
    assert "ERROR" not in row and row.split()[1] == "1" and "No space" not in out
    assert err.splitlines() == [f"emolens: error: {portrait}: cannot write the annotated image to "
                                f"{tmp_path / 'ann'} (No space left on device)"]
    code, out, _ = run_main(capsys, "--json", "--annotate", tmp_path / "ann", portrait)
    (item,) = json.loads(out)
    assert code == 1 and len(item["faces"]) == 1 and "error" not in item
    assert "No space left on device" in item["annotate_error"]


def test_an_error_row_keeps_the_table_narrow(capsys, photos_dir, bad_files):
    """An unreadable file's row says ERROR; its message is printed once, on stderr, not in a table column."""
    code, out, err = run_main(capsys, bad_files[2], photos_dir / "portrait_obama3.jpg")
    rows = table_rows(out)
    message = error_lines(err)[0]
    assert message[len("emolens: error: "):] not in out
    assert len(rows[0]) < len(rows[1]) and rows[0].split()[1:] == ["-", "-", "ERROR", "-", "-"]


def test_faces_are_numbered_in_the_annotated_image_as_in_the_table(photos_dir, monkeypatch):
    import emolens.results.draw
    from emolens import EmotionRecognizer
    from emolens.results.draw import annotate

    faces = EmotionRecognizer().predict(photos_dir / "group_six.jpg")
    texts = []
    real = emolens.results.draw.cv2.putText
    monkeypatch.setattr(emolens.results.draw.cv2, "putText",
                        lambda img, text, *a, **k: (texts.append(text), real(img, text, *a, **k)))
    annotate(cv2.imread(str(photos_dir / "group_six.jpg")), faces)
    assert texts == [f"{i} {f.label} {f.score:.0%}" for i, f in enumerate(faces, 1)] and len(texts) >= 5


def test_progress_on_a_terminal_with_rate_and_eta_and_none_when_quiet_or_piped(tmp_path, photos_dir):
    args = [photos_dir / "portrait_obama3.jpg", photos_dir / "portrait_biden.jpg", photos_dir / "group_six.jpg"]
    for extra, shown in (([], True), (["--quiet"], False)):
        code, out, seen = run_with_terminal_stderr([sys.executable, "-m", "emolens", "predict", *extra,
                                                    *map(str, args)], tmp_path)
        assert code == 0 and len(table_rows(out)) >= 7
        assert ("picture 3/3 100%" in seen and "pictures/s" in seen and "ETA" in seen) == shown, seen
    r = run_predict(*args, cwd=tmp_path)  # stderr a pipe, not a terminal: no progress line
    assert r.returncode == 0 and r.stderr == b""


def test_an_annotated_copy_too_wide_for_its_format_is_written_as_png_without_opencv_noise(tmp_path):
    """WebP stops at 16383 pixels a side: OpenCV's imencode failed with an [ERROR:0@...] line on stderr and the
    picture's faces were hidden behind ERROR. Now the copy is a PNG and stderr has only our own line."""
    wide = tmp_path / "wide.webp"
    wide.write_bytes(cv2.imencode(".png", np.full((20, 17000, 3), 120, np.uint8))[1].tobytes())
    r = run_predict("--annotate", tmp_path / "ann", wide, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.decode().splitlines() == [f"annotated: {tmp_path / 'ann' / 'wide_emolens.png'}"]
    assert cv2.imread(str(tmp_path / "ann" / "wide_emolens.png")).shape == (20, 17000, 3)
