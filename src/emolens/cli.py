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
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .align import ALIGN_MODES
from .detect import DEFAULT_DETECTOR, FAST_DETECTOR, available_detectors
from .onnxrun import MAX_THREADS

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


def _write_error(what: str, e: OSError) -> CLIError:
    """An output that could not be written (a full disk, a folder that went away): one line, exit code 1."""
    return CLIError(f"{what}: cannot write ({e.strerror or e})", code=1)


def _need_training():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None


# ----------------------------------------------------------------------------- predict
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
    p.add_argument("--threads", type=_thread_count, metavar="N",
                   help="CPU threads per model call (default: 1 per worker; all cores with --workers 1; at most "
                        f"{MAX_THREADS})")
    p.add_argument("--workers", type=_thread_count, metavar="N",
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
    from .classify import ModelError
    from .imageio import describe, expand_inputs, no_images_message
    from .progress import Progress
    from .recognizer import EmotionRecognizer

    files = expand_inputs(list(args.inputs), recursive=args.recursive)
    if not files:
        raise CLIError(no_images_message(args.inputs))
    # several pictures: one worker per core, each model on one thread (2.5x the pictures/s on 2 cores)
    workers = args.workers or (1 if args.threads else (os.cpu_count() or 1))
    threads = args.threads or (1 if workers > 1 else None)
    try:
        rec = EmotionRecognizer(args.model, detector=args.detector, threads=threads, tta=not args.no_tta,
                                align=_align_of(args), **_limits(args))
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
    writer = _result_writer(args, [describe(f) for f in files], rec.labels)
    bar = Progress(len(files), unit="picture", rate_unit="pictures/s", terminal_only=True,
                   enabled=not args.quiet and len(files) > 1)
    failed = done = 0
    try:
        for r in rec.predict_files(files, detect=not args.no_detect, annotate_dir=annotate_dir, workers=workers,
                                   draw_landmarks=not args.no_landmarks):
            bar.clear()
            with _whole():
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


@contextlib.contextmanager
def _whole():
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


def _result_writer(args: argparse.Namespace, names: list[str], labels: list[str]):
    from .output import JsonWriter, TableWriter

    if args.json or args.jsonl:
        return JsonWriter(sys.stdout, lines=args.jsonl)
    return TableWriter(sys.stdout, names, labels)


def _max_file_bytes(args: argparse.Namespace) -> int:
    import math

    mb = args.max_file_mb
    if not (math.isfinite(mb) and mb > 0):
        raise CLIError(f"--max-file-mb must be a positive number of MB, not {mb:g}")
    return max(1, int(mb * 1024 * 1024))


def _limits(args: argparse.Namespace) -> dict:
    """The recogniser's limits from the flags that set them, where the command has them: --max-pixels,
    --max-scans, --max-file-mb and --trust-model."""
    limits: dict = {"trust_model": getattr(args, "trust_model", False) or None}
    for name in ("max_pixels", "max_scans"):
        if hasattr(args, name):
            limits[name] = getattr(args, name)
    if hasattr(args, "max_file_mb"):
        limits["max_file_bytes"] = _max_file_bytes(args)
    return limits


def _align_of(args: argparse.Namespace) -> str:
    return "none" if getattr(args, "no_align", False) else args.align


# ----------------------------------------------------------------------------- detectors
def add_detectors(sub) -> None:
    """`emolens detectors` and its options."""
    p = sub.add_parser("detectors", help="list the face detectors and what each is for")
    p.set_defaults(func=cmd_detectors)


def cmd_detectors(args: argparse.Namespace) -> int:
    from .detect import DEFAULT_DETECTOR, FAST_DETECTOR, describe_detectors

    infos = describe_detectors()
    width = max(len(i.name) for i in infos)
    print(f"{'detector'.ljust(width)}  landmarks  for")
    for i in infos:
        tag = " (default)" if i.name == DEFAULT_DETECTOR else " (video, webcam)" if i.name == FAST_DETECTOR else ""
        print(f"{i.name.ljust(width)}  {'5' if i.landmarks else '-':<9}  {i.use}{tag if tag not in i.use else ''}")
    return 0


# ----------------------------------------------------------------------------- train
DATA_HELP = "FER2013 CSV, <split>/<class>/* folders or flat <class>/* folders"


def _augment_options(pairs: list[str], current: object) -> dict:
    """``--augment KEY=VALUE`` flags over the config's augment block (validated against AugmentConfig)."""
    import dataclasses

    from .training.augment import AugmentConfig

    fields = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    aug = dict(current) if isinstance(current, dict) else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise CLIError(f"--augment {pair}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        value = value.strip().lower()
        if fields[key] in (bool, "bool"):
            if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise CLIError(f"--augment {pair}: {key} is on or off (true/false)")
            aug[key] = value in ("true", "1", "yes", "on")
        else:
            try:
                aug[key] = float(value)
            except ValueError:
                raise CLIError(f"--augment {pair}: {key} takes a number") from None
            if aug[key] < 0 or (key in AugmentConfig.PROBABILITIES and aug[key] > 1):
                raise CLIError(f"--augment {pair}: {key} must be " + (
                    "a probability in [0, 1]" if key in AugmentConfig.PROBABILITIES else ">= 0"))
    return aug


def _run_config(out: Path) -> dict:
    """The config.json of an existing run folder (the base of ``--resume``)."""
    try:
        base = json.loads((out / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CLIError(f"--resume: cannot read {out / 'config.json'} ({e})") from None
    if not isinstance(base, dict):
        raise CLIError(f"--resume: {out / 'config.json'} is not an emolens run config")
    from .training.loop import upgrade_config

    return upgrade_config(base)


def add_train(sub) -> None:
    """`emolens train` and its options."""
    p = sub.add_parser("train", help="train a model on FER2013 CSV or image folders ([train] extra)")
    p.add_argument("--data", help=DATA_HELP + " (with --resume: the run's own)")
    p.add_argument("--config", help="YAML or JSON config (e.g. configs/seed003_cnn.yaml); flags override it")
    p.add_argument("--out", help="run folder to create (default runs/emolens)")
    p.add_argument("--model", help="architecture name (see `emolens models`; default vgg_s, or with --init the "
                                   "architecture of the model it starts from)")
    p.add_argument("--epochs", type=int, help="default 30; with --init 3 (the fine-tuning recipe)")
    p.add_argument("--batch-size", type=int, help="default 128; with --init 32")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3; with --init 3e-4)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=_thread_count, metavar="N")
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                   help="autocast precision (default auto: bf16 on a GPU or CPU that has it, else fp32 on the CPU "
                        "and fp16 with loss scaling on a GPU; fp16 needs a GPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where to train (default auto: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], help="default adamw (sgd: momentum 0.9)")
    p.add_argument("--schedule", choices=["cosine", "onecycle", "step", "plateau", "constant"],
                   help="learning-rate schedule (default cosine with warm-up = onecycle)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA), e.g. 0.2 (default off)")
    p.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA), e.g. 1 (default off)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate, keep and export a moving average of the weights, e.g. 0.999 (default off)")
    p.add_argument("--teacher", metavar="MODEL.onnx",
                   help="knowledge distillation: an emolens .onnx model (one net or an ensemble) whose probabilities "
                        "the model learns from as well as the labels")
    p.add_argument("--distill", type=float, metavar="ALPHA",
                   help="with --teacher: weight of the teacher's term, 0-1 (default 0.5; the labels get 1 - ALPHA)")
    p.add_argument("--distill-temperature", type=float, metavar="TAU",
                   help="with --teacher: softmax temperature of the comparison (default 2)")
    p.add_argument("--class-weights", choices=["balanced", "sqrt"],
                   help="weight the loss by inverse class frequency (sqrt: by its square root, milder)")
    p.add_argument("--sampler", choices=["shuffle", "balanced"], help="balanced: draw every class equally often")
    p.add_argument("--votes", metavar="FILE.csv",
                   help="several annotators' votes per face (file + a count per label, e.g. FER+'s ferplus.csv): "
                        "train on each face's vote distribution; --class-weights then count the soft targets")
    p.add_argument("--votes-mix", type=float, metavar="SHARE",
                   help="with --votes: the folder label's share of the target, 0-1 (default 0: votes only; 0.5: "
                        "half each)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better val metric (0 = off)")
    p.add_argument("--select", choices=["accuracy", "macro_f1", "loss", "last"],
                   help="val metric that picks best.pt (last: the last epoch)")
    p.add_argument("--weights", help="transfer models: 'imagenet' (download) or a local ImageNet state dict (.pth)")
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=None,
                   help="freeze the pretrained part: a transfer model's base (default) or, with --init, the conv "
                        "stages of emolens' own nets (default: train them too); --no-freeze trains it all")
    p.add_argument("--unfreeze-last", type=int, metavar="N",
                   help="with the pretrained part frozen, train its last N blocks (own nets: conv stages) anyway")
    p.add_argument("--no-augment", action="store_true", help="turn every augmentation off")
    p.add_argument("--augment", action="append", metavar="KEY=VALUE",
                   help="set one augmentation (repeatable): hflip=true|false, rotate=DEG, shift=FRAC, zoom=FRAC, "
                        "shear=DEG, brightness=D, contrast=D, gamma=G, and probabilities per image: erase, and the "
                        "real-photo ones occlude, blur, downscale, noise, jpeg (after --no-augment: only these)")
    p.add_argument("--train-split")
    p.add_argument("--val-split")
    p.add_argument("--limit-per-class", type=int, help="use only the first N images of each class (quick runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt with its config.json (flags override options "
                        "that do not change the model or data, e.g. --epochs)")
    p.add_argument("--init", metavar="SOURCE",
                   help="start from this model's weights with a fresh schedule: default, fast, an emolens "
                        ".onnx, a run folder or a .pt; other labels than its own get a new classifier")
    p.add_argument("--nproc", type=_positive_int, metavar="N",
                   help="train on N processes of this machine as one run (DDP through torchrun: gloo on the CPU, nccl "
                        "with one GPU each); --batch-size stays the batch of all N together. Several machines: "
                        "torchrun ... -m emolens train (README: Scaling out)")
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="with several processes: how long one waits for the others before the run fails "
                        "(default 600)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    _need_training()
    from .training.loop import TrainConfig, train

    base: dict = {}
    if args.config:
        try:
            text = Path(args.config).read_text()
            if Path(args.config).suffix.lower() in (".yaml", ".yml"):
                import yaml

                base = yaml.safe_load(text) or {}
            else:
                base = json.loads(text)
        except (OSError, ValueError) as e:  # yaml.YAMLError is not a ValueError: caught below
            raise CLIError(f"--config {args.config}: cannot read ({e})") from None
        except Exception as e:
            raise CLIError(f"--config {args.config}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(base, dict):
            raise CLIError(f"--config {args.config}: must hold a mapping of option names to values")
    run_out = Path(args.out or base.get("out") or "runs/emolens")
    if args.resume and (run_out / "config.json").is_file():  # continue the run as configured; flags still override
        base = {**_run_config(run_out), **{k: v for k, v in base.items() if k != "out"}}
    overrides = {k: v for k, v in {
        "data": args.data, "out": args.out, "model": args.model, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "threads": args.threads,
        "limit_per_class": args.limit_per_class, "precision": args.precision,
        "train_split": args.train_split, "val_split": args.val_split, "init": args.init,
        "optimizer": args.optimizer, "schedule": args.schedule, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing, "mixup": args.mixup, "cutmix": args.cutmix, "ema": args.ema,
        "class_weights": args.class_weights, "sampler": args.sampler, "votes": args.votes,
        "votes_mix": args.votes_mix,
        "patience": args.patience, "select": args.select, "weights": args.weights, "freeze": args.freeze,
        "unfreeze_last": args.unfreeze_last, "device": args.device, "teacher": args.teacher,
        "distill": args.distill, "distill_temperature": args.distill_temperature,
    }.items() if v is not None}
    if args.no_augment:
        import dataclasses

        from .training.augment import AugmentConfig

        base["augment"] = dataclasses.asdict(AugmentConfig.off())
    if args.augment:
        base["augment"] = _augment_options(args.augment, base.get("augment"))
    base.update(overrides)
    if "data" not in base:
        raise CLIError(f"give the dataset with --data PATH ({DATA_HELP})"
                       + (f"; {run_out} holds no run config.json to resume" if args.resume else ""))
    if args.dist_timeout is not None and not args.dist_timeout > 0:
        raise CLIError(f"--dist-timeout must be a positive number of seconds, not {args.dist_timeout:g}")
    from .training.ddp import DistributedError

    try:
        cfg = TrainConfig.from_dict(base)
        if args.nproc and args.nproc > 1 and _torchrun_rank() is None:
            return _launch_train(cfg, args)
        run = train(cfg, resume=args.resume, timeout=args.dist_timeout)
    except (TypeError, ValueError, FileNotFoundError, FileExistsError, DistributedError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if not _torchrun_rank():  # under torchrun, one process says where the run is
        print(f"run folder: {run}\nmodel: {run / 'model.onnx'}")
    return 0


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started it among several (``WORLD_SIZE`` > 1), else None."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    except ValueError:
        return None


def _launch_train(cfg, args: argparse.Namespace) -> int:
    """``--nproc N``: check what can be checked here (so bad input is one line, before N processes start), then
    run the same training in N processes (training/launch.py)."""
    from .training.launch import launch
    from .training.loop import resolve_device

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} is a file, not a run folder: pick another --out")
    if out.is_dir() and any(out.iterdir()) and not args.resume:
        raise CLIError(f"{out} already holds a run: pick another --out, or pass --resume to continue it")
    if cfg.batch_size % args.nproc:
        raise CLIError(f"batch_size {cfg.batch_size} is the batch of all {args.nproc} processes together and must "
                       f"split evenly between them: give a multiple of {args.nproc}")
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        import torch

        if torch.cuda.device_count() < args.nproc:
            raise CLIError(f"--nproc {args.nproc} on cuda needs a GPU each, and torch sees "
                           f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or --device cpu")
    return launch(cfg, args.nproc, resume=args.resume, timeout=args.dist_timeout)


# ----------------------------------------------------------------------------- evaluate
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
        from .evaluation.metrics import evaluate_model, resolve_model
        from .evaluation.report import existing_outputs, format_report, write_report
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from .classify import ModelError

    try:
        _, run = resolve_model(args.model)
    except (FileNotFoundError, ModelError) as e:
        raise CLIError(str(e)) from None
    out = Path(args.out) if args.out else (run / f"eval-{args.split}" if run is not None else None)
    if out is not None and existing_outputs(out) and not args.force:  # fail before the slow part
        raise CLIError(f"{out} already holds a report; pass --force to replace it, or give another --out")
    from .progress import Progress

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
        from .evaluation.compare import compare_reports, format_comparison
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    try:
        rows = compare_reports(args.runs, split=args.split)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(rows, indent=1) if args.json else format_comparison(rows))
    return 0


# ----------------------------------------------------------------------------- export
def _report_metrics(report_json: str) -> dict[str, float]:
    """The headline numbers of an `emolens evaluate` report.json, as stored in a model's metadata."""
    from .evaluation.metrics import headline_metrics

    try:
        report = json.loads(Path(report_json).read_text())
        return headline_metrics(report, report["split"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CLIError(f"--metrics {report_json}: not a report.json from `emolens evaluate` ({e})") from None


def _restamp_onnx(src: Path, args: argparse.Namespace) -> int:
    """`emolens export MODEL.onnx --metrics REPORT --name NAME --out NEW.onnx`: a copy with new metadata."""
    from .classify import ModelError
    from .training import export as ex

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
    from .classify import ModelError
    from .training import export as ex

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
    from .classify import ModelError
    from .training import export as ex

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
        from .evaluation.calibration import calibrate_model
        from .evaluation.metrics import resolve_model
    except ImportError:
        raise CLIError(TRAIN_EXTRA_HINT) from None
    from .classify import BUNDLED_MODELS, ModelError, default_model_path
    from .hub import is_hub

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


def add_gradio(sub) -> None:
    """`emolens gradio` and its options."""
    p = sub.add_parser("gradio", help="the Gradio demo: photo, webcam, bar charts, explanations ([gradio] extra)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also a public gradio.live link (needs the internet)")
    p.add_argument("--threads", type=_thread_count, metavar="N",
                   help=f"CPU threads for the model (default: all cores; at most {MAX_THREADS})")
    trust_flag(p)
    p.set_defaults(func=cmd_gradio)


def cmd_gradio(args: argparse.Namespace) -> int:
    from .classify import ModelError
    from .gradio_app import launch

    try:
        launch(args.model, host=args.host, port=args.port, share=args.share, threads=args.threads,
               trust_model=args.trust_model or None)
    except (ModelError, ImportError) as e:  # ImportError: the [gradio] extra is missing, the message says so
        raise CLIError(str(e)) from None
    except OSError as e:  # the port is taken, the address is not this machine's ...
        raise CLIError(f"cannot serve on {args.host}:{args.port or 'a free port'} ({e.strerror or e})") from None
    return 0


def add_push(sub) -> None:
    """`emolens push` and its options."""
    p = sub.add_parser("push", help="upload a model with its model card to the Hugging Face Hub ([hub] extra)")
    p.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder, an .onnx model or default/fast")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub model repo (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="a Hub access token (default: the one `hf auth login` saved, or HF_TOKEN)")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from .hub import HubError
    from .push import push

    try:
        url = push(args.model, args.repo, private=args.private, token=args.token)
    except HubError as e:
        raise CLIError(str(e)) from None
    print(f"pushed {args.model} to https://huggingface.co/{args.repo}\n{url}\n"
          f"use it: emolens predict --model hf://{args.repo} photo.jpg")
    return 0


def add_models(sub) -> None:
    """`emolens models` and its options."""
    p = sub.add_parser("models", help="list the trainable architectures (training them: [train] extra)")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    import importlib.util

    from .training.catalog import ARCHITECTURES

    print(f"{'name':<13} {'input':>5} {'channels':<9} {'params':>11}  description")
    for a in ARCHITECTURES:  # stored facts: nothing is built, torch is not imported
        chans = "1 (gray)" if a.channels == 1 else "3 (rgb)"
        print(f"{a.name:<13} {a.input_size:>5} {chans:<9} {a.params:>11,}  {a.description}")
    if importlib.util.find_spec("torch") is None:
        print(f"emolens: note: {TRAIN_EXTRA_HINT.replace('this command needs', 'training them needs')}",
              file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- video, webcam
def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _thread_count(text: str) -> int:
    """A number of threads: 1 ... MAX_THREADS (``--threads -3`` was taken, ``--threads 20000`` hung)."""
    n = _positive_int(text)
    if n > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"at most {MAX_THREADS} (4 a CPU core), got {n}")
    return n


def _stream_recognizer(args: argparse.Namespace):
    from .classify import ModelError
    from .recognizer import EmotionRecognizer

    try:
        return EmotionRecognizer(args.model, detector=args.detector, threads=args.threads, tta=not args.no_tta,
                                 align=_align_of(args), **_limits(args))
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
    p.add_argument("--every", type=_positive_int, default=1, metavar="N", help="recognise every N-th frame")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    stream_flags(p)
    p.set_defaults(func=cmd_video)


def cmd_video(args: argparse.Namespace) -> int:
    from .imageio import describe
    from .video import OutputError, VideoError, check_outputs, process_video

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
    from .video import VideoError, run_webcam

    opts = _stream_options(args)
    rec = _stream_recognizer(args)
    try:
        n = run_webcam(rec, camera=args.camera, bars=not args.no_bars, **opts)
    except VideoError as e:
        raise CLIError(str(e)) from None
    print(f"{n} frames shown", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- explain
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
    from .classify import ModelError
    from .imageio import describe, expand_inputs, no_images_message, printable
    from .output import JsonWriter
    from .progress import Progress
    from .recognizer import EmotionRecognizer

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
        from .training.gradcam import GradCAM

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
    from .explain import output_files, write_files
    from .imageio import ImageError, describe

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


# ----------------------------------------------------------------------------- serve
SERVE_EXTRA_HINT = "this command needs the serving extra: pip install 'emolens[serve]'"


def add_batch(sub) -> None:
    """`emolens batch` and its options."""
    p = sub.add_parser("batch", help="every face of many pictures and videos into Parquet, on Ray Data "
                                      "([distributed] extra)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders, globs, image or video files or URIs (s3://, gs:// ...), or .txt files listing them")
    p.add_argument("--out", required=True, metavar="DIR", help="the Parquet folder (a re-run skips finished shards)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--detector", metavar="NAME",
                   help="face detector (default: centerface for pictures, centerface-fast for videos as in emolens "
                        "video)")
    p.add_argument("--address", help="a Ray cluster to attach to (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=_positive_int, metavar="N", help="recognisers at once (default: CPUs / --num-cpus)")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs per actor, its ONNX Runtime threads (default: 1)")
    p.add_argument("--num-gpus", type=float, default=0,
                   help="GPUs per actor (needs onnxruntime-gpu in place of onnxruntime; default: 0)")
    p.add_argument("--batch-size", type=_positive_int, default=16, help="pictures per actor call (default: 16)")
    p.add_argument("--shard-size", type=_positive_int, default=1000,
                   help="pictures per output shard, the unit a re-run skips (default: 1000)")
    p.add_argument("--fps", type=float, default=5.0,
                   help="videos: frames recognised per second of video (default 5; 0 = every frame)")
    p.add_argument("--window", type=float, default=600.0, metavar="SECONDS",
                   help="videos: one task per this many seconds of each file, so long files spread over the actors "
                        "(default 600; 0 = one task per file); face ids are counted within a window")
    p.add_argument("--verbose", action="store_true", help="Ray Data's own log lines too")
    trust_flag(p)
    limit_flags(p, files=False)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from .distributed.batch import BatchError, run_batch

    try:
        summary = run_batch(args.inputs, args.out, model=args.model, detector=args.detector, address=args.address,
                            actors=args.actors, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                            batch_size=args.batch_size, shard_size=args.shard_size, fps=args.fps,
                            window=args.window, verbose=args.verbose,
                            log=lambda m: print(m, file=sys.stderr), limits=_limits(args))
    except BatchError as e:
        raise CLIError(str(e)) from None
    print(f"{args.out}: {summary.line()}")
    return 1 if summary.errors else 0


def add_serve(sub) -> None:
    """`emolens serve` and its options."""
    from .imageio import DEFAULT_MAX_SCANS

    p = sub.add_parser("serve", help="REST API + web page on one server ([serve] extra)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: a free one, printed)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"face detector of requests without ?detector= (default: {DEFAULT_DETECTOR}; every "
                        f"detector is loaded; the web page's live mode asks for {FAST_DETECTOR})")
    trust_flag(p)
    p.add_argument("--threads", type=_thread_count, metavar="N",
                   help=f"ONNX Runtime threads per inference (default: 1; at most {MAX_THREADS})")
    p.add_argument("--concurrency", type=_thread_count, default=None, metavar="N",
                   help=f"images recognised at the same time (default: CPU cores, at most 4; at most {MAX_THREADS})")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MB", help="largest request body (default: 10)")
    p.add_argument("--max-pixels", type=_positive_int, default=40_000_000,
                   help="largest image in pixels, checked before decoding (default: 40,000,000)")
    p.add_argument("--max-scans", type=_positive_int, default=DEFAULT_MAX_SCANS, metavar="N",
                   help=f"most scans of a JPEG, counted before decoding (default: {DEFAULT_MAX_SCANS})")
    p.add_argument("--max-batch", type=_positive_int, default=16, help="most images per batch request (default: 16)")
    p.add_argument("--max-faces", type=_positive_int, default=100, metavar="N",
                   help="most faces classified in one image, the largest (default: 100)")
    p.add_argument("--max-explain-faces", type=_positive_int, default=8, metavar="N",
                   help="most faces explained in one image with ?explain=true, the largest (default: 8; a map "
                        "takes about 0.7 s a face on one core)")
    p.add_argument("--explain-concurrency", type=_positive_int, metavar="N",
                   help="explanation requests at a time, more get 429 (default: --concurrency - 1, at least 1, "
                        "so that ordinary requests always find a slot)")
    p.add_argument("--explain-timeout", type=float, default=20.0, metavar="SECONDS",
                   help="no face of an image is explained after this (default: 20)")
    p.add_argument("--max-queue", type=_positive_int, default=32, metavar="N",
                   help="images waiting for a slot; more get 503 with a Retry-After (default: 32)")
    p.add_argument("--queue-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="longest wait for a slot before 503 with a Retry-After (default: 30)")
    p.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="longest an image may hold a slot: then its work stops and it gets 503 timeout (default: 60)")
    p.add_argument("--body-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="longest a request body may take to arrive, else 408 (default: 60)")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="require the key in this file in the X-API-Key header (or set EMOLENS_API_KEY)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import ipaddress
    import math

    try:
        import uvicorn

        from .server import ServeConfig, create_app
        from .server.app import API_KEY_ENV
    except ImportError:
        raise CLIError(SERVE_EXTRA_HINT) from None
    from .classify import ModelError

    api_key = os.environ.get(API_KEY_ENV) or None
    if args.api_key_file:
        try:
            api_key = Path(args.api_key_file).read_text().strip()
        except OSError as e:
            raise CLIError(f"--api-key-file {args.api_key_file}: cannot read ({e.strerror or e})") from None
        if not api_key:
            raise CLIError(f"--api-key-file {args.api_key_file}: the file is empty")
    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be 0..65535, not {args.port}")
    if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb * 1024 * 1024 >= 1):
        raise CLIError(f"--max-upload-mb must be a positive number of MB, not {args.max_upload_mb:g}")
    for name in ("explain_timeout", "queue_timeout", "request_timeout", "body_timeout"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            raise CLIError(f"--{name.replace('_', '-')} must be a positive number of seconds")
    config = ServeConfig(model=args.model, detector=args.detector, threads=args.threads,
                         max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                         max_pixels=args.max_pixels, max_batch=args.max_batch, max_faces=args.max_faces,
                         max_explain_faces=args.max_explain_faces, explain_concurrency=args.explain_concurrency,
                         explain_timeout=args.explain_timeout, max_queue=args.max_queue,
                         queue_timeout=args.queue_timeout, request_timeout=args.request_timeout,
                         body_timeout=args.body_timeout, max_scans=args.max_scans,
                         trust_model=args.trust_model or None, api_key=api_key)
    if args.concurrency:
        config.concurrency = args.concurrency
    sock = _listening_socket(args.host, args.port)  # a clear error before loading the model
    try:
        app = create_app(config)
    except (ModelError, ValueError, FileNotFoundError) as e:
        sock.close()
        raise CLIError(str(e)) from None
    svc = app.state.service
    address, port = sock.getsockname()[:2]  # the port bound: --port 0 asks the system for a free one
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{port}"
    print(f"emolens: serving {svc.model_id} on {where}  (web page {where}/, API docs {where}/docs"
          f"{', API key required' if api_key else ''})", file=sys.stderr, flush=True)
    if not api_key and not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        print(f"emolens: warning: listening on {args.host} without an API key: anyone who can reach this machine "
              f"on the network can call the API; set {API_KEY_ENV} or --api-key-file, or serve on 127.0.0.1",
              file=sys.stderr, flush=True)
    import logging

    from .onnxrun import stop_all
    from .server.app import json_error_protocol

    server_log = logging.getLogger("emolens.server")  # its lines beside uvicorn's, in the same form
    if not server_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        server_log.addHandler(handler)
        server_log.setLevel(args.log_level.upper())
        server_log.propagate = False

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:  # SIGTERM, Ctrl-C: the work in flight stops now
            stop_all()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log, server_header=False,
                                   http=json_error_protocol(), timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    return 0


# ----------------------------------------------------------------------------- web
def add_web(sub) -> None:
    """`emolens web export` and its options."""
    from .detect import DEFAULT_DETECTOR

    p = sub.add_parser("web", help="emolens in the browser: a static site that runs the models in the page")
    verbs = p.add_subparsers(dest="web_command", metavar="VERB")
    verbs.required = True
    e = verbs.add_parser("export", help="write a static site (page, ES module, onnxruntime-web, models) to DIR")
    e.add_argument("folder", metavar="DIR", help="where the site goes (new or empty, unless --force)")
    e.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    e.add_argument("--detector", default=DEFAULT_DETECTOR, metavar="NAME",
                   help=f"face detector for photos: centerface or centerface-fast (default: {DEFAULT_DETECTOR}; live "
                        "video uses centerface-fast)")
    e.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty: the site's files replace files of the same names, "
                        "nothing else is touched")
    e.set_defaults(func=cmd_web_export)


def cmd_web_export(args: argparse.Namespace) -> int:
    from .classify import ModelError
    from .web import WebError, export_site

    try:
        site = export_site(args.folder, model=args.model, detector=args.detector, force=args.force)
    except (WebError, ModelError) as e:
        raise CLIError(str(e)) from None
    mb = {k: v / 1e6 for k, v in site.files.items()}
    runtime = sum(v for k, v in mb.items() if k.startswith("web/ort/"))
    models = sum(v for k, v in mb.items() if k.endswith(".onnx"))
    print(f"{args.folder}: a static site of {len(site.files)} files, {site.total_bytes / 1e6:.1f} MB (models "
          f"{models:.1f} MB, onnxruntime-web {runtime:.1f} MB); it fetches nothing from another origin\n"
          f"try it: python -m http.server -d {args.folder}  (then open http://127.0.0.1:8000/)")
    return 0


def _listening_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` for uvicorn to listen on (CLIError when it cannot be bound)."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise CLIError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog from now on, not refused until uvicorn starts
    except OSError as e:
        sock.close()
        raise CLIError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    return sock


# ----------------------------------------------------------------------------- parser
def detector_flags(p: argparse.ArgumentParser, default: str) -> None:
    """--detector, --align and --no-align: how faces are found and cut."""
    from .recognizer import DEFAULT_ALIGN

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
    from .imageio import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SCANS

    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"largest image{' or video frame' if not files else ''} in pixels, checked from its header "
                        f"before decoding (default: {DEFAULT_MAX_PIXELS:,})")
    if scans:
        p.add_argument("--max-scans", type=_positive_int, default=DEFAULT_MAX_SCANS, metavar="N",
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
    p.add_argument("--threads", type=_thread_count, default=1, metavar="N",
                   help=f"CPU threads for the model (default: 1, the fastest for one frame at a time; at most "
                        f"{MAX_THREADS})")
    limit_flags(p, files=False, scans=False)
    p.add_argument("--no-tta", action="store_true",
                   help="one view per face instead of the model's test-time views (faster, less accurate)")
    p.add_argument("--detect-every", type=_positive_int, default=5, metavar="K",
                   help="full face search at least every K frames of the video (with --every N: every "
                        "max(1, K // N) recognised frames), faces followed in between (default: 5)")
    p.add_argument("--smooth", type=float, default=0.25, metavar="SECONDS",
                   help="emotion smoothing time constant (default: 0.25)")
    p.add_argument("--no-smooth", action="store_true", help="no smoothing: each frame's raw emotions")
    p.add_argument("--no-bars", action="store_true", help="no per-emotion confidence bars beside the faces")


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
    from .imageio import printable
    from .quiet import filtered_stderr

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
        rank = _torchrun_rank()
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
        if not _torchrun_rank():  # under torchrun, one process of the run says it
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
