"""A small dataset of your own labels: training from scratch against fine-tuning emolens' default model.

    python benchmarks/finetune.py [--fer ../shared/datasets/fer2013] [--per-class 500] [--epochs 3 10]

Seed 002's scenario: about 1,000 FER2013 *training* faces as flat ``<label>/*.jpg`` folders (emolens splits
them 70/15/15), happy/sad, and a three-label set (happy/neutral/surprise) to show it is not binary-only. For
each set and each epoch budget, two runs on the 2 cores:

* from scratch: ``emolens train --data DATA --epochs E`` (vgg_s, the usual recipe);
* fine-tuned: ``emolens train --config configs/finetune_small.yaml --data DATA --epochs E`` (``--init default``).

Printed: test accuracy and macro-F1 (the 15% test split, which neither run saw) and the training wall time.
The last line is the headline: the fine-tuned happy/sad run at the smallest budget.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import cpu_description
from emolens.evaluation.metrics import evaluate_model
from emolens.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
SETS = {"happy/sad": ("happy", "sad"), "happy/neutral/surprise": ("happy", "neutral", "surprise")}


def make_set(fer: Path, labels: tuple[str, ...], total: int, root: Path) -> Path:
    """``total`` training faces split evenly over ``labels``, drawn at random (seed 0), as flat folders."""
    rng = random.Random(0)
    for label in labels:
        files = sorted((fer / "train" / label).iterdir())
        (root / label).mkdir(parents=True)
        for f in rng.sample(files, total // len(labels)):
            (root / label / f.name).symlink_to(f)
    return root


def run(data: Path, out: Path, epochs: int, recipe: dict | None) -> dict:
    cfg = {"data": str(data), "out": str(out), "epochs": epochs, "threads": 2, "seed": 0, "tensorboard": False}
    t0 = time.perf_counter()
    folder = train(TrainConfig.from_dict({**(recipe or {}), **cfg}))
    wall = time.perf_counter() - t0
    r = evaluate_model(folder, data, "test").report
    return {"acc": r["accuracy"], "f1": r["macro_f1"], "n": r["n"], "s": wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--per-class", type=int, default=500, help="faces per label of happy/sad (total = 2 × this)")
    ap.add_argument("--epochs", type=int, nargs="+", default=[3, 10])
    args = ap.parse_args()
    if not (args.fer / "train").is_dir():
        print(f"finetune.py: error: no FER2013 train split under {args.fer}", file=sys.stderr)
        return 2
    recipe = yaml.safe_load((ROOT / "configs" / "finetune_small.yaml").read_text())
    print(f"CPU: {cpu_description()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, labels in SETS.items():
            data = make_set(args.fer, labels, 2 * args.per_class, Path(tmp) / name.replace("/", "_"))
            for epochs in args.epochs:
                for how, rec in (("from scratch (vgg_s)", None), ("fine-tuned from default", recipe)):
                    r = run(data, Path(tmp) / f"run_{len(rows)}", epochs, rec)
                    rows.append((name, how, epochs, r))
                    print(f"  {name}, {how}, {epochs} epochs: test {r['acc']:.4f} in {r['s']:.0f} s", flush=True)
    print("\n| labels | start | epochs | test accuracy | macro-F1 | training, s |\n|---|---|---:|---:|---:|---:|")
    for name, how, epochs, r in rows:
        print(f"| {name} | {how} | {epochs} | {100 * r['acc']:.2f}% (of {r['n']}) | {r['f1']:.3f} | {r['s']:.0f} |")
    name, how, epochs, r = next(x for x in rows if x[1].startswith("fine") and x[0] == "happy/sad")
    scratch = next(x[3] for x in rows if x[0] == name and x[2] == epochs and x[1].startswith("from"))
    print(f"\n{name} fine-tuned from default, {epochs} epochs: test accuracy {100 * r['acc']:.2f}% in {r['s']:.0f} s "
          f"(from scratch: {100 * scratch['acc']:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
