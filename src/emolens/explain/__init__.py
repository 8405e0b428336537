"""Explanations: which parts of a face drove the model's emotion. `maps.py` makes the maps (occlusion, RISE) on
the ONNX model; `files.py` explains whole pictures into PNG files (:func:`explain_files`, what ``emolens
explain`` runs)."""

from .files import ExplainedPicture, ExplainError, Explaining, ExplainWriteError, explain_files
from .maps import Explanation, explain_faces

__all__ = ["ExplainError", "ExplainWriteError", "ExplainedPicture", "Explaining", "Explanation", "explain_faces",
           "explain_files"]
