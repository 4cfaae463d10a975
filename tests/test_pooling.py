"""F.max_pool1d/2d, F.avg_pool1d/2d, F.adaptive_avg_pool2d and their backwards (POOL-1..6,
AVGPOOL-1..3, ADAPTIVE-1..2).

The manual backward is compared with jax.vjp of the forward in float64 for every option,
forward mode through max-pool with the manual backward via <J t, g> = <t, Jᵀ g>, and the
rules' golden values (shared/SEMANTICS.md section 3); each bad input has its test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F

# (op, input shape, positional args after input, keyword options)
CONFIGS = [
    ("max_pool1d", (2, 3, 9), (3,), {}),
    ("max_pool1d", (2, 2, 8), (3,), {"stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool1d", (3, 10), (2,), {"stride": 3, "dilation": 2}),  # unbatched
    ("max_pool2d", (2, 2, 6, 7), (2,), {}),
    ("max_pool2d", (1, 2, 7, 8), ((3, 2),), {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)}),
    ("max_pool2d", (2, 5, 5), (3,), {"stride": 2, "padding": 1, "ceil_mode": True}),  # unbatched
    ("avg_pool1d", (2, 3, 9), (3,), {}),
    ("avg_pool1d", (2, 2, 8), (3,), {"stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool1d", (3, 8), (3,), {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (2, 2, 6, 7), (2,), {}),
    ("avg_pool2d", (1, 2, 7, 8), ((3, 2),), {"stride": (2, 1), "padding": (1, 0), "ceil_mode": True}),
    ("avg_pool2d", (1, 2, 7, 7), (3,), {"stride": 2, "padding": 1, "count_include_pad": False}),
    ("avg_pool2d", (2, 5, 6), (2,), {"padding": 1, "divisor_override": 3}),  # unbatched
    ("adaptive_avg_pool2d", (2, 2, 7, 5), ((3, 2),), {}),
    ("adaptive_avg_pool2d", (2, 6, 4), ((None, 3),), {}),  # unbatched, a None entry
    ("adaptive_avg_pool2d", (1, 1, 3, 4), (5,), {}),  # output larger than input: overlaps
]
IDS = [f"{c[0]}-{c[1]}-{c[2]}-{c[3]}" for c in CONFIGS]


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_manual_backward_equals_jax_vjp(x64, config):
    name, shape, args, opts = config
    op, backward = getattr(F, name), getattr(F, name + "_backward")
    x = jax.random.normal(jax.random.key(0), shape, jnp.float64)
    y = op(x, *args, **opts)
    g = jax.random.normal(jax.random.key(1), y.shape, jnp.float64)

    @fast_jit
    def both(x, g):
        _, vjp = jax.vjp(lambda x: op(x, *args, **opts), x)
        return backward(g, x, *args, **opts), vjp(g)[0]

    manual, auto = both(x, g)
    np.testing.assert_allclose(manual, auto, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["max_pool1d", "max_pool2d"])
def test_forward_mode_through_max_pool_agrees_with_the_manual_backward(x64, name):
    # Integer-valued inputs make ties; forward mode must follow the same POOL-5 choice.
    shape = (2, 2, 9) if name == "max_pool1d" else (2, 2, 6, 6)
    x = jnp.round(2 * jax.random.normal(jax.random.key(2), shape, jnp.float64))
    op, backward = getattr(F, name), getattr(F, name + "_backward")
    opts = {"stride": 1, "padding": 1}
    t = jax.random.normal(jax.random.key(3), shape, jnp.float64)
    g = jax.random.normal(jax.random.key(4), op(x, 3, **opts).shape, jnp.float64)

    @fast_jit
    def both(x, t, g):
        _, jt = jax.jvp(lambda x: op(x, 3, **opts), (x,), (t,))
        return jnp.vdot(jt, g), jnp.vdot(t, backward(g, x, 3, **opts))

    lhs, rhs = both(x, t, g)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_golden_ties_go_to_the_first_element():
    x = jnp.array([[[[1.0, 1.0], [1.0, 1.0]]]])
    expected = [[[[1.0, 0.0], [0.0, 0.0]]]]
    assert F.max_pool2d_backward(jnp.ones((1, 1, 1, 1)), x, 2).tolist() == expected
    assert jax.grad(lambda x: F.max_pool2d(x, 2).sum())(x).tolist() == expected


def test_golden_overlapping_windows_add_their_ties():
    x = jnp.array([[[[0.0, 2.0, 2.0], [2.0, 0.0, 2.0], [1.0, 1.0, 1.0]]]])
    expected = [[[[0.0, 2.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]]
    assert F.max_pool2d_backward(jnp.ones((1, 1, 2, 2)), x, 2, stride=1).tolist() == expected
    assert jax.grad(lambda x: F.max_pool2d(x, 2, stride=1).sum())(x).tolist() == expected


def test_golden_padding_never_takes_the_gradient():
    x = jnp.full((1, 1, 3), -5.0)  # every real element is below 0 but above the -inf padding
    assert F.max_pool1d(x, 3, stride=1, padding=1).tolist() == [[[-5.0, -5.0, -5.0]]]
    grad = F.max_pool1d_backward(jnp.ones((1, 1, 3)), x, 3, stride=1, padding=1)
    assert grad.tolist() == [[[2.0, 1.0, 0.0]]]


def test_golden_nan_takes_the_gradient():
    x = jnp.array([[[1.0, jnp.nan, 3.0, jnp.nan]]])
    y = F.max_pool1d(x, 4)
    assert np.isnan(y).all()
    assert F.max_pool1d_backward(jnp.ones((1, 1, 1)), x, 4).tolist() == [[[0.0, 0.0, 0.0, 1.0]]]


def test_golden_ceil_mode_output_size():
    x = jnp.arange(8.0).reshape(1, 1, 8)
    assert F.max_pool1d(x, 3, 2, ceil_mode=True).tolist() == [[[2.0, 4.0, 6.0, 7.0]]]
    assert F.max_pool1d(x, 3, 2).tolist() == [[[2.0, 4.0, 6.0]]]
    x9 = jnp.arange(9.0).reshape(1, 1, 9)
    assert F.max_pool1d(x9, 3, 2, 1, ceil_mode=True).shape == F.max_pool1d(x9, 3, 2, 1).shape == (1, 1, 5)


def test_golden_stride_none_is_the_kernel_size():
    x = jnp.arange(6.0).reshape(1, 1, 6)
    assert F.max_pool1d(x, 2).tolist() == F.max_pool1d(x, 2, stride=2).tolist() == [[[1.0, 3.0, 5.0]]]
    assert F.avg_pool1d(x, 3).tolist() == [[[1.0, 4.0]]]


def test_golden_avg_pool_ceil_mode_divisors():
    x = jnp.ones((1, 1, 8))
    include = F.avg_pool1d(x, 3, 2, 1, ceil_mode=True)
    exclude = F.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(include[0, 0], [2 / 3, 1, 1, 1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(exclude[0, 0], [1, 1, 1, 1, 1], rtol=1e-6)


def test_golden_divisor_override():
    x = jnp.ones((1, 1, 4, 4))
    np.testing.assert_allclose(
        F.avg_pool2d(x, 2, divisor_override=3), jnp.full((1, 1, 2, 2), 4 / 3), rtol=1e-6
    )
    grad = F.avg_pool2d_backward(jnp.ones((1, 1, 2, 2)), x, 2, divisor_override=3)
    np.testing.assert_allclose(grad, jnp.full((1, 1, 4, 4), 1 / 3), rtol=1e-6)


def test_golden_adaptive_windows():
    x = jnp.arange(7.0).reshape(1, 1, 7)
    assert F.adaptive_avg_pool2d(x, (1, 3)).tolist() == [[[1.0, 3.0, 5.0]]]
    assert F.adaptive_avg_pool2d(x, (None, 3)).tolist() == [[[1.0, 3.0, 5.0]]]
    grad = F.adaptive_avg_pool2d_backward(jnp.full((1, 1, 3), 3.0), x, (None, 3))
    np.testing.assert_allclose(grad[0, 0], [1, 1, 2, 1, 2, 1, 1], rtol=1e-6)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_unbatched_input_equals_a_batch_of_one(name):
    x = jax.random.normal(jax.random.key(5), (2, 5, 5))
    op = getattr(F, name)
    np.testing.assert_array_equal(op(x, 2, 1, 1), op(x[None], 2, 1, 1)[0])


def test_padding_over_half_the_kernel_raises():
    with pytest.raises(ValueError, match="padding must be at most half"):
        F.max_pool2d(jnp.ones((1, 1, 5, 5)), 3, padding=2)


@pytest.mark.parametrize(
    ("name", "value"), [("kernel_size", 0), ("stride", 0), ("stride", -1), ("dilation", 0)]
)
def test_non_positive_kernel_stride_or_dilation_raises(name, value):
    args = {"kernel_size": 2, name: value}
    with pytest.raises(ValueError, match=name):
        F.max_pool1d(jnp.ones((1, 1, 5)), **args)


def test_negative_padding_raises():
    with pytest.raises(ValueError, match="padding"):
        F.avg_pool1d(jnp.ones((1, 1, 5)), 2, padding=-1)


def test_kernel_larger_than_the_padded_input_raises():
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.max_pool2d(jnp.ones((1, 1, 2, 2)), 3, padding=1, dilation=2)


@pytest.mark.parametrize(
    ("name", "shape"), [("max_pool2d", (5, 5)), ("avg_pool1d", (1, 1, 1, 5)), ("adaptive_avg_pool2d", (5, 5))]
)
def test_input_of_the_wrong_ndim_raises(name, shape):
    with pytest.raises(ValueError, match="input must be"):
        getattr(F, name)(jnp.ones(shape), 2)


def test_zero_divisor_override_raises():
    with pytest.raises(ValueError, match="divisor_override"):
        F.avg_pool2d(jnp.ones((1, 1, 4, 4)), 2, divisor_override=0)


def test_negative_adaptive_output_size_raises():
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(jnp.ones((1, 1, 4, 4)), (-1, 2))


def test_grad_output_of_the_wrong_shape_raises():
    with pytest.raises(ValueError):
        F.max_pool2d_backward(jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 4, 4)), 2)


def _loop_max_pool2d(x, g, k, s, p):
    """(y, grad_x) of max_pool2d by torch's CPU kernel as a loop: start at the window's first
    element inside the input and take `val > max || isnan(val)` in row-major order."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    y, gx = np.zeros((n, c, oh, ow)), np.zeros_like(x)
    for b, ch, i, j in np.ndindex(n, c, oh, ow):
        cells = [(i * s - p + a, j * s - p + e) for a in range(k) for e in range(k)]
        cells = [(r, q) for r, q in cells if 0 <= r < h and 0 <= q < w]
        best = cells[0]
        for r, q in cells[1:]:
            if x[b, ch, r, q] > x[b, ch][best] or np.isnan(x[b, ch, r, q]):
                best = (r, q)
        y[b, ch, i, j] = x[b, ch][best]
        gx[b, ch][best] += g[b, ch, i, j]
    return y, gx


@pytest.mark.parametrize("k, s, p", [(2, 2, 0), (3, 2, 1)], ids=["tiling", "overlapping"])
def test_second_order_through_max_pool_keeps_the_tie_rule(x64, k, s, p):
    """f = sum(y³) on integer-valued (tied) inputs: H v = route(6 y · gather(v)), with route and
    gather those of the loop above. Forward-over-reverse and reverse-over-reverse must both
    give it: the second derivative differentiates the custom_jvp rule, whose primal must keep
    the tie rule too (lax.max's own derivative would split a tie)."""
    x = np.round(2 * np.random.default_rng(7).normal(size=(2, 2, 6, 6)))
    v = np.random.default_rng(8).normal(size=x.shape)
    out = (6 + 2 * p - k) // s + 1
    y, _ = _loop_max_pool2d(x, np.zeros((2, 2, out, out)), k, s, p)
    jv = np.zeros_like(y)  # gather(v): v at each window's chosen element
    for idx in np.ndindex(*y.shape):
        e = np.zeros_like(y)
        e[idx] = 1.0
        jv[idx] = (_loop_max_pool2d(x, e, k, s, p)[1] * v).sum()
    hv = _loop_max_pool2d(x, 6 * y * jv, k, s, p)[1]

    def f(z):
        return jnp.sum(F.max_pool2d(z, k, s, p) ** 3)

    @fast_jit
    def sides(x, v):
        tangent = jax.jvp(lambda z: F.max_pool2d(z, k, s, p), (x,), (v,))[1]
        fwd_rev = jax.jvp(jax.grad(f), (x,), (v,))[1]
        rev_rev = jax.grad(lambda z: jnp.vdot(jax.grad(f)(z), v))(x)
        return tangent, fwd_rev, rev_rev

    tangent, fwd_rev, rev_rev = sides(jnp.asarray(x), jnp.asarray(v))
    np.testing.assert_allclose(tangent, jv, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(fwd_rev, hv, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rev_rev, hv, rtol=1e-12, atol=1e-12)


def test_golden_padding_never_takes_the_gradient_even_at_minus_inf():
    # torch: all -inf with k = 2, s = 1, p = 1: y = [-inf] * 3, grad [2, 1]; the -inf padding
    # ties with every element and still loses, in the manual backward and in jax.grad
    x = jnp.full((1, 1, 2), -jnp.inf)
    assert F.max_pool1d(x, 2, 1, 1).tolist() == [[[-jnp.inf] * 3]]
    assert F.max_pool1d_backward(jnp.ones((1, 1, 3)), x, 2, 1, 1).tolist() == [[[2.0, 1.0]]]
    assert jax.grad(lambda z: F.max_pool1d(z, 2, 1, 1).sum())(x).tolist() == [[[2.0, 1.0]]]


def test_golden_nan_rule_holds_for_jax_grad_too():
    x = jnp.array([[[1.0, jnp.nan], [jnp.nan, 0.0]]])  # torch: the last NaN, (1, 0)
    expected = [[[0.0, 0.0], [1.0, 0.0]]]
    assert F.max_pool2d_backward(jnp.ones((1, 1, 1)), x, 2).tolist() == expected
    assert jax.grad(lambda z: F.max_pool2d(z, 2).sum())(x).tolist() == expected


def test_max_pool_under_vmap_equals_the_batched_call():
    x = jnp.round(2 * jax.random.normal(jax.random.key(9), (3, 2, 5, 5)))
    for kw in ({"kernel_size": 2, "stride": 1}, {"kernel_size": 3, "stride": 2, "padding": 1}):
        f = lambda z, kw=kw: F.max_pool2d(z, **kw)  # noqa: E731
        np.testing.assert_array_equal(jax.vmap(f)(x), f(x))
        grad = jax.grad(lambda z, f=f: f(z).sum())
        np.testing.assert_array_equal(jax.vmap(grad)(x), grad(x))
