"""The package as PyPI would get it: `python -m build` makes the sdist and the wheel, `twine check` passes on both,
the wheel carries the models, the detector with its licence, the model card and the web files, and installed into a
fresh virtual environment (no network beyond the package index) it runs `emolens predict` on the sample photo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import emolens

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # the project's files as a clean clone has them (no virtual environment, no runs): what would be published
    src = tmp_path_factory.mktemp("src")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out


def test_sdist_and_wheel_build_and_pass_twine_check(dist):
    pytest.importorskip("twine")
    files = sorted(dist.iterdir())
    assert [f.name for f in files] == [f"emolens-{emolens.__version__}-py3-none-any.whl",
                                       f"emolens-{emolens.__version__}.tar.gz"]
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.count("PASSED") == 2, r.stdout + r.stderr


def test_the_wheel_carries_models_detector_licence_card_and_web_files(dist):
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "emolens" / "assets").rglob("*")
               if p.is_file()}
    assert shipped <= names, sorted(shipped - names)
    assert {"emolens/assets/MODEL_CARD.md", "emolens/assets/detectors/centerface.onnx",
            "emolens/assets/detectors/LICENSE-centerface.txt", "emolens/server/static/index.html"} <= names
    assert any(n.startswith("emolens/web/js/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert f"Version: {emolens.__version__}" in text and "License-Expression: MIT" in text


def test_the_wheel_installs_in_a_fresh_venv_and_predicts(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "elsewhere"  # not the repository: the installed package, not src/, must answer
    run.mkdir()
    r = subprocess.run([str(venv / "bin" / "emolens"), "predict", str(ROOT / "examples" / "obama.jpg"), "--json"],
                       cwd=run, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert '"label": "happy"' in r.stdout
    r = subprocess.run([str(venv / "bin" / "emolens"), "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == f"emolens {emolens.__version__}"
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True, timeout=60)
    assert r.returncode != 0  # inference installs no torch
