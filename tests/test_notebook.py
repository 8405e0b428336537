"""Notebooks: results show themselves in Jupyter (HTML, no new dependency), and examples/quickstart.ipynb runs
from top to bottom in a real kernel, as a user would run it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from emolens import EmotionRecognizer, Faces, ImageResult

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rec() -> EmotionRecognizer:
    return EmotionRecognizer()


def test_faces_show_as_a_table_and_a_result_as_its_annotated_picture(rec, photos_dir):
    faces = rec.predict(photos_dir / "group_six.jpg")
    assert isinstance(faces, Faces) and isinstance(faces, list) and len(faces) == 6
    table = faces._repr_html_()
    assert table.startswith("<table") and table.count("<tr>") == 7  # a header and one row per face
    assert all(f.label in table for f in faces) and faces[0]._repr_html_().count("<tr>") == 2
    (result,) = rec.predict_files([photos_dir / "group_six.jpg"])
    page = result._repr_html_()
    assert '<img src="data:image/jpeg;base64,' in page and page.count("<tr>") == 7
    assert rec.predict(photos_dir / "aligned_crop_112.png", detect=False)._repr_html_().count("<tr>") == 2


def test_names_are_escaped_and_an_unreadable_picture_shows_its_error(tmp_path):
    bad = ImageResult("<script>alert(1)</script>.jpg", error="cannot read <this>")
    page = bad._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "cannot read &lt;this&gt;" in page
    gone = ImageResult(str(tmp_path / "deleted.jpg"))  # the file went away since: the table alone
    assert "<img" not in gone._repr_html_() and "no face found" in gone._repr_html_()
    assert Faces()._repr_html_() == "<p><i>no face found</i></p>"


@pytest.mark.slow
def test_the_quickstart_notebook_runs_from_top_to_bottom(fer_root):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("torch")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    before = sorted(p.name for p in (ROOT / "examples").iterdir())
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "examples")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o.data for o in outputs if o.output_type in ("execute_result", "display_data")]
    assert any("<img src=\"data:image/jpeg" in d.get("text/html", "") for d in shown)  # the annotated photo
    assert any("image/png" in d for d in shown)  # the video's timeline
    # the (accuracy, macro-F1) pair: "(0.95, 0.95)", or "(1.0, 1.0)" when every test face is right
    accuracy = next(ast.literal_eval(d["text/plain"]) for d in shown
                    if re.fullmatch(r"\((0\.\d+|1\.0), (0\.\d+|1\.0)\)", d.get("text/plain", "")))
    assert accuracy[0] >= 0.85  # the fine-tuned happy/sad model on its own test split
    assert sorted(p.name for p in (ROOT / "examples").iterdir()) == before  # it writes nothing beside itself
