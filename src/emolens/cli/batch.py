"""`emolens batch` and `emolens push`."""

from __future__ import annotations

import argparse
import sys

from .common import MODEL_HELP, CLIError, limit_flags, positive_int, recognizer_limits, trust_flag


def add_push(sub) -> None:
    """`emolens push` and its options."""
    p = sub.add_parser("push", help="upload a model with its model card to the Hugging Face Hub ([hub] extra)")
    p.add_argument("model", metavar="RUN_OR_MODEL", help="a run folder, an .onnx model or default/fast")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="the Hub model repo (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", help="a Hub access token (default: the one `hf auth login` saved, or HF_TOKEN)")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub import HubError
    from ..push import push

    try:
        url = push(args.model, args.repo, private=args.private, token=args.token)
    except HubError as e:
        raise CLIError(str(e)) from None
    print(f"pushed {args.model} to https://huggingface.co/{args.repo}\n{url}\n"
          f"use it: emolens predict --model hf://{args.repo} photo.jpg")
    return 0


def add_batch(sub) -> None:
    """`emolens batch` and its options."""
    p = sub.add_parser("batch", help="every face of many pictures and videos into Parquet, on Ray Data "
                                      "([distributed] extra)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders, globs, image or video files or URIs (s3://, gs:// ...), or .txt files listing them")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the Parquet folder (a re-run skips finished shards, parts and video windows)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--detector", metavar="NAME",
                   help="face detector (default: centerface for pictures, centerface-fast for videos as in emolens "
                        "video)")
    p.add_argument("--address", help="a Ray cluster to attach to (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=positive_int, metavar="N", help="recognisers at once (default: CPUs / --num-cpus)")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs per actor, its ONNX Runtime threads (default: 1)")
    p.add_argument("--num-gpus", type=float, default=0,
                   help="GPUs per actor (needs onnxruntime-gpu in place of onnxruntime; default: 0)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="pictures per unit: one actor call, one part file until its shard is merged; may change "
                        "between runs (default: 16)")
    p.add_argument("--shard-size", type=positive_int, default=1000,
                   help="pictures per merged output shard: how many files the result has, not how fast it is made "
                        "(default: 1000)")
    p.add_argument("--fps", type=float, default=5.0,
                   help="videos: frames recognised per second of video (default 5; 0 = every frame)")
    p.add_argument("--window", type=float, default=600.0, metavar="SECONDS",
                   help="videos: one task per this many seconds of each file, so long files spread over the actors "
                        "(default 600; 0 = one task per file); face ids are counted within a window")
    p.add_argument("--verbose", action="store_true", help="Ray Data's own log lines too")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr (the summary is still printed)")
    trust_flag(p)
    limit_flags(p, files=False)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from ..distributed.batch import BatchError, run_batch

    try:
        summary = run_batch(args.inputs, args.out, model=args.model, detector=args.detector, address=args.address,
                            actors=args.actors, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                            batch_size=args.batch_size, shard_size=args.shard_size, fps=args.fps,
                            window=args.window, verbose=args.verbose, progress=not args.quiet,
                            log=lambda m: print(m, file=sys.stderr), limits=recognizer_limits(args))
    except BatchError as e:
        raise CLIError(str(e)) from None
    print(f"{args.out}: {summary.line()}")
    return 1 if summary.errors else 0

