"""``emolens`` command line: one thin verb per library call.

    emolens predict PHOTO [PHOTO | FOLDER ...] [--json | --jsonl] [--annotate DIR] [--no-detect] [--detector NAME]
    emolens detectors
    emolens video IN.mp4 [--out OUT.mp4] [--csv FILE] [--plot FILE.png] [--every N] [--force]
    emolens webcam [--camera 0]
    emolens explain IMAGE [IMAGE ...] [--out DIR] [--label L] [--method occlusion|rise|gradcam] [--json | --jsonl]
    emolens train --data PATH [--config FILE] [--model NAME] [--epochs N] [--out RUN]   ([train] extra)
    emolens evaluate MODEL --data PATH [--split val] [--detect] [--out DIR] [--force]   ([train] extra)
    emolens compare RUN_A RUN_B ... [--json]                                            ([train] extra)
    emolens calibrate MODEL --data PATH [--split val] [--out OUT.onnx]                  ([train] extra)
    emolens export RUN [RUN ...] [--out model.onnx] [--int8]                            ([train] extra)
    emolens models
    emolens gradio [--model M] [--share]                                                ([gradio] extra)
    emolens push RUN_OR_MODEL --repo OWNER/NAME                                         ([hub] extra)
    emolens batch INPUT ... --out DIR [--actors N] [--address RAY]                      ([distributed] extra)
    emolens serve [--host 127.0.0.1] [--port 8000] [--concurrency N]                     ([serve] extra)
    emolens web export DIR [--model NAME] [--detector NAME] [--force]

Each verb is two functions side by side: ``add_VERB`` (its options) and ``cmd_VERB`` (a call into the library).

Results are printed on stdout a picture at a time, as each is done; errors are one line each on stderr;
a progress line goes to stderr on a terminal. Exit codes: 0 done, 1 some input failed, 2 usage error,
130 interrupted (what was finished is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from .. import __version__
from .batch import add_batch, add_push
from .common import CLIError, torchrun_rank
from .evaluate import add_calibrate, add_compare, add_evaluate
from .explain import add_explain
from .export import add_export
from .predict import add_detectors, add_predict
from .serve import add_gradio, add_serve, add_web
from .train import add_models, add_train
from .video import add_video, add_webcam

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="emolens", description="Facial emotion recognition: find faces, classify their emotions."
    )
    ap.add_argument("--version", action="version", version=f"emolens {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    for add in (add_predict, add_detectors, add_video, add_webcam, add_explain, add_train, add_evaluate,
                add_compare, add_export, add_calibrate, add_models, add_gradio, add_push, add_batch,
                add_serve, add_web):  # help order
        add(sub)
    return ap


def _drop_stdout() -> None:
    """Point stdout at /dev/null so that nothing (not even the flush at exit) writes to a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (stdout captured in-process)
        pass


def _printable_streams() -> None:
    """Whatever reaches stdout or stderr is printed, never a UnicodeEncodeError: with a strict encoding
    (``PYTHONIOENCODING=utf-8``, an ASCII locale) a character it cannot hold is written as an escape. Names
    are made printable where they enter (:func:`emolens.imageio.describe`); this is the net under that."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # pragma: no cover - a stream that cannot change
                pass


def main(argv: list[str] | None = None) -> int:
    from ..imageio import printable
    from ..quiet import filtered_stderr

    _printable_streams()
    before = set(threading.enumerate())
    try:
        with filtered_stderr():  # the decoders' own lines (libpng, libjpeg, OpenCV, FFmpeg) are not shown
            args = build_parser().parse_args(argv)
            code = args.func(args)
            sys.stdout.flush()  # output buffered for a pipe meets a closed reader here, not at exit
        return _leave(code, before) if code == 130 else code
    except BrokenPipeError:
        # the reader went away (`emolens predict --json ... | head -5`): stop quietly, as Unix tools do
        _drop_stdout()
        return _leave(1, before)
    except CLIError as e:
        rank = torchrun_rank()
        print(f"emolens: error (process {rank}): {e}" if rank else f"emolens: error: {e}", file=sys.stderr)
        return _leave(e.code, before)
    except OSError as e:
        # what could not be written on the way (`predict --json > file` on a full disk): one line, exit 1; the
        # rest of stdout goes nowhere, so the flush at exit does not fail again
        _drop_stdout()
        where = e.filename or "the output"
        print(f"emolens: error: cannot write {printable(str(where))} ({e.strerror or e})", file=sys.stderr)
        return _leave(1, before)
    except KeyboardInterrupt:
        if not torchrun_rank():  # under torchrun, one process of the run says it
            print("emolens: interrupted", file=sys.stderr)
        return _leave(130, before)


def _leave(code: int, before: set) -> int:
    """``code``, or, when work this command started is still running in emolens' own threads (a picture being
    decoded when Ctrl-C came, a model's probe call that would not stop), the end of the process now, with ``code``:
    the streams are flushed and nothing waits for that work (a normal exit would wait, or tear ONNX Runtime down
    under a running call, which aborts the process). Threads that were there before (``before``) are not this
    command's."""
    busy = [t for t in threading.enumerate() if t not in before and t.daemon and t.is_alive()
            and t.name.startswith(("emolens-picture", "emolens-probe"))]
    if busy:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
