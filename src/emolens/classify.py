"""Emotion classification of face crops with ONNX Runtime.

Everything model-specific (label list, input size, channels, normalisation,
softmax temperature) is read from the metadata inside the ``.onnx`` file
(:class:`emolens.modelmeta.ModelMeta`), so any model exported by ``emolens export``
works without code changes.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from .hub import is_hub
from .modelmeta import META_KEY, ModelMeta

DEFAULT_MODEL = "emolens-wild-ens3-int8.onnx"
"""File name of the default model in ``emolens/assets``."""

BUNDLED_MODELS = {
    "default": DEFAULT_MODEL,
    "fast": "emolens-wild-vgg-s-int8.onnx",
    "accurate": "emolens-ens5-int8.onnx",
}
"""The models that ship in ``emolens/assets``, by the name that selects them (``--model fast``), chosen by the
rule in the model card: ``default`` (three int8 nets, two views), ``fast`` (one int8 net, two views, about a
quarter of the default's time, for video) and ``accurate`` (five int8 nets, four views, about 3.6× the
default's time)."""


MAX_BATCH = 32
"""Most crops in one model call (twice that with the mirror view). ONNX Runtime's memory arena keeps what its
largest batch needed for as long as the session lives: the 576 views of a photo of 144 faces in one call took a
process from 122 to 578 MB, and a second call to 943 MB; in calls of 32 crops it stays near 190 MB, as fast."""


class ModelError(ValueError):
    """A model file is missing, unreadable, or not an emolens model."""


def default_model_path() -> Path:
    return bundled_model_path("default")


def bundled_model_path(name: str) -> Path:
    """The file of a bundled model by its name in :data:`BUNDLED_MODELS`."""
    return Path(str(resources.files("emolens") / "assets" / BUNDLED_MODELS[name]))


def preprocess(crops: list[np.ndarray], meta: ModelMeta) -> np.ndarray:
    """BGR, or gray H×W / H×W×1, uint8 crops of any size -> float32 N×C×S×S input of a model with ``meta``."""
    size = meta.input_size
    batch = np.empty((len(crops), meta.channels, size, size), dtype=np.float32)
    mean = np.asarray(meta.mean_array(), dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(meta.std_array(), dtype=np.float32).reshape(-1, 1, 1)
    for i, crop in enumerate(crops):
        if crop.ndim == 3 and crop.shape[2] == 1:
            crop = crop[:, :, 0]
        if crop.ndim == 2:
            img = crop if meta.channels == 1 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
        else:
            img = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY if meta.channels == 1 else cv2.COLOR_BGR2RGB)
        if img.shape[:2] != (size, size):
            interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
            img = cv2.resize(img, (size, size), interpolation=interp)
        img = img.reshape(size, size, meta.channels).transpose(2, 0, 1)
        batch[i] = (img.astype(np.float32) / 255.0 - mean) / std
    return batch


def session_options(threads: int | None = None):
    """ONNX Runtime options of every emolens session: ``threads`` intra-op threads (``None`` = all cores),
    one inter-op thread, warnings off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


class Classifier:
    """An ONNX emotion model and its preprocessing.

    Args:
        model: path to an ``.onnx`` file exported by emolens; ``None`` or ``"default"`` = the default
            model; ``"fast"`` and ``"accurate"`` = the other bundled models (:data:`BUNDLED_MODELS`);
            ``"hf://owner/name"`` = a model on the Hugging Face Hub (:mod:`emolens.hub`, the ``[hub]`` extra).
        threads: intra-op threads for ONNX Runtime (``None`` = its default, all cores).

    >>> clf = Classifier()
    >>> clf.labels
    ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']
    """

    def __init__(self, model: str | os.PathLike | None = None, *, threads: int | None = None, tta: bool = True) -> None:
        import onnxruntime as ort

        name = "default" if model is None else str(model)
        if is_hub(name):  # a model on the Hugging Face Hub, from its local cache after the first use
            from .hub import HubError, download

            try:
                path = download(name)
            except HubError as e:
                raise ModelError(str(e)) from None
        else:
            path = bundled_model_path(name) if name in BUNDLED_MODELS else Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        opts = session_options(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises several private exception types
            raise ModelError(f"{path}: cannot load as an ONNX model ({str(e).splitlines()[0]})") from None
        custom = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise ModelError(
                f"{path}: not an emolens model (no '{META_KEY}' metadata); export it with `emolens export`"
            )
        try:
            self.meta = ModelMeta.from_json(custom[META_KEY])
        except (ValueError, TypeError) as e:
            raise ModelError(f"{path}: invalid emolens metadata: {e}") from None
        if not tta:  # the fast variant: one view per face (the crop itself), whatever the model's metadata says
            self.meta.tta_hflip, self.meta.tta_scales = False, [1.0]
        self.path = path
        self._input = self.session.get_inputs()[0].name
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.meta.labels):
            raise ModelError(f"{path}: model has {n_out} outputs but {len(self.meta.labels)} labels")

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """BGR, or gray H×W / H×W×1, uint8 crops of any size -> float32 N×C×S×S network input."""
        return preprocess(crops, self.meta)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for an already preprocessed batch."""
        return self.session.run(None, {self._input: batch})[0]

    def predict_proba(self, crops: list[np.ndarray]) -> np.ndarray:
        """Class probabilities, N×len(labels), for a list of face crops.

        With ``tta_hflip`` in the model's metadata, each crop's probabilities are averaged with
        those of its mirror image (one batched call). At most :data:`MAX_BATCH` crops go into one model
        call: ONNX Runtime keeps the memory of its largest batch for the life of the session."""
        if not crops:
            return np.zeros((0, len(self.meta.labels)), dtype=np.float32)
        return np.concatenate([self.probabilities(self.preprocess(crops[i : i + MAX_BATCH]))
                               for i in range(0, len(crops), MAX_BATCH)])

    def view_logits(self, x: np.ndarray) -> np.ndarray:
        """Raw outputs per test-time view of an already preprocessed N×C×S×S batch: N×V×labels, V = 2
        (the image and its mirror) with ``tta_hflip`` in the metadata, else 1. One batched call."""
        n = len(x)
        if self.meta.tta_hflip:
            x = np.concatenate([x, x[..., ::-1]])
        z = self.logits(np.ascontiguousarray(x))
        return z.reshape(-1, n, z.shape[-1]).transpose(1, 0, 2)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for an already preprocessed N×C×S×S batch (with the model's mirror TTA
        and calibration): what :meth:`predict_proba` gives for the crops behind ``x``."""
        return softmax_views(self.view_logits(x), self.meta.temperature, self.meta.logit_bias)


def softmax_views(z: np.ndarray, temperature: float = 1.0, bias: np.ndarray | list[float] | None = None,
                  dtype: type = np.float32) -> np.ndarray:
    """N×V×K logits of V views -> N×K probabilities: softmax(z / temperature + bias) of each view, averaged
    (computed in float64, returned as ``dtype``)."""
    z = z.astype(np.float64) / temperature
    if bias is not None:
        z = z + np.asarray(bias, np.float64)
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return p.mean(axis=1).astype(dtype)
