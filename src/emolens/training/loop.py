"""The training loop, top to bottom: data -> augment -> model -> optimiser + schedule -> best on val.

A run folder holds everything needed to understand and repeat a run::

    config.json   the TrainConfig (``emolens train --config runs/x/config.json`` repeats it)
    history.csv   one row per epoch: losses, accuracies, macro F1, learning rate, seconds
    accuracy.png, loss.png   the curves of history.csv
    tb/           TensorBoard event files (``tensorboard --logdir runs``)
    train.log     what was printed, including skipped (unreadable) files
    last.pt       model + optimiser + schedule + early-stopping + random-generator states after the last finished
                  epoch (``--resume`` continues exactly as if the run had never stopped)
    best.pt       the weights with the best validation metric (``select``) so far
    model.onnx    the best weights exported with their metadata, ready for ``emolens predict``
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import ddp
from .augment import AugmentConfig, augment_batch
from .checkpoint import CheckpointError, read_checkpoint, rng_states, set_rng_states, write_checkpoint
from .data import MANIFEST_NAME, open_source
from .distill import Teacher, distillation_loss
from .finetune import load_source, resolve_init, source_weights
from .zoo import count_params, create_model, get_spec

OPTIMIZERS = ("adamw", "adam", "sgd")
CONFIG_VERSION = 2  # 2: freeze can apply to emolens' own nets (with --init); in 1 it meant transfer models only


def upgrade_config(d: dict) -> dict:
    """A run's saved config as this version reads it: configs of version 1 said ``freeze: true`` for every
    model, which did nothing to emolens' own nets; now it would freeze them, so it becomes false there."""
    if isinstance(d, dict) and d.get("config_version", 1) < 2 and d.get("model"):
        try:
            transfer = get_spec(d["model"]).transfer
        except ValueError:
            return d
        if not transfer:
            d = {**d, "freeze": False, "config_version": CONFIG_VERSION}
    return d
SCHEDULES = ("cosine", "onecycle", "step", "plateau", "constant")
SELECT = ("accuracy", "macro_f1", "loss", "last")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
# Options that fix what last.pt holds (architecture, trainable parameters, optimiser state, data): a resumed run
# must keep them; the others (epochs, lr, patience, device, precision ...) may change on --resume.
RESUME_FIXED = ("model", "data", "train_split", "val_split", "split_seed", "split_fractions", "limit_per_class",
                "val_limit_per_class", "mean", "std", "optimizer", "ema", "weights", "freeze", "unfreeze_last", "votes",
                "votes_mix")


SCRATCH = {"epochs": 30, "batch_size": 128, "lr": 2e-3}
"""A run from random weights: the defaults of epochs, batch size and learning rate."""
FINETUNE = {"epochs": 3, "batch_size": 32, "lr": 3e-4}
"""A run with ``init`` (fine-tuning another model): the same as configs/finetune_small.yaml, measured in
benchmarks/finetune.py; options set by the user win."""


@dataclass
class TrainConfig:
    data: str  # FER2013 CSV, <split>/<class>/* folders or flat <class>/* folders (see training.data)
    out: str = "runs/emolens"
    model: str | None = None  # None = vgg_s, or with --init the architecture of the model it starts from
    train_split: str | None = None  # None = the source's default (train)
    val_split: str | None = None  # None = the source's default (val, else test)
    split_seed: int = 0  # flat class folders / CSV without Usage: the seeded stratified split
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    # None: from scratch 30 epochs of 128 at 2e-3; with --init the fine-tuning recipe, FINETUNE (see __post_init__)
    epochs: int = None  # type: ignore[assignment]
    batch_size: int = None  # type: ignore[assignment]
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = None  # type: ignore[assignment]
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    schedule: str = "cosine"  # cosine (= onecycle: linear warm-up, cosine decay) | step | plateau | constant
    warmup: float = 0.1  # cosine: fraction of the steps spent warming the learning rate up
    step_size: int = 10  # step: multiply the learning rate by `gamma` every `step_size` epochs
    gamma: float = 0.1  # step and plateau: the factor
    plateau_patience: int = 3  # plateau: epochs without a better val loss before the rate drops
    label_smoothing: float = 0.1
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) (0 = off); with cutmix too, each batch uses one of the two
    cutmix: float = 0.0  # CutMix's Beta(alpha, alpha) (0 = off)
    teacher: str | None = None  # knowledge distillation: an emolens .onnx model (one net or an ensemble) that
    # scores every training batch; the student learns from its probabilities too (see training.distill)
    distill: float = 0.5  # with a teacher: the weight of the distillation term (1 - distill on the labels)
    distill_temperature: float = 2.0  # with a teacher: the softmax temperature both are compared at
    ema: float = 0.0  # keep an exponential moving average of the weights with this decay per step (0 = off,
    # e.g. 0.999); validation, best.pt and the export then use the averaged weights
    class_weights: str | None = None  # None | "balanced" (loss weights n / (k * n_class)) | "sqrt" (their square
    # root: a milder push toward rare classes, e.g. FER2013's disgust, that costs the common ones less)
    sampler: str = "shuffle"  # shuffle | balanced (draw every class equally often, with replacement)
    votes: str | None = None  # a votes CSV (file + a count per label, e.g. FER+'s ferplus.csv): train on the vote
    # distribution of each face instead of its folder's label alone (see training.votes); class weights then
    # count the soft targets
    votes_mix: float = 0.0  # with votes: the folder label's share of the target (0 = votes only, 0.5 = half each)
    patience: int = 0  # early stopping: stop after this many epochs without a better `select` metric (0 = off)
    select: str = "accuracy"  # the val metric that picks best.pt: accuracy | macro_f1 | loss | last (the last
    # epoch: fine-tuning for faces the val split does not hold, e.g. real photos, chosen outside the loop)
    mean: float | list[float] | None = None  # None = the model's default (0.5 gray; ImageNet's for transfer models)
    std: float | list[float] | None = None
    precision: str = "auto"  # auto | bf16 | fp16 | fp32 (autocast; auto: bf16 where the hardware has it, see amp_dtype)
    device: str = "auto"  # auto (cuda when torch sees a GPU, else cpu) | cpu | cuda
    threads: int = 0  # 0 = torch's default
    seed: int = 0
    limit_per_class: int | None = None  # quick runs on a subset
    val_limit_per_class: int | None = None  # None = limit_per_class; 0 = the whole val split (same val for all)
    # start from another model's weights (a new schedule: fine-tuning, warm restarts): a run folder, a .pt, an
    # emolens .onnx or default/fast; other labels than the source's get a new classifier (finetune.py)
    init: str | None = None
    weights: str | None = None  # transfer models: "imagenet" (download) or a local ImageNet state dict
    # freeze the pretrained part: a transfer model's base (None = yes), or the conv stages of emolens' own nets
    # started from --init (None = no)
    freeze: bool | None = None
    unfreeze_last: int | None = None  # ... except its last N blocks (None = the model's default; implies freeze)
    tensorboard: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    config_version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        """Fill the options left unset: a run that starts from another model's weights (``init``) fine-tunes with
        :data:`FINETUNE`'s gentle recipe (the from-scratch rate of 2e-3 undid what the source knew: 87.8% after 3
        epochs on happy/sad faces the source already told apart better), any other run with :data:`SCRATCH`'s."""
        for key, value in (FINETUNE if self.init else SCRATCH).items():
            if getattr(self, key) is None:
                setattr(self, key, value)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a config dict (JSON/YAML); unknown or badly typed keys raise ValueError naming the valid ones."""
        if not isinstance(d, dict):
            raise ValueError("a config must be a mapping of option names to values")
        d = dict(d)
        aug = d.pop("augment", None) or {}
        _check_keys(d, cls, "")
        _check_keys(aug, AugmentConfig, "augment.")
        cfg = cls(**d, augment=AugmentConfig(**aug))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("select", SELECT),
                              ("precision", PRECISIONS), ("sampler", ("shuffle", "balanced")), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.class_weights not in (None, "balanced", "sqrt"):
            raise ValueError(f"class_weights must be 'balanced', 'sqrt' or null, not {self.class_weights!r}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        for name in ("mixup", "cutmix"):
            if not (isinstance(getattr(self, name), int | float) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a Beta alpha >= 0 (0 = off), not {getattr(self, name)!r}")
        if not (isinstance(self.ema, int | float) and 0 <= self.ema < 1):
            raise ValueError(f"ema must be a decay in [0, 1) (0 = off, e.g. 0.999), not {self.ema!r}")
        if not (isinstance(self.distill, int | float) and 0 <= self.distill <= 1):
            raise ValueError(f"distill must be a weight in [0, 1] (the teacher's share), not {self.distill!r}")
        if not (isinstance(self.distill_temperature, int | float) and self.distill_temperature > 0):
            raise ValueError(f"distill_temperature must be a positive number, not {self.distill_temperature!r}")
        if self.votes is not None and not isinstance(self.votes, str):
            raise ValueError(f"votes must be the path of a votes CSV, not {self.votes!r}")
        if not (isinstance(self.votes_mix, int | float) and 0 <= self.votes_mix <= 1):
            raise ValueError(f"votes_mix must be in [0, 1] (the folder label's share of the target), "
                             f"not {self.votes_mix!r}")
        if self.teacher is not None and not isinstance(self.teacher, str):
            raise ValueError(f"teacher must be the path of an emolens .onnx model, not {self.teacher!r}")
        self.augment.validate()
        if self.model is not None:
            get_spec(self.model)  # unknown model -> ValueError listing the registry


def _check_keys(d: dict, cls: type, prefix: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls) if f.name != "augment"]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                         f"valid {prefix or 'top-level '}keys: {', '.join(valid)}")


class Logger:
    """Prints and appends to train.log; on a process other than rank 0 (``path`` None) says nothing."""

    def __init__(self, path: Path | None) -> None:
        self.file = path.open("a", encoding="utf-8") if path is not None else None

    def __call__(self, msg: str) -> None:
        if self.file is None:
            return
        print(msg, flush=True)
        self.file.write(msg + "\n")
        self.file.flush()


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cuda`` without one is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise ValueError(f"device cuda: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (oneDNN's AVX-512 / AMX kernels).

    Without them (an AVX2-only CPU, such as many AMD EPYC and desktop chips) bf16 autocast is emulated:
    measured on one (benchmarks/train_step.py), a vgg_s step took 15.1 s in bf16 against 1.36 s in fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without this probe: assume the slow case
        return False


SLOW_BF16 = ("this CPU has no native bf16 kernels (an AVX2-only x86, say): bf16 autocast runs about 10x slower "
             "than fp32 here; --precision auto or fp32 is faster")


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = fp32, no autocast).

    ``auto`` is bf16 where it is fast (a GPU that has it, a CPU with native bf16: :func:`cpu_has_bf16`),
    fp16 with loss scaling on an older GPU, and fp32 on a CPU without bf16."""
    if precision == "fp32":
        return None
    if device.type == "cpu":
        if precision == "fp16":  # CPU kernels emulate fp16: about 10x slower than bf16 there
            raise ValueError("precision fp16 needs a GPU (on the CPU it is about 10x slower than bf16); "
                             "use --precision auto, bf16 or fp32 on the CPU, or --device cuda")
        if precision == "auto" and not cpu_has_bf16():
            return None
        return torch.bfloat16
    if precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16  # fp16, or bf16 on a GPU without it: fp16 with a GradScaler


def to_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 N×H×W×C on the CPU -> float N×C×H×W in [0, 1] on ``device`` (normalised later, after augmentation).
    The batch travels as uint8 (4x less to copy), through pinned memory to a GPU, and is converted there."""
    x = torch.from_numpy(images)
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """(x - mean) / std per channel (a scalar mean/std applies to every channel), channels-last for speed."""
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def mix_batch(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mixup or CutMix (when configured; one of the two per batch if both are): returns the mixed batch,
    the permutation that paired each image with another, and the weight ``lam`` of the original labels."""
    kinds = [k for k in ("mixup", "cutmix") if getattr(cfg, k) > 0]
    perm = torch.arange(len(x))
    if not kinds:
        return x, perm, 1.0
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=gen))]
    alpha = getattr(cfg, kind)
    # Beta(a, a) from two Gammas, drawn with the run's generator so a resumed run repeats itself
    g1, g2 = torch._standard_gamma(torch.full((2,), float(alpha)), generator=gen).tolist()
    lam = g1 / (g1 + g2) if g1 + g2 > 0 else 1.0
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    if kind == "mixup":
        return x * lam + x[perm] * (1 - lam), perm, lam
    h, w = x.shape[2:]
    ch, cw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    return x, perm, 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the share of the image that is still the original


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, device: torch.device,
                   dtype: torch.dtype | None, batch: int = 512) -> torch.Tensor:
    """float32 logits on the CPU."""
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        with autocast(device, dtype):
            outs.append(model(normalise(to_input(images[i : i + batch], device), cfg)).float().cpu())
    return torch.cat(outs)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, sample_weight: torch.Tensor,
                       class_weight: torch.Tensor | None, label_smoothing: float, pair: torch.Tensor,
                       lam: float) -> torch.Tensor:
    """Cross-entropy against a distribution over the labels (the votes): ``-sum_c w_c t_c log p_c`` per face, with
    class weights ``w`` (None = 1), label smoothing and mixup/CutMix's mixed targets, averaged over the batch
    weighted by each face's ``sample_weight``."""
    if lam < 1:
        target = lam * target + (1 - lam) * target[pair]
        sample_weight = lam * sample_weight + (1 - lam) * sample_weight[pair]
    per_face = F.cross_entropy(logits.float(), target, weight=class_weight, label_smoothing=label_smoothing,
                               reduction="none")
    return (per_face * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)


def _vote_targets(cfg: TrainConfig, tr, va, log):
    """The votes CSV applied to the loaded splits: (training faces that are kept, their soft targets, their loss
    weights, the val faces' majority label or -1, or None when the CSV covers no val face)."""
    from .votes import read_votes

    votes = read_votes(cfg.votes, roots=[cfg.data])
    targets, weights, keep, stats = votes.targets(tr.files, tr.labels, tr.classes, mix=cfg.votes_mix)
    if not stats["rows"]:
        raise ValueError(f"votes {cfg.votes}: none of its {len(votes)} rows is a training image of {cfg.data} "
                         "(file paths are read relative to the CSV's folder, then to the data folder)")
    ignored = votes.ignored_columns(tr.classes)
    log(f"votes: {cfg.votes}, {stats['rows']} of {len(tr)} training faces have a row"
        + (f"; {stats['no_row']} without one train on their folder's label" if stats["no_row"] else "")
        + (f"; columns {ignored} are not labels: their votes are dropped" if ignored else "")
        + (f", and {stats['no_label_votes']} faces with no other votes are left out" if stats["no_label_votes"] else "")
        + f"; target = {1 - cfg.votes_mix:g} x votes + {cfg.votes_mix:g} x folder label"
        + ("; per-face weights from its weight column" if votes.has_weights else ""))
    if not keep.all():
        tr = dataclasses.replace(tr, images=tr.images[keep], labels=tr.labels[keep],
                                 files=[f for f, k in zip(tr.files, keep) if k])
        targets, weights = targets[keep], weights[keep]
    if not len(tr):
        raise ValueError(f"votes {cfg.votes}: no training face is left")
    val_votes, left = votes.majority(va.files, va.classes)
    if (val_votes >= 0).any():
        log(f"votes: val accuracy is also measured against the votes' majority on {(val_votes >= 0).sum()} of "
            f"{len(va)} val faces (left out: {', '.join(f'{k} {v}' for k, v in sorted(left.items())) or 'none'})")
    else:
        val_votes = None
    return tr, targets, weights, val_votes


def lr_at(step: int, total: int, epoch: int, cfg: TrainConfig) -> float:
    """The scheduled learning rate (before any reduce-on-plateau factor)."""
    if cfg.schedule in ("cosine", "onecycle"):
        warm = max(1, int(total * cfg.warmup))
        if step < warm:
            return cfg.lr * (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (epoch // cfg.step_size)
    return cfg.lr  # constant, plateau


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices/kernels only; frozen parameters are left out."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":  # Adam's weight decay is L2 in the gradient, as in Keras
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    spec = get_spec(cfg.model)
    if spec.transfer:
        kw: dict = {"weights": cfg.weights, "freeze": cfg.freeze is not False}
        if cfg.unfreeze_last is not None:
            kw["unfreeze_last"] = cfg.unfreeze_last
        return create_model(cfg.model, num_classes=num_classes, **kw)
    if cfg.weights:
        raise ValueError(f"weights (ImageNet) apply to transfer models only, not {cfg.model}")
    model = create_model(cfg.model, num_classes=num_classes)
    if cfg.freeze or cfg.unfreeze_last is not None:
        if not cfg.init:
            raise ValueError(f"freeze/unfreeze_last: {cfg.model} starts from random weights; freezing applies to "
                             "a model fine-tuned from --init")
        model.set_trainable(True, cfg.unfreeze_last or 0)
    return model


def train(cfg: TrainConfig, *, resume: bool = False, timeout: float | None = None) -> Path:
    """Train a model as configured and return the run folder (with ``model.onnx`` in it).

    A new run that fails before its first epoch is saved (unreadable data, a teacher that does not fit ...)
    leaves no run folder behind, so the same command can simply be run again once the cause is fixed.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this and they train as one (DDP, see
    training/ddp.py); ``timeout`` is the seconds a process waits for the others before the run fails."""
    out = Path(cfg.out)
    with ddp.process_group(resolve_device(cfg.device), timeout) as dist:
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"{out} is a file, not a run folder: pick another --out")
        existed = out.exists()
        fresh = not (existed and any(out.iterdir()))
        if not fresh and not resume:
            raise FileExistsError(f"{out} already holds a run: pick another --out, or pass --resume to continue it")
        dist.barrier()  # every process has looked at --out before rank 0 writes into it (a new last.pt waits for
        # the first epoch's collectives, which every process reaches only after reading the old one)
        try:
            return _train(cfg, resume=resume, dist=dist)
        except Exception:
            if dist.main and fresh and out.is_dir() and not (out / "last.pt").exists():
                shutil.rmtree(out, ignore_errors=True)
                if existed:  # the empty folder the user had made stays
                    out.mkdir(parents=True, exist_ok=True)
            raise


def _train(cfg: TrainConfig, *, resume: bool, dist: ddp.Dist) -> Path:
    out = Path(cfg.out)
    cfg.validate()
    init_src = None
    if cfg.init and not resume:  # the source decides the architecture and the normalisation
        init_src = resolve_init(cfg.init)
        if cfg.model is None:
            cfg.model = init_src.architecture
        elif cfg.model != init_src.architecture:
            raise ValueError(f"--init {cfg.init} is a {init_src.architecture}; it cannot start a {cfg.model} (leave "
                             f"--model out to fine-tune the {init_src.architecture})")
        if cfg.mean is None and cfg.std is None and init_src.mean is not None:
            cfg.mean, cfg.std = init_src.mean, init_src.std
    cfg.model = cfg.model or "vgg_s"
    spec = get_spec(cfg.model)
    if cfg.freeze is None:  # resolved here, so the written config states it
        cfg.freeze = spec.transfer
    if cfg.mean is None or cfg.std is None:  # resolved here, so the written config states them
        cfg.mean = list(spec.mean) if cfg.mean is None else cfg.mean
        cfg.std = list(spec.std) if cfg.std is None else cfg.std
    device = resolve_device(cfg.device)
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if dist.active and cfg.batch_size % dist.world:
        raise ValueError(f"batch_size {cfg.batch_size} is the batch of all {dist.world} processes together and must "
                         f"split evenly between them: give a multiple of {dist.world}")
    dtype = amp_dtype(cfg.precision, device)
    ck = _resume_checkpoint(out, cfg) if resume else None  # checked before anything in the run folder changes
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    log = Logger(out / "train.log" if dist.main else None)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    log(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", autocast {str(dtype).removeprefix('torch.') if dtype else 'off (fp32)'}"
        + (f" (precision {cfg.precision})" if cfg.precision == "auto" else ""))
    if device.type == "cpu" and cfg.precision == "bf16" and not cpu_has_bf16():
        log(f"note: {SLOW_BF16}")
    if dist.active:
        log(f"processes: {dist.world} ({dist.backend}), {cfg.batch_size // dist.world} images each a step "
            f"(batch {cfg.batch_size} in all), {torch.get_num_threads()} threads each")

    # --- data
    t0 = time.time()
    if resume and (out / MANIFEST_NAME).is_file():  # the split drawn when the run started
        source = open_source(out)
    else:
        source = open_source(cfg.data, split_seed=cfg.split_seed, fractions=cfg.split_fractions)
        if dist.main:
            source.write_manifest(out)
    train_split, val_split = cfg.train_split, cfg.val_split
    if not (train_split and val_split):
        default_train, default_val = source.default_splits()
        train_split, val_split = train_split or default_train, val_split or default_val
    tr = source.load(train_split, size=spec.input_size, channels=spec.channels,
                     limit_per_class=cfg.limit_per_class, log=log)
    val_limit = cfg.limit_per_class if cfg.val_limit_per_class is None else (cfg.val_limit_per_class or None)
    va = source.load(val_split, size=spec.input_size, channels=spec.channels,
                     classes=tr.classes, limit_per_class=val_limit, log=log)
    log(f"data: {source.kind} {cfg.data}, {len(tr)} {train_split} / {len(va)} {val_split} images, "
        f"classes {tr.classes}, decoded in {time.time() - t0:.1f}s")
    targets, sample_loss_weight, val_votes = None, None, None
    if cfg.votes:  # soft targets from the annotators' votes (training/votes.py)
        tr, targets, sample_loss_weight, val_votes = _vote_targets(cfg, tr, va, log)

    # --- model, loss and optimiser
    model = build_model(cfg, len(tr.classes)).to(device, memory_format=torch.channels_last)
    log(f"model: {cfg.model}, {count_params(model):,} parameters ({count_params(model, trainable=True):,} trainable)")
    if spec.transfer and not cfg.weights:
        log("note: no --weights given, so the base starts from random weights, not ImageNet")
    if init_src is not None:
        state, source_labels = source_weights(init_src, tr.images)
        log(load_source(model, state, source_labels, tr.classes, cfg.init))
    teacher = None
    if cfg.teacher:
        teacher = Teacher(cfg.teacher, classes=tr.classes, input_size=spec.input_size, channels=spec.channels,
                          mean=cfg.mean, std=cfg.std, threads=cfg.threads or None)
        log(f"teacher: {teacher.describe()}; loss = {1 - cfg.distill:g} x cross-entropy + {cfg.distill:g} x "
            f"distillation at temperature {cfg.distill_temperature:g}")
    counts = np.bincount(tr.labels, minlength=len(tr.classes))
    # with votes, how often each class is the target counts the soft targets (a face 7/10 anger adds 0.7 to anger)
    target_counts = counts if targets is None else targets.sum(0)
    loss_weight = None
    if cfg.class_weights:  # balanced: as sklearn's compute_class_weight("balanced"); sqrt: its square root
        balanced = len(tr) / (len(counts) * np.maximum(target_counts, 1))
        loss_weight = torch.tensor(np.sqrt(balanced) if cfg.class_weights == "sqrt" else balanced, dtype=torch.float32)
        log("class weights: " + ", ".join(f"{c} {w:.2f}" for c, w in zip(tr.classes, loss_weight.tolist())))
        loss_weight = loss_weight.to(device)
    opt = make_optimizer(model, cfg)
    ema = _ema_model(model, cfg.ema, device) if cfg.ema else None
    judged = model if ema is None else ema.module  # the weights that are validated, kept and exported
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)  # fp16 (GPU only) needs loss scaling
    net = model  # what the batches go through: the model, or its DDP wrapper that averages the gradients
    batch_size = cfg.batch_size // dist.world  # this process's share of every step's batch
    per_process = len(tr) // dist.world  # every process as many images (DistributedSampler's drop_last)
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    steps_per_epoch = math.ceil(per_process / batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    state = {"epoch": -1, "step": 0, "best": None, "bad_epochs": 0, "lr_factor": 1.0, "best_val_loss": math.inf}
    gen = torch.Generator().manual_seed(cfg.seed)  # on the CPU: batch order, augmentation and mixing, any device
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, ValueError) as e:  # shapes or parameter groups that the option checks did not catch
            why = str(e).splitlines()[0]
            raise ValueError(f"--resume: {out / 'last.pt'} does not fit this model ({why})") from None
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        if "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        set_rng_states(ck.get("rng") or {"generator": ck["generator"]}, gen, device)
        state.update(ck["state"])
        if dist.main:
            _truncate_history(out / "history.csv", state["epoch"] + 1)  # drop rows of an epoch that never saved
        best_record = state.get("best_record")
        if (dist.main and best_record and best_record["epoch"] == state["epoch"]
                and _saved_epoch(out / "best.pt") != state["epoch"]):
            # killed after last.pt and before best.pt: that epoch's weights are the best ones
            _save_best(out / "best.pt", judged, cfg, tr.classes, best_record)
        log(f"resumed after epoch {state['epoch'] + 1} (best val {cfg.select} so far {state['best']})")

    history_path = out / "history.csv"
    fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_macro_f1", "lr", "seconds"]
    if val_votes is not None:
        fields.insert(-2, "val_votes_acc")
    if dist.main and not history_path.exists():
        with history_path.open("w", newline="") as f:
            csv.writer(f).writerow(fields)
    tb = _tensorboard(out / "tb") if cfg.tensorboard and dist.main else None
    sample_weight = torch.from_numpy(1.0 / np.maximum(counts, 1)[tr.labels]) if cfg.sampler == "balanced" else None

    # --- the loop
    for epoch in range(state["epoch"] + 1, cfg.epochs):
        net.train()
        t0 = time.time()
        if dist.active:  # this process's share of the epoch, and its own augmentation and dropout draws
            perm = ddp.epoch_order(len(tr), epoch, cfg.seed, dist, sample_weight)
            ddp.seed_epoch(gen, cfg.seed, epoch, dist)
        elif sample_weight is not None:
            perm = torch.multinomial(sample_weight, len(tr), replacement=True, generator=gen).numpy()
        else:
            perm = torch.randperm(len(tr), generator=gen).numpy()
        loss_sum, correct, seen = 0.0, 0, 0
        progress = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", show=dist.main)
        for b in range(steps_per_epoch):
            idx = perm[b * batch_size : (b + 1) * batch_size]
            x, pair, lam = mix_batch(augment_batch(to_input(tr.images[idx], device), cfg.augment, gen), cfg, gen)
            x = normalise(x, cfg)
            y = torch.from_numpy(tr.labels[idx]).to(device, non_blocking=True)
            soft = teacher.probabilities(x) if teacher is not None else None
            lr = lr_at(state["step"], total_steps, epoch, cfg) * state["lr_factor"]
            for g in opt.param_groups:
                g["lr"] = lr
            with autocast(device, dtype):
                logits = net(x)
                if targets is None:
                    ce = dict(weight=loss_weight, label_smoothing=cfg.label_smoothing)
                    loss = F.cross_entropy(logits.float(), y, **ce)
                    if lam < 1:
                        loss = lam * loss + (1 - lam) * F.cross_entropy(logits.float(), y[pair], **ce)
                else:
                    t = torch.from_numpy(targets[idx]).to(device)
                    w = torch.from_numpy(sample_loss_weight[idx]).to(device)
                    loss = soft_cross_entropy(logits, t, w, loss_weight, cfg.label_smoothing, pair, lam)
                if soft is not None:
                    kd = distillation_loss(logits, soft, cfg.distill_temperature)
                    loss = (1 - cfg.distill) * loss + cfg.distill * kd
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(model)
            state["step"] += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        progress.close()
        loss_sum, correct, seen = dist.sum(loss_sum, correct, seen)  # over every process's share

        # --- validation, bookkeeping
        dist.broadcast_buffers(judged)  # rank 0's BatchNorm statistics: every process judges the same weights
        val_logits = dist.gather_rows(lambda part: predict_logits(judged, part, cfg, device, dtype), va.images)
        yv = torch.from_numpy(va.labels)
        val_loss = F.cross_entropy(val_logits, yv).item()
        pred = val_logits.argmax(1).numpy()
        val_acc = float((pred == va.labels).mean())
        val_f1 = _macro_f1(va.labels, pred, len(tr.classes))
        row = [epoch + 1, loss_sum / seen, correct / seen, val_loss, val_acc, val_f1, lr, time.time() - t0]
        votes_note = ""
        if val_votes is not None:  # the majority of the votes, on the val faces that have one
            scored = val_votes >= 0
            val_votes_acc = float((pred[scored] == val_votes[scored]).mean())
            row.insert(-2, val_votes_acc)
            votes_note = f" votes-majority acc {val_votes_acc:.4f}"
        if dist.main:
            with history_path.open("a", newline="") as f:
                csv.writer(f).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
            if tb is not None:
                for name, value in zip(fields[1:-1], row[1:-1]):
                    tb.add_scalar(name.replace("_", "/", 1), value, epoch + 1)
                tb.flush()
            _plot_history(history_path, out)

        score = {"accuracy": val_acc, "macro_f1": val_f1, "loss": -val_loss, "last": epoch}[cfg.select]
        improved = state["best"] is None or score > state["best"]
        if improved:
            state["best"], state["bad_epochs"] = score, 0
            state["best_record"] = dict(epoch=epoch, val_acc=val_acc, val_macro_f1=val_f1, val_loss=val_loss)
        else:
            state["bad_epochs"] += 1
        if cfg.schedule == "plateau":
            if val_loss < state["best_val_loss"]:
                state["best_val_loss"], state["plateau_epochs"] = val_loss, 0
            else:
                state["plateau_epochs"] = state.get("plateau_epochs", 0) + 1
                if state["plateau_epochs"] >= cfg.plateau_patience:
                    state["lr_factor"] *= cfg.gamma
                    state["plateau_epochs"] = 0
                    log(f"val loss has not improved for {cfg.plateau_patience} epochs: learning rate x{cfg.gamma}")
        state["epoch"] = epoch
        # last.pt first: once it says this epoch is done, the epoch is never re-run (a kill before best.pt is
        # written is repaired on --resume from last.pt's weights); every generator's state, so a resumed run
        # draws the same batches, augmentations and dropout masks as an uninterrupted one
        extra = {} if ema is None else {"ema": ema.state_dict()}
        if dist.main:  # the unwrapped model's weights: they resume on any number of processes
            _save(out / "last.pt", model=model.state_dict(), optimizer=opt.state_dict(), scaler=scaler.state_dict(),
                  rng=rng_states(gen, device), state=state, config=asdict(cfg), classes=tr.classes, **extra)
            if improved:
                _save_best(out / "best.pt", judged, cfg, tr.classes, state["best_record"])
        log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row[1]:.4f} acc {row[2]:.4f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.4f} macro-F1 {val_f1:.4f}{votes_note}"
            f"{' *' if improved else ''} | "
            f"{row[-1]:.0f}s")
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            log(f"early stop: no better val {cfg.select} in {cfg.patience} epochs")
            break
    if tb is not None:
        tb.close()
    if not dist.main:
        dist.barrier()  # wait for rank 0's export, so that every process returns a finished run
        return out

    from .export import export_checkpoint

    onnx_path = export_checkpoint(out / "best.pt", out / "model.onnx")
    best = read_checkpoint(out / "best.pt")
    log(f"best val acc {best['val_acc']:.4f} (macro-F1 {best['val_macro_f1']:.4f}, epoch {best['epoch'] + 1}, "
        f"selected on {cfg.select}); exported {onnx_path}")
    dist.barrier()
    return out


def _resume_checkpoint(out: Path, cfg: TrainConfig) -> dict | None:
    """last.pt of the run in ``out`` (None: nothing to resume, the run starts afresh), after checking that
    ``cfg`` keeps every option the checkpoint depends on (RESUME_FIXED); ValueError names the first that changed."""
    path = out / "last.pt"
    if not path.exists():
        return None
    try:
        ck = read_checkpoint(path)
        saved = upgrade_config(ck["config"])
    except CheckpointError as e:
        raise ValueError(f"--resume: {e}") from None
    except (KeyError, TypeError) as e:
        raise ValueError(f"--resume: {path} is not a readable emolens checkpoint (no {e})") from None
    new = asdict(cfg)
    for key in RESUME_FIXED:
        old, now = saved.get(key), new[key]
        if key == "data" and old and now and Path(old).resolve() == Path(now).resolve():
            continue
        if old != now:
            raise ValueError(f"--resume: {out} was trained with {key} {old!r}, not {now!r}; {key} cannot change "
                             f"on resume (start a new run with another --out, or --init {path} to fine-tune)")
    return ck


def _save_best(path: Path, judged: torch.nn.Module, cfg: TrainConfig, classes: list[str], record: dict) -> None:
    """best.pt: the judged weights (on the CPU, whatever the training device), their config, classes and val metrics."""
    weights = {k: v.detach().cpu() for k, v in judged.state_dict().items()}
    _save(path, model=weights, config=asdict(cfg), classes=classes, **record)


def _saved_epoch(path: Path) -> int | None:
    if not path.exists():
        return None
    return read_checkpoint(path).get("epoch")


def _ema_model(model: torch.nn.Module, decay: float, device: torch.device) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the weights and of the BatchNorm statistics (``use_buffers``)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, device=device, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0))


def _truncate_history(path: Path, epochs_done: int) -> None:
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[: 1 + epochs_done]))


def _tensorboard(logdir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(logdir))


def _plot_history(history: Path, out: Path) -> None:
    """accuracy.png and loss.png (train and val per epoch) from history.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with history.open(newline="") as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["epoch"]) for r in rows]
    for metric, ylabel in (("acc", "accuracy"), ("loss", "loss")):
        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
        ax.plot(ep, [float(r[f"train_{metric}"]) for r in rows], "o-", label="train")
        ax.plot(ep, [float(r[f"val_{metric}"]) for r in rows], "o-", label="val")
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{ylabel}.png")
        plt.close(fig)


def _save(path: Path, **state) -> None:
    """Write atomically, so a kill mid-save never leaves a broken checkpoint (tensors and plain values only)."""
    write_checkpoint(path, state)


def _progress(total: int, desc: str, show: bool = True):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not (show and sys.stderr.isatty()), dynamic_ncols=True)
