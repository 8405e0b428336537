"""`emolens export`: a checkpoint, a copy with new metadata, an ensemble or an int8 model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import CLIError, need_training


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
    need_training()
    from ..classify import ModelError
    from ..training.export_jobs import ensemble_models, export_run, quantize_onnx, restamp_model

    onnx_models = [r for r in args.run if Path(r).suffix.lower() == ".onnx"]
    try:
        if len(args.run) > 1 and onnx_models:  # an ensemble of exported models
            if args.int8 and len(onnx_models) == len(args.run):
                raise CLIError("quantize the members first (emolens export MODEL.onnx --int8 --data PATH), "
                               "then ensemble the int8 models")
            path = ensemble_models(args.run, args.out, name=args.name, metrics=args.metrics,
                                   tta_hflip=args.tta_hflip, tta_scales=args.tta_scales, force=args.force)
            print(f"wrote {path} (ensemble of {len(args.run)} models)")
        elif onnx_models and args.int8:  # one exported model, quantized
            path, res = quantize_onnx(args.run[0], args.out, data=args.data, mode=args.int8_mode,
                                      calib_per_class=args.calib_per_class, val_per_class=args.val_per_class,
                                      force=args.force)
            _print_int8(path, res)
        elif onnx_models:  # one exported model: a copy with new metadata
            if args.tta_hflip or args.tta_scales:
                raise CLIError("test-time augmentation is chosen when exporting a checkpoint, not on an .onnx model")
            path = restamp_model(args.run[0], args.out, name=args.name, metrics=args.metrics, force=args.force)
            print(f"wrote {path}")
        else:
            return _print(export_run(args.run, args.out, name=args.name, tta_hflip=args.tta_hflip,
                                     tta_scales=args.tta_scales, metrics=args.metrics, force=args.force,
                                     data=args.data, int8=args.int8, int8_mode=args.int8_mode,
                                     calib_per_class=args.calib_per_class, val_per_class=args.val_per_class))
    except (ModelError, ValueError, FileNotFoundError) as e:  # ExportError is a ValueError
        raise CLIError(str(e)) from None
    return 0


def _print(done) -> int:
    if done.reused:
        print(f"using the existing {done.onnx} (--force to export it again)", file=sys.stderr)
    else:
        print(f"exported {done.onnx}")
    diff, n, what = done.parity
    print(f"parity: max |p_onnx - p_torch| = {diff:.2e} over {n} {what}")
    if done.int8 is not None:
        _print_int8(done.int8, done.int8_report)
    return 0


def _print_int8(path: Path, res: dict) -> None:
    print(f"int8 ({res['mode']}): {path} ({res['size_mb_int8']} MB, fp32 {res['size_mb_fp32']} MB)\n"
          f"  accuracy on {res['val_images']} val images: {res['accuracy_fp32']:.4f} -> "
          f"{res['accuracy_int8']:.4f} ({100 * res['accuracy_change']:+.2f} points), "
          f"same top-1 on {res['agreement']:.1%}\n"
          f"  1 thread, ms per face: {res['ms_per_face_fp32']:.2f} -> {res['ms_per_face_int8']:.2f} "
          f"({res['speedup']:.2f}x); details in {path.with_suffix('.json')}")
