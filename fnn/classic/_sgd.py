"""The (minibatch) gradient-descent loop shared by logistic and softmax regression.

`step_fn(params, X, y) -> (loss, accuracy, grads)` is a module-level function (static
under jit). With batch_size None every epoch is one full-batch step; otherwise each epoch
draws a fresh permutation from its own key (split from `key`, never reused) and takes
N // batch_size steps on consecutive slices of it, dropping the last incomplete batch
(torch's drop_last=True) so that every step has the same shape and one compiled
`lax.scan` runs the whole fit. History: per epoch, the mean over its steps of the loss and
accuracy measured on each batch just before its update.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from fnn._checks import check_key
from fnn.classic._validate import check_count, check_lr


def fit_sgd(
    step_fn: Callable,
    params: dict,
    X: jax.Array,
    y: jax.Array,
    *,
    lr: float,
    epochs: int,
    batch_size: int | None,
    key: Any,
    who: str,
) -> tuple[dict, dict]:
    """Run the (minibatch) gradient-descent loop of the module docstring for `epochs` epochs.

    Args:
        step_fn: a module-level function (params, X, y) -> (loss, accuracy, grads).
        params: the initial params.
        X: validated features (N, d).
        y: validated labels (N,).
        lr: the step size, > 0.
        epochs: the number of epochs, >= 1.
        batch_size: None for full-batch steps, else the minibatch size <= N.
        key: a PRNG key, required with batch_size.
        who: the caller's name, for error messages.

    Returns:
        (params, history): the final params and {'loss', 'accuracy'}, each (epochs,).
    """
    check_lr(lr)
    check_count("epochs", epochs)
    lr = jnp.asarray(lr, X.dtype)
    if batch_size is None:
        params, (loss, acc) = _full_batch(step_fn, params, X, y, lr, epochs)
    else:
        check_count("batch_size", batch_size)
        if batch_size > X.shape[0]:
            raise ValueError(f"batch_size must be <= the number of samples {X.shape[0]}, got {batch_size}")
        check_key("key", key, who)
        params, (loss, acc) = _minibatch(step_fn, params, X, y, lr, key, epochs, batch_size)
    return params, {"loss": loss, "accuracy": acc}


def _update(params: dict, grads: dict, lr: jax.Array) -> dict:
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


@partial(jax.jit, static_argnames=("step_fn", "epochs"))
def _full_batch(step_fn, params, X, y, lr, epochs):
    def epoch(params, _):
        loss, acc, grads = step_fn(params, X, y)
        return _update(params, grads, lr), (loss, acc)

    return lax.scan(epoch, params, None, length=epochs)


@partial(jax.jit, static_argnames=("step_fn", "epochs", "batch_size"))
def _minibatch(step_fn, params, X, y, lr, key, epochs, batch_size):
    n_batches = X.shape[0] // batch_size

    def batch(params, idx):
        loss, acc, grads = step_fn(params, X[idx], y[idx])
        return _update(params, grads, lr), (loss, acc)

    def epoch(params, epoch_key):
        perm = jax.random.permutation(epoch_key, X.shape[0])
        idx = perm[: n_batches * batch_size].reshape(n_batches, batch_size)
        params, (loss, acc) = lax.scan(batch, params, idx)
        return params, (jnp.mean(loss), jnp.mean(acc))

    return lax.scan(epoch, params, jax.random.split(key, epochs))
