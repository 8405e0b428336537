"""An evaluation written to a folder: report.json, report.md and the PNG figures; :func:`evaluate` scores a model
and writes its report in one call (what ``emolens evaluate`` does)::

    from emolens.evaluation import evaluate

    ev = evaluate("runs/happy-sad", "data/faces", "test")    # also writes runs/happy-sad/eval-test/
    print(ev.report["accuracy"], ev.written)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..safefile import staged
from .metrics import Evaluation, evaluate_model, resolve_model

AUTO = "auto"
"""``evaluate(out=AUTO)``: a run folder's report goes to ``RUN/eval-SPLIT``; another model's is not written."""

REPORT_FILES = ("report.json", "report.md", "confusion_matrix.png", "roc.png", "reliability.png", "mistakes.png")


def format_report(report: dict[str, Any]) -> str:
    """Markdown: headline numbers, per-class table, confusion matrix, most confused pairs."""
    labels = report["labels"]
    head = (f"**{report.get('split', '')}** ({report['n']} images): accuracy **{report['accuracy']:.4f}**, "
            f"macro-F1 {report['macro_f1']:.4f}, weighted-F1 {report['weighted_f1']:.4f}")
    if report.get("ece") is not None:
        head += f", ECE {report['ece']:.4f} ({report['calibration']['n_bins']} bins)"
    if report.get("macro_auc") is not None:
        head += f", macro ROC AUC {report['macro_auc']:.4f}"
    has_auc = any(report["per_class"][lab].get("auc") is not None for lab in labels)
    lines = [head, ""]
    det = report.get("detection")
    if det:
        lines += [f"End to end: detector `{det['detector']}`, alignment `{det['align']}`: a face found in "
                  f"**{det['found']} / {det['total']}** pictures ({det['found'] / det['total']:.1%}); the "
                  f"{det['total'] - det['found']} without one count as wrong. Accuracy on the pictures with a "
                  f"face: {report['found_accuracy']:.4f}. ROC and calibration are over those.", ""]
    votes = report.get("votes")
    if votes:
        left = ", ".join(f"{k.removeprefix('top_')} {v}" if k.startswith("top_") else f"{k} {v}"
                         for k, v in sorted(votes["left_out"].items()))
        lines += [f"Truth: the majority of the votes in `{votes['file']}`, for **{votes['scored']} / "
                  f"{votes['total']}** faces; left out: {left or 'none'} (a tie, a top vote that is not one of the "
                  f"model's labels, or no row). The folder's label agrees with the majority on "
                  f"{votes['folder_label_agrees']:.1%} of the faces scored.", ""]
    if len(report.get("classes_present", labels)) < len(labels):
        lines += [f"Macro averages over the {len(report['classes_present'])} classes present: "
                  f"{', '.join(report['classes_present'])}.", ""]
    if report.get("model"):
        lines += [f"model `{report['model']}`, data `{report.get('data', '')}` ({report.get('source', '')})", ""]
    lines += ["| class | precision | recall | F1 | " + ("ROC AUC | " if has_auc else "") + "support |",
              "|---|---:|---:|---:|" + ("---:|" if has_auc else "") + "---:|"]
    for lab in labels:
        c = report["per_class"][lab]
        auc = (f" {c['auc']:.3f} |" if c.get("auc") is not None else " – |") if has_auc else ""
        lines.append(f"| {lab} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} |{auc} {c['support']} |")
    lines += ["", "Confusion matrix (rows = true, columns = predicted):", "",
              "| true \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"| {lab} | " + " | ".join(str(v) for v in row) + " |")
    if report.get("most_confused"):
        lines += ["", "Most confused pairs:", ""]
        lines += [f"- {c['true']} → {c['predicted']}: {c['count']} ({c['share_of_true']:.1%} of {c['true']})"
                  for c in report["most_confused"]]
    if report.get("skipped"):
        lines += ["", f"{len(report['skipped'])} unreadable file(s) skipped (listed in report.json)."]
    return "\n".join(lines)


def existing_outputs(out_dir: str | os.PathLike) -> list[Path]:
    out = Path(out_dir)
    return [out / f for f in REPORT_FILES if (out / f).exists()]


def write_report(ev: Evaluation, out_dir: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Write report.json, report.md and the figures into ``out_dir``; refuses to replace an earlier
    report unless ``force``. Returns the files written.

    All or nothing: every file is made in a temporary folder inside ``out_dir`` first and moved into place only
    when all are complete (:func:`emolens.safefile.staged`), so a full disk leaves no partial report (a 0-byte
    ``confusion_matrix.png`` once blocked the next ``evaluate``)."""
    from . import plots

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    clash = existing_outputs(out)
    if clash and not force:
        raise FileExistsError(f"{out} already holds a report ({clash[0].name}); pass --force to replace it, "
                              "or give another --out")
    out.mkdir(parents=True, exist_ok=True)
    r = ev.report
    labels = r["labels"]
    keep = np.flatnonzero(ev.found) if ev.found is not None else np.arange(len(ev.y_true))  # pictures with a face
    images, probs, y_true = ev.images[keep], ev.probs[keep], ev.y_true[keep]
    files = [ev.files[i] if i < len(ev.files) else "" for i in keep]
    idx = plots.most_confident_mistakes(images, probs, y_true, labels)
    r["most_confident_mistakes"] = [
        {"file": files[i], "true": labels[y_true[i]],
         "predicted": labels[int(probs[i].argmax())], "confidence": float(probs[i].max())} for i in idx]
    with staged(out, replace=force) as stage:
        figures = [plots.confusion_matrices(r, stage("confusion_matrix.png")), plots.roc_curves(r, stage("roc.png")),
                   plots.reliability_diagram(r, stage("reliability.png")),
                   plots.mistakes_gallery(images, probs, y_true, labels, stage("mistakes.png"))]
        md = format_report(r) + "\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
        stage("report.md").write_text(md, encoding="utf-8")
        stage("report.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
    return [out / "report.json", out / "report.md", *(out / p.name for p in figures)]


class ReportWriteError(OSError):
    """The report could not be written (a full disk ...): no part of it is left; ``evaluation`` is the finished
    evaluation, which can still be printed or written elsewhere."""

    def __init__(self, message: str, evaluation: Evaluation) -> None:
        super().__init__(message)
        self.evaluation = evaluation


def report_folder(model: str | os.PathLike | None, split: str, out: str | os.PathLike | None = AUTO) -> Path | None:
    """Where :func:`evaluate` writes the report: ``out``, or with ``out=AUTO`` ``RUN/eval-SPLIT`` for a run folder
    (``None``: not written)."""
    if out != AUTO:
        return None if out is None else Path(out)
    _, run = resolve_model(model)
    return run / f"eval-{split}" if run is not None else None


def evaluate(
    model: str | os.PathLike | None,
    data: str | os.PathLike,
    split: str = "val",
    *,
    out: str | os.PathLike | None = AUTO,
    force: bool = False,
    **options: Any,
) -> Evaluation:
    """Score ``model`` on ``split`` of ``data`` (:func:`emolens.evaluation.metrics.evaluate_model`, whose keyword
    ``options`` it takes: ``detect``, ``votes``, ``limit_per_class``, ``progress`` ...) and write the report into
    ``out`` (:func:`report_folder`; ``None``: nothing written). An earlier report there is refused before the slow
    part unless ``force`` (FileExistsError); the files written are ``Evaluation.written``. A report that cannot be
    written raises :class:`ReportWriteError`, which holds the evaluation."""
    folder = report_folder(model, split, out)
    if folder is not None and existing_outputs(folder) and not force:  # fail before the slow part
        raise FileExistsError(f"{folder} already holds a report; pass --force to replace it, or give another --out")
    ev = evaluate_model(model, data, split, **options)
    if folder is not None:
        try:
            ev.written = write_report(ev, folder, force=force)
        except FileExistsError:
            raise
        except OSError as e:  # a full disk: no part of the report is left (it would block the next evaluate)
            raise ReportWriteError(f"--out {folder}: cannot write ({e.strerror or e})", ev) from e
    return ev
