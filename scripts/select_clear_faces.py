"""Pick the clear-expression FER2013 val faces that tests/test_shipped_models.py checks.

    python scripts/select_clear_faces.py MODEL [MODEL ...] [--fer ../shared/datasets/fer2013] [--per-class 3]

For each class, in file-name order among its first 150 val faces, the first ``--per-class`` faces that every
MODEL labels right with a margin (the label's probability minus the runner-up's) of at least ``--margin``
(0.6). The test then asks for half that margin, so a re-calibrated or re-quantized model keeps them while a
model that reads them wrong fails. Prints the dictionary to paste into the test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emolens import EmotionRecognizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.6)
    args = ap.parse_args()
    recs = [EmotionRecognizer(m) for m in args.models]
    root = args.fer / "val"
    print("CLEAR_FER = {")
    for cls in sorted(p.name for p in root.iterdir() if p.is_dir()):
        picked: list[str] = []
        for f in sorted((root / cls).glob("*.jpg"))[:150]:
            if all(_clear(r, f, cls, args.margin) for r in recs):
                picked.append(f.name)
            if len(picked) == args.per_class:
                break
        print(f'    "{cls}": {picked},')
    print("}")


def _clear(rec: EmotionRecognizer, path: Path, label: str, margin: float) -> bool:
    (face,) = rec.predict(path, detect=False)
    s = face.scores
    return face.label == label and s[label] - max(v for k, v in s.items() if k != label) >= margin


if __name__ == "__main__":
    main()
