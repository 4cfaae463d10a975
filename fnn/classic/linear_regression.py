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
    """Predictions X w + b.

    Args:
        params: {'weight': (d,), 'bias': ()}, as `linear_regression_fit` returns.
        X: features (N, d), finite.

    Returns:
        The predictions, shape (N,).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> params = {"weight": jnp.array([2.0]), "bias": jnp.array(1.0)}
        >>> classic.linear_regression_predict(params, jnp.array([[3.0]])).tolist()
        [7.0]
    """
    return _predict(params, as_features(X, params))


def _outputs(params: dict, X: jax.Array) -> jax.Array:
    return X @ params["weight"] + params["bias"]


_predict = jax.jit(_outputs)


def linear_regression_loss(params: dict, X: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error of X w + b against y (LINREG-1).

    Args:
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d).
        y: targets (N,).

    Returns:
        The loss, a scalar array.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([1.0, 3.0, 5.0])
        >>> params = {"weight": jnp.array([1.0]), "bias": jnp.array(0.0)}
        >>> classic.linear_regression_loss(params, X, y).item()  # residuals -1, -2, -3
        4.6667
    """
    r = _outputs(params, X) - y
    return jnp.mean(r * r)


def linear_regression_loss_backward(grad_output: jax.Array, params: dict, X: jax.Array, y: jax.Array) -> dict:
    """Gradient of `linear_regression_loss` with respect to params (X, y are data).

    With r = X w + b - y and L = (1/N) r . r:
        dL/dr = 2 r / N,  dL/dw = X^T dL/dr = 2 X^T r / N,  dL/db = sum(dL/dr) = 2 mean(r).

    Args:
        grad_output: dL/d(loss), a scalar (1.0 for the plain gradient).
        params: {'weight': (d,), 'bias': ()}.
        X: features (N, d).
        y: targets (N,).

    Returns:
        {'weight': (d,), 'bias': ()}, the gradients.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([1.0, 3.0, 5.0])
        >>> params = {"weight": jnp.array([1.0]), "bias": jnp.array(0.0)}
        >>> g = classic.linear_regression_loss_backward(1.0, params, X, y)
        >>> g["weight"].tolist(), g["bias"].item()
        ([-5.3333], -4.0)
    """
    r = _outputs(params, X) - y
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
    """Fit w, b to X (N, d), y (N,), by least squares or by gradient descent (LINREG-1).

    Args:
        X: features (N, d), finite; integer or bool features become the default float.
        y: targets (N,), finite.
        method: 'closed_form' (default, an SVD least-squares solve) or 'gd'.
        lr: the step size of method='gd', > 0 (default 0.01).
        epochs: the full-batch steps of method='gd', >= 1 (default 1000).

    Returns:
        (params, history): params {'weight': (d,), 'bias': ()}; history {'loss': (1,)} for
        the closed form, {'loss': (epochs,)} (the loss at the start of each epoch) for 'gd'.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import classic
        >>> X, y = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([1.0, 3.0, 5.0])
        >>> params, history = classic.linear_regression_fit(X, y)
        >>> params["weight"].tolist(), params["bias"].item()
        ([2.0], 1.0)
        >>> params, history = classic.linear_regression_fit(X, y, method="gd", lr=0.1, epochs=500)
        >>> params["weight"].tolist(), params["bias"].item(), history["loss"].shape
        ([2.0], 1.0, (500,))
    """
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
