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
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        d = json.loads(text)
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        meta = cls(**known)
        meta.validate()
        return meta

    def validate(self) -> None:
        if not self.labels or not all(isinstance(x, str) for x in self.labels):
            raise ValueError("model metadata: 'labels' must be a non-empty list of names")
        if self.channels not in (1, 3):
            raise ValueError(f"model metadata: 'channels' must be 1 or 3, not {self.channels}")
        if self.input_size < 8:
            raise ValueError(f"model metadata: 'input_size' {self.input_size} is too small")
        if not self.tta_scales or any(not 0.5 <= s <= 2.0 for s in self.tta_scales):
            raise ValueError(f"model metadata: 'tta_scales' must be a non-empty list in [0.5, 2]: {self.tta_scales}")
        t = self.landmark_template
        if t is not None and (len(t) != 5 or any(len(p) != 2 or not all(-1 <= float(v) <= 2 for v in p) for p in t)):
            raise ValueError("model metadata: 'landmark_template' must be 5 (x, y) points, fractions of the crop")
        b = self.logit_bias
        if b is not None and (not isinstance(b, list) or len(b) != len(self.labels)
                              or not all(isinstance(v, int | float) and math.isfinite(v) for v in b)):
            raise ValueError(f"model metadata: 'logit_bias' must be {len(self.labels)} finite numbers, one per label")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if isinstance(v, list) and len(v) == 1:
                setattr(self, name, v[0])
            elif isinstance(v, list) and len(v) != self.channels:
                raise ValueError(f"model metadata: '{name}' must be one number or {self.channels} (one per channel)")
        if min(self.std_array()) <= 0 or self.temperature <= 0:
            raise ValueError("model metadata: 'std' and 'temperature' must be positive")

    def mean_array(self) -> list[float]:
        """The mean per channel (a single value repeated)."""
        return list(self.mean) if isinstance(self.mean, list) else [float(self.mean)] * self.channels

    def std_array(self) -> list[float]:
        return list(self.std) if isinstance(self.std, list) else [float(self.std)] * self.channels

    def write_to(self, proto: Any) -> None:
        """Store into an ``onnx.ModelProto`` (replacing an earlier entry)."""
        self.validate()
        for i, p in enumerate(list(proto.metadata_props)):
            if p.key == META_KEY:
                del proto.metadata_props[i]
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, self.to_json()
