"""emolens: facial emotion recognition — find faces, classify their emotions.

    >>> from emolens import EmotionRecognizer
    >>> faces = EmotionRecognizer().predict("photo.jpg")   # doctest: +SKIP
    >>> [(f.label, round(f.score, 2), f.box.as_list()) for f in faces]  # doctest: +SKIP
    [('happy', 0.97, [640, 262, 314, 314])]

Inference needs only numpy, opencv-python-headless and onnxruntime; training lives in
``emolens.training`` behind the ``[train]`` extra.
"""

from .classify import Classifier, ModelError
from .detect import Box, create_detector
from .imageio import ImageError, load_image
from .recognizer import EmotionRecognizer
from .results import Face, ImageResult

__version__ = "0.1.0"

__all__ = [
    "Box",
    "Classifier",
    "EmotionRecognizer",
    "Face",
    "ImageError",
    "ImageResult",
    "ModelError",
    "__version__",
    "create_detector",
    "load_image",
]
