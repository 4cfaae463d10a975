"""fnn.functional.activations: manual backward vs jax.vjp, torch kinks, golden values, stability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn.functional.activations import (
    abs,
    abs_backward,
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    logsumexp,
    logsumexp_backward,
    maxout,
    maxout_backward,
    prelu,
    prelu_backward,
    relu,
    relu_backward,
    scaled_tanh,
    scaled_tanh_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)

# (forward, backward, keyword arguments) for the element-wise ops
ELEMENTWISE = [
    (relu, relu_backward, {}),
    (leaky_relu, leaky_relu_backward, {}),
    (leaky_relu, leaky_relu_backward, {"negative_slope": 0.2}),
    (elu, elu_backward, {}),
    (elu, elu_backward, {"alpha": 0.5}),
    (sigmoid, sigmoid_backward, {}),
    (tanh, tanh_backward, {}),
    (softplus, softplus_backward, {}),
    (softplus, softplus_backward, {"beta": 2.0, "threshold": 1.0}),
    (abs, abs_backward, {}),
    (scaled_tanh, scaled_tanh_backward, {}),
    (scaled_tanh, scaled_tanh_backward, {"amplitude": 2.0, "slope": 0.25}),
]
SHAPES = [(7,), (2, 3, 5)]
# the golden input of docs/semantics.md's activation rules (ACT-1..ACT-5)
V = [-2, -0.5, 0, 0.5, 2, 25]


def _rand(seed, shape, zeros=True):
    """Random float64 data with scale 3; a few exact zeros so the kinks are exercised too."""
    x = np.random.default_rng(seed).normal(size=shape) * 3
    if zeros:
        x.reshape(-1)[::4] = 0.0
    return jnp.asarray(x)


def _vjp(f, args, g):
    _, pullback = jax.vjp(f, *args)
    return pullback(g)


def _ids(cases):
    return [f"{f.__name__}{kw or ''}" for f, _, kw in cases]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("f,f_backward,kw", ELEMENTWISE, ids=_ids(ELEMENTWISE))
def test_elementwise_backward_matches_vjp(x64, f, f_backward, kw, shape):
    x, g = _rand(0, shape), _rand(1, shape, zeros=False)
    (expected,) = _vjp(lambda x: f(x, **kw), (x,), g)
    np.testing.assert_allclose(f_backward(g, x, **kw), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape,wshape", [((4, 3), (3,)), ((2, 3, 5), (3,)), ((2, 3, 5), (1,)), ((6,), (1,))])
def test_prelu_backward_matches_vjp(x64, shape, wshape):
    x, g = _rand(0, shape), _rand(1, shape, zeros=False)
    w = jnp.asarray(np.random.default_rng(2).uniform(0.05, 0.5, wshape))
    gx, gw = prelu_backward(g, x, w)
    ex, ew = _vjp(prelu, (x, w), g)
    assert gw.shape == w.shape
    np.testing.assert_allclose(gx, ex, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gw, ew, rtol=1e-12, atol=1e-14)


DIMS = [((5,), -1), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), 1), ((2, 3, 4), -3)]


@pytest.mark.parametrize("shape,dim", DIMS)
@pytest.mark.parametrize("f,f_backward", [(softmax, softmax_backward), (log_softmax, log_softmax_backward)])
def test_softmax_backward_matches_vjp(x64, f, f_backward, shape, dim):
    x, g = _rand(0, shape, zeros=False), _rand(1, shape, zeros=False)
    # Both sides in one compiled program (eagerly, every op of each would compile on its own).
    both = fast_jit(lambda x, g: (_vjp(lambda x: f(x, dim), (x,), g)[0], f_backward(g, x, dim)))
    expected, got = both(x, g)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape,dim", DIMS)
def test_logsumexp_backward_matches_vjp(x64, shape, dim, keepdim):
    x = _rand(0, shape, zeros=False)
    g = _rand(1, jax.eval_shape(lambda x: logsumexp(x, dim, keepdim), x).shape, zeros=False)

    @fast_jit  # every side in one compiled program, as in the softmax test above
    def sides(x, g):
        (expected,) = _vjp(lambda x: logsumexp(x, dim, keepdim), (x,), g)
        lse, reference = logsumexp(x, dim, keepdim), jax.scipy.special.logsumexp(x, dim, keepdims=keepdim)
        return expected, logsumexp_backward(g, x, dim, keepdim), lse, reference

    expected, got, lse, reference = sides(x, g)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lse, reference, rtol=1e-12)


@pytest.mark.parametrize("shape,pieces", [((2, 6), 3), ((2, 6, 4), 2), ((3, 4, 2, 2), 4), ((2, 5), 1)])
def test_maxout_backward_matches_vjp(x64, shape, pieces):
    x = jnp.round(_rand(0, shape, zeros=False))  # rounding makes ties likely
    out_shape = (shape[0], shape[1] // pieces, *shape[2:])
    g = _rand(1, out_shape, zeros=False)
    # every side in one compiled program, as in the softmax test above
    sides = fast_jit(
        lambda x, g: (
            _vjp(lambda x: maxout(x, pieces), (x,), g)[0],
            maxout_backward(g, x, pieces),
            maxout(x, pieces),
        )
    )
    expected, got, y = sides(x, g)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # forward against a plain max over the contiguous groups of dim 1
    groups = np.asarray(x).reshape((shape[0], shape[1] // pieces, pieces, *shape[2:]))
    np.testing.assert_array_equal(y, groups.max(axis=2))


def test_maxout_tie_sends_gradient_to_first_piece():
    x = jnp.array([[3.0, 3.0, 1.0, 0.0, 2.0, 2.0]])
    grad = jax.grad(lambda x: maxout(x, 3).sum())(x)
    # ACT-8: torch x.max(dim) convention -> [1, 0, 0], not jnp.max's [0.5, 0.5, 0]
    np.testing.assert_array_equal(grad, [[1, 0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(maxout_backward(jnp.ones((1, 2)), x, 3), [[1, 0, 0, 0, 1, 0]])


def test_kink_gradients_follow_torch(x64):
    d = lambda f: float(jax.grad(f)(0.0))  # noqa: E731
    assert d(relu) == 0.0  # ACT-1 (jnp.maximum would give 0.5)
    assert d(leaky_relu) == 0.01  # ACT-2 (jax.nn.leaky_relu gives 1)
    assert d(lambda x: leaky_relu(x, 0.2)) == 0.2  # ACT-2 with another slope
    assert d(lambda x: prelu(x, jnp.array([0.25]))) == 0.25  # ACT-3
    assert d(elu) == 1.0  # ACT-4
    assert d(lambda x: elu(x, 0.5)) == 0.5  # torch's elu kernel takes the x <= 0 branch: alpha * e^0
    assert d(abs) == 0.0  # ACT-7 (grad(jnp.abs)(0.) is 1)
    zero, one = jnp.zeros(1), jnp.ones(1)
    assert relu_backward(one, zero)[0] == 0.0  # ACT-1
    assert leaky_relu_backward(one, zero)[0] == 0.01  # ACT-2
    assert prelu_backward(one, zero, jnp.array([0.25]))[0][0] == 0.25  # ACT-3
    assert elu_backward(one, zero)[0] == 1.0  # ACT-4
    assert abs_backward(one, zero)[0] == 0.0  # ACT-7


def test_prelu_weight_gradient_is_sum_of_negative_part():
    x = jnp.array([[-1.0, 2.0], [-3.0, -0.5]])
    gw = jax.grad(lambda w: prelu(x, w).sum())(jnp.array([0.25, 0.25]))
    np.testing.assert_allclose(gw, [-4.0, -0.5])  # ACT-3: grad wrt alpha = sum min(0, x) per channel


@pytest.mark.parametrize(
    "f,expected",
    [
        (elu, [-0.8646647168, -0.3934693403, 0, 0.5, 2, 25]),  # ACT-4's golden values
        (lambda v: elu(v, alpha=0.5), [-0.4323323584, -0.1967346701, 0, 0.5, 2, 25]),  # ACT-4
        (leaky_relu, [-0.02, -0.005, 0, 0.5, 2, 25]),  # ACT-2
        (lambda v: prelu(v, jnp.array([0.25])), [-0.5, -0.125, 0, 0.5, 2, 25]),  # ACT-3
        (softplus, [0.126928011, 0.4740769842, 0.6931471806, 0.9740769842, 2.126928011, 25]),  # ACT-5
        (
            lambda v: softplus(v, beta=2),
            [0.009074963959, 0.1566308438, 0.3465735903, 0.6566308438, 2.009074964, 25],
        ),  # ACT-5
        (
            lambda v: softplus(v, beta=2, threshold=1),
            [0.009074963959, 0.1566308438, 0.3465735903, 0.6566308438, 2, 25],
        ),  # ACT-5
        (scaled_tanh, [-1.492938805, -0.5516837063, 0, 0.5516837063, 1.492938805, 1.7159]),  # ACT-9
    ],
)
def test_golden_values(x64, f, expected):
    np.testing.assert_allclose(f(jnp.array(V, jnp.float64)), expected, rtol=1e-9)


def test_softplus_threshold_returns_input_exactly(x64):
    # ACT-5: beta * x > threshold returns x itself (beta=2, threshold=1: softplus(2) = 2 exactly)
    assert float(softplus(jnp.float64(2.0), beta=2, threshold=1)) == 2.0
    assert float(softplus(jnp.float64(25.0))) == 25.0


BIG = jnp.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]])


@pytest.mark.parametrize(
    "f",
    [
        relu,
        leaky_relu,
        elu,
        sigmoid,
        tanh,
        softplus,
        abs,
        softmax,
        log_softmax,
        lambda x: softplus(x, threshold=1e9),
        lambda x: logsumexp(x, -1, True),
        lambda x: prelu(x, jnp.array([0.25])),
    ],
)
def test_stable_at_large_logits(f):
    y = f(BIG)
    c = jnp.arange(1.0, 1.0 + y.size).reshape(y.shape)  # non-uniform cotangent
    grad = jax.grad(lambda x: jnp.sum(f(x) * c))(BIG)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad))


def test_large_logit_values():
    np.testing.assert_allclose(softmax(BIG), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(log_softmax(BIG)[0], [0, -2000, -1000])  # ACT-6: x - logsumexp
    np.testing.assert_allclose(logsumexp(BIG), [1000, -1000 + np.log(3)])
    np.testing.assert_allclose(softplus(BIG[0]), [1000, 0, np.log(2)])
    np.testing.assert_allclose(softplus(BIG[0], threshold=1e9), [1000, 0, np.log(2)])
    np.testing.assert_allclose(sigmoid(BIG[0]), [1, 0, 0.5])
    np.testing.assert_allclose(elu(BIG[0]), [1000, -1, 0])
    np.testing.assert_allclose(jax.grad(lambda x: elu(x).sum())(BIG[0]), [1, 0, 1])
    np.testing.assert_allclose(jax.grad(lambda x: sigmoid(x).sum())(BIG[0]), [0, 0, 0.25])


def test_nan_and_infinities_like_torch():
    x = jnp.array([jnp.nan, -jnp.inf, jnp.inf])
    np.testing.assert_array_equal(relu(x), [np.nan, 0, np.inf])
    np.testing.assert_array_equal(abs(x), [np.nan, np.inf, np.inf])
    np.testing.assert_array_equal(logsumexp(jnp.array([-jnp.inf, -jnp.inf])), -np.inf)


def _np_softmax(x, dim):
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def test_jitted_float32_forward_and_backward_match_numpy_closed_forms():
    # Training runs these ops compiled and in float32: one jitted program computes every op's
    # forward and manual backward, checked against the textbook formulas in numpy (float64),
    # kinks included (x holds exact zeros: ACT-1, ACT-2, ACT-4, ACT-7).
    x = _rand(0, (4, 6)).astype(jnp.float32)
    g = _rand(1, (4, 6), zeros=False).astype(jnp.float32)
    w = jnp.array([0.1, 0.2, 0.3], jnp.float32)
    xp, gp = x.reshape(4, 3, 2), g.reshape(4, 3, 2)  # prelu over 3 channels
    g_lse, g_max = g[:1], g[:, :3]

    @jax.jit
    def run(x, g, w):
        return {
            "relu": (relu(x), relu_backward(g, x)),
            "leaky_relu": (leaky_relu(x), leaky_relu_backward(g, x)),
            "elu": (elu(x), elu_backward(g, x)),
            "sigmoid": (sigmoid(x), sigmoid_backward(g, x)),
            "tanh": (tanh(x), tanh_backward(g, x)),
            "softplus": (softplus(x), softplus_backward(g, x)),
            "abs": (abs(x), abs_backward(g, x)),
            "softmax": (softmax(x, 0), softmax_backward(g, x, 0)),
            "log_softmax": (log_softmax(x, 1), log_softmax_backward(g, x, 1)),
            "logsumexp": (logsumexp(x, 0, True), logsumexp_backward(g_lse, x, 0, True)),
            "maxout": (maxout(x, 2), maxout_backward(g_max, x, 2)),
            "prelu": (prelu(xp, w), *prelu_backward(gp, xp, w)),
        }

    X, G, Wn = (np.asarray(a, np.float64) for a in (x, g, w))
    Xp, Gp, Wp = X.reshape(4, 3, 2), G.reshape(4, 3, 2), Wn[None, :, None]
    sig = 1 / (1 + np.exp(-X))
    sm0, sm1 = _np_softmax(X, 0), _np_softmax(X, 1)
    pairs = X.reshape(4, 3, 2)
    first_max = np.zeros_like(pairs)  # ACT-8: the first maximal piece gets the gradient
    np.put_along_axis(first_max, pairs.argmax(axis=2)[..., None], 1.0, axis=2)
    want = {
        "relu": (np.maximum(X, 0), G * (X > 0)),
        "leaky_relu": (np.where(X > 0, X, 0.01 * X), G * np.where(X > 0, 1, 0.01)),
        "elu": (np.where(X > 0, X, np.expm1(X)), G * np.where(X > 0, 1, np.exp(X))),
        "sigmoid": (sig, G * sig * (1 - sig)),
        "tanh": (np.tanh(X), G * (1 - np.tanh(X) ** 2)),
        "softplus": (np.log1p(np.exp(X)), G * sig),
        "abs": (np.abs(X), G * np.sign(X)),
        "softmax": (sm0, sm0 * (G - (G * sm0).sum(0, keepdims=True))),
        "log_softmax": (np.log(sm1), G - sm1 * G.sum(1, keepdims=True)),
        "logsumexp": (np.log(np.exp(X).sum(0, keepdims=True)), G[:1] * sm0),
        "maxout": (pairs.max(axis=2), (G[:, :3, None] * first_max).reshape(4, 6)),
        "prelu": (
            np.where(Xp > 0, Xp, Wp * Xp),
            Gp * np.where(Xp > 0, 1, Wp),
            (Gp * np.minimum(Xp, 0)).sum(axis=(0, 2)),
        ),
    }
    got = run(x, g, w)
    for name, values in want.items():
        for i, (a, b) in enumerate(zip(got[name], values, strict=True)):
            assert a.dtype == jnp.float32, name
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"{name}[{i}]")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "f",
    [
        relu,
        leaky_relu,
        elu,
        sigmoid,
        tanh,
        softplus,
        abs,
        softmax,
        log_softmax,
        logsumexp,
        lambda x: maxout(x, 1),
        lambda x: prelu(x, jnp.ones(1)),
    ],
)
def test_integer_input_rejected(f):
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        f(jnp.ones((2, 3), jnp.int32))


@pytest.mark.parametrize("f", [softmax, log_softmax, logsumexp])
def test_bad_dim_rejected(f):
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\] for input of shape \(2, 3\), got 2"):
        f(x, 2)
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\] .* got -3"):
        f(x, -3)
    with pytest.raises(TypeError, match=r"dim must be a Python int, got 1\.0"):
        f(x, 1.0)
    with pytest.raises(ValueError, match="input must have at least 1 dimension"):
        f(jnp.float32(1.0))


def test_prelu_bad_weight_rejected():
    x = jnp.ones((2, 3))
    with pytest.raises(
        ValueError,
        match=r"weight of shape \(4,\) needs input with 4 channels on dim 1, got input shape \(2, 3\)",
    ):
        prelu(x, jnp.ones(4))
    with pytest.raises(ValueError, match=r"weight must be 1-D of shape \(1,\) or \(C,\), got shape \(1, 3\)"):
        prelu(x, jnp.ones((1, 3)))
    with pytest.raises(ValueError, match=r"needs input with 3 channels on dim 1, got input shape \(3,\)"):
        prelu(jnp.ones(3), jnp.ones(3))
    with pytest.raises(TypeError, match="weight must have a floating dtype"):
        prelu(x, jnp.ones(3, jnp.int32))


def test_maxout_bad_pieces_rejected():
    x = jnp.ones((2, 6))
    with pytest.raises(ValueError, match=r"channel dim 1 \(size 6\) must be divisible by pieces=4"):
        maxout(x, 4)
    with pytest.raises(ValueError, match="pieces must be >= 1, got 0"):
        maxout(x, 0)
    with pytest.raises(TypeError, match=r"pieces must be a Python int, got 2\.0"):
        maxout(x, 2.0)
    with pytest.raises(ValueError, match=r"ndim >= 2\), got shape \(6,\)"):
        maxout(jnp.ones(6), 2)


def test_backward_grad_output_shape_rejected():
    x = jnp.ones((2, 6))
    with pytest.raises(ValueError, match=r"grad_output and input must have the same shape .* \(2, 5\)"):
        relu_backward(jnp.ones((2, 5)), x)
    with pytest.raises(ValueError, match=r"grad_output and input must have the same shape"):
        softmax_backward(jnp.ones((6,)), x)
    with pytest.raises(ValueError, match=r"grad_output and input must have the same shape"):
        prelu_backward(jnp.ones((6,)), x, jnp.ones(1))
    with pytest.raises(
        ValueError, match=r"grad_output must have the forward output's shape \(2,\), got \(2, 1\)"
    ):
        logsumexp_backward(jnp.ones((2, 1)), x)
    with pytest.raises(
        ValueError, match=r"grad_output must have the forward output's shape \(2, 3\), got \(2, 6\)"
    ):
        maxout_backward(x, x, 2)


def test_logsumexp_over_several_dims(x64):
    from fnn import functional as F

    x = jax.random.normal(jax.random.key(4), (3, 4, 5), jnp.float64) * 10
    want = jax.scipy.special.logsumexp(x, axis=(0, 2))
    np.testing.assert_allclose(F.logsumexp(x, dim=(0, -1)), want, rtol=1e-12)
    for keepdim in (False, True):
        y, vjp = jax.vjp(lambda a, keepdim=keepdim: F.logsumexp(a, (2, 0), keepdim), x)
        g = jax.random.normal(jax.random.key(5), y.shape, jnp.float64)
        np.testing.assert_allclose(
            F.logsumexp_backward(g, x, (2, 0), keepdim), vjp(g)[0], rtol=1e-12, atol=1e-14
        )
    with pytest.raises(ValueError, match="more than once"):
        F.logsumexp(x, dim=(0, -3))


def test_scaled_tanh_is_lecuns_squashing_function(x64):
    # ACT-9: f(x) = 1.7159 tanh(2x/3) maps ±1 to ±1 (to 3e-6: 1.7159 is rounded), has gain
    # A·S = 1.1439 at 0 and saturates at ±A; its derivative A·S·(1 − tanh²(Sx)) in closed form
    v = jnp.array(V, jnp.float64)
    np.testing.assert_allclose(scaled_tanh(jnp.array([1.0, -1.0], jnp.float64)), [1, -1], atol=3e-6)
    want = 1.7159 * (2 / 3) * (1 - np.tanh(2 / 3 * np.asarray(V)) ** 2)
    np.testing.assert_allclose(scaled_tanh_backward(jnp.ones_like(v), v), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.grad(lambda x: scaled_tanh(x).sum())(v), want, rtol=1e-12, atol=1e-14)
    assert float(scaled_tanh_backward(jnp.float64(1.0), jnp.float64(0.0))) == pytest.approx(1.1439333333)
    # the paper's constants are one argument away: A tanh(S x) for any finite A, S
    np.testing.assert_allclose(scaled_tanh(v, 2.0, 0.25), 2.0 * np.tanh(0.25 * np.asarray(V)), rtol=1e-12)


def test_scaled_tanh_bad_constants_rejected():
    from fnn import nn

    x = jnp.ones(3)
    with pytest.raises(TypeError, match="amplitude must be a finite Python number, got nan"):
        scaled_tanh(x, float("nan"))
    with pytest.raises(TypeError, match=r"slope must be a finite Python number, got Array"):
        scaled_tanh(x, 1.0, jnp.float32(0.5))
    with pytest.raises(TypeError, match="slope must be a finite Python number, got 'x'"):
        nn.ScaledTanh(slope="x")
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        scaled_tanh(jnp.ones(3, jnp.int32))
