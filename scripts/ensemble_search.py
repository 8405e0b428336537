"""Score single nets and every ensemble of them on the val sets, from each net's cached probabilities: choosing
the members of a distillation teacher (or of a shipped ensemble) without running every combination's graph.

    python scripts/ensemble_search.py NAME=MODEL.onnx [NAME=MODEL.onnx ...] [--max-size 4] [--must NAME ...]
                                      [--cache runs/cache] [--top 25] [--only A+B,C+D]

Each model is run once per set, as users run it (its own views and temperature; ``emolens evaluate``'s
classification), and its probabilities are kept in ``--cache`` (keyed by the file's size and time). An ensemble's
probabilities are the mean of its members' — what ``emolens export A.onnx B.onnx --out ens.onnx`` computes. The
sets are benchmarks/accuracy.py's: FER+ val majority, FER2013 val, the clear faces, wild val crops and wild val end
to end (the default detector's largest face, found once for all models). Prints, best first by the benchmark's
score (mean of FER+ val, FER val and wild end-to-end accuracy): accuracies, FER val macro-recall and disgust recall,
wild end-to-end neutral recall and macro-recall.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from emolens import EmotionRecognizer
from emolens.face.detect.base import Box
from emolens.training.data import open_source
from emolens.training.votes import read_votes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _sets(fer: Path, wild: Path, cache: Path) -> dict:
    """The faces and truths of every set, cached: FER val crops, wild val pictures and their detected boxes."""
    f = cache / "sets.npz"
    fs = open_source(fer)
    fv = fs.load("val", size=48, channels=1, classes=LABELS, log=lambda m: None)
    items = open_source(wild)._items_of("val")
    wild_files, wild_y = [str(p) for p, _ in items], np.array([LABELS.index(c) for _, c in items])
    if f.is_file():
        z = np.load(f)
        boxes = z["boxes"]
    else:
        rec = EmotionRecognizer()
        boxes = np.full((len(wild_files), 4), -1, dtype=np.int64)
        for i, path in enumerate(wild_files):
            found = rec.face_boxes(rec.load(path))
            if found:
                b = found[0]
                boxes[i] = (b.x, b.y, b.w, b.h)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(f, boxes=boxes)
    votes = read_votes(fer / "ferplus.csv", roots=[fer])
    yplus, _ = votes.majority(fv.files, LABELS)
    rows = votes.rows_of(fv.files)
    emo = [votes.columns.index(c) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise")]
    clear = np.array([r >= 0 and votes.counts[r, emo].max() >= 7 for r in rows])
    yclear = np.where(clear, yplus, -1)
    return {"fer_images": fv.images, "fer_y": fv.labels, "fer+_y": yplus, "clear_y": yclear,
            "wild_files": wild_files, "wild_y": wild_y, "boxes": boxes}


def _probs(name: str, model: Path, sets: dict, cache: Path) -> dict[str, np.ndarray]:
    st = model.stat()
    f = cache / f"{name}-{st.st_size}-{int(st.st_mtime)}.npz"
    if f.is_file():
        return dict(np.load(f))
    rec = EmotionRecognizer(str(model))

    def classify(images: list, boxes: list) -> np.ndarray:
        """classify_boxes for one box per image, batched: every view of every face, then the mean per face."""
        crops = [c for img, b in zip(images, boxes) for c in rec.view_crops(img, [b])]
        probs = np.concatenate([rec.classifier.predict_proba(crops[i : i + 512]) for i in range(0, len(crops), 512)])
        return probs.reshape(len(images), -1, probs.shape[-1]).mean(1)

    fer = classify(list(sets["fer_images"]), [Box(0, 0, 48, 48)] * len(sets["fer_images"]))
    pictures = [rec.load(path) for path in sets["wild_files"]]
    crops = classify(pictures, [Box(0, 0, p.shape[1], p.shape[0]) for p in pictures])
    found = [i for i, b in enumerate(sets["boxes"]) if b[0] >= 0]
    e2e = np.full((len(pictures), len(LABELS)), np.nan)
    e2e[found] = classify([pictures[i] for i in found], [Box(*map(int, sets["boxes"][i])) for i in found])
    out = {"fer": fer, "crops": np.array(crops), "e2e": np.array(e2e)}
    np.savez(f, **out)
    print(f"  cached {name}", file=sys.stderr)
    return out


def _metrics(p: dict[str, np.ndarray], sets: dict) -> dict:
    def acc(prob, y):
        keep = y >= 0
        pred = np.where(np.isnan(prob[:, 0]), -1, np.nan_to_num(prob).argmax(1))
        rec = [float((pred[keep & (y == i)] == i).mean()) for i in range(len(LABELS)) if (keep & (y == i)).any()]
        return float((pred[keep] == y[keep]).mean()), rec

    out = {}
    for key, prob, y in (("fer+", p["fer"], sets["fer+_y"]), ("fer", p["fer"], sets["fer_y"]),
                         ("clear", p["fer"], sets["clear_y"]), ("crops", p["crops"], sets["wild_y"]),
                         ("e2e", p["e2e"], sets["wild_y"])):
        out[key], out[key + "_recall"] = acc(prob, y)
    out["score"] = (out["fer+"] + out["fer"] + out["e2e"]) / 3
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="NAME=MODEL.onnx")
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--wild", type=Path, default=SHARED / "wild")
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--max-size", type=int, default=1)
    ap.add_argument("--must", nargs="*", default=[], help="members every ensemble listed holds")
    ap.add_argument("--only", help="score just these ensembles: A+B,C+D")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    members = dict(m.split("=", 1) for m in args.models)
    args.cache.mkdir(parents=True, exist_ok=True)
    sets = _sets(args.fer, args.wild, args.cache)
    probs = {n: _probs(n, Path(m), sets, args.cache) for n, m in members.items()}
    if args.only:
        combos = [tuple(c.split("+")) for c in args.only.split(",")]
    else:
        combos = [c for k in range(1, args.max_size + 1) for c in itertools.combinations(members, k)
                  if set(args.must) <= set(c)]
    rows = []
    for c in combos:
        mean = {k: np.mean([probs[n][k] for n in c], axis=0) for k in ("fer", "crops", "e2e")}
        rows.append(("+".join(c), _metrics(mean, sets)))
    rows.sort(key=lambda r: -r[1]["score"])
    print(f"{'ensemble':<40} {'FER+':>6} {'FER':>6} {'clear':>6} {'crops':>6} {'e2e':>6} | FER mR  disg | "
          f"e2e mR neut | score")
    for name, m in rows[: args.top]:
        fr, er = m["fer_recall"], m["e2e_recall"]
        print(f"{name:<40} {m['fer+']:6.4f} {m['fer']:6.4f} {m['clear']:6.4f} {m['crops']:6.4f} {m['e2e']:6.4f} | "
              f"{np.mean(fr):.3f} {fr[1]:.3f} | {np.mean(er):.3f} {er[4]:.3f} | {m['score']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
