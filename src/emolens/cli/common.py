"""What the verbs share: the error the command reports, the option builders, the limits read from the flags."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ..face.align import ALIGN_MODES
from ..face.detect import FAST_DETECTOR, available_detectors
from ..onnxrun import MAX_THREADS

TRAIN_EXTRA_HINT = "this command needs the training extra: pip install 'emolens[train]'"


MODEL_HELP = ("an emolens .onnx model, hf://owner/name on the Hugging Face Hub, or a bundled one: 'default', "
              "or 'fast' (about 6× faster, for video) (default: 'default')")


MODEL_ARG_HELP = "an .onnx model, a run folder, hf://owner/name, or a bundled model: 'default' or 'fast'"


class CLIError(Exception):
    """An error to report as one line on stderr, with exit code 2 (a usage error), or ``code`` (1: an output that
    could not be written, e.g. a full disk)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def write_error(what: str, e: OSError) -> CLIError:
    """An output that could not be written (a full disk, a folder that went away): one line, exit code 1."""
    return CLIError(f"{what}: cannot write ({e.strerror or e})", code=1)


def need_training():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None


@contextlib.contextmanager
def whole_output():
    """Ctrl-C waits until the block is over: a picture's rows or JSON object are printed whole or not at all."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def result_writer(args: argparse.Namespace, names: list[str], labels: list[str]):
    from ..results.output import JsonWriter, TableWriter

    if args.json or args.jsonl:
        return JsonWriter(sys.stdout, lines=args.jsonl)
    return TableWriter(sys.stdout, names, labels)


def max_file_bytes(args: argparse.Namespace) -> int:
    import math

    mb = args.max_file_mb
    if not (math.isfinite(mb) and mb > 0):
        raise CLIError(f"--max-file-mb must be a positive number of MB, not {mb:g}")
    return max(1, int(mb * 1024 * 1024))


def recognizer_limits(args: argparse.Namespace) -> dict:
    """The recogniser's limits from the flags that set them, where the command has them: --max-pixels,
    --max-scans, --max-file-mb and --trust-model."""
    limits: dict = {"trust_model": getattr(args, "trust_model", False) or None}
    for name in ("max_pixels", "max_scans"):
        if hasattr(args, name):
            limits[name] = getattr(args, name)
    if hasattr(args, "max_file_mb"):
        limits["max_file_bytes"] = max_file_bytes(args)
    return limits


def align_of(args: argparse.Namespace) -> str:
    return "none" if getattr(args, "no_align", False) else args.align


DATA_HELP = "FER2013 CSV, <split>/<class>/* folders or flat <class>/* folders"


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def thread_count(text: str) -> int:
    """A number of threads: 1 ... MAX_THREADS (``--threads -3`` was taken, ``--threads 20000`` hung)."""
    n = positive_int(text)
    if n > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"at most {MAX_THREADS} (4 a CPU core), got {n}")
    return n


SERVE_EXTRA_HINT = "this command needs the serving extra: pip install 'emolens[serve]'"


def detector_flags(p: argparse.ArgumentParser, default: str) -> None:
    """--detector, --align and --no-align: how faces are found and cut."""
    from ..recognizer import DEFAULT_ALIGN

    p.add_argument("--detector", default=default, metavar="NAME",
                   help=f"face detector: {', '.join(available_detectors())} (default: {default}; "
                        "`emolens detectors` says what each is for)")
    p.add_argument("--align", default=DEFAULT_ALIGN, choices=ALIGN_MODES,
                   help=f"how faces with landmarks are cut for the model: none (the box), level (eyes level) or "
                        f"template (landmarks onto the model's template) (default: {DEFAULT_ALIGN}, the most "
                        "accurate measured)")
    p.add_argument("--no-align", action="store_true", help="the same as --align none")


def recursive_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recursive", "-r", action="store_true",
                   help="search the folders given and all their sub-folders for images (default: only the pictures "
                        "directly inside each folder)")


def output_flags(p: argparse.ArgumentParser) -> None:
    """--json and --jsonl: what is printed on stdout, a picture at a time (default: a table)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print one JSON array with an object per picture instead of a table (each object as soon "
                        "as its picture is done; the closing ] at the end)")
    g.add_argument("--jsonl", action="store_true",
                   help="print JSON lines: one compact object per picture and line, as soon as it is done")


def limit_flags(p: argparse.ArgumentParser, *, files: bool = True, scans: bool = True) -> None:
    """--max-pixels, --max-scans and --max-file-mb: what one picture (or video frame) may cost
    (docs/security.md)."""
    from ..imageio import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SCANS

    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"largest image{' or video frame' if not files else ''} in pixels, checked from its header "
                        f"before decoding (default: {DEFAULT_MAX_PIXELS:,})")
    if scans:
        p.add_argument("--max-scans", type=positive_int, default=DEFAULT_MAX_SCANS, metavar="N",
                       help=f"most scans of a JPEG, counted before decoding: each is one more pass over the image "
                            f"(default: {DEFAULT_MAX_SCANS})")
    if files:
        default = DEFAULT_MAX_FILE_BYTES / 2**20
        p.add_argument("--max-file-mb", type=float, default=default, metavar="MB",
                       help=f"largest image file read, checked before reading it (default: {default:g}); "
                            "only regular files are read")


def trust_flag(p: argparse.ArgumentParser) -> None:
    """--trust-model: run a model that is not bundled without the limits put on strangers' models."""
    p.add_argument("--trust-model", action="store_true",
                   help="run --model without the limits put on a model that is not bundled (a memory cap, a "
                        "deadline on each call, a first call on a probe input): only for a model you trust "
                        "(docs/security.md)")


def stream_flags(p: argparse.ArgumentParser) -> None:
    """The options `emolens video` and `emolens webcam` share: model, detector, threads, tracking, smoothing."""
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    trust_flag(p)
    detector_flags(p, FAST_DETECTOR)
    p.add_argument("--threads", type=thread_count, default=1, metavar="N",
                   help=f"CPU threads for the model (default: 1, the fastest for one frame at a time; at most "
                        f"{MAX_THREADS})")
    limit_flags(p, files=False, scans=False)
    p.add_argument("--no-tta", action="store_true",
                   help="one view per face instead of the model's test-time views (faster, less accurate)")
    p.add_argument("--detect-every", type=positive_int, default=5, metavar="K",
                   help="full face search at least every K frames of the video (with --every N: every "
                        "max(1, K // N) recognised frames), faces followed in between (default: 5)")
    p.add_argument("--smooth", type=float, default=0.25, metavar="SECONDS",
                   help="emotion smoothing time constant (default: 0.25)")
    p.add_argument("--no-smooth", action="store_true", help="no smoothing: each frame's raw emotions")
    p.add_argument("--no-bars", action="store_true", help="no per-emotion confidence bars beside the faces")


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started it among several, else None (no torch loaded)."""
    from .. import training

    return training.torchrun_rank()
