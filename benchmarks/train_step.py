"""Seconds per training step on this machine, in fp32 and in bf16 autocast, and what ``--precision auto`` picks.

    python benchmarks/train_step.py [--model vgg_s] [--batch-size 128] [--threads 2] [--steps 6]

One step is what ``emolens train`` does per batch: forward under autocast, cross-entropy, backward and an
AdamW update, channels-last, on random 48x48 inputs (the speed does not depend on the pixels). The
first step of each precision is a warm-up and is not counted; the median of the rest is printed, with
the epoch time it implies for the 28,709 FER2013 training faces. Needs the [train] extra.

The last line printed is the headline: the precision auto picks, and both medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from emolens.training.loop import amp_dtype, cpu_has_bf16
from emolens.training.zoo import create_model, get_spec

FER_TRAIN = 28_709


def step_seconds(model_name: str, batch: int, steps: int, dtype: torch.dtype | None) -> float:
    spec = get_spec(model_name)
    model = create_model(model_name, num_classes=7).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, spec.channels, spec.input_size, spec.input_size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vgg_s")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first is a warm-up)")
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_bf16()}, "
          f"{args.threads} threads, {args.model}, batch {args.batch_size}")
    res = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        res[name] = step_seconds(args.model, args.batch_size, args.steps, dtype)
        epoch = res[name] * FER_TRAIN / args.batch_size
        print(f"{name}: {res[name]:.3f} s a step, about {epoch / 60:.1f} min an epoch of FER2013 train")
    auto = "bf16" if amp_dtype("auto", cpu) is not None else "fp32"
    print(f"precision auto picks {auto}: fp32 {res['fp32']:.3f} s/step, bf16 {res['bf16']:.3f} s/step")


if __name__ == "__main__":
    main()
