"""The browser module against the Python API, on the same pictures: are the same faces found, with the same labels and
probabilities?

    python benchmarks/web_parity.py [--model default] [--crops 200] [--frames 90] [--align none]

1. ``emolens web export`` writes a static site for ``--model`` into a temporary folder, which is served on loopback
   and opened in Debian's headless chromium (Playwright); the pictures are put beside it.
2. Every picture goes through the ES module (``web/emolens.mjs`` on onnxruntime-web, WebAssembly) and through
   ``EmotionRecognizer.predict``: the real photos of ``../shared/photos`` with the default detector, ``--crops``
   FER2013 val crops (an even spread of ``../shared/datasets/fer2013/val``) both with detection (as ``emolens
   predict`` does: CenterFace, its retries with a grey border) and whole (``detect=False``).
3. A clip of the sample photo's head moving (``benchmarks/video.py``'s, ``--frames`` frames as PNG) goes through the
   module's tracker and ``emolens.video.FrameTracker`` (the live detector, tracking, smoothing).
4. Faces are paired by overlap; reported: faces found by one side only, the largest box and landmark difference in
   pixels, how many faces get the same label, the largest probability difference. The targets of issue 31: boxes
   within 2 px, the same label on at least 98% of faces, probabilities within 0.02. The verdict is printed last.
"""

from __future__ import annotations

import argparse
import shutil
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
SHARED = ROOT.parent / "shared"

PREDICT_JS = """async ({files, detect, align}) => {
  const m = await import('/web/emolens.mjs');
  if (!window.__rec) window.__rec = await m.load('/models/manifest.json', {align});
  const out = [];
  for (const f of files) {
    const bytes = new Uint8Array(await (await fetch('/bench/' + f)).arrayBuffer());
    const t0 = performance.now();
    try {
      const faces = await window.__rec.predict(bytes, {detect, name: f});
      out.push({file: f, faces, ms: performance.now() - t0});
    } catch (e) { out.push({file: f, error: String(e.message || e), faces: []}); }
  }
  return out;
}"""

TRACK_JS = """async ({frames, fps, align}) => {
  const m = await import('/web/emolens.mjs');
  if (!window.__rec) window.__rec = await m.load('/models/manifest.json', {align});
  const tracker = window.__rec.tracker(), out = [];
  for (let i = 0; i < frames.length; i++) {
    const img = await m.readImage(new Uint8Array(await (await fetch('/bench/' + frames[i])).arrayBuffer()));
    const r = await tracker.process(img, i / fps);
    out.push(r.faces.map((f) => ({id: f.id, box: f.box, label: f.label, scores: f.scores, missed: f.missed})));
  }
  return out;
}"""


def fer_crops(root: Path, n: int) -> list[Path]:
    files = sorted(root.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no FER2013 val crops in {root}")
    step = len(files) / n
    return [files[int(i * step)] for i in range(min(n, len(files)))]


def py_faces(faces) -> list[dict]:
    return [{"box": f.box.as_list(), "label": f.label, "scores": f.scores,
             "landmarks": [list(p) for p in f.box.landmarks] if f.box.landmarks else None} for f in faces]


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter or 1)


class Tally:
    """Paired faces of one set and what differs."""

    def __init__(self, name: str) -> None:
        self.name, self.pairs, self.only_py, self.only_js = name, 0, 0, 0
        self.same_label, self.box_px, self.mark_px, self.prob = 0, 0.0, 0.0, 0.0
        self.worst: list[str] = []

    def add(self, where: str, py: list[dict], js: list[dict]) -> None:
        free = list(range(len(js)))
        for p in py:
            best = max(free, key=lambda j: iou(p["box"], js[j]["box"]), default=None)
            if best is None or iou(p["box"], js[best]["box"]) < 0.5:
                self.only_py += 1
                self.worst.append(f"{where}: a face at {p['box']} found by Python only")
                continue
            free.remove(best)
            q = js[best]
            self.pairs += 1
            self.same_label += p["label"] == q["label"]
            if p["label"] != q["label"]:
                self.worst.append(f"{where}: {p['label']} (Python) vs {q['label']} (browser) at {p['box']}")
            self.box_px = max(self.box_px, max(abs(a - b) for a, b in zip(p["box"], q["box"])))
            if p.get("landmarks") and q.get("landmarks"):
                self.mark_px = max(self.mark_px, max(abs(a - b) for u, v in zip(p["landmarks"], q["landmarks"])
                                                     for a, b in zip(u, v)))
            self.prob = max(self.prob, max(abs(p["scores"][k] - q["scores"][k]) for k in p["scores"]))
        self.only_js += len(free)
        self.worst += [f"{where}: a face at {js[j]['box']} found by the browser only" for j in free]

    def line(self) -> str:
        share = 100 * self.same_label / self.pairs if self.pairs else 100.0
        return (f"{self.name:<34} {self.pairs:>5} faces paired, {self.only_py} Python only, {self.only_js} browser "
                f"only; boxes max {self.box_px:.0f} px, landmarks max {self.mark_px:.2g} px; same label {share:.1f}%;"
                f" probabilities max diff {self.prob:.2g}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default", help="the emotion model (default: default)")
    ap.add_argument("--crops", type=int, default=200, help="FER2013 val crops (default: 200)")
    ap.add_argument("--frames", type=int, default=90, help="frames of the tracking clip (default: 90; 0: none)")
    ap.add_argument("--align", default="none", choices=("none", "level", "template"),
                    help="how faces are cut, on both sides (default: none, emolens' default)")
    ap.add_argument("--photos", type=Path, default=SHARED / "photos")
    ap.add_argument("--fer", type=Path, default=SHARED / "datasets" / "fer2013" / "val")
    args = ap.parse_args()
    need_chromium()
    from playwright.sync_api import sync_playwright

    print(f"CPU: {cpu_description()}")
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    crops = fer_crops(args.fer, args.crops) if args.crops else []
    tallies = []
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        export_site(site, model=args.model)
        bench = site / "bench"
        bench.mkdir()
        names = {}
        for p in photos + crops:
            name = p.name if p in photos else f"{p.parent.name}_{p.name}"
            shutil.copyfile(p, bench / name)
            names[p] = name
        frames = []
        if args.frames:
            head = head_crop(SAMPLE)
            for i in range(args.frames):
                cv2.imwrite(str(bench / f"frame_{i:03d}.png"), clip_frame(head, i, args.frames))
                frames.append(f"frame_{i:03d}.png")

        rec = EmotionRecognizer(args.model, align=args.align)
        sets = [("photos (centerface)", photos, True), (f"{len(crops)} FER2013 val crops, detected", crops, True),
                (f"{len(crops)} FER2013 val crops, whole", crops, False)][: 3 if crops else 1]
        with serve_folder(site) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(launcher(Path(tmp))), args=ARGS, headless=True)
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/bench/")  # same origin, no page script: the module is imported by the harness
            for name, files, detect in sets:
                t0 = time.perf_counter()
                js = page.evaluate(PREDICT_JS, {"files": [names[p] for p in files], "detect": detect,
                                                "align": args.align})
                js_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                py = [py_faces(rec.predict(p, detect=detect)) for p in files]
                py_s = time.perf_counter() - t0
                tally = Tally(name)
                for p, a, b in zip(files, py, js):
                    if b.get("error"):
                        tally.worst.append(f"{names[p]}: browser error {b['error']}")
                    tally.add(names[p], a, b["faces"])
                tallies.append(tally)
                print(f"{tally.line()}  [browser {js_s:.1f} s, Python {py_s:.1f} s]", flush=True)
            if frames:
                js_frames = page.evaluate(TRACK_JS, {"frames": frames, "fps": 30.0, "align": args.align})
                ft = FrameTracker(EmotionRecognizer(args.model, detector=FAST_DETECTOR, threads=1, align=args.align))
                tally = Tally(f"clip, {len(frames)} frames, tracked")
                ids_same = 0
                for i, (f, js) in enumerate(zip(frames, js_frames)):
                    r = ft.process(cv2.imread(str(bench / f)), i, i / 30.0)
                    py = [{"box": t.box.as_list(), "label": t.label, "scores": t.scores, "id": t.id} for t in r.faces]
                    ids_same += [p["id"] for p in py] == [q["id"] for q in js]
                    tally.add(f"frame {i}", py, js)
                tallies.append(tally)
                print(f"{tally.line()}; the same ids in {ids_same}/{len(frames)} frames", flush=True)
            browser.close()
        if errors:
            print("page errors:", *errors[:5], sep="\n  ")
    worst = [w for t in tallies for w in t.worst]
    if worst:
        print(f"differences ({len(worst)}):", *worst[:20], sep="\n  ")
    pairs = sum(t.pairs for t in tallies)
    same = sum(t.same_label for t in tallies)
    unpaired = sum(t.only_py + t.only_js for t in tallies)
    box = max(t.box_px for t in tallies)
    prob = max(t.prob for t in tallies)
    share = 100 * same / max(1, pairs)
    ok = box <= 2 and share >= 98 and prob <= 0.02 and unpaired == 0
    print(f"browser vs Python ({args.model}, --align {args.align}): {pairs} faces, {unpaired} found by one side only; "
          f"boxes max {box:.0f} px (target <= 2), same label {share:.1f}% (target >= 98%), probabilities max diff "
          f"{prob:.2g} (target <= 0.02): {'targets met' if ok else 'targets NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
