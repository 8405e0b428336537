"""The browser's side of emolens: the manifest that tells the ES module (``web/js/emolens.mjs``) what to load and
how the Python road is set, and ``emolens web export DIR``, a static site that runs it all in the page.

The manifest is built from the Python objects themselves (the model's metadata, the detectors' settings, the
video tracker's defaults), so the browser runs with what Python runs with; nothing model-specific is written here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..classify import BUNDLED_MODELS, MAX_BATCH, Classifier
from ..face.align import MAX_CROP_SIDE
from ..face.crop import DEFAULT_MAX_SIDE
from ..face.detect import DEFAULT_DETECTOR, FAST_DETECTOR, CenterFaceDetector, available_detectors, create_detector
from ..face.detect.centerface import centerface_path
from ..recognizer import DEFAULT_ALIGN
from ..video.frames import FrameTracker
from ..video.track import IoUTracker

PACKAGE = Path(str(resources.files("emolens")))
JS_DIR = PACKAGE / "web" / "js"
"""The ES module and, in ``ort/``, the vendored onnxruntime-web files (served at ``/web/`` and exported to
``DIR/web/``)."""
PAGE_DIR = PACKAGE / "server" / "static"
"""The web page: the server's page, which runs client-side too."""

BROWSER_MAX_PIXELS = 40_000_000
"""Largest picture the static site decodes: the server's default cap (``emolens serve --max-pixels``)."""

LIVE_MAX_WIDTH = 640
"""Live frames are taken at most this wide, as the server page sends them."""

MANIFEST = "manifest.json"
STATIC_MARK = '<html lang="en">'
"""The page's opening tag; the export marks it ``data-emolens-site="static"`` (no server behind the page)."""


class WebError(ValueError):
    """What ``emolens web export`` cannot do, said in one line."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def browser_detectors() -> list[str]:
    """The detectors the browser module runs: the learned ones (CenterFace on onnxruntime-web); the Haar cascades
    are OpenCV code, which the page does not have."""
    return [name for name in available_detectors() if name.startswith("centerface")]


def _detector_entry(name: str, prefix: str) -> dict[str, Any]:
    det = create_detector(name, threads=1)
    if not isinstance(det, CenterFaceDetector):  # pragma: no cover - browser_detectors() names CenterFace only
        raise WebError(f"detector {name!r} does not run in the browser")
    path = centerface_path()
    return {
        "file": prefix + path.name, "bytes": path.stat().st_size, "sha256": sha256(path),
        "options": {"threshold": det.threshold, "nms": det.nms, "max_side": det.max_side,
                    "min_size_px": det.min_size_px, "retry_pads": list(det.retry_pads), "retry_side": det.retry_side},
    }


def _defaults(func: Any) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(func).parameters.items()
            if p.default is not inspect.Parameter.empty and isinstance(p.default, (int, float, bool))}


def check_detector(name: str) -> str:
    if name not in browser_detectors():
        raise WebError(f"detector {name!r} does not run in the browser; choose one of: {', '.join(browser_detectors())}"
                       + (" (the Haar detectors are OpenCV code)" if name in available_detectors() else ""))
    return name


def manifest(classifier: Classifier, *, detector: str = DEFAULT_DETECTOR, live_detector: str = FAST_DETECTOR,
             prefix: str = "", model_name: str | None = None, max_pixels: int = BROWSER_MAX_PIXELS) -> dict[str, Any]:
    """What the browser module loads and how it runs: the model (file, size, sha256, its metadata, also inside the
    file), each detector (file and settings), the detector for pictures and for live video, the crop and batch
    sizes, the video tracker's settings and the pixel cap. File names are relative to the manifest, after
    ``prefix``."""
    check_detector(detector)
    check_detector(live_detector)
    path = classifier.path
    tracking = _defaults(FrameTracker.__init__)  # detect_every, smoothing, hysteresis, hold, max_missed ...
    ious = _defaults(IoUTracker.__init__)  # what FrameTracker leaves at IoUTracker's defaults
    tracking.update(iou_threshold=ious["iou_threshold"], velocity=ious["velocity"], live_max_width=LIVE_MAX_WIDTH)
    return {
        "format": 1,
        "emolens_version": __version__,
        "model": {"name": model_name or classifier.meta.name or path.stem, "file": prefix + path.name,
                  "bytes": path.stat().st_size, "sha256": sha256(path),
                  "meta": json.loads(classifier.meta.to_json())},
        "detectors": {name: _detector_entry(name, prefix) for name in dict.fromkeys([detector, live_detector])},
        "detector": detector,
        "live_detector": live_detector,
        "align": DEFAULT_ALIGN,
        "max_batch": MAX_BATCH,
        "crop_max_side": DEFAULT_MAX_SIDE,
        "align_max_side": MAX_CROP_SIDE,
        "tracking": tracking,
        "limits": {"max_pixels": max_pixels},
    }


def manifest_files(m: dict[str, Any], classifier: Classifier) -> dict[str, Path]:
    """The files a manifest names (its names without the prefix) and where they are on disk."""
    files = {Path(m["model"]["file"]).name: classifier.path}
    for entry in m["detectors"].values():
        files[Path(entry["file"]).name] = centerface_path()
    return files


@dataclass
class SiteExport:
    """What :func:`export_site` wrote: the folder, its files (relative paths) and their bytes."""

    folder: Path
    files: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())


def _check_folder(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise WebError(f"{dest}: is a file, not a folder")
    if dest.is_dir():
        try:
            entries = sorted(p.name for p in dest.iterdir())
        except OSError as e:
            raise WebError(f"{dest}: cannot read the folder ({e.strerror or e})") from None
        if entries and not force:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise WebError(f"{dest}: the folder is not empty ({len(entries)} entries: {shown}); choose an empty or new "
                           "folder, or pass --force to write the site's files into it (files of the same names are "
                           "replaced, nothing else is touched)")


def export_site(dest: str | os.PathLike, *, model: str | os.PathLike | None = None, detector: str = DEFAULT_DETECTOR,
                force: bool = False) -> SiteExport:
    """Write a static site that runs emolens in the visitor's browser: the web page (upload, drop, paste, live
    webcam), the ES module, onnxruntime-web's WebAssembly files, the model, the detector, their licences and a
    manifest. Any static host serves it (GitHub Pages, a Hugging Face static Space, ``python -m http.server``);
    the page fetches nothing from another origin.

    Refuses a folder that is not empty unless ``force`` (then only the site's own files are replaced).

    Raises:
        WebError: the folder is unusable or the detector does not run in the browser.
        emolens.ModelError: the model cannot be loaded.
    """
    dest = Path(dest)
    check_detector(detector)
    _check_folder(dest, force)
    clf = Classifier(model, threads=1)
    name = str(model) if model is not None and str(model) in BUNDLED_MODELS else None
    m = manifest(clf, detector=detector, model_name=name)
    copies: dict[str, Path] = {"index.html": PAGE_DIR / "index.html"}
    for p in sorted(PAGE_DIR.iterdir()):
        if p.is_file() and p.name != "index.html":
            copies[f"static/{p.name}"] = p
    for p in sorted(JS_DIR.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            copies[f"web/{p.relative_to(JS_DIR).as_posix()}"] = p
    for fname, src in manifest_files(m, clf).items():
        copies[f"models/{fname}"] = src
    detectors = centerface_path().parent
    for extra in ("LICENSE-centerface.txt", "PROVENANCE.md"):
        if (detectors / extra).is_file():
            copies[f"models/{extra.replace('PROVENANCE', 'PROVENANCE-centerface')}"] = detectors / extra
    card = PACKAGE / "assets" / "MODEL_CARD.md"
    if name is not None or model is None:
        copies["models/MODEL_CARD.md"] = card
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    if STATIC_MARK not in page:  # pragma: no cover - guarded by the tests
        raise WebError(f"the web page has no {STATIC_MARK!r} to mark as static")
    texts = {
        "index.html": page.replace(STATIC_MARK, '<html lang="en" data-emolens-site="static">', 1),
        f"models/{MANIFEST}": json.dumps(m, indent=1) + "\n",
        "README.md": _site_readme(m),
        ".nojekyll": "",
    }
    out = SiteExport(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for rel, src in copies.items():
            if rel in texts:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            out.files[rel] = target.stat().st_size
        for rel, text in texts.items():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            out.files[rel] = target.stat().st_size
    except OSError as e:
        raise WebError(f"{dest}: cannot write the site ({e.strerror or e}{': ' + e.filename if e.filename else ''})"
                       ) from None
    return out


def _site_readme(m: dict[str, Any]) -> str:
    model = m["model"]
    return f"""# emolens in the browser

A static site written by `emolens web export` (emolens {m["emolens_version"]}): facial emotion recognition that runs
in the visitor's browser on onnxruntime-web (WebAssembly). No picture or webcam frame leaves the page, and the page
fetches nothing from another origin. Serve the folder from any static host, or try it with
`python -m http.server -d .` and open http://127.0.0.1:8000/ (browsers allow the webcam on https:// pages and
on localhost).

- `index.html`, `static/`: the page (upload, drop or paste a photo; live webcam)
- `web/emolens.mjs` and its modules: the ES module (emolens, MIT); `web/ort/`: onnxruntime-web (MIT, see
  `web/ort/LICENSE` and `web/ort/PROVENANCE.md`)
- `models/{Path(model["file"]).name}`: the emotion model `{model["name"]}` (emolens, MIT; `models/MODEL_CARD.md` where
  it is a bundled model), with its metadata inside and in `models/manifest.json`
- `models/centerface.onnx`: the CenterFace face detector (MIT, `models/LICENSE-centerface.txt`)
"""
