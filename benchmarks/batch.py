"""Pictures a second through `emolens batch` (Ray Data, 1 and 2 actors) against `emolens predict --json`, the
same files, side by side in one run.

    python benchmarks/batch.py [--n 300] [--photos ../shared/datasets/wild/val]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="pictures (the first N, sorted)")
    ap.add_argument("--photos", type=Path, default=SHARED / "wild" / "val")
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
    print(f"\nRay's start-up and shut-down (emolens batch over 1 picture): {start:.1f} s\n")
    print("| how | wall time | pictures/s |\n|---|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} s | {len(files) / s:.1f} |")
    best = min(rows, key=lambda r: r[1])
    print(f"\nfastest for {len(files)} pictures: {best[0]}, {len(files) / best[1]:.1f} pictures/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
