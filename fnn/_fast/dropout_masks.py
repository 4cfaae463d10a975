"""Dropout's keep mask, computed faster: the values of ``fnn.functional.stochastic.keep_mask``.

Contract: ``keep_mask(key, shape, keep_threshold(p))`` equals the plain definition
``keep_mask(key, shape, p)`` of ``fnn/functional/stochastic.py`` bit for bit
(``tests/test_fast_dropout_masks.py`` checks it for several shapes and p, typed and legacy
keys, under jit and vmap). Two things differ, neither of them a value:

- the words come from ``fnn._fast.threefry.random_bits`` (``jax.random.bits`` with its hash
  unrolled, so that XLA fuses it into the comparison that consumes it);
- the decisions are packed 32 to a uint32 word by a reduction, then unpacked where they are
  used. XLA fuses an elementwise producer into each of its consumers, so an elementwise
  mask would be hashed again in the forward's fusion and in the backward's; it does not fuse
  a reduction into an elementwise consumer, so the hash runs once per word and both passes
  read 1/32 of it.

Units 2j and 2j + 1 of a row come from that row's word j only, so a batch-sharded mask needs
no other shard's words.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnn._fast.threefry import random_bits

__all__ = ["keep_mask"]


def keep_mask(key: jax.Array, shape: tuple[int, ...], threshold: int) -> jax.Array:
    """Boolean keep mask of ``shape``: unit 2j / 2j + 1 of the last axis keeps iff the low /
    high 16 bits of word j of ``jax.random.bits(key, (..., ceil(n / 2)), uint32)`` are below
    ``threshold`` (a 0-d mask is the low half of one word): ``threshold`` is
    ``fnn.functional.stochastic.keep_threshold(p)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn.functional.stochastic import keep_mask as definition, keep_threshold
        >>> key = jax.random.key(0)
        >>> bool((keep_mask(key, (3, 5), keep_threshold(0.3)) == definition(key, (3, 5), 0.3)).all())
        True
    """
    shape = tuple(shape)
    lead, n = (shape[:-1], shape[-1]) if shape else ((), 1)
    m = (n + 1) // 2
    words = random_bits(key, (*lead, m))
    groups = -(-m // 16)  # 16 words (32 units) per packed word
    words = jnp.pad(words, [(0, 0)] * len(lead) + [(0, 16 * groups - m)])
    words = words.reshape(*lead, groups, 16)
    t = jnp.uint32(threshold)
    pair = ((words & 0xFFFF) < t).astype(jnp.uint32) | (((words >> 16) < t).astype(jnp.uint32) << 1)
    shifts = 2 * jnp.arange(16, dtype=jnp.uint32)
    packed = jnp.sum(pair << shifts, axis=-1, dtype=jnp.uint32)  # disjoint bits: sum = or
    bits = (packed[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(*lead, 32 * groups)[..., :n].astype(bool).reshape(shape)
