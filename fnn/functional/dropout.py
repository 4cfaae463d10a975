"""Inverted dropout with PyTorch semantics and an explicit PRNG key.

Contract (docs/semantics.md, rules DROP-1..DROP-3):
- Training: mask_i ~ Bernoulli(1 - p) independently per element (DROP-3) and
  y = x * mask / (1 - p) (DROP-1). `dropout_mask` returns that float scaling mask,
  values 0 or 1/(1 - p), and both `dropout` and `dropout_backward` use it, so the backward
  regenerates the forward's mask from the same key (the one deliberate reuse of a key:
  the caller splits a fresh key per forward and passes it to both).
- Eval (`training=False`) or p = 0: identity, no key needed; gradient ones (DROP-2).
- p = 1: zeros, gradient zeros and never NaN, also under jax.grad (DROP-2); no 1/(1 - p)
  is ever formed.
- `p` and `training` are static Python values (they pick the code path at trace time);
  mark them static under jit (`jax.jit(dropout, static_argnames=("p", "training"))`).
- `key` is a typed key from `jax.random.key` or a legacy `jax.random.PRNGKey` array; both
  give the same mask for the same seed.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_floating, check_key, check_same_shape

__all__ = ["dropout", "dropout_backward", "dropout_mask"]


def _check_p(p: Any) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"p must be a static Python number, got {type(p).__name__} {p!r}")
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")


def _check_key_value(key: Any) -> None:
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == jnp.uint32 and jnp.ndim(key) == 1:
        return  # legacy raw key data
    raise TypeError(
        f"key must be a PRNG key from jax.random.key (or a legacy jax.random.PRNGKey), "
        f"got {type(key).__name__} with dtype {dtype}"
    )


def dropout_mask(key: jax.Array, shape: tuple[int, ...], p: float, dtype: Any = None) -> jax.Array:
    """The inverted-dropout scaling mask: 1/(1 - p) with probability 1 - p, else 0 (DROP-1, DROP-3).

    p = 0 gives ones and p = 1 zeros, without drawing (so no key is needed there).

    Args:
        key: a PRNG key (`jax.random.key`, or a legacy `jax.random.PRNGKey`); may be None
            when p is 0 or 1.
        shape: the mask's shape.
        p: the drop probability in [0, 1], a static Python number.
        dtype: the mask's dtype; default: the default float dtype.

    Returns:
        An array of `shape` whose entries are 0 or 1/(1 - p).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> m = F.dropout_mask(jax.random.key(0), (1000,), p=0.75)
        >>> sorted(set(m.tolist()))
        [0.0, 4.0]
    """
    _check_p(p)
    dtype = jnp.result_type(float) if dtype is None else dtype
    shape = tuple(shape)
    if p == 0:
        return jnp.ones(shape, dtype)
    if p == 1:
        return jnp.zeros(shape, dtype)
    check_key("key", key, "dropout")
    _check_key_value(key)
    keep = jax.random.bernoulli(key, 1.0 - p, shape)
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - p), dtype), jnp.zeros((), dtype))


def dropout(input: jax.Array, key: jax.Array | None, p: float = 0.5, training: bool = True) -> jax.Array:
    """Inverted dropout: y = x * mask with mask = dropout_mask(key, x.shape, p) in training.

    Identity in eval or when p = 0 (no key needed); zeros when p = 1 (DROP-2).

    Args:
        input: a floating array of any shape.
        key: a PRNG key, required when training with 0 < p < 1; pass the same key to
            `dropout_backward` to get the same mask.
        p: the drop probability in [0, 1] (default 0.5), a static Python number.
        training: apply dropout (default True); False is the identity (DROP-1).

    Returns:
        An array of the input's shape and dtype: each entry 0 or x/(1 - p).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.ones(8)
        >>> sorted(set(F.dropout(x, jax.random.key(0), p=0.5).tolist()))
        [0.0, 2.0]
        >>> F.dropout(x, None, p=0.5, training=False).tolist() == x.tolist()
        True
    """
    check_floating("input", input)
    _check_p(p)
    if not training or p == 0:
        return input
    if p < 1:
        check_key("key", key, "dropout")
    return input * dropout_mask(key, jnp.shape(input), p, jnp.result_type(input))


def dropout_backward(
    grad_output: jax.Array, input: jax.Array, key: jax.Array | None, p: float = 0.5, training: bool = True
) -> jax.Array:
    """Gradient of `dropout` with respect to its input.

    y = x * m with m the (x-independent) mask  =>  dL/dx = g * m: dropout applied to g
    with the same key, which regenerates the same mask. Eval or p = 0: m = 1, dL/dx = g.
    p = 1: m = 0, dL/dx = 0 (DROP-2).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        key: the forward's key (the same one, so the mask is the same).
        p: the forward's p (default 0.5).
        training: the forward's training flag (default True).

    Returns:
        dL/dx, of the input's shape: zero where the forward dropped, g/(1 - p) elsewhere.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> key, x = jax.random.key(0), jnp.arange(1.0, 9.0)
        >>> y = F.dropout(x, key, p=0.5)
        >>> g = F.dropout_backward(jnp.ones(8), x, key, p=0.5)
        >>> ((g == 0) == (y == 0)).all().item(), sorted(set(g.tolist()))
        (True, [0.0, 2.0])
    """
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    _check_p(p)
    if training and 0 < p < 1:
        check_key("key", key, "dropout_backward")
    return dropout(grad_output, key, p, training)
