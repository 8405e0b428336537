"""Build the training folder of issue 34's mixed runs: FER2013's faces and the real faces of wild/train, as links.

    python scripts/make_mix.py [--fer ../shared/datasets/fer2013] [--wild-faces ../data/wild_faces] [--out ../data/mix]

``OUT/train/<class>/`` links every FER2013 train face and, under ``OUT/train/<class>/wild/``, every face that
``scripts/cut_faces.py`` cut from ``wild/train`` (so a votes CSV can tell the two apart by path); ``OUT/val`` links
FER2013's val folder. Nothing is copied, and an existing ``OUT`` is left alone (remove it first, on purpose).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer", type=Path, default=SHARED / "fer2013")
    ap.add_argument("--wild-faces", type=Path, default=Path("../data/wild_faces"))
    ap.add_argument("--out", type=Path, default=Path("../data/mix"))
    a = ap.parse_args()
    if a.out.exists():
        print(f"make_mix: {a.out} exists; remove it first to build it again", file=sys.stderr)
        return 1
    for folder in (a.fer / "train", a.fer / "val", a.wild_faces):
        if not folder.is_dir():
            print(f"make_mix: {folder} is not a folder", file=sys.stderr)
            return 1
    n = {"fer": 0, "wild": 0}
    for cls in sorted(p for p in (a.fer / "train").iterdir() if p.is_dir()):
        dest = a.out / "train" / cls.name
        dest.mkdir(parents=True)
        for f in sorted(cls.iterdir()):
            os.symlink(f.resolve(), dest / f.name)
            n["fer"] += 1
        wild = a.wild_faces / cls.name
        if wild.is_dir():
            (dest / "wild").mkdir()
            for f in sorted(wild.iterdir()):
                os.symlink(f.resolve(), dest / "wild" / f.name)
                n["wild"] += 1
    os.symlink((a.fer / "val").resolve(), a.out / "val")
    print(f"{a.out}: {n['fer']} FER2013 train faces, {n['wild']} real faces under <class>/wild/, "
          f"val -> {a.fer / 'val'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
