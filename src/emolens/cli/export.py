"""`emolens export`: a checkpoint, a copy with new metadata, an ensemble or an int8 model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import CLIError, _need_training


def _report_metrics(report_json: str) -> dict[str, float]:
    """The headline numbers of an `emolens evaluate` report.json, as stored in a model's metadata."""
    from ..evaluation.metrics import headline_metrics

    try:
        report = json.loads(Path(report_json).read_text())
        return headline_metrics(report, report["split"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CLIError(f"--metrics {report_json}: not a report.json from `emolens evaluate` ({e})") from None


def _restamp_onnx(src: Path, args: argparse.Namespace) -> int:
    """`emolens export MODEL.onnx --metrics REPORT --name NAME --out NEW.onnx`: a copy with new metadata."""
    from ..classify import ModelError
    from ..training import export as ex

    if not (args.metrics or args.name):
        raise CLIError(f"{src} is already an ONNX model; pass --int8 to quantize it, "
                       "or --metrics/--name with --out to store evaluation results or a name in a copy")
    if args.tta_hflip or args.tta_scales:
        raise CLIError("test-time augmentation is chosen when exporting a checkpoint, not on an .onnx model")
    if not args.out:
        raise CLIError("give --out for the copy with the new metadata (the input model is never changed)")
    out = Path(args.out)
    if out.resolve() == src.resolve():
        raise CLIError("--out must differ from the input model (the input model is never changed)")
    if out.exists() and not args.force:
        raise CLIError(f"{out} already exists; pass --force to replace it")
    metrics = _report_metrics(args.metrics) if args.metrics else None
    try:
        print(f"wrote {ex.restamp(src, out, name=args.name, metrics=metrics)}")
    except ModelError as e:
        raise CLIError(str(e)) from None
    return 0


def _ensemble_onnx(members: list[Path], args: argparse.Namespace) -> int:
    """`emolens export A.onnx B.onnx --out ENS.onnx`: one model of their mean probability."""
    from ..classify import ModelError
    from ..training import export as ex

    for m in members:
        if not m.is_file():
            raise CLIError(f"{m}: no such model")
    if not args.out:
        raise CLIError("an ensemble of several models needs --out ENSEMBLE.onnx")
    out = Path(args.out)
    if any(out.resolve() == m.resolve() for m in members):
        raise CLIError("--out must differ from the member models (they are never changed)")
    if out.exists() and not args.force:
        raise CLIError(f"{out} already exists; pass --force to replace it")
    if args.int8:
        raise CLIError("quantize the members first (emolens export MODEL.onnx --int8 --data PATH), "
                       "then ensemble the int8 models")
    metrics = _report_metrics(args.metrics) if args.metrics else None
    chosen = args.tta_hflip or args.tta_scales  # the views given, as for a checkpoint; else the members'
    try:
        path = ex.ensemble_onnx(members, out, name=args.name, metrics=metrics,
                                tta_hflip=args.tta_hflip if chosen else None,
                                tta_scales=(args.tta_scales or [1.0]) if chosen else None)
    except (ModelError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(f"wrote {path} (ensemble of {len(members)} models)")
    return 0


def add_export(sub) -> None:
    """`emolens export` and its options."""
    p = sub.add_parser("export", help="export a run's best checkpoint to ONNX with metadata ([train] extra)")
    p.add_argument("run", nargs="+", metavar="RUN",
                   help="run folder (uses best.pt), a .pt checkpoint, or an .onnx model (with --int8, or with "
                        "--metrics/--name and --out: a copy with that metadata); "
                        "several runs or .onnx models: one ensemble model (mean of their probabilities), needs --out")
    p.add_argument("--out", help="output .onnx path (default: model.onnx beside the checkpoint)")
    p.add_argument("--name", help="a name stored in the model's metadata")
    p.add_argument("--tta-hflip", action="store_true", help="predict with the mean of each face and its mirror image")
    p.add_argument("--tta-scales", type=float, nargs="+", metavar="S",
                   help="average crops of these sizes × the face box (e.g. 1.0 1.1)")
    p.add_argument("--metrics", metavar="REPORT_JSON", help="store these `emolens evaluate` results in the model")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--int8", action="store_true", help="also write an int8-quantized model.int8.onnx (+ .json report)")
    p.add_argument("--int8-mode", choices=["static", "dynamic"], default="static",
                   help="static QDQ, calibrated on the train split (default), or dynamic")
    p.add_argument("--data", help="dataset for the parity/int8 checks (default: the run's own data)")
    p.add_argument("--calib-per-class", type=int, default=50, help="calibration images per class (default 50)")
    p.add_argument("--val-per-class", type=int, default=100, help="val images per class for the int8 accuracy")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    _need_training()
    from ..classify import ModelError
    from ..training import export as ex

    src = Path(args.run[0])
    ckpts: list[Path] = []
    onnx_members = [Path(r) for r in args.run if Path(r).suffix.lower() == ".onnx"]
    if len(args.run) > 1 and onnx_members:  # an ensemble of exported models
        if len(onnx_members) < len(args.run):
            raise CLIError("an ensemble is made of checkpoints (run folders, .pt files) or of .onnx models, not both")
        return _ensemble_onnx(onnx_members, args)
    if len(args.run) == 1 and src.suffix.lower() == ".onnx":  # an exported model: only --int8 has work to do
        if not src.is_file():
            raise CLIError(f"{src}: no such model")
        if not args.int8:
            return _restamp_onnx(src, args)
        onnx_path, ckpt = src, None
    else:
        for run in map(Path, args.run):
            c = run / "best.pt" if run.is_dir() else run
            if not c.is_file() or c.suffix.lower() == ".onnx":
                raise CLIError(f"{run}: no checkpoint (give a run folder with best.pt, a .pt file"
                               + (", or one .onnx)" if len(args.run) == 1 else "; an ensemble is made of checkpoints)"))
            ckpts.append(c)
        if len(ckpts) > 1 and not args.out:
            raise CLIError("an ensemble of several runs needs --out ENSEMBLE.onnx")
        ckpt = ckpts[0]
        onnx_path = Path(args.out) if args.out else ckpt.parent / "model.onnx"
    source = ckpts if len(ckpts) > 1 else ckpt  # what is exported: one checkpoint, or the ensemble's list
    int8_path = (Path(args.out) if args.out and ckpt is None else onnx_path.with_suffix(".int8.onnx"))
    if args.int8 and int8_path.exists() and not args.force:
        raise CLIError(f"{int8_path} already exists; pass --force to replace it")
    if ckpt is not None:
        if onnx_path.exists() and not args.force and not args.int8:
            raise CLIError(f"{onnx_path} already exists; pass --force to replace it or --out another path")
        extra: dict = {"name": args.name} if args.name else {}
        if args.tta_hflip:
            extra["tta_hflip"] = True
        if args.tta_scales:
            extra["tta_scales"] = args.tta_scales
        if args.metrics:
            extra["metrics"] = _report_metrics(args.metrics)
        if onnx_path.exists() and not args.force:
            print(f"using the existing {onnx_path} (--force to export it again)", file=sys.stderr)
        else:
            try:
                print(f"exported {ex.export_checkpoint(source, onnx_path, **extra)}")
            except ValueError as e:  # e.g. ensemble members with different labels
                raise CLIError(str(e)) from None
    try:
        if ckpt is not None:
            diff, n, what = ex.check_parity(source, onnx_path, data=args.data)
            print(f"parity: max |p_onnx - p_torch| = {diff:.2e} over {n} {what}")
        if args.int8:
            res = ex.quantize_model(onnx_path, int8_path, run=ckpt.parent if ckpt is not None else None,
                                    data=args.data, mode=args.int8_mode, calib_per_class=args.calib_per_class,
                                    val_per_class=args.val_per_class)
            print(f"int8 ({res['mode']}): {int8_path} ({res['size_mb_int8']} MB, fp32 {res['size_mb_fp32']} MB)\n"
                  f"  accuracy on {res['val_images']} val images: {res['accuracy_fp32']:.4f} -> "
                  f"{res['accuracy_int8']:.4f} ({100 * res['accuracy_change']:+.2f} points), "
                  f"same top-1 on {res['agreement']:.1%}\n"
                  f"  1 thread, ms per face: {res['ms_per_face_fp32']:.2f} -> {res['ms_per_face_int8']:.2f} "
                  f"({res['speedup']:.2f}x); details in {int8_path.with_suffix('.json')}")
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    return 0

