"""Linear regression y ~ X w + b, by closed form or by gradient descent (LINREG-1).

Loss: the mean squared error  L = (1/N) sum_n (x_n . w + b - y_n)^2.

- method='closed_form' solves the least-squares problem min ||[X 1] [w; b] - y||^2 with
  `jnp.linalg.lstsq` (an SVD, so rank-deficient X gets the minimum-norm solution); the
  history holds the one resulting loss.
- method='gd' starts from w = 0, b = 0 and takes `epochs` full-batch steps
  theta <- theta - lr * dL/dtheta with the hand-derived gradient of
  `linear_regression_loss_backward`, in one compiled `lax.scan`; history['loss'][t] is
  the loss at the start of epoch t. It converges to the closed form when
  lr < 1 / lambda_max(2 [X 1]^T [X 1] / N) (standardize X first).
Params are {'weight': (d,), 'bias': ()}; y is 1-D (one output).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fnn.classic._validate import as_features, as_targets, check_count, check_lr

__all__ = [
    "linear_regression_fit",
    "linear_regression_loss",
    "linear_regression_loss_backward",
    "linear_regression_predict",
]


def linear_regression_predict(params: dict, X: Any) -> jax.Array:
    """Predictions X w + b, shape (N,)."""
    return _predict(params, as_features(X, params))


@jax.jit
def _predict(params: dict, X: jax.Array) -> jax.Array:
    return X @ params["weight"] + params["bias"]


def linear_regression_loss(params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error of X w + b against y."""
    r = X @ params["weight"] + params["bias"] - y
    return jnp.mean(r * r)


def linear_regression_loss_backward(grad_output: jax.Array, params: dict, X: jax.Array, y: jax.Array) -> dict:
    """Gradient of `linear_regression_loss` with respect to params (X, y are data).

    With r = X w + b - y and L = (1/N) r . r:
        dL/dr = 2 r / N,  dL/dw = X^T dL/dr = 2 X^T r / N,  dL/db = sum(dL/dr) = 2 mean(r).
    """
    r = X @ params["weight"] + params["bias"] - y
    dr = grad_output * 2.0 * r / X.shape[0]
    return {"weight": X.T @ dr, "bias": jnp.sum(dr)}


@partial(jax.jit, static_argnames=("epochs",))
def _gd(X: jax.Array, y: jax.Array, lr: jax.Array, epochs: int) -> tuple[dict, jax.Array]:
    def step(params, _):
        loss = linear_regression_loss(params, X, y)
        grads = linear_regression_loss_backward(1.0, params, X, y)
        return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss

    params = {"weight": jnp.zeros(X.shape[1], X.dtype), "bias": jnp.zeros((), X.dtype)}
    return lax.scan(step, params, None, length=epochs)


@jax.jit
def _closed_form(X: jax.Array, y: jax.Array) -> dict:
    Xa = jnp.concatenate([X, jnp.ones((X.shape[0], 1), X.dtype)], axis=1)
    theta = jnp.linalg.lstsq(Xa, y)[0]
    return {"weight": theta[:-1], "bias": theta[-1]}


def linear_regression_fit(
    X: Any, y: Any, *, method: str = "closed_form", lr: float = 0.01, epochs: int = 1000
) -> tuple[dict, dict]:
    """Fit w, b to X (N, d), y (N,). `lr` and `epochs` are used by method='gd' only.

    Returns (params {'weight': (d,), 'bias': ()}, history {'loss': (1,) or (epochs,)})."""
    if method not in ("closed_form", "gd"):
        raise ValueError(f"method must be 'closed_form' or 'gd', got {method!r}")
    X = as_features(X)
    y = as_targets(X, y)
    if method == "closed_form":
        params = _closed_form(X, y)
        return params, {"loss": linear_regression_loss(params, X, y)[None]}
    check_lr(lr)
    check_count("epochs", epochs)
    params, losses = _gd(X, y, jnp.asarray(lr, X.dtype), epochs)
    return params, {"loss": losses}
