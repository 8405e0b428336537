"""A teacher's soft labels for every face of a training split, written as a votes CSV that ``emolens train --votes``
reads: offline distillation, and labels for real photos whose domain must not carry the label.

    python scripts/soft_labels.py TEACHER.onnx --data DATA [--split train] --out labels.csv
        [--votes ferplus.csv --votes-share 0.3] [--label-share 0.2] [--unvoted-label-share 0.5]
        [--weight SUBFOLDER=W ...]

For each face of ``DATA [split]`` (classified as ``emolens evaluate`` does: the teacher's own views and
temperature) the row holds

    target = votes_share * its vote distribution + label_share * one-hot(its folder) + the rest * teacher

(a face without a votes row: ``unvoted_label_share * one-hot + the rest * teacher``, by default the label's share
as for the others), one column per label, and a ``weight`` column: 1, or W for the faces under a sub-folder named
by ``--weight`` (e.g. ``--weight wild=0.3`` gives the real photos a small weight).
Paths are absolute. Nothing existing is overwritten.

Issue 34: the shipped models learn from an ensemble of members trained on different targets (FER2013's labels,
FER+'s votes, both), distilled through this file.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from emolens import EmotionRecognizer
from emolens.face.detect.base import Box
from emolens.training.data import open_source
from emolens.training.votes import read_votes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--votes", type=Path)
    ap.add_argument("--votes-share", type=float, default=0.0)
    ap.add_argument("--label-share", type=float, default=0.0)
    ap.add_argument("--unvoted-label-share", type=float, help="the folder label's share for faces without votes")
    ap.add_argument("--weight", action="append", default=[], metavar="SUBFOLDER=W")
    args = ap.parse_args()
    if args.out.exists():
        print(f"soft_labels.py: error: {args.out} exists", file=sys.stderr)
        return 2
    if not (0 <= args.votes_share and 0 <= args.label_share and args.votes_share + args.label_share <= 1):
        print("soft_labels.py: error: the shares must be >= 0 and add up to at most 1", file=sys.stderr)
        return 2
    weights = {}
    for item in args.weight:
        name, _, w = item.partition("=")
        weights[name] = float(w)
    rec = EmotionRecognizer(args.teacher)
    labels = rec.labels
    source = open_source(args.data)
    ds = source.load(args.split, size=48, channels=rec.classifier.meta.channels, classes=labels)
    print(f"{len(ds)} faces of {args.data} [{args.split}]; teacher {args.teacher}", file=sys.stderr)
    onehot = np.eye(len(labels))[ds.labels]
    has = np.zeros(len(ds), dtype=bool)
    if args.votes:
        votes = read_votes(args.votes, roots=[args.data])
        dist, _, keep, stats = votes.targets(ds.files, ds.labels, labels)
        has = (votes.rows_of(ds.files) >= 0) & keep
        print(f"votes: {stats}", file=sys.stderr)
    c = args.label_share if args.unvoted_label_share is None else args.unvoted_label_share
    needs = np.where(has, args.votes_share + args.label_share < 1, c < 1) if args.votes else np.full(len(ds), True)
    # the teacher runs only where its share is not 0, in batches (its mirror view included, as in predict)
    teacher = np.zeros((len(ds), len(labels)))
    idx = np.flatnonzero(needs)
    views = rec.classifier.meta.tta_scales or [1.0]
    print(f"teacher on {len(idx)} faces", file=sys.stderr)
    if views == [1.0]:
        for i in range(0, len(idx), 256):
            part = idx[i : i + 256]
            teacher[part] = rec.classifier.predict_proba(list(ds.images[part]))
    else:  # views at other scales need the picture around the face: one face at a time, as evaluate does
        whole = [Box(0, 0, ds.images.shape[2], ds.images.shape[1])]
        for i in idx:
            teacher[i] = [rec.classify_boxes(ds.images[i], whole)[0].scores[lab] for lab in labels]
    if args.votes:
        rest = 1 - args.votes_share - args.label_share
        voted = args.label_share * onehot + args.votes_share * dist + rest * teacher
        target = np.where(has[:, None], voted, c * onehot + (1 - c) * teacher)
    else:
        target = args.label_share * onehot + (1 - args.label_share) * teacher
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("x", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", *labels, "weight"])
        for path, row in zip(ds.files, target):
            rel = Path(path).relative_to(args.data) if Path(path).is_relative_to(args.data) else None
            weight = next((v for k, v in weights.items() if rel is not None and k in rel.parts), 1.0)
            w.writerow([str(Path(path).absolute()), *(f"{v:.5f}" for v in row), f"{weight:g}"])
    agree = float((teacher[idx].argmax(1) == ds.labels[idx]).mean()) if len(idx) else float("nan")
    print(f"wrote {args.out}: {len(ds)} rows; where the teacher ran, its top label is the folder's for {agree:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
