"""fnn.functional.dropout: inverted dropout with explicit keys (SEMANTICS 1.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn.functional.dropout import dropout, dropout_backward, dropout_mask

jdropout = jax.jit(dropout, static_argnames=("p", "training"))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_drop_rate_and_scaling(p):
    x = jnp.full((1000, 1000), 2.0)
    y = np.asarray(dropout(x, jax.random.key(0), p))
    dropped = y == 0
    # DROP-1/DROP-3: per-element Bernoulli(1 - p); 1e6 draws put the rate within ~5 sigma
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / y.size)
    np.testing.assert_allclose(y[~dropped], 2.0 / (1 - p), rtol=1e-6)  # inverted dropout scaling


def test_mask_is_per_element_not_broadcast():
    y = np.asarray(dropout(jnp.ones((200, 200)), jax.random.key(1), 0.5))
    # DROP-3: neither rows nor columns are dropped as a whole
    assert 0 < (y == 0).mean(axis=0).min() and (y == 0).mean(axis=0).max() < 1
    assert 0 < (y == 0).mean(axis=1).min() and (y == 0).mean(axis=1).max() < 1


def test_eval_is_identity_without_key():
    x = jnp.arange(6.0).reshape(2, 3)
    assert dropout(x, None, 0.5, training=False) is x  # DROP-1: eval is identity
    np.testing.assert_array_equal(jax.grad(lambda x: dropout(x, None, 0.9, False).sum())(x), np.ones((2, 3)))
    np.testing.assert_array_equal(
        dropout_backward(jnp.ones((2, 3)), x, None, 0.5, training=False), np.ones((2, 3))
    )


def test_p0_identity_gradient_ones():
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(dropout(x, jax.random.key(0), 0.0), x)  # DROP-2
    np.testing.assert_array_equal(dropout(x, None, 0), x)  # no key needed at p = 0
    np.testing.assert_array_equal(
        jax.grad(lambda x: dropout(x, jax.random.key(0), 0.0).sum())(x), np.ones((2, 3))
    )
    np.testing.assert_array_equal(dropout_backward(jnp.ones((2, 3)), x, None, 0.0), np.ones((2, 3)))


def test_p1_zeros_with_zero_not_nan_gradient():
    x = jnp.arange(6.0).reshape(2, 3)
    key = jax.random.key(0)
    # DROP-2: p = 1 gives zeros and a zero gradient (Equinox gives NaN)
    np.testing.assert_array_equal(dropout(x, key, 1.0), np.zeros((2, 3)))
    for f in (dropout, jdropout):
        grad = jax.grad(lambda x: f(x, key, p=1.0).sum())(x)
        np.testing.assert_array_equal(grad, np.zeros((2, 3)))
    np.testing.assert_array_equal(dropout_backward(jnp.ones((2, 3)), x, key, 1.0), np.zeros((2, 3)))


def test_same_key_same_mask_different_keys_differ():
    x = jnp.ones((64, 64))
    a, b = dropout(x, jax.random.key(3), 0.5), dropout(x, jax.random.key(3), 0.5)
    np.testing.assert_array_equal(a, b)
    k1, k2 = jax.random.split(jax.random.key(3))
    assert not np.array_equal(dropout(x, k1, 0.5), dropout(x, k2, 0.5))


def test_typed_and_legacy_keys_give_the_same_mask():
    x = jnp.ones((32, 32))
    typed = dropout(x, jax.random.key(7), 0.3)
    legacy = dropout(x, jax.random.PRNGKey(7), 0.3)
    np.testing.assert_array_equal(typed, legacy)
    np.testing.assert_array_equal(dropout_mask(jax.random.PRNGKey(7), (32, 32), 0.3), typed)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_backward_regenerates_mask_and_matches_vjp(x64, p, make_key):
    key = make_key(11)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7)))
    g = jnp.asarray(np.random.default_rng(1).normal(size=(5, 7)))
    (expected,) = jax.vjp(lambda x: dropout(x, key, p), x)[1](g)
    np.testing.assert_array_equal(dropout_backward(g, x, key, p), expected)
    m = dropout_mask(key, (5, 7), p, jnp.float64)
    np.testing.assert_array_equal(dropout(x, key, p), x * m)  # forward uses the same mask
    assert set(np.unique(np.asarray(m))) <= {0.0, 1.0 / (1.0 - p) if p < 1 else 0.0}


def test_jit_equals_eager():
    x, key = jnp.arange(1.0, 101.0).reshape(10, 10), jax.random.key(5)
    np.testing.assert_array_equal(jdropout(x, key, p=0.3), dropout(x, key, 0.3))
    jback = jax.jit(dropout_backward, static_argnames=("p", "training"))
    np.testing.assert_array_equal(jback(x, x, key, p=0.3), dropout_backward(x, x, key, 0.3))


def test_dtype_follows_input():
    assert dropout(jnp.ones(4, jnp.bfloat16), jax.random.key(0), 0.5).dtype == jnp.bfloat16
    assert dropout_mask(jax.random.key(0), (3,), 0.5).dtype == jnp.float32


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_out_of_range_rejected(p):
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, got {p}"):
        dropout(x, jax.random.key(0), p)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout(x, jax.random.key(0), p, training=False)  # checked in eval too, as torch does
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout_backward(x, x, jax.random.key(0), p)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout_mask(jax.random.key(0), (3,), p)


def test_bad_arguments_rejected():
    x = jnp.ones(3)
    with pytest.raises(
        ValueError, match=r"dropout needs a PRNG key \(key=jax.random.key\(...\)\) when training, got None"
    ):
        dropout(x, None, 0.5)
    with pytest.raises(ValueError, match="dropout_backward needs a PRNG key"):
        dropout_backward(x, x, None, 0.5)
    with pytest.raises(TypeError, match="p must be a static Python number, got "):
        dropout(x, jax.random.key(0), jnp.float32(0.5))
    with pytest.raises(TypeError, match="key must be a PRNG key from jax.random.key .* got int"):
        dropout(x, 0, 0.5)
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        dropout(jnp.ones(3, jnp.int32), jax.random.key(0))
    with pytest.raises(ValueError, match=r"grad_output and input must have the same shape .* \(2,\)"):
        dropout_backward(jnp.ones(2), x, jax.random.key(0))
