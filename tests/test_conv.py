"""F.conv1d / F.conv2d and their hand-derived backwards (CONV-1..6).

The manual backward is compared with jax.vjp of the forward in float64 for every option,
the forward with a numpy loop over the definition, forward mode with the manual backward
through <J t, g> = <t, Jᵀ g>, and the rules' golden values; each bad input has its test.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F

# (n, input shape, out channels, kernel, options); bias on unless options say bias=False.
CONFIGS = [
    (1, (2, 3, 7), 4, (3,), {}),
    (1, (2, 2, 10), 3, (2,), {"stride": 3}),  # CONV-3: rows 8, 9 unused
    (1, (1, 2, 7), 2, (4,), {"padding": "same"}),  # CONV-2: even kernel, extra pad at the end
    (1, (2, 2, 9), 2, (4,), {"padding": "same", "dilation": 2}),
    (1, (2, 4, 6), 6, (3,), {"groups": 2, "padding": (2,), "bias": False}),
    (1, (3, 6), 2, (2,), {"padding": 1, "stride": 2}),  # unbatched
    (2, (2, 3, 5, 6), 4, (3, 3), {}),
    (2, (1, 2, 8, 9), 2, (2, 3), {"stride": (3, 2), "padding": (1, 0)}),
    (2, (1, 2, 5, 6), 2, (4, 2), {"padding": "same"}),
    (2, (1, 2, 7, 6), 2, (2, 3), {"padding": "same", "dilation": (3, 2)}),
    (2, (2, 2, 7, 7), 3, (3, 2), {"padding": "valid", "dilation": 2, "stride": 2}),
    (2, (2, 6, 4, 5), 3, (2, 2), {"groups": 3, "padding": 1, "bias": False}),
    (2, (2, 4, 5, 5), 8, (3, 3), {"groups": 4, "stride": 2, "padding": (1, 2), "dilation": (1, 2)}),
    (2, (2, 4, 5), 3, (3, 2), {"padding": (0, 1)}),  # unbatched
]
IDS = [f"conv{c[0]}d-{c[1]}-{c[3]}-{c[4]}" for c in CONFIGS]


def draw(config, seed=0):
    n, shape, c_out, kernel, opts = config
    opts = dict(opts)
    bias = opts.pop("bias", True)
    groups = opts.get("groups", 1)
    c_in = shape[0] if len(shape) == n + 1 else shape[1]
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape))
    w = jnp.asarray(rng.normal(size=(c_out, c_in // groups, *kernel)))
    b = jnp.asarray(rng.normal(size=(c_out,))) if bias else None
    return x, w, b, opts


def ops(n):
    return (F.conv1d, F.conv1d_backward) if n == 1 else (F.conv2d, F.conv2d_backward)


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_manual_backward_equals_jax_vjp(x64, config):
    """CONV-4: the hand-derived gradients equal jax.vjp of the forward, every option."""
    conv, backward = ops(config[0])
    x, w, b, opts = draw(config)

    @fast_jit
    def run(x, w, b):
        args = (x, w) if b is None else (x, w, b)
        y, pull = jax.vjp(lambda *a: conv(*a, **opts) if b is not None else conv(*a, None, **opts), *args)
        g = jnp.cos(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        return backward(g, x, w, b, **opts), pull(g)

    manual, auto = run(x, w, b)
    if b is None:
        assert manual[2] is None
    for got, want in zip(manual, auto, strict=False):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def numpy_conv(x, w, b, stride, pads, dilation, groups):
    """The definition CONV-1 states, as loops (2-d, batched): y[n, o, p] = b[o] +
    Σ_{c, j} x_pad[n, γ(o)·C_g + c, p·s + j·d] w[o, c, j]."""
    x = np.pad(x, [(0, 0), (0, 0), *pads])
    n_, _, h, wd = x.shape
    c_out, c_g, kh, kw = w.shape
    oh = (h - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n_, c_out, oh, ow))
    for n, o, p, q, c, i, j in itertools.product(*map(range, (n_, c_out, oh, ow, c_g, kh, kw))):
        ci = (o // (c_out // groups)) * c_g + c
        y[n, o, p, q] += (
            x[n, ci, p * stride[0] + i * dilation[0], q * stride[1] + j * dilation[1]] * w[o, c, i, j]
        )
    return y + (0 if b is None else b[:, None, None])


def test_forward_equals_the_definition_as_numpy_loops(x64):
    """CONV-1/3/6: correlation (no flip), stride, asymmetric 'same' padding, dilation, groups."""
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(2, 4, 6, 7)), rng.normal(size=(6, 2, 2, 3)), rng.normal(size=(6,))
    got = F.conv2d(
        jnp.asarray(x),
        jnp.asarray(w),
        jnp.asarray(b),
        stride=(2, 1),
        padding=(1, 2),
        dilation=(2, 1),
        groups=2,
    )
    np.testing.assert_allclose(got, numpy_conv(x, w, b, (2, 1), [(1, 1), (2, 2)], (2, 1), 2), rtol=1e-12)
    same = F.conv2d(jnp.asarray(x), jnp.asarray(w), None, padding="same", dilation=(3, 1), groups=2)
    # d·(k−1) = (3, 2): left = total // 2 = (1, 1), right = (2, 1)
    np.testing.assert_allclose(same, numpy_conv(x, w, None, (1, 1), [(1, 2), (1, 1)], (3, 1), 2), rtol=1e-12)


def test_forward_mode_agrees_with_the_manual_backward(x64):
    """jax.jvp through the forward and the manual backward: <J t, g> = <t, Jᵀ g>."""
    x, w, b, opts = draw(CONFIGS[12])
    rng = np.random.default_rng(2)
    tx, tw, tb = (jnp.asarray(rng.normal(size=a.shape)) for a in (x, w, b))

    @fast_jit
    def run():
        y, ty = jax.jvp(lambda x, w, b: F.conv2d(x, w, b, **opts), (x, w, b), (tx, tw, tb))
        g = jnp.sin(jnp.arange(y.size, dtype=y.dtype)).reshape(y.shape)
        gx, gw, gb = F.conv2d_backward(g, x, w, b, **opts)
        return jnp.vdot(ty, g), jnp.vdot(tx, gx) + jnp.vdot(tw, gw) + jnp.vdot(tb, gb)

    forward, backward = run()
    np.testing.assert_allclose(forward, backward, rtol=1e-12)


def test_jax_grad_through_the_forward_equals_the_manual_backward(x64):
    """jax.grad of a scalar loss of conv1d, with a stride that leaves rows unused (CONV-3)."""
    x, w, b, opts = draw(CONFIGS[1])

    @fast_jit
    def run(x, w, b):
        def loss(x, w, b):
            return jnp.sum(jnp.tanh(F.conv1d(x, w, b, **opts)))

        grads = jax.grad(loss, argnums=(0, 1, 2))(x, w, b)
        g = 1 - jnp.tanh(F.conv1d(x, w, b, **opts)) ** 2
        return grads, F.conv1d_backward(g, x, w, b, **opts)

    auto, manual = run(x, w, b)
    for a, m in zip(auto, manual, strict=True):
        np.testing.assert_allclose(a, m, rtol=1e-12, atol=1e-12)
    assert np.all(np.asarray(auto[0])[..., 8:] == 0) and np.all(np.asarray(manual[0])[..., 8:] == 0)


# --------------------------------------------------------------------------- golden values


def test_golden_correlation_not_convolution():
    """CONV-1: [1, 2, 3] with kernel [1, 10] gives [21, 32] (a flipped kernel would give [12, 23])."""
    y = F.conv1d(jnp.array([[[1.0, 2.0, 3.0]]]), jnp.array([[[1.0, 10.0]]]))
    assert y.tolist() == [[[21.0, 32.0]]]


def test_golden_same_puts_the_extra_padding_at_the_end():
    """CONV-2: x = 1..7, a 1×4 kernel with only its first tap → [0, 1, ..., 6] (left 1, right 2)."""
    x = jnp.arange(1.0, 8.0).reshape(1, 1, 7)
    assert F.conv1d(x, jnp.array([[[1.0, 0.0, 0.0, 0.0]]]), padding="same").tolist() == [
        [list(map(float, range(7)))]
    ]
    y = F.conv2d(
        x[None], jnp.array([[[[1.0, 0.0, 0.0, 0.0]]]]), padding="same"
    )  # (1, 1, 1, 7) with a 1×4 kernel
    assert y.reshape(-1).tolist() == list(map(float, range(7)))


def test_golden_output_size_and_unused_rows():
    """CONV-3: L = 10, k = 2, s = 3 → 3 outputs from rows 0..7; rows 8 and 9 get gradient 0."""
    x = jnp.arange(10.0).reshape(1, 1, 10)
    w = jnp.array([[[1.0, 1.0]]])
    assert F.conv1d(x, w, stride=3).tolist() == [[[1.0, 7.0, 13.0]]]
    gx, gw, gb = F.conv1d_backward(jnp.ones((1, 1, 3)), x, w, stride=3)
    assert gx.tolist() == [[[1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0]]]
    assert gw.tolist() == [[[9.0, 12.0]]] and gb is None


def test_golden_backward():
    """CONV-4: x = [1, 2, 3], w = [1, 10], g = [1, 1]: dx = [1, 11, 10], dw = [3, 5], db = 2."""
    gx, gw, gb = F.conv1d_backward(
        jnp.ones((1, 1, 2)), jnp.array([[[1.0, 2.0, 3.0]]]), jnp.array([[[1.0, 10.0]]]), jnp.zeros(1)
    )
    assert (gx.tolist(), gw.tolist(), gb.tolist()) == ([[[1.0, 11.0, 10.0]]], [[[3.0, 5.0]]], [2.0])


def test_golden_groups_convolve_channel_blocks_separately():
    """CONV-6: groups=2 with ones kernels: output channel o sees only its group's inputs."""
    x = jnp.array([[[1.0, 1.0], [2.0, 2.0], [10.0, 10.0], [20.0, 20.0]]])  # (1, 4, 2)
    y = F.conv1d(x, jnp.ones((2, 2, 1)), groups=2)
    assert y.tolist() == [[[3.0, 3.0], [30.0, 30.0]]]


def test_unbatched_input_equals_a_batch_of_one():
    """CONV-1: (C, H, W) is read as one sample, as torch does; the backward keeps its shape."""
    x, w, b, opts = draw(CONFIGS[13])
    y = F.conv2d(x, w, b, **opts)
    np.testing.assert_array_equal(y, F.conv2d(x[None], w, b, **opts)[0])
    gx, _, _ = F.conv2d_backward(jnp.ones_like(y), x, w, b, **opts)
    assert gx.shape == x.shape


# --------------------------------------------------------------------------- errors (CONV-5)


X4 = jnp.zeros((2, 3, 5, 5))
W4 = jnp.zeros((4, 3, 3, 3))


def test_wrong_channel_count_raises():
    with pytest.raises(ValueError, match="must have 3 channels, got 2"):
        F.conv2d(jnp.zeros((2, 2, 5, 5)), W4)


def test_groups_not_dividing_out_channels_raises():
    with pytest.raises(ValueError, match="groups=3 must divide weight's out channels"):
        F.conv2d(X4, jnp.zeros((4, 1, 3, 3)), groups=3)


def test_groups_not_matching_in_channels_raises():
    with pytest.raises(ValueError, match=r"groups=2.*must have 2 channels, got 3"):
        F.conv2d(X4, jnp.zeros((4, 1, 3, 3)), groups=2)


def test_non_positive_groups_raises():
    with pytest.raises(ValueError, match="groups must be a positive int"):
        F.conv2d(X4, W4, groups=0)


def test_kernel_larger_than_the_padded_input_raises():
    with pytest.raises(ValueError, match=r"kernel .* is larger than the padded input"):
        F.conv2d(jnp.zeros((1, 3, 2, 2)), W4)
    F.conv2d(jnp.zeros((1, 3, 2, 2)), W4, padding=1)  # padded to 4×4: fits, as in torch


def test_same_with_stride_raises():
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(X4, W4, padding="same", stride=(1, 2))


@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_non_positive_stride_raises(stride):
    with pytest.raises(ValueError, match="non-positive stride"):
        F.conv2d(X4, W4, stride=stride)


def test_non_positive_dilation_raises():
    with pytest.raises(ValueError, match="non-positive dilation"):
        F.conv1d(jnp.zeros((1, 3, 5)), jnp.zeros((2, 3, 2)), dilation=0)


def test_negative_padding_raises():
    with pytest.raises(ValueError, match="negative padding"):
        F.conv2d(X4, W4, padding=(1, -1))


def test_bad_padding_string_raises():
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        F.conv2d(X4, W4, padding="full")


def test_tuple_of_the_wrong_length_raises():
    with pytest.raises(ValueError, match="padding must be an int or a tuple of 2 ints"):
        F.conv2d(X4, W4, padding=(1, 1, 1))


@pytest.mark.parametrize(("op", "shape"), [(F.conv2d, (3, 5)), (F.conv2d, (1, 1, 3, 5, 5)), (F.conv1d, (5,))])
def test_input_of_the_wrong_ndim_raises(op, shape):
    """torch: conv2d takes 3-D (unbatched) or 4-D input, conv1d 2-D or 3-D; others raise."""
    n = 2 if op is F.conv2d else 1
    with pytest.raises(
        ValueError, match=f"expected {n + 1}-D \\(unbatched\\) or {n + 2}-D \\(batched\\) input"
    ):
        op(jnp.zeros(shape), jnp.zeros((1, 1) + (1,) * n))


def test_bias_of_the_wrong_shape_raises():
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.conv2d(X4, W4, jnp.zeros(3))


def test_mixed_dtypes_raise():
    with pytest.raises(TypeError, match="weight must have input's dtype"):
        F.conv2d(X4, W4.astype(jnp.bfloat16))


def test_grad_output_of_the_wrong_shape_raises():
    with pytest.raises(ValueError, match="grad_output must have the forward output's shape"):
        F.conv2d_backward(jnp.zeros((2, 4, 2, 2)), X4, W4)
