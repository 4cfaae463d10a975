"""Inverted dropout with PyTorch semantics and an explicit PRNG key.

Contract (docs/semantics.md, rules DROP-1..DROP-3):
- Training: y = x * mask with mask = keep / (1 - p) (DROP-1), each unit kept independently
  (DROP-3) as `keep_mask` defines: with probability 1 - p quantized to 16 bits. The kept
  value is x / (1 - p) exactly, as torch scales it.
- `dropout_mask` returns that float scaling mask (0 or 1/(1 - p)); `dropout` and
  `dropout_backward` both use it, so the backward regenerates the forward's mask from the
  same key (the one deliberate reuse of a key: the caller splits a fresh key per forward
  and passes it to both).
- Eval (`training=False`) or p = 0: identity, no key needed; gradient ones (DROP-2).
- p = 1: zeros, gradient zeros and never NaN, also under jax.grad (DROP-2); no 1/(1 - p)
  is ever formed.
- `p` and `training` are static Python values (they pick the code path at trace time);
  mark them static under jit (`jax.jit(dropout, static_argnames=("p", "training"))`).
- `key` is a typed key from `jax.random.key` or a legacy `jax.random.PRNGKey` array; both
  give the same mask for the same seed. Neither is torch's random stream: fnn matches
  torch's dropout in distribution, not element by element.

`keep_mask` below is the definition of the mask, in plain `jax.numpy`. `dropout_mask`
computes the same bits through `fnn._fast.dropout_masks.keep_mask` (the hash unrolled so
XLA fuses it, the decisions packed 32 to a word so the forward and the backward share one
hash), which `tests/test_fast_dropout_masks.py` proves bit-identical to `keep_mask`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_floating, check_key, check_same_shape, is_real
from fnn._fast import dropout_masks

__all__ = ["dropout", "dropout_backward", "dropout_mask", "keep_mask", "keep_threshold"]


def keep_threshold(p: float) -> int:
    """T = round((1 - p) * 2**16): a unit keeps iff its 16-bit draw is below T.

    0 < p < 2**-17 rounds to T = 2**16 (keeps all) and 1 - 2**-17 < p < 1 to T = 0 (drops
    all); otherwise T / 2**16 is within 2**-17 of 1 - p.

    >>> keep_threshold(0.5), keep_threshold(0.2), keep_threshold(1e-6)
    (32768, 52429, 65536)
    """
    return round((1.0 - float(p)) * 2**16)


def keep_mask(key: jax.Array, shape: tuple[int, ...], p: float) -> jax.Array:
    """Which units dropout keeps, by definition: a boolean array of ``shape``.

    For a shape (..., n), word j of ``jax.random.bits(key, (..., ceil(n / 2)), uint32)``
    gives unit 2j of the last axis its low 16 bits and unit 2j + 1 its high 16 bits (an odd
    n leaves the last high half unused; a 0-d mask is the low half of one word), and a unit
    keeps iff its 16 bits are below ``keep_threshold(p)``. The two halves of a uniform word
    are independent uniform 16-bit numbers, so the units are independent Bernoulli draws
    with keep probability ``keep_threshold(p) / 2**16``.

    Example:
        >>> import jax
        >>> keep_mask(jax.random.key(0), (2, 3), 0.5).shape
        (2, 3)
    """
    shape = tuple(shape)
    *lead, n = shape or (1,)
    m = (n + 1) // 2
    words = jax.random.bits(key, (*lead, m), jnp.uint32)
    halves = jnp.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(*lead, 2 * m)
    return (halves[..., :n] < keep_threshold(p)).reshape(shape)


def _check_p(p: Any) -> None:
    if not is_real(p):
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
    """The inverted-dropout scaling mask: 1/(1 - p) where ``keep_mask`` keeps, else 0 (DROP-1, DROP-3).

    p = 0 gives ones and p = 1 zeros, without drawing (so no key is needed there). Otherwise
    each unit keeps with probability round((1 - p) * 2**16) / 2**16, within 2**-17 of 1 - p.

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
    keep = dropout_masks.keep_mask(key, shape, keep_threshold(p))  # = keep_mask(key, shape, p)
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
