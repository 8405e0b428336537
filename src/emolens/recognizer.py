"""detect -> crop -> classify: the recognising road in one object."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future

import numpy as np

from .classify import Classifier, ModelError
from .explain.maps import Explanation, Method, check_label, check_method, explain_faces
from .face.align import aligned_crop, check_mode
from .face.detect import DEFAULT_DETECTOR, Detector, create_detector
from .face.detect.base import Box
from .imageio import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SCANS,
    ImageError,
    ImageInput,
    describe,
    expand_inputs,
    load_image,
)
from .onnxrun import DeadlineExceeded
from .results.faces import Face, Faces, ImageResult
from .results.output import save_annotated

DEFAULT_ALIGN = "none"
"""How faces are cut by default (``--align``); chosen by measurement on the wild val set (README, Alignment)."""


class EmotionRecognizer:
    """Find faces and classify their emotions. Build it once and reuse it: the model loads once.

    Args:
        model: path to an emolens ``.onnx`` model, or ``None`` for the bundled FER2013 model.
        detector: a detector name (``"centerface"``, the default; ``emolens detectors`` lists them) or any
            object with ``detect(bgr) -> list[Box]``.
        align: how faces with landmarks are cut for the classifier: ``"none"`` (the square around the box),
            ``"level"`` (that square turned so the eyes are level) or ``"template"`` (landmarks moved onto
            the model's template); see :mod:`emolens.face.align` and the README for the measured choice.
        crop_margin: widen each face box by this fraction per side before classifying
            (``None`` = the value stored in the model).
        threads: ONNX Runtime threads (``None`` = all cores).
        tta: classify the test-time views stored in the model (default); ``False`` classifies each
            face once, as its plain crop: faster, slightly less accurate (see the model card).
        max_pixels: refuse larger images (decompression-bomb guard); video frames too.
        max_file_bytes: refuse larger image files, before reading them.
        max_scans: refuse JPEGs of more scans (each one more pass over the image), counted before decoding.
        trust_model: run ``model`` without limits (see :class:`emolens.classify.Classifier`'s ``trust``; by
            default only the bundled models are trusted).

    Example::

        from emolens import EmotionRecognizer
        rec = EmotionRecognizer()
        for face in rec.predict("photo.jpg"):
            print(face.box, face.label, f"{face.score:.0%}")
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        detector: str | Detector = DEFAULT_DETECTOR,
        align: str = DEFAULT_ALIGN,
        crop_margin: float | None = None,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        tta: bool = True,
        max_scans: int = DEFAULT_MAX_SCANS,
        trust_model: bool | None = None,
    ) -> None:
        for name, value in (("max_pixels", max_pixels), ("max_file_bytes", max_file_bytes), ("max_scans", max_scans)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
        self.classifier = Classifier(model, threads=threads, tta=tta, trust=trust_model)
        self.detector = create_detector(detector, threads=threads) if isinstance(detector, str) else detector
        self.crop_margin = self.classifier.meta.crop_margin if crop_margin is None else crop_margin
        self.align = check_mode(align)
        self.max_pixels = max_pixels
        self.max_file_bytes = max_file_bytes
        self.max_scans = max_scans

    def load(self, image: ImageInput) -> np.ndarray:
        """``image`` decoded as :func:`emolens.load_image` does, under this recogniser's limits."""
        return load_image(image, max_pixels=self.max_pixels, max_file_bytes=self.max_file_bytes,
                          max_scans=self.max_scans)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def predict(self, image: ImageInput, *, detect: bool = True) -> Faces:
        """Faces in ``image``, largest first.

        Args:
            image: a path, encoded bytes, a ``PIL.Image`` or a numpy array. Arrays must be
                in **BGR** channel order (as OpenCV gives them): H×W gray, H×W×3 BGR or
                H×W×4 BGRA; pass ``rgb[..., ::-1]`` for an RGB array.
            detect: ``False`` treats the whole image as one already-cropped face
                (FER2013-style crops).

        Raises:
            emolens.ImageError: the input cannot be read as an image.
        """
        bgr = self.load(image)
        return self.predict_bgr(bgr, detect=detect)

    def predict_bgr(self, bgr: np.ndarray, *, detect: bool = True) -> Faces:
        """Like :meth:`predict` for an already decoded uint8 BGR array (no copy, no checks)."""
        return self.classify_boxes(bgr, self.face_boxes(bgr, detect=detect))

    def face_boxes(self, bgr: np.ndarray, *, detect: bool = True) -> list[Box]:
        """The faces' boxes in a decoded image, largest first (``detect=False``: the whole image)."""
        h, w = bgr.shape[:2]
        return self.detector.detect(bgr) if detect else [Box(0, 0, w, h)]

    def explain(
        self, image: ImageInput, *, label: str | None = None, detect: bool = True, method: Method = "occlusion"
    ) -> list[Explanation]:
        """Explanation maps: per face (same order as :meth:`predict`), which regions drove the emotion.

        Args:
            image: anything :meth:`predict` accepts.
            label: the emotion to explain (default: each face's predicted one).
            detect: as in :meth:`predict`.
            method: ``occlusion`` (default) or ``rise`` (see :mod:`emolens.explain.maps`), or a callable
                ``(crop, label) -> map`` such as :class:`emolens.training.gradcam.GradCAM`.

        Raises:
            ValueError: ``label`` is not one of :attr:`labels`, or ``method`` is unknown.
            emolens.ImageError: the input cannot be read as an image.

        Example::

            ex = rec.explain("photo.jpg")[0]
            cv2.imwrite("why.png", ex.panel())   # crop | heat map | top-3 probabilities
        """
        check_label(self.labels, label)
        check_method(method)
        bgr = self.load(image)
        return self.explain_bgr(bgr, label=label, detect=detect, method=method)

    def explain_bgr(
        self, bgr: np.ndarray, *, label: str | None = None, detect: bool = True, method: Method = "occlusion",
        max_faces: int | None = None, faces: list[Face] | None = None, deadline: float | None = None,
    ) -> list[Explanation]:
        """Like :meth:`explain` for an already decoded uint8 BGR (or gray) array.

        ``max_faces``: explain only the largest this many faces; ``faces``: those already found in ``bgr``
        (by :meth:`predict_bgr`), not searched again; ``deadline`` (a :func:`time.monotonic` time): start no
        face after it (see :func:`emolens.explain.maps.explain_faces`)."""
        check_label(self.labels, label)
        if faces is None:
            boxes = self.face_boxes(bgr, detect=detect)[:max_faces]
            faces = self.classify_boxes(bgr, boxes)
        return explain_faces(self.classifier, bgr, faces, crop_margin=self.crop_margin, label=label, method=method,
                             align=self.align, max_faces=max_faces, deadline=deadline)

    def classify_boxes(self, bgr: np.ndarray, boxes: list[Box]) -> Faces:
        """Classify the given face boxes of an image (one batched model call).

        Each face is cut as :attr:`align` says (:func:`emolens.face.align.aligned_crop`); with
        ``tta_scales`` in the model's metadata, one view per scale is classified and the
        probabilities are averaged (the views use the real image around the face).
        """
        if not boxes:
            return Faces()
        crops = self.view_crops(bgr, boxes)
        probs = self.classifier.predict_proba(crops).reshape(len(boxes), len(crops) // len(boxes), -1).mean(axis=1)
        labels = self.classifier.labels
        faces = Faces()
        for box, p in zip(boxes, probs):
            k = int(np.argmax(p))
            faces.append(Face(box, labels[k], float(p[k]), {lab: float(v) for lab, v in zip(labels, p)}))
        return faces

    def view_crops(self, bgr: np.ndarray, boxes: list[Box]) -> list[np.ndarray]:
        """The crops classified for the given face boxes: per box, one square crop per ``tta_scales``
        entry of the model (box order first, then scale).

        Crops are at most :data:`emolens.face.crop.DEFAULT_MAX_SIDE` pixels a side: a huge face box, such as
        a long thin image taken whole with ``detect=False``, costs no more memory than a 1024-px face.
        Usual faces stay a view into ``bgr`` (no copy; shrinking every crop to a few times the model's
        input first cost 0.8 ms a view, more than the classifier's own resize of the full crop)."""
        meta = self.classifier.meta
        scales = meta.tta_scales or [1.0]
        base = 1.0 + 2.0 * self.crop_margin
        return [aligned_crop(bgr, b, base * s, mode=self.align, input_size=meta.input_size,
                             template=meta.landmark_template) for b in boxes for s in scales]

    def predict_files(
        self,
        inputs: list[str | os.PathLike],
        *,
        detect: bool = True,
        annotate_dir: str | os.PathLike | None = None,
        workers: int = 1,
        draw_landmarks: bool = True,
        recursive: bool = False,
    ) -> Iterator[ImageResult]:
        """Recognise faces in files and folders (folders: the images directly inside them; with ``recursive``,
        every image under them, sub-folders included).

        Yields one :class:`ImageResult` per file, in order, each as soon as it is done. A file that cannot
        be read yields a result with ``error`` set; the other files are still processed.
        With ``annotate_dir``, an annotated copy of each image is written there
        (never over an existing file; see :func:`emolens.results.output.save_annotated`), with landmark dots
        unless ``draw_landmarks`` is false; when it cannot be written, ``annotate_error`` says why and the
        faces are still there.

        ``workers`` > 1 works on that many pictures at once in threads (ONNX Runtime and OpenCV release
        the GIL); build the recogniser with ``threads=1`` then, so the threads do not fight over the cores.
        On 2 cores, 2 workers × 1 thread did 2.5× the pictures a second of 1 worker × 2 threads (README).
        """
        files = expand_inputs(list(inputs), recursive=recursive)
        workers = max(1, workers)
        # In worker threads, also with one worker: the caller's thread only waits, so Ctrl-C reaches it at once (a
        # thread inside a C decoder or ONNX Runtime cannot take it). They are daemon threads: on the way out (Ctrl-C,
        # the caller stops early) the pictures not started are dropped and a running one is not waited for, also
        # when the program exits.
        slots = threading.BoundedSemaphore(workers)
        stop = threading.Event()

        def start(path: str | os.PathLike) -> Future:
            future: Future = Future()

            def work() -> None:
                with slots:
                    if stop.is_set() or not future.set_running_or_notify_cancel():
                        return
                    try:
                        future.set_result(self._predict_file(path, detect, annotate_dir, draw_landmarks))
                    except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
                        future.set_exception(e)

            threading.Thread(target=work, name="emolens-picture", daemon=True).start()
            return future

        pending: deque[Future] = deque()
        try:
            for path in files:  # keep a few pictures in flight, hand results back in order
                pending.append(start(path))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            stop.set()
            for f in pending:
                f.cancel()

    def _predict_file(self, path: str | os.PathLike, detect: bool, annotate_dir: str | os.PathLike | None,
                      draw_landmarks: bool = True) -> ImageResult:
        name = describe(path)
        try:
            bgr = self.load(path)
            faces = self.predict_bgr(bgr, detect=detect)
        except (ImageError, ModelError, DeadlineExceeded) as e:  # this picture's error; the others go on
            return ImageResult(name, error=str(e) if isinstance(e, ImageError) else f"{name}: {e}")
        result = ImageResult(name, faces)
        if annotate_dir is not None:
            try:
                result.annotated = save_annotated(bgr, faces, path, annotate_dir, landmarks=draw_landmarks)
            except OSError as e:
                result.annotate_error = (f"{name}: cannot write the annotated image to {describe(annotate_dir)} "
                                         f"({e.strerror or e})")
        return result
