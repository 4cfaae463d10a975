"""The run directory of ``python -m fnn train`` and ``lr-find``: its config, files and rebuild.

A run directory holds ``config.json`` (every option, defaults filled in: ``config_of``),
``history.json`` (``{"config", "history": [epoch records without the probe series]}``),
fit's checkpoints (``fnn.train.checkpointing``: ``checkpoint.npz``, ``best.npz``,
``diverged.npz``), with the probe on ``diagnostics.json`` (``{"every", "epochs": [{"epoch",
**record["probe"]}], "diagnoses"}``, strict JSON), ``curves.svg`` and ``report.html``
(``fnn.diagnostics.report``). An lr-find directory holds ``lr_find.json`` and
``lr_find.svg``. Figures are drawn with ``fnn.diagnostics.svg.line_chart``.

``load_run`` / ``open_run`` rebuild a run's model, optimizer, data and TrainState from its
config and checkpoint, for ``evaluate`` and the report. Anything missing or unreadable
raises ``RunError``, one line naming the file and the problem; the command line prints it
as argparse's ``error:`` line (exit 2).

This module imports ``fnn.diagnostics`` only inside the functions that draw a figure or
write the report: ``fnn.diagnostics.report`` reads runs through this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import time
from collections.abc import Iterator
from html import escape as html_escape
from typing import Any, NamedTuple

import jax
import numpy as np

from fnn import checkpoint, data, models, nn, optim
from fnn.train import checkpointing, init_train_state

__all__ = [
    "CNN_DEFAULTS",
    "DEFAULT_LR",
    "MIXED_DTYPES",
    "MODELS",
    "MOMENTUM_OPTIMIZERS",
    "LoadedRun",
    "RunError",
    "build_model",
    "build_optimizer",
    "compute_dtype",
    "config_of",
    "default_dir",
    "load_data",
    "load_run",
    "normalization",
    "numerics",
    "open_run",
    "param_dtype",
    "read_json",
    "start_run",
    "strict_json",
    "write_curves",
    "write_diagnostics",
    "write_history",
    "write_lr_find",
    "write_results",
]

MODELS = ("softmax", "mlp", "lenet5", "cnn")
# fnn.models.cnn's configuration as the command line's defaults fill it in (config.json).
CNN_DEFAULTS = {
    "channels": (32, 64),
    "convs_per_stage": 2,
    "hidden": (128,),
    "dropout": 0.25,
    "batch_norm": True,
}
DEFAULT_LR = {"sgd": 0.1, "adagrad": 0.01, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3}
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
MIXED_DTYPES = ("bfloat16", "float16")
_CONFIG_KEYS = (
    "model",
    "dataset",
    "optimizer",
    "lr",
    "weight_decay",
    "schedule",
    "epochs",
    "batch_size",
    "seed",
    "dtype",
)
# config_of keys that lr-find does not use: it sweeps the lr itself and trains no epochs.
_NOT_LR_FIND = ("lr", "schedule", "epochs", "early_stopping", "reduce_lr_on_plateau", "monitor")


class RunError(ValueError):
    """A run directory (or the dataset it names) that cannot be read: a missing directory,
    file or dataset, or malformed JSON. The message is one line naming the path."""


def read_json(path: str | os.PathLike, what: str = "a run directory written by `python -m fnn train`") -> Any:
    """The parsed JSON file at ``path``.

    Args:
        path: the file.
        what: what the file's directory must be, for the message when it is missing.

    Returns:
        The parsed value.

    Raises:
        RunError: the file is missing or not valid JSON.

    Example:
        >>> from fnn.runs import read_json
        >>> read_json("/nonexistent/config.json", what="a run directory")
        Traceback (most recent call last):
        ...
        fnn.runs.RunError: /nonexistent/config.json not found: DIR must be a run directory
    """
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise RunError(f"{path} not found: DIR must be {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is not valid JSON ({e})") from None


def config_of(args: Any, command: str = "train") -> dict:
    """Everything that defines a run, with defaults filled in: what ``config.json`` holds.

    Args:
        args: the parsed options of ``train`` or ``lr-find`` (an ``argparse.Namespace``).
        command: ``"train"``, or ``"lr-find"`` to leave out what the range test sets
            itself (the lr, its schedule) or does not have (epochs, callbacks, probe).

    Returns:
        The config dict; the MLP's keys only for ``--model mlp``, the CNN's (``CNN_DEFAULTS``)
        only for ``--model cnn``.
    """
    default_momentum = 0.9 if args.optimizer in MOMENTUM_OPTIMIZERS else None
    config = {
        "model": args.model,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "optimizer": args.optimizer,
        "lr": DEFAULT_LR[args.optimizer] if args.lr is None else args.lr,
        "momentum": default_momentum if args.momentum is None else args.momentum,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "grad": args.grad,
        "seed": args.seed,
        "early_stopping": args.early_stopping,
        "reduce_lr_on_plateau": args.reduce_lr_on_plateau,
        "dtype": args.dtype,
        "master_weights": args.dtype in MIXED_DTYPES,
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
    if args.model == "cnn":
        d = CNN_DEFAULTS
        config.update(
            channels=list(args.channels or d["channels"]),
            convs_per_stage=d["convs_per_stage"],
            hidden=list(args.hidden or d["hidden"]),
            dropout=d["dropout"] if args.dropout is None else args.dropout,
            batch_norm=d["batch_norm"] if args.batch_norm is None else args.batch_norm,
        )
    if command == "lr-find":
        return {k: v for k, v in config.items() if k not in _NOT_LR_FIND}
    return config


def build_model(config: dict) -> nn.Sequential:
    """The model ``config.json`` describes (``--model``, ``--hidden``, ``--channels``, ...).

    Args:
        config: a run's config (``config_of``).

    Returns:
        The ``Sequential`` spec in ``param_dtype(config)``.

    Example:
        >>> from fnn.runs import build_model
        >>> layer = build_model({"model": "softmax", "dtype": "float32"})[1]
        >>> layer.in_features, layer.out_features, layer.dtype
        (784, 10, 'float32')
    """
    dtype = param_dtype(config)
    if config["model"] == "softmax":
        return models.softmax_regression(dtype=dtype)
    if config["model"] == "lenet5":
        return models.lenet5(dtype=dtype)
    if config["model"] == "cnn":
        return models.cnn(
            tuple(config["channels"]),
            config["convs_per_stage"],
            hidden=config["hidden"][0],
            batch_norm=config["batch_norm"],
            dropout=config["dropout"],
            dtype=dtype,
        )
    return models.mlp(
        hidden=tuple(config["hidden"]),
        activation=config["activation"],
        dropout=config["dropout"],
        batch_norm=config["batch_norm"],
        init=config["init"],
        dtype=dtype,
    )


def param_dtype(config: dict) -> str:
    """The dtype of a run's parameters: float32 for a mixed-precision run (``--dtype
    bfloat16/float16``, ``"master_weights": true`` in its config), else the config's ``dtype``.

    Args:
        config: a run's config.

    Returns:
        A dtype name.

    Example:
        >>> from fnn.runs import param_dtype
        >>> param_dtype({"dtype": "bfloat16"}), param_dtype({"dtype": "float64"})
        ('float32', 'float64')
    """
    return "float32" if config["dtype"] in MIXED_DTYPES else config["dtype"]


def compute_dtype(config: dict) -> str | None:
    """The ``compute_dtype=`` of a run's steps (``fnn.train.fit``): the config's ``dtype`` for a
    mixed-precision run, else None (compute in the parameters' dtype).

    Args:
        config: a run's config.

    Returns:
        ``"bfloat16"``, ``"float16"`` or None.
    """
    return config["dtype"] if config["dtype"] in MIXED_DTYPES else None


def numerics(dtype: str) -> contextlib.AbstractContextManager:
    """JAX's 64-bit mode for a float64 run, scoped to the command (a process-wide switch
    would also make every integer int64 for whoever calls ``main`` next).

    Args:
        dtype: the run's parameter dtype name.

    Returns:
        A context manager: ``jax.enable_x64(True)`` for ``"float64"``, else a no-op.
    """
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def build_optimizer(config: dict, steps_per_epoch: int) -> optim.GradientTransformation:
    """The optimizer (and cosine schedule) ``config.json`` describes.

    Args:
        config: a run's config.
        steps_per_epoch: optimizer steps per epoch (the cosine schedule's length is
            ``epochs * steps_per_epoch``).

    Returns:
        The gradient transformation.
    """
    lr = config["lr"]
    if config["schedule"] == "cosine":
        lr = optim.cosine_annealing_lr(lr, T_max=max(config["epochs"] * steps_per_epoch, 1))
    name, wd = config["optimizer"], config["weight_decay"]
    if name in MOMENTUM_OPTIMIZERS:
        return getattr(optim, name)(lr=lr, momentum=config["momentum"], weight_decay=wd)
    return getattr(optim, name)(lr=lr, weight_decay=wd)


def normalization(dataset: str) -> tuple[float, float]:
    """The (mean, std) the run's images were normalized with, to show them as pixels again.

    Args:
        dataset: ``"mnist"`` or ``"fashion-mnist"``.

    Returns:
        ``(mean, std)`` of the raw pixel values scaled to [0, 1].
    """
    if dataset == "mnist":
        return data.MNIST_MEAN, data.MNIST_STD
    return data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD


def load_data(dataset: str, data_dir: str | None, dtype: str = "float32", *, train_images: bool = True):
    """((x, y) train, (x, y) test), normalized and cast to the model's ``dtype`` (layers
    refuse another dtype, DTYPE-2).

    Args:
        dataset: ``"mnist"`` (bundled) or ``"fashion-mnist"``.
        data_dir: the Fashion-MNIST IDX directory (None: ``$FNN_DATA_DIR`` or the default).
        dtype: the model's parameter dtype.
        train_images: False leaves ``x_train`` out (None): for a caller that only needs
            the test set and the training set's size (``len(y_train)``), without a float
            copy of 60k images on the device.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``.

    Raises:
        RunError: the dataset is not where it was looked for.
    """
    mean, std = normalization(dataset)
    loader = data.mnist if dataset == "mnist" else functools.partial(data.fashion_mnist, root=data_dir)
    try:
        (xtr, ytr), (xte, yte) = loader("train"), loader("test")
    except FileNotFoundError as e:
        raise RunError(" ".join(str(e).split())) from None

    # Normalized on the device: the float images exist once, where training reads them (a
    # host float copy beside the device one cost ~220 MB of the CLI's peak RSS).
    def prepare(images):
        return _as_dtype(data.normalize(jax.numpy.asarray(images), mean, std), dtype)

    return (prepare(xtr) if train_images else None, ytr), (prepare(xte), yte)


def _as_dtype(x, dtype: str):
    # numpy has no bfloat16 of its own: jnp.dtype resolves the name to ml_dtypes' type.
    return x.astype(jax.numpy.dtype(dtype), copy=False)


class LoadedRun(NamedTuple):
    """A run rebuilt from its directory (see ``load_run``)."""

    config: dict
    model: nn.Sequential
    train_state: Any
    meta: dict
    checkpoint_path: str
    train_data: tuple
    test_data: tuple


def load_run(
    run_dir: str | os.PathLike,
    which: str = "latest",
    data_dir: str | None = None,
    *,
    train_data: bool = True,
) -> LoadedRun:
    """Rebuild the model, its data and the checkpointed TrainState of a run directory. Call
    it inside ``numerics(config["dtype"])`` for a float64 run, or use ``open_run``.

    Args:
        run_dir: a directory written by ``python -m fnn train``.
        which: ``"latest"`` (``checkpoint.npz``) or ``"best"`` (``best.npz``).
        data_dir: overrides the config's Fashion-MNIST directory.
        train_data: False skips the normalized training images (``LoadedRun.train_data``
            is None) for callers that read only the test set, as ``evaluate`` and
            ``report`` do; the optimizer's schedule still gets the training set's size.

    Returns:
        ``LoadedRun(config, model, train_state, meta, checkpoint_path, train_data, test_data)``;
        ``meta`` is the checkpoint's metadata (``meta["epoch"]``).

    Raises:
        RunError: a missing directory, config or checkpoint, malformed JSON, a missing dataset.
        ValueError: a checkpoint that does not match the config's model.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise RunError(
            f"{run_dir} is not a directory: DIR must be a run directory written by `python -m fnn train`"
        )
    if which not in ("latest", "best"):
        raise ValueError(f"which must be one of ['best', 'latest'], got {which!r}")
    config = read_json(os.path.join(run_dir, "config.json"))
    missing = [k for k in _CONFIG_KEYS if k not in config] if isinstance(config, dict) else ["model"]
    if missing:
        raise RunError(f"{os.path.join(run_dir, 'config.json')} is not a run config: no {', '.join(missing)}")
    path = checkpointing.paths(run_dir)[which]
    if not os.path.exists(path):
        raise RunError(f"{path} not found (the run wrote no {which} checkpoint)")
    where = data_dir or config.get("data_dir")
    train, test_data = load_data(config["dataset"], where, param_dtype(config), train_images=train_data)
    model = build_model(config)
    opt = build_optimizer(config, len(train[1]) // config["batch_size"])
    like = init_train_state(model, opt, jax.random.key(config["seed"]))
    ts, meta = checkpoint.load(path, like=like)
    return LoadedRun(config, model, ts, meta, path, train if train_data else None, test_data)


@contextlib.contextmanager
def open_run(
    run_dir: str | os.PathLike, which: str = "latest", data_dir: str | None = None, *, train_data: bool = True
) -> Iterator[LoadedRun]:
    """``load_run`` inside the run's ``numerics``, which stay on for the ``with`` block.

    Args:
        run_dir, which, data_dir, train_data: as for ``load_run``.

    Returns:
        A context manager giving the ``LoadedRun``.

    Raises:
        RunError, ValueError: as ``load_run``; its ``config.json`` is read first.
    """
    config = read_json(os.path.join(run_dir, "config.json"))
    with numerics(config.get("dtype") if isinstance(config, dict) else None):
        yield load_run(run_dir, which, data_dir, train_data=train_data)


# ---------------------------------------------------------------- writing a run


def default_dir(dataset: str, model: str, command: str = "train") -> str:
    """A new run directory under ``runs/``, named by what runs and when.

    Args:
        dataset: the dataset's name.
        model: the model's name.
        command: ``"train"``, or ``"lr-find"`` (its directory says so).

    Returns:
        ``runs/<dataset>-<model>-<time>`` or ``runs/<dataset>-<model>-lr-find-<time>``.
    """
    what = "-lr-find" if command == "lr-find" else ""
    return os.path.join("runs", f"{dataset}-{model}{what}-{time.strftime('%Y%m%d-%H%M%S')}")


def start_run(out: str, config: dict, *, resume: bool, overwrite: bool) -> None:
    """Make the run directory ``out`` and write its ``config.json``.

    Args:
        out: the run directory (created when missing).
        config: the run's config (``config_of``).
        resume: the run already in ``out`` (if any) is to be continued.
        overwrite: the run already in ``out`` (if any) is to be replaced.

    Raises:
        fnn.train.checkpointing.RunExistsError: ``out`` holds a run and neither flag is set;
            nothing is written.
    """
    checkpointing.check_start(out, resume, overwrite)
    os.makedirs(out, exist_ok=True)
    _write_json(os.path.join(out, "config.json"), config, indent=1)


def strict_json(tree: Any) -> Any:
    """``tree`` with every non-finite float as None: strict JSON has no NaN or Infinity (an
    update ratio is inf when a zero weight moves), and every reader takes None as missing.

    Args:
        tree: dicts, lists, tuples and JSON scalars.

    Returns:
        The same structure (tuples as lists), non-finite floats replaced by None.

    Example:
        >>> strict_json({"loss": [0.5, float("nan")], "ratio": float("inf")})
        {'loss': [0.5, None], 'ratio': None}
    """
    if isinstance(tree, dict):
        return {k: strict_json(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [strict_json(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def _write_json(path: str, value: Any, indent: int | None = None) -> str:
    with open(path, "w") as f:
        json.dump(value, f, indent=indent)
    return path


def write_diagnostics(out: str, history: list[dict], probed: bool, extra: list[dict] = ()) -> str | None:
    """Write ``out/diagnostics.json``: the probe series of every epoch and the diagnoses found.

    Args:
        out: the run directory.
        history: fit's epoch records (``record["probe"]``, ``record["diagnoses"]``).
        probed: whether the run was probed; False writes nothing and removes the file an
            overwritten run may have left.
        extra: diagnoses of a diverged epoch, which has no record.

    Returns:
        The file's path, or None when ``probed`` is False.
    """
    path = os.path.join(out, "diagnostics.json")
    if not probed:
        if os.path.exists(path):
            os.unlink(path)
        return None
    series = [{"epoch": h["epoch"], **h["probe"]} for h in history if "probe" in h]
    diagnoses = [d for h in history for d in h.get("diagnoses", [])] + list(extra)
    found = {"every": series[0]["every"] if series else None, "epochs": series, "diagnoses": diagnoses}
    return _write_json(path, strict_json(found))


def write_history(out: str, config: dict, history: list[dict]) -> str:
    """Write ``out/history.json``: the config and the epoch records without the probe series
    (those live in ``diagnostics.json``).

    Args:
        out: the run directory.
        config: the run's config.
        history: fit's epoch records.

    Returns:
        The file's path.
    """
    records = [{k: v for k, v in h.items() if k != "probe"} for h in history]
    return _write_json(os.path.join(out, "history.json"), {"config": config, "history": records}, 1)


def _px(svg: str, name: str) -> float:
    """The ``width`` or ``height`` attribute of ``svg``'s opening tag, in px."""
    found = re.search(rf'(?<![\w-]){name}="([0-9.]+)"', svg[: svg.find(">")])
    return float(found.group(1)) if found else 0.0


def _svg_file(charts: list[str], title: str | None = None) -> str:
    """Charts side by side, under ``title`` when given, as one standalone SVG document."""
    top = 24 if title else 0
    sizes = [(_px(c, "width"), _px(c, "height")) for c in charts]
    width, height = sum(w for w, _ in sizes), max(h for _, h in sizes) + top
    parts, x = [], 0.0
    if title:
        parts.append(
            f'<text x="{width / 2:g}" y="16" text-anchor="middle" font-family="sans-serif" '
            f'font-size="14" font-weight="bold">{html_escape(title)}</text>'
        )
    for chart, (w, _) in zip(charts, sizes, strict=True):
        parts.append(f'<g transform="translate({x:g},{top})">{chart}</g>')
        x += w
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}">{"".join(parts)}</svg>\n'
    )


def write_curves(out: str, history: list[dict], title: str) -> str | None:
    """Write ``out/curves.svg``: loss and accuracy per epoch, train and test.

    Args:
        out: the run directory.
        history: fit's epoch records (``train_loss``, ``train_accuracy`` and, with
            evaluation, ``test_loss``, ``test_accuracy``).
        title: the figure's title.

    Returns:
        The file's path, or None for an empty history (nothing is written).
    """
    from fnn.diagnostics.svg import line_chart

    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    charts = []
    for metric, ylabel in (("loss", "cross-entropy loss"), ("accuracy", "accuracy")):
        series = [
            (split, epochs, [h[f"{split}_{metric}"] for h in history])
            for split in ("train", "test")
            if f"{split}_{metric}" in history[0]
        ]
        charts.append(
            line_chart(
                series,
                title=metric,
                xlabel="epoch",
                ylabel=ylabel,
                integer_x=True,
                percent=metric == "accuracy",
            )
        )
    path = os.path.join(out, "curves.svg")
    with open(path, "w") as f:
        f.write(_svg_file(charts, title))
    return path


def _lr_find_chart(result: Any, title: str) -> str:
    """The range test's raw and smoothed loss against log10(lr), the suggestion marked."""
    from fnn.diagnostics.svg import line_chart

    log_lrs = np.log10(result.lrs)
    end = len(log_lrs) if result.diverged_at is None else result.diverged_at
    cap = 2 * float(result.smoothed[0])  # what matters is below the start; a blow-up is cut off
    vlines = [(math.log10(result.suggested_lr), f"suggested lr {result.suggested_lr:.3g}")]
    if result.diverged_at is not None:
        vlines.append((float(log_lrs[end]), f"diverged: lr {result.lrs[end]:.3g}"))
    series = [
        ("loss per step (cut at 2x the first)", log_lrs, np.minimum(result.losses, cap), {"color": 7}),
        ("smoothed loss", log_lrs[:end], result.smoothed[:end], {"color": 0}),
    ]
    return line_chart(
        series,
        title=title,
        xlabel="learning rate (log10)",
        ylabel="training cross-entropy loss",
        y_range=(0.0, cap),
        markers=False,
        vlines=vlines,
        width=640,
        height=360,
    )


def write_lr_find(
    out: str, config: dict, result: Any, *, min_lr: float, max_lr: float, title: str
) -> tuple[str, str]:
    """Write an LR range test's ``lr_find.json`` (the curve, where it diverged, the suggestion
    and its rule; a non-finite loss is null) and ``lr_find.svg`` into ``out``.

    Args:
        out: the directory (created when missing).
        config: the range test's config (``config_of(args, "lr-find")``).
        result: the ``fnn.diagnostics.LRFindResult``.
        min_lr, max_lr: the range swept.
        title: the plot's title.

    Returns:
        ``(json path, svg path)``.
    """
    os.makedirs(out, exist_ok=True)
    summary = {
        "config": config,
        "min_lr": min_lr,
        "max_lr": max_lr,
        "steps": len(result.lrs),
        "suggested_lr": result.suggested_lr,
        "rule": result.rule,
        "diverged_at": result.diverged_at,
        **{name: strict_json(getattr(result, name).tolist()) for name in ("lrs", "losses", "smoothed")},
        "valid": result.valid.tolist(),
    }
    svg_path = os.path.join(out, "lr_find.svg")
    with open(svg_path, "w") as f:
        f.write(_svg_file([_lr_find_chart(result, title)]))
    return _write_json(os.path.join(out, "lr_find.json"), summary, indent=1), svg_path


def write_results(
    out: str, config: dict, history: list[dict], *, data_dir: str | None, title: str
) -> dict[str, str]:
    """Write what a finished run adds to its directory: ``diagnostics.json`` (with the
    probe), ``history.json``, ``curves.svg`` and ``report.html``.

    Args:
        out: the run directory (its checkpoints written by ``fit``).
        config: the run's config.
        history: fit's epoch records.
        data_dir: overrides the config's Fashion-MNIST directory for the report.
        title: the curves' title.

    Returns:
        ``{"curves": path, "report": path}`` (no ``"curves"`` for an empty history), the
        figures a reader opens.
    """
    from fnn.diagnostics.report import write_report

    write_diagnostics(out, history, config["monitor"])
    write_history(out, config, history)
    curves = write_curves(out, history, title)
    written = {"curves": curves} if curves else {}
    return {**written, "report": write_report(out, data_dir=data_dir)}
