"""Eval-mode passes over a whole dataset, each one compiled program: ``evaluate``, ``predict``.

Inside one ``jit``, a ``lax.scan`` runs the full batches, each sliced from the
device-resident data (no padded copy), and the last partial batch runs at its true size.
The model is first folded for eval (``fnn.nn.fold_batchnorm``, on by default: each
``Linear -> BatchNorm1d`` or ``Conv -> BatchNorm`` pair becomes one layer, the same
function up to float32 rounding), inside the program, so the current running statistics are always used.

``evaluate``'s loss is exact at the dataset level: the sum of the loss spec's
``per_sample`` terms over the sum of their weights equals the loss with
``reduction='mean'`` over all samples at once (class weights and ``ignore_index``
included), whatever the batch size; sums are kept in float32 (float64 for float64 models).
Only a BatchNorm1d with ``track_running_stats=False``, which normalizes each batch with
its own statistics in eval as in PyTorch (BN-5), makes the result depend on ``batch_size``.
Data and class labels are checked on the host before compiling (``check_data``,
``check_labels``): inside the compiled pass a bad value would only make the loss NaN.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import nn
from fnn._checks import check_batch_size, check_classes_in_range
from fnn.train.metrics import resolve_metrics

__all__ = ["check_data", "check_labels", "default_loss", "evaluate", "evaluate_checked", "predict"]


def default_loss(target: Any) -> nn.Loss:
    """CrossEntropyLoss for integer (class-index) targets, MSELoss otherwise.

    Args:
        target: the targets (only the dtype is read).

    Returns:
        ``nn.CrossEntropyLoss()`` or ``nn.MSELoss()``.

    Example:
        >>> default_loss(jnp.array([3]))
        CrossEntropyLoss(weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0)
        >>> default_loss(jnp.array([0.5]))
        MSELoss(reduction='mean')
    """
    return nn.CrossEntropyLoss() if jnp.issubdtype(jnp.result_type(target), jnp.integer) else nn.MSELoss()


def check_data(name: str, x: Any, y: Any, batch_size: int = 1) -> None:
    """Check that x and y hold the same number of samples, at least ``batch_size``, all finite.

    Args:
        name: the data's name in the message.
        x, y: inputs and targets, each with a batch dimension.
        batch_size: the fewest samples allowed (default 1).

    Raises:
        ValueError: a missing batch dimension, different lengths, too few samples, or a
            NaN or inf value (named with its row and column).

    Example:
        >>> check_data("data", jnp.zeros((3, 2)), jnp.zeros(2))
        Traceback (most recent call last):
        ...
        ValueError: data: x and y must have the same length, got 3 and 2
        >>> check_data("train_data", jnp.array([[0.0, 1.0], [2.0, jnp.nan]]), jnp.zeros(2))
        Traceback (most recent call last):
        ...
        ValueError: train_data x holds nan at row 1, column 1
    """
    if jnp.ndim(x) == 0 or jnp.ndim(y) == 0:
        raise ValueError(
            f"{name}: x and y must have a batch dimension, got shapes {jnp.shape(x)} and {jnp.shape(y)}"
        )
    if jnp.shape(x)[0] != jnp.shape(y)[0]:
        raise ValueError(
            f"{name}: x and y must have the same length, got {jnp.shape(x)[0]} and {jnp.shape(y)[0]}"
        )
    check_batch_size(batch_size, jnp.shape(x)[0], name)
    for part, a in (("x", x), ("y", y)):
        _check_finite(f"{name} {part}", a)


def _check_finite(name: str, a: Any) -> None:
    """A ValueError naming the first NaN or inf of ``a`` by row (and column, or position)."""
    if not jnp.issubdtype(jnp.result_type(a), jnp.inexact) or not getattr(a, "is_fully_addressable", True):
        return  # integer labels cannot hold one; a global array is checked by its own process
    bad = ~np.isfinite(np.asarray(a))
    if not bad.any():
        return
    where = np.argwhere(bad)[0]
    value = np.asarray(a)[tuple(where)]
    at = f"row {where[0]}"
    if len(where) == 2:
        at += f", column {where[1]}"
    elif len(where) > 2:
        at += f", position {tuple(int(i) for i in where[1:])}"
    raise ValueError(f"{name} holds {value} at {at}")


def _ignore_index(loss: nn.Loss) -> int | None:
    """The label value the loss skips: a spec's ``ignore_index``, or the default (or bound
    value) of a plain function's ``ignore_index`` parameter (``F.cross_entropy``'s -100)."""
    if isinstance(loss, nn.FunctionLoss):
        try:
            param = inspect.signature(loss.fn).parameters.get("ignore_index")
        except (TypeError, ValueError):  # no signature to read
            return None
        return None if param is None or param.default is inspect.Parameter.empty else param.default
    return getattr(loss, "ignore_index", None)


def check_labels(
    model, params: Any, state: Any, x: Any, y: Any, loss: nn.Loss | None = None, name: str = "y"
) -> None:
    """Check that integer labels index the model's output classes (dim 1), or are ``loss``'s
    ignore_index (LBL-1). Float targets and models with a 1-d output are not checked.

    Args:
        model, params, state: the model and its arrays.
        x, y: inputs and labels with the same number of rows.
        loss: the loss spec that will read the labels, for its ignore_index (None: none).
        name: the data's name in the message (``"train_data"``, ``"eval_data"``).

    Raises:
        ValueError: naming the first bad label, its index and the valid range.

    Example:
        >>> model, params = nn.Linear(2, 3), {"weight": jnp.zeros((3, 2)), "bias": jnp.zeros(3)}
        >>> check_labels(model, params, {}, jnp.zeros((2, 2)), jnp.array([0, 3]), name="y")
        Traceback (most recent call last):
        ...
        ValueError: y labels must be in [0, 3), got 3 at index 1 (1 of 2 out of range, spanning [3, 3])
    """
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer) or jnp.size(y) == 0:
        return
    out = jax.eval_shape(lambda p, s, xb: model.apply(p, s, xb, train=False)[0], params, state, x[:1])
    if len(out.shape) >= 2:
        ignore_index = None if loss is None else _ignore_index(loss)
        check_classes_in_range(name, y, out.shape[1], ignore_index, what="labels")


def _scan_batches(fn, carry, arrays: tuple, batch_size: int):
    """``fn(carry, *batches) -> (carry, out)`` scanned over the full batches of ``arrays``,
    then called on the last partial one: the carry and the non-empty outputs, concatenable."""
    n = arrays[0].shape[0]
    n_full, rest = divmod(n, batch_size)
    outs = []
    if n_full:

        def body(c, i):
            return fn(c, *(jax.lax.dynamic_slice_in_dim(a, i * batch_size, batch_size) for a in arrays))

        carry, out = jax.lax.scan(body, carry, jnp.arange(n_full))
        outs.append(None if out is None else out.reshape(-1, *out.shape[2:]))
    if rest:
        carry, out = fn(carry, *(a[n_full * batch_size :] for a in arrays))
        outs.append(out)
    return carry, outs


@functools.lru_cache(maxsize=32)
def _eval_fn(model, loss: nn.Loss, metrics: tuple, batch_size: int, fold: bool):
    """One compiled evaluator per (model, loss, metrics, batch size, fold): fit calls it every epoch."""

    def run(params, state, x, y):
        net, params, state = nn.fold_batchnorm(model, params, state) if fold else (model, params, state)
        # float64 models sum in float64; float32, bf16 and f16 ones in float32
        acc = jnp.promote_types(jnp.float32, x.dtype)

        def body(totals, xb, yb):
            out, _ = net.apply(params, state, xb, train=False)
            loss_sum, weight = loss.per_sample(out, yb)
            values = [loss_sum, weight] + [fn(out, yb) for _, fn in metrics]
            return [t + jnp.sum(v.astype(acc)) for t, v in zip(totals, values, strict=True)], None

        zeros = [jnp.zeros((), acc) for _ in range(2 + len(metrics))]
        totals, _ = _scan_batches(body, zeros, (x, y), batch_size)
        out = {"loss": totals[0] / totals[1]}
        out.update({name: t / x.shape[0] for (name, _), t in zip(metrics, totals[2:], strict=True)})
        return out

    return jax.jit(run)


def evaluate(
    model,
    params: Any,
    state: Any,
    data: tuple[Any, Any],
    batch_size: int = 1000,
    *,
    loss: Any = None,
    metrics: Any = None,
    fold_batchnorm: bool = True,
) -> dict[str, float]:
    """The mean loss and task metrics over ``data = (x, y)`` in eval mode, in one compiled pass.

    Args:
        model: an ``fnn.nn`` layer.
        params, state: the model's parameters and buffers.
        data: ``(x, y)`` with the same number of rows.
        batch_size: rows per compiled batch (memory only: the result does not depend on it).
        loss: an ``fnn.nn`` loss spec or function (default: ``default_loss(y)``).
        metrics: see ``fnn.train.metrics`` (default: accuracy for class labels, else MAE).
        fold_batchnorm: fold each ``Linear -> BatchNorm1d`` and ``Conv -> BatchNorm``
            pair into one layer first (default True); False runs the layers as they are.

    Returns:
        ``{"loss": float, <metric>: float, ...}``.

    Example:
        >>> from fnn import nn, train
        >>> model, params = nn.Linear(2, 1, bias=False), {"weight": jnp.array([[1.0, 1.0]])}
        >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0], [3.0]])
        >>> train.evaluate(model, params, {}, (x, y), batch_size=1)  # errors 0 and -2
        {'loss': 2.0, 'mae': 1.0}
    """
    x, y = (jnp.asarray(a) for a in data)
    check_data("data", x, y)
    batch_size = check_batch_size(batch_size)
    loss = nn.as_loss(default_loss(y) if loss is None else loss)
    check_labels(model, params, state, x, y, loss, "data")
    metrics = resolve_metrics(metrics, y)
    return evaluate_checked(
        model, params, state, x, y, loss, metrics, batch_size, fold_batchnorm=fold_batchnorm
    )


def evaluate_checked(
    model,
    params: Any,
    state: Any,
    x: jax.Array,
    y: jax.Array,
    loss: nn.Loss,
    metrics: tuple,
    batch_size: int = 1000,
    *,
    fold_batchnorm: bool = True,
) -> dict[str, float]:
    """``evaluate`` of data already checked, without the host-side checks (``fit`` checks
    its eval data once, not every epoch, and cannot check global arrays).

    Args:
        model, params, state, batch_size, fold_batchnorm: as for ``evaluate``.
        x, y: device arrays.
        loss: an ``fnn.nn.Loss`` (already through ``as_loss``).
        metrics: resolved metrics (``fnn.train.metrics.resolve_metrics``).

    Returns:
        ``{"loss": float, <metric>: float, ...}``.
    """
    run = _eval_fn(model, loss, metrics, min(batch_size, x.shape[0]), fold_batchnorm)
    values = jax.device_get(run(params, state, x, y))  # one transfer for all the values
    return {name: float(value) for name, value in values.items()}


@functools.lru_cache(maxsize=32)
def _predict_fn(model, batch_size: int, fold: bool):
    def run(params, state, x):
        net, params, state = nn.fold_batchnorm(model, params, state) if fold else (model, params, state)

        def body(carry, xb):
            return carry, net.apply(params, state, xb, train=False)[0]

        _, outs = _scan_batches(body, (), (x,), batch_size)
        return outs[0] if len(outs) == 1 else jnp.concatenate(outs)

    return jax.jit(run)


def predict(
    model, params: Any, state: Any, x: Any, batch_size: int = 1000, *, fold_batchnorm: bool = True
) -> jax.Array:
    """The model's eval-mode outputs (e.g. logits) for every row of ``x``, in one compiled pass.

    Args:
        model, params, state, batch_size, fold_batchnorm: as for ``evaluate``.
        x: inputs with a batch dimension.

    Returns:
        The outputs, one row per row of ``x``; ``jnp.argmax(predict(...), 1)`` gives classes.

    Example:
        >>> from fnn import nn, train
        >>> model, params = nn.Linear(2, 1, bias=False), {"weight": jnp.array([[1.0, 2.0]])}
        >>> x = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
        >>> train.predict(model, params, {}, x, batch_size=2).tolist()  # a full batch, then one row
        [[1.0], [3.0], [4.0]]
    """
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
    batch_size = check_batch_size(batch_size)
    return _predict_fn(model, min(batch_size, x.shape[0]), fold_batchnorm)(params, state, x)
