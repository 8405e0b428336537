"""A training run from the options a user gives (what ``emolens train`` does, as one call): a YAML or JSON recipe,
options over it, ``--resume``'s stored config under both, augmentation keys checked, and ``nproc`` processes::

    from emolens.training.options import train_from_options

    run = train_from_options("configs/finetune_small.yaml", data="data/faces", out="runs/happy-sad", epochs=5)

Bad options raise :class:`TrainOptionsError` (a ValueError) with the one-line message the command prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from . import torchrun_rank
from .augment import AugmentConfig

DATA_HELP = "FER2013 CSV, <split>/<class>/* folders or flat <class>/* folders"


class TrainOptionsError(ValueError):
    """Training options that cannot be used as given (one line)."""


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """A recipe file: YAML (``.yaml``, ``.yml``) or JSON, holding a mapping of option names to values."""
    try:
        text = Path(path).read_text()
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            import yaml

            base = yaml.safe_load(text) or {}
        else:
            base = json.loads(text)
    except (OSError, ValueError) as e:  # yaml.YAMLError is not a ValueError: caught below
        raise TrainOptionsError(f"--config {path}: cannot read ({e})") from None
    except Exception as e:
        raise TrainOptionsError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(base, dict):
        raise TrainOptionsError(f"--config {path}: must hold a mapping of option names to values")
    return base


def run_config(out: str | os.PathLike) -> dict[str, Any]:
    """The config.json of an existing run folder (the base of ``resume``), upgraded to today's options."""
    from .loop import upgrade_config

    path = Path(out) / "config.json"
    try:
        base = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TrainOptionsError(f"--resume: cannot read {path} ({e})") from None
    if not isinstance(base, dict):
        raise TrainOptionsError(f"--resume: {path} is not an emolens run config")
    return upgrade_config(base)


def augment_options(pairs: list[str], current: object = None) -> dict[str, Any]:
    """``KEY=VALUE`` augmentation settings (``--augment``) over ``current`` (a config's augment block), checked
    against :class:`emolens.training.augment.AugmentConfig`."""
    fields = {f.name: f.type for f in dataclasses.fields(AugmentConfig)}
    aug = dict(current) if isinstance(current, dict) else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise TrainOptionsError(f"--augment {pair}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        value = value.strip().lower()
        if fields[key] in (bool, "bool"):
            if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise TrainOptionsError(f"--augment {pair}: {key} is on or off (true/false)")
            aug[key] = value in ("true", "1", "yes", "on")
        else:
            try:
                aug[key] = float(value)
            except ValueError:
                raise TrainOptionsError(f"--augment {pair}: {key} takes a number") from None
            if aug[key] < 0 or (key in AugmentConfig.PROBABILITIES and aug[key] > 1):
                raise TrainOptionsError(f"--augment {pair}: {key} must be " + (
                    "a probability in [0, 1]" if key in AugmentConfig.PROBABILITIES else ">= 0"))
    return aug


def train_options(config: str | os.PathLike | dict | None = None, *, resume: bool = False, no_augment: bool = False,
                  augment: list[str] | None = None, **options: Any) -> dict[str, Any]:
    """The run's options as one mapping: the recipe ``config`` (a file or a mapping), with ``resume`` the run's
    stored config.json over it, then ``no_augment`` / ``augment`` (``KEY=VALUE`` strings), then ``options`` (those
    that are ``None`` are left out)."""
    base = dict(config) if isinstance(config, dict) else read_config(config) if config is not None else {}
    run_out = Path(options.get("out") or base.get("out") or "runs/emolens")
    if resume and (run_out / "config.json").is_file():  # continue the run as configured; options still override
        base = {**run_config(run_out), **{k: v for k, v in base.items() if k != "out"}}
    if no_augment:
        base["augment"] = dataclasses.asdict(AugmentConfig.off())
    if augment:
        base["augment"] = augment_options(augment, base.get("augment"))
    base.update({k: v for k, v in options.items() if v is not None})
    if "data" not in base:
        raise TrainOptionsError(f"give the dataset with --data PATH ({DATA_HELP})"
                                + (f"; {run_out} holds no run config.json to resume" if resume else ""))
    return base


def train_from_options(config: str | os.PathLike | dict | None = None, *, resume: bool = False,
                       nproc: int | None = None, timeout: float | None = None, no_augment: bool = False,
                       augment: list[str] | None = None, **options: Any) -> Path | int:
    """Train as :func:`train_options` merges the options (``config`` a recipe file or mapping), on ``nproc``
    processes of this machine (DDP; the batch size is the batch of all together) or in this one.

    Returns the run folder, or with ``nproc`` > 1 the processes' exit status (0: done). ``timeout``: the seconds a
    process waits for the others. Options that cannot work raise :class:`TrainOptionsError` (or the ValueError of
    the config's own check) before any process starts; a run folder that is a file or already holds a run (without
    ``resume``) raises FileExistsError; data that cannot be read, FileNotFoundError or ValueError; processes that
    lose each other, :class:`emolens.training.ddp.DistributedError`."""
    from .loop import TrainConfig, train

    base = train_options(config, resume=resume, no_augment=no_augment, augment=augment, **options)
    if timeout is not None and not timeout > 0:
        raise TrainOptionsError(f"--dist-timeout must be a positive number of seconds, not {timeout:g}")
    try:
        cfg = TrainConfig.from_dict(base)
    except TypeError as e:  # an option that does not exist
        raise TrainOptionsError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if nproc and nproc > 1 and torchrun_rank() is None:
        return _launch(cfg, nproc, resume=resume, timeout=timeout)
    return train(cfg, resume=resume, timeout=timeout)


def _launch(cfg, nproc: int, *, resume: bool, timeout: float | None) -> int:
    """``nproc`` processes: check what can be checked here (so bad input is one line, before they start), then
    run the same training in each (training/launch.py)."""
    from .launch import launch
    from .loop import resolve_device

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a run folder: pick another --out")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} already holds a run: pick another --out, or pass --resume to continue it")
    if cfg.batch_size % nproc:
        raise TrainOptionsError(f"batch_size {cfg.batch_size} is the batch of all {nproc} processes together and "
                                f"must split evenly between them: give a multiple of {nproc}")
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        import torch

        if torch.cuda.device_count() < nproc:
            raise TrainOptionsError(f"--nproc {nproc} on cuda needs a GPU each, and torch sees "
                                    f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or "
                                    "--device cpu")
    return launch(cfg, nproc, resume=resume, timeout=timeout)
