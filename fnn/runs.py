"""The run directory of ``python -m fnn train``: rebuild a run's model, optimizer, data and
train state from its ``config.json`` and checkpoint.

The command line (``train``, ``evaluate``, ``report``) and ``fnn.diagnostics.report`` share
these, so they live below both: this module imports ``fnn.train`` (lazily, so that commands
which do not train start fast) and never ``fnn.diagnostics`` or ``fnn.__main__``.

A run directory holds ``config.json`` (every CLI argument, defaults filled in),
``history.json`` (``{"config": ..., "history": [epoch records]}``), ``checkpoint.npz``
(the latest epoch), ``best.npz`` (the lowest test loss) and, when monitors ran,
``diagnostics.json``. Anything missing or unreadable that the caller needs raises
``RunError`` with one line naming the file and the problem; the CLI prints it as
argparse's ``error:`` line (exit 2).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any, NamedTuple

import jax

from fnn import checkpoint, data, models, nn, optim

__all__ = [
    "CHECKPOINTS",
    "MOMENTUM_OPTIMIZERS",
    "LoadedRun",
    "RunError",
    "build_model",
    "build_optimizer",
    "load_data",
    "load_run",
    "normalization",
    "numerics",
    "read_json",
]

MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")
CHECKPOINTS = {"latest": "checkpoint.npz", "best": "best.npz"}
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
)


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


def build_model(config: dict) -> nn.Sequential:
    """The model ``config.json`` describes (``--model``, ``--hidden``, ...).

    Args:
        config: a run's config (``fnn.__main__.config_of``).

    Returns:
        The ``Sequential`` spec in ``param_dtype(config)``; runs written before ``--dtype``
        existed are float32.

    Example:
        >>> from fnn.runs import build_model
        >>> layer = build_model({"model": "softmax"})[1]
        >>> layer.in_features, layer.out_features, layer.dtype
        (784, 10, 'float32')
    """
    dtype = param_dtype(config)
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


MIXED_DTYPES = ("bfloat16", "float16")


def param_dtype(config: dict) -> str:
    """The dtype of a run's parameters: float32 for a mixed-precision run (``"master_weights"``
    in its config, written by ``--dtype bfloat16/float16``), else the config's ``dtype``.

    Args:
        config: a run's config.

    Returns:
        A dtype name.

    Example:
        >>> from fnn.runs import param_dtype
        >>> param_dtype({"dtype": "bfloat16", "master_weights": True}), param_dtype({"dtype": "bfloat16"})
        ('float32', 'bfloat16')
    """
    dtype = config.get("dtype", "float32")
    return "float32" if config.get("master_weights") and dtype in MIXED_DTYPES else dtype


def compute_dtype(config: dict) -> str | None:
    """The ``compute_dtype=`` of a run's steps (``fnn.train.fit``): the config's ``dtype`` for a
    mixed-precision run, else None (compute in the parameters' dtype).

    Args:
        config: a run's config.

    Returns:
        ``"bfloat16"``, ``"float16"`` or None.
    """
    return config["dtype"] if param_dtype(config) != config.get("dtype", "float32") else None


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
    """Rebuild the model, its data and the checkpointed TrainState of a run directory, as
    ``python -m fnn evaluate`` does. Call it inside ``numerics(config["dtype"])`` for a
    float64 run (``load_run`` reads the config first, so read it with ``read_json``).

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
    from fnn import train as T

    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise RunError(
            f"{run_dir} is not a directory: DIR must be a run directory written by `python -m fnn train`"
        )
    if which not in CHECKPOINTS:
        raise ValueError(f"which must be one of {sorted(CHECKPOINTS)}, got {which!r}")
    config = read_json(os.path.join(run_dir, "config.json"))
    missing = [k for k in _CONFIG_KEYS if k not in config] if isinstance(config, dict) else ["model"]
    if missing:
        raise RunError(f"{os.path.join(run_dir, 'config.json')} is not a run config: no {', '.join(missing)}")
    path = os.path.join(run_dir, CHECKPOINTS[which])
    if not os.path.exists(path):
        raise RunError(f"{path} not found (the run wrote no {which} checkpoint)")
    where = data_dir or config.get("data_dir")
    train, test_data = load_data(config["dataset"], where, param_dtype(config), train_images=train_data)
    model = build_model(config)
    opt = build_optimizer(config, len(train[1]) // config["batch_size"])
    like = T.init_train_state(model, opt, jax.random.key(config["seed"]))
    ts, meta = checkpoint.load(path, like=like)
    return LoadedRun(config, model, ts, meta, path, train if train_data else None, test_data)
