"""The metadata an emolens ONNX model carries, so that inference needs nothing else.

Stored as one JSON object under the key ``emolens`` in the ONNX ``metadata_props``.
Reading it needs only onnxruntime (``session.get_modelmeta().custom_metadata_map``);
writing it (at export) uses the ``onnx`` package.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

META_KEY = "emolens"
FORMAT_VERSION = 1
MAX_LABELS = 1000
MAX_NAME = 100  # characters of a label or a metric's name
MAX_TEXT = 200  # characters of the name, the architecture or a metric's text
MIN_INPUT, MAX_INPUT = 8, 1024  # the input's side in pixels
MAX_VIEWS = 8  # test-time scales
MAX_METRICS = 200


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_name(field: str, v: Any, longest: int, *, empty: bool = True) -> None:
    """A text field: a string of at most ``longest`` characters, printable (no control character: labels reach
    terminals, and an escape sequence in one could clear the screen or set its title)."""
    if not isinstance(v, str):
        raise ValueError(f"model metadata: '{field}' must be text, not {type(v).__name__}")
    if (not v and not empty) or len(v) > longest:
        raise ValueError(f"model metadata: '{field}' must be 1 to {longest} characters: {v[:longest]!r}")
    if v and not v.isprintable():
        raise ValueError(f"model metadata: '{field}' has a control or other non-printable character: {v[:longest]!r}")


@dataclass
class ModelMeta:
    labels: list[str]
    input_size: int = 48  # square side in pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB
    mean: float | list[float] = 0.5  # pixel/255 -> (x - mean) / std; one value, or one per channel (ImageNet)
    std: float | list[float] = 0.25
    architecture: str = ""
    temperature: float = 1.0  # softmax(logits / temperature + logit_bias)
    crop_margin: float = 0.0  # widen detector boxes by this fraction per side before classifying
    tta_hflip: bool = False  # average the probabilities of each crop and its mirror image
    tta_scales: list[float] = field(default_factory=lambda: [1.0])  # crop sizes (× the face box) to average
    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # where the training faces have their 5 landmarks, as fractions of the crop (x, y); None = FER2013's framing
    landmark_template: list[list[float]] | None = None
    # one number per label added to the logits after the temperature (calibration); None = no bias
    logit_bias: list[float] | None = None
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        """The metadata stored in a model, checked against the schema (:meth:`validate`): ValueError when it is
        not a JSON object, a field has the wrong type or an impossible value (NaN and infinity included).
        Fields this version does not know are ignored; a newer ``format`` is refused."""
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError) as e:
            raise ValueError(f"model metadata: not valid JSON ({str(e).splitlines()[0][:200]})") from None
        if not isinstance(d, dict):
            raise ValueError(f"model metadata: expected a JSON object of fields, got {type(d).__name__}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "labels" not in known:
            raise ValueError("model metadata: 'labels' is missing")
        meta = cls(**known)
        meta.validate()
        return meta

    def validate(self) -> None:
        """Check every field's type and range (the one schema of an emolens model's metadata); ValueError names
        the first field that is wrong. Lists of one number (``mean``, ``std``) become that number."""
        labels = self.labels
        if not isinstance(labels, (list, tuple)) or not labels:
            raise ValueError("model metadata: 'labels' must be a non-empty list of names")
        if len(labels) > MAX_LABELS:
            raise ValueError(f"model metadata: 'labels' has {len(labels)} names, over the limit of {MAX_LABELS}")
        for lab in labels:
            _check_name("labels", lab, MAX_NAME, empty=False)
        if len(set(labels)) != len(labels):
            raise ValueError("model metadata: 'labels' has the same name twice")
        self.labels = list(labels)
        if not _is_int(self.channels) or self.channels not in (1, 3):
            raise ValueError(f"model metadata: 'channels' must be 1 or 3, not {self.channels!r}")
        if not _is_int(self.input_size) or not MIN_INPUT <= self.input_size <= MAX_INPUT:
            raise ValueError(f"model metadata: 'input_size' must be a whole number of pixels from {MIN_INPUT} to "
                             f"{MAX_INPUT}, not {self.input_size!r}")
        for name in ("architecture", "name"):
            _check_name(name, getattr(self, name), MAX_TEXT)
        if not _is_number(self.temperature) or not 0 < self.temperature <= 1000:
            raise ValueError(f"model metadata: 'temperature' must be a positive number up to 1000, not "
                             f"{self.temperature!r}")
        if not _is_number(self.crop_margin) or not 0 <= self.crop_margin <= 1:
            raise ValueError(f"model metadata: 'crop_margin' must be a number from 0 to 1, not {self.crop_margin!r}")
        if not isinstance(self.tta_hflip, bool):
            raise ValueError(f"model metadata: 'tta_hflip' must be true or false, not {self.tta_hflip!r}")
        scales = self.tta_scales
        if (not isinstance(scales, (list, tuple)) or not 1 <= len(scales) <= MAX_VIEWS
                or any(not _is_number(v) or not 0.5 <= v <= 2.0 for v in scales)):
            raise ValueError(f"model metadata: 'tta_scales' must be 1 to {MAX_VIEWS} numbers in [0.5, 2]: {scales!r}")
        self.tta_scales = list(scales)
        t = self.landmark_template
        if t is not None and (not isinstance(t, (list, tuple)) or len(t) != 5 or any(
                not isinstance(p, (list, tuple)) or len(p) != 2 or not all(_is_number(v) and -1 <= v <= 2 for v in p)
                for p in t)):
            raise ValueError("model metadata: 'landmark_template' must be 5 (x, y) points, fractions of the crop")
        b = self.logit_bias
        if b is not None and (not isinstance(b, (list, tuple)) or len(b) != len(self.labels)
                              or not all(_is_number(v) and abs(v) <= 1e6 for v in b)):
            raise ValueError(f"model metadata: 'logit_bias' must be {len(self.labels)} finite numbers, one per label")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)) and len(v) == 1:
                v = v[0]
            if isinstance(v, (list, tuple)):
                if len(v) != self.channels or not all(_is_number(x) for x in v):
                    raise ValueError(f"model metadata: '{name}' must be one number or {self.channels} (one per "
                                     "channel), finite")
                v = list(v)
            elif not _is_number(v):
                raise ValueError(f"model metadata: '{name}' must be a finite number, not {v!r}")
            setattr(self, name, v)
        if min(self.std_array()) <= 0:
            raise ValueError("model metadata: 'std' must be positive")
        if not isinstance(self.metrics, dict) or len(self.metrics) > MAX_METRICS:
            raise ValueError(f"model metadata: 'metrics' must be an object of at most {MAX_METRICS} entries")
        for k, v in self.metrics.items():
            _check_name("metrics", k, MAX_NAME, empty=False)
            if isinstance(v, str):
                _check_name(f"metrics.{k}", v, MAX_TEXT)
            elif not (v is None or isinstance(v, bool) or _is_number(v)):
                raise ValueError(f"model metadata: 'metrics.{k}' must be a finite number, text, true/false or null")
        if not _is_int(self.format) or self.format < 1:
            raise ValueError(f"model metadata: 'format' must be a positive whole number, not {self.format!r}")
        if self.format > FORMAT_VERSION:
            raise ValueError(f"model metadata: format {self.format} is newer than this emolens reads "
                             f"({FORMAT_VERSION}); upgrade emolens")

    def check_graph(self, inputs: list[tuple[list, str]], outputs: list[tuple[list, str]]) -> None:
        """Check the graph's inputs and outputs, each ``(shape, type)`` as ONNX Runtime lists them (a dimension is a
        number, or a name when it is free), against this metadata: one float input N×C×S×S with C = ``channels``
        and S = ``input_size``, a first output N×K with K = the number of labels. Free dimensions are left to the
        first call (:class:`emolens.classify.Classifier` checks what it returns). ValueError says what differs."""
        if len(inputs) != 1:
            raise ValueError(f"the graph has {len(inputs)} inputs; an emolens model has one (a batch of face crops)")
        shape, kind = inputs[0]
        if kind != "tensor(float)":
            raise ValueError(f"the graph's input is {kind}, not tensor(float)")
        if len(shape) != 4:
            raise ValueError(f"the graph's input has {len(shape)} dimensions, not 4 (N×C×S×S)")
        for dim, want, what in zip(shape[1:], (self.channels, self.input_size, self.input_size),
                                   ("channels", "input_size", "input_size")):
            if isinstance(dim, int) and dim != want:
                raise ValueError(f"the graph's input is {'×'.join(map(str, shape))} but the metadata's '{what}' is "
                                 f"{want}")
        if not outputs:
            raise ValueError("the graph has no output")
        shape, kind = outputs[0]
        if kind != "tensor(float)" or len(shape) != 2:
            raise ValueError(f"the graph's output is a {kind} of {len(shape)} dimensions, not N×labels floats")
        if isinstance(shape[1], int) and shape[1] != len(self.labels):
            raise ValueError(f"the graph has {shape[1]} outputs but the metadata {len(self.labels)} labels")

    def mean_array(self) -> list[float]:
        """The mean per channel (a single value repeated)."""
        return list(self.mean) if isinstance(self.mean, list) else [float(self.mean)] * self.channels

    def std_array(self) -> list[float]:
        return list(self.std) if isinstance(self.std, list) else [float(self.std)] * self.channels

    def write_to(self, proto: Any) -> None:
        """Store into an ``onnx.ModelProto`` (replacing an earlier entry), checked as a model's metadata is when
        it loads."""
        self.validate()
        for i, p in enumerate(list(proto.metadata_props)):
            if p.key == META_KEY:
                del proto.metadata_props[i]
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, self.to_json()
