"""Softmax (multinomial logistic) regression with a hand-written gradient (SOFTREG-1).

Model: z = X W^T + b with W (C, d), b (C,) (torch.nn.Linear's layout); p = softmax(z).
Loss:  L = (1/N) sum_n [logsumexp(z_n) - z_{n, y_n}]   (`F.cross_entropy`, 'mean'; CE-1).
Gradient (see `softmax_regression_loss_backward`): dL/dz = (softmax(z) - onehot(y)) / N.
Params start at 0 (convex loss) as {'weight': (C, d), 'bias': (C,)}. Training is
full-batch gradient descent, or minibatch SGD when batch_size is given (then `key` is
required); see `fnn.classic._sgd`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn import functional as F
from fnn.classic._sgd import fit_sgd
from fnn.classic._validate import as_class_labels, as_features, check_count

__all__ = [
    "softmax_regression_fit",
    "softmax_regression_loss",
    "softmax_regression_loss_backward",
    "softmax_regression_predict",
    "softmax_regression_predict_proba",
]


def _logits(params: dict, X: jax.Array) -> jax.Array:
    return X @ params["weight"].T + params["bias"]


def softmax_regression_loss(params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean cross-entropy of the logits X W^T + b against integer labels y (SOFTREG-1, CE-1).

    Args:
        params: {'weight': (C, d), 'bias': (C,)}.
        X: features (N, d).
        y: integer labels (N,) in [0, C).

    Returns:
        The loss, a scalar array.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])
        >>> zeros = {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
        >>> classic.softmax_regression_loss(zeros, X, y).item()  # log 2
        0.6931
    """
    return F.cross_entropy(_logits(params, X), y)


def softmax_regression_loss_backward(
    grad_output: jax.Array, params: dict, X: jax.Array, y: jax.Array
) -> dict:
    """Gradient of `softmax_regression_loss` with respect to params (X, y are data).

    d/dz_c [logsumexp(z) - z_y] = e^(z_c) / sum_k e^(z_k) - [c = y] = softmax(z)_c - onehot(y)_c,
    so with the mean, G = dL/dz = (softmax(z) - onehot(y)) / N (N, C), and from z = X W^T + b:
        dL/dW = G^T X (C, d),  dL/db = sum_n G_n (C,).

    Args:
        grad_output: dL/d(loss), a scalar (1.0 for the plain gradient).
        params: {'weight': (C, d), 'bias': (C,)}.
        X: features (N, d).
        y: integer labels (N,) in [0, C).

    Returns:
        {'weight': (C, d), 'bias': (C,)}, the gradients.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])
        >>> zeros = {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
        >>> g = classic.softmax_regression_loss_backward(1.0, zeros, X, y)
        >>> g["weight"].tolist(), g["bias"].tolist()
        ([[-0.25, 0.25], [0.25, -0.25]], [0.0, 0.0])
    """
    z = _logits(params, X)
    g = grad_output * (F.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).astype(z.dtype))
    g = g / X.shape[0]
    return {"weight": g.T @ X, "bias": jnp.sum(g, axis=0)}


def _step(params: dict, X: jax.Array, y: jax.Array):
    loss = softmax_regression_loss(params, X, y)
    acc = jnp.mean((jnp.argmax(_logits(params, X), axis=1) == y).astype(X.dtype))
    return loss, acc, softmax_regression_loss_backward(1.0, params, X, y)


def softmax_regression_fit(
    X: Any,
    y: Any,
    num_classes: int,
    *,
    lr: float = 0.1,
    epochs: int = 10,
    batch_size: int | None = None,
    key: Any = None,
) -> tuple[dict, dict]:
    """Fit a softmax regression to X (N, d), integer y (N,) in [0, num_classes) by gradient descent.

    Full-batch gradient descent from zero parameters, or minibatch SGD when batch_size is
    given (a fresh permutation per epoch from `key`; the last incomplete batch is dropped).

    Args:
        X: features (N, d), finite.
        y: integer labels (N,) in [0, num_classes).
        num_classes: C, >= 1.
        lr: the step size, > 0 (default 0.1).
        epochs: passes over the data, >= 1 (default 10).
        batch_size: None (default) for full-batch steps, else the minibatch size <= N.
        key: a PRNG key, required with batch_size.

    Returns:
        (params, history): params {'weight': (C, d), 'bias': (C,)}; history {'loss',
        'accuracy'}, each (epochs,), measured before each epoch's updates.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])
        >>> params, history = classic.softmax_regression_fit(X, y, 2, lr=1.0, epochs=20)
        >>> classic.softmax_regression_predict(params, X).tolist(), history["loss"][0].item()
        ([0, 1], 0.6931)
    """
    check_count("num_classes", num_classes)
    X = as_features(X)
    y = as_class_labels(X, y, num_classes)
    params = {
        "weight": jnp.zeros((num_classes, X.shape[1]), X.dtype),
        "bias": jnp.zeros(num_classes, X.dtype),
    }
    return fit_sgd(
        _step,
        params,
        X,
        y,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        key=key,
        who="softmax_regression_fit",
    )


def softmax_regression_predict_proba(params: dict, X: Any) -> jax.Array:
    """Class probabilities softmax(X W^T + b).

    Args:
        params: {'weight': (C, d), 'bias': (C,)}.
        X: features (N, d), finite.

    Returns:
        Probabilities, shape (N, C), each row summing to 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([0, 1])
        >>> zeros = {"weight": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
        >>> classic.softmax_regression_predict_proba(zeros, X).tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    return _proba(params, as_features(X, params))


def softmax_regression_predict(params: dict, X: Any) -> jax.Array:
    """The most probable class of each sample (the first one on a tie).

    Args:
        params: {'weight': (C, d), 'bias': (C,)}.
        X: features (N, d), finite.

    Returns:
        int32 labels, shape (N,).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> params = {"weight": jnp.array([[1.0, 0.0], [0.0, 1.0]]), "bias": jnp.zeros(2)}
        >>> classic.softmax_regression_predict(params, jnp.array([[2.0, 1.0], [0.0, 3.0]])).tolist()
        [0, 1]
    """
    return _predict(params, as_features(X, params))


@jax.jit
def _proba(params: dict, X: jax.Array) -> jax.Array:
    return F.softmax(_logits(params, X), dim=1)


@jax.jit
def _predict(params: dict, X: jax.Array) -> jax.Array:
    return jnp.argmax(_logits(params, X), axis=1).astype(jnp.int32)
