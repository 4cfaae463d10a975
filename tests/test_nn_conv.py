"""nn.Conv1d and nn.Conv2d (CONV-5, CONV-7, CONV-8).

apply_vjp's pullback is compared with jax.vjp of apply in float64 for every padding_mode,
the padding modes with an explicit F.pad followed by an unpadded conv written out here,
the init with torch's bound 1/√fan_in; each bad constructor argument or input has its test.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

LAYERS = [
    (nn.Conv1d(2, 4, 3), (2, 2, 7)),
    (nn.Conv1d(2, 4, 4, padding="same", padding_mode="reflect"), (2, 2, 7)),
    (nn.Conv1d(2, 4, 3, stride=2, padding=2, padding_mode="circular"), (2, 2, 8)),
    (nn.Conv1d(2, 4, 3, padding=1, groups=2, bias=False, padding_mode="replicate"), (2, 6)),
    (nn.Conv2d(2, 3, (3, 2)), (2, 2, 5, 6)),
    (nn.Conv2d(2, 3, (3, 2), padding="same", dilation=(2, 1)), (2, 2, 6, 5)),
    (nn.Conv2d(2, 3, (3, 2), padding=(2, 1), padding_mode="reflect"), (2, 2, 5, 5)),
    (nn.Conv2d(2, 3, 3, stride=(2, 3), padding=1, padding_mode="replicate"), (1, 2, 6, 7)),
    (nn.Conv2d(2, 3, (3, 2), padding="same", padding_mode="circular"), (2, 2, 4, 5)),
    (nn.Conv2d(4, 2, 3, padding="valid", groups=2, bias=False), (2, 4, 5, 5)),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=[repr(layer) for layer, _ in LAYERS])
def test_pullback_equals_jax_vjp_of_apply(x64, layer, shape):
    """CONV-8: conv*_backward then pad_backward equals jax.vjp of the forward, each padding_mode."""
    layer = type(layer)(**{**layer.__dict__, "dtype": "float64"})
    params, state = layer.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape))

    @fast_jit
    def run(params, x):
        y, _, pullback = layer.apply_vjp(params, state, x, train=True)
        y_auto, pull = jax.vjp(lambda p, x: layer.apply(p, state, x, train=True)[0], params, x)
        g = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return y, y_auto, pullback(g), pull(g)

    y, y_auto, (gp, gx), (gp_auto, gx_auto) = run(params, x)
    np.testing.assert_array_equal(y, y_auto)
    np.testing.assert_allclose(gx, gx_auto, rtol=1e-12, atol=1e-12)
    assert set(gp) == set(gp_auto) == ({"weight", "bias"} if layer.bias else {"weight"})
    for name in gp:
        np.testing.assert_allclose(gp[name], gp_auto[name], rtol=1e-12, atol=1e-12)


def test_padding_modes_pad_first_then_convolve_unpadded(x64):
    """CONV-8: 'reflect' with 'same' and an even kernel: F.pad by (left 1, right 2), then padding 0."""
    layer = nn.Conv2d(1, 1, (1, 4), padding="same", padding_mode="reflect", dtype="float64")
    params, _ = layer.init(jax.random.key(0))
    x = jnp.arange(7.0).reshape(1, 1, 1, 7)
    y, _ = layer.apply(params, {}, x, train=False)
    padded = jnp.array([[[[1.0, 0, 1, 2, 3, 4, 5, 6, 5, 4]]]])  # reflect (1, 2)
    np.testing.assert_allclose(y, F.conv2d(padded, params["weight"], params["bias"]), rtol=1e-13)


def test_init_has_torchs_names_shapes_and_bound():
    """CONV-7: weight (out, in/groups, *k) and bias (out,), both U(±1/√fan_in), fan_in = in/groups·prod(k)."""
    layer = nn.Conv2d(6, 16, 5, groups=2)
    params, state = layer.init(jax.random.key(0))
    assert state == {} and list(layer.state_dict(params, state)) == ["weight", "bias"]
    assert params["weight"].shape == (16, 3, 5, 5) and params["weight"].dtype == jnp.float32
    bound = 1 / math.sqrt(3 * 25)
    assert 0.99 * bound < float(jnp.abs(params["weight"]).max()) <= bound
    assert float(jnp.abs(params["bias"]).max()) <= bound
    assert "bias" not in nn.Conv1d(2, 3, 2, bias=False).init(jax.random.key(0))[0]


def test_init_is_uniform_within_torchs_bound_statistically():
    """CONV-7 on SEMANTICS.md's Conv2d(6, 16, 5): w·√150 ~ U(−1, 1) over 2400 draws: mean 0
    (standard error 0.012), variance 1/3 (standard error 0.006), each quarter of (−1, 1)
    holding a quarter of the draws (standard error 0.009); 5 standard errors allowed."""
    params, _ = nn.Conv2d(6, 16, 5).init(jax.random.key(3))
    u = np.asarray(params["weight"], np.float64).ravel() * math.sqrt(150)
    assert u.size == 2400 and np.abs(u).max() <= 1 + 1e-6
    assert abs(u.mean()) < 0.06 and abs(u.var() - 1 / 3) < 0.03
    quarters = np.histogram(u, bins=[-1, -0.5, 0, 0.5, 1])[0] / u.size
    np.testing.assert_allclose(quarters, 0.25, atol=0.045)


def test_spec_is_hashable_and_normalises_tuples():
    assert nn.Conv2d(1, 2, 3) == nn.Conv2d(1, 2, (3, 3)) and hash(nn.Conv2d(1, 2, 3)) == hash(
        nn.Conv2d(1, 2, [3, 3])
    )
    layer = nn.Conv2d(1, 2, 3, stride=2, padding=1)
    assert (layer.kernel_size, layer.stride, layer.padding, layer.dilation) == (
        (3, 3),
        (2, 2),
        (1, 1),
        (1, 1),
    )
    assert nn.Conv1d(1, 2, 3, padding="same").padding == "same"


def test_unbatched_input(x64):
    """CONV-1: a (C, H, W) input gives (C_out, H_out, W_out), the batch of one's values."""
    layer = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular", dtype="float64")
    params, _ = layer.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 5)))
    y, _ = layer.apply(params, {}, x, train=False)
    np.testing.assert_allclose(y, layer.apply(params, {}, x[None], train=False)[0][0], rtol=1e-13)


# --------------------------------------------------------------------------- errors (CONV-5)


def test_bad_padding_mode_raises():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(1, 1, 3, padding_mode="symmetric")


def test_bad_padding_string_raises():
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        nn.Conv2d(1, 1, 3, padding="full")


def test_same_with_stride_raises():
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv1d(1, 1, 3, padding="same", stride=2)


@pytest.mark.parametrize("arg", ["in_channels", "out_channels"])
def test_groups_not_dividing_the_channels_raises(arg):
    kw = {"in_channels": 4, "out_channels": 4, arg: 3}
    with pytest.raises(ValueError, match=f"{arg}=3 must be divisible by groups=2"):
        nn.Conv2d(**kw, kernel_size=1, groups=2)


@pytest.mark.parametrize("arg", ["stride", "dilation", "kernel_size"])
def test_non_positive_sizes_raise(arg):
    with pytest.raises(ValueError, match=f"{arg} must be positive"):
        nn.Conv2d(1, 1, **{"kernel_size": 3, arg: (1, 0)})


def test_negative_padding_raises():
    with pytest.raises(ValueError, match="negative padding"):
        nn.Conv2d(1, 1, 3, padding=-1)


def test_two_dim_input_to_conv2d_raises():
    """torch: Conv2d takes (N, C, H, W) or unbatched (C, H, W); a 2-D input raises."""
    layer = nn.Conv2d(1, 2, 3)
    params, _ = layer.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"expected 3-D \(unbatched\) or 4-D \(batched\) input"):
        layer.apply(params, {}, jnp.zeros((5, 5)), train=False)


def test_wrong_channel_count_at_apply_raises():
    layer = nn.Conv1d(3, 2, 3)
    params, _ = layer.init(jax.random.key(0))
    with pytest.raises(ValueError, match="must have 3 channels, got 2"):
        layer.apply(params, {}, jnp.zeros((1, 2, 5)), train=False)


def test_input_of_another_dtype_raises():
    """DTYPE-2: a float64 input to a float32 layer raises instead of promoting."""
    layer = nn.Conv1d(1, 1, 2)
    params, _ = layer.init(jax.random.key(0))
    with pytest.raises(TypeError, match="same dtype"):
        layer.apply(params, {}, jnp.zeros((1, 1, 4), jnp.bfloat16), train=False)
