"""A Gradio demo on emolens' own API: ``emolens gradio`` (extra ``[gradio]``), or ``examples/gradio_app.py`` as a
Hugging Face Space's ``app.py``.

* **Photo**: upload, paste or take a webcam picture; the annotated picture, a confidence bar chart per face,
  the faces as JSON and, on demand, each face's explanation map (what moved the model).
* **Live webcam**: the camera stream, annotated frame by frame with the fast video detector.

The picture goes through emolens' own safe decoder, so a file that is not an image gets the same one-line
message as on the command line, shown in the page (never a stack trace).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import EmotionRecognizer, ImageError
from .face.detect import FAST_DETECTOR
from .results.draw import annotate

MAX_EXPLAINED = 4  # faces explained per picture: each takes about 0.7 s on one core


def _gradio():
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("emolens gradio needs the gradio extra: pip install 'emolens[gradio]'") from None
    return gr


def analyse(rec: EmotionRecognizer, path: str | None, explain: bool) -> tuple[np.ndarray, Any, list, list]:
    """The Photo tab: (annotated RGB picture, bar-chart rows, faces as dicts, explanation maps)."""
    gr = _gradio()
    import pandas as pd

    if not path:
        raise gr.Error("Give a photo first: upload one, paste one or take one with the webcam.")
    try:
        bgr = rec.load(path)
    except ImageError as e:  # the upload's temporary path is no use to the user: its file name is
        raise gr.Error(str(e).replace(str(path), os.path.basename(str(path)))) from None
    faces = rec.predict_bgr(bgr)
    rows = [{"face": f"face {i}", "emotion": label, "probability": round(p, 4)}
            for i, f in enumerate(faces, 1) for label, p in f.scores.items()]
    chart = pd.DataFrame(rows, columns=["face", "emotion", "probability"])
    maps = []
    if explain and faces:
        for i, ex in enumerate(rec.explain_bgr(bgr, faces=faces, max_faces=MAX_EXPLAINED), 1):
            maps.append((ex.panel()[..., ::-1], f"face {i}: {ex.label}"))
    return annotate(bgr, faces)[..., ::-1], chart, [f.to_dict() for f in faces], maps


def live(rec: EmotionRecognizer, frame: np.ndarray | None) -> np.ndarray | None:
    """The live tab: one webcam frame (RGB) -> the same frame with its faces drawn."""
    if frame is None:
        return None
    bgr = np.ascontiguousarray(frame[..., ::-1])
    return annotate(bgr, rec.predict_bgr(bgr))[..., ::-1]


def _picture_input(gr):
    """An image input that hands over the uploaded file's path without decoding it: emolens' own decoder reads
    it, so a bad file gets emolens' message (Gradio's own decoding would fail first, with a generic error)."""

    picture = gr.Image(sources=["upload", "clipboard", "webcam"], type="filepath", label="Photo")
    # on the instance, not by subclassing: a gr.Image subclass makes Gradio write a .pyi beside this module
    picture.preprocess = lambda payload: None if payload is None else payload.path
    return picture


def build_demo(model: str | None = None, *, threads: int | None = None, trust_model: bool | None = None):
    """The Gradio app (a ``gradio.Blocks``) for ``model`` (default: the bundled default model; ``trust_model``: see
    :class:`emolens.EmotionRecognizer`)."""
    gr = _gradio()
    rec = EmotionRecognizer(model, threads=threads, trust_model=trust_model)
    fast = EmotionRecognizer(model, detector=FAST_DETECTOR, threads=threads, trust_model=trust_model)
    name = rec.classifier.meta.name or "emolens"
    with gr.Blocks(title="emolens") as demo:
        gr.Markdown(f"# emolens\nFind every face and read its emotion. Model: `{name}` "
                    f"({', '.join(rec.labels)}).")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column():
                    photo = _picture_input(gr)
                    explain = gr.Checkbox(False, label=f"Explain: show what moved the model (up to "
                                                       f"{MAX_EXPLAINED} faces, about a second each)")
                    go = gr.Button("Recognise", variant="primary")
                with gr.Column():
                    drawn = gr.Image(type="numpy", label="Faces", interactive=False)
                    chart = gr.BarPlot(x="emotion", y="probability", color="face", label="Confidence per face",
                                       y_lim=[0, 1])
            maps = gr.Gallery(label="Explanations", columns=2, height="auto")
            found = gr.JSON(label="Faces (JSON)")
            go.click(lambda p, e: analyse(rec, p, e), [photo, explain], [drawn, chart, found, maps],
                     api_name="predict")
        with gr.Tab("Live webcam"):
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera")
                shown = gr.Image(type="numpy", label="Faces", interactive=False)
            cam.stream(lambda f: live(fast, f), cam, shown, api_name="live", stream_every=0.2)
    return demo


def launch(model: str | None = None, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           threads: int | None = None, block: bool = True, trust_model: bool | None = None):
    """Build and serve the demo; returns ``(demo, local URL)`` (``block=False``: in the background)."""
    demo = build_demo(model, threads=threads, trust_model=trust_model)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                            quiet=True, show_error=False)
    return demo, url
