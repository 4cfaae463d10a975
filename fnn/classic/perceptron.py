"""The course's perceptron (PERC-1, PERC-2).

Labels y in {0, 1}. The bias is folded into the weights as a constant-1 input appended to
every sample, and the augmented weight vector starts at 0. For each epoch, for each sample
(x, y) in data order:

    y_hat = 1 if w . x >= 0 else 0      (the tie w . x = 0 counts as class 1)
    w    <- w + (y - y_hat) x           (Rosenblatt's rule with step 1)

On linearly separable data this stops changing after finitely many epochs (PERC-2); an
epoch with no mistakes means it has converged, and every later epoch then makes none.
The fit runs every epoch of the budget as one compiled `lax.scan` over epochs around a
`lax.scan` over samples, and reports the mistakes made in each epoch's pass.
Params come back split as {'weight': (d,), 'bias': ()}; prediction rebuilds the same
augmented dot product, so training and prediction agree bit for bit at ties.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fnn.classic._validate import as_binary_labels, as_features, check_count

__all__ = ["perceptron_fit", "perceptron_predict"]


def _augment(X: jax.Array) -> jax.Array:
    return jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)


@partial(jax.jit, static_argnames=("epochs",))
def _train(Xa: jax.Array, y: jax.Array, epochs: int) -> tuple[jax.Array, jax.Array]:
    def sample_step(w, xy):
        x, target = xy
        err = target - (x @ w >= 0).astype(w.dtype)  # in {-1, 0, 1}
        return w + err * x, err != 0

    def epoch(w, _):
        w, wrong = lax.scan(sample_step, w, (Xa, y))
        return w, jnp.sum(wrong, dtype=jnp.int32)

    return lax.scan(epoch, jnp.zeros(Xa.shape[1], Xa.dtype), None, length=epochs)


def perceptron_fit(X: Any, y: Any, *, epochs: int = 100) -> tuple[dict, dict]:
    """Train the perceptron for `epochs` passes over (X (N, d), y (N,) in {0, 1}) (PERC-1).

    Args:
        X: features (N, d), finite.
        y: labels (N,) in {0, 1}.
        epochs: passes over the data in order, >= 1 (default 100).

    Returns:
        (params, history): params {'weight': (d,), 'bias': ()}; history {'mistakes': int32
        (epochs,), the updates made in each pass, and 'converged': bool (), True when some
        pass made no mistake}.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[0.0, 0.0], [1.0, 1.0]]), jnp.array([0, 1])
        >>> params, history = classic.perceptron_fit(X, y, epochs=4)
        >>> history["mistakes"].tolist(), history["converged"].item()
        ([2, 1, 0, 0], True)
        >>> params["weight"].tolist(), params["bias"].item()
        ([1.0, 1.0], -1.0)
    """
    X = as_features(X)
    y = as_binary_labels(X, y)
    check_count("epochs", epochs)
    w, mistakes = _train(_augment(X), y, epochs)
    params = {"weight": w[:-1], "bias": w[-1]}
    return params, {"mistakes": mistakes, "converged": jnp.any(mistakes == 0)}


@jax.jit
def _predict(params: dict, X: jax.Array) -> jax.Array:
    w = jnp.concatenate([params["weight"], params["bias"][None]])
    return (_augment(X) @ w >= 0).astype(jnp.int32)


def perceptron_predict(params: dict, X: Any) -> jax.Array:
    """Class labels: 1 where w . x + b >= 0 (the tie counts as class 1), else 0.

    Args:
        params: {'weight': (d,), 'bias': ()}, as `perceptron_fit` returns.
        X: features (N, d), finite.

    Returns:
        int32 labels in {0, 1}, shape (N,).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> params = {"weight": jnp.array([1.0, 1.0]), "bias": jnp.array(-1.0)}
        >>> classic.perceptron_predict(params, jnp.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1.0]])).tolist()
        [0, 1, 1]
    """
    return _predict(params, as_features(X, params))
