"""Several evaluations side by side (``emolens compare RUN_A RUN_B ...``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def find_report(path: str | os.PathLike, split: str | None = None) -> Path:
    """The report.json of a run folder (``<run>/eval-<split>/report.json``, else any one under it),
    an evaluation folder, or the file itself."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such run folder or report.json")
    if (p / "report.json").is_file():
        return p / "report.json"
    preferred = [p / f"eval-{s}" / "report.json" for s in ([split] if split else ["val", "test", "train"])]
    for c in preferred:
        if c.is_file():
            return c
    found = sorted(p.glob("*/report.json"))
    if split:
        found = [f for f in found if _load(f).get("split") == split]
    if not found:
        what = f"evaluation of the {split} split" if split else "report.json"
        raise FileNotFoundError(f"{p}: no {what} here (run `emolens evaluate {p} --data DATA"
                                f"{f' --split {split}' if split else ''}` first)")
    return found[0]


def _load(path: Path) -> dict[str, Any]:
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable report.json ({e})") from None
    if not isinstance(r, dict) or "accuracy" not in r or "per_class" not in r:
        raise ValueError(f"{path}: not a report.json written by `emolens evaluate`")
    return r


def compare_reports(paths: list[str | os.PathLike], split: str | None = None) -> list[dict[str, Any]]:
    """One row per run: name, split, n, accuracy, macro/weighted F1, ECE, per-class recall, params, size."""
    rows = []
    for path in paths:
        f = find_report(path, split)
        r = _load(f)
        info = r.get("model_info", {})
        rows.append({
            "name": str(path), "report": str(f), "split": r.get("split"), "n": r.get("n"),
            "accuracy": r["accuracy"], "macro_f1": r.get("macro_f1"), "weighted_f1": r.get("weighted_f1"),
            "ece": r.get("ece"), "macro_auc": r.get("macro_auc"),
            "recall": {lab: c["recall"] for lab, c in r["per_class"].items()},
            "params": info.get("params"), "size_mb": info.get("size_mb"), "architecture": info.get("architecture"),
        })
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """A markdown table, one column per run; the best value of each metric in bold."""
    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    labels: list[str] = []
    for r in rows:
        labels += [lab for lab in r["recall"] if lab not in labels]
    metrics = [("accuracy", "accuracy", ".4f", max), ("macro-F1", "macro_f1", ".4f", max),
               ("weighted-F1", "weighted_f1", ".4f", max), ("ECE", "ece", ".4f", min),
               ("macro ROC AUC", "macro_auc", ".4f", max)]
    lines = ["| | " + " | ".join(r["name"] for r in rows) + " |", "|---" + "|---:" * len(rows) + "|",
             "| split (n) | " + " | ".join(f"{r['split']} ({r['n']})" for r in rows) + " |"]

    def line(title, values, fmt, best):
        present = [v for v in values if v is not None]
        top = best(present) if len(present) > 1 else None
        cells = [("**" + num(v, fmt) + "**") if v is not None and v == top else num(v, fmt) for v in values]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")

    for title, key, fmt, best in metrics:
        line(title, [r[key] for r in rows], fmt, best)
    for lab in labels:
        line(f"recall {lab}", [r["recall"].get(lab) for r in rows], ".3f", max)
    lines.append("| params | " + " | ".join(num(r["params"], ",") for r in rows) + " |")
    lines.append("| size (MB) | " + " | ".join(num(r["size_mb"], ".2f") for r in rows) + " |")
    return "\n".join(lines)
