"""Pictures a second through `emolens batch` (Ray Data, 1 and 2 actors) against `emolens predict --json`, the
same files, side by side in one run; and video frames a second against a loop of `emolens video --csv`.

    python benchmarks/batch.py [--n 300] [--photos ../shared/datasets/wild/val] [--videos 4] [--seconds 20] [--fps 5]

The videos are made here: two real faces (../shared/photos) drifting over a plain background, 640×360 at 30 fps,
``--seconds`` long each. Both ways recognise ``--fps`` frames a second (`emolens video --every 30/fps`).

Each figure is wall time from the command's start to its end, as a user sees it: Ray's start-up (a local
Ray: its processes, the actors loading the model) is inside the batch figures, and stated on its own from a
run over 1 picture. The last line is the headline: the faster of the two at this size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_description

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def make_videos(n: int, seconds: float, folder: Path) -> list[Path]:
    import cv2
    import numpy as np

    photos = SHARED.parent / "photos"
    heads = []
    for name, (x, y, w, h) in {"portrait_obama3.jpg": (638, 259, 317, 317),
                               "portrait_biden.jpg": (441, 214, 310, 309)}.items():
        img = cv2.imread(str(photos / name))
        m = int(0.6 * w)
        heads.append(cv2.resize(img[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m], (170, 200)))
    out = []
    for v in range(n):
        path = folder / f"clip{v}.avi"
        wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 360))
        for i in range(int(seconds * 30)):
            frame = np.full((360, 640, 3), (90, 110, 120), np.uint8)
            for k, hd in enumerate(heads):
                x0 = 60 + 300 * k + int(40 * np.sin(i / 20 + k + v))
                frame[80:280, x0 : x0 + 170] = hd
            wr.write(frame)
        wr.release()
        out.append(path)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="pictures (the first N, sorted)")
    ap.add_argument("--photos", type=Path, default=SHARED / "wild" / "val")
    ap.add_argument("--videos", type=int, default=4, help="video files (0: pictures only)")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each video")
    ap.add_argument("--fps", type=float, default=5.0, help="video frames recognised a second")
    args = ap.parse_args()
    files = sorted(p for p in args.photos.rglob("*.jpg"))[: args.n]
    if len(files) < args.n:
        print(f"batch.py: error: only {len(files)} pictures under {args.photos}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}; {len(files)} pictures from {args.photos}")
    emolens = [sys.executable, "-m", "emolens"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for f in files:
            shutil.copy(f, folder / f"{f.parent.name}_{f.name}")
        one = Path(tmp) / "one"
        one.mkdir()
        shutil.copy(files[0], one / files[0].name)
        rows = []
        s = timed([*emolens, "predict", "--json", str(folder)])
        rows.append(("emolens predict --json (one process, a worker per core)", s))
        start = timed([*emolens, "batch", str(one), "--out", str(Path(tmp) / "o1"), "--actors", "1"])
        for actors in (1, 2):
            s = timed([*emolens, "batch", str(folder), "--out", str(Path(tmp) / f"b{actors}"), "--actors", str(actors)])
            rows.append((f"emolens batch, {actors} actor(s) of 1 CPU, local Ray", s))
        vrows = []
        if args.videos:
            vids = Path(tmp) / "videos"
            vids.mkdir()
            clips = make_videos(args.videos, args.seconds, vids)
            every = max(1, round(30 / args.fps))
            frames = args.videos * len(range(0, int(args.seconds * 30), every))
            t = time.perf_counter()
            for c in clips:
                subprocess.run([*emolens, "video", str(c), "--csv", str(c.with_suffix(".csv")), "--every", str(every),
                                "--quiet"], check=True, capture_output=True)
            vrows.append((f"a loop of emolens video --csv --every {every}", time.perf_counter() - t))
            for actors in (1, 2):
                s = timed([*emolens, "batch", str(vids), "--out", str(Path(tmp) / f"v{actors}"), "--actors",
                           str(actors), "--fps", str(args.fps)])
                vrows.append((f"emolens batch --fps {args.fps:g}, {actors} actor(s), local Ray", s))
    print(f"\nRay's start-up and shut-down (emolens batch over 1 picture): {start:.1f} s\n")
    print("| how | wall time | pictures/s |\n|---|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} s | {len(files) / s:.1f} |")
    vbest = ""
    if args.videos:
        print(f"\n{args.videos} videos of {args.seconds:g} s at 30 fps, {frames} frames recognised\n")
        print("| how | wall time | frames/s |\n|---|---:|---:|")
        for name, s in vrows:
            print(f"| {name} | {s:.1f} s | {frames / s:.1f} |")
        b = min(vrows, key=lambda r: r[1])
        vbest = f"; for {args.videos} videos: {b[0]}, {frames / b[1]:.1f} frames/s"
    best = min(rows, key=lambda r: r[1])
    print(f"\nfastest for {len(files)} pictures: {best[0]}, {len(files) / best[1]:.1f} pictures/s{vbest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
