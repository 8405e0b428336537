"""The training loop, top to bottom: data -> augment -> model -> AdamW + one-cycle -> best on val.

A run folder holds everything needed to understand and repeat a run::

    config.json   the TrainConfig (``emolens train --config runs/x/config.json`` repeats it)
    history.csv   one row per epoch: losses, accuracies, learning rate, seconds
    train.log     what was printed, including skipped (unreadable) files
    last.pt       model + optimiser + scheduler state after the last finished epoch (``--resume``)
    best.pt       the weights with the best validation accuracy so far
    model.onnx    the best weights exported with their metadata, ready for ``emolens predict``
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .augment import AugmentConfig, augment_batch
from .data import MANIFEST_NAME, open_source
from .zoo import count_params, create_model, get_spec


@dataclass
class TrainConfig:
    data: str  # FER2013 CSV, <split>/<class>/* folders or flat <class>/* folders (see training.data)
    out: str = "runs/emolens"
    model: str = "vgg_s"
    train_split: str | None = None  # None = the source's default (train)
    val_split: str | None = None  # None = the source's default (val, else test)
    split_seed: int = 0  # flat class folders / CSV without Usage: the seeded stratified split
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup: float = 0.1  # fraction of the steps spent warming the learning rate up
    mean: float = 0.5
    std: float = 0.25
    precision: str = "bf16"  # bf16 | fp32
    threads: int = 0  # 0 = torch's default
    seed: int = 0
    limit_per_class: int | None = None  # quick runs on a subset
    init: str | None = None  # start from this checkpoint's weights (a new schedule: fine-tuning, warm restarts)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        aug = AugmentConfig(**d.pop("augment", {}))
        return cls(**d, augment=aug)


class Logger:
    def __init__(self, path: Path) -> None:
        self.file = path.open("a", encoding="utf-8")

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        self.file.write(msg + "\n")
        self.file.flush()


def to_input(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 N×H×W×C -> float N×C×H×W in [0, 1] (normalised later, after augmentation)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    return x


@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: np.ndarray, cfg: TrainConfig, batch: int = 512) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        x = (to_input(images[i : i + batch], cfg.mean, cfg.std) - cfg.mean) / cfg.std
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            outs.append(model(x).float())
    return torch.cat(outs)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(total * cfg.warmup))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train a model as configured and return the run folder (with ``model.onnx`` in it)."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run: pick another --out, or pass --resume to continue it")
    out.mkdir(parents=True, exist_ok=True)
    log = Logger(out / "train.log")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    # --- data
    spec = get_spec(cfg.model)
    t0 = time.time()
    if resume and (out / MANIFEST_NAME).is_file():  # the split drawn when the run started
        source = open_source(out)
    else:
        source = open_source(cfg.data, split_seed=cfg.split_seed, fractions=cfg.split_fractions)
        source.write_manifest(out)
    train_split, val_split = cfg.train_split, cfg.val_split
    if not (train_split and val_split):
        default_train, default_val = source.default_splits()
        train_split, val_split = train_split or default_train, val_split or default_val
    tr = source.load(train_split, size=spec.input_size, channels=spec.channels,
                     limit_per_class=cfg.limit_per_class, log=log)
    va = source.load(val_split, size=spec.input_size, channels=spec.channels,
                     classes=tr.classes, limit_per_class=cfg.limit_per_class, log=log)
    log(f"data: {source.kind} {cfg.data}, {len(tr)} {train_split} / {len(va)} {val_split} images, "
        f"classes {tr.classes}, decoded in {time.time() - t0:.1f}s")

    # --- model and optimiser
    model = create_model(cfg.model, num_classes=len(tr.classes)).to(memory_format=torch.channels_last)
    log(f"model: {cfg.model}, {count_params(model):,} parameters")
    if cfg.init and not resume:
        init = torch.load(cfg.init, map_location="cpu", weights_only=False)
        if init.get("classes") != tr.classes:
            raise ValueError(f"--init {cfg.init}: trained on classes {init.get('classes')}, this data has {tr.classes}")
        model.load_state_dict(init["model"])
        log(f"initialised from {cfg.init}")
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = math.ceil(len(tr) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    start_epoch, best_acc, step = 0, -1.0, 0
    gen = torch.Generator().manual_seed(cfg.seed)
    if resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        start_epoch, best_acc, step = ck["epoch"] + 1, ck["best_acc"], ck["step"]
        log(f"resumed after epoch {start_epoch} (best val acc so far {best_acc:.4f})")

    history_path = out / "history.csv"
    fields = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
    if not history_path.exists():
        with history_path.open("w", newline="") as f:
            csv.writer(f).writerow(fields)

    # --- the loop
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(tr), generator=gen).numpy()
        loss_sum, correct, seen = 0.0, 0, 0
        progress = _progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}")
        for b in range(steps_per_epoch):
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x = augment_batch(to_input(tr.images[idx], cfg.mean, cfg.std), cfg.augment, gen)
            x = ((x - cfg.mean) / cfg.std).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(tr.labels[idx])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, cfg)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(idx)
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        progress.close()

        val_logits = predict_logits(model, va.images, cfg)
        yv = torch.from_numpy(va.labels)
        val_loss = F.cross_entropy(val_logits, yv).item()
        val_acc = (val_logits.argmax(1) == yv).float().mean().item()
        row = [epoch + 1, loss_sum / seen, correct / seen, val_loss, val_acc, opt.param_groups[0]["lr"],
               time.time() - t0]
        with history_path.open("a", newline="") as f:
            csv.writer(f).writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
        improved = val_acc > best_acc
        if improved:
            best_acc = val_acc
            _save(out / "best.pt", model=model.state_dict(), config=asdict(cfg), classes=tr.classes,
                  epoch=epoch, val_acc=val_acc)
        _save(out / "last.pt", model=model.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
              epoch=epoch, step=step, best_acc=best_acc, config=asdict(cfg), classes=tr.classes)
        log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row[1]:.4f} acc {row[2]:.4f} | "
            f"val loss {val_loss:.4f} acc {val_acc:.4f}{' *' if improved else ''} | {row[6]:.0f}s")

    from .export import export_checkpoint

    onnx_path = export_checkpoint(out / "best.pt", out / "model.onnx")
    log(f"best val acc {best_acc:.4f}; exported {onnx_path}")
    return out


def _save(path: Path, **state) -> None:
    """Write atomically, so a kill mid-save never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not sys.stderr.isatty(), dynamic_ncols=True)
