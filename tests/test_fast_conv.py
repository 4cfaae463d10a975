"""fnn/_fast/conv.py equals the readable correlations of fnn/functional/conv.py.

The canonical NHWC/HWIO convolutions add the same products in another order, so the test is
equality to rounding, not bit for bit: float64 to 1e-12 (relative to the largest value),
float32 to 2e-6. Compared: each of the three correlations on the same arguments, the first
and second derivatives of ``correlate`` (its custom_jvp) against JAX's derivatives of the
definition, and the claim that makes the seam fast: every convolution that the forward,
``jax.grad`` of it and the manual backward emit is in the canonical layout.
"""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn._fast import conv as fast
from fnn.functional import conv as definition

# (x shape, w shape, stride, pads, dilation, groups)
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 2), (1, 1), ((1, 1), (0, 1)), (1, 1), 1),
    ((2, 4, 9, 8), (6, 2, 2, 3), (3, 2), ((2, 0), (1, 1)), (2, 1), 2),
    ((1, 4, 6, 6), (8, 1, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 2), 4),
    ((2, 3, 10), (2, 3, 3), (3,), ((1, 2),), (2,), 1),
    ((3, 4, 8), (4, 2, 2), (1,), ((0, 0),), (1,), 2),
    # one input channel: grad_weight is an im2col GEMM
    ((2, 1, 7, 8), (5, 1, 3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2), 1),
    ((3, 1, 9), (2, 1, 4), (2,), ((2, 1),), (2,), 1),
]
IDS = [f"x{c[0]}-w{c[1]}-s{c[2]}-g{c[5]}" for c in CASES]


def draw(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x_shape, w_shape, stride, pads, dilation, groups = case
    x = jnp.asarray(rng.normal(size=x_shape), dtype)
    w = jnp.asarray(rng.normal(size=w_shape), dtype)
    y = definition.correlate(x, w, stride, pads, dilation, groups)
    g = jnp.asarray(rng.normal(size=y.shape), dtype)
    return x, w, g


def assert_close(got, want, dtype):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(), 1e-30)
    assert got.shape == want.shape
    assert np.abs(got - want).max() / scale <= (1e-12 if dtype == jnp.float64 else 2e-6)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_correlation_equals_the_definition(x64, case, dtype):
    x, w, g = draw(case, dtype)
    _, _, stride, pads, dilation, groups = case
    n = x.ndim - 2
    # grad_input's and grad_weight's arguments as conv*_backward forms them: a transposed
    # kernel, full padding (possibly negative), and the padding up to the last row reached
    k = w.shape[2:]
    w_t = jnp.flip(
        w.reshape(groups, w.shape[0] // groups, *w.shape[1:]).swapaxes(1, 2), tuple(range(3, n + 3))
    )
    w_t = w_t.reshape(groups * w.shape[1], w.shape[0] // groups, *k)
    full = [(d * (kk - 1) - lo, 1 - lo) for (lo, _), d, kk in zip(pads, dilation, k, strict=True)]
    reach = pads  # grad_weight's own is this, cropped to the last row a window reaches

    @fast_jit
    def run(x, w, g, w_t):
        pairs = []
        for mod in (fast, definition):
            pairs.append(
                (
                    mod.correlate(x, w, stride, pads, dilation, groups),
                    mod.correlate_transposed(g, w_t, stride, full, dilation, groups),
                    mod.correlate_weight(x, g, stride, reach, dilation, groups),
                )
            )
        return pairs

    (f_y, f_gi, f_gw), (d_y, d_gi, d_gw) = run(x, w, g, w_t)
    for got, want in ((f_y, d_y), (f_gi, d_gi), (f_gw, d_gw)):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_derivatives_equal_jaxs_derivatives_of_the_definition(x64, case):
    """The custom_jvp: forward mode, reverse mode, and reverse-over-forward (an HVP)."""
    x, w, g = draw(case, jnp.float64)
    _, _, *opts = case
    rng = np.random.default_rng(1)
    tx, tw = (jnp.asarray(rng.normal(size=a.shape)) for a in (x, w))

    @fast_jit
    def run(x, w, g, tx, tw):
        out = []
        for correlate in (fast.correlate, definition.correlate):

            def f(x, w, correlate=correlate):
                return correlate(x, w, *opts)

            jvp = jax.jvp(f, (x, w), (tx, tw))[1]
            vjp = jax.vjp(f, x, w)[1](g)
            only_w = jax.grad(lambda w: jnp.vdot(f(x, w), g))(w)  # the zero ẋ tangent
            hvp = jax.jvp(jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w)))), (x, w), (tx, tw))[1]
            out.append((jvp, *vjp, only_w, hvp))
        return out

    fast_out, def_out = run(x, w, g, tx, tw)
    for got, want in zip(fast_out, def_out, strict=True):
        assert_close(got, want, jnp.float64)


def _conv_dimension_numbers(jaxpr):
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            dn = eqn.params["dimension_numbers"]
            found.append((dn.lhs_spec, dn.rhs_spec, dn.out_spec))
    for sub in jax.extend.core.subjaxprs(jaxpr):
        found += _conv_dimension_numbers(sub)
    return found


def test_forward_grad_and_manual_backward_emit_only_canonical_convolutions():
    """Every conv in conv2d, jax.grad of it (input and weight) and conv2d_backward is
    NHWC/HWIO/NHWC: what XLA:CPU runs fast inside a scan."""
    x, w, b = jnp.ones((2, 3, 6, 6)), jnp.ones((4, 3, 3, 3)), jnp.ones(4)
    opts = {"stride": 2, "padding": 1, "dilation": 1}

    def step(x, w, b):
        y = F.conv2d(x, w, b, **opts)
        grads = jax.grad(lambda x, w, b: jnp.sum(F.conv2d(x, w, b, **opts) ** 2), (0, 1, 2))(x, w, b)
        return y, grads, F.conv2d_backward(y, x, w, b, **opts)

    specs = _conv_dimension_numbers(jax.make_jaxpr(step)(x, w, b).jaxpr)
    assert len(specs) == 1 + 1 + 2 + 2  # forward; jax.grad's forward, grad_input, grad_weight; manual two
    canonical = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    assert all(s == canonical for s in specs), specs
