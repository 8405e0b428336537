"""`emolens explain`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..detect import DEFAULT_DETECTOR
from ..onnxrun import MAX_THREADS
from .common import (
    MODEL_HELP,
    CLIError,
    _align_of,
    _limits,
    _need_training,
    _positive_int,
    _thread_count,
    _whole,
    _write_error,
    detector_flags,
    limit_flags,
    output_flags,
    recursive_flag,
    trust_flag,
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
    p.add_argument("--threads", type=_thread_count, metavar="N",
                   help=f"CPU threads for the model (default: all; at most {MAX_THREADS})")
    p.add_argument("--no-tta", action="store_true",
                   help="one view per face instead of the model's test-time views (faster, less accurate)")
    p.add_argument("--max-faces", type=_positive_int, metavar="N",
                   help="explain only the N largest faces of a picture (default: every face; a map takes about "
                        "0.7 s a face on one core)")
    output_flags(p)
    limit_flags(p)
    trust_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..classify import ModelError
    from ..imageio import describe, expand_inputs, no_images_message, printable
    from ..output import JsonWriter
    from ..progress import Progress
    from ..recognizer import EmotionRecognizer

    try:
        rec = EmotionRecognizer(args.model, detector=args.detector, threads=args.threads, tta=not args.no_tta,
                                align=_align_of(args), **_limits(args))
    except (ModelError, ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    if args.label is not None and args.label not in rec.labels:
        raise CLIError(f"--label {printable(args.label)}: not one of this model's labels "
                       f"({', '.join(map(printable, rec.labels))})")
    method = args.method
    if args.checkpoint and method != "gradcam":
        raise CLIError("--checkpoint is for --method gradcam")
    if method == "gradcam":
        if not args.checkpoint:
            raise CLIError("--method gradcam needs --checkpoint RUN/best.pt (the PyTorch checkpoint of --model)")
        _need_training()
        from ..training.gradcam import GradCAM

        try:
            method = GradCAM.from_checkpoint(args.checkpoint, tta_hflip=rec.classifier.meta.tta_hflip)
        except (ValueError, FileNotFoundError) as e:
            raise CLIError(str(e)) from None
        try:
            method.check_matches(rec.classifier)
        except ValueError as e:
            raise CLIError(f"--checkpoint {args.checkpoint}: {e}; give the checkpoint --model was exported "
                           "from") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    paths = expand_inputs(args.inputs, recursive=args.recursive)
    if not paths:
        raise CLIError(no_images_message(args.inputs))
    stems: dict[str, Path] = {}
    for path in paths:  # output names come from the file name: two inputs must not share one
        other = stems.setdefault(path.stem, path)
        if other != path:
            raise CLIError(f"{describe(other)} and {describe(path)} have the same file name and would write the "
                           "same files; explain them apart (another --out)")
    json_out = args.json or args.jsonl
    writer = JsonWriter(sys.stdout, lines=args.jsonl) if json_out else None
    bar = Progress(len(paths), unit="picture", rate_unit="pictures/s", terminal_only=True,
                   enabled=not args.quiet and len(paths) > 1)
    failed = done = 0
    try:
        for path in paths:
            bar.update(done)
            name = describe(path)
            item, error = _explain_one(rec, path, out, args, method)
            bar.clear()
            if error:
                print(f"emolens: error: {error}", file=sys.stderr)
                failed += 1
            elif not item["faces"]:
                print(f"{name}: no face found", file=sys.stderr)
            with _whole():
                if writer is not None:
                    writer.write(item)
                else:
                    for i, face in enumerate(item["faces"], 1):
                        ex = face["explanation"]
                        print(f"{name} face {i}: {printable(face['label'])} {face['score']:.0%}, map of "
                              f"{printable(ex['label'])} ({ex['method']}) -> {ex['panel']}", flush=True)
                done += 1
    except KeyboardInterrupt:
        bar.clear()
        if writer is not None:
            writer.close()
        print(f"emolens: interrupted after {done} of {len(paths)} pictures; their files are written",
              file=sys.stderr)
        return 130
    if bar.n:
        bar.update(done)
        bar.close()
    if writer is not None:
        writer.close()
    return 1 if failed else 0


def _explain_one(rec, path: Path, out: Path, args: argparse.Namespace, method) -> tuple[dict, str | None]:
    """Explain one picture and write its files: (its JSON object, the error that stopped it or ``None``)."""
    from ..explain import output_files, write_files
    from ..imageio import ImageError, describe

    name = describe(path)
    item: dict = {"file": name, "faces": []}
    try:
        bgr = rec.load(path)
    except ImageError as e:
        item["error"] = str(e)
        return item, str(e)
    explanations = rec.explain_bgr(bgr, label=args.label, detect=not args.no_detect, method=method,
                                   max_faces=args.max_faces)
    planned = output_files(explanations, path, out)
    try:
        write_files(planned, force=args.force)  # this picture's files: all or none
    except FileExistsError as e:
        item["error"] = f"{name}: {e}"
        return item, item["error"]
    except OSError as e:
        raise _write_error(f"--out {out}", e) from None
    for i, ex in enumerate(explanations):
        crop, overlay, panel = (describe(p) for p, _ in planned[3 * i : 3 * i + 3])
        face = ex.face.to_dict()
        face["explanation"] = {"label": ex.label, "method": ex.method, "crop": crop, "overlay": overlay,
                               "panel": panel}
        item["faces"].append(face)
    return item, None

