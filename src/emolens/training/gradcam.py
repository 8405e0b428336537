"""Grad-CAM (Selvaraju et al. 2017) on a PyTorch checkpoint: the ``[train]`` extra's explanation map.

The map is the ReLU of the last convolution's activations weighted by the mean gradient of the
explained class's logit over each channel, upsampled to the crop. The layer is found by itself
(the last ``nn.Conv2d`` the model runs, for every model in :mod:`emolens.training.zoo` and any
torchvision-style network) or given explicitly. Inputs are preprocessed exactly like inference
(:func:`emolens.classify.preprocess` with the checkpoint's metadata); with ``tta_hflip`` the map
of the mirrored crop is mirrored back and averaged in.

    from emolens.training.gradcam import GradCAM
    cam = GradCAM.from_checkpoint("runs/fer2013_vgg_s/best.pt")
    heat = cam.heatmap(crop, "happy")          # float32 H×W in [0, 1]
    explanations = EmotionRecognizer("runs/fer2013_vgg_s/model.onnx").explain("photo.jpg", method=cam)
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
from torch import nn

from ..classify import Classifier, preprocess
from ..explain.maps import check_label, normalise
from ..modelmeta import ModelMeta
from .export import load_checkpoint, meta_from_checkpoint, parity


def last_conv(model: nn.Module, channels: int = 1, size: int = 48) -> nn.Conv2d:
    """The last ``nn.Conv2d`` the model runs on a dummy input (in execution order, so a module
    registered after the head, or a conv used only in a side branch, does not fool it)."""
    order: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size))
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer: Grad-CAM needs a convolutional network")
    return order[-1]


class GradCAM:
    """Grad-CAM maps of ``model`` (logits out) whose inputs follow ``meta``.

    Args:
        model: a PyTorch classifier (put into eval mode; its weights are not changed).
        meta: input size, channels, normalisation, labels, ``tta_hflip``.
        layer: the convolution to explain (default: :func:`last_conv`).
    """

    name = "gradcam"

    def __init__(self, model: nn.Module, meta: ModelMeta, layer: nn.Module | None = None) -> None:
        self.model = model.eval().float()
        self.meta = meta
        self.layer = layer or last_conv(self.model, meta.channels, meta.input_size)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, tta_hflip: bool = False) -> GradCAM:
        """From a training run's ``best.pt`` / ``last.pt`` (or a run folder holding ``best.pt``)."""
        p = os.fspath(path)
        if os.path.isdir(p):
            p = os.path.join(p, "best.pt")
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: checkpoint not found")
        try:
            model, ck = load_checkpoint(p)
            meta = meta_from_checkpoint(ck, tta_hflip=tta_hflip)
        except Exception as e:  # torch.load of a foreign file: pickle, zip, key, runtime errors ...
            why = (str(e).splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{p}: not an emolens training checkpoint ({why})") from None
        return cls(model, meta)

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @classmethod
    def for_model(cls, path: str | os.PathLike, classifier: Classifier) -> GradCAM:
        """From the checkpoint ``classifier`` (an ONNX model) was exported from, checked to be that network
        (:meth:`check_matches`): ValueError, one line naming the checkpoint, when it is not."""
        cam = cls.from_checkpoint(path, tta_hflip=classifier.meta.tta_hflip)
        try:
            cam.check_matches(classifier)
        except ValueError as e:
            raise ValueError(f"--checkpoint {os.fspath(path)}: {e}; give the checkpoint --model was exported "
                             "from") from None
        return cam

    def check_matches(self, classifier: Classifier, tol: float | None = None) -> float:
        """Make sure this checkpoint is the network ``classifier`` (an ONNX model) was exported from,
        so that its Grad-CAM maps explain the probabilities the ONNX model reports.

        Both are run on the same inputs (a few smooth random images, seeded) and their probabilities
        compared (:func:`emolens.training.export.parity`, the check ``emolens export`` makes); ValueError
        when the labels or input format differ, or when the probabilities differ by more than ``tol``
        (default 1e-3, 0.05 for an int8-quantized ONNX model). Returns the largest difference found."""
        m, o = self.meta, classifier.meta
        if list(m.labels) != list(o.labels):
            raise ValueError(f"its labels ({', '.join(m.labels)}) are not the model's ({', '.join(o.labels)})")
        if (m.input_size, m.channels) != (o.input_size, o.channels):
            raise ValueError(f"it takes {m.input_size}×{m.input_size}×{m.channels} inputs, the model "
                             f"{o.input_size}×{o.input_size}×{o.channels}")
        if tol is None:
            tol = 0.05 if _quantized(classifier) else 1e-3
        rng = np.random.default_rng(0)
        crops = [np.full((o.input_size, o.input_size, 3), 128, np.uint8)]
        for _ in range(5):
            noise = rng.integers(0, 256, (o.input_size, o.input_size, 3)).astype(np.uint8)
            crops.append(cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 3)))
        diff = parity(self.model, classifier.path, np.stack(crops))
        if not diff <= tol:
            raise ValueError(f"it is not the network of this model: on the same inputs their probabilities "
                             f"differ by up to {diff:.3f} (more than {tol:g})")
        return diff

    def __call__(self, crop: np.ndarray, label: str | int) -> np.ndarray:
        """:meth:`heatmap`: a GradCAM is an explanation method for :meth:`EmotionRecognizer.explain`."""
        return self.heatmap(crop, label)

    def heatmap(self, crop: np.ndarray, label: str | int) -> np.ndarray:
        """Grad-CAM of ``label`` (name or index) for one gray or BGR uint8 face crop: float32 H×W in [0, 1]."""
        if isinstance(label, str):
            check_label(self.labels, label)
            label = self.labels.index(label)
        x = torch.from_numpy(preprocess([crop], self.meta))
        if self.meta.tta_hflip:
            x = torch.cat([x, x.flip(-1)])
        cams = self._cams(x, int(label))
        if self.meta.tta_hflip:
            cams = (cams[0] + cams[1][:, ::-1]) / 2
        else:
            cams = cams[0]
        h, w = crop.shape[:2]
        return normalise(cv2.resize(np.ascontiguousarray(cams, dtype=np.float32), (w, h),
                                    interpolation=cv2.INTER_LINEAR))

    def _cams(self, x: torch.Tensor, k: int) -> np.ndarray:
        store: dict[str, torch.Tensor] = {}

        def keep(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
            out.retain_grad()  # frozen (transfer) bases: the input requires grad, so this is in the graph
            store["a"] = out

        hook = self.layer.register_forward_hook(keep)
        try:
            x = x.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(x)
                logits[:, k].sum().backward()
        finally:
            hook.remove()
            self.model.zero_grad(set_to_none=True)
        a, g = store["a"].detach(), store["a"].grad
        weights = g.mean(dim=(2, 3), keepdim=True)
        return torch.relu((weights * a).sum(1)).numpy()


def _quantized(classifier: Classifier) -> bool:
    """Does the ONNX model run int8 operators (``emolens export --int8``)? Then it only approximates its
    checkpoint."""
    try:
        import onnx

        ops = {n.op_type for n in onnx.load(str(classifier.path), load_external_data=False).graph.node}
    except Exception:  # unreadable here (it loaded in onnxruntime): judge by its name only
        ops = set()
    return bool(ops & {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                       "MatMulInteger"}) or classifier.meta.name.endswith("int8")
