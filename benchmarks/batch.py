"""Pictures a second through `emolens batch` (Ray Data, 1 and 2 actors) against `emolens predict --json`, the
same files, side by side in one run; and video frames a second against a loop of `emolens video --csv`.

    python benchmarks/batch.py [--n 300] [--photos ../shared/datasets/wild/val] [--videos 4] [--seconds 20] [--fps 5]
                               [--shards 100,1000] [--memory 10000]

Besides the wall times, in the same run: the steady rate of one actor (pictures over the actors' busy time, from
the run's summary) against the rate of one `predict` worker (its pictures a second over the cores, its own
start-up, from a run over one picture, taken out); the same pictures at two shard sizes (``--shards``), to show
what a shard costs; and with ``--memory N``, N pictures (the photos repeated, as links) through 2 actors with the
driver's and each actor's resident memory after the first 1,000 and at the end.

The videos are made here: two real faces (../shared/photos) drifting over a plain background, 640×360 at 30 fps,
``--seconds`` long each. Both ways recognise ``--fps`` frames a second (`emolens video --every 30/fps`).

Each figure is wall time from the command's start to its end, as a user sees it: Ray's start-up (a local
Ray: its processes, the actors loading the model) is inside the batch figures, and stated on its own from a
run over 1 picture. The last line is the headline: the faster of the two at this size.
"""

from __future__ import annotations

import argparse
import os
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


ONE_RUN = """
import json, sys
from emolens.distributed.batch import run_batch
a = json.loads(sys.argv[1])
s = run_batch([a["folder"]], a["out"], actors=a["actors"], shard_size=a["shard_size"], log=lambda m: None)
print(json.dumps({"seconds": s.seconds, "work": s.picture_seconds, "startup": s.startup_seconds,
                  "actor_rate": s.actor_rate, "pictures": s.pictures_done, "memory": s.memory,
                  "merge": s.merge_seconds, "shards": s.shards_done}))
"""


def batch_run(folder: Path, out: Path, actors: int, shard_size: int = 1000) -> dict:
    """One `emolens batch` run in its own process, with its summary's figures (wall time of the whole process)."""
    import json

    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", ONE_RUN, json.dumps(
        {"folder": str(folder), "out": str(out), "actors": actors, "shard_size": shard_size})],
        check=True, capture_output=True, text=True)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["wall"] = time.perf_counter() - t
    return res


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    ap.add_argument("--shards", default="100,1000", help="two shard sizes for the same pictures")
    ap.add_argument("--memory", type=int, default=0, help="pictures of the memory run (0: none)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each shard size, taken in turn")
    args = ap.parse_args()
    files = sorted(p for p in args.photos.rglob("*.jpg"))[: args.n]
    if len(files) < args.n:
        print(f"batch.py: error: only {len(files)} pictures under {args.photos}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}; {len(files)} pictures from {args.photos}; {load()} at the start")
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
        workers = os.cpu_count() or 1
        p_start = timed([*emolens, "predict", "--json", str(one)])
        s = timed([*emolens, "predict", "--json", str(folder)])
        rows.append((f"emolens predict --json (one process, {workers} workers)", s))
        worker_rate = len(files) / max(1e-9, s - p_start) / workers
        start = timed([*emolens, "batch", str(one), "--out", str(Path(tmp) / "o1"), "--actors", "1"])
        runs: dict[int, list[dict]] = {}
        order: list[tuple[int, dict, str]] = []  # in the order they ran
        for actors in (1, 2):
            s = timed([*emolens, "batch", str(folder), "--out", str(Path(tmp) / f"b{actors}"), "--actors", str(actors)])
            rows.append((f"emolens batch, {actors} actor(s) of 1 CPU, local Ray", s))
        sizes = [int(x) for x in args.shards.split(",")]
        for k in range(args.repeat):
            for size in sizes:
                runs.setdefault(size, []).append(batch_run(folder, Path(tmp) / f"s{size}-{k}", 2, size))
                order.append((size, runs[size][-1], load()))
        after_pictures = load()
        memory = None
        if args.memory:
            many = Path(tmp) / "many"
            many.mkdir()
            for i in range(args.memory):
                f = files[i % len(files)]
                (many / f"{i:06d}_{f.name}").symlink_to(f)
            memory = batch_run(many, Path(tmp) / "m", 2, 1000)
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
    print(f"\nRay's start-up and shut-down (emolens batch over 1 picture): {start:.1f} s; {after_pictures} after "
          "the picture runs\n")
    print("| how | wall time | pictures/s |\n|---|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} s | {len(files) / s:.1f} |")
    print("\n2 actors, the same pictures at two shard sizes (wall: the whole process; work: first unit's start to "
          "last one's end)\n")
    print("| shard size | wall time | work | start-up | pictures/s over the work | one actor's steady rate "
          "| merging shards | after |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for size, r, after in order:
        print(f"| {size} | {r['wall']:.1f} s | {r['work']:.1f} s | {r['startup']:.1f} s | "
              f"{r['pictures'] / max(r['work'], 1e-9):.1f} | {r['actor_rate']:.1f} pictures/s | "
              f"{r['shards']} in {r['merge']:.2f} s | {after} |")

    def mean(size: int, key: str) -> float:
        return sum(r[key] for r in runs[size]) / len(runs[size])

    a, b = sizes[0], sizes[-1]
    wall, work = mean(a, "wall") / mean(b, "wall") - 1, mean(a, "work") / mean(b, "work") - 1
    print(f"\nshard size {a} against {b} (means of {args.repeat}): wall {100 * wall:+.1f}%, work {100 * work:+.1f}%")
    rates = [r["actor_rate"] for rs in runs.values() for r in rs]
    print(f"one actor's steady rate {min(rates):.1f}-{max(rates):.1f} pictures/s against one predict worker's "
          f"{worker_rate:.1f} (predict's start-up, {p_start:.1f} s, taken out): "
          f"{100 * min(rates) / worker_rate:.0f}-{100 * max(rates) / worker_rate:.0f}%")
    if memory:
        mem = memory["memory"]
        base = next(m for m in mem if m[0] >= min(1000, args.memory // 10))
        end = mem[-1]
        mb = 2**20
        print(f"\n{args.memory} pictures, 2 actors: {memory['pictures'] / max(memory['work'], 1e-9):.1f} pictures/s "
              f"over the work; {load()} at the end")
        print(f"driver RSS {base[1] / mb:.0f} MiB after {base[0]} inputs, {end[1] / mb:.0f} MiB at the end "
              f"({100 * (end[1] / base[1] - 1):+.1f}%); peak {max(m[1] for m in mem) / mb:.0f} MiB")
        for pid, rss in end[2].items():
            first = base[2].get(pid) or base[2].get(str(pid))
            peak = max((m[2].get(pid) or m[2].get(str(pid)) or 0) for m in mem)
            if first:
                print(f"actor {pid}: RSS {first / mb:.0f} MiB after {base[0]} inputs, {rss / mb:.0f} MiB at the "
                      f"end ({100 * (rss / first - 1):+.1f}%); peak {peak / mb:.0f} MiB")
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
