"""F.pad and F.pad_backward (PAD-1..3).

The forward is compared with numpy.pad ('constant', 'reflect', 'edge', 'wrap') where the
pads are non-negative, the manual backward with jax.vjp of the forward in float64, and the
rules' golden values; each bad input has its test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F

NUMPY_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
# (input shape, pad): one, two and three padded dims, as the modes allow (PAD-2)
SHAPES = [
    ((2, 3, 5), (2, 3)),
    ((2, 2, 4, 5), (1, 3, 3, 2)),
    ((2, 4, 5), (0, 4, 2, 1)),
    ((1, 2, 3, 4, 5), (1, 2, 2, 0, 1, 1)),
]


def numpy_widths(ndim, pad):
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        widths[ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return widths


@pytest.mark.parametrize("mode", list(NUMPY_MODE))
@pytest.mark.parametrize(("shape", "pad"), SHAPES, ids=str)
def test_forward_equals_numpy_pad(mode, shape, pad):
    """PAD-1/2: each mode's copy rule is numpy's constant / reflect / edge / wrap."""
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    want = np.pad(x, numpy_widths(len(shape), pad), mode=NUMPY_MODE[mode])
    np.testing.assert_array_equal(F.pad(jnp.asarray(x), pad, mode), want)


CROPS = [
    ((2, 3, 6), (-1, 3)),
    ((2, 3, 6), (4, -2)),
    ((1, 2, 5, 6), (-2, 1, 2, -1)),
    ((2, 4, 5), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("mode", list(NUMPY_MODE))
@pytest.mark.parametrize(("shape", "pad"), SHAPES + CROPS, ids=str)
def test_manual_backward_equals_jax_vjp(x64, mode, shape, pad):
    """PAD-3: every output's gradient goes back to the element it copies (negative pads crop)."""
    if mode == "circular" and any(p > 0 for p in pad) and any(p < 0 for p in pad):
        pad = tuple(max(p, -1) if p < 0 else min(p, 3) for p in pad)  # wrap at most once after the crop
    x = jnp.asarray(np.random.default_rng(1).normal(size=shape))

    @fast_jit
    def run(x):
        y, pull = jax.vjp(lambda x: F.pad(x, pad, mode), x)
        g = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return F.pad_backward(g, x, pad, mode), pull(g)[0]

    manual, auto = run(x)
    np.testing.assert_allclose(manual, auto, rtol=1e-13, atol=1e-13)


def test_golden_constant_value_and_crop():
    """PAD-1: a fill value, a negative pad crops, any number of dims."""
    x = jnp.array([[1.0, 2.0, 3.0]])
    assert F.pad(x, (1, -1), value=9.0).tolist() == [[9.0, 1.0, 2.0]]
    assert F.pad(x, (0, 0, 1, 0)).tolist() == [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]
    assert F.pad(x, (-3, 0)).shape == (1, 0)
    assert F.pad_backward(jnp.array([[5.0, 6.0, 7.0]]), x, (1, -1)).tolist() == [[6.0, 7.0, 0.0]]


def test_golden_modes():
    """PAD-2: [0, 1, 2, 3] padded by (2, 1)."""
    x = jnp.array([[[0.0, 1.0, 2.0, 3.0]]])
    got = {m: F.pad(x, (2, 1), mode=m)[0, 0].tolist() for m in ("reflect", "replicate", "circular")}
    assert got == {
        "reflect": [2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0],
        "replicate": [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 3.0],
        "circular": [2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0],
    }


def test_golden_negative_pads_in_the_copy_modes():
    """PAD-2: reflect/replicate mirror the whole input, then crop; circular crops, then wraps."""
    x = jnp.arange(5.0).reshape(1, 1, 5)
    assert F.pad(x, (-2, 4), mode="reflect")[0, 0].tolist() == [2.0, 3.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert F.pad(x, (4, -2), mode="replicate")[0, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0]
    assert F.pad(x, (-1, 3), mode="circular")[0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0]


def test_golden_backward_folds_copies_onto_their_source():
    """PAD-3: reflect (2, 1) of 4 values reads sources [2, 1, 0, 1, 2, 3, 2]: counts [1, 2, 3, 1]."""
    x = jnp.zeros((1, 1, 4))
    ones = jnp.ones((1, 1, 7))
    got = {
        m: F.pad_backward(ones, x, (2, 1), mode=m)[0, 0].tolist()
        for m in ("reflect", "replicate", "circular")
    }
    assert got == {
        "reflect": [1.0, 2.0, 3.0, 1.0],
        "replicate": [3.0, 1.0, 1.0, 2.0],
        "circular": [2.0, 1.0, 2.0, 2.0],
    }


# --------------------------------------------------------------------------- errors

X = jnp.zeros((1, 2, 4))


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="mode must be one of"):
        F.pad(X, (1, 1), mode="symmetric")


def test_odd_pad_length_raises():
    with pytest.raises(ValueError, match="pad's length must be even"):
        F.pad(X, (1,))


def test_more_pairs_than_dims_raises():
    with pytest.raises(ValueError, match="pads 4 dims, more than the input's 3"):
        F.pad(X, (1,) * 8)


def test_reflect_pad_as_large_as_the_dim_raises():
    with pytest.raises(ValueError, match="reflect padding must be less than the dim's size"):
        F.pad(X, (4, 0), mode="reflect")


def test_circular_wrapping_more_than_once_raises():
    with pytest.raises(ValueError, match="wrap around at most once"):
        F.pad(X, (5, 0), mode="circular")


@pytest.mark.parametrize(("shape", "pad"), [((4,), (1, 1)), ((1, 1, 3, 4), (1, 1)), ((3, 4), (1, 1, 1, 1))])
def test_copy_modes_on_an_input_of_the_wrong_ndim_raise(shape, pad):
    """torch: a pad of length 2k in a copy mode needs a (k+1)-D or (k+2)-D input."""
    with pytest.raises(ValueError, match="needs a"):
        F.pad(jnp.zeros(shape), pad, mode="replicate")


def test_fill_value_in_a_copy_mode_raises():
    with pytest.raises(ValueError, match="takes no fill value"):
        F.pad(X, (1, 1), mode="reflect", value=1.0)


def test_cropping_past_the_dim_raises():
    with pytest.raises(ValueError, match="padded size would be -1"):
        F.pad(X, (-3, -2))


def test_non_int_pad_raises():
    with pytest.raises(TypeError, match="pad must be a tuple of ints"):
        F.pad(X, (1.0, 1.0))


def test_grad_output_of_the_wrong_shape_raises():
    with pytest.raises(ValueError, match="grad_output must have the forward output's shape"):
        F.pad_backward(jnp.zeros((1, 2, 5)), X, (1, 1), mode="circular")
