"""Small datasets cut from FER2013 for training tests: symlinks, so nothing is copied."""

from __future__ import annotations

from pathlib import Path


def fer_subset(fer_root: Path, root: Path, counts: dict[str, dict[str, int]]) -> Path:
    """``root/<split>/<class>/`` holding the first ``counts[split][class]`` images of FER2013's folder, as links."""
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            d = root / split / cls
            d.mkdir(parents=True)
            for f in sorted((fer_root / split / cls).iterdir())[:n]:
                (d / f.name).symlink_to(f)
    return root
