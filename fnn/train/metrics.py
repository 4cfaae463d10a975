"""Metrics that follow the task: accuracy for class targets, MAE for regression.

A metric is a function ``(output, target) -> per-sample values`` of shape (N,); a batch or
dataset value is the mean over samples, recorded in the history as ``train_<name>`` and
``test_<name>``. ``resolve_metrics`` reads ``fit``'s and ``evaluate``'s ``metrics=``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["METRICS", "Metric", "accuracy", "mae", "mse", "resolve_metrics"]

Metric = Callable[[jax.Array, jax.Array], jax.Array]


def _per_sample_mean(v: jax.Array) -> jax.Array:
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim > 1 else v


def accuracy(output: jax.Array, target: jax.Array) -> jax.Array:
    """Per-sample accuracy: where ``argmax(output, 1) == target`` (class dim 1, as torch).

    Args:
        output: class scores (N, C, ...).
        target: integer class indices (N, ...).

    Returns:
        float32 (N,): each sample's fraction of correct positions (1.0 or 0.0 for (N, C)).

    Example:
        >>> accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1])).tolist()
        [1.0, 0.0]
    """
    if output.ndim < 2 or not jnp.issubdtype(target.dtype, jnp.integer):
        raise ValueError(
            f"accuracy needs class scores (N, C, ...) and integer targets, got output "
            f"{tuple(output.shape)} and target dtype {target.dtype}"
        )
    return _per_sample_mean((jnp.argmax(output, axis=1) == target).astype(jnp.float32))


def mae(output: jax.Array, target: jax.Array) -> jax.Array:
    """Each sample's mean absolute error (over its non-batch elements).

    Args:
        output: predictions (N, ...).
        target: targets of the same shape, cast to output's dtype.

    Returns:
        The per-sample values, shape (N,).

    Example:
        >>> mae(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 4.0]])).tolist()
        [1.5]
    """
    return _per_sample_mean(jnp.abs(output - target.astype(output.dtype)))


def mse(output: jax.Array, target: jax.Array) -> jax.Array:
    """Each sample's mean squared error; as ``mae``.

    Args:
        output, target: as for ``mae``.

    Returns:
        The per-sample values, shape (N,).

    Example:
        >>> mse(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 4.0]])).tolist()
        [2.5]
    """
    return _per_sample_mean(jnp.square(output - target.astype(output.dtype)))


METRICS: dict[str, Metric] = {"accuracy": accuracy, "mae": mae, "mse": mse}


def resolve_metrics(
    metrics: str | Sequence[str] | Mapping[str, Metric] | None, target: Any
) -> tuple[tuple[str, Metric], ...]:
    """The ``metrics=`` argument as ``((name, fn), ...)``, hashable, so compiled steps are shared.

    Args:
        metrics: None (the default: ``'accuracy'`` for integer class-index targets, else
            ``'mae'``), a name or a sequence of names from ``METRICS``, a dict name -> fn for
            your own, or the pairs this function returned.
        target: the training targets (their dtype picks the default).

    Returns:
        A tuple of (name, per-sample function) pairs.

    Raises:
        ValueError: an unknown name, or a metric named loss, grad_norm or lr.

    Example:
        >>> [name for name, _ in resolve_metrics(None, jnp.array([0, 1]))]
        ['accuracy']
        >>> [name for name, _ in resolve_metrics(None, jnp.array([0.5]))]
        ['mae']
        >>> [name for name, _ in resolve_metrics(["mae", "mse"], jnp.array([0.5]))]
        ['mae', 'mse']
    """
    if isinstance(metrics, tuple) and all(isinstance(m, tuple) and len(m) == 2 for m in metrics) and metrics:
        return metrics  # already resolved (fit resolves once and passes the pairs down)
    if metrics is None:
        metrics = "accuracy" if jnp.issubdtype(jnp.result_type(target), jnp.integer) else "mae"
    if isinstance(metrics, str):
        metrics = (metrics,)
    if isinstance(metrics, Mapping):
        pairs = tuple(metrics.items())
    else:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(
                f"unknown metric {unknown[0]!r}: choose from {sorted(METRICS)} "
                "or pass a dict name -> fn(output, target)"
            )
        pairs = tuple((m, METRICS[m]) for m in metrics)
    for name, fn in pairs:
        if name in ("loss", "grad_norm", "lr") or not callable(fn):
            raise ValueError(f"metric {name!r} must be a callable not named loss, grad_norm or lr")
    return pairs
