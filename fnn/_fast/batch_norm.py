"""Batch normalization of 4-D and larger inputs, its sums in one pass (BN2D-1, BN2D-2).

Contract: ``batch_stats(x, axes)`` returns ``fnn.functional.normalization``'s batch mean and
biased variance, ``mean(x)`` and ``mean((x − mean(x))²)``; ``backward_sums(dy, x, axes,
mean)`` returns ``(Σ dy, Σ dy·(x − mean))``; ``normalize(x, weight, bias, eps, axes)`` returns
the training output γ·(x − μ)/√(σ² + eps) + β, and under ``jax.grad`` / ``jax.jvp`` its
derivative is BN-8's formula (a ``custom_jvp`` whose tangent is linear in the tangents, so
reverse mode transposes it and higher orders differentiate it). Each equals the plain
two-pass definition to float rounding, not bit for bit: the sums are taken in another order
(``tests/test_fast_batch_norm.py``). ``F.batch_norm`` uses them for inputs of 4 or more
dims; (N, C) and (N, C, L) keep the plain two-pass form and its exact results.

Why: the plain form reads x twice in the forward (the mean, then the squares about it) and
writes x − μ and x̂ out for the reductions that consume them. Here every sum reads x (and dy)
once, about a per-channel pivot k (x's first value of the channel, within the data's range)
rather than about μ:

    d = mean(x − k),   var = mean((x − k)²) − d²,   mean = k + d,
    Σ dy·(x − μ) = Σ dy·(x − k) − d·Σ dy.

The pivot keeps the cancellation in var small: its relative error grows like (d/σ)² times
the rounding, and |d| is at most the channel's range, where a pivot of 0 (the textbook
one-pass E[x²] − E[x]²) loses everything for |μ| ≫ σ. ``normalize``'s tangent is written
with per-channel factors times x − k and ẋ only, so that its transpose reduces Σ ȳ and
Σ ȳ·(x − k) (as ``backward_sums``) instead of materializing x̂ and ȳ·γ: jax.grad through it
costs what the manual backward costs (``experiments/README.md``, batch_norm_2d).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = ["backward_sums", "batch_stats", "normalize"]


def _pivot(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """x's first value in each channel, keepdims, outside the gradient (any k gives the same
    mean and var; its own derivative would cancel)."""
    first = tuple(slice(0, 1) if i in axes else slice(None) for i in range(x.ndim))
    return jax.lax.stop_gradient(x[first])


def _shifted(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(k, x − k, d = mean(x − k), biased variance): the sums about the pivot, one pass."""
    k = _pivot(x, axes)
    xs = x - k
    d = jnp.mean(xs, axis=axes)
    sq = jnp.mean(jnp.square(xs), axis=axes) - jnp.square(d)
    var = jnp.where(sq > 0, sq, 0.0)  # rounding may leave a constant channel's variance below 0
    return k, xs, d, var


def batch_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """(mean, biased variance) of x over ``axes``, from the shifted sums in one pass.

    Example:
        >>> import jax.numpy as jnp
        >>> m, v = batch_stats(jnp.array([[1.0, 10.0], [3.0, 14.0]]), (0,))
        >>> m.tolist(), v.tolist()
        ([2.0, 12.0], [1.0, 4.0])
    """
    k, _, d, var = _shifted(x, axes)
    return jnp.squeeze(k, axes) + d, var


def _channel(v: jax.Array, ndim: int) -> jax.Array:
    return v.reshape((1, -1) + (1,) * (ndim - 2))


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def normalize(
    x: jax.Array, weight: jax.Array, bias: jax.Array, eps: float, axes: tuple[int, ...]
) -> jax.Array:
    """γ·(x − μ)/√(σ² + eps) + β with batch statistics over ``axes`` (training, BN-1, BN2D-1).

    With a = 1/√(σ² + eps) per channel: y = (x − k)·aγ + (β − d·aγ). Its tangent (BN-8 as a
    JVP): with μ̇ = mean(ẋ), s = mean((x − μ)·ẋ) = mean((x − k)·ẋ) − d·μ̇ and u = a²·s,
    ẏ = ẋ·aγ + (x − k)·a(γ̇ − γu) + (aγ(d·u − μ̇) − d·a·γ̇ + β̇).

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[[[0.0, 2.0]]], [[[4.0, 6.0]]]])
        >>> normalize(x, jnp.ones(1), jnp.zeros(1), 0.0, (0, 2, 3)).ravel().round(4).tolist()
        [-1.3416, -0.4472, 0.4472, 1.3416]
    """
    _, xs, d, var = _shifted(x, axes)
    ag = jax.lax.rsqrt(var + eps) * weight
    return xs * _channel(ag, x.ndim) + _channel(bias - d * ag, x.ndim)


@normalize.defjvp
def _normalize_jvp(eps, axes, primals, tangents):
    (x, g, b), (dx, dg, db) = primals, tangents
    _, xs, d, var = _shifted(x, axes)
    a = jax.lax.rsqrt(var + eps)
    y = xs * _channel(a * g, x.ndim) + _channel(b - d * a * g, x.ndim)
    dmean = jnp.mean(dx, axis=axes)
    u = a * a * (jnp.mean(xs * dx, axis=axes) - d * dmean)
    dy = (
        dx * _channel(a * g, x.ndim)
        + xs * _channel(a * (dg - g * u), x.ndim)
        + _channel(a * g * (d * u - dmean) - d * a * dg + db, x.ndim)
    )
    return y, dy


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
