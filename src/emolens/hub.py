"""Models on the Hugging Face Hub: ``hf://owner/name`` wherever a model is given, and ``emolens push``.

Needs the ``[hub]`` extra (``huggingface_hub``, no torch). A model is downloaded once into the usual Hugging
Face cache (``HF_HUB_CACHE``, ``HF_HOME``) and read from there afterwards, also offline (``HF_HUB_OFFLINE=1``).

    EmotionRecognizer("hf://owner/name")            # the repo's one .onnx model (or its model.onnx)
    EmotionRecognizer("hf://owner/name/happy.onnx")  # a file of a repo with several
    EmotionRecognizer("hf://owner/name@v1.0")        # a branch, tag or commit

Uploading a model is :mod:`emolens.push` (``emolens push``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

PREFIX = "hf://"
_SPEC = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+?)(?:@(?P<rev>[\w./-]+?))?(?:/(?P<file>[\w./-]+\.onnx))?/?$")


class HubError(ValueError):
    """A Hub model that cannot be had: a malformed name, no network and not cached, no such repo or file."""


def is_hub(model: Any) -> bool:
    """Whether a model argument names a Hub model (``hf://...``)."""
    return isinstance(model, str | os.PathLike) and str(model).startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None, str | None]:
    """``hf://owner/name[@revision][/file.onnx]`` -> (repo id, revision, file)."""
    m = _SPEC.match(spec)
    if not m:
        raise HubError(f"{spec}: not a Hub model name; write hf://owner/name, hf://owner/name@revision or "
                       "hf://owner/name/file.onnx")
    return m.group("repo"), m.group("rev"), m.group("file")


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("models from the Hugging Face Hub need the hub extra: pip install 'emolens[hub]'") from None
    return huggingface_hub


def download(spec: str) -> Path:
    """The local path of the ONNX model ``spec`` names, downloading it (and its card) on first use."""
    repo, rev, file = parse(spec)
    hf = _hub()
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [file] if file else ["*.onnx"]
    try:
        folder = Path(hf.snapshot_download(repo, revision=rev, allow_patterns=[*patterns, "README.md"],
                                           library_name="emolens"))
    except LocalEntryNotFoundError:
        raise HubError(f"{spec}: not in the local Hugging Face cache, and the Hub cannot be reached (offline: "
                       "HF_HUB_OFFLINE is set, or no network); download it once while online") from None
    except HfHubHTTPError as e:
        raise HubError(f"{spec}: the Hub refused it ({str(e).splitlines()[0]})") from None
    except (OSError, ValueError) as e:
        raise HubError(f"{spec}: cannot be downloaded ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                       ) from None
    if file:
        path = folder / file
        if not path.is_file():
            raise HubError(f"{spec}: the repo has no {file} (in the copy cached here, when offline)")
        return path
    models = sorted(folder.rglob("*.onnx"))
    if not models:
        raise HubError(f"{spec}: the repo holds no .onnx model")
    if len(models) > 1:
        named = [p for p in models if p.name == "model.onnx"]
        if not named:
            names = ", ".join(str(p.relative_to(folder)) for p in models)
            raise HubError(f"{spec}: the repo holds several models ({names}); name one: {PREFIX}{repo}/FILE.onnx")
        return named[0]
    return models[0]
