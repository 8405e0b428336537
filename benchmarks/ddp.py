"""The same training on 1 process and on N processes (DDP, ``emolens train --nproc N``), side by side.

    python benchmarks/ddp.py [--fer ../shared/datasets/fer2013] [--per-class 400] [--epochs 10] [--nproc 2]

One config, run twice: vgg_s from scratch on the first ``--per-class`` FER2013 training faces of each class,
validated on the first 100 val faces of each class, ``--epochs`` epochs, batch 128 (the batch of all processes
together, so both runs take the same steps). Printed per run: wall time of the whole command (start-up, decoding,
training, export), seconds per epoch from history.csv, and the best val accuracy. The last line is the headline:
the speed-up of N processes over 1.

On a machine with as many cores as processes, N processes of one thread each do the work one process does with N
threads: expect no speed-up there (this is a correctness check: the accuracy should match). DDP pays off with a
GPU per process, or with whole machines per process.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_description

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def run(config: Path, out: Path, nproc: int) -> dict:
    cmd = [sys.executable, "-m", "emolens", "train", "--config", str(config), "--out", str(out)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    with (out / "history.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    log = (out / "train.log").read_text().splitlines()
    return {"wall": wall, "epoch_s": sum(float(r["seconds"]) for r in rows) / len(rows),
            "best": max(float(r["val_acc"]) for r in rows), "device": log[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--per-class", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--nproc", type=int, default=2)
    args = ap.parse_args()
    if not (args.fer / "train").is_dir():
        print(f"ddp.py: error: no FER2013 folders at {args.fer}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_description()}")
    for f in args.fer.rglob("*.jpg"):  # into the page cache first, so that neither run pays for the disk
        f.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"data": str(args.fer), "model": "vgg_s", "epochs": args.epochs,
                                      "batch_size": 128, "limit_per_class": args.per_class,
                                      "val_limit_per_class": 100, "tensorboard": False}))
        results = {n: run(config, Path(tmp) / f"p{n}", n) for n in (1, args.nproc)}
    print(f"\n{results[1]['device']}; {args.per_class} faces a class, {args.epochs} epochs, batch 128\n")
    print("| processes | wall time | seconds an epoch | best val accuracy |\n|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n} | {r['wall']:.1f} s | {r['epoch_s']:.1f} | {r['best']:.2%} |")
    speed = results[1]["epoch_s"] / results[args.nproc]["epoch_s"]
    print(f"\n{args.nproc} processes: {speed:.2f}x the speed of 1 per epoch, val accuracy "
          f"{results[args.nproc]['best']:.2%} against {results[1]['best']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
