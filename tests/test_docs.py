"""The documentation site builds strictly, offline: a broken link or anchor, a page missing from the navigation,
or an API name that does not exist fails the build; every public name of ``emolens`` is in the API reference; the
README stays a front door (short, with the set-up commands .ci/run runs)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import emolens

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mkdocs_builds_strictly_offline(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = {"PATH": "/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path),
           # no network: a build that tried to fetch anything would fail here
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("EmotionRecognizer", "predict_files", "TrainConfig", "read_votes", "evaluate_model"):
        assert name in api, name
    assert "fonts.googleapis.com" not in (tmp_path / "site" / "index.html").read_text()


def test_every_public_name_is_in_the_api_reference():
    api = (ROOT / "docs" / "api.md").read_text()
    missing = [n for n in emolens.__all__ if n != "__version__" and f"::: emolens.{n}\n" not in api]
    assert not missing and "emolens.__version__" in api, missing


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")]
    assert pages and not [p for p in pages if p not in nav]


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme, "the README's test command is what .ci/run runs"
    # every link into the repository resolves
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (ROOT / target).exists(), target

