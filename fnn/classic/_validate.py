"""Argument checks shared by the classic learners.

They run in the Python wrappers before the jit-compiled cores, so value checks (finite
features, labels in range) see concrete arrays; under an outer jit they check shapes only.
Every error names the argument, what was expected and what was received.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from fnn._checks import check_classes_in_range, check_integer, check_ndim, is_concrete, is_int
from fnn._checks import check_lr as _check_lr


def as_features(X: Any, params: dict | None = None) -> jnp.ndarray:
    """X as a 2-D floating array (integer or bool features become the default float).

    For fitting (params None) X must be non-empty; for predicting, its feature count must
    match params['weight'].

    Args:
        X: features (N, d), finite.
        params: the fitted params when predicting, else None.

    Returns:
        X as a floating jax array (N, d).
    """
    X = jnp.asarray(X)
    check_ndim("X", X, (2,))
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.result_type(float))
    if params is not None:
        d = jnp.shape(params["weight"])[-1]
        if X.shape[1] != d:
            raise ValueError(
                f"X must have {d} features to match params['weight'] "
                f"{tuple(jnp.shape(params['weight']))}, got X {tuple(X.shape)}"
            )
    elif X.shape[0] == 0:
        raise ValueError(f"X must hold at least one sample, got shape {tuple(X.shape)}")
    check_finite("X", X)
    return X


def check_finite(name: str, x: Any) -> None:
    """Raise a ValueError naming `name`, the bad value and its index unless x is all finite.

    Only concrete arrays are checked; under an outer jit this does nothing.

    Args:
        name: the argument's name, for the message.
        x: the array.
    """
    if not is_concrete(x):
        return
    a = np.asarray(x)
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite, got {a[where]} at index {where}")


def check_samples(X: jnp.ndarray, y: jnp.ndarray) -> None:
    """Check that y is 1-D with one entry per row of X.

    Args:
        X: features (N, d).
        y: targets or labels.
    """
    check_ndim("y", y, (1,))
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"X and y must have the same number of samples, got X {tuple(X.shape)} and y {tuple(y.shape)}"
        )


def as_targets(X: jnp.ndarray, y: Any) -> jnp.ndarray:
    """Real-valued regression targets y (N,), cast to X's dtype.

    Args:
        X: the validated features (N, d).
        y: targets (N,), finite.

    Returns:
        y as a jax array in X's dtype.
    """
    y = jnp.asarray(y)
    check_samples(X, y)
    check_finite("y", y)
    return y.astype(X.dtype)


def as_binary_labels(X: jnp.ndarray, y: Any) -> jnp.ndarray:
    """Labels y (N,) in {0, 1}, any real dtype, returned in X's dtype.

    Args:
        X: the validated features (N, d).
        y: labels (N,), each 0 or 1 (checked when concrete).

    Returns:
        y as a jax array in X's dtype.
    """
    y = jnp.asarray(y)
    check_samples(X, y)
    if is_concrete(y):
        a = np.asarray(y)
        bad = (a != 0) & (a != 1)
        if bad.any():
            raise ValueError(f"y must hold labels in {{0, 1}}, got {a[bad][0]}")
    return y.astype(X.dtype)


def as_class_labels(X: jnp.ndarray, y: Any, num_classes: int) -> jnp.ndarray:
    """Integer class labels y (N,) in [0, num_classes).

    Args:
        X: the validated features (N, d).
        y: integer labels (N,).
        num_classes: C.

    Returns:
        y as an integer jax array.
    """
    y = jnp.asarray(y)
    check_samples(X, y)
    check_integer("y", y)
    check_classes_in_range("y", y, num_classes)
    return y


def check_count(name: str, value: Any, *, low: int = 1) -> None:
    """Check that value is a Python int >= low (epochs, batch_size, num_classes).

    Args:
        name: the argument's name, for the message.
        value: the value.
        low: the smallest allowed value (default 1).

    Raises:
        TypeError: value is not an int.
        ValueError: value < low.
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def check_lr(lr: Any) -> float:
    """fnn's one lr rule (`fnn._checks.check_lr`: a finite number >= 0, no schedule), plus lr > 0.

    A classic fit with lr = 0 would run every epoch and return its initial params.

    Args:
        lr: the learning rate.

    Returns:
        lr as a Python float.
    """
    lr = _check_lr(lr, allow_schedule=False)
    if lr == 0:
        raise ValueError(
            f"lr must be > 0 for a gradient-descent fit (lr = 0 never moves the parameters), got {lr}"
        )
    return lr
