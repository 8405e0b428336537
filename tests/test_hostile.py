"""Issue 28, hardening round two: hostile files, hostile models, slow clients, full disks. One test per class of
problem (numbered as in the issue); each hostile file is made here (tests/bad_inputs.py), small on disk, and each
test is bounded in time. The slow client, malformed HTTP and batch-size tests use tests/test_serve.py's server."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from bad_inputs import (
    GOOD_META,
    jpeg_claiming,
    mjpeg_avi,
    peak_rss_mb,
    png16_rgba,
    progressive_jpeg,
    tiff_signed_size,
    tiny_model,
    with_stray_byte_before_sof,
)
from emolens.cli import main
from emolens.imageio import ImageError, header_size, load_image

PORTRAIT = "portrait_obama3.jpg"


def cli(*args: str | Path, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m emolens ARGS`` in a real process (its stderr filter on, as for a user)."""
    return subprocess.run([sys.executable, "-m", "emolens", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, **kwargs)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emolens: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def _sigint_default() -> None:  # a suite started in the background ignores SIGINT; a terminal's Ctrl-C does not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ----------------------------------------------------------------------------- 1. decode time
def test_1_a_scan_bomb_is_refused_before_decoding_and_ctrl_c_ends_a_slow_decode_at_once(tmp_path):
    """A valid progressive JPEG with 1000 extra scans of 61 bytes: libjpeg makes a pass over the whole image for
    each (6000x6600 with 500 of them: 40 s). Its scans are counted from the markers and it is refused at once. One
    let through (--max-scans) still cannot hold the command: Ctrl-C ends it while it decodes (the worker thread
    was joined while still decoding)."""
    bomb = progressive_jpeg(1500, 1500, extra_scans=1000)
    assert len(bomb) < 100_000
    t = time.perf_counter()
    with pytest.raises(ImageError, match=r"JPEG has 1,010 scans, over the limit of 32"):
        load_image(bomb)
    assert time.perf_counter() - t < 1
    load_image(progressive_jpeg(64, 48))  # libjpeg's own 10 scans are fine
    slow = tmp_path / "slow.jpg"
    slow.write_bytes(progressive_jpeg(3000, 3000, extra_scans=3000))  # about a minute to decode on this machine
    proc = subprocess.Popen([sys.executable, "-m", "emolens", "predict", "--max-scans", "100000", slow],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    try:
        time.sleep(4)  # model loaded, the picture being decoded
        assert proc.poll() is None
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.perf_counter() - t
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert took < 3, took


def _post(url: str, body: bytes, timeout: float = 30) -> tuple[int, dict, float]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/jpeg"}, method="POST")
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.load(r), time.perf_counter() - t
    except urllib.error.HTTPError as e:
        return e.code, json.load(e), time.perf_counter() - t


def test_1_the_servers_timeout_frees_the_slot_and_sigterm_ends_it_at_once(tmp_path, photos_dir):
    """A model that never returns (a Loop of 10^15 iterations, served with --trust-model so only the server's own
    deadline stands), one slot: each request's work is stopped at --request-timeout, answered 503 `timeout`, and
    the next request gets the slot (two slow uploads used to hold every slot while every other request waited 30 s
    for a 503 with Retry-After: 1). SIGTERM during such a request ends the server within seconds. (And 10. a body
    that does not arrive within --body-timeout gets 408.)"""
    import threading

    from emolens.server.launch import serve_subprocess

    model = tiny_model(tmp_path / "loop.onnx", body="loop")
    photo = (photos_dir / PORTRAIT).read_bytes()
    log = tmp_path / "server.log"
    args = ["--model", str(model), "--trust-model", "--request-timeout", "2", "--concurrency", "1",
            "--detector", "haar-fast", "--body-timeout", "2"]
    with serve_subprocess(args, log_path=log) as srv:
        import socket
        from urllib.parse import urlsplit

        u = urlsplit(srv.url)
        t = time.perf_counter()
        with socket.create_connection((u.hostname, u.port), timeout=20) as slow:  # 10 bytes of 1000, then nothing
            slow.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000"
                         b"\r\n\r\n" + b"\xff" * 10)
            answer = b""
            while chunk := slow.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"body_timeout"' in answer and time.perf_counter() - t < 5
        for _ in range(2):
            status, body, took = _post(srv.url + "/v1/predict?detect=false", photo)
            assert status == 503 and body["error"]["code"] == "timeout", body
            assert "--request-timeout" in body["error"]["message"] and 1.5 < took < 6, took
        threading.Thread(target=_post, args=(srv.url + "/v1/predict?detect=false", photo), daemon=True).start()
        time.sleep(1)  # that request is being worked on
        t = time.perf_counter()
        srv.process.send_signal(signal.SIGTERM)
        srv.process.wait(timeout=20)
        assert time.perf_counter() - t < 8
    assert "Traceback" not in log.read_text(), log.read_text()


# ----------------------------------------------------------------------------- 2. headers read as decoders do
def test_2_sizes_are_read_as_the_decoders_read_them_and_nothing_is_decoded_without_one(photos_dir):
    """TIFF sizes stored as SLONG (a 1.9 MB file took the server to 3.2 GB before its 413) and a JPEG with a
    stray byte before its frame header (libjpeg skips it; emolens stopped reading, decoded it at 592 MB and then
    called it truncated) are read; a header that gives no size is refused, not decoded."""
    tiff = tiff_signed_size(9000, 9000)
    assert header_size(tiff) == (9000, 9000)
    t = time.perf_counter()
    with pytest.raises(ImageError, match="9000x9000 = 81,000,000 pixels, over the limit of 40,000,000"):
        load_image(tiff, max_pixels=40_000_000)
    with pytest.raises(ImageError, match="cannot hold the 6000x6000 image"):  # under the cap: the floor holds
        load_image(tiff_signed_size(6000, 6000), max_pixels=40_000_000)
    stray = with_stray_byte_before_sof(jpeg_claiming(6000, 6600))
    assert header_size(stray) == (6000, 6600)
    with pytest.raises(ImageError, match="corrupt JPEG file: 630 bytes cannot hold the 6000x6600 image"):
        load_image(stray, max_pixels=40_000_000)
    assert time.perf_counter() - t < 1
    photo = (photos_dir / PORTRAIT).read_bytes()
    assert np.array_equal(load_image(with_stray_byte_before_sof(photo)), load_image(photo))  # libjpeg decodes it
    small = tiff_signed_size(7, 5, pixels=True)
    assert load_image(small).shape == (5, 7, 3)  # a valid SLONG TIFF decodes
    with pytest.raises(ImageError, match="its header gives no image size, and nothing is decoded without one"):
        load_image(photo[:600])  # the frame header is beyond these bytes


# ----------------------------------------------------------------------------- 3. 16-bit and float images
def test_3_a_16_bit_rgba_png_costs_its_decoded_size_not_six_float_copies(tmp_path):
    """A 16-bit RGBA PNG of 4000x4000 (about 200 KB): decoded it is 128 MB; compositing its transparency on white
    made about six float32 copies (6000x6600: 2.2 GB). Now it is converted a strip at a time: the process grows by
    the decoded image and its 8-bit copy. A TIFF whose samples would decode past 8 bytes a pixel of the cap (64-bit
    floats, 4 a pixel) is refused from its header."""
    path = tmp_path / "rgba16.png"
    path.write_bytes(png16_rgba(4000, 4000))
    code = ("import resource, emolens\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"img = emolens.load_image({str(path)!r})\n"
            "assert img.shape == (4000, 4000, 3) and (img == 255).all()  # transparent: white\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    grew = float(r.stdout)
    assert grew < 16e6 * 13 / 2**20, grew  # 8 bytes a pixel decoded + 3 of the result (+ strips); was about 57
    floats = bytearray(cv2.imencode(".tiff", np.zeros((8, 8, 4), np.float64))[1].tobytes())
    floats = floats.replace(b"\x00\x01\x03\x00\x01\x00\x00\x00\x08\x00", b"\x00\x01\x03\x00\x01\x00\x00\x00\x70\x17")
    floats = floats.replace(b"\x01\x01\x03\x00\x01\x00\x00\x00\x08\x00", b"\x01\x01\x03\x00\x01\x00\x00\x00\x70\x17")
    assert header_size(bytes(floats)) == (6000, 6000)
    with pytest.raises(ImageError, match="32 bytes of samples a pixel: 1,098.6 MB decoded, over the limit of 305.2 MB"):
        load_image(bytes(floats), max_pixels=40_000_000)


# ----------------------------------------------------------------------------- 4. video frames
def test_4_video_frames_over_the_pixel_cap_are_refused_from_the_containers_size(tmp_path, capsys):
    """An MJPEG AVI whose frames are 12000x12000 (one of 2.6 MB ran at 2 GB): the container's declared size is
    checked once the file is opened, before a frame is decoded; the cap is the image one (--max-pixels)."""
    big = tmp_path / "big.avi"
    big.write_bytes(mjpeg_avi([jpeg_claiming(12000, 12000)] * 3, 12000, 12000))
    assert main(["video", str(big), "--csv", str(tmp_path / "big.csv")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"emolens: error: {big}: its frames are 12000x12000 = 144,000,000 pixels, over the limit "
                           "of 100,000,000 (raise --max-pixels if you trust this file)")
    assert not (tmp_path / "big.csv").exists()
    small = tmp_path / "small.avi"
    small.write_bytes(mjpeg_avi([cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()] * 3, 64, 48))
    assert main(["video", str(small), "--csv", str(tmp_path / "s.csv"), "--max-pixels", "3000"]) == 2
    assert "64x48 = 3,072 pixels, over the limit of 3,000" in capsys.readouterr().err
    assert main(["video", str(small), "--csv", str(tmp_path / "s.csv"), "--max-pixels", "3072"]) == 0


# ----------------------------------------------------------------------------- 5. temporary files
def test_5_no_output_is_written_through_a_link_at_the_old_fixed_temporary_name(tmp_path, photos_dir, capsys):
    """Annotated copies, explanation files, calibrated and exported models and batch tables were written to a fixed
    .NAME.tmp beside the target, then renamed: a symbolic link there had the file it points to overwritten, anywhere
    on the disk. Each output now goes through a new, exclusively created temporary file (emolens.safefile, which
    every writer uses; tested here through `predict --annotate`, `explain` and the helper itself)."""
    from emolens import safefile

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(photos_dir / PORTRAIT, tmp_path / "p.jpg")
    for old in (".p_emolens.jpg.tmp", ".p-face1-crop.png.tmp", ".p-face1-happy-occlusion.png.tmp"):
        os.symlink(victim, out / old)
    assert main(["predict", "--annotate", str(out), str(tmp_path / "p.jpg")]) == 0
    assert main(["explain", str(tmp_path / "p.jpg"), "--out", str(out), "--label", "happy"]) == 0
    capsys.readouterr()
    assert victim.read_text() == "mine"
    assert cv2.imread(str(out / "p_emolens.jpg")) is not None and (out / "p-face1-crop.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()) == []
    # the helper itself: never over a file without replace, never through a link with it, nothing left on failure
    target = tmp_path / "t.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        safefile.write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    link = tmp_path / "link.bin"
    os.symlink(victim, link)
    safefile.write_bytes(link, b"new", replace=True)
    assert victim.read_text() == "mine" and not link.is_symlink() and link.read_bytes() == b"new"
    with pytest.raises(ZeroDivisionError), safefile.atomic_file(tmp_path / "half.bin") as f:
        f.write(b"half")
        1 / 0  # noqa: B018 - a failure half-way
    assert not list(tmp_path.glob("*half*"))


# ----------------------------------------------------------------------------- 6. the same names at once
def test_6_pictures_of_the_same_name_from_different_folders_each_get_their_own_annotated_copy(tmp_path, capsys):
    """150 inputs called p.png in 150 folders, 8 workers: 400 such once gave 318 files, 78 "cannot write" errors and
    4 files reported for two inputs each. Each name is now taken atomically."""
    png = cv2.imencode(".png", np.full((32, 32, 3), 100, np.uint8))[1].tobytes()
    inputs = []
    for i in range(150):
        folder = tmp_path / "in" / f"{i:03d}"
        folder.mkdir(parents=True)
        (folder / "p.png").write_bytes(png)
        inputs.append(str(folder / "p.png"))
    out = tmp_path / "out"
    code = main(["predict", "--no-detect", "--jsonl", "--workers", "8", "--annotate", str(out), *inputs])
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(items) == 150
    written = {i["annotated"] for i in items}
    assert len(written) == 150 and written == {str(p) for p in out.iterdir()}
    assert {Path(p).name for p in written} == {"p_emolens.png", *(f"p_emolens-{k}.png" for k in range(1, 150))}


# ----------------------------------------------------------------------------- 7. a full disk
def _file_size_limit(limit: int):
    def apply() -> None:  # writes past `limit` bytes fail (EFBIG), as they would on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_7_a_full_disk_gives_one_line_exit_1_and_leaves_no_partial_output(tmp_path, photos_dir):
    """`predict --json > file` on a full disk and `video --csv` gave tracebacks; the video left its partial files.
    (A full disk is /dev/full here, and a file size limit for the video: writes past it fail as they would.)"""
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "emolens", "predict", "--json", str(photos_dir / PORTRAIT)],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1
    assert one_error_line(r.stderr) == "emolens: error: cannot write the output (No space left on device)"
    head = cv2.imread(str(photos_dir / PORTRAIT))
    frames = [cv2.resize(head, (240, 320))] * 12
    clip = tmp_path / "clip.avi"
    clip.write_bytes(mjpeg_avi([cv2.imencode(".jpg", f)[1].tobytes() for f in frames], 240, 320, fps=10))
    out = tmp_path / "out"
    out.mkdir()
    r = cli("video", clip, "--csv", out / "faces.csv", "--plot", out / "plot.png", "--quiet",
            preexec_fn=_file_size_limit(3000))
    assert r.returncode == 1, r.stderr
    line = one_error_line(r.stderr)  # the CSV or the plot, whichever reaches the limit first
    assert line in (f"emolens: error: --{opt} {out / name}: cannot write it (File too large)"
                    for opt, name in (("csv", "faces.csv"), ("plot", "plot.png")))
    assert list(out.iterdir()) == []  # no CSV, no plot, no temporary file


def test_7_a_report_on_a_full_disk_leaves_no_part_behind_to_block_the_next_one(tmp_path):
    """`evaluate` on a full disk left part of a report behind (a 0-byte confusion_matrix.png in the issue; here the
    figures and a cut report.json), and the next `evaluate` refused the folder as holding a report. The report's
    files are now made in a hidden folder and moved in only when all are complete. (The report of 3000 made-up
    predictions, about 200 KB of JSON, written by a process whose files may not pass 150 KB, then again without that
    limit; matplotlib's font cache is made first, outside the limit.)"""
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    out = tmp_path / "report"
    code = ("import io, os, resource, signal, numpy as np\n"
            "import matplotlib.pyplot as plt\n"
            "from emolens.evaluation.metrics import Evaluation, classification_metrics\n"
            "from emolens.evaluation.report import existing_outputs, write_report\n"
            "rng = np.random.default_rng(0); y = rng.integers(0, 3, 3000); p = rng.dirichlet(np.ones(3), 3000)\n"
            "r = classification_metrics(y, p.argmax(1), ['a', 'b', 'c'], p)\n"
            "ev = Evaluation(r, p, y, np.zeros((3000, 48, 48, 1), np.uint8), [f'{i}.png' for i in range(3000)])\n"
            "fig = plt.figure(); fig.savefig(io.BytesIO(), format='png'); plt.close(fig)\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))\n"
            "try:\n"
            f"    write_report(ev, {str(out)!r})\n"
            "except OSError as e:\n"
            "    print('OSError', e.strerror)\n"
            f"print(len(existing_outputs({str(out)!r})), len(os.listdir({str(out)!r})))\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))\n"
            f"print(len(write_report(ev, {str(out)!r})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    # no part of the report and no temporary folder after the failure; the next report is not blocked
    assert r.stdout.split() == ["OSError", "File", "too", "large", "0", "0", "6"], (r.stdout, r.stderr)


# ----------------------------------------------------------------------------- 8. model metadata
BAD_METAS = {
    "not an object": ("[1, 2, 3]", "expected a JSON object of fields, got list"),
    "NaN temperature": (json.dumps(GOOD_META)[:-1] + ', "temperature": NaN}', "NaN is not a number JSON allows"),
    "text input size": ({**GOOD_META, "input_size": "48"}, "'input_size' must be a whole number"),
    "infinite mean": ({**GOOD_META, "mean": 1e400}, "Infinity is not a number JSON allows"),
    "text std": ({**GOOD_META, "std": "x"}, "'std' must be a finite number, not 'x'"),
    "channels the graph lacks": ({**GOOD_META, "channels": 3}, "the metadata's 'channels' is 3"),
    "fewer labels than outputs": ({**GOOD_META, "labels": ["a", "b", "c"]}, "7 outputs but the metadata 3 labels"),
    "escape in a label": ({**GOOD_META, "labels": ["happy\x1b]0;pwned\x07", *"abcdef"]}, "control or other non-print"),
    "a newer format": ({**GOOD_META, "format": 99}, "format 99 is newer than this emolens reads"),
}


@pytest.mark.parametrize("case", sorted(BAD_METAS))
def test_8_model_metadata_and_graph_are_checked_when_the_model_loads(case, tmp_path, photos_dir, capsys):
    """Metadata that is not an object, NaN or text in numbers, an input the graph does not take, labels that do not
    match the outputs, labels with terminal escapes: each was found only when a picture was run (a traceback, a
    server 500, NaN in --jsonl) or never (mislabelled faces, a retitled terminal). Now one line when it loads."""
    meta, words = BAD_METAS[case]
    model = tiny_model(tmp_path / "bad.onnx", meta)
    assert main(["predict", "--model", str(model), str(photos_dir / PORTRAIT)]) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert f"{model}: invalid emolens model: model metadata:" in line or "invalid emolens model: the graph" in line
    assert words in line and out == "" and "\x1b" not in err


def test_8_output_sizes_only_a_call_tells_are_checked_by_the_probe_and_labels_print_escaped(tmp_path):
    from emolens.classify import Classifier, ModelError
    from emolens.face.detect.base import Box
    from emolens.results.faces import Face, ImageResult
    from emolens.results.output import table_rows

    model = tiny_model(tmp_path / "dyn.onnx", {**GOOD_META, "labels": list("abcde")}, dynamic_outputs=True)
    with pytest.raises(ModelError, match="it gives 2×7 outputs for a batch of 2, not 2×5"):
        Classifier(model)
    face = Face(Box(0, 0, 9, 9), "x\x1b[2J", 0.9, {"x\x1b[2J": 0.9, "b\x07": 0.1})
    (row,) = table_rows(ImageResult("p.jpg", [face]))
    assert row[3] == "x\\x1b[2J" and row[5] == "b\\x07 10%"
    from emolens.labels import normalise_label

    with pytest.raises(ValueError, match="control"):  # a class folder with an escape in its name trains no such label
        normalise_label("happy\x1b]0;title\x07")


# ----------------------------------------------------------------------------- 9. models that hang or eat memory
def test_9_a_model_that_loops_or_eats_memory_is_refused_when_it_loads(tmp_path, photos_dir):
    """A Loop of 10^15 iterations hung `emolens predict` for good; a 60000x60000 Expand asked for 14 GB. A model
    that is not bundled gets a first call on a probe input under a deadline (EMOLENS_MODEL_TIMEOUT) and a capped
    memory arena (EMOLENS_MODEL_MEMORY_MB): one line each, at load. (The process runs under a 6 GB address-space
    limit, so that a failure here cannot take this machine's memory.)"""
    loop = tiny_model(tmp_path / "loop.onnx", body="loop")
    expand = tiny_model(tmp_path / "expand.onnx", body="expand")
    cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # noqa: E731
    t = time.perf_counter()
    r = cli("predict", "--model", loop, photos_dir / PORTRAIT, env={"EMOLENS_MODEL_TIMEOUT": "2"}, timeout=60,
            preexec_fn=cap)
    assert r.returncode == 2 and time.perf_counter() - t < 20
    line = one_error_line(r.stderr)
    assert "first call, on a blank probe input, took longer than 2 s" in line and "--trust-model" in line
    r, peak = peak_rss_mb([sys.executable, "-m", "emolens", "predict", "--model", str(expand),
                           str(photos_dir / PORTRAIT)], timeout=60, preexec_fn=cap)
    assert r.returncode == 2, r.stderr
    assert "asks for more memory than ONNX Runtime may give a model that is not trusted" in one_error_line(
        r.stderr.decode())
    assert peak < 1000, peak
    ok = tiny_model(tmp_path / "ok.onnx")
    r = cli("predict", "--model", ok, "--trust-model", "--no-detect", photos_dir / "aligned_crop_112.png")
    assert r.returncode == 0 and r.stderr == "", r.stderr


# ----------------------------------------------------------------------------- 11. claimed frame counts
def test_11_a_video_that_claims_2_31_frames_is_planned_from_the_frames_it_has(tmp_path):
    """A 3-frame AVI claiming 2^31 frames was planned as 715,828 windows (3.5 million with short windows) and made
    `emolens batch` grow by 10 MB/s. Its last claimed frame is looked for first."""
    from emolens.distributed.videos import plan_windows

    frame = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    liar = tmp_path / "liar.avi"
    liar.write_bytes(mjpeg_avi([frame] * 3, 64, 48, fps=5, claimed_frames=2**31 - 1))
    assert cv2.VideoCapture(str(liar)).get(cv2.CAP_PROP_FRAME_COUNT) == 2**31 - 1
    t = time.perf_counter()
    assert plan_windows(str(liar), 600.0) == [(0, None)]
    assert plan_windows(str(liar), 0.2) == [(0, 1), (1, 2), (2, None)]
    assert time.perf_counter() - t < 5
    honest = tmp_path / "honest.avi"
    honest.write_bytes(mjpeg_avi([frame] * 12, 64, 48, fps=5))
    assert plan_windows(str(honest), 1.0) == [(0, 5), (5, 10), (10, None)]


# ----------------------------------------------------------------------------- 12. smaller
def test_12_bad_numbers_are_refused_in_one_line(tmp_path, photos_dir, capsys):
    """--smooth nan wrote NaN scores with exit code 0; --threads -3 was taken and --threads 20000 hung."""
    clip = tmp_path / "c.avi"
    clip.write_bytes(mjpeg_avi([cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()] * 2, 64, 48))
    for value in ("nan", "inf", "-1"):
        assert main(["video", str(clip), "--csv", str(tmp_path / "c.csv"), f"--smooth={value}"]) == 2
        assert capsys.readouterr().err.strip() == f"emolens: error: --smooth must be a number of seconds >= 0, not " \
                                                  f"{float(value):g}"
    for value in ("-3", "20000"):  # in a process of its own, with a time limit: 20000 threads used to hang
        r = cli("predict", "--threads", value, photos_dir / PORTRAIT, timeout=60)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines()[-1].startswith("emolens predict: error: argument --threads: "), r.stderr
    from emolens.classify import Classifier, ModelError

    with pytest.raises(ModelError, match="threads must be a whole number from 1 to"):
        Classifier(threads=20000)


def test_1_retry_after_counts_how_long_the_holders_have_held_their_slots():
    """Two uploads holding both slots for 30 s were answered Retry-After: 1 (the mean of the holds that had ended).
    A holder past the mean is now expected to keep its slot until the request timeout."""
    pytest.importorskip("fastapi")
    from emolens.server.app import Gate, busy_error

    gate = Gate(2, 0, 30.0, busy_error, 60.0)
    now = time.monotonic()
    gate._held = {1: now - 30, 2: now - 31}  # both slots, held for half a minute
    assert 29 <= gate.retry_after() <= 31
    gate._held = {1: now - 0.2}  # a slot is free
    assert gate.retry_after() == 1
