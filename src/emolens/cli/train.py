"""`emolens train` and `emolens models`."""

from __future__ import annotations

import argparse
import sys

from .common import DATA_HELP, TRAIN_EXTRA_HINT, CLIError, need_training, positive_int, thread_count, torchrun_rank


def add_train(sub) -> None:
    """`emolens train` and its options."""
    p = sub.add_parser("train", help="train a model on FER2013 CSV or image folders ([train] extra)")
    p.add_argument("--data", help=DATA_HELP + " (with --resume: the run's own)")
    p.add_argument("--config", help="YAML or JSON config (e.g. configs/seed003_cnn.yaml); flags override it")
    p.add_argument("--out", help="run folder to create (default runs/emolens)")
    p.add_argument("--model", help="architecture name (see `emolens models`; default vgg_s, or with --init the "
                                   "architecture of the model it starts from)")
    p.add_argument("--epochs", type=int, help="default 30; with --init 3 (the fine-tuning recipe)")
    p.add_argument("--batch-size", type=int, help="default 128; with --init 32")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3; with --init 3e-4)")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=thread_count, metavar="N")
    p.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"],
                   help="autocast precision (default auto: bf16 on a GPU or CPU that has it, else fp32 on the CPU "
                        "and fp16 with loss scaling on a GPU; fp16 needs a GPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where to train (default auto: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], help="default adamw (sgd: momentum 0.9)")
    p.add_argument("--schedule", choices=["cosine", "onecycle", "step", "plateau", "constant"],
                   help="learning-rate schedule (default cosine with warm-up = onecycle)")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--mixup", type=float, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA), e.g. 0.2 (default off)")
    p.add_argument("--cutmix", type=float, metavar="ALPHA", help="CutMix with Beta(ALPHA, ALPHA), e.g. 1 (default off)")
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate, keep and export a moving average of the weights, e.g. 0.999 (default off)")
    p.add_argument("--teacher", metavar="MODEL.onnx",
                   help="knowledge distillation: an emolens .onnx model (one net or an ensemble) whose probabilities "
                        "the model learns from as well as the labels")
    p.add_argument("--distill", type=float, metavar="ALPHA",
                   help="with --teacher: weight of the teacher's term, 0-1 (default 0.5; the labels get 1 - ALPHA)")
    p.add_argument("--distill-temperature", type=float, metavar="TAU",
                   help="with --teacher: softmax temperature of the comparison (default 2)")
    p.add_argument("--class-weights", choices=["balanced", "sqrt"],
                   help="weight the loss by inverse class frequency (sqrt: by its square root, milder)")
    p.add_argument("--sampler", choices=["shuffle", "balanced"], help="balanced: draw every class equally often")
    p.add_argument("--votes", metavar="FILE.csv",
                   help="several annotators' votes per face (file + a count per label, e.g. FER+'s ferplus.csv): "
                        "train on each face's vote distribution; --class-weights then count the soft targets")
    p.add_argument("--votes-mix", type=float, metavar="SHARE",
                   help="with --votes: the folder label's share of the target, 0-1 (default 0: votes only; 0.5: "
                        "half each)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better val metric (0 = off)")
    p.add_argument("--select", choices=["accuracy", "macro_f1", "loss", "last"],
                   help="val metric that picks best.pt (last: the last epoch)")
    p.add_argument("--weights", help="transfer models: 'imagenet' (download) or a local ImageNet state dict (.pth)")
    p.add_argument("--freeze", action=argparse.BooleanOptionalAction, default=None,
                   help="freeze the pretrained part: a transfer model's base (default) or, with --init, the conv "
                        "stages of emolens' own nets (default: train them too); --no-freeze trains it all")
    p.add_argument("--unfreeze-last", type=int, metavar="N",
                   help="with the pretrained part frozen, train its last N blocks (own nets: conv stages) anyway")
    p.add_argument("--no-augment", action="store_true", help="turn every augmentation off")
    p.add_argument("--augment", action="append", metavar="KEY=VALUE",
                   help="set one augmentation (repeatable): hflip=true|false, rotate=DEG, shift=FRAC, zoom=FRAC, "
                        "shear=DEG, brightness=D, contrast=D, gamma=G, and probabilities per image: erase, and the "
                        "real-photo ones occlude, blur, downscale, noise, jpeg (after --no-augment: only these)")
    p.add_argument("--train-split")
    p.add_argument("--val-split")
    p.add_argument("--limit-per-class", type=int, help="use only the first N images of each class (quick runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt with its config.json (flags override options "
                        "that do not change the model or data, e.g. --epochs)")
    p.add_argument("--init", metavar="SOURCE",
                   help="start from this model's weights with a fresh schedule: default, fast, an emolens "
                        ".onnx, a run folder or a .pt; other labels than its own get a new classifier")
    p.add_argument("--nproc", type=positive_int, metavar="N",
                   help="train on N processes of this machine as one run (DDP through torchrun: gloo on the CPU, nccl "
                        "with one GPU each); --batch-size stays the batch of all N together. Several machines: "
                        "torchrun ... -m emolens train (README: Scaling out)")
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="with several processes: how long one waits for the others before the run fails "
                        "(default 600)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    need_training()
    from ..training.ddp import DistributedError
    from ..training.options import train_from_options

    options = {
        "data": args.data, "out": args.out, "model": args.model, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "threads": args.threads,
        "limit_per_class": args.limit_per_class, "precision": args.precision,
        "train_split": args.train_split, "val_split": args.val_split, "init": args.init,
        "optimizer": args.optimizer, "schedule": args.schedule, "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing, "mixup": args.mixup, "cutmix": args.cutmix, "ema": args.ema,
        "class_weights": args.class_weights, "sampler": args.sampler, "votes": args.votes,
        "votes_mix": args.votes_mix,
        "patience": args.patience, "select": args.select, "weights": args.weights, "freeze": args.freeze,
        "unfreeze_last": args.unfreeze_last, "device": args.device, "teacher": args.teacher,
        "distill": args.distill, "distill_temperature": args.distill_temperature,
    }
    try:
        run = train_from_options(args.config, resume=args.resume, nproc=args.nproc, timeout=args.dist_timeout,
                                 no_augment=args.no_augment, augment=args.augment, **options)
    except (TypeError, ValueError, FileNotFoundError, FileExistsError, DistributedError) as e:  # ValueError:
        # TrainOptionsError among others
        raise CLIError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    if isinstance(run, int):  # --nproc N: the processes' exit status
        return run
    if not torchrun_rank():  # under torchrun, one process says where the run is
        print(f"run folder: {run}\nmodel: {run / 'model.onnx'}")
    return 0


def add_models(sub) -> None:
    """`emolens models` and its options."""
    p = sub.add_parser("models", help="list the trainable architectures (training them: [train] extra)")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    import importlib.util

    from ..training.catalog import ARCHITECTURES

    print(f"{'name':<13} {'input':>5} {'channels':<9} {'params':>11}  description")
    for a in ARCHITECTURES:  # stored facts: nothing is built, torch is not imported
        chans = "1 (gray)" if a.channels == 1 else "3 (rgb)"
        print(f"{a.name:<13} {a.input_size:>5} {chans:<9} {a.params:>11,}  {a.description}")
    if importlib.util.find_spec("torch") is None:
        print(f"emolens: note: {TRAIN_EXTRA_HINT.replace('this command needs', 'training them needs')}",
              file=sys.stderr)
    return 0

