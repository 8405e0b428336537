"""The face road: find faces and their five landmarks (`detect/`), then cut each one as the model expects it
(`align.py`: landmarks onto the model's template, or eyes level; `crop.py`: square crops padded at the border)."""

from .detect import Box, create_detector

__all__ = ["Box", "create_detector"]
