"""`emolens batch` on Ray Data (a local Ray with one or two actors here): one Parquet row per face, a row for a
picture without a face and for one that cannot be read, units and shards that a re-run skips, and one-line errors.
Faults (a lost node, a poisoned input): test_batch_faults.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

from emolens.cli import main  # noqa: E402
from emolens.distributed.batch import BatchError, list_inputs, read_results, run_batch  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pictures(photos_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pics")
    for name in ("group_six.jpg", "portrait_obama.jpg", "portrait_biden.jpg"):
        shutil.copy(photos_dir / name, root / name)
    (root / "broken.jpg").write_text("not a picture")
    blank = root / "sub"
    blank.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(blank / "wall.png"), np.full((120, 160, 3), 200, np.uint8))  # no face on it
    return root


def test_every_face_becomes_a_row_and_bad_inputs_rows_of_their_own(pictures, tmp_path, capsys):
    out = tmp_path / "faces"
    s = run_batch([str(pictures), str(tmp_path / "gone.jpg")], out, actors=1, shard_size=3, log=lambda m: None,
                  progress=True)
    assert (s.pictures, s.faces, s.no_face, s.errors, s.shards_done) == (6, 8, 1, 2, 2)
    assert capsys.readouterr().err.splitlines()[-1].startswith("inputs 6/6 100%")  # one line over the whole run
    assert 0 < s.startup_seconds < s.seconds and "of it starting Ray" in s.line()
    rows = read_results(out).to_pylist()
    by_source = {}
    for r in rows:
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    assert [r["face"] for r in by_source["group_six.jpg"]] == [0, 1, 2, 3, 4, 5]
    (obama,) = by_source["portrait_obama.jpg"]
    assert obama["label"] == "happy" and len(obama["landmarks"]) == 5 and obama["model"] == "emolens-distil-vgg-m-int8"
    labels = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert abs(sum(obama[f"p_{k}"] for k in labels) - 1) < 1e-3 and obama[f"p_{obama['label']}"] == obama["score"]
    (broken,) = by_source["broken.jpg"]
    assert broken["face"] == -1 and "cannot decode" in broken["error"] and "bytes>" not in broken["error"]
    assert by_source["gone.jpg"][0]["error"] == "no such file"
    (wall,) = by_source["wall.png"]
    assert wall["face"] == -1 and wall["error"] is None and wall["label"] is None


def test_a_rerun_skips_finished_shards_and_parts_and_clears_an_interrupted_one(pictures, tmp_path):
    out = tmp_path / "faces"
    args = ([str(pictures)], out)
    first = run_batch(*args, actors=1, shard_size=2, batch_size=1, log=lambda m: None)
    assert first.shards_done == 3 and first.units_done == 5 and not list((out / "parts").iterdir())
    # as if the run had been stopped inside shard 2: its first picture written, the second half-written ...
    import pyarrow as pa
    import pyarrow.parquet as pq

    before = sorted(read_results(out, columns=["source", "face"]).to_pylist(), key=str)
    shard = out / "shard-00001"
    table = pq.read_table(shard / "faces.parquet")
    sources = table.column("source").to_pylist()
    shutil.rmtree(shard)
    pq.write_table(table.filter(pa.array([s == sources[0] for s in sources])),
                   out / "parts" / "part-0000000002-0000000003.parquet")
    (out / "parts" / ".part-0000000003-0000000004.parquet.x.tmp").write_bytes(b"half")
    (out / ".shard-00001-abc").mkdir()  # ... and a merge that never finished
    lines = []
    again = run_batch(*args, actors=1, shard_size=2, batch_size=1, log=lines.append)
    assert (again.shards_done, again.shards_skipped, again.units_done, again.pictures_done) == (1, 2, 1, 1)
    assert not list(out.glob(".shard-*")) and not list((out / "parts").iterdir())
    assert (again.pictures, again.faces, again.errors) == (first.pictures, first.faces, first.errors)
    assert sorted(read_results(out, columns=["source", "face"]).to_pylist(), key=str) == before  # each once
    assert run_batch(*args, actors=1, shard_size=2, log=lines.append).shards_done == 0
    assert "already" in lines[-1]
    with pytest.raises(BatchError, match="other inputs"):
        run_batch([str(pictures / "group_six.jpg")], out, actors=1, shard_size=2, log=lambda m: None)


def test_inputs_and_the_command_line(pictures, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my pictures\n{pictures / 'group_six.jpg'}\n\ns3://bucket/a.jpg\n")
    assert list_inputs([str(listing), str(pictures / "*.jpg")])[:2] == [str(pictures / "group_six.jpg"),
                                                                      "s3://bucket/a.jpg"]
    assert main(["batch", str(tmp_path / "none-*.jpg"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no file matches" in err and "Traceback" not in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    assert main(["batch", str(pictures), "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "mine.txt").read_text() == "keep"
    assert main(["batch", str(pictures / "group_six.jpg"), "--out", str(tmp_path / "one"), "--actors", "1"]) == 0
    assert "1 pictures, 6 faces" in capsys.readouterr().out


def test_two_actors_on_two_cores_do_not_starve_reading_and_writing(pictures, tmp_path):
    """Actors that take every CPU once left the read and write tasks no CPU to run on: the run stalled for good.
    Reading and writing take no CPU slot now. (A subprocess with a timeout, so a stall fails instead of hanging.)"""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "emolens", "batch", str(pictures), "--out", str(tmp_path / "two"),
                        "--actors", "2", "--num-cpus", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # 1: the broken picture is an error row
    assert "5 pictures, 8 faces" in r.stdout
    # only emolens' own lines: Ray's C++ core ("[2026-... E ...] core_worker.cc:2465: Actor with class name ...")
    # and its token notes used to come through
    assert all(line.startswith(("shard ", "inputs ")) for line in r.stderr.splitlines()), r.stderr


# ----------------------------------------------------------------------------- many pictures, killed runs
@pytest.fixture(scope="module")
def many(fer_root, photos_dir, tmp_path_factory) -> Path:
    """Some 70 files: 42 FER2013 val crops (6 of each class), 3 real photos, and 12 made-up files (noise, blank
    walls, a truncated JPEG, text named .png, an empty file)."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("many")
    for cls in sorted(p.name for p in (fer_root / "val").iterdir()):
        for f in sorted((fer_root / "val" / cls).iterdir())[:6]:
            shutil.copy(f, root / f"{cls}_{f.name}")
    for name in ("group_six.jpg", "portrait_obama.jpg", "portrait_biden.jpg"):
        shutil.copy(photos_dir / name, root / name)
    rng = np.random.default_rng(0)
    made = root / "made"
    made.mkdir()
    for i in range(4):
        cv2.imwrite(str(made / f"noise{i}.png"), rng.integers(0, 256, (64 + 8 * i, 80, 3), dtype=np.uint8))
    for i in range(4):
        cv2.imwrite(str(made / f"wall{i}.jpg"), np.full((90, 120, 3), 30 * i, np.uint8))
    whole = (photos_dir / "portrait_biden.jpg").read_bytes()
    (made / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    (made / "text.png").write_text("hello")
    (made / "empty.jpg").write_bytes(b"")
    (made / "tiny.bmp").write_bytes(b"BM" + b"\0" * 10)
    return root


def test_many_files_give_every_face_emolens_predict_json_gives(many, tmp_path, capsys):
    import json

    out = tmp_path / "faces"
    lines: list[str] = []
    s = run_batch([str(many)], out, actors=2, shard_size=20, batch_size=4, log=lines.append)
    files = list_inputs([str(many)])
    assert len(files) == 57 and s.pictures == 57 and s.shards_done == 3 and s.units_done == 15
    assert s.actors == 2 and s.actor_rate > 0 and 0 < s.picture_seconds < s.seconds
    assert sorted(lines) == ["shard 1/3 done (20 pictures)", "shard 2/3 done (20 pictures)",
                             "shard 3/3 done (17 pictures)"]
    assert main(["predict", *files, "--json"]) in (0, 1)
    want = {r["file"]: r for r in json.loads(capsys.readouterr().out)}
    table = read_results(out)
    labels = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert table.schema.names == ["source", "time_s", "frame", "window", "face", "x", "y", "w", "h", "landmarks",
                                  "label", "score", "detected", *[f"p_{k}" for k in labels], "model", "error"]
    got: dict[str, list] = {}
    for r in table.to_pylist():
        got.setdefault(r["source"], []).append(r)
    assert got.keys() == want.keys()
    errors = faces = 0
    for source, rows in got.items():
        w = want[source]
        if "error" in w:
            errors += 1
            assert len(rows) == 1 and rows[0]["error"] and rows[0]["face"] == -1, source
            continue
        if not w["faces"]:
            assert [(r["face"], r["error"]) for r in rows] == [(-1, None)], source
            continue
        assert [r["face"] for r in rows] == list(range(len(w["faces"]))), source
        for r, f in zip(rows, w["faces"]):
            faces += 1
            assert [r["x"], r["y"], r["w"], r["h"]] == f["box"] and r["label"] == f["label"], source
            assert r["score"] == pytest.approx(f["score"], abs=2e-4)
            assert all(r[f"p_{k}"] == pytest.approx(v, abs=2e-4) for k, v in f["scores"].items())
            flat = [v for point in f["landmarks"] for v in point]
            assert [v for point in r["landmarks"] for v in point] == pytest.approx(flat, abs=0.06)
    assert errors == s.errors >= 4 and faces == s.faces >= 8  # the made-up broken files; the real photos' faces
    assert [r["source"] for r in table.to_pylist() if r["face"] in (-1, 0)] == files  # in input order, once each


def test_a_run_stopped_with_ctrl_c_keeps_finished_shards_and_a_rerun_does_not_redo_them(many, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "faces"
    cmd = [sys.executable, "-m", "emolens", "batch", str(many), "--out", str(out), "--actors", "1",
           "--shard-size", "10", "--batch-size", "2"]
    # SIGINT as a terminal's Ctrl-C sends it (a suite started in the background would pass on "ignore SIGINT")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not (out / "shard-00001").is_dir() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert (out / "shard-00001").is_dir(), "two shards never finished"
        time.sleep(0.5)  # and a part or two of the third
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    done = sorted(p.name for p in out.glob("shard-*"))
    assert 2 <= len(done) < 6
    kept = {p: p.stat().st_mtime_ns for d in done for p in (out / d).rglob("*.parquet")}
    assert len(read_results(out)) >= 20  # complete shards and parts only: every one readable
    assert not list((out / "parts").glob(".*"))  # nothing half-written left behind
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1, again.stderr  # 1: the broken files' rows
    assert f"{6 - len(done)} shards written, {len(done)} already done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished shards were not written again
    assert not list(out.glob(".shard-*")) and not list((out / "parts").iterdir())
    rows = read_results(out, columns=["source", "face"]).to_pylist()
    assert sorted(r["source"] for r in rows if r["face"] in (-1, 0)) == sorted(list_inputs([str(many)]))



# ----------------------------------------------------------------------------- videos
def _clip(photos_dir: Path, path: Path, n: int, fps: float) -> Path:
    """``n`` frames of two real faces drifting on a plain background (MJPG .avi)."""
    import cv2
    import numpy as np

    heads = []
    boxes = {"portrait_obama3.jpg": (638, 259, 317, 317), "portrait_biden.jpg": (441, 214, 310, 309)}
    for name, (x, y, w, h) in boxes.items():
        img = cv2.imread(str(photos_dir / name))
        m = int(0.6 * w)
        heads.append(img[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m])
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (480, 240))
    for i in range(n):
        frame = np.full((240, 480, 3), (90, 110, 120), np.uint8)
        for k, hd in enumerate(heads):
            height = 150
            width = int(hd.shape[1] * height / hd.shape[0])
            x0 = 40 + 240 * k + int(20 * np.sin(i / 6 + k))
            frame[40 : 40 + height, x0 : x0 + width] = cv2.resize(hd, (width, height))[:, : min(width, 480 - x0)]
        wr.write(frame)
    wr.release()
    return path


@pytest.fixture(scope="module")
def videos(photos_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    _clip(photos_dir, root / "talk.avi", 45, 15.0)
    _clip(photos_dir, root / "long.avi", 60, 30.0)
    (root / "broken.mp4").write_bytes(b"not a video" * 20)
    return root


def test_video_rows_are_the_rows_of_emolens_video_csv(videos, tmp_path, capsys):
    """One task for the whole file (--window 0), 7.5 of its 15 frames a second: the rows `emolens video --csv
    --every 2` writes, field for field."""
    import csv

    out = tmp_path / "faces"
    s = run_batch([str(videos / "talk.avi"), str(videos / "broken.mp4"), str(tmp_path / "gone.mkv")], out,
                  actors=1, fps=7.5, window=0, log=lambda m: None)
    assert (s.videos, s.frames, s.pictures, s.errors, s.windows_done) == (3, 23, 0, 2, 2)
    rows = read_results(out).to_pylist()
    talk = [r for r in rows if r["source"].endswith("talk.avi")]
    assert main(["video", str(videos / "talk.avi"), "--csv", str(tmp_path / "talk.csv"), "--every", "2"]) == 0
    capsys.readouterr()
    with open(tmp_path / "talk.csv", newline="") as f:
        want = list(csv.DictReader(f))
    assert len(talk) == len(want) == s.face_rows and len(want) >= 40
    for r, w in zip(talk, want):
        assert (f"{r['time_s']:.3f}", str(r["frame"]), str(r["face"]), r["label"], f"{r['score']:.4f}") == (
            w["time_s"], w["frame"], w["face_id"], w["label"], w["score"])
        assert [str(r[k]) for k in "xywh"] == [w[k] for k in "xywh"] and r["detected"] == (w["detected"] == "1")
        assert all(f"{r[f'p_{k}']:.4f}" == w[k] for k in ("happy", "neutral", "sad"))
        assert f"{r['landmarks'][0][0]:.1f}" == w["left_eye_x"] and r["window"] == 0
    by_name = {Path(r["source"]).name: r for r in rows}
    assert "cannot decode" in by_name["broken.mp4"]["error"]
    assert by_name["gone.mkv"]["error"] == "no such file"


def test_long_videos_are_cut_into_windows_and_a_rerun_skips_the_finished_ones(videos, photos_dir, tmp_path):
    """Video windows and pictures go through the same pipeline, in one run."""
    out = tmp_path / "faces"
    args = ([str(videos / "long.avi"), str(photos_dir / "portrait_obama.jpg")], out)
    first = run_batch(*args, actors=2, fps=10, window=1.0, log=lambda m: None)
    assert (first.windows_done, first.frames) == (2, 20)  # 2 s of video at 30 fps, every 3rd frame
    assert (first.pictures, first.faces, first.units_done, first.shards_done) == (1, 1, 1, 1)
    rows = [r for r in read_results(out).to_pylist() if r["source"].endswith("long.avi")]
    assert {r["window"] for r in rows} == {0, 1}
    assert max(r["frame"] for r in rows if r["window"] == 0) < 30 <= min(r["frame"] for r in rows if r["window"] == 1)
    assert {r["face"] for r in rows if r["window"] == 1} == {1, 2}  # ids counted within each window
    (second,) = out.glob("videos/*/window-00001.parquet")
    second.unlink()  # as if the run had stopped inside the second window ...
    (second.parent / ".window-00001.parquet.tmp").write_bytes(b"half")  # ... leaving its unfinished file
    again = run_batch(*args, actors=1, fps=10, window=1.0, log=lambda m: None)
    assert (again.windows_done, again.windows_skipped, again.frames, again.face_rows, again.units_done) == (
        1, 1, first.frames, first.face_rows, 0)
    assert not list(out.glob("videos/*/.window-*"))
    with pytest.raises(BatchError, match="--fps"):
        run_batch(*args, actors=1, fps=5, window=1.0, log=lambda m: None)
    with pytest.raises(BatchError, match="--fps must be 0"):
        run_batch(*args, actors=1, fps=-1, log=lambda m: None)


def test_uris_are_read_through_one_filesystem_per_scheme_and_host(photos_dir, tmp_path, monkeypatch):
    """Pictures given as URIs (file:// here; s3:// and gs:// take the same road) are read in the actor through a
    pyarrow filesystem made once per scheme and bucket, not once per picture (making one can cost a network call);
    a URI that is not there is that picture's error."""
    from pyarrow import fs

    from emolens.distributed.actor import Recognise

    made, real = [], fs.FileSystem

    class Counting:  # pyarrow's FileSystem, counting the filesystems made from URIs
        @staticmethod
        def from_uri(uri):
            made.append(uri)
            return real.from_uri(uri)

    actor = Recognise("fast", None, 1)
    monkeypatch.setattr(fs, "FileSystem", Counting)
    uris = [f"file://{photos_dir / name}" for name in ("portrait_obama.jpg", "portrait_biden.jpg")]
    pictures = [actor.read(u) for u in uris]
    assert [p.ndim for p in pictures] == [3, 3] and pictures[0].shape != pictures[1].shape
    assert made == uris[:1]
    rows = actor.picture_table([*uris, f"file://{tmp_path}/none.jpg"]).to_pylist()
    assert rows[-1]["error"] and all(r["label"] for r in rows[:-1])
