"""Knowledge distillation: a trained emolens model teaches the one being trained.

The teacher is any emolens ``.onnx`` model: one exported net, its int8 copy, or an ensemble built
with ``emolens export A.onnx B.onnx --out ens.onnx``, so a model whose training run is gone can still
teach. It runs through ONNX Runtime on every augmented (and mixed) training batch, with its own
normalisation, softmax temperature and mirror view when its metadata asks for one; the student then
learns from its probabilities as well as from the labels (Hinton et al., 2015):

    loss = (1 - alpha) * cross_entropy(student, labels) + alpha * tau² * KL(teacher_tau || student_tau)

where ``x_tau`` is a softmax at temperature ``tau``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ..classify import Classifier, ModelError


class Teacher:
    """An emolens ONNX model that scores training batches.

    Args:
        path: the teacher's ``.onnx`` file.
        classes: the training data's class names; the teacher must have the same labels in the same order.
        input_size, channels: the student's input (the teacher must take the same).
        mean, std: the normalisation of the batches the training loop hands over.
        threads: ONNX Runtime intra-op threads (``None`` = all cores).

    Raises ValueError (a :class:`emolens.classify.ModelError` for a missing or unreadable file) with a
    one-line reason when the teacher cannot teach this student.
    """

    def __init__(self, path: str | os.PathLike, *, classes: list[str], input_size: int, channels: int,
                 mean: float | list[float], std: float | list[float], threads: int | None = None) -> None:
        try:
            self.clf = Classifier(path, threads=threads)
        except ModelError as e:
            raise ModelError(f"teacher {e}") from None
        meta = self.clf.meta
        if meta.labels != list(classes):
            raise ValueError(f"teacher {path}: its labels {meta.labels} are not the data's classes {list(classes)} "
                             "(the same names in the same order)")
        if (meta.input_size, meta.channels) != (input_size, channels):
            kind = {1: "gray", 3: "RGB"}
            raise ValueError(f"teacher {path}: takes {meta.input_size}x{meta.input_size} {kind[meta.channels]} faces, "
                             f"the student {input_size}x{input_size} {kind[channels]}; pick a teacher with the "
                             "student's input")
        # the loop's batch is (x - mean) / std; the teacher wants (x - mean_t) / std_t: one affine map per channel
        m, s = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)  # 1 or C values
        mt, st = np.asarray(meta.mean_array(), np.float32), np.asarray(meta.std_array(), np.float32)
        self.scale = (s / st).reshape(1, -1, 1, 1)
        self.shift = ((m - mt) / st).reshape(1, -1, 1, 1)
        self.path = str(path)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's class probabilities (N×K float32, on ``x``'s device) for a normalised N×C×S×S batch."""
        batch = x.detach().float().cpu().numpy() * self.scale + self.shift
        p = self.clf.probabilities(np.ascontiguousarray(batch, dtype=np.float32))
        return torch.from_numpy(p).to(x.device)

    def describe(self) -> str:
        meta = self.clf.meta
        name = meta.name or meta.architecture or "model"
        views = "with its mirror view" if meta.tta_hflip else "one view"
        return f"{self.path} ({name}, {views}, temperature {meta.temperature:g})"


def distillation_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, tau: float) -> torch.Tensor:
    """tau² · KL(teacher at temperature tau ‖ student at temperature tau), averaged over the batch.

    The teacher's probabilities are re-tempered as softmax(log p / tau); tau² keeps the gradient's size
    comparable to the cross-entropy's as tau changes. Zero exactly when the two distributions agree."""
    target = F.log_softmax(teacher_probs.float().clamp_min(1e-12).log() / tau, dim=-1)
    student = F.log_softmax(student_logits.float() / tau, dim=-1)
    return F.kl_div(student, target, reduction="batchmean", log_target=True) * tau * tau
