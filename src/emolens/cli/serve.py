"""`emolens serve`, `emolens gradio` and `emolens web export`."""

from __future__ import annotations

import argparse

from ..face.detect import DEFAULT_DETECTOR, FAST_DETECTOR
from ..onnxrun import MAX_THREADS
from .common import MODEL_HELP, SERVE_EXTRA_HINT, CLIError, positive_int, thread_count, trust_flag


def add_gradio(sub) -> None:
    """`emolens gradio` and its options."""
    p = sub.add_parser("gradio", help="the Gradio demo: photo, webcam, bar charts, explanations ([gradio] extra)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also a public gradio.live link (needs the internet)")
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help=f"CPU threads for the model (default: all cores; at most {MAX_THREADS})")
    trust_flag(p)
    p.set_defaults(func=cmd_gradio)


def cmd_gradio(args: argparse.Namespace) -> int:
    from ..classify import ModelError
    from ..gradio_app import launch

    try:
        launch(args.model, host=args.host, port=args.port, share=args.share, threads=args.threads,
               trust_model=args.trust_model or None)
    except (ModelError, ImportError) as e:  # ImportError: the [gradio] extra is missing, the message says so
        raise CLIError(str(e)) from None
    except OSError as e:  # the port is taken, the address is not this machine's ...
        raise CLIError(f"cannot serve on {args.host}:{args.port or 'a free port'} ({e.strerror or e})") from None
    return 0


def add_serve(sub) -> None:
    """`emolens serve` and its options."""
    from ..imageio import DEFAULT_MAX_SCANS

    p = sub.add_parser("serve", help="REST API + web page on one server ([serve] extra)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: a free one, printed)")
    p.add_argument("--model", metavar="PATH", help=MODEL_HELP)
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"face detector of requests without ?detector= (default: {DEFAULT_DETECTOR}; every "
                        f"detector is loaded; the web page's live mode asks for {FAST_DETECTOR})")
    trust_flag(p)
    p.add_argument("--threads", type=thread_count, metavar="N",
                   help=f"ONNX Runtime threads per inference (default: 1; at most {MAX_THREADS})")
    p.add_argument("--concurrency", type=thread_count, default=None, metavar="N",
                   help=f"images recognised at the same time (default: CPU cores, at most 4; at most {MAX_THREADS})")
    p.add_argument("--max-upload-mb", type=float, default=10.0, metavar="MB", help="largest request body (default: 10)")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="largest image in pixels, checked before decoding (default: 40,000,000)")
    p.add_argument("--max-scans", type=positive_int, default=DEFAULT_MAX_SCANS, metavar="N",
                   help=f"most scans of a JPEG, counted before decoding (default: {DEFAULT_MAX_SCANS})")
    p.add_argument("--max-batch", type=positive_int, default=16, help="most images per batch request (default: 16)")
    p.add_argument("--max-faces", type=positive_int, default=100, metavar="N",
                   help="most faces classified in one image, the largest (default: 100)")
    p.add_argument("--max-explain-faces", type=positive_int, default=8, metavar="N",
                   help="most faces explained in one image with ?explain=true, the largest (default: 8; a map "
                        "takes about 0.7 s a face on one core)")
    p.add_argument("--explain-concurrency", type=positive_int, metavar="N",
                   help="explanation requests at a time, more get 429 (default: --concurrency - 1, at least 1, "
                        "so that ordinary requests always find a slot)")
    p.add_argument("--explain-timeout", type=float, default=20.0, metavar="SECONDS",
                   help="no face of an image is explained after this (default: 20)")
    p.add_argument("--max-queue", type=positive_int, default=32, metavar="N",
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
    import math

    try:
        import uvicorn  # noqa: F401

        from ..server import ServeConfig
        from ..server.run import read_api_key, serve
    except ImportError:
        raise CLIError(SERVE_EXTRA_HINT) from None
    from ..classify import ModelError

    try:
        api_key = read_api_key(args.api_key_file)
        if not (math.isfinite(args.max_upload_mb) and args.max_upload_mb * 1024 * 1024 >= 1):
            raise CLIError(f"--max-upload-mb must be a positive number of MB, not {args.max_upload_mb:g}")
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
        serve(config, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    except (ModelError, ValueError, FileNotFoundError) as e:  # ServeError is a ValueError
        raise CLIError(str(e)) from None
    return 0


def add_web(sub) -> None:
    """`emolens web export` and its options."""
    from ..face.detect import DEFAULT_DETECTOR

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
    from ..classify import ModelError
    from ..web import WebError, export_site

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
