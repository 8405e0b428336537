"""Training (the ``[train]`` extra, PyTorch): datasets, augmentation, the model registry, the loop, export.

Importing this package loads nothing heavy; its modules import torch. The command's ``train`` is
:func:`emolens.training.options.train_from_options`; the loop itself is :func:`emolens.training.loop.train`.
"""

import os


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started it among several (``WORLD_SIZE`` > 1), else None."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    except ValueError:
        return None
