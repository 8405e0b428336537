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
from .onnxrun import (
    DEFAULT_MODEL_MEMORY_MB,
    DEFAULT_MODEL_TIMEOUT,
    SECONDS_PER_CROP,
    DeadlineExceeded,
    env_limit,
    probe,
    run,
    session_options,
)

DEFAULT_MODEL = "emolens-distil-vgg-m-int8.onnx"
"""File name of the default model in ``emolens/assets``."""

BUNDLED_MODELS = {
    "default": DEFAULT_MODEL,
    "fast": "emolens-distil-vgg-xs-int8.onnx",
}
"""The models that ship in ``emolens/assets``, by the name that selects them (``--model fast``), chosen by the
rule in the model card: ``default`` (one distilled int8 vgg_m, two views) and ``fast`` (one distilled int8
vgg_xs, two views, about a sixth of the default's time, for video)."""

REMOVED_MODELS = {
    "accurate": "the bundled model 'accurate' was removed in emolens 0.2: 'default' now does better than it did on "
                "every set it was chosen by (FER+ and FER2013 val, real photos end to end); use 'default'",
}
"""Names of bundled models that are gone, and what to use instead (a one-line error, not "no such file")."""


MAX_BATCH = 32
"""Most crops in one model call (twice that with the mirror view). ONNX Runtime's memory arena keeps what its
largest batch needed for as long as the session lives: the 576 views of a photo of 144 faces in one call took a
process from 122 to 578 MB, and a second call to 943 MB; in calls of 32 crops it stays near 190 MB, as fast."""


class ModelError(ValueError):
    """A model file is missing, unreadable, or not an emolens model; or a model that fails when it runs."""


def _first_line(e: BaseException) -> str:
    """An exception's first line, cut to 300 characters (ONNX Runtime's messages run to several lines); an
    allocation refused by the memory cap of untrusted models said in words."""
    text = str(e)
    if "Available memory of" in text or "Failed to allocate memory" in text:
        return ("it asks for more memory than ONNX Runtime may give a model that is not trusted: "
                "EMOLENS_MODEL_MEMORY_MB sets the cap, --trust-model lifts it")
    return (text.strip().splitlines() or [type(e).__name__])[0][:300]


def default_model_path() -> Path:
    return bundled_model_path("default")


def is_bundled_name(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` names a bundled model, or one that was (:data:`REMOVED_MODELS`): such a name is never read
    as a file path."""
    return str(name) in BUNDLED_MODELS or str(name) in REMOVED_MODELS


def bundled_model_path(name: str) -> Path:
    """The file of a bundled model by its name in :data:`BUNDLED_MODELS`; :class:`ModelError` (one line, what to
    use instead) for a name in :data:`REMOVED_MODELS`."""
    if name in REMOVED_MODELS:
        raise ModelError(REMOVED_MODELS[name])
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


class Classifier:
    """An ONNX emotion model and its preprocessing.

    Args:
        model: path to an ``.onnx`` file exported by emolens; ``None`` or ``"default"`` = the default
            model; ``"fast"`` = the other bundled model (:data:`BUNDLED_MODELS`);
            ``"hf://owner/name"`` = a model on the Hugging Face Hub (:mod:`emolens.hub`, the ``[hub]`` extra).
        threads: intra-op threads for ONNX Runtime (``None`` = its default, all cores; at most
            :data:`emolens.onnxrun.MAX_THREADS`).
        trust: whether the model may run without limits. ``None`` (default): the bundled models are trusted,
            every other one (a file, a Hub model) is not: it gets ONNX Runtime's memory arena capped at
            ``EMOLENS_MODEL_MEMORY_MB`` (default: half the machine's memory, at most 8192), a deadline on every call
            of ``EMOLENS_MODEL_TIMEOUT`` seconds (default 30) plus one a crop, and a first call on a probe input
            under that deadline (:mod:`emolens.onnxrun`).

    The metadata is checked against its schema and the graph's input and output against the metadata when the
    model loads (:meth:`emolens.modelmeta.ModelMeta.validate`, :meth:`~emolens.modelmeta.ModelMeta.check_graph`):
    a model that does not fit is refused then, with a :class:`ModelError`, not found out on the first picture.

    >>> clf = Classifier()
    >>> clf.labels
    ['angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise']
    """

    def __init__(self, model: str | os.PathLike | None = None, *, threads: int | None = None, tta: bool = True,
                 trust: bool | None = None) -> None:
        import onnxruntime as ort

        name = "default" if model is None else str(model)
        if is_hub(name):  # a model on the Hugging Face Hub, from its local cache after the first use
            from .hub import HubError, download

            try:
                path = download(name)
            except HubError as e:
                raise ModelError(str(e)) from None
        else:
            path = bundled_model_path(name) if is_bundled_name(name) else Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: model file not found")
        self.path = path
        self.trusted = (model is None or name in BUNDLED_MODELS) if trust is None else bool(trust)
        try:
            self.timeout = None if self.trusted else env_limit("EMOLENS_MODEL_TIMEOUT", DEFAULT_MODEL_TIMEOUT)
            memory_mb = None if self.trusted else int(env_limit("EMOLENS_MODEL_MEMORY_MB", DEFAULT_MODEL_MEMORY_MB))
            opts = session_options(threads, memory_mb=memory_mb)
        except ValueError as e:
            raise ModelError(f"{path}: {e}") from None
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises several private exception types
            raise ModelError(f"{path}: cannot load as an ONNX model ({_first_line(e)})") from None
        custom = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise ModelError(
                f"{path}: not an emolens model (no '{META_KEY}' metadata); export it with `emolens export`"
            )
        try:
            self.meta = ModelMeta.from_json(custom[META_KEY])
            self.meta.check_graph([(i.shape, i.type) for i in self.session.get_inputs()],
                                  [(o.shape, o.type) for o in self.session.get_outputs()])
        except (ValueError, TypeError) as e:
            raise ModelError(f"{path}: invalid emolens model: {e}") from None
        if not tta:  # the fast variant: one view per face (the crop itself), whatever the model's metadata says
            self.meta.tta_hflip, self.meta.tta_scales = False, [1.0]
        self._input = self.session.get_inputs()[0].name
        if not self.trusted:
            self._probe()

    def _probe(self) -> None:
        """A first call on a blank batch of two, under the deadline: it must end and give two finite rows of one
        number per label (a model whose output size is free is checked here)."""
        m = self.meta
        x = np.zeros((2, m.channels, m.input_size, m.input_size), np.float32)
        try:
            out = probe(self.session, {self._input: x}, timeout=self.timeout or DEFAULT_MODEL_TIMEOUT,
                        what=f"{self.path}")
        except DeadlineExceeded as e:
            raise ModelError(f"{e}; if you trust this model, pass --trust-model (trust=True)") from None
        except Exception as e:
            raise ModelError(f"{self.path}: the model fails on a probe input ({_first_line(e)})") from None
        z = np.asarray(out[0])
        if z.shape != (2, len(m.labels)):
            raise ModelError(f"{self.path}: invalid emolens model: it gives {'×'.join(map(str, z.shape))} outputs for "
                             f"a batch of 2, not 2×{len(m.labels)} (one per label)")
        if not np.isfinite(z).all():
            raise ModelError(f"{self.path}: invalid emolens model: it gives NaN or infinite outputs on a probe input")

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    def preprocess(self, crops: list[np.ndarray]) -> np.ndarray:
        """BGR, or gray H×W / H×W×1, uint8 crops of any size -> float32 N×C×S×S network input."""
        return preprocess(crops, self.meta)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for an already preprocessed batch: N×labels, finite (else :class:`ModelError`).

        An untrusted model's call is stopped at its deadline (:class:`emolens.onnxrun.DeadlineExceeded`, also
        for the deadline of the work around it); a call that fails (an allocation over the memory cap ...)
        raises :class:`ModelError` with ONNX Runtime's first line."""
        timeout = None if self.timeout is None else self.timeout + SECONDS_PER_CROP * len(batch)
        try:
            z = run(self.session, {self._input: batch}, timeout=timeout, what=str(self.path))[0]
        except DeadlineExceeded:
            raise
        except Exception as e:
            raise ModelError(f"{self.path}: the model failed ({_first_line(e)})") from None
        z = np.asarray(z)
        if z.ndim != 2 or z.shape != (len(batch), len(self.meta.labels)) or not np.isfinite(z).all():
            what = "NaN or infinite outputs" if z.shape == (len(batch), len(self.meta.labels)) else \
                f"outputs of shape {'×'.join(map(str, z.shape))} for {len(batch)} crops"
            raise ModelError(f"{self.path}: the model gave {what}, not {len(self.meta.labels)} finite numbers a crop")
        return z

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
