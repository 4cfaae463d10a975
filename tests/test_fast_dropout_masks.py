"""fnn._fast.dropout_masks: the packed keep mask equals the plain definition bit for bit.

The reference is `fnn.functional.stochastic.keep_mask`, the mask written in plain jax.numpy
(16-bit halves of `jax.random.bits` below a threshold); that definition is itself checked
here against a numpy rebuild of the same layout. Every comparison is exact: shapes of every
rank (0-d, empty, odd, a multiple of the 32-unit packing and not), p at the quantization
edges, typed and legacy keys, another key implementation, under jit and under vmap.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn._fast import dropout_masks
from fnn.functional import dropout_mask
from fnn.functional.stochastic import keep_mask, keep_threshold

SHAPES = [(), (1,), (2,), (7,), (3, 5), (4, 32), (2, 33), (2, 3, 65), (5, 0), (0, 3), (128, 257)]
PS = [1e-6, 0.1234, 0.5, 0.8, 1 - 1e-6]


def _fast(key, shape, p):
    return dropout_masks.keep_mask(key, shape, keep_threshold(p))


@functools.cache
def _masks(shape):
    """{(p, key kind): (fast, definition)} for one shape: every p and both key kinds in one
    compiled program (eagerly, each op at each shape and p would compile on its own)."""

    @fast_jit
    def both(keys):
        return {
            (p, kind): (_fast(key, shape, p), keep_mask(key, shape, p))
            for kind, key in keys.items()
            for p in PS
        }

    return jax.tree.map(np.asarray, both({"typed": jax.random.key(3), "legacy": jax.random.PRNGKey(3)}))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", PS)
def test_fast_mask_equals_the_definition(shape, p):
    for kind in ("typed", "legacy"):
        got, want = _masks(shape)[p, kind]
        assert got.dtype == want.dtype == np.bool_ and got.shape == want.shape == shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("p", [0.1234, 0.5])
def test_fast_mask_equals_the_definition_under_jit_and_vmap(p):
    keys = jax.random.split(jax.random.key(11), 4)
    shape = (6, 45)
    fast = jax.jit(jax.vmap(lambda k: _fast(k, shape, p)))(keys)
    plain = jax.vmap(lambda k: keep_mask(k, shape, p))(keys)
    np.testing.assert_array_equal(fast, plain)
    for key, row in zip(keys, fast, strict=True):  # and each one as drawn alone, eagerly
        np.testing.assert_array_equal(row, keep_mask(key, shape, p))
    legacy = jax.random.key_data(keys)
    np.testing.assert_array_equal(jax.jit(jax.vmap(lambda k: _fast(k, shape, p)))(legacy), plain)


def test_other_key_implementations_follow_the_definition():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(_fast(key, (9, 17), 0.3), keep_mask(key, (9, 17), 0.3))


@pytest.mark.parametrize("shape", [(), (7,), (4, 33), (3, 0)])
def test_dropout_mask_is_the_definition_scaled(shape):
    # The public op, which runs the fast path: 1/(1 - p) exactly where the definition keeps.
    key, p = jax.random.key(8), 0.3
    want = np.where(np.asarray(keep_mask(key, shape, p)), np.float32(1 / (1 - p)), np.float32(0))
    np.testing.assert_array_equal(dropout_mask(key, shape, p), want)


def test_the_definition_is_16_bit_halves_of_jax_random_bits():
    # The definition against numpy: unit 2j / 2j + 1 of a row is the low / high half of word j
    # of jax.random.bits(key, (..., ceil(n / 2)), uint32), kept iff below round((1 - p) 2^16).
    key, shape, p = jax.random.key(21), (40, 51), 0.2
    words = np.asarray(jax.random.bits(key, (40, 26), jnp.uint32))
    halves = np.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(40, 52)[:, :51]
    np.testing.assert_array_equal(keep_mask(key, shape, p), halves < 52429)
    assert keep_threshold(p) == 52429  # round(0.8 * 65536 = 52428.8)
