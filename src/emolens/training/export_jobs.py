"""The four jobs of ``emolens export``, each one checked call (the command only parses its options and prints):

- :func:`export_run`: a run's checkpoint (or several: an ensemble) to ONNX with metadata, its parity checked, and
  with ``int8=True`` an int8 copy too;
- :func:`restamp_model`: a copy of an ONNX model with a new name and/or evaluation figures in its metadata;
- :func:`ensemble_models`: several ONNX models as one (the mean of their probabilities);
- :func:`quantize_onnx`: an int8 copy of an ONNX model, calibrated on a dataset's train split.

::

    from emolens.training.export_jobs import export_run, quantize_onnx

    done = export_run("runs/happy-sad", int8=True)          # runs/happy-sad/model.onnx and model.int8.onnx
    print(done.onnx, done.parity, done.int8_report["accuracy_int8"])

A bad request raises :class:`ExportError` (a ValueError) with the one-line message ``emolens export`` prints; the
input models are never changed, and an existing output is replaced only with ``force``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


class ExportError(ValueError):
    """An export that cannot be done as asked (one line)."""


def report_metrics(report_json: PathLike) -> dict[str, float]:
    """The headline numbers of an ``emolens evaluate`` report.json, as stored in a model's metadata."""
    from ..evaluation.metrics import headline_metrics

    try:
        report = json.loads(Path(report_json).read_text())
        return headline_metrics(report, report["split"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"--metrics {report_json}: not a report.json from `emolens evaluate` ({e})") from None


def _metrics(metrics: dict | PathLike | None) -> dict | None:
    """``metrics`` as given (a dict) or read from a report.json."""
    return metrics if metrics is None or isinstance(metrics, dict) else report_metrics(metrics)


def _free(out: Path, force: bool, hint: str = "") -> None:
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass --force to replace it{hint}")


@dataclass
class Exported:
    """What :func:`export_run` did: the ONNX model (``reused``: it was there and not exported again), the parity
    check (largest probability difference, over how many images, of what kind) and the int8 copy with its
    report (``None`` without ``int8``)."""

    onnx: Path
    reused: bool
    parity: tuple[float, int, str]
    int8: Path | None = None
    int8_report: dict[str, Any] | None = None


def export_run(
    runs: PathLike | list[PathLike],
    out: PathLike | None = None,
    *,
    name: str | None = None,
    tta_hflip: bool = False,
    tta_scales: list[float] | None = None,
    metrics: dict | PathLike | None = None,
    force: bool = False,
    data: PathLike | None = None,
    int8: bool = False,
    int8_mode: str = "static",
    calib_per_class: int = 50,
    val_per_class: int = 100,
) -> Exported:
    """A run folder (its ``best.pt``) or a ``.pt`` checkpoint to ONNX with metadata (``out``, default
    ``model.onnx`` beside the checkpoint); several: one ensemble model (needs ``out``). ``name``, the test-time
    views (``tta_hflip``, ``tta_scales``) and ``metrics`` (a dict or an ``emolens evaluate`` report.json) go into
    the metadata. The export is checked against the checkpoint on a few validation images of ``data`` (default:
    the run's own). With ``int8``, also an int8 copy (``model.int8.onnx`` + its ``.json`` report); an ONNX model
    already there is then quantized as it is, unless ``force``."""
    from . import export as ex

    runs = [runs] if isinstance(runs, str | os.PathLike) else list(runs)
    if not runs:
        raise ExportError("nothing to export: give a run folder, a .pt checkpoint or .onnx models")
    if len(runs) > 1 and any(Path(r).suffix.lower() == ".onnx" for r in runs):
        raise ExportError("an ensemble is made of checkpoints (run folders, .pt files) or of .onnx models, not both")
    ckpts: list[Path] = []
    for run in map(Path, runs):
        c = run / "best.pt" if run.is_dir() else run
        if not c.is_file() or c.suffix.lower() == ".onnx":
            raise ExportError(f"{run}: no checkpoint (give a run folder with best.pt, a .pt file"
                              + (", or one .onnx)" if len(runs) == 1 else "; an ensemble is made of checkpoints)"))
        ckpts.append(c)
    if len(ckpts) > 1 and not out:
        raise ExportError("an ensemble of several runs needs --out ENSEMBLE.onnx")
    ckpt = ckpts[0]
    source: Path | list[Path] = ckpts if len(ckpts) > 1 else ckpt
    onnx_path = Path(out) if out else ckpt.parent / "model.onnx"
    int8_path = onnx_path.with_suffix(".int8.onnx")
    if int8:
        _free(int8_path, force)
    elif onnx_path.exists() and not force:
        raise ExportError(f"{onnx_path} already exists; pass --force to replace it or --out another path")
    extra: dict = {"name": name} if name else {}
    if tta_hflip:
        extra["tta_hflip"] = True
    if tta_scales:
        extra["tta_scales"] = list(tta_scales)
    if metrics is not None:
        extra["metrics"] = _metrics(metrics)
    reused = onnx_path.exists() and not force
    if not reused:
        try:
            ex.export_checkpoint(source, onnx_path, **extra)
        except ValueError as e:  # e.g. ensemble members with different labels
            raise ExportError(str(e)) from None
    done = Exported(onnx_path, reused, ex.check_parity(source, onnx_path, data=data))
    if int8:
        done.int8 = int8_path
        done.int8_report = ex.quantize_model(onnx_path, int8_path, run=ckpt.parent, data=data, mode=int8_mode,
                                             calib_per_class=calib_per_class, val_per_class=val_per_class)
    return done


def restamp_model(model: PathLike, out: PathLike, *, name: str | None = None,
                  metrics: dict | PathLike | None = None, force: bool = False) -> Path:
    """A copy of the ONNX ``model`` at ``out`` with a new ``name`` and/or ``metrics`` (a dict or an ``emolens
    evaluate`` report.json) in its metadata; ``model`` is never changed."""
    from . import export as ex

    src = Path(model)
    if not src.is_file():
        raise ExportError(f"{src}: no such model")
    if not (metrics or name):
        raise ExportError(f"{src} is already an ONNX model; pass --int8 to quantize it, "
                          "or --metrics/--name with --out to store evaluation results or a name in a copy")
    if not out:
        raise ExportError("give --out for the copy with the new metadata (the input model is never changed)")
    out = Path(out)
    if out.resolve() == src.resolve():
        raise ExportError("--out must differ from the input model (the input model is never changed)")
    _free(out, force)
    return ex.restamp(src, out, name=name, metrics=_metrics(metrics))


def ensemble_models(models: list[PathLike], out: PathLike, *, name: str | None = None,
                    metrics: dict | PathLike | None = None, tta_hflip: bool = False,
                    tta_scales: list[float] | None = None, force: bool = False) -> Path:
    """One ONNX model at ``out`` of the mean probability of several ONNX ``models`` (each with its own
    calibration). The test-time views are ``tta_hflip`` / ``tta_scales`` when either is given, else the members'.
    The members are never changed."""
    from . import export as ex

    members = [Path(m) for m in models]
    if any(m.suffix.lower() != ".onnx" for m in members):
        raise ExportError("an ensemble is made of checkpoints (run folders, .pt files) or of .onnx models, not both")
    for m in members:
        if not m.is_file():
            raise ExportError(f"{m}: no such model")
    if not out:
        raise ExportError("an ensemble of several models needs --out ENSEMBLE.onnx")
    out = Path(out)
    if any(out.resolve() == m.resolve() for m in members):
        raise ExportError("--out must differ from the member models (they are never changed)")
    _free(out, force)
    chosen = tta_hflip or tta_scales  # the views given, as for a checkpoint; else the members'
    try:
        return ex.ensemble_onnx(members, out, name=name, metrics=_metrics(metrics),
                                tta_hflip=tta_hflip if chosen else None,
                                tta_scales=(list(tta_scales or []) or [1.0]) if chosen else None)
    except ValueError as e:
        raise ExportError(str(e)) from None


def quantize_onnx(model: PathLike, out: PathLike | None = None, *, data: PathLike | None = None,
                  mode: str = "static", calib_per_class: int = 50, val_per_class: int = 100,
                  force: bool = False) -> tuple[Path, dict[str, Any]]:
    """An int8 copy of the ONNX ``model`` at ``out`` (default ``<model>.int8.onnx``), calibrated on
    ``calib_per_class`` train images per class of ``data`` (default: the run folder beside the model) and its
    accuracy against the float model measured on ``val_per_class`` val images per class; the figures go to
    ``<out>.json`` too. Returns (the int8 model, the figures)."""
    from . import export as ex

    src = Path(model)
    if not src.is_file():
        raise ExportError(f"{src}: no such model")
    int8_path = Path(out) if out else src.with_suffix(".int8.onnx")
    _free(int8_path, force)
    return int8_path, ex.quantize_model(src, int8_path, run=None, data=data, mode=mode,
                                        calib_per_class=calib_per_class, val_per_class=val_per_class)
