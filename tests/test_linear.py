"""fnn.functional.affine: linear, flatten and unflatten, manual backward vs jax.vjp, shapes and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn.functional.affine import (
    flatten,
    flatten_backward,
    linear,
    linear_backward,
    unflatten,
    unflatten_backward,
)


def _rand(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape))


@pytest.mark.parametrize("xshape", [(5, 3), (3,), (2, 4, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_backward_matches_vjp(x64, xshape, with_bias):
    x, w = _rand(0, xshape), _rand(1, (4, 3))
    b = _rand(2, (4,)) if with_bias else None
    g = _rand(3, (*xshape[:-1], 4))
    gx, gw, gb = linear_backward(g, x, w, b)
    if with_bias:
        ex, ew, eb = jax.vjp(linear, x, w, b)[1](g)
        np.testing.assert_allclose(gb, eb, rtol=1e-12)
    else:
        ex, ew = jax.vjp(lambda x, w: linear(x, w), x, w)[1](g)
        assert gb is None  # the backward convention: None for an optional input passed as None
    np.testing.assert_allclose(gx, ex, rtol=1e-12)
    np.testing.assert_allclose(gw, ew, rtol=1e-12)


def test_linear_forward_is_x_wt_plus_b(x64):
    # LIN-1: y = x W^T + b with W of shape (out, in)
    x, w, b = _rand(0, (5, 3)), _rand(1, (4, 3)), _rand(2, (4,))
    y = linear(x, w, b)
    assert y.shape == (5, 4)
    np.testing.assert_allclose(y, np.asarray(x) @ np.asarray(w).T + np.asarray(b), rtol=1e-12)
    np.testing.assert_allclose(linear(x, w), np.asarray(x) @ np.asarray(w).T, rtol=1e-12)  # LIN-2


def test_jitted_float32_linear_and_backward_match_numpy():
    # LIN-1 compiled and in float32, as training runs it: y = x Wᵀ + b and its textbook
    # gradients dx = g W, dW = gᵀ x, db = Σ_n g, in numpy float64.
    x, w, b = (_rand(i, s).astype(jnp.float32) for i, s in enumerate([(5, 3), (4, 3), (4,)]))
    g = _rand(3, (5, 4)).astype(jnp.float32)
    y, (gx, gw, gb) = jax.jit(lambda g, x, w, b: (linear(x, w, b), linear_backward(g, x, w, b)))(g, x, w, b)
    X, W, B, G = (np.asarray(a, np.float64) for a in (x, w, b, g))
    for got, want in [(y, X @ W.T + B), (gx, G @ W), (gw, G.T @ X), (gb, G.sum(0))]:
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_linear_bad_shapes_rejected():
    x, w = jnp.ones((5, 3)), jnp.ones((4, 2))
    with pytest.raises(ValueError, match=r"input shape \(5, 3\) and weight shape \(4, 2\)"):
        linear(x, w)
    with pytest.raises(
        ValueError, match=r"bias must have shape \(out_features,\) = \(4,\) .* got bias shape \(3,\)"
    ):
        linear(jnp.ones((5, 2)), w, jnp.ones(3))
    with pytest.raises(
        ValueError, match=r"weight must have shape \(out_features, in_features\), got shape \(2,\)"
    ):
        linear(jnp.ones((5, 2)), jnp.ones(2))
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        linear(jnp.ones((5, 2), jnp.int32), w)
    with pytest.raises(
        ValueError, match=r"grad_output must have the forward output's shape \(5, 4\), got \(5, 3\)"
    ):
        linear_backward(jnp.ones((5, 3)), jnp.ones((5, 2)), w)


@pytest.mark.parametrize(
    "shape,start,end,expected",
    [
        ((2, 3, 4, 5), 1, -1, (2, 60)),  # FLAT-1: dim 0 kept
        ((2, 3, 4, 5), 0, -1, (120,)),
        ((2, 3, 4, 5), 1, 2, (2, 12, 5)),
        ((2, 3, 4, 5), -3, -2, (2, 12, 5)),
        ((2, 3, 4, 5), 2, 2, (2, 3, 4, 5)),
        ((7,), 0, -1, (7,)),
        ((), 0, -1, (1,)),  # torch: a 0-d input flattens to shape (1,)
    ],
)
def test_flatten_shapes_and_backward(x64, shape, start, end, expected):
    x = _rand(0, shape)
    y = flatten(x, start, end)
    assert y.shape == expected
    np.testing.assert_array_equal(np.asarray(y).reshape(-1), np.asarray(x).reshape(-1))  # no permutation
    g = _rand(1, expected)
    (e,) = jax.vjp(lambda x: flatten(x, start, end), x)[1](g)
    np.testing.assert_array_equal(flatten_backward(g, x, start, end), e)


def test_flatten_default_keeps_batch_dim_under_jit():
    x = jnp.ones((2, 3, 4))
    assert jax.jit(flatten)(x).shape == (2, 12)  # FLAT-1
    np.testing.assert_array_equal(jax.jit(flatten_backward)(jnp.ones((2, 12)), x), np.ones((2, 3, 4)))


def test_flatten_bad_dims_rejected():
    x = jnp.ones((2, 3, 4))
    with pytest.raises(
        ValueError, match=r"start_dim must be in \[-3, 2\] for input of shape \(2, 3, 4\), got 3"
    ):
        flatten(x, 3)
    with pytest.raises(ValueError, match=r"end_dim must be in \[-3, 2\] .* got -4"):
        flatten(x, 0, -4)
    with pytest.raises(
        ValueError, match="start_dim cannot come after end_dim, got start_dim=2 and end_dim=1"
    ):
        flatten(x, 2, 1)
    with pytest.raises(TypeError, match=r"start_dim must be a Python int, got 1\.5"):
        flatten(x, 1.5)
    with pytest.raises(ValueError, match=r"start_dim must be in \[-1, 0\] for input of shape \(\), got 1"):
        flatten(jnp.float32(1.0))
    with pytest.raises(
        ValueError, match=r"grad_output must have the forward output's shape \(2, 12\), got \(24,\)"
    ):
        flatten_backward(jnp.ones(24), x)


@pytest.mark.parametrize(
    "shape, dim, sizes, expected",
    [
        ((2, 784), 1, (1, 28, 28), (2, 1, 28, 28)),
        ((2, 12), -1, (1, 3, -1), (2, 1, 3, 4)),
        ((6, 5), 0, [2, 3], (2, 3, 5)),
    ],
)
def test_unflatten_shapes_and_backward(x64, shape, dim, sizes, expected):
    # FLAT-2: torch.unflatten's shapes (a -1 inferred), the elements in place, and the
    # backward against jax.vjp and against flatten, its inverse
    x = _rand(0, shape)
    y = unflatten(x, dim, sizes)
    assert y.shape == expected
    np.testing.assert_array_equal(np.asarray(y).reshape(-1), np.asarray(x).reshape(-1))
    g = _rand(1, expected)
    (e,) = jax.vjp(lambda x: unflatten(x, dim, sizes), x)[1](g)
    np.testing.assert_array_equal(unflatten_backward(g, x, dim, sizes), e)
    np.testing.assert_array_equal(np.asarray(e).reshape(-1), np.asarray(g).reshape(-1))


def test_unflatten_bad_sizes_rejected():
    x = jnp.ones((2, 6))
    with pytest.raises(ValueError, match=r"sizes \(4, -1\) do not multiply up to the size of dim 1 \(6\)"):
        unflatten(x, 1, (4, -1))
    with pytest.raises(ValueError, match=r"sizes \(2, 2\) do not multiply up to the size of dim -1 \(6\)"):
        unflatten(x, -1, (2, 2))
    with pytest.raises(ValueError, match="sizes must be a non-empty tuple of ints >= 0 with at most one -1"):
        unflatten(x, 1, (-1, -1))
    with pytest.raises(ValueError, match=r"sizes must be a non-empty .* got \(\)"):
        unflatten(x, 1, ())
    with pytest.raises(ValueError, match=r"sizes must be a non-empty .* got \(2, -3\)"):
        unflatten(x, 1, (2, -3))
    with pytest.raises(TypeError, match="sizes must be a tuple of ints, got 6"):
        unflatten(x, 1, 6)
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\] for input of shape \(2, 6\), got 2"):
        unflatten(x, 2, (6,))
    with pytest.raises(ValueError, match="at least 1 dimension, got a 0-d input"):
        unflatten(jnp.float32(1.0), 0, (1,))
    with pytest.raises(ValueError, match=r"grad_output must have the forward output's shape \(2, 2, 3\)"):
        unflatten_backward(jnp.ones((2, 6)), x, 1, (2, 3))


def test_unflatten_layer_stores_a_list_as_a_tuple_and_checks_it():
    from fnn import nn

    layer = nn.Unflatten(1, [1, 28, 28])
    assert layer.unflattened_size == (1, 28, 28) and hash(layer) == hash(nn.Unflatten(1, (1, 28, 28)))
    with pytest.raises(TypeError, match="unflattened_size must be a tuple of ints, got 784"):
        nn.Unflatten(1, 784)
    with pytest.raises(TypeError, match=r"dim must be an int, got 1\.0"):
        nn.Unflatten(1.0, (1, 28, 28))
