"""The arguments of ``python -m fnn``: its parser, the value checks argparse runs on each
option, and the checks of options that are fine alone but not together.

A bad value is argparse's own ``error:`` line (exit 2); ``UsageError`` is raised for what
argparse cannot see, and ``fnn.__main__`` prints it the same way.
"""

from __future__ import annotations

import argparse
import math

from fnn import models, nn, runs
from fnn.runs import MOMENTUM_OPTIMIZERS

__all__ = ["UsageError", "check_combinations", "parser"]


class UsageError(Exception):
    """A bad argument found after parsing (needs the data or the file system)."""


def _number(kind: type, what: str, ok=lambda v: math.isfinite(v) and v > 0):
    """An argparse type: ``kind(text)`` where ``ok`` holds, else ``must be {what}``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_INT = _number(int, "an integer >= 1")
_LR = _number(float, "a finite number > 0")


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths >= 1 such as 512,512, got {text!r}")
    return widths


# The options that configure a model, and the models each one configures.
MODEL_OPTIONS = {
    "hidden": ("mlp", "cnn"),
    "activation": ("mlp",),
    "dropout": ("mlp", "cnn"),
    "batch_norm": ("mlp", "cnn"),
    "init": ("mlp",),
    "channels": ("cnn",),
}


def _add_setup_options(p: argparse.ArgumentParser) -> None:
    """The model, data and optimizer options that ``train`` and ``lr-find`` share."""
    p.add_argument("--model", choices=list(runs.MODELS), default="mlp", help="default mlp")
    m = p.add_argument_group("MLP (--model mlp) and CNN (--model cnn)")
    m.add_argument(
        "--hidden",
        type=_widths,
        help="mlp: hidden widths, default 512,512; cnn: the head's one hidden width, default "
        f"{runs.CNN_DEFAULTS['hidden'][0]}",
    )
    m.add_argument("--activation", choices=sorted(models.ACTIVATIONS), help="mlp: default relu")
    probability = _number(float, "a probability in [0, 1)", lambda p: 0 <= p < 1)
    m.add_argument(
        "--dropout",
        type=probability,
        help="mlp: dropout p after each activation, default 0.2; cnn: the head's dropout p, "
        f"p/2 for Dropout2d after each pool, default {runs.CNN_DEFAULTS['dropout']}",
    )
    m.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        help="BatchNorm1d after each hidden Linear (mlp), BatchNorm2d after each conv (cnn); default on",
    )
    m.add_argument("--init", choices=models.INITS, help="mlp: weight init, default torch's")
    default_channels = ",".join(map(str, runs.CNN_DEFAULTS["channels"]))
    m.add_argument(
        "--channels",
        type=_widths,
        help=f"cnn: the width of each stage of {runs.CNN_DEFAULTS['convs_per_stage']} 3x3 convs "
        f"and a 2x2 max-pool, default {default_channels}",
    )
    p.add_argument(
        "--dtype",
        choices=nn.DTYPES,
        default="float32",
        help="precision: float32/float64 parameters and compute; bfloat16/float16 compute with "
        "float32 master weights (mixed precision); default float32",
    )
    p.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    p.add_argument(
        "--data-dir",
        help="Fashion-MNIST IDX directory (else $FNN_DATA_DIR, else /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--optimizer", choices=sorted(runs.DEFAULT_LR), default="sgd")
    p.add_argument("--momentum", type=float, help="sgd and rmsprop momentum, default 0.9")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="decays weights (ndim >= 2), not biases")
    p.add_argument("--batch-size", type=_INT, default=128)
    p.add_argument("--grad", choices=["autodiff", "manual"], default="autodiff")
    p.add_argument("--seed", type=int, default=0)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train on MNIST / Fashion-MNIST and print the test accuracy")
    _add_setup_options(t)
    t.add_argument("--lr", type=_LR, help="default: 0.1 for sgd, else the usual Adam-family values")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    t.add_argument("--epochs", type=_INT, default=10)
    t.add_argument(
        "--early-stopping",
        type=_INT,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower test loss; keep the best epoch",
    )
    t.add_argument(
        "--reduce-lr-on-plateau",
        action="store_true",
        help="lr x0.1 after 2 epochs without a lower test loss (needs --schedule constant)",
    )
    t.add_argument("--out", help="run directory (default: a new one under runs/)")
    t.add_argument("--resume", action="store_true", help="go on from the checkpoint in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument(
        "--no-monitor",
        action="store_true",
        help="do not collect per-layer statistics (diagnostics.json) inside the epoch",
    )


def _add_lr_find(sub) -> None:
    f = sub.add_parser(
        "lr-find", help="LR range test: train briefly at growing learning rates and suggest one"
    )
    _add_setup_options(f)
    f.add_argument("--min-lr", type=_LR, default=1e-7, help="default 1e-7")
    f.add_argument("--max-lr", type=_LR, default=10.0, help="default 10")
    f.add_argument("--steps", type=_number(int, "an integer >= 2"), default=100, help="default 100")
    f.add_argument(
        "--out", help="directory for lr_find.svg and lr_find.json (default: a new one under runs/)"
    )
    # What config_of reads but the range test sets itself (the lr) or does not have (epochs).
    f.set_defaults(lr=None, schedule="constant", epochs=1, early_stopping=None, reduce_lr_on_plateau=False)
    f.set_defaults(resume=False, overwrite=False, no_monitor=True)


def parser(description: str) -> argparse.ArgumentParser:
    """The parser of every command; each subparser is its namespace's ``command_parser``.

    Args:
        description: the program's one-line description.

    Returns:
        The ``argparse.ArgumentParser``.
    """
    parser = argparse.ArgumentParser(prog="python -m fnn", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    e = sub.add_parser("evaluate", help="evaluate a trained run directory on its test set")
    e.add_argument("dir", help="a run directory written by `python -m fnn train`")
    e.add_argument("--checkpoint", choices=["latest", "best"], default="latest")
    e.add_argument("--data-dir", help="override the run's Fashion-MNIST directory")
    _add_lr_find(sub)
    r = sub.add_parser("report", help="rebuild DIR/report.html, the one-file HTML report of a run")
    r.add_argument("dir", help="a run directory written by `python -m fnn train`")
    r.add_argument("--data-dir", help="override the run's Fashion-MNIST directory")
    g = sub.add_parser("gradcheck", help="print the gradient-check table of an MNIST-sized MLP or small CNN")
    g.add_argument(
        "--model",
        choices=["mlp", "cnn"],
        default="mlp",
        help="mlp (default): Linear, BatchNorm1d, ReLU, Dropout; cnn: Conv2d, BatchNorm2d, "
        "ReLU, MaxPool2d, AvgPool2d, Dropout2d, Linear",
    )
    g.add_argument("--batch-size", type=_INT, default=32)
    g.add_argument("--seed", type=int, default=0)
    for sub_parser in sub.choices.values():
        sub_parser.set_defaults(command_parser=sub_parser)  # later errors read like argparse's own
    return parser


def check_combinations(args: argparse.Namespace) -> None:
    """Refuse arguments of ``train`` or ``lr-find`` that are fine alone but not together
    (argparse sees them one by one).

    Args:
        args: the parsed namespace.

    Raises:
        UsageError: naming the options and why.
    """
    if args.momentum is not None and args.optimizer not in MOMENTUM_OPTIMIZERS:
        raise UsageError(f"--momentum applies to {' and '.join(MOMENTUM_OPTIMIZERS)}, not {args.optimizer}")
    if args.momentum is not None and not 0 <= args.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1), got {args.momentum}")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if args.reduce_lr_on_plateau and args.schedule != "constant":
        raise UsageError(
            "--reduce-lr-on-plateau sets the learning rate itself: use it with --schedule constant"
        )
    given = [k for k in MODEL_OPTIONS if getattr(args, k) is not None]
    wrong = [k for k in given if args.model not in MODEL_OPTIONS[k]]
    if wrong:
        owners = [m for m in ("mlp", "cnn") if all(m in MODEL_OPTIONS[k] for k in wrong)]
        given = ", ".join(f"--{k.replace('_', '-')}" for k in wrong)
        # the first model that takes them all (mlp, then cnn): the message softmax has always had
        what = f"configure --model {owners[0]}" if owners else "configure other models"
        raise UsageError(f"{given} {what}, not {args.model}")
    if args.model == "cnn" and args.hidden is not None and len(args.hidden) != 1:
        raise UsageError(f"--hidden: the cnn's head has one hidden layer, got {len(args.hidden)} widths")
    if args.channels is not None and len(args.channels) > 4:
        raise UsageError(
            f"--channels: at most 4 stages for 28x28 images (each 2x2 max-pool halves the side), "
            f"got {len(args.channels)}"
        )
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if (args.resume or args.overwrite) and args.out is None:
        raise UsageError(f"--{'resume' if args.resume else 'overwrite'} needs --out DIR")
