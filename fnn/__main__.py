"""Command line: ``python -m fnn train | evaluate | lr-find | report | gradcheck``.

``train`` fits a model on MNIST (bundled) or Fashion-MNIST, prints one line per epoch and,
as its last line, ``test_accuracy=<float>``. It writes into its run directory (``--out``;
by default a new ``runs/<dataset>-<model>-<time>``): ``config.json`` (every argument, enough
to rebuild the run), ``history.json``, ``checkpoint.npz`` (the latest epoch), ``best.npz``
(the epoch with the lowest test loss), ``report.html`` (``fnn.diagnostics.report``) and,
with matplotlib, ``curves.png``. An ``--out`` that already holds a run needs ``--resume``
(go on from it; the config must match) or ``--overwrite``. Its defaults (BatchNorm +
Dropout MLP 784-512-512-10, SGD momentum 0.9, lr 0.1 with cosine decay, weight decay 5e-4
on weights, 10 epochs of batch 128) reach ≥ 98% on MNIST in under a minute on 2 CPU cores.

By default ``train`` also monitors every layer inside the compiled epoch
(``fnn.diagnostics.Probe()``, about 32 points an epoch) and writes the series to
``diagnostics.json`` (``{"every", "epochs": [{"epoch", **record["probe"]}], "diagnoses"}``,
also after a divergence, for the epochs completed); ``history.json`` then holds the
per-epoch numbers without the series. ``--no-monitor`` turns that off; config.json records
it (``"monitor": false``).

``--dtype`` (float32 by default; float64, bfloat16, float16) is the run's precision.
float32 and float64 are the dtype of the model's parameters and BatchNorm statistics
(torch's factory keyword, DTYPE-1); the images are cast to it where they are loaded, the
optimizer state follows the parameters, and float64 runs with JAX's 64-bit mode on for that
command only. ``bfloat16`` and ``float16`` mean mixed precision (DTYPE-4,
``fnn.train.precision``): parameters, optimizer state and BatchNorm statistics are float32
master copies, each step's forward and backward run in that dtype on cast copies, the loss
and BatchNorm's statistics in float32, and the update is applied in float32; evaluation
and the checkpoints use the float32 parameters. There is no loss scaling (float16 gradients
below ~6e-8 flush to zero). The pure reduced-precision run (parameters and optimizer state in
bfloat16) is no longer offered by the CLI; the library still gives it with
``models.mlp(..., dtype="bfloat16")``. config.json records ``"master_weights": true``; runs
written before, without it, are rebuilt with bfloat16/float16 parameters as they were
trained. ``evaluate`` reads the dtype back from ``config.json``.

``lr-find`` takes train's model, data and optimizer options and runs the LR range test
(``fnn.diagnostics.lr_find``: ``--steps`` steps, default 100, of exponentially growing
learning rates from ``--min-lr`` 1e-7 to ``--max-lr`` 10, on a copy of the model built as
``train`` would build it with the same ``--seed``). It writes ``lr_find.json`` (the curve,
where it diverged, the suggestion and its rule) and, with matplotlib, ``lr_find.png`` into
``--out`` (default a new ``runs/<dataset>-<model>-lr-find-<time>``), and prints
``suggested_lr=<float>`` as its last line; exit status 3 when the loss is non-finite already
at the first step.

``evaluate DIR`` rebuilds the model from ``DIR/config.json``, loads its checkpoint and
prints ``test_loss=… test_accuracy=…``. ``report DIR`` rebuilds ``DIR/report.html`` from the
run directory and prints ``report: <path>``; a missing directory, config or checkpoint, or
malformed JSON, is argparse's one ``error:`` line (exit 2), as for ``evaluate``.
``gradcheck`` prints the three-way gradient table (manual backward vs jax.grad vs finite
differences, gradients and Hessian-vector products) of an MNIST-sized MLP.

Exit status: 0 done; 2 a bad argument (argparse's one-line ``error:``); 3 training
diverged (one line says where, and to try a smaller ``--lr``); 1 any other failure, as one
line (``FNN_TRACEBACK=1`` shows the traceback instead). Never a traceback for a user's
mistake.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time

import jax

from fnn import data, models, nn, optim, runs
from fnn import functional as F

# The run-directory helpers live in fnn.runs (fnn.diagnostics.report rebuilds runs too);
# the names stay importable from here.
from fnn.runs import MOMENTUM_OPTIMIZERS, build_model, build_optimizer, load_data, numerics

DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}
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


def _add_setup_options(p: argparse.ArgumentParser) -> None:
    """The model, data and optimizer options that ``train`` and ``lr-find`` share."""
    p.add_argument("--model", choices=["softmax", "mlp"], default="mlp")
    m = p.add_argument_group("MLP (--model mlp)")
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
        default=None,
        help="Fashion-MNIST IDX directory (else $FNN_DATA_DIR, else /usr/share/datasets/fashion-mnist)",
    )
    p.add_argument("--optimizer", choices=sorted(DEFAULT_LR), default="sgd")
    p.add_argument("--momentum", type=float, default=None, help="sgd and rmsprop momentum, default 0.9")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="decays weights (ndim >= 2), not biases")
    p.add_argument("--batch-size", type=_positive(int, "an integer >= 1"), default=128)
    p.add_argument("--grad", choices=["autodiff", "manual"], default="autodiff")
    p.add_argument("--seed", type=int, default=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fnn", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on MNIST / Fashion-MNIST and print the test accuracy")
    _add_setup_options(t)
    t.add_argument(
        "--lr",
        type=_positive(float, "a finite number > 0"),
        default=None,
        help="default: 0.1 for sgd, else the usual Adam-family values",
    )
    t.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    t.add_argument("--epochs", type=_positive(int, "an integer >= 1"), default=10)
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
    f = sub.add_parser(
        "lr-find", help="LR range test: train briefly at growing learning rates and suggest one"
    )
    _add_setup_options(f)
    f.add_argument(
        "--min-lr", type=_positive(float, "a finite number > 0"), default=1e-7, help="default 1e-7"
    )
    f.add_argument("--max-lr", type=_positive(float, "a finite number > 0"), default=10.0, help="default 10")
    f.add_argument("--steps", type=_positive(int, "an integer >= 2"), default=100, help="default 100")
    f.add_argument(
        "--out",
        default=None,
        help="directory for lr_find.png and lr_find.json (default: a new one under runs/)",
    )
    # What config_of reads but the range test sets itself (the lr) or does not have (epochs).
    f.set_defaults(
        lr=None,
        schedule="constant",
        epochs=1,
        early_stopping=None,
        reduce_lr_on_plateau=False,
        resume=False,
        overwrite=False,
        no_monitor=True,
    )
    r = sub.add_parser("report", help="rebuild DIR/report.html, the one-file HTML report of a run")
    r.add_argument("dir", help="a run directory written by `python -m fnn train`")
    r.add_argument("--data-dir", default=None, help="override the run's Fashion-MNIST directory")
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
        "master_weights": args.dtype in runs.MIXED_DTYPES,
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
    return [{k: v for k, v in h.items() if k != "probe"} for h in history]


def write_diagnostics(out: str, history: list[dict], monitor: bool, extra: list[dict] = ()) -> None:
    """``DIR/diagnostics.json``: the monitor series of every epoch and the diagnoses found
    (``extra``: those of a diverged epoch, which has no record); without a monitor, nothing
    (and no stale file from an overwritten run)."""
    path = os.path.join(out, "diagnostics.json")
    series = [{"epoch": h["epoch"], **h["probe"]} for h in history if "probe" in h]
    if not monitor:
        if os.path.exists(path):
            os.unlink(path)
        return
    every = series[0]["every"] if series else None
    diagnoses = [d for h in history for d in h.get("diagnoses", [])] + list(extra)
    with open(path, "w") as f:
        found = {"every": every, "epochs": series, "diagnoses": diagnoses}
        json.dump(_strict_json(found), f, allow_nan=False)


def _strict_json(tree):
    """``tree`` with every non-finite float as None: strict JSON has no NaN or Infinity (an
    update ratio is inf when a zero weight moves), and every reader takes None as missing."""
    if isinstance(tree, dict):
        return {k: _strict_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_strict_json(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


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
    """The epoch's line, then one line per diagnosis found in it."""
    lr = f"  lr {h['lr']:.3g}" if "lr" in h else ""
    print(
        f"epoch {h['epoch']:3d}/{epochs}  train_loss {h['train_loss']:.4f}  "
        f"train_acc {h['train_accuracy']:.4f}  "
        f"test_loss {h['test_loss']:.4f}  test_acc {h['test_accuracy']:.4f}{lr}  {h['seconds']:.1f}s",
        flush=True,
    )
    _print_diagnoses(h.get("diagnoses", []))


def _print_diagnoses(diagnoses: list[dict]) -> None:
    if diagnoses:
        from fnn.diagnostics.rules import format_diagnosis

        for d in diagnoses:
            print(format_diagnosis(d), flush=True)


def train(args: argparse.Namespace) -> int:
    _check_combinations(args)
    config = config_of(args)
    with numerics(config["dtype"]):
        return _train(args, config)


def _train(args: argparse.Namespace, config: dict) -> int:
    from fnn import train as T  # imported here so `gradcheck` starts fast

    train_data, test_data = load_data(args.dataset, args.data_dir, runs.param_dtype(config))
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
            probe=config["monitor"],
            compute_dtype=runs.compute_dtype(config),
        )
    except T.TrainingDiverged as e:
        found = e.record.get("diagnoses", [])
        _print_diagnoses(found)
        write_diagnostics(out, e.result.history, config["monitor"], found)
        lr = f" at learning rate {e.lr:.3g}" if e.lr is not None else ""
        print(
            f"fnn: training diverged at epoch {e.epoch}, step {e.step} (loss {e.loss}){lr}; "
            f"try a smaller --lr (the last good state is in {os.path.join(out, 'diverged.npz')})",
            file=sys.stderr,
        )
        return EXIT_DIVERGED
    # The report below rebuilds the run from its directory, data included: the training set
    # held here would be a second copy at the run's peak memory.
    del train_data
    write_diagnostics(out, result.history, config["monitor"])
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({"config": config, "history": without_series(result.history)}, f, indent=1)
    if result.history and save_curves(
        result.history, os.path.join(out, "curves.png"), f"fnn {args.model} on {args.dataset}"
    ):
        print(f"curves: {os.path.join(out, 'curves.png')}")
    from fnn.diagnostics.report import write_report  # diagnostics sits above train: imported late

    print(f"report: {write_report(out, data_dir=args.data_dir)}")
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
    config = runs.read_json(os.path.join(args.dir, "config.json"))
    with numerics(config.get("dtype", "float32") if isinstance(config, dict) else "float32"):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from fnn import train as T

    run = runs.load_run(args.dir, args.checkpoint, args.data_dir, train_data=False)
    ts = run.train_state
    scores = T.evaluate(run.model, ts.params, ts.state, run.test_data, loss=nn.CrossEntropyLoss())
    print(f"{run.checkpoint_path}: epoch {run.meta['epoch']}")
    print(f"test_loss={scores['loss']:.4f} test_accuracy={scores['accuracy']:.4f}")
    return 0


# config_of keys that the range test does not use: it sweeps the lr itself and trains no epochs.
_NOT_LR_FIND = ("lr", "schedule", "epochs", "early_stopping", "reduce_lr_on_plateau", "monitor")


def lr_find_command(args: argparse.Namespace) -> int:
    _check_combinations(args)
    if args.steps < 2:
        raise UsageError(f"--steps must be an integer >= 2 (the range needs its two ends), got {args.steps}")
    if not args.max_lr > args.min_lr:
        raise UsageError(f"--max-lr must be greater than --min-lr, got {args.min_lr} and {args.max_lr}")
    config = config_of(args)
    with numerics(config["dtype"]):
        return _lr_find(args, {k: v for k, v in config.items() if k not in _NOT_LR_FIND})


def _lr_find(args: argparse.Namespace, config: dict) -> int:
    from fnn.diagnostics import lr_find

    train_data, _ = load_data(args.dataset, args.data_dir, runs.param_dtype(config))
    n = len(train_data[0])
    if args.batch_size > n:
        raise UsageError(f"--batch-size {args.batch_size} is larger than the training set ({n} samples)")
    out = args.out or os.path.join(
        "runs", f"{args.dataset}-{args.model}-lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    model = build_model(config)
    print(
        f"fnn lr-find: {args.model} on {args.dataset}, {args.optimizer}, {args.steps} steps of batch "
        f"{args.batch_size}, lr {args.min_lr:g} to {args.max_lr:g}, grad={args.grad}, {config['dtype']}, "
        f"device {jax.devices()[0].platform}, out {out}",
        flush=True,
    )
    try:
        result = lr_find(
            model,
            nn.CrossEntropyLoss(),
            lambda lr: build_optimizer({**config, "lr": lr, "schedule": "constant"}, 1),
            train_data,
            key=jax.random.key(args.seed),
            min_lr=args.min_lr,
            max_lr=args.max_lr,
            steps=args.steps,
            batch_size=args.batch_size,
            grad=args.grad,
            compute_dtype=runs.compute_dtype(config),
        )
    except FloatingPointError as e:
        print(f"fnn lr-find: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_DIVERGED
    os.makedirs(out, exist_ok=True)
    summary = {
        "config": config,
        "min_lr": args.min_lr,
        "max_lr": args.max_lr,
        "steps": args.steps,
        "suggested_lr": result.suggested_lr,
        "rule": result.rule,
        "diverged_at": result.diverged_at,
        # JSON has no inf/NaN: a diverged step's loss is null.
        **{
            name: [float(v) if math.isfinite(v) else None for v in getattr(result, name).tolist()]
            for name in ("lrs", "losses", "smoothed")
        },
        "valid": result.valid.tolist(),
    }
    with open(os.path.join(out, "lr_find.json"), "w") as f:
        json.dump(summary, f, indent=1)
    where = (
        f"diverged at step {result.diverged_at + 1} (lr {result.lrs[result.diverged_at]:.3g})"
        if result.diverged_at is not None
        else "did not diverge within the range"
    )
    print(f"range test {where}; {result.rule}")
    png = os.path.join(out, "lr_find.png")
    if save_lr_find_plot(result, png, f"LR range test: {args.model} on {args.dataset}, {args.optimizer}"):
        print(f"plot: {png}")
    else:
        print("plot: matplotlib is not installed, no lr_find.png (pip install -e '.[plots]')")
    print(f"json: {os.path.join(out, 'lr_find.json')}")
    print(f"suggested_lr={result.suggested_lr:.6g}")
    return 0


def save_lr_find_plot(result, path: str, title: str) -> bool:
    """The range test's raw and smoothed loss against the lr, the suggestion marked, as a
    PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    import numpy as np

    end = len(result.lrs) if result.diverged_at is None else result.diverged_at
    losses = np.where(np.isfinite(result.losses), result.losses, np.nan)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.semilogx(result.lrs, losses, color="0.6", lw=0.8, label="loss per step")
    ax.semilogx(result.lrs[:end], result.smoothed[:end], color="tab:blue", lw=2, label="smoothed loss")
    if result.diverged_at is not None:
        ax.axvline(result.lrs[end], color="tab:red", ls=":", label=f"diverged: lr {result.lrs[end]:.3g}")
    ax.axvline(result.suggested_lr, color="tab:green", lw=2, label=f"suggested lr {result.suggested_lr:.3g}")
    ax.set_ylim(0, 2 * float(result.smoothed[0]))  # what matters is below the start; a blow-up is cut off
    ax.set(xlabel="learning rate (log scale)", ylabel="training cross-entropy loss", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


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


def report_run(args: argparse.Namespace) -> int:
    from fnn.diagnostics.report import write_report

    print(f"report: {write_report(args.dir, data_dir=args.data_dir)}")
    return 0


COMMANDS = {
    "train": train,
    "evaluate": evaluate_run,
    "lr-find": lr_find_command,
    "report": report_run,
    "gradcheck": gradcheck_table,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, runs.RunError) as e:
        args.command_parser.error(str(e))  # argparse's one line and exit status 2
    except (ValueError, TypeError, OSError) as e:  # e.g. a checkpoint that does not match the model
        if os.environ.get("FNN_TRACEBACK"):
            raise
        print(f"fnn {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
