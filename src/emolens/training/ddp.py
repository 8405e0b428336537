"""Training on several processes: PyTorch DDP as ``torchrun`` launches it, and nothing when it does not.

``torchrun --standalone --nproc_per_node=N -m emolens train ...`` (or ``emolens train --nproc N``) starts N copies
of the same training run. Each finds its rank in the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) and joins one process group (gloo on the CPU, nccl on GPUs). What changes in the loop
(training/loop.py), and only when there is more than one process:

- ``batch_size`` stays the *global* batch: each of N processes takes ``batch_size / N`` images a step, so a config
  gives the same steps, learning-rate schedule and accuracy on 1 or N processes (raise both batch size and
  learning rate to use more devices at full width);
- every epoch's order comes from ``DistributedSampler`` (``set_epoch``, ``drop_last``: every process gets as many
  images, so none waits on an uneven last batch); augmentation and dropout draw from generators seeded by
  (seed, epoch, rank), so a resumed run repeats itself on the same number of processes;
- gradients are averaged by ``DistributedDataParallel``; the EMA averages the unwrapped model;
- validation splits the val images into N contiguous parts and gathers the logits back in order: every image is
  scored exactly once (no padding duplicates), and every process gets the same metrics, so they agree on
  best.pt, the plateau schedule and early stopping;
- rank 0 alone writes the run folder (config, log, history, plots, TensorBoard, last.pt and best.pt, atomically,
  and the ONNX export). last.pt holds the unwrapped weights, so ``--resume`` works with any number of processes.

A collective that waits longer than ``timeout`` seconds (a process that died or hangs) raises instead of
stalling the others for ever.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist


class DistributedError(RuntimeError):
    """Processes that could not form (or keep) their group, said in one line."""


DEFAULT_TIMEOUT = 600.0  # seconds a process waits for the others in one collective before the run fails


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among ``world`` processes (``world == 1``: no process group)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and prints (rank 0)."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def sum(self, *values: float) -> list[float]:
        """The sums over every process of each value (the values themselves on one process)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        tdist.all_reduce(t)
        return t.tolist()

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics, which each process updated from its own images) to all
        processes, so that every one validates the same model."""
        if self.active:
            for b in model.buffers():
                tdist.broadcast(b.data, src=0)

    def gather_rows(self, score, rows: np.ndarray) -> torch.Tensor:
        """``score(part)`` of a contiguous part of ``rows`` on each process, gathered in order: every row is scored
        exactly once and every process gets all of them (on one process simply ``score(rows)``)."""
        if not self.active:
            return score(rows)
        bounds = np.linspace(0, len(rows), self.world + 1).round().astype(int)
        mine = score(rows[bounds[self.rank] : bounds[self.rank + 1]])
        longest = int(np.diff(bounds).max())
        padded = torch.zeros((longest, *mine.shape[1:]), dtype=mine.dtype)
        padded[: len(mine)] = mine
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        tdist.all_gather(parts, padded)  # gloo and nccl want tensors of one shape: padded, then cut back
        return torch.cat([p[: bounds[i + 1] - bounds[i]] for i, p in enumerate(parts)])


def from_env() -> Dist:
    """This process's place as torchrun's environment states it (no torchrun: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return Dist()
    return Dist(rank=int(os.environ.get("RANK", "0")), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(device: torch.device, timeout: float | None = None) -> Iterator[Dist]:
    """Join torchrun's process group for the run (gloo on the CPU, nccl on CUDA) and leave it afterwards; outside
    torchrun (or with one process) this yields ``Dist()`` and does nothing."""
    d = from_env()
    if not d.active:
        yield d
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(d.local_rank)
    wait = timedelta(seconds=timeout or DEFAULT_TIMEOUT)
    try:
        tdist.init_process_group(backend=backend, timeout=wait)
    except Exception as e:  # a rendezvous that never completes, a port taken ...
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise DistributedError(f"process {d.rank} of {d.world} could not join the others ({why})") from None
    try:
        yield Dist(d.rank, d.world, d.local_rank, backend)
    finally:
        tdist.destroy_process_group()


def epoch_order(n: int, epoch: int, seed: int, d: Dist, weights: torch.Tensor | None = None) -> np.ndarray:
    """This process's share of one epoch's images, in order (``n // world`` of them, the same count everywhere).

    Shuffled: ``DistributedSampler`` (seed, ``set_epoch``, ``drop_last``). Balanced sampling (``weights``): one
    draw with replacement, the same on every process (seeded by seed and epoch), dealt out as the sampler does."""
    from torch.utils.data import DistributedSampler

    if weights is None:
        sampler = DistributedSampler(range(n), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        return np.fromiter(iter(sampler), dtype=np.int64, count=len(sampler))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    drawn = torch.multinomial(weights, n, replacement=True, generator=gen).numpy()
    per = n // d.world
    return drawn[d.rank : per * d.world : d.world]


def seed_epoch(gen: torch.Generator, seed: int, epoch: int, d: Dist) -> None:
    """Seed the run's generator (augmentation, mixing) and torch's global one (dropout) for this process and epoch:
    processes augment differently, and a resumed run on as many processes draws what it drew before."""
    s = (seed * 1_000_003 + epoch) * 1_009 + d.rank
    gen.manual_seed(s)
    torch.manual_seed(s)
