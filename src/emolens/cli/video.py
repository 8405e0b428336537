"""`emolens video` and `emolens webcam`."""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, align_of, positive_int, recognizer_limits, stream_flags


def _stream_recognizer(args: argparse.Namespace):
    from ..classify import ModelError
    from ..recognizer import EmotionRecognizer

    try:
        return EmotionRecognizer(args.model, detector=args.detector, threads=args.threads, tta=not args.no_tta,
                                 align=align_of(args), **recognizer_limits(args))
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None


def _stream_options(args: argparse.Namespace) -> dict:
    import math

    if not (math.isfinite(args.smooth) and args.smooth >= 0):  # NaN once wrote NaN scores, exit code 0
        raise CLIError(f"--smooth must be a number of seconds >= 0, not {args.smooth:g}")
    return {"detect_every": args.detect_every, "smoothing": 0.0 if args.no_smooth else args.smooth}


def add_video(sub) -> None:
    """`emolens video` and its options."""
    p = sub.add_parser("video", help="emotions of the faces in a video: annotated video, CSV, plot")
    p.add_argument("input", metavar="VIDEO", help="any video file OpenCV can decode")
    p.add_argument("--out", metavar="VIDEO", help="annotated video (.mp4, .avi, .mkv, .mov, .m4v)")
    p.add_argument("--csv", metavar="FILE", help="one row per face per recognised frame")
    p.add_argument("--plot", metavar="IMAGE", help="PNG of each face's emotions over time")
    p.add_argument("--every", type=positive_int, default=1, metavar="N", help="recognise every N-th frame")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    stream_flags(p)
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from ..imageio import describe
    from ..video import OutputError, VideoError, check_outputs, process_video

    if args.out is None and args.csv is None and args.plot is None:
        raise CLIError("nothing to write: give --out VIDEO, --csv FILE and/or --plot IMAGE")
    opts = _stream_options(args)
    try:
        check_outputs(args.input, out=args.out, csv_path=args.csv, plot=args.plot, force=args.force)
        rec = _stream_recognizer(args)
        s = process_video(args.input, out=args.out, csv_path=args.csv, plot=args.plot, recognizer=rec,
                          every=args.every, force=args.force, progress=not args.quiet, bars=not args.no_bars, **opts)
    except OutputError as e:  # nothing half-written is left; exit 1, as for any output that cannot be written
        raise CLIError(str(e), code=1) from None
    except VideoError as e:
        raise CLIError(str(e)) from None
    of = f" of {s.expected}" if s.expected is not None else ""
    print(f"{s.source}: {s.frames}{of} frames read, {s.processed} recognised, {s.rows} face rows, "
          f"{s.face_ids} face id(s), {s.fps:.1f} fps")
    for path in s.outputs:
        print(f"wrote {describe(path)}")
    if s.interrupted:
        print(f"emolens: interrupted after {s.frames} frames read ({s.processed} recognised); "
              "the outputs above are complete up to there", file=sys.stderr)
        return 130
    if s.missing:
        print(f"emolens: {'error' if s.stopped_early else 'warning'}: {s.source}: the frames stopped after "
              f"{s.frames} of the {s.expected} the file claims (a corrupt or truncated video?); the outputs cover "
              f"those {s.frames}", file=sys.stderr)
    return 1 if s.stopped_early else 0


def add_webcam(sub) -> None:
    """`emolens webcam` and its options."""
    p = sub.add_parser("webcam", help="live window: faces, emotions, confidence bars, fps (q quits)")
    p.add_argument("--camera", type=int, default=0, help="camera number (default: 0)")
    stream_flags(p)
    p.set_defaults(func=cmd_webcam)


def cmd_webcam(args: argparse.Namespace) -> int:
    from ..video import VideoError, run_webcam

    opts = _stream_options(args)
    rec = _stream_recognizer(args)
    try:
        n = run_webcam(rec, camera=args.camera, bars=not args.no_bars, **opts)
    except VideoError as e:
        raise CLIError(str(e)) from None
    print(f"{n} frames shown", file=sys.stderr)
    return 0

