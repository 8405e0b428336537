"""``emolens push RUN_OR_MODEL --repo owner/name``: a model and its card onto the Hugging Face Hub.

The card (``README.md``) starts with a YAML header stating the library, task, tags, labels, architecture,
metrics and dataset, so the Hub lists the model and ``EmotionRecognizer("hf://owner/name")`` loads it back
(:mod:`emolens.hub`). Needs the ``[hub]`` extra.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .classify import BUNDLED_MODELS, Classifier, ModelError, bundled_model_path, is_bundled_name
from .hub import PREFIX, HubError, _hub, parse


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
    if is_bundled_name(source):
        try:
            return bundled_model_path(source), {}
        except ModelError as e:
            raise HubError(str(e)) from None
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
        raise HubError(f"{p}: no such model (give a run folder, an .onnx model or default/fast)")
    return p, {}


def stage(source: str, repo: str, folder: str | os.PathLike) -> Path:
    """Write what :func:`push` uploads into ``folder``: ``model.onnx`` and ``README.md`` (the model card)."""
    parse(PREFIX + repo)
    path, config = resolve_push_source(source)
    try:
        meta = Classifier(path).meta
    except ModelError as e:
        raise HubError(str(e)) from None
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
