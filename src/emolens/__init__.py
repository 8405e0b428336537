"""emolens: facial emotion recognition — find faces, classify their emotions.

    >>> from emolens import EmotionRecognizer
    >>> faces = EmotionRecognizer().predict("examples/obama.jpg")   # doctest: +SKIP
    >>> [(f.label, round(f.score, 2), f.box.as_list()) for f in faces]  # doctest: +SKIP
    [('happy', 0.9, [350, 96, 290, 290])]

(What the bundled model gives for the repository's example photo; scores differ for another model.)

Inference needs only numpy, opencv-python-headless and onnxruntime; training lives in
``emolens.training`` behind the ``[train]`` extra.
"""

import os as _os

# Before any submodule imports cv2: OpenCV reads its decode cap once, when it is loaded.  This makes it
# match emolens.imageio.DEFAULT_MAX_PIXELS, so images of formats whose header emolens does not parse are
# refused before their pixels are allocated too (a test checks the two numbers agree).
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "100000000")

from ._version import __version__  # noqa: E402
from .classify import Classifier, ModelError  # noqa: E402
from .face.detect import Box, create_detector  # noqa: E402
from .imageio import ImageError, load_image  # noqa: E402
from .recognizer import EmotionRecognizer  # noqa: E402
from .results.faces import Face, Faces, ImageResult  # noqa: E402

__all__ = [
    "Box",
    "Classifier",
    "EmotionRecognizer",
    "Face",
    "Faces",
    "ImageError",
    "ImageResult",
    "ModelError",
    "__version__",
    "create_detector",
    "load_image",
]
