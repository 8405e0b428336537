"""Do the explanation maps mean something? Occlude where the map points, and elsewhere.

    python benchmarks/explain_sanity.py [--data ../shared/datasets/fer2013] [--n 300] [--seed 0]
                                        [--method occlusion rise] [--checkpoint RUN/best.pt]

For ``--n`` FER2013 val faces (stratified over the classes, seeded), each method explains the
predicted emotion; then one square of a third of the crop's side is filled with the crop's mean
colour (a different perturbation from the blur the maps are made with) at the map's hottest
place, its coldest place and 5 random places, and the predicted class's probability is asked
again through the recogniser's own road (:func:`emolens.evaluation.explain_check.region_drops`).
A map that means something: top drop > random drop > least drop. The control is the same map
with its pixels shuffled (a map that knows nothing): its top region is no better than random.

Time per face: ``EmotionRecognizer(threads=1).explain_bgr`` (classification + map), one thread.
``--checkpoint`` adds Grad-CAM on that PyTorch checkpoint (``[train]`` extra); the occlusion check
still runs on the bundled ONNX model's probabilities, so give the checkpoint of the model you pass
with ``--model`` (e.g. a run folder's best.pt and model.onnx).

The last line printed is the headline: the first method's top-vs-random drop and win rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from emolens import EmotionRecognizer, load_image
from emolens.evaluation.explain_check import region_drops
from emolens.explain.maps import Explanation

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fer2013"
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp"}


def stratified_files(root: Path, n: int, seed: int) -> list[Path]:
    """About ``n`` files from root/<class>/*, the same number per class (fewer where a class has fewer)."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"{root}: no class folders")
    rng = np.random.default_rng(seed)
    per = int(np.ceil(n / len(classes)))
    files: list[Path] = []
    for c in classes:
        pool = sorted(p for p in c.iterdir() if p.suffix.lower() in IMAGE_EXT)
        files += [pool[i] for i in rng.choice(len(pool), min(per, len(pool)), replace=False)]
    rng.shuffle(files)
    return files[:n]


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    a = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return {
        "top": float(a["top"].mean()),
        "random": float(a["random"].mean()),
        "least": float(a["least"].mean()),
        "win": float((a["top"] > a["random"]).mean()),
        "win_least": float((a["random"] > a["least"]).mean()),
    }


def line(name: str, s: dict[str, float], ms: float | None = None) -> str:
    t = f"  {ms:7.1f} ms/face" if ms is not None else ""
    return (f"{name:<22} drop top {s['top']:+.3f}  random {s['random']:+.3f}  least {s['least']:+.3f}  "
            f"top>random {s['win']:.1%}  random>least {s['win_least']:.1%}{t}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="FER2013 root with val/<class>/*")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", nargs="+", default=["occlusion", "rise"], choices=["occlusion", "rise", "gradcam"])
    ap.add_argument("--model", help="an emolens .onnx model (default: the bundled one)")
    ap.add_argument("--checkpoint", help="PyTorch checkpoint for --method gradcam")
    ap.add_argument("--no-control", action="store_true", help="skip the shuffled-map control")
    args = ap.parse_args(argv)

    files = stratified_files(args.data / args.split, args.n, args.seed)
    rec = EmotionRecognizer(args.model, threads=1)
    cam = None
    if "gradcam" in args.method:
        if not args.checkpoint:
            raise SystemExit("--method gradcam needs --checkpoint")
        from emolens.training.gradcam import GradCAM

        cam = GradCAM.from_checkpoint(args.checkpoint)
    print(f"{len(files)} {args.split} faces from {args.data} (seed {args.seed}), model {rec.classifier.path.name}, "
          f"1 thread", file=sys.stderr)
    images = [load_image(f) for f in files]
    headline = ""
    for method in args.method:
        rows, control, seconds = [], [], 0.0
        rng = np.random.default_rng(args.seed)
        for i, img in enumerate(images, 1):
            if i % 50 == 0:
                print(f"  {method}: {i}/{len(images)} faces", file=sys.stderr, flush=True)
            t = time.perf_counter()
            if method == "gradcam":
                ex = rec.explain_bgr(img, detect=False)[0]  # the crop and face; the map is replaced
                ex = Explanation(ex.face, ex.label, ex.crop, cam.heatmap(ex.crop, ex.label), "gradcam")
            else:
                ex = rec.explain_bgr(img, detect=False, method=method)[0]
            seconds += time.perf_counter() - t
            rows.append(region_drops(rec, ex, rng=rng))
            if not args.no_control:
                shuffled = rng.permutation(ex.heatmap.ravel()).reshape(ex.heatmap.shape)
                control.append(region_drops(rec, ex, rng=rng, heatmap=shuffled))
        s = summarise(rows)
        ms = 1000 * seconds / len(images)
        print(line(method, s, ms))
        if control:
            print(line(f"{method} shuffled", summarise(control)))
        if not headline:
            headline = (f"{method}: occluding the map's top third drops the predicted class by {s['top']:.3f} "
                        f"vs {s['random']:.3f} for a random region; top > random on {s['win']:.1%} of "
                        f"{len(images)} faces; {ms:.0f} ms/face on 1 thread")
    print(headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
