"""The Gradio demo, headless: launched on loopback, called with gradio_client as a Space's visitors' browsers
call it; the faces of a shared photo come back, and a bad upload gets a readable error, not a stack trace."""

from __future__ import annotations

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    from emolens.gradio_app import launch

    demo, url = launch("fast", port=None, threads=2, block=False)
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        demo.close()


def test_a_photo_comes_back_with_its_faces_chart_and_drawing(client, photos_dir):
    drawn, chart, faces, maps = client.predict(gradio_client.handle_file(str(photos_dir / "group_six.jpg")), False,
                                               api_name="/predict")
    assert len(faces) == 6 and all(f["label"] in f["scores"] for f in faces)
    assert drawn and maps == []
    rows = chart["value"]["data"] if isinstance(chart, dict) and "value" in chart else chart["data"]
    assert len(rows) == 6 * 7  # one bar per face and emotion


def test_the_explanation_maps_come_on_demand(client, photos_dir):
    _, _, faces, maps = client.predict(gradio_client.handle_file(str(photos_dir / "portrait_obama.jpg")), True,
                                       api_name="/predict")
    assert [f["label"] for f in faces] == ["happy"] and len(maps) == 1 and "face 1: happy" in str(maps[0])


def test_a_bad_upload_gets_a_readable_error(client, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    with pytest.raises(Exception) as err:
        client.predict(gradio_client.handle_file(str(bad)), False, api_name="/predict")
    message = str(err.value)
    assert "notes.jpg" in message and "Traceback" not in message and "/tmp/" not in message, message


def test_the_command_refuses_a_missing_model_in_one_line(tmp_path, capsys):
    from emolens.cli import main

    assert main(["gradio", "--model", str(tmp_path / "none.onnx")]) == 2
    err = capsys.readouterr().err
    assert "none.onnx" in err and "Traceback" not in err and err.count("\n") == 1
