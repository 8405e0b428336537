"""``emolens train --nproc N``: torchrun's launcher, started from emolens, for N processes on this machine.

It does what ``torchrun --standalone --nproc_per_node=N -m emolens train --config RUN.json`` does (a rendezvous on a
free local port, N workers, every worker stopped when one fails), through the launcher's API so that a failure is
one line and an exit code instead of the launcher's traceback. The run itself is the same ``emolens train`` in each
process (training/ddp.py says what changes with more than one).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

from .loop import TrainConfig


def launch(cfg: TrainConfig, nproc: int, *, resume: bool = False, timeout: float | None = None) -> int:
    """Train ``cfg`` on ``nproc`` processes of this machine; returns the exit status (0 when every process
    finished; otherwise the first failed process's own status, after its message)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    fd, config_path = tempfile.mkstemp(prefix="emolens-train-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(cfg), f)
    args = ["-m", "emolens", "train", "--config", config_path]
    if resume:
        args.append("--resume")
    if timeout:
        args += ["--dist-timeout", str(timeout)]
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun: the cores shared out, not every process on all of them
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5,
                          start_method="spawn")
    # the launcher's INFO and WARNING lines (each of its modules sets its own level) are not for users
    quiet = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("torch.distributed")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        elastic_launch(config, sys.executable)(*args)
    except ChildFailedError as e:
        rank, failure = min(e.failures.items())
        code = failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
        print(f"emolens train: process {rank} of {nproc} stopped with exit status {failure.exitcode}; the run "
              f"stopped (its folder: {Path(cfg.out)})", file=sys.stderr)
        return code
    except SignalException:  # Ctrl-C or a kill: the processes stop (rank 0 says so); last.pt is the last finished epoch
        return 130
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        Path(config_path).unlink(missing_ok=True)
    return 0
