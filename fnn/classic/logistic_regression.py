"""Binary logistic regression with BCE-with-logits and a hand-written gradient (LOGREG-1).

Model: z = X w + b, p(y = 1 | x) = sigmoid(z); labels y in {0, 1}.
Loss:  L = (1/N) sum_n [log(1 + e^{z_n}) - y_n z_n]   (BCEWithLogits, 'mean'; BCEL-1),
which equals BCE(sigmoid(z), y) away from saturation but never takes log(0); it is
computed by `F.binary_cross_entropy_with_logits`.
Gradient (see `logistic_regression_loss_backward`): X^T (sigmoid(z) - y) / N.
Params start at 0 (the loss is convex, so no random init is needed) and are
{'weight': (d,), 'bias': ()}. Training is full-batch gradient descent, or minibatch SGD
when batch_size is given (then `key` is required); see `fnn.classic._sgd`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn import functional as F
from fnn.classic._sgd import fit_sgd
from fnn.classic._validate import as_binary_labels, as_features

__all__ = [
    "logistic_regression_fit",
    "logistic_regression_loss",
    "logistic_regression_loss_backward",
    "logistic_regression_predict",
    "logistic_regression_predict_proba",
]


def _logits(params: dict, X: jax.Array) -> jax.Array:
    return X @ params["weight"] + params["bias"]


def logistic_regression_loss(params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean binary cross-entropy with logits of X w + b against y (LOGREG-1, BCEL-1).

    Args:
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d).
        y: labels (N,) in {0, 1}, in X's dtype.

    Returns:
        The loss, a scalar array.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[-1.0], [1.0]]), jnp.array([0.0, 1.0])
        >>> zeros = {"weight": jnp.zeros(1), "bias": jnp.array(0.0)}
        >>> classic.logistic_regression_loss(zeros, X, y).item()  # log 2
        0.6931
    """
    return F.binary_cross_entropy_with_logits(_logits(params, X), y)


def logistic_regression_loss_backward(
    grad_output: jax.Array, params: dict, X: jax.Array, y: jax.Array
) -> dict:
    """Gradient of `logistic_regression_loss` with respect to params (X, y are data).

    d/dz [log(1 + e^z) - y z] = e^z / (1 + e^z) - y = sigmoid(z) - y, so with the mean,
        dL/dz = (sigmoid(z) - y) / N,  dL/dw = X^T dL/dz,  dL/db = sum(dL/dz).

    Args:
        grad_output: dL/d(loss), a scalar (1.0 for the plain gradient).
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d).
        y: labels (N,) in {0, 1}.

    Returns:
        {'weight': (d,), 'bias': ()}, the gradients.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[-1.0], [1.0]]), jnp.array([0.0, 1.0])
        >>> zeros = {"weight": jnp.zeros(1), "bias": jnp.array(0.0)}
        >>> g = classic.logistic_regression_loss_backward(1.0, zeros, X, y)
        >>> g["weight"].tolist(), g["bias"].item()  # dL/dz = (0.5 - y)/2 = (0.25, -0.25)
        ([-0.5], 0.0)
    """
    dz = grad_output * (F.sigmoid(_logits(params, X)) - y) / X.shape[0]
    return {"weight": X.T @ dz, "bias": jnp.sum(dz)}


def _step(params: dict, X: jax.Array, y: jax.Array):
    loss = logistic_regression_loss(params, X, y)
    acc = jnp.mean(((_logits(params, X) >= 0) == (y == 1)).astype(X.dtype))
    return loss, acc, logistic_regression_loss_backward(1.0, params, X, y)


def logistic_regression_fit(
    X: Any, y: Any, *, lr: float = 0.1, epochs: int = 100, key: Any = None, batch_size: int | None = None
) -> tuple[dict, dict]:
    """Fit a binary logistic regression to X (N, d), y (N,) in {0, 1} by gradient descent.

    Full-batch gradient descent from zero parameters, or minibatch SGD when batch_size is
    given (a fresh permutation per epoch from `key`; the last incomplete batch is dropped).

    Args:
        X: features (N, d), finite.
        y: labels (N,) in {0, 1}, any real dtype.
        lr: the step size, > 0 (default 0.1).
        epochs: passes over the data, >= 1 (default 100).
        key: a PRNG key, required with batch_size.
        batch_size: None (default) for full-batch steps, else the minibatch size <= N.

    Returns:
        (params, history): params {'weight': (d,), 'bias': ()}; history {'loss',
        'accuracy'}, each (epochs,), measured before each epoch's updates.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[-1.0], [1.0]]), jnp.array([0.0, 1.0])
        >>> params, history = classic.logistic_regression_fit(X, y, lr=1.0, epochs=50)
        >>> classic.logistic_regression_predict(params, X).tolist(), history["loss"][0].item()
        ([0, 1], 0.6931)
    """
    X = as_features(X)
    y = as_binary_labels(X, y)
    params = {"weight": jnp.zeros(X.shape[1], X.dtype), "bias": jnp.zeros((), X.dtype)}
    return fit_sgd(
        _step,
        params,
        X,
        y,
        lr=lr,
        epochs=epochs,
        batch_size=batch_size,
        key=key,
        who="logistic_regression_fit",
    )


def logistic_regression_predict_proba(params: dict, X: Any) -> jax.Array:
    """The probability of class 1, p(y = 1 | x) = sigmoid(X w + b).

    Args:
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d), finite.

    Returns:
        Probabilities, shape (N,).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> params = {"weight": jnp.array([2.0]), "bias": jnp.array(0.0)}
        >>> classic.logistic_regression_predict_proba(params, jnp.array([[-1.0], [1.0]])).tolist()
        [0.1192, 0.8808]
    """
    return _proba(params, as_features(X, params))


def logistic_regression_predict(params: dict, X: Any) -> jax.Array:
    """Class labels: 1 where X w + b >= 0, i.e. where the probability is >= 1/2, else 0.

    Args:
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d), finite.

    Returns:
        int32 labels, shape (N,).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> params = {"weight": jnp.array([2.0]), "bias": jnp.array(0.0)}
        >>> classic.logistic_regression_predict(params, jnp.array([[-1.0], [0.0], [1.0]])).tolist()
        [0, 1, 1]
    """
    return _predict(params, as_features(X, params))


@jax.jit
def _proba(params: dict, X: jax.Array) -> jax.Array:
    return F.sigmoid(_logits(params, X))


@jax.jit
def _predict(params: dict, X: jax.Array) -> jax.Array:
    return (_logits(params, X) >= 0).astype(jnp.int32)
