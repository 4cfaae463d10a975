"""Command line: ``python -m fnn train | evaluate | gradcheck``.

``train`` fits a model on MNIST (bundled) or Fashion-MNIST, prints one line per epoch and,
as its last line, ``test_accuracy=<float>``. It writes into its run directory (``--out``;
by default a new ``runs/<dataset>-<model>-<time>``): ``config.json`` (every argument, enough
to rebuild the run), ``history.json``, ``checkpoint.npz`` (the latest epoch), ``best.npz``
(the epoch with the lowest test loss) and, with matplotlib, ``curves.png``. An ``--out``
that already holds a run needs ``--resume`` (go on from it; the config must match) or
``--overwrite``. Its defaults (BatchNorm + Dropout MLP 784-512-512-10, SGD momentum 0.9, lr
0.1 with cosine decay, weight decay 5e-4 on weights, 10 epochs of batch 128) reach ≥ 98%
on MNIST in under a minute on 2 CPU cores.

By default ``train`` also monitors every layer inside the compiled epoch
(``fnn.diagnostics.Monitor()``, about 32 points an epoch) and writes the series to
``diagnostics.json`` (``{"every", "epochs": [{"epoch", **record["monitor"]}], "diagnoses"}``,
also after a divergence, for the epochs completed); ``history.json`` then holds the
per-epoch numbers without the series. ``--no-monitor`` turns that off; config.json records
it (``"monitor": false``).

``--dtype`` (float32 by default; float64, bfloat16, float16) is the dtype of the model's
parameters and BatchNorm statistics (torch's factory keyword, DTYPE-1); the images are cast
to it where they are loaded, the optimizer state follows the parameters, and float64 runs
with JAX's 64-bit mode on for that command only. ``bfloat16`` here means parameters, optimizer
state and all compute in bfloat16: there are no float32 master weights and no loss scaling,
so small updates can round away; it is a precision setting, not mixed-precision training.
``evaluate`` reads the dtype back from ``config.json``.

``evaluate DIR`` rebuilds the model from ``DIR/config.json``, loads its checkpoint and
prints ``test_loss=… test_accuracy=…``. ``gradcheck`` prints the three-way gradient table
(manual backward vs jax.grad vs finite differences, gradients and Hessian-vector products)
of an MNIST-sized MLP.

Exit status: 0 done; 2 a bad argument (argparse's one-line ``error:``); 3 training
diverged (one line says where, and to try a smaller ``--lr``); 1 any other failure, as one
line (``FNN_TRACEBACK=1`` shows the traceback instead). Never a traceback for a user's
mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import time

import jax

from fnn import checkpoint, data, models, nn, optim
from fnn import functional as F

DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
EXIT_DIVERGED = 3


class UsageError(Exception):
    """A bad argument found after parsing (needs the data or the file system)."""


def _positive(kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        p = math.nan
    if not 0 <= p < 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), got {text!r}")
    return p


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated widths >= 1 such as 512,512, got {text!r}")
    return widths


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fnn", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on MNIST / Fashion-MNIST and print the test accuracy")
    t.add_argument("--model", choices=["softmax", "mlp"], default="mlp")
    m = t.add_argument_group("MLP (--model mlp)")
    m.add_argument("--hidden", type=_widths, default=None, help="hidden widths, default 512,512")
    m.add_argument("--activation", choices=sorted(models.ACTIVATIONS), default=None, help="default relu")
    m.add_argument(
        "--dropout", type=_probability, default=None, help="dropout p after each activation, default 0.2"
    )
    m.add_argument(
        "--batch-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="BatchNorm1d after each hidden Linear (default on)",
    )
    m.add_argument("--init", choices=models.INITS, default=None, help="weight init, default torch's")
    t.add_argument(
        "--dtype",
        choices=nn.DTYPES,
        default="float32",
        help="parameter and compute dtype (bfloat16: no float32 master weights), default float32",
    )
    t.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    t.add_argument(
        "--data-dir",
        default=None,
        help="Fashion-MNIST IDX directory (else $FNN_DATA_DIR, else /usr/share/datasets/fashion-mnist)",
    )
    t.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="sgd")
    t.add_argument(
        "--lr",
        type=_positive(float, "a finite number > 0"),
        default=None,
        help="default: 0.1 for sgd, else the usual Adam-family values",
    )
    t.add_argument("--momentum", type=float, default=None, help="sgd and rmsprop momentum, default 0.9")
    t.add_argument("--weight-decay", type=float, default=5e-4, help="decays weights (ndim >= 2), not biases")
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    t.add_argument("--epochs", type=_positive(int, "an integer >= 1"), default=10)
    t.add_argument("--batch-size", type=_positive(int, "an integer >= 1"), default=128)
    t.add_argument("--grad", choices=["autodiff", "manual"], default="autodiff")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--early-stopping",
        type=_positive(int, "an integer >= 1"),
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a lower test loss; keep the best epoch",
    )
    t.add_argument(
        "--reduce-lr-on-plateau",
        action="store_true",
        help="lr x0.1 after 2 epochs without a lower test loss (needs --schedule constant)",
    )
    t.add_argument("--out", default=None, help="run directory (default: a new one under runs/)")
    t.add_argument("--resume", action="store_true", help="go on from the checkpoint in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument(
        "--no-monitor",
        action="store_true",
        help="do not collect per-layer statistics (diagnostics.json) inside the epoch",
    )
    e = sub.add_parser("evaluate", help="evaluate a trained run directory on its test set")
    e.add_argument("dir", help="a run directory written by `python -m fnn train`")
    e.add_argument("--checkpoint", choices=["latest", "best"], default="latest")
    e.add_argument("--data-dir", default=None, help="override the run's Fashion-MNIST directory")
    g = sub.add_parser("gradcheck", help="print the gradient-check table of an MNIST-sized MLP")
    g.add_argument("--batch-size", type=_positive(int, "an integer >= 1"), default=32)
    g.add_argument("--seed", type=int, default=0)
    for sub_parser in sub.choices.values():
        sub_parser.set_defaults(command_parser=sub_parser)  # later errors read like argparse's own
    return parser


def _check_combinations(args: argparse.Namespace) -> None:
    """Arguments that are fine alone but not together (argparse sees them one by one)."""
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
    if args.model == "softmax":
        given = [
            f"--{k.replace('_', '-')}"
            for k in ("hidden", "activation", "dropout", "batch_norm", "init")
            if getattr(args, k) is not None
        ]
        if given:
            raise UsageError(f"{', '.join(given)} configure --model mlp, not softmax")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if (args.resume or args.overwrite) and args.out is None:
        raise UsageError(f"--{'resume' if args.resume else 'overwrite'} needs --out DIR")


def config_of(args: argparse.Namespace) -> dict:
    """Everything that defines the run, with defaults filled in (what config.json holds)."""
    momentum = (
        args.momentum
        if args.momentum is not None
        else (0.9 if args.optimizer in MOMENTUM_OPTIMIZERS else None)
    )
    config = {
        "model": args.model,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "optimizer": args.optimizer,
        "lr": DEFAULT_LR[args.optimizer] if args.lr is None else args.lr,
        "momentum": momentum,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "grad": args.grad,
        "seed": args.seed,
        "early_stopping": args.early_stopping,
        "reduce_lr_on_plateau": args.reduce_lr_on_plateau,
        "dtype": args.dtype,
        "monitor": not args.no_monitor,
    }
    if args.model == "mlp":
        config.update(
            hidden=list(args.hidden or (512, 512)),
            activation=args.activation or "relu",
            dropout=0.2 if args.dropout is None else args.dropout,
            batch_norm=True if args.batch_norm is None else args.batch_norm,
            init=args.init or "torch",
        )
    return config


def build_model(config: dict) -> nn.Sequential:
    dtype = config.get("dtype", "float32")  # runs written before --dtype are float32
    if config["model"] == "softmax":
        return models.softmax_regression(dtype=dtype)
    return models.mlp(
        hidden=tuple(config["hidden"]),
        activation=config["activation"],
        dropout=config["dropout"],
        batch_norm=config["batch_norm"],
        init=config["init"],
        dtype=dtype,
    )


def numerics(dtype: str) -> contextlib.AbstractContextManager:
    """JAX's 64-bit mode for a float64 run, scoped to the command (a process-wide switch
    would also make every integer int64 for whoever calls ``main`` next)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def build_optimizer(config: dict, steps_per_epoch: int) -> optim.GradientTransformation:
    lr = config["lr"]
    if config["schedule"] == "cosine":
        lr = optim.cosine_annealing_lr(lr, T_max=max(config["epochs"] * steps_per_epoch, 1))
    name, wd = config["optimizer"], config["weight_decay"]
    if name in MOMENTUM_OPTIMIZERS:
        return getattr(optim, name)(lr=lr, momentum=config["momentum"], weight_decay=wd)
    return getattr(optim, name)(lr=lr, weight_decay=wd)


def load_data(dataset: str, data_dir: str | None, dtype: str = "float32"):
    """((x, y) train, (x, y) test), normalized and cast to the model's ``dtype`` (layers
    refuse another dtype, DTYPE-2); a missing dataset is a UsageError."""
    if dataset == "mnist":
        loader, mean, std = data.mnist, data.MNIST_MEAN, data.MNIST_STD
    else:
        loader = functools.partial(data.fashion_mnist, root=data_dir)
        mean, std = data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD
    try:
        (xtr, ytr), (xte, yte) = loader("train"), loader("test")
    except FileNotFoundError as e:
        raise UsageError(" ".join(str(e).split())) from None
    cast = functools.partial(_as_dtype, dtype=dtype)
    return (cast(data.normalize(xtr, mean, std)), ytr), (cast(data.normalize(xte, mean, std)), yte)


def _as_dtype(x, dtype: str):
    # numpy has no bfloat16 of its own: jnp.dtype resolves the name to ml_dtypes' type.
    return x.astype(jax.numpy.dtype(dtype), copy=False)


def save_curves(history: list[dict], path: str, title: str) -> bool:
    """Loss and accuracy per epoch as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "test"):
        if f"{split}_loss" in history[0]:
            ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], marker="o", label=split)
            ax_acc.plot(epochs, [h[f"{split}_accuracy"] for h in history], marker="o", label=split)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def without_series(history: list[dict]) -> list[dict]:
    """The history without the monitor series (they live in diagnostics.json)."""
    return [{k: v for k, v in h.items() if k != "monitor"} for h in history]


def write_diagnostics(out: str, history: list[dict], monitor: bool) -> None:
    """``DIR/diagnostics.json``: the monitor series of every epoch and the diagnoses found;
    without a monitor, nothing (and no stale file from an overwritten run)."""
    path = os.path.join(out, "diagnostics.json")
    series = [{"epoch": h["epoch"], **h["monitor"]} for h in history if "monitor" in h]
    if not monitor:
        if os.path.exists(path):
            os.unlink(path)
        return
    every = series[0]["every"] if series else None
    diagnoses = [d for h in history for d in h.get("diagnoses", [])]
    with open(path, "w") as f:
        json.dump({"every": every, "epochs": series, "diagnoses": diagnoses}, f)


def _run_dir(args: argparse.Namespace) -> str:
    if args.out is None:
        return os.path.join("runs", f"{args.dataset}-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    latest = os.path.join(args.out, "checkpoint.npz")
    if os.path.exists(latest) and not (args.resume or args.overwrite):
        raise UsageError(
            f"--out {args.out} already holds a run: add --resume to go on from it, "
            "--overwrite to replace it, or choose another --out"
        )
    return args.out


def _print_epoch(epochs: int, run, h: dict) -> None:
    lr = f"  lr {h['lr']:.3g}" if "lr" in h else ""
    print(
        f"epoch {h['epoch']:3d}/{epochs}  train_loss {h['train_loss']:.4f}  "
        f"train_acc {h['train_accuracy']:.4f}  "
        f"test_loss {h['test_loss']:.4f}  test_acc {h['test_accuracy']:.4f}{lr}  {h['seconds']:.1f}s",
        flush=True,
    )


def train(args: argparse.Namespace) -> int:
    _check_combinations(args)
    config = config_of(args)
    with numerics(config["dtype"]):
        return _train(args, config)


def _train(args: argparse.Namespace, config: dict) -> int:
    from fnn import train as T  # imported here so `gradcheck` starts fast

    train_data, test_data = load_data(args.dataset, args.data_dir, config["dtype"])
    n = len(train_data[0])
    if args.batch_size > n:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set ({n} samples)")
    out = _run_dir(args)
    model, opt = build_model(config), build_optimizer(config, n // args.batch_size)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(
        f"fnn: {args.model} on {args.dataset}, {nn.num_params(model.init(jax.random.key(0))[0]):,} params, "
        f"{args.optimizer}(lr={config['lr']}, schedule={args.schedule}), grad={args.grad}, "
        f"{args.epochs} epochs of batch {args.batch_size}, {config['dtype']}, "
        f"device {jax.devices()[0].platform}, run dir {out}",
        flush=True,
    )
    callbacks: list = [T.LambdaCallback(on_epoch_end=functools.partial(_print_epoch, args.epochs))]
    if args.early_stopping:
        callbacks.append(T.EarlyStopping("test_loss", patience=args.early_stopping))
    if args.reduce_lr_on_plateau:
        callbacks.append(optim.ReduceLROnPlateau(patience=2))
    try:
        result = T.fit(
            model,
            nn.CrossEntropyLoss(),
            opt,
            train_data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            key=jax.random.key(args.seed),
            eval_data=test_data,
            grad=args.grad,
            callbacks=callbacks,
            progress=not args.no_progress,
            checkpoint_dir=out,
            resume=args.resume,
            overwrite=args.overwrite,
            keep_best="test_loss",
            monitor=config["monitor"],
        )
    except T.TrainingDiverged as e:
        write_diagnostics(out, e.result.history, config["monitor"])
        lr = f" at learning rate {e.lr:.3g}" if e.lr is not None else ""
        print(
            f"fnn: training diverged at epoch {e.epoch}, step {e.step} (loss {e.loss}){lr}; "
            f"try a smaller --lr (the last good state is in {os.path.join(out, 'diverged.npz')})",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    write_diagnostics(out, result.history, config["monitor"])
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({"config": config, "history": without_series(result.history)}, f, indent=1)
    if result.history and save_curves(
        result.history, os.path.join(out, "curves.png"), f"fnn {args.model} on {args.dataset}"
    ):
        print(f"curves: {os.path.join(out, 'curves.png')}")
    stopper = next((cb for cb in callbacks if isinstance(cb, T.EarlyStopping)), None)
    if stopper is not None and stopper.stopped_epoch is not None:
        print(
            f"early stopping after epoch {stopper.stopped_epoch}; kept epoch {stopper.best_epoch} "
            f"(test_loss {stopper.best:.4f})"
        )
    scores = T.evaluate(model, result.params, result.state, test_data, loss=nn.CrossEntropyLoss())
    print(f"test_loss={scores['loss']:.4f}")
    print(f"test_accuracy={scores['accuracy']:.4f}")
    return 0


def evaluate_run(args: argparse.Namespace) -> int:
    config_path = os.path.join(args.dir, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise UsageError(
            f"{config_path} not found: DIR must be a run directory written by `python -m fnn train`"
        ) from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{config_path} is not valid JSON ({e})") from None
    name = "checkpoint.npz" if args.checkpoint == "latest" else "best.npz"
    path = os.path.join(args.dir, name)
    if not os.path.exists(path):
        raise UsageError(f"{path} not found (the run wrote no {args.checkpoint} checkpoint)")
    with numerics(config.get("dtype", "float32")):
        return _evaluate(args, config, path)


def _evaluate(args: argparse.Namespace, config: dict, path: str) -> int:
    from fnn import train as T

    dtype = config.get("dtype", "float32")
    train_data, test_data = load_data(config["dataset"], args.data_dir or config.get("data_dir"), dtype)
    model = build_model(config)
    opt = build_optimizer(config, len(train_data[0]) // config["batch_size"])
    like = T.init_train_state(model, opt, jax.random.key(config["seed"]))
    ts, meta = checkpoint.load(path, like=like)
    scores = T.evaluate(model, ts.params, ts.state, test_data, loss=nn.CrossEntropyLoss())
    print(f"{path}: epoch {meta['epoch']}")
    print(f"test_loss={scores['loss']:.4f} test_accuracy={scores['accuracy']:.4f}")
    return 0


def gradcheck_table(args: argparse.Namespace) -> int:
    from fnn import gradcheck

    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )
    images, labels = data.mnist("train")
    x = data.normalize(images[: args.batch_size])
    y = labels[: args.batch_size]
    k_init, k_drop = jax.random.split(jax.random.key(args.seed))
    params, state = model.init(k_init)
    report = gradcheck.check_model(model, F.cross_entropy, params, state, x, y, key=k_drop, train=True)
    print(
        f"gradient check on {args.batch_size} MNIST images, float64, train mode (BatchNorm batch statistics, "
        "a fixed dropout mask); Hv: Hessian-vector products along one random unit direction"
    )
    print(report)
    return 0 if report.passed else 1


COMMANDS = {"train": train, "evaluate": evaluate_run, "gradcheck": gradcheck_table}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as e:
        args.command_parser.error(str(e))  # argparse's one line and exit status 2
    except (ValueError, TypeError, OSError) as e:  # e.g. a checkpoint that does not match the model
        if os.environ.get("FNN_TRACEBACK"):
            raise
        print(f"fnn {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
