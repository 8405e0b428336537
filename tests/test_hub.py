"""Models on the Hugging Face Hub (`hf://owner/name`) and `emolens push`. Tests cannot reach a hub: a model is
put into a local Hugging Face cache laid out as the client lays it out, and read offline (HF_HUB_OFFLINE=1) by
the same download code users run; `emolens push` writes through a stand-in for the client's upload that fills
that cache, so what was pushed is what loads back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

from emolens.classify import bundled_model_path  # noqa: E402
from emolens.hub import HubError, parse  # noqa: E402
from emolens.push import push  # noqa: E402


def _put_in_cache(cache: Path, repo: str, files: dict[str, Path | str], revision: str = "main") -> Path:
    """A snapshot of ``repo`` in a Hugging Face cache, as ``snapshot_download`` leaves it."""
    commit = hashlib.sha1(f"{repo}{sorted(files)}".encode()).hexdigest()
    base = cache / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, snap / name)
        else:
            (snap / name).write_text(content)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / revision).write_text(commit)
    return snap


def _offline(cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def _emolens(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emolens", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_cached_hub_model_predicts_offline(tmp_path, photos_dir):
    cache = tmp_path / "hub"
    _put_in_cache(cache, "someone/emotions", {"model.onnx": bundled_model_path("fast"), "README.md": "# card"})
    r = _emolens("predict", "--json", "--model", "hf://someone/emotions", str(photos_dir / "portrait_obama.jpg"),
                 env=_offline(cache))
    assert r.returncode == 0, r.stderr
    (item,) = json.loads(r.stdout)
    assert [f["label"] for f in item["faces"]] == ["happy"]
    code = ("from emolens import EmotionRecognizer; "
            "print(EmotionRecognizer('hf://someone/emotions').classifier.meta.name)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_offline(cache))
    assert r.returncode == 0 and r.stdout.strip() == "emolens-distil-vgg-xs-int8", r.stderr


def test_hub_names_and_what_cannot_be_had_get_one_clear_line(tmp_path, photos_dir):
    assert parse("hf://a/b") == ("a/b", None, None)
    assert parse("hf://a/b@v1.0/happy.onnx") == ("a/b", "v1.0", "happy.onnx")
    with pytest.raises(HubError, match="not a Hub model name"):
        parse("hf://just-a-name")
    cache = tmp_path / "hub"
    _put_in_cache(cache, "someone/two", {"a.onnx": bundled_model_path("fast"), "b.onnx": bundled_model_path("fast")})
    photo = str(photos_dir / "portrait_obama.jpg")
    for model, message in (("hf://someone/missing", "not in the local Hugging Face cache"),
                           ("hf://someone/two", "several models (a.onnx, b.onnx)"),
                           ("hf://someone/two/c.onnx", "the repo has no c.onnx"),
                           ("hf://nope", "not a Hub model name")):
        r = _emolens("predict", "--model", model, photo, env=_offline(cache))
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (model, r.stderr)
    r = _emolens("predict", "--json", "--model", "hf://someone/two/b.onnx", photo, env=_offline(cache))
    assert r.returncode == 0, r.stderr


class _StandInHub:
    """What push calls on huggingface_hub.HfApi, writing the upload into a local cache instead of the Hub."""

    def __init__(self, cache: Path):
        self.cache, self.created = cache, []

    def create_repo(self, repo_id, *, private=False, exist_ok=False):
        self.created.append((repo_id, private, exist_ok))

    def upload_folder(self, *, repo_id, folder_path, commit_message=None):
        files = {p.name: p for p in Path(folder_path).iterdir()}
        snap = _put_in_cache(self.cache, repo_id, files)
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/{snap.name}"})()


def test_push_uploads_model_and_card_and_it_loads_back(tmp_path, photos_dir):
    cache = tmp_path / "hub"
    api = _StandInHub(cache)
    url = push("fast", "me/emolens-fast", private=True, api=api)
    assert api.created == [("me/emolens-fast", True, True)] and "/commit/" in url
    (snap,) = (cache / "models--me--emolens-fast" / "snapshots").iterdir()
    assert sorted(p.name for p in snap.iterdir()) == ["README.md", "model.onnx"]
    card = (snap / "README.md").read_text()
    header = card.split("---")[1]
    assert "library_name: emolens" in header and "pipeline_tag: image-classification" in header
    assert '"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"' in header
    assert "val_accuracy:" in header and "- fer2013" in header and 'hf://me/emolens-fast' in card
    r = _emolens("predict", "--json", "--model", "hf://me/emolens-fast", str(photos_dir / "portrait_obama.jpg"),
                 env=_offline(cache))
    assert r.returncode == 0, r.stderr


def test_push_refuses_what_it_cannot_upload(tmp_path, capsys):
    from emolens.cli import main

    api = _StandInHub(tmp_path / "hub")
    with pytest.raises(HubError, match="no such model"):
        push(str(tmp_path / "none.onnx"), "me/x", api=api)
    with pytest.raises(HubError, match="not a Hub model name"):
        push("fast", "not-a-repo", api=api)
    assert api.created == []
    assert main(["push", str(tmp_path), "--repo", "me/x"]) == 2
    err = capsys.readouterr().err
    assert "without model.onnx" in err and "Traceback" not in err


def test_calibrating_a_hub_model_writes_into_the_working_folder_not_the_cache(tmp_path, fer_root):
    cache = tmp_path / "hub"
    snap = _put_in_cache(cache, "someone/emotions", {"model.onnx": bundled_model_path("fast")})
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-m", "emolens", "calibrate", "hf://someone/emotions", "--data", str(fer_root),
                        "--limit-per-class", "3"], capture_output=True, text=True, env=_offline(cache), cwd=work,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (work / "model.calibrated.onnx").is_file() and sorted(p.name for p in snap.iterdir()) == ["model.onnx"]
