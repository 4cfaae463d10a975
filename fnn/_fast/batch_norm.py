"""Batch normalization's per-channel sums in one pass over the data (BN2D-1, BN2D-2).

Contract: ``batch_stats(x, axes)`` returns ``fnn.functional.normalization``'s batch mean and
biased variance, ``mean(x)`` and ``mean((x − mean(x))²)``, and ``backward_sums(dy, x, axes,
mean)`` returns ``(Σ dy, Σ dy·(x − mean))``; both equal the plain two-pass definitions to
float rounding, not bit for bit, since the sums are taken in another order
(``tests/test_fast_batch_norm.py``).
``F.batch_norm`` uses them for inputs of 4 or more dims; (N, C) and (N, C, L) keep the plain
two-pass form and its exact results.

Why: the plain form reads x twice in the forward (the mean, then the squares about it) and
writes x − μ and x̂ out for the reductions that consume them. Here every sum reads x (and dy)
once, about a per-channel pivot k (x's first value of the channel, within the data's range)
rather than about μ:

    d = mean(x − k),   var = mean((x − k)²) − d²,   mean = k + d,
    Σ dy·(x − μ) = Σ dy·(x − k) − d·Σ dy.

The pivot keeps the cancellation in var small: its relative error grows like (d/σ)² times
the rounding, and |d| is at most the channel's range, where a pivot of 0 (the textbook
one-pass E[x²] − E[x]²) loses everything for |μ| ≫ σ.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["backward_sums", "batch_stats"]


def _pivot(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """x's first value in each channel, keepdims, outside the gradient (any k gives the same
    mean and var; its own derivative would cancel)."""
    first = tuple(slice(0, 1) if i in axes else slice(None) for i in range(x.ndim))
    return jax.lax.stop_gradient(x[first])


def batch_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """(mean, biased variance) of x over ``axes``, from the shifted sums in one pass.

    Example:
        >>> import jax.numpy as jnp
        >>> m, v = batch_stats(jnp.array([[1.0, 10.0], [3.0, 14.0]]), (0,))
        >>> m.tolist(), v.tolist()
        ([2.0, 12.0], [1.0, 4.0])
    """
    k = _pivot(x, axes)
    xs = x - k
    d = jnp.mean(xs, axis=axes)
    sq = jnp.mean(jnp.square(xs), axis=axes) - jnp.square(d)
    var = jnp.where(sq > 0, sq, 0.0)  # rounding may leave a constant channel's variance below 0
    return jnp.squeeze(k, axes) + d, var


def backward_sums(
    dy: jax.Array, x: jax.Array, axes: tuple[int, ...], mean: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(Σ dy, Σ dy·(x − mean)) over ``axes``, reading dy and x once; ``mean`` has the sums' shape.

    Example:
        >>> import jax.numpy as jnp
        >>> x, dy = jnp.array([[1.0], [3.0]]), jnp.array([[2.0], [1.0]])
        >>> [s.tolist() for s in backward_sums(dy, x, (0,), jnp.array([2.0]))]
        [[3.0], [-1.0]]
    """
    k = _pivot(x, axes)
    s_dy = jnp.sum(dy, axis=axes)
    s_dyx = jnp.sum(dy * (x - k), axis=axes)
    return s_dy, s_dyx - (mean - jnp.squeeze(k, axes)) * s_dy
