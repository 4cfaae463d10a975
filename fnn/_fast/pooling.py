"""Max-pooling's window choice and gradient routing when the windows tile the input.

With kernel == stride, no padding, no dilation and a kernel that divides each spatial size
(max_pool2d(x, 2) on an even image: the common case), the windows are disjoint and cover the
input, so (N, C, H, W) reshapes to (N, C, Ho, kh, Wo, kw) and tap (a, b) of every window is
the view [:, :, :, a, :, b]. The choice, the tangent gather and the gradient routing are then
one reshape and one select each, instead of fnn.functional.pooling's tap-by-tap strided
slices and padded scatters (whose transposes XLA:CPU runs slowly). They equal the definitions
there (`window_choice`, the custom_jvp's gather, `max_pool*_backward`'s placement) bit for
bit: only selections, each output element receiving one value plus zeros
(tests/test_fast_pooling.py). experiments/README.md ("Pooling: routing max-pool's gradient")
has the measurements.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["choice_dtype", "gather", "route", "tiles", "window_choice"]


def tiles(size, kernel, stride, padding, dilation) -> bool:
    """True when the pooling windows tile the input exactly (this module's case)."""
    return (
        tuple(kernel) == tuple(stride)
        and not any(padding)
        and all(d == 1 for d in dilation)
        and all(n % k == 0 for n, k in zip(size, kernel, strict=True))
    )


def choice_dtype(n_taps: int):
    """The window choice's integer dtype: int8 while the kernel has at most 127 taps."""
    return jnp.int8 if n_taps <= 127 else jnp.int32


def _split(x: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """(N, C, *size) -> (N, C, o1, k1, o2, k2, ...)."""
    shape = list(x.shape[:2])
    for n, k in zip(x.shape[2:], kernel, strict=True):
        shape += [n // k, k]
    return x.reshape(shape)


def _window_axes(kernel: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(3 + 2 * i for i in range(len(kernel)))


def _tap_index(kernel: tuple[int, ...], dtype) -> jax.Array:
    """Each element's row-major tap number within its window, broadcastable to `_split`'s shape."""
    shape = [1, 1] + [1, 1] * len(kernel)
    t = jnp.zeros(shape, dtype)
    for axis, k in zip(_window_axes(kernel), kernel, strict=True):
        t = t * k + lax.broadcasted_iota(dtype, [*shape[:axis], k, *shape[axis + 1 :]], axis)
    return t


def _expand(y: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """(N, C, o1, o2, ...) -> (N, C, o1, 1, o2, 1, ...), broadcastable against `_split`."""
    return jnp.expand_dims(y, _window_axes(kernel))


def window_choice(x: jax.Array, y: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """fnn.functional.pooling.window_choice for tiling windows: per window, the first tap equal
    to its max y, or its last NaN (POOL-5, POOL-6)."""
    xs = _split(x, kernel)
    dtype = choice_dtype(math.prod(kernel))
    choice = jnp.full(y.shape, -1, dtype)
    for t, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        index = (slice(None), slice(None), *tuple(i for o in offset for i in (slice(None), o)))
        v = xs[index]
        hit = ((v == y) & (choice < 0)) | jnp.isnan(v)
        choice = jnp.where(hit, jnp.asarray(t, dtype), choice)
    return choice


def gather(dx: jax.Array, choice: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """dy = dx at each window's chosen tap (max-pool's tangent): a select and a sum, linear in dx."""
    mask = _expand(choice, kernel) == _tap_index(kernel, choice.dtype)
    return jnp.sum(jnp.where(mask, _split(dx, kernel), jnp.zeros((), dx.dtype)), axis=_window_axes(kernel))


def route(g: jax.Array, choice: jax.Array, kernel: tuple[int, ...]) -> jax.Array:
    """dL/dx: each window's g at its chosen tap, zeros elsewhere, in the input's shape."""
    mask = _expand(choice, kernel) == _tap_index(kernel, choice.dtype)
    out = jnp.where(mask, _expand(g, kernel), jnp.zeros((), g.dtype))
    return out.reshape(*g.shape[:2], *(n * k for n, k in zip(g.shape[2:], kernel, strict=True)))


def computed_once(fn, *args: jax.Array) -> jax.Array:
    """fn(*args), computed into a buffer of its own on the CPU.

    XLA:CPU fuses an elementwise producer into every consumer that reads it, recomputing it
    at each read: the window choice, read once per tap by the routing, would be recomputed
    kh·kw times per window (with the window max inside it, kh·kw more). The branches of a
    `lax.cond` are separate computations whose results are materialised, so the choice is
    computed once. Both branches are fn itself, so the predicate (any runtime value) does
    not change the result. Off the CPU, fn is called directly.
    """
    if any(a.size == 0 for a in args):
        return fn(*args)

    def on_cpu():
        first = args[0].reshape(-1)[0]
        return lax.cond(first != first, fn, fn, *args)

    return lax.platform_dependent(cpu=on_cpu, default=lambda: fn(*args))
