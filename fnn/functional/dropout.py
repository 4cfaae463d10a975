"""Inverted dropout with PyTorch semantics and an explicit PRNG key.

Contract (docs/semantics.md, rules DROP-1..DROP-3):
- Training: mask_i ~ Bernoulli(1 - p) independently per element (DROP-3) and
  y = x * mask / (1 - p) (DROP-1), with the keep probability quantized to 16 bits (below).
  `dropout_mask` returns that float scaling mask, values 0 or 1/(1 - p), and both
  `dropout` and `dropout_backward` use it, so the backward regenerates the forward's mask
  from the same key (the one deliberate reuse of a key: the caller splits a fresh key per
  forward and passes it to both).
- Eval (`training=False`) or p = 0: identity, no key needed; gradient ones (DROP-2).
- p = 1: zeros, gradient zeros and never NaN, also under jax.grad (DROP-2); no 1/(1 - p)
  is ever formed.
- `p` and `training` are static Python values (they pick the code path at trace time);
  mark them static under jit (`jax.jit(dropout, static_argnames=("p", "training"))`).
- `key` is a typed key from `jax.random.key` or a legacy `jax.random.PRNGKey` array; both
  give the same mask for the same seed.

How a mask is drawn (decided by measurement, experiments/README.md "benchmark_dropout_masks"):
JAX's partitionable threefry costs one hash per 32-bit word it returns, and a word per unit
made each 1024x512 training mask cost about 1 ms. So each random word decides two units:
for a mask of shape (..., n), `jax.random.bits(key, (..., ceil(n / 2)), uint32)` gives word
w[..., j]; unit 2j keeps iff its low half `w & 0xFFFF` < T and unit 2j + 1 keeps iff its
high half `w >> 16` < T, with T = round((1 - p) * 2**16) (an odd n leaves the last word's
high half unused; a 0-d mask uses the low half of one word). The two halves of a uniform
32-bit word are independent uniform 16-bit numbers, so the units stay independent
Bernoulli draws, but the keep probability is T / 2**16, i.e. 1 - p quantized to 1/65536:
within 2**-17 (7.6e-6) of 1 - p. The kept values stay x / (1 - p) exactly as torch scales
them, so E[y] = x * (T / 2**16) / (1 - p), off by at most 2**-17 / (1 - p) relative.
Edges: p = 0 keeps all and p = 1 drops all exactly (no draw); 0 < p < 2**-17 rounds to
T = 2**16 (keeps all) and 1 - 2**-17 < p < 1 to T = 0 (drops all). Four units per word
with 8-bit thresholds measured cheaper still, but 1/256 resolution realizes p = 0.1234 as
0.125 and p = 0.99 as 0.988 (E[y] 17% high), and drops nothing for p < 1/512: rejected.
Neither is torch's stream (torch's masks were never reproduced); the mask for a key is
fixed by the layout above. The words are JAX's own (``jax.random.bits``), computed by
``fnn.functional._threefry.random_bits``: the same threefry hash written out unrolled, because
JAX's CPU lowering runs it as a rolled loop that XLA cannot fuse (1.5-2 ms of a batch-1024
step; the module docstring there has the numbers). The decisions are then packed 32 to a
word by a reduction and unpacked by their users, so the forward and the backward share one
hash per word (`_keep`). The masks did not change: only how the same bits are computed. In
experiments/profile_step.py's breakdown the dropout thunks of a batch-1024 training step
fell from 5.7-6.0 ms to 1.7-1.9 ms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_floating, check_key, check_same_shape
from fnn.functional._threefry import random_bits

__all__ = ["dropout", "dropout_backward", "dropout_mask"]

_HALF_RANGE = 1 << 16  # each unit's draw is 16 bits: half of one 32-bit random word


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

    p = 0 gives ones and p = 1 zeros, without drawing (so no key is needed there). Otherwise
    each unit keeps with probability round((1 - p) * 2**16) / 2**16, within 2**-17 of 1 - p,
    two units per 32-bit random word (the layout is in the module docstring).

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
    keep = _keep(key, shape, _keep_threshold(p))
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - p), dtype), jnp.zeros((), dtype))


def _keep_threshold(p: float) -> int:
    """T = round((1 - p) * 2**16): a unit keeps iff its 16-bit draw is below T."""
    return round((1.0 - float(p)) * _HALF_RANGE)


def _keep(key: jax.Array, shape: tuple[int, ...], threshold: int) -> jax.Array:
    """Boolean keep mask of `shape`: unit 2j / 2j + 1 of the last axis compares the low / high
    16 bits of word j of `jax.random.bits(key, (..., ceil(n / 2)), uint32)` with `threshold`
    (those words, computed by `_threefry.random_bits` so that XLA fuses the hash)."""
    lead, n = (shape[:-1], shape[-1]) if shape else ((), 1)
    m = (n + 1) // 2
    words = random_bits(key, (*lead, m))  # = jax.random.bits(key, (*lead, m), uint32), fused
    # Interleaved (units 2j, 2j + 1 from word j): a row's units come from that row's words
    # only, so a batch-sharded mask needs no other shard's words.
    #
    # The decisions are packed 32 to a uint32 by a reduction, then unpacked where they are
    # used. XLA fuses elementwise producers into each consumer, so an elementwise mask would be
    # hashed again in the forward's fusion and in the backward's (it measured no faster than
    # JAX's own rolled loop, which writes its words once); XLA does not fuse a reduction into
    # an elementwise consumer, so the hash runs once per word and both passes read 1/32 of it.
    groups = -(-m // 16)  # 16 words (32 units) per packed word
    words = jnp.pad(words, [(0, 0)] * len(lead) + [(0, 16 * groups - m)])
    words = words.reshape(*lead, groups, 16)
    t = jnp.uint32(threshold)
    pair = ((words & 0xFFFF) < t).astype(jnp.uint32) | (((words >> 16) < t).astype(jnp.uint32) << 1)
    shifts = 2 * jnp.arange(16, dtype=jnp.uint32)
    packed = jnp.sum(pair << shifts, axis=-1, dtype=jnp.uint32)  # disjoint bits: sum = or
    bits = (packed[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(*lead, 32 * groups)[..., :n].astype(bool).reshape(shape)


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
