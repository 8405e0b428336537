"""The results road: what recognition returns (`faces.py`), and the ways it is shown: overlays (`draw.py`),
table, JSON and annotated files (`output.py`), HTML in Jupyter (`notebook.py`).

One direction only: ``faces`` ← ``draw`` ← ``output`` / ``notebook``; a result reaches the notebook's HTML
through an import inside its ``_repr_html_``, and nothing here imports the results back."""

from .faces import Face, Faces, ImageResult

__all__ = ["Face", "Faces", "ImageResult"]
