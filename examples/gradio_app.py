"""The emolens Gradio demo as a Hugging Face Space's app.py (or run it here: python examples/gradio_app.py).

A Space needs two files: this one as app.py, and a requirements.txt with the line  emolens[gradio]
Set EMOLENS_MODEL to use another model (an .onnx in the Space, or hf://owner/name).
"""

import os

from emolens.gradio_app import build_demo

demo = build_demo(os.environ.get("EMOLENS_MODEL") or None)

if __name__ == "__main__":
    demo.launch()
