"""`emolens evaluate`, `emolens compare` and `emolens calibrate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..detect import DEFAULT_DETECTOR
from .common import MODEL_ARG_HELP, TRAIN_EXTRA_HINT, CLIError, _align_of, _write_error, detector_flags


def add_evaluate(sub) -> None:
    """`emolens evaluate` and its options."""
    p = sub.add_parser("evaluate", help="report (JSON, markdown, plots) of a model on a labelled split ([train] extra)")
    p.add_argument("model", help=MODEL_ARG_HELP)
    p.add_argument("--data", required=True, help="FER2013 CSV, <split>/<class>/* or flat <class>/* folders")
    p.add_argument("--split", default="val", help="train, val or test (default: val)")
    p.add_argument("--limit-per-class", type=int)
    p.add_argument("--detect", action="store_true",
                   help="end to end: find the faces in each picture as `emolens predict` does and score the "
                        "largest (a picture with no face found counts as wrong)")
    detector_flags(p, DEFAULT_DETECTOR)
    p.add_argument("--skip-unknown", action="store_true",
                   help="leave out images of classes the model does not have (else they are an error)")
    p.add_argument("--votes", metavar="FILE.csv",
                   help="score against the majority of several annotators' votes (e.g. FER+'s ferplus.csv) instead "
                        "of the folders; ties and faces whose top vote is not a label are left out and counted")
    p.add_argument("--out", help="folder for report.json, report.md and the PNGs (default for a run: RUN/eval-SPLIT)")
    p.add_argument("--force", action="store_true", help="replace an existing report")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr (shown on a terminal)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    try:
        from ..evaluation.metrics import evaluate_model, resolve_model
        from ..evaluation.report import existing_outputs, format_report, write_report
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from ..classify import ModelError

    try:
        _, run = resolve_model(args.model)
    except (FileNotFoundError, ModelError) as e:
        raise CLIError(str(e)) from None
    out = Path(args.out) if args.out else (run / f"eval-{args.split}" if run is not None else None)
    if out is not None and existing_outputs(out) and not args.force:  # fail before the slow part
        raise CLIError(f"{out} already holds a report; pass --force to replace it, or give another --out")
    from ..progress import Progress

    bar: Progress | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total, unit="image", rate_unit="images/s", terminal_only=True, enabled=not args.quiet)
        bar.update(done)

    def log(message: str) -> None:
        if bar is not None:
            bar.clear()
        print(message, file=sys.stderr)

    try:
        ev = evaluate_model(args.model, args.data, args.split, limit_per_class=args.limit_per_class,
                            log=log, detect=args.detect, detector=args.detector,
                            align=_align_of(args), skip_unknown=args.skip_unknown, progress=progress,
                            votes=args.votes)
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    print(format_report(ev.report))
    if out is not None:
        try:
            files = write_report(ev, out, force=args.force)
        except FileExistsError as e:
            raise CLIError(str(e)) from None
        except OSError as e:  # a full disk: no part of the report is left (it would block the next evaluate)
            raise _write_error(f"--out {out}", e) from None
        print(f"\nwrote {', '.join(str(f) for f in files)}", file=sys.stderr)
    return 0


def add_compare(sub) -> None:
    """`emolens compare` and its options."""
    p = sub.add_parser("compare", help="several runs' evaluation metrics side by side ([train] extra)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders or report.json files")
    p.add_argument("--split", help="which evaluation of each run (default: val, else test)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        from ..evaluation.compare import compare_reports, format_comparison
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    try:
        rows = compare_reports(args.runs, split=args.split)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(rows, indent=1) if args.json else format_comparison(rows))
    return 0


def add_calibrate(sub) -> None:
    """`emolens calibrate` and its options."""
    p = sub.add_parser("calibrate", help="fit the softmax temperature on a labelled split; write a calibrated copy")
    p.add_argument("model", help=MODEL_ARG_HELP)
    p.add_argument("--data", required=True, help="dataset (FER2013 CSV or folders) with the split to fit on")
    p.add_argument("--split", default="val", help="split to fit the temperature on (default val)")
    p.add_argument("--out", help="output .onnx (default: <model>.calibrated.onnx); the input is never changed")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--limit-per-class", type=int, help="use only N images per class")
    p.add_argument("--class-bias", action="store_true",
                   help="also fit a bias per class (for a model that predicts some classes too often or too "
                        "rarely, e.g. trained with class weights); can change labels: see the accuracy printed")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    try:
        from ..evaluation.calibration import calibrate_model
        from ..evaluation.metrics import resolve_model
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from ..classify import BUNDLED_MODELS, ModelError, default_model_path
    from ..hub import is_hub

    try:
        onnx_path, _ = resolve_model(args.model)
    except (FileNotFoundError, ModelError) as e:
        raise CLIError(str(e)) from None
    src = onnx_path or default_model_path()
    # a bundled or Hub model's copy goes here, not into the package or the Hugging Face cache
    bundled = onnx_path is None or str(args.model) in BUNDLED_MODELS or is_hub(args.model)
    out = Path(args.out) if args.out else Path(src.name if bundled else src).with_suffix(".calibrated.onnx")
    if out.exists() and not args.force:
        raise CLIError(f"{out} already exists; pass --force to replace it, or give another --out")
    if out.resolve() == src.resolve():
        raise CLIError(f"--out {out} is the model itself; write the calibrated copy elsewhere")
    try:
        r = calibrate_model(args.model, args.data, args.split, out=out, limit_per_class=args.limit_per_class,
                            class_bias=args.class_bias, log=lambda m: print(m, file=sys.stderr), replace=args.force)
    except (ModelError, ValueError, FileNotFoundError, FileExistsError) as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise _write_error(f"--out {out}", e) from None
    bias = r["logit_bias"]
    print(f"temperature {r['temperature_before']:.3g} -> {r['temperature']:.4f}, fitted on {r['n']} {args.split} "
          f"images\n"
          + (f"  bias per class: {', '.join(f'{k} {v:+.3f}' for k, v in zip(r['labels'], bias))}\n" if bias else "")
          + f"  ECE ({r['split']}): {r['ece_before']:.4f} -> {r['ece_after']:.4f} "
          f"(cross-fitted, fitted on the other half: {r['ece_cross_fitted']:.4f})\n"
          f"  NLL: {r['nll_before']:.4f} -> {r['nll_after']:.4f}; accuracy {r['accuracy_before']:.4f} -> "
          f"{r['accuracy_after']:.4f}\n"
          f"wrote {out}" + (f" (its stored {args.split} figures are the input's, less their ECE: T was fitted on "
                            "a sample)" if args.limit_per_class
                            else f" (with its {args.split} figures at this calibration)"))
    return 0

