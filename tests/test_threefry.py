"""fnn._fast.threefry: JAX's threefry words, unrolled so XLA fuses them.

The reference is JAX's own generator: ``jax.random.bits(key, shape, uint32)`` must be
reproduced bit for bit, for typed and legacy keys, every rank, odd sizes, inside jit and
under vmap; keys of another implementation must go to JAX unchanged. The last test checks
the reason the module exists: the compiled mask has no while loop (JAX's CPU lowering of
threefry is a rolled loop).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn._fast.threefry import random_bits, threefry2x32

SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (1024, 256), (5, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2**31 + 7])
def test_random_bits_equal_jax_random_bits_typed_key(shape, seed):
    key = jax.random.key(seed)
    expected = np.asarray(jax.random.bits(key, shape, jnp.uint32))
    got = np.asarray(random_bits(key, shape))
    assert got.dtype == np.uint32 and got.shape == shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(9,), (4, 6)])
def test_random_bits_equal_jax_random_bits_legacy_key(shape):
    key = jax.random.PRNGKey(42)
    np.testing.assert_array_equal(random_bits(key, shape), jax.random.bits(key, shape, jnp.uint32))


def test_random_bits_inside_jit_and_vmap_and_split_keys():
    keys = jax.random.split(jax.random.key(3), 4)
    got = jax.jit(jax.vmap(lambda k: random_bits(k, (6, 5))))(keys)
    expected = jnp.stack([jax.random.bits(k, (6, 5), jnp.uint32) for k in keys])
    np.testing.assert_array_equal(got, expected)


def test_other_key_implementations_go_to_jax():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(random_bits(key, (3, 4)), jax.random.bits(key, (3, 4), jnp.uint32))


def test_threefry2x32_known_answer():
    # Random123's known-answer vectors for Threefry-2x32 with 20 rounds (kat_vectors):
    # key (0, 0), counter (0, 0) -> (0x6b200159, 0x99ba4efe); all ones -> (0x1cb996fc, 0xbb002be7).
    zero = jnp.uint32(0)
    ones = jnp.uint32(0xFFFFFFFF)
    x0, x1 = threefry2x32(zero, zero, jnp.zeros(1, jnp.uint32), jnp.zeros(1, jnp.uint32))
    assert (int(x0[0]), int(x1[0])) == (0x6B200159, 0x99BA4EFE)
    x0, x1 = threefry2x32(ones, ones, jnp.full(1, ones), jnp.full(1, ones))
    assert (int(x0[0]), int(x1[0])) == (0x1CB996FC, 0xBB002BE7)


def test_compiled_mask_has_no_while_loop():
    # JAX's CPU lowering of jax.random.bits is a rolled 5-iteration loop; ours must not be.
    def mask(key):
        return (random_bits(key, (64, 32)) & 0xFFFF) < 40000

    hlo = jax.jit(mask).lower(jax.random.key(0)).as_text()
    assert "while" not in hlo
    reference = jax.jit(lambda k: jax.random.bits(k, (64, 32), jnp.uint32)).lower(jax.random.key(0))
    if jax.default_backend() == "cpu":
        assert "while" in reference.compile().as_text()
