"""Issue 34 on a lent GPU in one call: members trained on different targets, their ensemble distilled into students.

The device machine receives at most 64 MiB, so the training faces travel packed (``pack``, run here) and are
written back as files on that machine (``run``), at the same absolute paths as here, so the votes CSVs match:

    python scripts/gpu_distil.py pack --out gpu            # gpu/faces.npz, gpu/labels.zip, gpu/*.pt
    python scripts/gpu_distil.py run --pack gpu --out $OUT --budget 520   # on the GPU machine

``pack`` stores each split as one mosaic JPEG at quality 94-95 (decoded again: PSNR about 50 dB against the faces
as decoded here, about 10 grey levels off at most); lossless arrays do not fit (80 MB deflated). ``run``:

1. members, fine-tuned from ``vgg_s_wild_sqrt.pt`` (Q) with square-root class weights on soft targets:
   V = FER+ votes only, H = ½ votes + ½ FER2013 label (+ the real faces of wild/train, ½ label + ½ the old default,
   weight 0.3), L = FER2013 labels only; and G = vgg_m from scratch on H's targets, as time allows;
2. the teacher: the members' mean probabilities (face + mirror) on every training face;
3. students on 0.6 × teacher + 0.4 × H's target (real faces: weight 0.3): ``vgg_m`` from G, ``vgg_s`` from Q,
   ``vgg_xs`` (fast) from its pruned start;
4. each run's ``best.pt`` (the last epoch) comes back as float16 tensors (``fp32`` turns them back here), with every
   run's log and history in one tar.

Each phase's epochs shrink to fit ``--budget`` seconds, from the epoch times measured so far.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

HERE = Path("/work")  # where the mix lies here; the votes CSV names its files under HERE/data/mix
ROOT = Path(os.environ.get("GPU_DISTIL_ROOT", "/work"))  # where ``run`` writes it back (a test: another folder)
MIX = ROOT / "data" / "mix"
FER = ROOT / "data" / "fer"  # there: FER2013 alone (the mix without wild/)
LABELS = ROOT / "data" / "labels_mix_wild.csv"
FERPLUS = ROOT / "shared" / "datasets" / "fer2013" / "ferplus.csv"
QUICK = bool(os.environ.get("GPU_DISTIL_QUICK"))  # a smoke test on the CPU: a few faces a class, one epoch
COLS = 64


def mosaic(images: np.ndarray) -> np.ndarray:
    n = len(images)
    rows = -(-n // COLS)
    pad = np.zeros((rows * COLS, 48, 48), np.uint8)
    pad[:n] = images.reshape(n, 48, 48)
    return pad.reshape(rows, COLS, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, COLS * 48)


def tiles(m: np.ndarray, n: int) -> np.ndarray:
    rows = m.shape[0] // 48
    return m.reshape(rows, 48, COLS, 48).transpose(0, 2, 1, 3).reshape(rows * COLS, 48, 48)[:n]


def _retype(path: Path, out: Path, dtype: str) -> None:
    """A checkpoint's weights as float16 (to travel, to keep) or float32 (to train, to export) again."""
    import torch

    from emolens.training.checkpoint import read_checkpoint, write_checkpoint

    ck = read_checkpoint(path)
    to = getattr(torch, dtype)
    ck["model"] = {k: v.to(to) if v.is_floating_point() else v for k, v in ck["model"].items()}
    write_checkpoint(out, ck)


def half(path: Path, out: Path) -> None:
    _retype(path, out, "float16")


def fp32(path: Path, out: Path) -> None:
    _retype(path, out, "float32")


def pack(out: Path) -> None:
    from emolens.training.data import open_source

    out.mkdir(parents=True, exist_ok=True)
    src = open_source(str(MIX))
    arrays = {}
    for split in ("train", "val"):
        ds = src.load(split, size=48, channels=1)
        ok, buf = cv2.imencode(".jpg", mosaic(ds.images), [cv2.IMWRITE_JPEG_QUALITY, 95 if split == "val" else 94])
        assert ok
        rel = [os.path.relpath(f, MIX) for f in ds.files]
        assert not any(r.startswith("..") for r in rel), rel[:3]
        arrays[f"{split}_jpg"] = np.frombuffer(buf.tobytes(), np.uint8)
        arrays[f"{split}_files"] = np.frombuffer("\n".join(rel).encode(), np.uint8)
        arrays[f"{split}_n"] = np.array(len(ds.images))
        print(split, len(ds.images), f"{len(buf) / 1e6:.1f} MB", rel[0])
    np.savez_compressed(out / "faces.npz", **arrays)
    with zipfile.ZipFile(out / "labels.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(LABELS, "labels_mix_wild.csv")
        z.write(FERPLUS, "ferplus.csv")
    half(Path("models/checkpoints/vgg_s_wild_sqrt.pt"), out / "Q.pt")
    half(Path("runs/vgg_xs_init.pt"), out / "xs_init.pt")


# ----------------------------------------------------------------------------------------------------- run
def unpack(pack_dir: Path) -> None:
    if (ROOT / "data" / ".unpacked").exists():  # a warm machine: the first call wrote them
        print("faces already written", flush=True)
        return
    if MIX.exists():  # here it is the real data, whose training files are links into ../shared: never write there
        raise SystemExit(f"{MIX} exists: run this on the device machine, or set GPU_DISTIL_ROOT to a new folder")
    z = np.load(pack_dir / "faces.npz")
    jobs = []
    for split in ("train", "val"):
        m = cv2.imdecode(z[f"{split}_jpg"], cv2.IMREAD_GRAYSCALE)
        faces = tiles(m, int(z[f"{split}_n"]))
        for f, img in zip(z[f"{split}_files"].tobytes().decode().split("\n"), faces):
            rel = Path(f)
            jobs.append((MIX / rel, img))
            if "wild" not in rel.parts:
                jobs.append((FER / rel, img))

    def write(job):
        p, img = job
        p.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", img)
        p.write_bytes(buf.tobytes())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, jobs))
    with zipfile.ZipFile(pack_dir / "labels.zip") as zf:
        LABELS.parent.mkdir(parents=True, exist_ok=True)
        LABELS.write_text(zf.read("labels_mix_wild.csv").decode().replace(f"{HERE}/data/", f"{ROOT}/data/"))
        FERPLUS.parent.mkdir(parents=True, exist_ok=True)
        FERPLUS.write_bytes(zf.read("ferplus.csv"))
    (ROOT / "data" / ".unpacked").write_text(str(len(jobs)))
    print(f"unpacked {len(jobs)} files", flush=True)


AUG = dict(hflip=True, rotate=10.0, shift=0.08, zoom=0.1, brightness=0.2, contrast=0.2, erase=0.1)
GUESS = {"vgg_xs": 1.8, "vgg_s": 1.8, "vgg_m": 2.2}  # seconds an epoch of 36,708 faces on the H200 (measured)


class Clock:
    def __init__(self, budget: float) -> None:
        self.end = time.monotonic() + budget
        self.per_face = {k: v / 36708 for k, v in GUESS.items()}

    def left(self) -> float:
        return self.end - time.monotonic()

    def epochs(self, arch: str, faces: int, planned: int, share: float, minimum: int = 2) -> int:
        fit = int(self.left() * share / (self.per_face[arch] * faces + 1.0))
        return max(0, min(planned, fit)) if fit >= minimum else 0

    def learn(self, arch: str, run: Path, faces: int) -> None:
        with open(run / "history.csv") as f:
            secs = [float(r["seconds"]) for r in csv.DictReader(f)]
        if len(secs) > 1:
            self.per_face[arch] = float(np.median(secs[1:])) / faces


def train_run(name: str, out_root: Path, clock: Clock, *, arch: str, data: Path, planned: int, share: float,
              lr: float, init: str | None, votes: str | None, faces: int, seed: int, smoothing: float = 0.0,
              batch: int = 256) -> Path | None:
    from emolens.training.loop import TrainConfig, train

    epochs = clock.epochs(arch, faces, planned, share)
    if not epochs:
        print(f"{name}: skipped, {clock.left():.0f} s left", flush=True)
        return None
    cfg = {"data": str(data), "out": str(out_root / name), "model": arch, "epochs": epochs, "batch_size": batch,
           "optimizer": "adamw", "lr": lr, "weight_decay": 0.05, "schedule": "cosine", "warmup": 0.1,
           "label_smoothing": smoothing, "class_weights": "sqrt", "select": "last", "precision": "auto",
           "device": "cpu" if QUICK else "cuda", "seed": seed, "tensorboard": False, "augment": AUG}
    if QUICK:
        cfg.update(epochs=1, limit_per_class=20, val_limit_per_class=10, threads=2)
    if init:
        cfg["init"] = init
    if votes:
        cfg["votes"] = votes
    t = time.monotonic()
    print(f"{name}: {arch}, {epochs} epochs, init {init}, votes {votes}", flush=True)
    run = train(TrainConfig.from_dict(cfg))
    clock.learn(arch, run, faces)
    print(f"{name}: done in {time.monotonic() - t:.0f} s; " + (run / "history.csv").read_text().splitlines()[-1],
          flush=True)
    return run


def teacher_csv(members: list[Path], out: Path) -> Path:
    """0.6 x the members' mean (face + mirror) + 0.4 x H's target, per training face of the mix."""
    import torch

    from emolens.training.data import open_source
    from emolens.training.export import load_checkpoint
    from emolens.training.loop import TrainConfig, normalise, to_input
    from emolens.training.votes import read_votes

    ds = open_source(str(MIX)).load("train", size=48, channels=1)
    if QUICK:
        ds.images, ds.labels, ds.files = ds.images[::40], ds.labels[::40], ds.files[::40]
    dev = torch.device("cpu" if QUICK else "cuda")
    probs = np.zeros((len(ds), len(ds.classes)), np.float64)
    for run in members:
        model, ck = load_checkpoint(run / "best.pt")
        model = model.to(dev).eval()
        cfg = TrainConfig.from_dict({"data": str(MIX), "model": ck["config"]["model"],
                                     "mean": ck["config"].get("mean") or 0.5, "std": ck["config"].get("std") or 0.25})
        assert ck["classes"] == ds.classes, (ck["classes"], ds.classes)
        with torch.no_grad():
            for i in range(0, len(ds), 2048):
                x = normalise(to_input(ds.images[i:i + 2048], dev), cfg)
                p = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
                probs[i:i + 2048] += p.float().cpu().numpy() / len(members)
    votes = read_votes(str(LABELS), roots=[str(MIX)])
    target, weight, keep, _ = votes.targets(ds.files, ds.labels, ds.classes, mix=0.0)
    soft = 0.6 * probs + 0.4 * target
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", *ds.classes, "weight"])
        for fname, row, wt in zip(ds.files, soft, weight):
            w.writerow([str(Path(fname).absolute()), *(f"{v:.5f}" for v in row), f"{wt:g}"])
    agree = (probs.argmax(1) == ds.labels).mean()
    print(f"teacher of {len(members)} members: agrees with the folder label on {agree:.3f} of {len(ds)} faces",
          flush=True)
    return out


def run(pack_dir: Path, out: Path, budget: float, long: bool = False) -> None:
    clock = Clock(budget)
    import torch

    print(torch.__version__, "CPU smoke test" if QUICK else torch.cuda.get_device_name(0), flush=True)
    unpack(pack_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path("/tmp/runs")
    shutil.rmtree(runs, ignore_errors=True)
    Q, XS = str(pack_dir / "Q.pt"), str(pack_dir / "xs_init.pt")
    for p in (Q, XS):
        fp32(Path(p), Path(p))
    n_mix, n_fer = 36708, 28709
    done: dict[str, Path] = {}

    def go(name: str, **kw) -> None:
        try:
            r = train_run(name, runs, clock, **kw)
        except Exception as e:  # one failed run must not cost the others (nor its weights, if only the export failed)
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
            r = runs / name if (runs / name / "best.pt").exists() else None
        if r is not None:
            done[name] = r
            half(r / "best.pt", out / f"{name}.pt")  # back at once: a call cut short keeps what it finished

    go("V", arch="vgg_s", data=FER, planned=12, share=0.10, lr=5e-4, init=Q, votes=str(FERPLUS), faces=n_fer, seed=1)
    go("H", arch="vgg_s", data=MIX, planned=12, share=0.11, lr=5e-4, init=Q, votes=str(LABELS), faces=n_mix, seed=2)
    go("L", arch="vgg_s", data=FER, planned=12, share=0.12, lr=5e-4, init=Q, votes=None, faces=n_fer, seed=3,
       smoothing=0.1)
    go("G", arch="vgg_m", data=MIX, planned=60 if long else 40, share=0.40, lr=2e-3, init=None, votes=str(LABELS),
       faces=n_mix, seed=4)
    members = [done[k] for k in ("V", "H", "L", "G") if k in done]
    distil = None
    if members:
        try:
            distil = teacher_csv(members, ROOT / "data" / "labels_distil.csv")
        except Exception as e:
            print(f"teacher: FAILED {type(e).__name__}: {e}", flush=True)
    if distil:
        k = 2 if long else 1
        go("fast_xs", arch="vgg_xs", data=MIX, planned=20 * k, share=0.30, lr=1e-3, init=XS, votes=str(distil),
           faces=n_mix, seed=5)
        g = str(done["G"] / "best.pt") if "G" in done else None
        go("def_m", arch="vgg_m", data=MIX, planned=(15 if g else 40) * k, share=0.55, lr=5e-4 if g else 2e-3,
           init=g, votes=str(distil), faces=n_mix, seed=7)
        go("def_s", arch="vgg_s", data=MIX, planned=15 * k, share=0.95, lr=5e-4, init=Q, votes=str(distil),
           faces=n_mix, seed=6)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as t:
        for name, r in done.items():
            for f in ("train.log", "history.csv", "config.json"):
                if (r / f).exists():
                    t.add(r / f, f"{name}/{f}")
        if distil:
            t.add(distil, "labels_distil.csv")
    print(json.dumps({k: (v / "history.csv").read_text().splitlines()[-1] for k, v in done.items()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=Path("gpu"))
    r = sub.add_parser("run")
    r.add_argument("--pack", type=Path, default=Path("gpu"))
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--budget", type=float, default=520)
    r.add_argument("--long", action="store_true", help="G 60 epochs, the students twice as many (the second call)")
    f = sub.add_parser("fp32", help="float16 checkpoints from the GPU back to float32")
    f.add_argument("src", type=Path)
    f.add_argument("dst", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "pack":
        pack(a.out)
    elif a.cmd == "run":
        run(a.pack, a.out, a.budget, a.long)
    else:
        fp32(a.src, a.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
