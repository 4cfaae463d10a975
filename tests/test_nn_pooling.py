"""nn.MaxPool1d/2d, nn.AvgPool1d/2d and nn.AdaptiveAvgPool2d (POOL-1..6, AVGPOOL-1..3,
ADAPTIVE-1..2).

apply_vjp's pullback is compared with jax.vjp of apply in float64 for each layer's options,
the layers with the functional ops they wrap, the golden values of the rules; each bad
constructor argument or input has its test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

LAYERS = [
    (nn.MaxPool1d(3), (2, 2, 9)),
    (nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (2, 2, 9)),
    (nn.MaxPool2d((3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), ceil_mode=True), (2, 7, 6)),
    (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 2, 8)),
    (nn.AvgPool2d(2), (2, 2, 6, 6)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, divisor_override=3), (1, 2, 7, 6)),
    (nn.AdaptiveAvgPool2d((3, None)), (2, 2, 7, 5)),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=[repr(layer) for layer, _ in LAYERS])
def test_pullback_equals_jax_vjp_of_apply(x64, layer, shape):
    # Integer-valued inputs: max-pool windows hold ties, so both sides must follow POOL-5.
    x = jnp.asarray(np.random.default_rng(0).integers(-2, 3, size=shape), jnp.float64)

    @fast_jit
    def run(x):
        y, _, pullback = layer.apply_vjp({}, {}, x, train=True)
        y_auto, pull = jax.vjp(lambda x: layer.apply({}, {}, x, train=True)[0], x)
        g = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return y, y_auto, pullback(g)[1], pull(g)[0]

    y, y_auto, gx, gx_auto = run(x)
    np.testing.assert_array_equal(y, y_auto)
    np.testing.assert_allclose(gx, gx_auto, rtol=1e-12, atol=1e-12)


def test_layers_have_no_parameters_and_wrap_the_functional_ops():
    x = jax.random.normal(jax.random.key(0), (1, 2, 6, 6))
    pairs = [
        (nn.MaxPool2d(2), F.max_pool2d(x, 2)),
        (nn.AvgPool2d(3, 1, 1, count_include_pad=False), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)),
        (nn.AdaptiveAvgPool2d(4), F.adaptive_avg_pool2d(x, 4)),
    ]
    for layer, want in pairs:
        assert layer.init(jax.random.key(0)) == ({}, {})
        for train in (True, False):
            np.testing.assert_array_equal(layer.apply({}, {}, x, train=train)[0], want)


def test_golden_max_pool_layer_ties():
    x = jnp.array([[[[0.0, 2.0, 2.0], [2.0, 0.0, 2.0], [1.0, 1.0, 1.0]]]])
    _, _, pullback = nn.MaxPool2d(2, stride=1).apply_vjp({}, {}, x, train=True)
    assert pullback(jnp.ones((1, 1, 2, 2)))[1].tolist() == [
        [[[0.0, 2.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]
    ]


def test_golden_avg_pool_layer_ceil_mode():
    x = jnp.ones((1, 1, 8))
    include, _ = nn.AvgPool1d(3, 2, 1, ceil_mode=True).apply({}, {}, x, train=False)
    exclude, _ = nn.AvgPool1d(3, 2, 1, ceil_mode=True, count_include_pad=False).apply({}, {}, x, train=False)
    np.testing.assert_allclose(include[0, 0], [2 / 3, 1, 1, 1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(exclude[0, 0], [1, 1, 1, 1, 1], rtol=1e-6)


def test_golden_adaptive_layer():
    y, _ = nn.AdaptiveAvgPool2d((1, 3)).apply({}, {}, jnp.arange(7.0).reshape(1, 1, 7), train=False)
    assert y.tolist() == [[[1.0, 3.0, 5.0]]]


def test_layers_are_hashable_and_lists_become_tuples():
    layer = nn.MaxPool2d([2, 3], stride=[1, 2])
    assert layer.kernel_size == (2, 3) and layer.stride == (1, 2)
    assert hash(layer) == hash(nn.MaxPool2d((2, 3), stride=(1, 2)))


def test_return_indices_raises():
    with pytest.raises(ValueError, match="return_indices"):
        nn.MaxPool2d(2, return_indices=True)


def test_padding_over_half_the_kernel_raises_at_construction():
    with pytest.raises(ValueError, match="padding must be at most half"):
        nn.AvgPool2d(2, padding=2)


@pytest.mark.parametrize(
    "kwargs", [{"kernel_size": 0}, {"kernel_size": 2, "stride": 0}, {"kernel_size": 2, "dilation": -1}]
)
def test_non_positive_kernel_stride_or_dilation_raises_at_construction(kwargs):
    with pytest.raises(ValueError, match="must be >= 1"):
        nn.MaxPool1d(**kwargs)


def test_zero_divisor_override_raises_at_construction():
    with pytest.raises(ValueError, match="divisor_override"):
        nn.AvgPool2d(2, divisor_override=0)


def test_kernel_larger_than_the_padded_input_raises():
    with pytest.raises(ValueError, match="larger than the padded input"):
        nn.MaxPool2d(4).apply({}, {}, jnp.ones((1, 1, 3, 3)), train=False)


def test_input_of_the_wrong_ndim_raises():
    with pytest.raises(ValueError, match="input must be"):
        nn.MaxPool1d(2).apply({}, {}, jnp.ones((1, 1, 4, 4)), train=False)
