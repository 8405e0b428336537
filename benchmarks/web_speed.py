"""emolens in the browser: how long a cold page load takes to its first result, how much it downloads, and how many
frames a second live mode runs at on a fake camera.

    python benchmarks/web_speed.py [--model fast] [--photo ../shared/photos/portrait_obama.jpg] [--seconds 10]

1. ``emolens web export`` writes a static site for ``--model`` (photos: ``centerface``; live: ``centerface-fast``)
   into a temporary folder, served on loopback as ``python -m http.server`` would.
2. Cold load: Debian's headless chromium with a new, empty profile (no cache) opens the page and is given
   ``--photo`` as soon as the page is there; timed from navigation start to the photo's faces on screen, and the
   moment the page says the models are ready. Every byte the page fetched is counted (what a host without
   compression sends), and the same files gzipped (what GitHub Pages or a Space sends to a browser that asks).
3. Live: chromium's fake camera plays a clip of a real face (the sample photo's head moving and growing, as in
   ``benchmarks/video.py``, 640×480, 30 fps, looped); the page's live mode runs for ``--seconds`` after the first
   face: frames a second (every frame's result counted as the page draws it), the detector's and the classifier's
   share, faces found, label changes; then the same clip through Python's FrameTracker, for comparison.

The CPU is printed first; the frames a second, printed last, is the figure.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

from common import cpu_description
from emolens import EmotionRecognizer
from emolens.face.detect import FAST_DETECTOR
from emolens.video import FrameTracker
from emolens.web import export_site
from video import SAMPLE, clip_frame, head_crop
from webpage import ARGS, launcher, need_chromium, serve_folder

ROOT = Path(__file__).resolve().parents[1]

HOOK = """async () => {  // count every result the page draws, and time the detector and the classifier
  window.__frames = [];
  window.__ms = { detect: 0, classify: 0 };
  const draw = render;
  render = (r) => {
    window.__frames.push([performance.now(), r.faces.map((f) => f.label), { ...window.__ms }]);
    draw(r);
  };
  const rec = await browserRecognizer();
  const timed = (obj, name, key) => {
    const f = obj[name].bind(obj);
    obj[name] = async (...a) => {
      const t = performance.now();
      try { return await f(...a); } finally { window.__ms[key] += performance.now() - t; }
    };
  };
  timed(rec.liveDetector, "detect", "detect");
  timed(rec.classifier, "classifyBoxes", "classify");
}"""


def write_clip_y4m(path: Path, frames: int) -> list:
    head = head_crop(SAMPLE)
    clip = [clip_frame(head, i, frames) for i in range(frames)]
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for frame in clip:
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return clip


STAGES_JS = """async ({runs}) => {  // the detector and the classifier alone, on one frame, after a warm-up
  const m = await import('./web/emolens.mjs');
  const rec = await browserRecognizer();
  const img = await m.readImage(new Uint8Array(await (await fetch('frame.png')).arrayBuffer()));
  const boxes = await rec.liveDetector.detect(img);
  await rec.classifier.classifyBoxes(img, boxes);
  const ms = { detect: [], classify: [] };
  for (let i = 0; i < runs; i++) {
    let t = performance.now(); await rec.liveDetector.detect(img); ms.detect.push(performance.now() - t);
    t = performance.now(); await rec.classifier.classifyBoxes(img, boxes); ms.classify.push(performance.now() - t);
  }
  return ms;
}"""


def python_stages(model: str, frame, runs: int) -> dict[str, list[float]]:
    rec = EmotionRecognizer(model, detector=FAST_DETECTOR, threads=1)
    boxes = rec.detector.detect(frame)
    rec.classify_boxes(frame, boxes)
    ms: dict[str, list[float]] = {"detect": [], "classify": []}
    for _ in range(runs):
        t = time.perf_counter()
        rec.detector.detect(frame)
        ms["detect"].append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        rec.classify_boxes(frame, boxes)
        ms["classify"].append(1000 * (time.perf_counter() - t))
    return ms


def python_fps(model: str, clip: list) -> float:
    """The same clip through emolens.video.FrameTracker in this process, one ONNX Runtime thread (as `emolens
    webcam`): frames a second, for comparison on the same machine at the same time."""
    ft = FrameTracker(EmotionRecognizer(model, detector=FAST_DETECTOR, threads=1))
    for i, frame in enumerate(clip[:10]):  # warm up
        ft.process(frame, i, i / 30)
    ft.reset()
    t0 = time.perf_counter()
    for i, frame in enumerate(clip):
        ft.process(frame, i, i / 30)
    return len(clip) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fast", help="the emotion model (default: fast, the one for video)")
    ap.add_argument("--photo", type=Path, default=ROOT.parent / "shared" / "photos" / "portrait_obama.jpg")
    ap.add_argument("--seconds", type=float, default=10.0, help="live mode measured this long (default: 10)")
    ap.add_argument("--clip-frames", type=int, default=150, help="frames of the fake camera's clip (default: 150)")
    ap.add_argument("--runs", type=int, default=20, help="timed calls of the detector and classifier alone")
    ap.add_argument("--no-python", dest="python", action="store_false",
                    help="do not run the clip through Python's FrameTracker for comparison")
    args = ap.parse_args()
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    print(f"CPU: {cpu_description()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        site = export_site(tmp / "site", model=args.model)
        gz = sum(len(gzip.compress((tmp / "site" / rel).read_bytes(), 6)) for rel in site.files)
        y4m = tmp / "camera.y4m"
        clip = write_clip_y4m(y4m, args.clip_frames)
        cv2.imwrite(str(tmp / "site" / "frame.png"), clip[0])
        with serve_folder(tmp / "site") as url, sync_playwright() as pw:
            # 1. cold load
            chrome = str(launcher(tmp))
            ctx = pw.chromium.launch_persistent_context(str(tmp / "cold"), executable_path=chrome, args=ARGS,
                                                        headless=True)
            fetched: dict[str, int] = {}

            def count(r) -> None:
                fetched[r.url] = int(r.headers.get("content-length", 0))

            page = ctx.new_page()
            page.on("response", count)
            page.goto(url + "/", wait_until="domcontentloaded")
            page.set_input_files("#file-input", str(args.photo))
            expect(page.locator("#status")).to_have_text(re.compile(r"faces? · .* in this browser"), timeout=300_000)
            first = page.evaluate("performance.now()") / 1000
            status = page.inner_text("#status")
            faces = page.locator(".face-box").count()
            page.close()
            ctx.close()
            total = sum(fetched.values())
            print(f"cold load (empty cache, {args.model} model, {args.photo.name}): first result {first:.2f} s after "
                  f"navigation start ({faces} face(s); page: {status}); {len(fetched)} requests, {total / 1e6:.1f} MB "
                  f"fetched ({gz / 1e6:.1f} MB gzipped); the site: {site.total_bytes / 1e6:.1f} MB")

            # 2. live mode on the fake camera
            fake = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={y4m}"]
            ctx = pw.chromium.launch_persistent_context(str(tmp / "live"), executable_path=chrome,
                                                        args=ARGS + fake, headless=True)
            page = ctx.new_page()
            page.goto(url + "/")
            expect(page.locator("#status")).to_contain_text("runs in this browser", timeout=300_000)
            page.evaluate(HOOK)
            page.click("#mode-webcam")
            expect(page.locator(".face-box")).to_have_count(1, timeout=300_000)
            page.wait_for_timeout(2000)  # past the first frames (WebAssembly tier-up)
            start = page.evaluate("performance.now()")
            time.sleep(args.seconds)
            frames = page.evaluate(f"window.__frames.filter((f) => f[0] >= {start})")
            page.click("#mode-upload")
            page.wait_for_timeout(1000)  # the live loop's last frame
            stages = page.evaluate(STAGES_JS, {"runs": args.runs})
            ctx.close()
    if len(frames) < 2:
        print(f"live: {len(frames)} frames in {args.seconds:.0f} s")
        return 1
    span = (frames[-1][0] - frames[0][0]) / 1000
    fps = (len(frames) - 1) / span
    gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:])]
    labels = [f[1][0] for f in frames if f[1]]
    switches = sum(a != b for a, b in zip(labels, labels[1:]))
    found = sum(1 for f in frames if f[1])
    n = len(frames) - 1
    det = (frames[-1][2]["detect"] - frames[0][2]["detect"]) / n
    cls = (frames[-1][2]["classify"] - frames[0][2]["classify"]) / n
    print(f"live ({args.model} model, centerface-fast, 640x480 fake camera): {len(frames)} frames in {span:.1f} s, "
          f"ms a frame p50 {statistics.median(gaps):.1f}, p90 {sorted(gaps)[int(0.9 * len(gaps))]:.1f} (detect "
          f"{det:.1f}, classify {cls:.1f}, the rest {1000 * span / n - det - cls:.1f}); a face in {found}/"
          f"{len(frames)} frames; label changes {switches} ({', '.join(sorted(set(labels)))})")
    py = python_stages(args.model, clip[0], args.runs)
    for stage in ("detect", "classify"):
        js_ms, py_ms = statistics.median(stages[stage]), statistics.median(py[stage])
        print(f"{stage} one 640x480 frame ({'centerface-fast' if stage == 'detect' else args.model + ', one face'}), "
              f"p50 of {args.runs}: browser {js_ms:.1f} ms, Python (ONNX Runtime, 1 thread) {py_ms:.1f} ms: "
              f"{js_ms / py_ms:.1f}x")
    if args.python:
        print(f"the same clip through Python's FrameTracker, same model and detector, 1 thread: "
              f"{python_fps(args.model, clip):.1f} frames/s")
    print(f"live mode in the browser: {fps:.1f} frames/s (target >= 15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
