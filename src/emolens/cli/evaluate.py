"""`emolens evaluate`, `emolens compare` and `emolens calibrate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..face.detect import DEFAULT_DETECTOR
from .common import MODEL_ARG_HELP, TRAIN_EXTRA_HINT, CLIError, align_of, detector_flags, write_error


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
        from ..evaluation.report import ReportWriteError, evaluate, format_report
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from ..classify import ModelError
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

    failure: ReportWriteError | None = None
    try:
        ev = evaluate(args.model, args.data, args.split, out=args.out or "auto", force=args.force,
                      limit_per_class=args.limit_per_class, log=log, detect=args.detect, detector=args.detector,
                      align=align_of(args), skip_unknown=args.skip_unknown, progress=progress, votes=args.votes)
    except ReportWriteError as e:  # the report is printed, the folder holds no part of it
        ev, failure = e.evaluation, e
    except (ModelError, ValueError, FileNotFoundError, FileExistsError) as e:
        raise CLIError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    print(format_report(ev.report))
    if failure is not None:
        raise CLIError(str(failure), code=1)
    if ev.written:
        print(f"\nwrote {', '.join(str(f) for f in ev.written)}", file=sys.stderr)
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
        from ..evaluation.calibration import calibrate_model, calibrated_path
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from ..classify import ModelError

    out = None
    try:
        out = Path(args.out) if args.out else calibrated_path(args.model)
        r = calibrate_model(args.model, args.data, args.split, out=out, limit_per_class=args.limit_per_class,
                            class_bias=args.class_bias, log=lambda m: print(m, file=sys.stderr), replace=args.force)
    except (ModelError, ValueError, FileNotFoundError, FileExistsError) as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise write_error(f"--out {out}", e) from None
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

