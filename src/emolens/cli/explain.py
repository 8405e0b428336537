"""`emolens explain`."""

from __future__ import annotations

import argparse
import sys

from ..face.detect import DEFAULT_DETECTOR
from ..onnxrun import MAX_THREADS
from .common import (
    MODEL_HELP,
    CLIError,
    align_of,
    detector_flags,
    limit_flags,
    need_training,
    output_flags,
    positive_int,
    recognizer_limits,
    recursive_flag,
    thread_count,
    trust_flag,
    whole_output,
)


def add_explain(sub) -> None:
    """`emolens explain` and its options."""
    p = sub.add_parser("explain", help="heat maps of what drove each face's emotion: overlay, crop and panel PNGs")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files or folders of images")
    recursive_flag(p)
    p.add_argument("--out", default="explanations", metavar="DIR", help="output folder (default: explanations)")
    p.add_argument("--label", help="explain this emotion instead of each face's predicted one")
    p.add_argument("--method", choices=["occlusion", "rise", "gradcam"], default="occlusion",
                   help="occlusion (default), rise, or gradcam (with --checkpoint, [train] extra)")
    p.add_argument("--checkpoint", metavar="PT", help="PyTorch checkpoint of --model for --method gradcam")
    p.add_argument("--no-detect", action="store_true", help="each image is one already-cropped face")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    detector_flags(p, DEFAULT_DETECTOR)
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help=f"CPU threads for the model (default: all; at most {MAX_THREADS})")
    p.add_argument("--no-tta", action="store_true",
                   help="one view per face instead of the model's test-time views (faster, less accurate)")
    p.add_argument("--max-faces", type=positive_int, metavar="N",
                   help="explain only the N largest faces of a picture (default: every face; a map takes about "
                        "0.7 s a face on one core)")
    output_flags(p)
    limit_flags(p)
    trust_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..classify import ModelError
    from ..explain import ExplainError, ExplainWriteError, explain_files
    from ..explain.files import check_label_of
    from ..imageio import printable
    from ..progress import Progress
    from ..recognizer import EmotionRecognizer
    from ..results.output import JsonWriter

    try:
        rec = EmotionRecognizer(args.model, detector=args.detector, threads=args.threads, tta=not args.no_tta,
                                align=align_of(args), **recognizer_limits(args))
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    try:
        check_label_of(rec.labels, args.label)  # before a checkpoint is loaded
    except ExplainError as e:
        raise CLIError(str(e)) from None
    method = args.method
    if args.checkpoint and method != "gradcam":
        raise CLIError("--checkpoint is for --method gradcam")
    if method == "gradcam":
        if not args.checkpoint:
            raise CLIError("--method gradcam needs --checkpoint RUN/best.pt (the PyTorch checkpoint of --model)")
        need_training()
        from ..training.gradcam import GradCAM

        try:
            method = GradCAM.for_model(args.checkpoint, rec.classifier)
        except (ValueError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
    try:
        job = explain_files(rec, args.inputs, args.out, label=args.label, method=method, detect=not args.no_detect,
                            max_faces=args.max_faces, force=args.force, recursive=args.recursive)
    except ExplainError as e:
        raise CLIError(str(e)) from None
    writer = JsonWriter(sys.stdout, lines=args.jsonl) if args.json or args.jsonl else None
    bar = Progress(len(job), unit="picture", rate_unit="pictures/s", terminal_only=True,
                   enabled=not args.quiet and len(job) > 1)
    failed = done = 0
    try:
        for path in job.paths:
            bar.update(done)
            try:
                picture = job.explain_one(path)
            except ExplainWriteError as e:
                raise CLIError(str(e), code=1) from None
            bar.clear()
            if picture.error:
                print(f"emolens: error: {picture.error}", file=sys.stderr)
                failed += 1
            elif not picture.faces:
                print(f"{picture.file}: no face found", file=sys.stderr)
            with whole_output():
                if writer is not None:
                    writer.write(picture.to_dict())
                else:
                    for i, face in enumerate(picture.faces, 1):
                        ex = face["explanation"]
                        print(f"{picture.file} face {i}: {printable(face['label'])} {face['score']:.0%}, map of "
                              f"{printable(ex['label'])} ({ex['method']}) -> {ex['panel']}", flush=True)
                done += 1
    except KeyboardInterrupt:
        bar.clear()
        if writer is not None:
            writer.close()
        print(f"emolens: interrupted after {done} of {len(job)} pictures; their files are written",
              file=sys.stderr)
        return 130
    if bar.n:
        bar.update(done)
        bar.close()
    if writer is not None:
        writer.close()
    return 1 if failed else 0
