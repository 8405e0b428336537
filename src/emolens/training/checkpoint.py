"""Checkpoints that cannot run code: written as tensors and plain values, read with ``weights_only=True``.

A ``.pt`` file is a pickle, and unpickling can call any function the file names. A checkpoint someone
shares (or one downloaded from a hub) must not be able to run code on the machine that opens it, so
every checkpoint emolens reads (``--init``, ``--resume``, ``emolens export RUN``, Grad-CAM's
``--checkpoint``) goes through :func:`read_checkpoint`: PyTorch's weights-only unpickler, which builds
tensors, numbers, strings, lists, tuples and dicts and refuses everything else. Arrays of numbers written
by numpy (the random-generator state in checkpoints from before this module) are allowed too: building one
runs no code of the file's choosing.

:func:`write_checkpoint` keeps to those types (the random-generator states included) and writes atomically,
so a kill mid-save never leaves a broken file.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read safely: not a checkpoint at all, broken, or one that would need to
    run code (build other objects) to load."""


def _numpy_array_globals() -> list:
    """What unpickling a numpy array of numbers needs, and nothing more."""
    core = getattr(np, "_core", None) or np.core
    names = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType", "Float32DType")
                  if hasattr(dtypes, n)]
    return names


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The dict saved in ``path``, read with PyTorch's weights-only unpickler.

    Raises :class:`CheckpointError` with the reason when the file is missing, not a checkpoint, or would
    need to build objects other than tensors, plain values and numeric numpy arrays (then it is refused
    before any of its code can run)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            ck = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if not found:  # not a pickle PyTorch wrote (an unknown opcode: text, another format)
            raise CheckpointError(f"{p}: not a readable checkpoint (not a PyTorch file)") from None
        what = f" ({found.group(1)})"
        raise CheckpointError(
            f"{p}: refused: loading it would build objects other than tensors and plain values{what}, which can "
            "run code; emolens reads only such safe checkpoints (its own, written by `emolens train`). If you "
            "trust the file, load it yourself and save its tensors again"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{p}: not a readable checkpoint ({why})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(f"{p}: not an emolens checkpoint (it holds a {type(ck).__name__}, not a dict)")
    return ck


def write_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Save ``state`` (tensors and plain values only) to ``path`` atomically: a temporary file, then a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def rng_states(gen: torch.Generator, device: torch.device) -> dict:
    """Every random number generator the training loop draws from, as tensors and plain values: the run's
    generator (batch order, augmentation, mixing), torch's global one (dropout; CUDA's on a GPU), numpy's and
    Python's (seeded at the start)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states = {"generator": gen.get_state(), "torch": torch.get_rng_state(),
              "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
              "python": [version, list(internal), gauss]}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict, gen: torch.Generator, device: torch.device) -> None:
    """Restore what :func:`rng_states` saved (also the numpy arrays and tuples of checkpoints written before)."""
    gen.set_state(states["generator"])
    if "torch" in states:  # checkpoints written before the global states were saved have only the generator
        torch.set_rng_state(states["torch"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np.random.set_state((name, keys.astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
