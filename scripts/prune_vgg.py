"""Make a narrower VGG-style net from a trained wider one by keeping its strongest channels: a start for
``emolens train --init`` that already reads faces, where a narrow net from scratch would need many epochs.

    python scripts/prune_vgg.py models/checkpoints/vgg_s_wild_sqrt.pt --to vgg_xs --out runs/vgg_xs_init.pt

Both architectures are emolens VGGNets of the same depth (``vgg_m`` -> ``vgg_s`` -> ``vgg_xs``). In each conv layer
the output channels with the largest ``|BatchNorm gamma| * L1 norm of the kernel`` are kept (filter pruning,
Li et al. 2017, scored as network slimming does, Liu et al. 2017), in their original order; the next layer keeps
the matching input channels; the dense layer keeps the columns of the kept channels, and its hidden units are
chosen the same way. The pruned net computes a damaged version of the source's function, which a few epochs of
distillation repair. Prints how much of the source's val accuracy the pruned net keeps before any training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from emolens.training.checkpoint import read_checkpoint, write_checkpoint
from emolens.training.zoo import VGGNet, create_model


def _score(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> torch.Tensor:
    w = conv.weight.detach().abs().flatten(1).sum(1)
    return w * bn.weight.detach().abs()


def prune(src: VGGNet, dst: VGGNet) -> VGGNet:
    """Copy ``src``'s strongest channels into ``dst`` (built narrower, same layout)."""
    sc = [m for m in src.features if isinstance(m, nn.Conv2d)]
    sb = [m for m in src.features if isinstance(m, nn.BatchNorm2d)]
    dc = [m for m in dst.features if isinstance(m, nn.Conv2d)]
    db = [m for m in dst.features if isinstance(m, nn.BatchNorm2d)]
    if len(sc) != len(dc):
        raise ValueError(f"the source has {len(sc)} conv layers, the target {len(dc)}: not the same layout")
    keep_in = torch.arange(sc[0].in_channels)
    with torch.no_grad():
        for c0, b0, c1, b1 in zip(sc, sb, dc, db):
            keep = torch.sort(torch.topk(_score(c0, b0), c1.out_channels).indices).values
            c1.weight.copy_(c0.weight[keep][:, keep_in])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(b1, name).copy_(getattr(b0, name)[keep])
            keep_in = keep
        sl = [m for m in src.head if isinstance(m, nn.Linear)]
        dl = [m for m in dst.head if isinstance(m, nn.Linear)]
        sbn = next(m for m in src.head if isinstance(m, nn.BatchNorm1d))
        dbn = next(m for m in dst.head if isinstance(m, nn.BatchNorm1d))
        side2 = sl[0].in_features // sc[-1].out_channels  # pixels per channel after the last pool
        cols = (keep_in[:, None] * side2 + torch.arange(side2)[None, :]).flatten()  # flatten is channel-major
        hidden = torch.sort(torch.topk(_score(sl[0], sbn), dl[0].out_features).indices).values
        dl[0].weight.copy_(sl[0].weight[hidden][:, cols])
        dl[0].bias.copy_(sl[0].bias[hidden])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dbn, name).copy_(getattr(sbn, name)[hidden])
        dl[1].weight.copy_(sl[1].weight[:, hidden])
        dl[1].bias.copy_(sl[1].bias)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a .pt checkpoint (or a run folder's best.pt) of a VGG-style net")
    ap.add_argument("--to", required=True, help="the narrower architecture, e.g. vgg_xs")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--check", type=Path, help="a dataset to measure the val accuracy before and after on")
    args = ap.parse_args()
    if args.out.exists():
        print(f"prune_vgg.py: error: {args.out} exists", file=sys.stderr)
        return 2
    path = args.source / "best.pt" if args.source.is_dir() else args.source
    ck = read_checkpoint(path)
    classes, cfg = list(ck["classes"]), dict(ck["config"])
    src = create_model(cfg["model"], num_classes=len(classes))
    src.load_state_dict(ck["model"])
    src.eval()
    dst = prune(src, create_model(args.to, num_classes=len(classes))).eval()
    if args.check:
        from emolens.training.data import open_source

        va = open_source(args.check).load("val", size=48, channels=1, classes=classes, log=lambda m: None)
        x = torch.from_numpy(va.images).permute(0, 3, 1, 2).float().div(255)
        mean, std = cfg.get("mean") or 0.5, cfg.get("std") or 0.25
        x = (x - torch.tensor(mean).reshape(1, -1, 1, 1)) / torch.tensor(std).reshape(1, -1, 1, 1)
        y = torch.from_numpy(va.labels)
        with torch.no_grad():
            for name, net in (("source", src), ("pruned", dst)):
                acc = (net(x).argmax(1) == y).float().mean().item()
                print(f"{name}: val accuracy {acc:.4f} (one view, before any training)")
    cfg["model"] = args.to
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(args.out, {"model": {k: v.detach().cpu() for k, v in dst.state_dict().items()},
                                "classes": classes, "config": cfg})
    print(f"wrote {args.out}: {args.to} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
