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

`dropout2d` (DROP2D-1..3) drops whole channels: its mask is `dropout_mask` of shape (N, C)
broadcast over the spatial dims; a 3-D input is (N, C, L), as torch 2.13 reads it (with
torch's warning), not an unbatched (C, H, W).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_floating, check_key, check_same_shape, is_real
from fnn._fast import dropout_masks

__all__ = [
    "dropout",
    "dropout2d",
    "dropout2d_backward",
    "dropout_backward",
    "dropout_mask",
    "keep_mask",
    "keep_threshold",
]


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


def _channel_mask_shape(input: Any, who: str) -> tuple[int, ...]:
    """(N, C, 1, ..., 1): one draw per (sample, channel), as torch's feature dropout (DROP2D-1)."""
    shape = tuple(jnp.shape(input))
    if len(shape) < 2:
        raise ValueError(
            f"{who}: feature dropout requires at least 2 dimensions (N, C, *), got shape {shape}"
        )
    if len(shape) == 3:  # torch 2.13 reads 3-D as (N, C, L) and says so (DROP2D-3)
        warnings.warn(
            f"{who}: Received a 3D input {shape} and assuming that channel-wise 1D dropout behavior "
            "is desired - input is interpreted as shape (N, C, L), where C is the channel dim "
            "(as torch 2.13's F.dropout2d), not as an unbatched (C, H, W)",
            UserWarning,
            stacklevel=3,
        )
    elif len(shape) != 4:
        warnings.warn(
            f"{who}: Received a {len(shape)}-D input, which torch deprecates (dropout2d is for "
            "3-D or 4-D inputs); its channels (dim 1) are dropped whole as for 4-D",
            UserWarning,
            stacklevel=3,
        )
    return shape[:2] + (1,) * (len(shape) - 2)


def dropout2d(input: jax.Array, key: jax.Array | None, p: float = 0.5, training: bool = True) -> jax.Array:
    """Channel dropout: y[n, c] = x[n, c] * m[n, c], one mask entry per (sample, channel) (DROP2D-1).

    m = dropout_mask(key, (N, C), p): 0 (the whole feature map dropped) or 1/(1 - p). Eval or
    p = 0: identity; p = 1: zeros (DROP2D-2, as DROP-2). Input (N, C, H, W); a 3-D input is
    read as (N, C, L) with a warning, and other ranks >= 2 drop dim 1 with a warning, as
    torch 2.13 does (DROP2D-3).

    Args:
        input: a floating array (N, C, H, W) (or (N, C, L), (N, C, *), see above).
        key: a PRNG key, required when training with 0 < p < 1; pass the same key to
            `dropout2d_backward` to get the same mask.
        p: the probability of zeroing a channel, in [0, 1] (default 0.5), a static number.
        training: apply dropout (default True); False is the identity.

    Returns:
        An array of the input's shape and dtype: each channel all zeros or x/(1 - p).

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> y = F.dropout2d(jnp.ones((2, 4, 3, 3)), jax.random.key(0), p=0.5)
        >>> sorted(set(y.reshape(8, 9).min(1).tolist())) == sorted(set(y.reshape(8, 9).max(1).tolist()))
        True
    """
    check_floating("input", input)
    _check_p(p)
    mask_shape = _channel_mask_shape(input, "dropout2d")
    if not training or p == 0:
        return input
    if p < 1:
        check_key("key", key, "dropout2d")
    mask = dropout_mask(key, mask_shape[:2], p, jnp.result_type(input))
    return input * mask.reshape(mask_shape)


def dropout2d_backward(
    grad_output: jax.Array, input: jax.Array, key: jax.Array | None, p: float = 0.5, training: bool = True
) -> jax.Array:
    """Gradient of `dropout2d` with respect to its input.

    y[n, c, ...] = x[n, c, ...] * m[n, c] with m independent of x  =>  dL/dx = g * m: the
    same channel mask applied to g, regenerated from the same key. Eval or p = 0: dL/dx = g;
    p = 1: dL/dx = 0 (DROP2D-2).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        key: the forward's key (the same one, so the mask is the same).
        p: the forward's p (default 0.5).
        training: the forward's training flag (default True).

    Returns:
        dL/dx, of the input's shape: zero in the channels the forward dropped, g/(1 - p) elsewhere.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> key, x = jax.random.key(0), jnp.ones((2, 4, 3, 3))
        >>> g = F.dropout2d_backward(jnp.ones_like(x), x, key, p=0.5)
        >>> bool((g == F.dropout2d(x, key, p=0.5)).all())
        True
    """
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    _check_p(p)
    if training and 0 < p < 1:
        check_key("key", key, "dropout2d_backward")
    with warnings.catch_warnings():  # the forward's check below warned already for input
        warnings.simplefilter("ignore")
        return dropout2d(grad_output, key, p, training)
