"""``jax.random.bits(key, shape, uint32)`` for threefry keys, as straight-line code that fuses.

Contract: ``random_bits(key, shape)`` returns exactly the words ``jax.random.bits(key, shape,
jnp.uint32)`` returns (``tests/test_threefry.py`` compares them bit for bit), so every mask
drawn from it is the mask JAX's own generator gives for that key.

Why: on the CPU, JAX lowers its threefry hash as a rolled ``fori_loop`` of 5 iterations
(``_threefry2x32_cpu_lowering_rule`` in ``jax/_src/random/threefry2x32.py``), which XLA runs
as a while loop over whole word arrays. Written out unrolled in ``jnp``, the 20 rounds are
elementwise integer ops that XLA fuses with the comparison that consumes them: the words
never reach memory.

What it computes (JAX's partitionable threefry, the default since jax 0.5):
- counters: the row-major index i of each element as a 64-bit number split in two words,
  ``hi = i >> 32`` and ``lo = i & 0xFFFFFFFF`` (``prng.iota_2x32_shape``); arrays here have
  fewer than 2**32 elements, so ``hi = 0``;
- ``(x0, x1) = threefry2x32((k0, k1), (hi, lo))``: Salmon et al.'s Threefry-2x32 with 20
  rounds, rotations (13, 15, 26, 6) and (17, 29, 16, 24), key schedule ``k2 = k0 ^ k1 ^
  0x1BD11BDA`` and an injection every 4 rounds;
- the word is ``x0 ^ x1``.
Keys of another implementation (``jax.random.key(0, impl='rbg')``), the non-partitionable
threefry mode (``jax_threefry_partitionable=False``) and arrays of 2**32 elements or more go
to ``jax.random.bits`` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, d: int) -> jax.Array:
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32, 20 rounds, unrolled (JAX's ``_threefry2x32_lowering`` without the loop).

    Args:
        k0, k1: the key's two uint32 words (scalars).
        x0, x1: the counter's two uint32 words (arrays of one shape).

    Returns:
        The two uint32 output words, of the counters' shape.
    """
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _key_words(key: jax.Array) -> jax.Array | None:
    """The key's two uint32 words, or None when it is not a threefry key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        # a PRNGSpec prints as its implementation's name
        return jax.random.key_data(key) if str(jax.random.key_impl(key)) == "threefry2x32" else None
    return key if key.shape == (2,) and jax.config.jax_default_prng_impl == "threefry2x32" else None


def _row_major_index(shape: tuple[int, ...]) -> jax.Array:
    """uint32 array of ``shape`` holding each element's row-major position.

    A sum of broadcast iotas times strides, as ``prng.iota_2x32_shape`` lowers it, so that a
    mask sharded along the batch needs only its own rows' counters.
    """
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    return index


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint32 words, equal to ``jax.random.bits(key, shape, jnp.uint32)``.

    Args:
        key: a typed PRNG key or a legacy uint32[2] key.
        shape: the words' shape.

    Returns:
        A uint32 array of ``shape``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> key = jax.random.key(3)
        >>> bool((random_bits(key, (4, 5)) == jax.random.bits(key, (4, 5), jnp.uint32)).all())
        True
    """
    shape = tuple(shape)
    words = _key_words(key)
    if words is None or not jax.config.jax_threefry_partitionable or math.prod(shape) >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    x0, x1 = threefry2x32(words[0], words[1], jnp.zeros(shape, jnp.uint32), _row_major_index(shape))
    return x0 ^ x1
