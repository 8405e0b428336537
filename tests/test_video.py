"""Video and webcam (emolens.video, emolens.video.track, `emolens video`, `emolens webcam`).

The clips are made here from the real photos in ../shared/photos: heads cut from the portraits,
moving and changing size on a plain background, written with cv2.VideoWriter (MJPG in .avi,
which every OpenCV wheel, headless included, can write and read back). Small frames keep it fast.
The webcam is tested with a fake capture object and a fake display.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens import EmotionRecognizer, load_image
from emolens import video as video_mod
from emolens.cli import main
from emolens.face.detect import Box
from emolens.results.draw import colour_for
from emolens.video import (
    CSV_FIXED_COLUMNS,
    CSV_LANDMARK_COLUMNS,
    FrameTracker,
    TrackedFace,
    VideoError,
    open_source,
    render_timeline,
    run_webcam,
    track_frames,
)
from emolens.video.track import EmaSmoother, IoUTracker, count_switches

# Face boxes (x, y, w, h) in the portraits, as the default detector finds them (tests/test_detect.py).
HEADS = {"portrait_obama3.jpg": (638, 259, 317, 317), "portrait_biden.jpg": (441, 214, 310, 309)}


# ----------------------------------------------------------------------------- clip helpers
def head(photos_dir: Path, name: str, margin: float = 0.6) -> np.ndarray:
    img = load_image(photos_dir / name)
    b = Box(*HEADS[name]).expand(margin, img.shape[1], img.shape[0])
    return img[b.y : b.y + b.h, b.x : b.x + b.w]


def paste(frame: np.ndarray, img: np.ndarray, cx: float, cy: float, height: int) -> None:
    h, w = frame.shape[:2]
    hw = int(img.shape[1] * height / img.shape[0])
    im = cv2.resize(img, (hw, height), interpolation=cv2.INTER_AREA)
    x0, y0 = int(cx - hw / 2), int(cy - height / 2)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + hw), min(h, y0 + height)
    frame[ya:yb, xa:xb] = im[ya - y0 : yb - y0, xa - x0 : xb - x0]


def moving_frames(heads: list[np.ndarray], n: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """``n`` frames: each head moves (up to ~6 px per frame) and grows/shrinks by ±25%."""
    w, h = size
    out = []
    for i in range(n):
        f = np.full((h, w, 3), (90, 110, 120), np.uint8)
        for k, hd in enumerate(heads):
            slot = w / len(heads)
            cx = slot * (k + 0.5) + 0.18 * slot * math.sin(2 * math.pi * i / n + k)
            cy = h / 2 + 0.1 * h * math.cos(2 * math.pi * i / n + 2 * k)
            height = int(h * (0.62 + 0.15 * math.sin(2 * math.pi * i / n)) / max(1, len(heads) ** 0.5))
            paste(f, hd, cx, cy, height)
        out.append(f)
    return out


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 30.0) -> Path:
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert wr.isOpened()
    for f in frames:
        wr.write(f)
    wr.release()
    return path


def count_frames(path: Path) -> tuple[int, tuple[int, int] | None]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, shape = n + 1, f.shape[:2]
    cap.release()
    return n, shape


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rec() -> EmotionRecognizer:
    return EmotionRecognizer(detector="haar-fast", threads=1)


@pytest.fixture(scope="module")
def obama(photos_dir) -> np.ndarray:
    return head(photos_dir, "portrait_obama3.jpg")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, obama) -> Path:
    """30 frames, 320×240, 30 fps, one moving and scaling face."""
    return write_avi(tmp_path_factory.mktemp("clip") / "one_face.avi", moving_frames([obama], 30))


# ----------------------------------------------------------------------------- tracking
@pytest.mark.parametrize("detect_every", [1, 5])
def test_id_stays_stable_while_the_face_moves(rec, clip, detect_every):
    results = list(track_frames(clip, rec, detect_every=detect_every))
    assert [r.index for r in results] == list(range(30))
    assert [r.time_s for r in results] == pytest.approx([i / 30 for i in range(30)])
    assert all(len(r.faces) == 1 for r in results), [len(r.faces) for r in results]
    assert {f.id for r in results for f in r.faces} == {1}
    if detect_every == 5:  # full searches on frames 0, 5, 10 ...; local search in between
        assert [r.index for r in results if r.detected] == list(range(0, 30, 5))
    # the boxes follow the face: centres move by more than 40 px over the clip
    xs = [r.faces[0].box.x + r.faces[0].box.w / 2 for r in results]
    assert max(xs) - min(xs) > 40


def test_two_faces_keep_their_own_ids(rec, obama, photos_dir, tmp_path):
    biden = head(photos_dir, "portrait_biden.jpg")
    path = write_avi(tmp_path / "two.avi", moving_frames([obama, biden], 24, size=(480, 240)))
    results = list(track_frames(path, rec, detect_every=3))
    assert all(len(r.faces) == 2 for r in results), [len(r.faces) for r in results]
    # each id stays with its face: the face on the left keeps the id it got in the first frame
    left_id = min(results[0].faces, key=lambda f: f.box.x).id
    for r in results:
        assert sorted(f.id for f in r.faces) == [1, 2]
        assert min(r.faces, key=lambda f: f.box.x).id == left_id, (r.index, [(f.id, f.box) for f in r.faces])


def test_every_n_does_not_delay_new_faces(rec, obama, photos_dir, tmp_path, capsys):
    """--detect-every counts frames of the video: with --every 5 --detect-every 5 every recognised
    frame gets a full search, so a face that appears at frame 6 is found at frame 10, not 25."""
    biden = head(photos_dir, "portrait_biden.jpg")
    frames = moving_frames([obama, biden], 40, size=(480, 240))
    for f in frames[:6]:
        f[:, 240:] = (90, 110, 120)  # the right-hand face is not there yet
    path = write_avi(tmp_path / "late.avi", frames)
    table = tmp_path / "e.csv"
    assert main(["video", str(path), "--csv", str(table), "--every", "5", "--detect-every", "5", "--quiet"]) == 0
    rows = read_csv(table)
    assert [r["frame"] for r in rows if r["face_id"] == "1"] == [str(i) for i in range(0, 40, 5)]
    assert min(int(r["frame"]) for r in rows if r["face_id"] == "2") == 10
    # in between: --every 2 --detect-every 5 searches every 2 recognised frames (every 4 frames of the video)
    rs = list(track_frames(path, rec, every=2, detect_every=5))
    assert [r.index for r in rs if r.detected] == list(range(0, 40, 4))
    assert FrameTracker(rec, detect_every=5, every=3).search_interval == 1


def test_a_face_that_disappears_is_held_briefly_and_marked_not_detected(rec, obama, tmp_path):
    """Held rows (detected=0) keep the emotion the face had: the empty box is not classified."""
    frames = moving_frames([obama], 60)[:16] + [np.full((240, 320, 3), (90, 110, 120), np.uint8)] * 10
    path = write_avi(tmp_path / "gone.avi", frames)
    table = tmp_path / "e.csv"
    video_mod.process_video(path, csv_path=table, recognizer=rec, progress=False, detect_every=5, hold=3)
    rows = read_csv(table)
    assert list(rows[0]) == CSV_FIXED_COLUMNS + rec.labels + CSV_LANDMARK_COLUMNS and "detected" in rows[0]
    found = [r for r in rows if r["detected"] == "1"]
    held = [r for r in rows if r["detected"] == "0"]
    assert [r["frame"] for r in found] == [str(i) for i in range(16)]  # the face is found in every frame it is in
    assert [r["frame"] for r in held] == ["16", "17", "18"]  # held for hold=3 frames, then dropped
    last = found[-1]
    for r in held:  # same face, same box, same label and probabilities as when it was last found
        assert r["face_id"] == last["face_id"] == "1"
        assert [r[k] for k in ("x", "y", "w", "h", "label", "score", *rec.labels)] == \
               [last[k] for k in ("x", "y", "w", "h", "label", "score", *rec.labels)]
    # the API says the same: missed > 0, no raw scores of its own
    rs = list(track_frames(path, rec, hold=3))
    assert [(r.index, r.faces[0].missed, r.faces[0].found, r.faces[0].raw_scores) for r in rs[16:19]] == \
           [(16, 1, False, {}), (17, 2, False, {}), (18, 3, False, {})]
    assert all(r.faces == [] for r in rs[19:])


def test_iou_tracker_keeps_ids_through_misses_and_fast_moves():
    t = IoUTracker(max_missed=2)
    assert t.update([Box(0, 0, 50, 50), Box(200, 0, 50, 50)]) == [1, 2]
    assert t.update([Box(205, 2, 50, 50), Box(4, 1, 50, 50)]) == [2, 1]  # order of boxes does not matter
    assert t.update([Box(8, 2, 50, 50)]) == [1]  # face 2 missed once
    assert t.update([Box(12, 3, 50, 50), Box(212, 0, 50, 50)]) == [1, 2]  # ... and is back with its id
    assert t.update([Box(45, 3, 50, 50)]) == [1]  # a jump of 33 px (IoU < 0.3): matched by centre distance
    for _ in range(3):
        t.update([])
    assert t.update([Box(45, 3, 50, 50)]) == [3]  # gone for more than max_missed: a new id, never reused


def test_smoothing_reduces_label_switches():
    labels = ["happy", "neutral", "sad"]
    rng = np.random.default_rng(0)
    n, fps = 120, 30.0
    raw = []
    for i in range(n):  # truth: happy for 2 s, then sad for 2 s; noisy, near-tied frames
        p = np.array([0.45, 0.30, 0.25]) if i < n // 2 else np.array([0.25, 0.30, 0.45])
        p = np.clip(p + rng.normal(0, 0.12, 3), 0.01, None)
        raw.append(p / p.sum())
    raw_labels = [labels[int(np.argmax(p))] for p in raw]
    sm = EmaSmoother(tau=0.25, hysteresis=0)
    smooth_labels = [labels[int(np.argmax(sm.update(1, p, i / fps)))] for i, p in enumerate(raw)]
    sticky = EmaSmoother(tau=0.25, hysteresis=0.05)
    sticky_labels = [labels[sticky.label(1, sticky.update(1, p, i / fps))] for i, p in enumerate(raw)]
    assert count_switches(raw_labels) >= 20
    assert count_switches(smooth_labels) <= count_switches(raw_labels) / 4, (
        count_switches(raw_labels), count_switches(smooth_labels))
    assert smooth_labels[n // 2 - 5] == "happy" and smooth_labels[-1] == "sad"
    # the change is followed within half a second
    assert all(lab == "sad" for lab in smooth_labels[n // 2 + 15 :])
    # hysteresis: the one real change, and not more
    assert count_switches(sticky_labels) <= count_switches(smooth_labels) and sticky_labels[-1] == "sad"
    assert all(lab == "sad" for lab in sticky_labels[n // 2 + 15 :])
    # tau = 0 turns smoothing off: the raw values pass through
    off = EmaSmoother(tau=0)
    assert [labels[int(np.argmax(off.update(1, p, i / fps)))] for i, p in enumerate(raw)] == raw_labels


def test_smoothing_reduces_label_switches_on_a_real_video(photos_dir, tmp_path, capsys):
    """A subtle closed-mouth smile (portrait_obama3) moving and scaling a little: frame by frame the video model
    (`fast`) hesitates between emotions; the real pipeline with smoothing shows far fewer changes. (The distilled
    `default` reads this face as neutral on every frame, so it would not show what smoothing does.)"""
    hd = head(photos_dir, "portrait_obama3.jpg")
    frames = []
    for i in range(60):
        f = np.full((240, 320, 3), (90, 110, 120), np.uint8)
        paste(f, hd, 160 + 12 * math.sin(2 * math.pi * i / 60), 120 + 6 * math.cos(2 * math.pi * i / 60),
              int(240 * (0.7 + 0.06 * math.sin(4 * math.pi * i / 60))))
        frames.append(f)
    path = write_avi(tmp_path / "smile.avi", frames)
    labels = {}
    for mode, flags in (("raw", ["--no-smooth"]), ("smoothed", [])):
        table = tmp_path / f"{mode}.csv"
        assert main(["video", str(path), "--csv", str(table), "--quiet", "--model", "fast", *flags]) == 0
        rows = read_csv(table)
        assert [r["frame"] for r in rows] == [str(i) for i in range(60)] and {r["face_id"] for r in rows} == {"1"}
        labels[mode] = [r["label"] for r in rows]
    raw, smoothed = count_switches(labels["raw"]), count_switches(labels["smoothed"])
    assert raw >= 8, labels["raw"]  # the raw sequence does flicker, so this test can fail
    assert smoothed < raw and smoothed <= raw / 4, (raw, smoothed)


def test_smoothed_probabilities_stay_a_distribution_and_tracks_are_forgotten():
    sm = EmaSmoother(tau=0.5, box_tau=0.1)
    p = sm.update(7, np.array([0.2, 0.8]), 0.0)
    p = sm.update(7, np.array([0.9, 0.1]), 0.1)
    assert p.sum() == pytest.approx(1.0) and 0.2 < p[0] < 0.9
    b = sm.update_box(7, Box(0, 0, 10, 10), 0.0)
    b = sm.update_box(7, Box(100, 0, 10, 10), 0.1)
    assert 0 < b.x < 100
    sm.forget([])
    assert sm.update(7, np.array([0.9, 0.1]), 0.2) == pytest.approx([0.9, 0.1])  # fresh start


def test_frame_tracker_flags_and_face_fields(rec, obama):
    frames = moving_frames([obama], 30)[:6]
    ft = FrameTracker(rec, detect_every=3, smoothing=0)
    rs = [ft.process(f, i, i / 30) for i, f in enumerate(frames)]
    assert [r.detected for r in rs] == [True, False, False, True, False, False]
    f = rs[-1].faces[0]
    assert isinstance(f, TrackedFace) and f.id == 1 and f.missed == 0
    assert f.scores == pytest.approx(f.raw_scores)  # smoothing off
    assert f.label == max(f.scores, key=f.scores.get) and f.to_dict()["id"] == 1


# ----------------------------------------------------------------------------- sources
def test_track_frames_accepts_arrays_and_capture_objects(rec, obama):
    frames = moving_frames([obama], 4)
    rs = list(track_frames(iter(frames), rec))
    assert [r.index for r in rs] == [0, 1, 2, 3] and rs[2].time_s == pytest.approx(2 / 30)
    assert all(len(r.faces) == 1 for r in rs) and rs[0].frame is not None
    cap = FakeCapture(frames)
    assert len(list(track_frames(cap, rec, every=2))) == 2 and cap.released is False  # the caller's object


@pytest.mark.parametrize("content", [b"", b"not a video at all " * 200, "truncated", "missing", "dir"])
def test_corrupt_empty_or_missing_video_is_a_clear_error(tmp_path, clip, capsys, content):
    bad = tmp_path / "bad.avi"
    if content == "truncated":
        bad.write_bytes(clip.read_bytes()[:2000])
    elif content == "dir":
        bad.mkdir()
    elif content != "missing":
        bad.write_bytes(content)
    with pytest.raises(VideoError):
        open_source(bad)
    code = main(["video", str(bad), "--csv", str(tmp_path / "out.csv")])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith(f"emolens: error: {bad}") and "Traceback" not in err, err
    assert not (tmp_path / "out.csv").exists()


def test_corrupt_video_error_in_a_real_process_is_one_clean_line(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"x" * 3000)
    r = subprocess.run([sys.executable, "-m", "emolens", "video", str(bad), "--csv", str(tmp_path / "o.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"emolens: error: {bad}: cannot decode: not a video format OpenCV "
                                             "can read, or the file is corrupt"], r.stderr


def test_a_video_whose_frames_stop_early_says_so_and_exits_1(clip, tmp_path):
    """Zeros over the middle of a 30-frame clip: OpenCV stops reading part way and used to end silently, exit 0.
    Now: how many frames were read of how many the file claims, one error line, exit 1, and a CSV of the
    frames read. A named pipe is refused at once (FFmpeg would wait for a writer)."""
    data = bytearray(clip.read_bytes())
    data[len(data) // 3 : 2 * len(data) // 3] = bytes(len(data) // 3)
    bad = tmp_path / "corrupt.avi"
    bad.write_bytes(bytes(data))
    table = tmp_path / "e.csv"
    r = subprocess.run([sys.executable, "-m", "emolens", "video", str(bad), "--csv", str(table), "--quiet"],
                       capture_output=True, text=True, timeout=120)
    read = int(r.stdout.split(" of 30 frames read")[0].rsplit(" ", 1)[-1])
    assert r.returncode == 1 and 0 < read < 29, r.stdout
    assert r.stderr.splitlines() == [f"emolens: error: {bad}: the frames stopped after {read} of the 30 the file "
                                     f"claims (a corrupt or truncated video?); the outputs cover those {read}"]
    frames = {int(row["frame"]) for row in read_csv(table)}
    assert 0 in frames and max(frames) == read - 1
    pipe = tmp_path / "pipe.avi"
    os.mkfifo(pipe)
    r = subprocess.run([sys.executable, "-m", "emolens", "video", str(pipe), "--csv", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is not a regular file" in r.stderr


# ----------------------------------------------------------------------------- emolens video
def test_cli_video_writes_video_csv_and_plot(clip, tmp_path, capsys, rec):
    out, table, plot = tmp_path / "annotated.mp4", tmp_path / "emotions.csv", tmp_path / "emotions.png"
    code = main(["video", str(clip), "--out", str(out), "--csv", str(table), "--plot", str(plot), "--threads", "1"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {out}" in stdout and "30 of 30 frames read" in stdout
    assert count_frames(out) == (30, (240, 320))
    rows = read_csv(table)
    with open(table, newline="") as f:
        header = next(csv.reader(f))
    assert header == CSV_FIXED_COLUMNS + rec.labels + CSV_LANDMARK_COLUMNS
    assert header[:9] == ["time_s", "frame", "face_id", "x", "y", "w", "h", "label", "score"]
    # one row per face per processed frame (one face in every frame here)
    assert [int(r["frame"]) for r in rows] == list(range(30))
    for r in rows:
        probs = {k: float(r[k]) for k in rec.labels}
        assert sum(probs.values()) == pytest.approx(1.0, abs=2e-3)
        # the label is the most probable emotion, or within the 0.05 hysteresis of it
        assert probs[r["label"]] >= max(probs.values()) - 0.05 and float(r["score"]) == probs[r["label"]]
        assert r["face_id"] == "1" and int(r["w"]) > 40
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / 30, abs=1e-3)
    img = cv2.imread(str(plot))
    assert img is not None and img.shape[1] == 1200


def test_every_n_processes_every_nth_frame_and_keeps_all_frames_in_the_video(clip, tmp_path, capsys):
    out, table = tmp_path / "a.avi", tmp_path / "e.csv"
    assert main(["video", str(clip), "--out", str(out), "--csv", str(table), "--every", "4", "--quiet"]) == 0
    assert [int(r["frame"]) for r in read_csv(table)] == list(range(0, 30, 4))
    assert count_frames(out)[0] == 30
    assert "30 frames read, 8 recognised" in capsys.readouterr().out


def test_outputs_are_never_overwritten_without_force(clip, tmp_path, capsys):
    outs = {"--out": tmp_path / "o.mp4", "--csv": tmp_path / "o.csv", "--plot": tmp_path / "o.png"}
    for opt, p in outs.items():
        p.write_bytes(b"precious")
        code = main(["video", str(clip), opt, str(p), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "already exists; pass --force" in err, err
        assert p.read_bytes() == b"precious"
    assert main(["video", str(clip), "--csv", str(outs["--csv"]), "--quiet", "--force", "--every", "10"]) == 0
    assert read_csv(outs["--csv"])[0]["frame"] == "0"


def test_the_input_is_never_written_over_even_with_force(clip, tmp_path, capsys):
    before = sha(clip)
    for opt in ("--out", "--csv"):
        code = main(["video", str(clip), opt, str(clip), "--force"])
        assert code == 2 and "that is the input video" in capsys.readouterr().err
    same = tmp_path / "x.csv"
    assert main(["video", str(clip), "--csv", str(same), "--plot", str(same).replace(".csv", ".png"),
                 "--out", str(same).replace(".csv", ".gif")]) == 2
    assert "unsupported video file type" in capsys.readouterr().err
    assert main(["video", str(clip)]) == 2 and "nothing to write" in capsys.readouterr().err
    assert sha(clip) == before and not same.exists()


def test_ctrl_c_leaves_playable_video_and_complete_csv(clip, tmp_path, capsys, monkeypatch):
    real = FrameTracker.process

    def process(self, frame, index=0, time_s=0.0):
        if index == 12:
            raise KeyboardInterrupt
        return real(self, frame, index, time_s)

    monkeypatch.setattr(FrameTracker, "process", process)
    out, table, plot = tmp_path / "part.mp4", tmp_path / "part.csv", tmp_path / "part.png"
    code = main(["video", str(clip), "--out", str(out), "--csv", str(table), "--plot", str(plot), "--quiet"])
    assert code == 130
    stdout, err = capsys.readouterr()
    assert "13 of 30 frames read, 12 recognised" in stdout  # frame 12 was read, its recognition was cut short
    assert "interrupted after 13 frames read (12 recognised)" in err
    assert count_frames(out) == (12, (240, 320))
    assert [r["frame"] for r in read_csv(table)] == [str(i) for i in range(12)]
    assert table.read_text().endswith("\n") and cv2.imread(str(plot)) is not None


def test_ctrl_c_after_recognition_never_counts_more_recognised_than_read(clip, tmp_path, capsys, monkeypatch):
    real = video_mod.draw_faces
    calls = []

    def draw_faces(frame, faces, **kw):  # Ctrl-C while frame 12's overlay is drawn: it was recognised
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return real(frame, faces, **kw)

    monkeypatch.setattr(video_mod.run, "draw_faces", draw_faces)  # where process_video looks it up
    out, table = tmp_path / "part.avi", tmp_path / "part.csv"
    assert main(["video", str(clip), "--out", str(out), "--csv", str(table), "--quiet"]) == 130
    stdout, err = capsys.readouterr()
    assert "13 of 30 frames read, 13 recognised" in stdout and "interrupted after 13 frames read" in err
    assert count_frames(out)[0] == 12 and len(read_csv(table)) == 13


@pytest.mark.parametrize("where", ["under_a_file", "proc", "under_a_file_deeper"])
def test_unwritable_output_paths_fail_before_any_frame_is_processed(clip, tmp_path, capsys, monkeypatch, where):
    processed = []
    real = FrameTracker.process

    def process(self, frame, index=0, time_s=0.0):
        processed.append(index)
        return real(self, frame, index, time_s)

    monkeypatch.setattr(FrameTracker, "process", process)
    table = tmp_path / "e.csv"
    if where == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc here")
        args = ["--csv", "/proc/nope/x.csv", "--plot", str(tmp_path / "p.png")]
        expect = "--csv /proc/nope/x.csv: cannot write in the folder /proc"
    else:
        bad = clip / "sub" / "p.png" if where == "under_a_file_deeper" else clip / "p.png"
        args = ["--csv", str(table), "--plot", str(bad)]
        expect = f"--plot {bad}: cannot create it: {clip} is a file, not a folder"
    code = main(["video", str(clip), *args, "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 2, (stdout, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"emolens: error: {expect}"), err
    assert processed == [] and not table.exists() and not (tmp_path / "p.png").exists()
    assert clip.is_file()
    # the same from Python: VideoError before any work
    with pytest.raises(VideoError, match="cannot"):
        video_mod.process_video(clip, csv_path=args[1], plot=args[3], progress=False)
    assert processed == []


def test_missing_output_folders_are_created_up_front(clip, tmp_path, capsys):
    out, table, plot = tmp_path / "a" / "v.avi", tmp_path / "b" / "c" / "e.csv", tmp_path / "d" / "p.png"
    assert main(["video", str(clip), "--out", str(out), "--csv", str(table), "--plot", str(plot), "--quiet",
                 "--every", "10"]) == 0
    assert count_frames(out)[0] == 30 and cv2.imread(str(plot)) is not None
    assert {r["frame"] for r in read_csv(table)} == {"0", "10", "20"}


def test_bad_input_creates_no_output_folder(tmp_path, capsys):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video " * 100)
    assert main(["video", str(bad), "--csv", str(tmp_path / "new" / "e.csv")]) == 2
    assert "cannot decode" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_video_and_webcam_use_one_model_thread_by_default():
    from emolens.cli import build_parser

    ap = build_parser()
    assert ap.parse_args(["video", "in.mp4", "--csv", "e.csv"]).threads == 1
    assert ap.parse_args(["webcam"]).threads == 1
    assert ap.parse_args(["webcam", "--threads", "2"]).threads == 2
    with pytest.raises(SystemExit):
        ap.parse_args(["video", "in.mp4", "--threads", "0"])


def test_timeline_strip_shows_the_label_shown_not_the_argmax():
    labels = ["happy", "sad"]
    # sad is shown (hysteresis kept it) although happy is slightly more probable
    series = {1: ([0.0, 0.5, 1.0], [np.array([0.52, 0.48])] * 3, ["sad"] * 3)}
    img = render_timeline(series, labels)
    strip = img[64 + 150 + 4, 80]  # first panel: top 10 + legend 34 + 20; the strip is below the 150-px panel
    assert tuple(int(v) for v in strip) == tuple(colour_for("sad"))


def test_plot_strip_follows_the_csv_label(clip, tmp_path, capsys, monkeypatch):
    seen = {}
    real = video_mod.render_timeline

    def render(series, labels, **kw):
        seen.update(series)
        return real(series, labels, **kw)

    monkeypatch.setattr(video_mod.run, "render_timeline", render)
    table, plot = tmp_path / "e.csv", tmp_path / "p.png"
    assert main(["video", str(clip), "--csv", str(table), "--plot", str(plot), "--quiet"]) == 0
    assert seen[1][2] == [r["label"] for r in read_csv(table) if r["face_id"] == "1"]


def test_timeline_plot_without_faces_and_with_many():
    labels = ["happy", "sad"]
    assert render_timeline({}, labels).shape[1] == 1200
    series = {i: ([0.0, 0.5, 1.0], [np.array([0.8, 0.2])] * 3, ["happy"] * 3) for i in range(1, 12)}
    img = render_timeline(series, labels, max_faces=8)
    assert img.shape[0] > 8 * 150


# ----------------------------------------------------------------------------- webcam
class FakeCapture:
    """Stands in for cv2.VideoCapture: serves frames, then reports the end."""

    def __init__(self, frames: list[np.ndarray], opened: bool = True) -> None:
        self.frames, self.opened, self.released, self.i = frames, opened, False, 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        if self.i >= len(self.frames):
            return False, None
        self.i += 1
        return True, self.frames[self.i - 1].copy()

    def get(self, prop: int) -> float:
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released = True


class FakeDisplay:
    """Stands in for the window: records what is shown; presses 'q' at frame ``quit_at``."""

    instances: list[FakeDisplay] = []

    def __init__(self, *args, quit_at: int | None = None) -> None:
        self.shown: list[np.ndarray] = []
        self.quit_at, self.closed = quit_at, False
        FakeDisplay.instances.append(self)

    def show(self, frame: np.ndarray) -> int:
        self.shown.append(frame.copy())
        return ord("q") if self.quit_at is not None and len(self.shown) >= self.quit_at else -1

    def close(self) -> None:
        self.closed = True


def test_webcam_shows_annotated_frames_until_q(rec, obama):
    frames = moving_frames([obama], 20)
    cap, disp = FakeCapture(frames), FakeDisplay(quit_at=5)
    assert run_webcam(rec, camera=cap, display=disp) == 5
    assert len(disp.shown) == 5 and disp.closed
    assert not np.array_equal(disp.shown[-1], frames[4])  # boxes, labels, bars and fps were drawn
    assert cap.i == 5  # stopped reading when q was pressed


def test_webcam_runs_to_the_end_of_the_source_and_closes_the_window(rec, obama):
    disp = FakeDisplay()
    assert run_webcam(rec, camera=FakeCapture(moving_frames([obama], 3)), display=disp) == 3
    assert disp.closed


def test_webcam_without_window_support_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(video_mod.webcam, "_has_gui", lambda: False)  # what opencv-python-headless is
    assert main(["webcam"]) == 2
    err = capsys.readouterr().err
    assert "no window support" in err and "pip install 'opencv-python" in err and "Traceback" not in err


def test_webcam_without_a_screen_says_so(monkeypatch, capsys):
    monkeypatch.setattr(video_mod.webcam, "_has_gui", lambda: True)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["webcam"]) == 2
    assert "no screen" in capsys.readouterr().err


def test_no_camera_gives_our_message_without_opencv_warnings(capfd):
    with pytest.raises(VideoError, match="cannot open camera 63"):
        open_source(63)  # no such camera; OpenCV would print "[ WARN ...] ... cap_v4l ..." lines
    captured = capfd.readouterr()
    assert "WARN" not in captured.err and "WARN" not in captured.out, captured.err


@pytest.mark.parametrize("opened", [False, True])
def test_webcam_without_a_camera_says_what_to_try(monkeypatch, capsys, opened):
    FakeDisplay.instances.clear()
    monkeypatch.setattr(video_mod.webcam, "CvDisplay", FakeDisplay)
    caps: list[FakeCapture] = []

    def fake_capture(index):
        caps.append(FakeCapture([], opened=opened))
        return caps[-1]

    monkeypatch.setattr(video_mod.sources.cv2, "VideoCapture", fake_capture)
    assert main(["webcam", "--camera", "3"]) == 2
    err = capsys.readouterr().err
    if opened:
        assert "camera 3: opened, but it gave no picture" in err
    else:
        assert "cannot open camera 3" in err and "--camera" in err
    assert caps[0].released and FakeDisplay.instances[0].closed
