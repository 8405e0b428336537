"""Models on the Hugging Face Hub: ``hf://owner/name`` wherever a model is given, and ``emolens push``.

Needs the ``[hub]`` extra (``huggingface_hub``, no torch). A model is downloaded once into the usual Hugging
Face cache (``HF_HUB_CACHE``, ``HF_HOME``) and read from there afterwards, also offline (``HF_HUB_OFFLINE=1``).

    EmotionRecognizer("hf://owner/name")            # the repo's one .onnx model (or its model.onnx)
    EmotionRecognizer("hf://owner/name/happy.onnx")  # a file of a repo with several
    EmotionRecognizer("hf://owner/name@v1.0")        # a branch, tag or commit

``emolens push RUN_OR_MODEL --repo owner/name`` uploads the model with a model card (``README.md``) whose YAML
header states the task, labels, metrics and dataset, so the Hub lists it and emolens can load it back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

PREFIX = "hf://"
_SPEC = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+?)(?:@(?P<rev>[\w./-]+?))?(?:/(?P<file>[\w./-]+\.onnx))?/?$")


class HubError(ValueError):
    """A Hub model that cannot be had: a malformed name, no network and not cached, no such repo or file."""


def is_hub(model: Any) -> bool:
    return isinstance(model, str) and model.startswith(PREFIX)


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


# ----------------------------------------------------------------------------- push
def model_card(meta: Any, repo: str, dataset: str | None = None) -> str:
    """A Hub model card for an emolens model: YAML header (library, task, tags, labels, metrics, dataset), then
    what it is and how to use it."""
    metrics = {k: v for k, v in (meta.metrics or {}).items() if isinstance(v, int | float)}
    header = ["---", "library_name: emolens", "pipeline_tag: image-classification",
              "tags:", "- emolens", "- onnx", "- facial-expression-recognition", "- emotion-recognition"]
    if dataset:
        header += ["datasets:", f"- {dataset}"]
    header += ["emolens:", f"  labels: {json.dumps(list(meta.labels))}",
               f"  architecture: {json.dumps(meta.architecture or 'unknown')}",
               f"  input: {json.dumps(f'{meta.input_size}x{meta.input_size}, {meta.channels} channel(s)')}"]
    if metrics:
        header.append("  metrics:")
        header += [f"    {k}: {v}" for k, v in sorted(metrics.items())]
    header.append("---")
    name = meta.name or repo.split("/")[-1]
    lines = [f"# {name}", "",
             f"An [emolens](https://pypi.org/project/emolens/) facial emotion model (ONNX): "
             f"{meta.architecture or 'unknown architecture'}, {meta.input_size}×{meta.input_size} "
             f"{'gray' if meta.channels == 1 else 'RGB'} face crops, labels {', '.join(meta.labels)}.", "",
             "```python", "from emolens import EmotionRecognizer", "",
             f'rec = EmotionRecognizer("hf://{repo}")  # pip install "emolens[hub]"',
             'for face in rec.predict("photo.jpg"):', "    print(face.label, face.score)", "```", "",
             f"Command line: `emolens predict --model hf://{repo} photo.jpg`."]
    if metrics:
        lines += ["", "| metric | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in sorted(metrics.items())]
    return "\n".join(header + [""] + lines) + "\n"


def resolve_push_source(source: str) -> tuple[Path, dict]:
    """The ``.onnx`` file of a run folder, model file or bundled name, and the run's config (or ``{}``)."""
    from .classify import BUNDLED_MODELS, bundled_model_path

    if source in BUNDLED_MODELS:
        return bundled_model_path(source), {}
    p = Path(source)
    if p.is_dir():
        if not (p / "model.onnx").is_file():
            raise HubError(f"{p}: a folder without model.onnx (give a run folder or an .onnx model)")
        config = {}
        if (p / "config.json").is_file():
            try:
                config = json.loads((p / "config.json").read_text())
            except (OSError, ValueError):
                config = {}
        return p / "model.onnx", config if isinstance(config, dict) else {}
    if not p.is_file():
        raise HubError(f"{p}: no such model (give a run folder, an .onnx model or default/fast/accurate)")
    return p, {}


def stage(source: str, repo: str, folder: str | os.PathLike) -> Path:
    """Write what :func:`push` uploads into ``folder``: ``model.onnx`` and ``README.md`` (the model card)."""
    from .classify import Classifier, ModelError

    parse(PREFIX + repo)
    path, config = resolve_push_source(source)
    try:
        meta = Classifier(path).meta
    except ModelError as e:
        raise HubError(str(e)) from None
    from .classify import BUNDLED_MODELS

    dataset = "fer2013" if source in BUNDLED_MODELS or "fer2013" in str(config.get("data") or "").lower() else None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, folder / "model.onnx")
    (folder / "README.md").write_text(model_card(meta, repo, dataset))
    return folder


def push(source: str, repo: str, *, private: bool = False, token: str | None = None, api: Any = None) -> str:
    """Upload a model with its card to the Hub repo ``owner/name`` (created if missing); returns the commit URL.
    ``api``: an object with ``create_repo`` and ``upload_folder`` as :class:`huggingface_hub.HfApi` has them."""
    if api is None:
        api = _hub().HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage(source, repo, tmp)
        try:
            api.create_repo(repo, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo, folder_path=str(folder),
                                     commit_message=f"emolens push: {Path(source).name or source}")
        except HubError:
            raise
        except Exception as e:  # network, authentication, permission: the client's own errors
            raise HubError(f"push to {repo}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return str(getattr(info, "commit_url", None) or info)
