"""`emolens predict` and `emolens detectors`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..face.detect import DEFAULT_DETECTOR, FAST_DETECTOR
from ..onnxrun import MAX_THREADS
from .common import (
    MODEL_HELP,
    CLIError,
    align_of,
    detector_flags,
    limit_flags,
    output_flags,
    recognizer_limits,
    recursive_flag,
    result_writer,
    thread_count,
    trust_flag,
    whole_output,
)


def add_predict(sub) -> None:
    """`emolens predict` and its options."""
    p = sub.add_parser("predict", help="find faces in images and classify their emotions")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders of images")
    recursive_flag(p)
    output_flags(p)
    p.add_argument("--annotate", metavar="OUT_DIR", help="write annotated copies of the images into this folder")
    p.add_argument("--no-detect", action="store_true", help="each image is one already-cropped face")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    detector_flags(p, DEFAULT_DETECTOR)
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help="CPU threads per model call (default: 1 per worker; all cores with --workers 1; at most "
                        f"{MAX_THREADS})")
    p.add_argument("--workers", type=thread_count, metavar="N",
                   help=f"pictures worked on at once (default: one per CPU core; 1 with --threads; at most "
                        f"{MAX_THREADS})")
    p.add_argument("--no-tta", action="store_true",
                   help="one view per face instead of the model's test-time views (faster, less accurate)")
    p.add_argument("--no-landmarks", action="store_true", help="no landmark dots in the --annotate images")
    limit_flags(p)
    trust_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from ..classify import ModelError
    from ..imageio import describe, expand_inputs, no_images_message
    from ..progress import Progress
    from ..recognizer import EmotionRecognizer

    files = expand_inputs(list(args.inputs), recursive=args.recursive)
    if not files:
        raise CLIError(no_images_message(args.inputs))
    # several pictures: one worker per core, each model on one thread (2.5x the pictures/s on 2 cores)
    workers = args.workers or (1 if args.threads else (os.cpu_count() or 1))
    threads = args.threads or (1 if workers > 1 else None)
    try:
        rec = EmotionRecognizer(args.model, detector=args.detector, threads=threads, tta=not args.no_tta,
                                align=align_of(args), **recognizer_limits(args))
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    annotate_dir = args.annotate
    if annotate_dir is not None:
        try:
            Path(annotate_dir).mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise CLIError(f"--annotate {annotate_dir}: exists and is not a folder") from None
        except OSError as e:
            raise CLIError(f"--annotate {annotate_dir}: cannot create the folder ({e.strerror or e})") from None
    writer = result_writer(args, [describe(f) for f in files], rec.labels)
    bar = Progress(len(files), unit="picture", rate_unit="pictures/s", terminal_only=True,
                   enabled=not args.quiet and len(files) > 1)
    failed = done = 0
    try:
        for r in rec.predict_files(files, detect=not args.no_detect, annotate_dir=annotate_dir, workers=workers,
                                   draw_landmarks=not args.no_landmarks):
            bar.clear()
            with whole_output():
                writer.write(r)  # printed (and flushed) as soon as it is done: an interrupted run keeps it
                done += 1
            for problem in (r.error, r.annotate_error):
                if problem:
                    print(f"emolens: error: {problem}", file=sys.stderr)
            failed += bool(r.error or r.annotate_error)
            if r.annotated is not None and not (args.json or args.jsonl):
                print(f"annotated: {describe(r.annotated)}", file=sys.stderr)
            bar.update(done)
    except KeyboardInterrupt:
        bar.clear()
        writer.close()  # --json: the array is closed, still valid JSON
        print(f"emolens: interrupted after {done} of {len(files)} pictures; their results are above",
              file=sys.stderr)
        return 130
    if bar.n:
        bar.close()
    writer.close()
    return 1 if failed else 0


def add_detectors(sub) -> None:
    """`emolens detectors` and its options."""
    p = sub.add_parser("detectors", help="list the face detectors and what each is for")
    p.set_defaults(func=cmd_detectors)


def cmd_detectors(args: argparse.Namespace) -> int:
    from ..face.detect import DEFAULT_DETECTOR, describe_detectors

    infos = describe_detectors()
    width = max(len(i.name) for i in infos)
    print(f"{'detector'.ljust(width)}  landmarks  for")
    for i in infos:
        tag = " (default)" if i.name == DEFAULT_DETECTOR else " (video, webcam)" if i.name == FAST_DETECTOR else ""
        print(f"{i.name.ljust(width)}  {'5' if i.landmarks else '-':<9}  {i.use}{tag if tag not in i.use else ''}")
    return 0

