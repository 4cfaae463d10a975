"""batch_norm / layer_norm: torch golden values (docs/semantics.md), rules BN-1..BN-8 and
BN2D-1..2 ((N, C, *) inputs), manual backward vs jax.vjp in float64, jit, and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn.functional.normalization import batch_norm, batch_norm_backward, layer_norm, layer_norm_backward

X1 = [[1, 2, 0], [3, -1, 0], [2, 0, 1], [6, 3, -1]]
X2 = [[0, 1, 2], [2, 1, -2]]
TOL = dict(rtol=1e-8, atol=1e-9)  # goldens are printed to 10 significant digits


def _fresh(c=3, dtype=jnp.float64):
    """BatchNorm1d(c) init: γ = 1, β = 0, running_mean = 0, running_var = 1 (BN-1, BN-2)."""
    return dict(
        running_mean=jnp.zeros(c, dtype),
        running_var=jnp.ones(c, dtype),
        weight=jnp.ones(c, dtype),
        bias=jnp.zeros(c, dtype),
    )


def _x(a):
    return jnp.asarray(a, jnp.float64)


# ---------------------------------------------------------------- golden values (2.3)


def test_golden_train_output_and_running_stats(x64):
    p = _fresh()
    y1, rm, rv = batch_norm(_x(X1), **p, training=True)
    # BN-1: golden train y1
    np.testing.assert_allclose(
        y1,
        [
            [-1.06904344, 0.6324542671, 0],
            [-1.1e-16, -1.264908534, 0],
            [-0.5345217202, -0.6324542671, 1.41419942],
            [1.603565161, 1.264908534, -1.41419942],
        ],
        **TOL,
    )
    # BN-2: unbiased variance in the update, momentum 0.1
    np.testing.assert_allclose(rm, [0.3, 0.1, 0], **TOL)
    np.testing.assert_allclose(rv, [1.366666667, 1.233333333, 0.9666666667], **TOL)
    _, rm, rv = batch_norm(_x(X2), rm, rv, p["weight"], p["bias"], training=True)
    np.testing.assert_allclose(rm, [0.37, 0.19, 0], **TOL)  # BN-2 after x2
    np.testing.assert_allclose(rv, [1.43, 1.11, 1.67], **TOL)
    # BN-4: eval uses the running stats and leaves them unchanged
    y, rm_eval, rv_eval = batch_norm(_x(X2), rm, rv, p["weight"], p["bias"], training=False)
    np.testing.assert_allclose(
        y, [[-0.3094084619, 0.7688145134, 1.547641831], [1.36306971, 0.7688145134, -1.547641831]], **TOL
    )
    assert rm_eval is rm and rv_eval is rv


def test_golden_momentum_none_cumulative_average(x64):
    # BN-3: m = 1/(num_batches_tracked + 1) with the count BEFORE the batch; the first batch
    # (count 0) replaces the initial buffers.
    p = _fresh()
    _, rm, rv = batch_norm(_x(X1), **p, training=True, momentum=None, num_batches_tracked=0)
    np.testing.assert_allclose(rm, np.mean(X1, axis=0), **TOL)
    np.testing.assert_allclose(rv, np.var(X1, axis=0, ddof=1), **TOL)
    _, rm, rv = batch_norm(
        _x(X2),
        rm,
        rv,
        p["weight"],
        p["bias"],
        training=True,
        momentum=None,
        num_batches_tracked=jnp.asarray(1, jnp.int64),
    )
    np.testing.assert_allclose(rm, [2, 1, 0], **TOL)
    np.testing.assert_allclose(rv, [3.333333333, 1.666666667, 4.333333333], **TOL)


def test_momentum_none_requires_num_batches_tracked():
    p = _fresh(dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"num_batches_tracked.*required when momentum is None"):
        batch_norm(jnp.asarray(X1, jnp.float32), **p, training=True, momentum=None)


def test_golden_backward(x64):
    # BN-8 on a fresh BN(3) in training mode with x1
    dy = _x([[1, 0, -1], [0.5, 2, 0], [0, -1, 1], [2, 0, 0.5]])
    dx, dgamma, dbeta = batch_norm_backward(dy, _x(X1), **_fresh(), training=True)
    np.testing.assert_allclose(
        dx,
        [
            [0.3722553253, 0.03162195441, -1.590974348],
            [-0.2004456451, 0.7273239251, -0.1767749276],
            [-0.31498645, -0.9803033551, 0.8838817086],
            [0.1431767698, 0.2213574756, 0.8838675669],
        ],
        **TOL,
    )
    np.testing.assert_allclose(dgamma, [2.138086881, -1.897362801, 0.7070997102], **TOL)
    np.testing.assert_allclose(dbeta, [3.5, 1, 0.5], **TOL)


# ---------------------------------------------------------------- running stats, modes


def test_running_stats_over_several_steps(x64):
    # BN-2 for five batches against a plain numpy loop of the same rule
    keys = jax.random.split(jax.random.key(0), 5)
    p = _fresh(4)
    rm, rv = p["running_mean"], p["running_var"]
    ref_m, ref_v = np.zeros(4), np.ones(4)
    for t, k in enumerate(keys):
        x = jax.random.normal(k, (6, 4), jnp.float64) * (t + 1) + t
        _, rm, rv = batch_norm(x, rm, rv, p["weight"], p["bias"], training=True, momentum=0.3)
        xn = np.asarray(x)
        ref_m = 0.7 * ref_m + 0.3 * xn.mean(0)
        ref_v = 0.7 * ref_v + 0.3 * xn.var(0, ddof=1)
    np.testing.assert_allclose(rm, ref_m, rtol=1e-12)
    np.testing.assert_allclose(rv, ref_v, rtol=1e-12)


def test_track_running_stats_false_uses_batch_stats_in_train_and_eval(x64):
    # BN-5: no buffers, batch statistics in both modes, buffers come back as None
    x = _x(X1)
    y_train, rm, rv = batch_norm(x, None, None, training=True)
    y_eval, rm_e, rv_e = batch_norm(x, None, None, training=False)
    assert rm is None and rv is None and rm_e is None and rv_e is None
    y_ref, _, _ = batch_norm(x, **_fresh(), training=True)
    np.testing.assert_allclose(y_train, y_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(y_eval, y_ref, rtol=1e-12, atol=1e-15)


def test_affine_false(x64):
    # BN-6: weight/bias None equals γ = 1, β = 0; their gradients come back as None
    x, dy = _x(X1), _x(np.arange(12.0).reshape(4, 3) - 5)
    p = _fresh()
    y_none, _, _ = batch_norm(x, p["running_mean"], p["running_var"], training=True)
    y_aff, _, _ = batch_norm(x, **p, training=True)
    np.testing.assert_allclose(y_none, y_aff, rtol=1e-15)
    dx, dw, db = batch_norm_backward(dy, x, p["running_mean"], p["running_var"], training=True)
    assert dw is None and db is None
    np.testing.assert_allclose(dx, batch_norm_backward(dy, x, **p, training=True)[0], rtol=1e-15)
    _, dw, db = batch_norm_backward(dy, x, None, None, weight=p["weight"])
    assert dw is not None and db is None


def test_three_dim_input_equals_flattened_two_dim(x64):
    # (N, C, L): statistics over N and L with n = N·L, i.e. the same as (N·L, C)
    kx, kw, kb = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (3, 4, 5), jnp.float64)
    w, b = jax.random.normal(kw, (4,), jnp.float64), jax.random.normal(kb, (4,), jnp.float64)
    flat = jnp.transpose(x, (0, 2, 1)).reshape(15, 4)
    rm0, rv0 = jnp.zeros(4), jnp.ones(4)
    y3, rm3, rv3 = batch_norm(x, rm0, rv0, w, b, training=True)
    y2, rm2, rv2 = batch_norm(flat, rm0, rv0, w, b, training=True)
    np.testing.assert_allclose(jnp.transpose(y3, (0, 2, 1)).reshape(15, 4), y2, rtol=1e-12)
    np.testing.assert_allclose(rm3, rm2, rtol=1e-12)
    np.testing.assert_allclose(rv3, rv2, rtol=1e-12)  # unbiased with n = 15
    np.testing.assert_allclose(rv3, 0.9 + 0.1 * np.var(np.asarray(flat), 0, ddof=1), rtol=1e-12)
    y3e, _, _ = batch_norm(x, rm3, rv3, w, b)
    y2e, _, _ = batch_norm(flat, rm3, rv3, w, b)
    np.testing.assert_allclose(jnp.transpose(y3e, (0, 2, 1)).reshape(15, 4), y2e, rtol=1e-12)


X4 = [[[[1, 2], [0, 3]], [[-1, 0], [2, 1]]], [[[4, 0], [2, 1]], [[0, 0], [1, 3]]]]  # (2, 2, 2, 2)


def test_golden_4d_train_eval_and_backward(x64):
    # BN2D-1/2: torch 2.13's BatchNorm2d(2) on X4 (docs/semantics.md's golden values)
    p = _fresh(2)
    y, rm, rv = batch_norm(_x(X4), **p, training=True)
    np.testing.assert_allclose(y[0, 0], [[-0.4745776297, 0.2847465778], [-1.2339018373, 1.0440707854]], **TOL)
    np.testing.assert_allclose(y[1, 1], [[-0.6255410664, -0.6255410664], [0.2085136888, 1.8766231991]], **TOL)
    np.testing.assert_allclose(rm, [0.1625, 0.075], **TOL)  # m = 0.1 of the means 1.625, 0.75
    np.testing.assert_allclose(rv, [1.098214286, 1.064285714], **TOL)  # unbiased, n = 8
    y_eval, _, _ = batch_norm(_x(X4), rm, rv, p["weight"], p["bias"])
    np.testing.assert_allclose(
        y_eval[0, 0], [[0.7991702236, 1.7534033263], [-0.1550628792, 2.7076364291]], **TOL
    )
    dy = _x([[[[1, 0], [-1, 2]], [[0.5, 0], [0, -1]]], [[[0, 1], [1, 0]], [[2, -1], [0, 0.5]]]])
    dx, dw, db = batch_norm_backward(dy, _x(X4), **p, training=True)
    np.testing.assert_allclose(
        dx[0, 0], [[0.4651710936, -0.4309674977], [-0.9166629378, 0.9508665338]], **TOL
    )
    np.testing.assert_allclose(
        dx[1, 1], [[1.5230567932, -0.9791074723], [-0.0906582202, 0.4351581513]], **TOL
    )
    np.testing.assert_allclose(dw, [1.898310519, -0.6255410664], **TOL)
    np.testing.assert_allclose(db, [4, 1], **TOL)


def _np_bn_train(x, rm, rv, w, b, m):
    """numpy closed form of BN2D-1 on (N, C, *): per-channel stats over every other axis."""
    axes = (0, *range(2, x.ndim))
    cshape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]
    mean, var = x.mean(axes), x.var(axes)
    y = (x - mean.reshape(cshape)) / np.sqrt(var.reshape(cshape) + 1e-5) * w.reshape(cshape) + b.reshape(
        cshape
    )
    return y, (1 - m) * rm + m * mean, (1 - m) * rv + m * var * n / (n - 1)


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (2, 3, 2, 2, 2)])
def test_nd_input_running_stats_and_eval_match_numpy(x64, shape):
    # BN2D-1: statistics per channel over N and every spatial position, n = N·prod(*); the
    # running variance is unbiased with that n (BN-2); momentum=None averages (BN-3); eval
    # uses the buffers (BN-4).
    rng = np.random.default_rng(len(shape))
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = np.zeros(c), np.ones(c)
    frm, frv = jnp.asarray(rm), jnp.asarray(rv)
    cm, cv = frm, frv
    xs = [rng.standard_normal(shape) * (t + 1) + 3 * t for t in range(3)]
    for t, x in enumerate(xs):
        y, frm, frv = batch_norm(jnp.asarray(x), frm, frv, jnp.asarray(w), jnp.asarray(b), training=True)
        want_y, rm, rv = _np_bn_train(x, rm, rv, w, b, 0.1)
        np.testing.assert_allclose(y, want_y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(frm, rm, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(frv, rv, rtol=1e-12)
        _, cm, cv = batch_norm(jnp.asarray(x), cm, cv, training=True, momentum=None, num_batches_tracked=t)
    axes = (0, *range(2, len(shape)))
    np.testing.assert_allclose(cm, np.mean([x.mean(axes) for x in xs], 0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cv, np.mean([x.var(axes, ddof=1) for x in xs], 0), rtol=1e-12)
    cshape = (1, -1) + (1,) * (len(shape) - 2)
    y, erm, erv = batch_norm(jnp.asarray(xs[0]), frm, frv, jnp.asarray(w), jnp.asarray(b))
    want = (xs[0] - rm.reshape(cshape)) / np.sqrt(rv.reshape(cshape) + 1e-5) * w.reshape(cshape) + b.reshape(
        cshape
    )
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
    assert erm is frm and erv is frv


def test_four_dim_input_equals_the_three_dim_input_it_flattens_to(x64):
    # BN2D-1: (N, C, H, W) normalizes as (N, C, H·W) does (BN-1's (N, C, L) case), forward,
    # running stats and backward, to rounding (4-D takes the one-pass sums, 3-D the two-pass).
    rng = np.random.default_rng(3)
    x, dy = (jnp.asarray(rng.standard_normal((3, 4, 2, 5)) + 2) for _ in "xd")
    p = {k: v + 0.2 * jnp.asarray(rng.standard_normal(4)) for k, v in _fresh(4).items()}
    p["running_var"] = jnp.abs(p["running_var"])
    for training in (True, False):
        four = batch_norm(x, **p, training=training)
        three = batch_norm(x.reshape(3, 4, 10), **p, training=training)
        np.testing.assert_allclose(four[0].reshape(3, 4, 10), three[0], rtol=1e-12, atol=1e-13)
        for a, e in zip(four[1:], three[1:], strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)
        g4 = batch_norm_backward(dy, x, **p, training=training)
        g3 = batch_norm_backward(dy.reshape(3, 4, 10), x.reshape(3, 4, 10), **p, training=training)
        np.testing.assert_allclose(g4[0].reshape(3, 4, 10), g3[0], rtol=1e-11, atol=1e-12)
        for a, e in zip(g4[1:], g3[1:], strict=True):
            np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-12)


def test_running_update_carries_no_gradient(x64):
    p = _fresh()

    def buffers(x):
        _, rm, rv = batch_norm(x, **p, training=True)
        return jnp.sum(rm) + jnp.sum(rv)

    g = jax.grad(buffers)(_x(X1))
    np.testing.assert_array_equal(g, np.zeros((4, 3)))


def test_dtypes_are_kept():
    x = jnp.asarray(X1, jnp.float32)
    p = _fresh(dtype=jnp.float32)
    y, rm, rv = batch_norm(x, **p, training=True, momentum=None, num_batches_tracked=3)
    assert y.dtype == rm.dtype == rv.dtype == jnp.float32
    assert layer_norm(x, 3).dtype == jnp.float32


# ---------------------------------------------------------------- BN-7


def test_training_with_one_value_per_channel_raises():
    p = _fresh(dtype=jnp.float32)
    msg = "Expected more than 1 value per channel when training, got input size"
    with pytest.raises(ValueError, match=msg):  # BN-7, n = N = 1
        batch_norm(jnp.ones((1, 3)), **p, training=True)
    with pytest.raises(ValueError, match=msg):  # BN-7, n = N·L = 1
        batch_norm(jnp.ones((1, 3, 1)), **p, training=True)
    with pytest.raises(ValueError, match=msg):  # BN2D-1, n = N·H·W = 1
        batch_norm(jnp.ones((1, 3, 1, 1)), **p, training=True)
    with pytest.raises(ValueError, match=msg):
        batch_norm_backward(jnp.ones((1, 3)), jnp.ones((1, 3)), **p, training=True)
    # torch's module also normalizes with batch stats in eval when it has no buffers (BN-5)
    with pytest.raises(ValueError, match=msg):
        batch_norm(jnp.ones((1, 3)), None, None, training=False)


def test_one_sample_is_fine_in_eval_and_with_length():
    # BN-7: eval with N = 1 uses the running stats; (1, C, 2) has n = 2
    p = _fresh(dtype=jnp.float32)
    y, _, _ = batch_norm(jnp.full((1, 3), 2.0), **p, training=False)
    np.testing.assert_allclose(y, np.full((1, 3), 2.0 / np.sqrt(1 + 1e-5)), rtol=1e-6)
    y, _, _ = batch_norm(jnp.asarray([[[0.0, 2.0]] * 3]), **p, training=True)
    np.testing.assert_allclose(y, np.tile([-1.0, 1.0], (1, 3, 1)), rtol=1e-4)


# ---------------------------------------------------------------- manual vs jax.vjp


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("track", [True, False])
def test_batch_norm_backward_matches_vjp(x64, shape, training, affine, track):
    ks = jax.random.split(jax.random.key(hash((shape, training, affine, track)) % 2**31), 6)
    c = shape[1]
    x = jax.random.normal(ks[0], shape, jnp.float64) * 2 + 0.5
    dy = jax.random.normal(ks[1], shape, jnp.float64)
    w = jax.random.normal(ks[2], (c,), jnp.float64) if affine else None
    b = jax.random.normal(ks[3], (c,), jnp.float64) if affine else None
    rm = jax.random.normal(ks[4], (c,), jnp.float64) if track else None
    rv = jax.random.uniform(ks[5], (c,), jnp.float64, 0.5, 2.0) if track else None

    # Both sides in one compiled program (eagerly, every op would compile on its own).
    @fast_jit
    def both(x, dy, w, b, rm, rv):
        _, vjp = jax.vjp(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=training)[0], x, w, b)
        return vjp(dy), batch_norm_backward(dy, x, rm, rv, w, b, training=training)

    expected, got = both(x, dy, w, b, rm, rv)
    for e, g in zip(expected, got, strict=True):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "shape,training,affine,track",
    [
        ((3, 2, 3, 2), True, True, True),
        ((3, 2, 3, 2), False, True, True),
        ((3, 2, 3, 2), False, False, False),
        ((2, 3, 2, 1, 2), True, False, True),
        ((2, 3, 2, 1, 2), False, True, True),
    ],
)
def test_batch_norm_backward_matches_vjp_on_4d_and_5d_input(x64, shape, training, affine, track):
    # BN2D-2: the same derivation with sums over N and every spatial dim; 4-D and up take the
    # one-pass sums of fnn/_fast/batch_norm.py, jax.vjp differentiates the forward's.
    rng = np.random.default_rng(len(shape) * 8 + 4 * training + 2 * affine + track)
    c = shape[1]
    x = jnp.asarray(rng.standard_normal(shape) * 2 + 0.5)
    dy = jnp.asarray(rng.standard_normal(shape))
    w, b = (jnp.asarray(rng.standard_normal(c)) for _ in "wb") if affine else (None, None)
    rm, rv = (
        (jnp.asarray(rng.standard_normal(c)), jnp.asarray(rng.uniform(0.5, 2, c))) if track else (None, None)
    )

    @fast_jit
    def both(x, dy, w, b, rm, rv):
        _, vjp = jax.vjp(lambda x, w, b: batch_norm(x, rm, rv, w, b, training=training)[0], x, w, b)
        return vjp(dy), batch_norm_backward(dy, x, rm, rv, w, b, training=training)

    expected, got = both(x, dy, w, b, rm, rv)
    for e, g in zip(expected, got, strict=True):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "shape,normalized_shape",
    [((4, 5), 5), ((4, 5), (5,)), ((2, 3, 4), (3, 4)), ((2, 3, 4), [4]), ((3, 4), (3, 4))],
)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_matches_vjp(x64, shape, normalized_shape, affine):
    ks = jax.random.split(jax.random.key(len(shape) * 10 + int(affine)), 4)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    x = jax.random.normal(ks[0], shape, jnp.float64) * 3 - 1
    dy = jax.random.normal(ks[1], shape, jnp.float64)
    w = jax.random.normal(ks[2], ns, jnp.float64) if affine else None
    b = jax.random.normal(ks[3], ns, jnp.float64) if affine else None

    @fast_jit  # both sides in one program, as in the BatchNorm test above
    def both(x, dy, w, b):
        _, vjp = jax.vjp(lambda x, w, b: layer_norm(x, normalized_shape, w, b), x, w, b)
        return vjp(dy), layer_norm_backward(dy, x, normalized_shape, w, b)

    for e, g in zip(*both(x, dy, w, b), strict=True):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


def test_layer_norm_values(x64):
    # torch semantics: biased variance over the trailing dims, then γ·x̂ + β
    x = np.arange(24.0).reshape(2, 3, 4) ** 1.5
    w, b = np.linspace(0.5, 2, 12).reshape(3, 4), np.linspace(-1, 1, 12).reshape(3, 4)
    mu = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mu) / np.sqrt(var + 1e-3) * w + b
    np.testing.assert_allclose(layer_norm(_x(x), (3, 4), _x(w), _x(b), eps=1e-3), expected, rtol=1e-12)


# ---------------------------------------------------------------- jit


def _np_normalize_backward(g, xhat, std, axes):
    """Textbook dx of x̂ = (x − μ)/σ with batch statistics (biased σ): (g − ⟨g⟩ − x̂·⟨g·x̂⟩)/σ."""
    return (g - g.mean(axes, keepdims=True) - xhat * (g * xhat).mean(axes, keepdims=True)) / std


def _np_norm_backwards_and_layer_norm(x, dy, gamma, rm_e, rv_e):
    """The textbook values in numpy (float64): batch_norm's backward in training (batch
    statistics) and in eval (running rm_e, rv_e), layer_norm over the last two dims and its
    backward, all with eps = 1e-5."""
    X, G, gam = (np.asarray(a, np.float64) for a in (x, dy, gamma))
    gam = gam[None, :, None]
    mu, var = X.mean((0, 2), keepdims=True), X.var((0, 2), keepdims=True)
    xhat = (X - mu) / np.sqrt(var + 1e-5)
    rstd_e = 1 / np.sqrt(np.asarray(rv_e, np.float64) + 1e-5)[None, :, None]
    xhat_e = (X - np.asarray(rm_e, np.float64)[None, :, None]) * rstd_e
    lmu, lvar = X.mean((1, 2), keepdims=True), X.var((1, 2), keepdims=True)
    lhat = (X - lmu) / np.sqrt(lvar + 1e-5)
    return {
        "bn_train_bwd": (
            gam * _np_normalize_backward(G, xhat, np.sqrt(var + 1e-5), (0, 2)),
            (G * xhat).sum((0, 2)),
            G.sum((0, 2)),
        ),
        "bn_eval_bwd": (G * gam * rstd_e, (G * xhat_e).sum((0, 2)), G.sum((0, 2))),
        "ln": lhat,
        "ln_bwd": _np_normalize_backward(G, lhat, np.sqrt(lvar + 1e-5), (1, 2)),
    }


def test_jitted_float32_norms_match_goldens_and_closed_forms():
    # Training runs these compiled and in float32: one jitted program, checked against
    # the torch goldens of BN-1, BN-2, BN-3 (with a traced count) and BN-4, and against
    # the textbook backward in numpy (float64), in training and eval mode, and layer_norm's.
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    p = _fresh(dtype=jnp.float32)
    gamma, beta = f32([0.5, 1.5, -2.0]), f32([0.1, 0.0, -0.3])
    rng = np.random.default_rng(3)
    x, dy = f32(rng.normal(size=(6, 3, 2))), f32(rng.normal(size=(6, 3, 2)))
    rm_e, rv_e = f32([0.2, -0.1, 0.4]), f32([0.5, 2.0, 1.5])

    @jax.jit
    def run(x, dy, n0):
        y1, rm, rv = batch_norm(f32(X1), **p, training=True)
        _, rm2, rv2 = batch_norm(f32(X2), rm, rv, p["weight"], p["bias"], training=True)
        y_eval, _, _ = batch_norm(f32(X2), rm2, rv2, p["weight"], p["bias"], training=False)
        _, cm, cv = batch_norm(f32(X1), **p, training=True, momentum=None, num_batches_tracked=n0)
        cm, cv = batch_norm(
            f32(X2), cm, cv, p["weight"], p["bias"], training=True, momentum=None, num_batches_tracked=n0 + 1
        )[1:]
        return {
            "y1": y1,
            "rm": rm,
            "rv": rv,
            "rm2": rm2,
            "rv2": rv2,
            "y_eval": y_eval,
            "cm": cm,
            "cv": cv,
            "bn_train_bwd": batch_norm_backward(
                dy, x, p["running_mean"], p["running_var"], gamma, beta, training=True
            ),
            "bn_eval_bwd": batch_norm_backward(dy, x, rm_e, rv_e, gamma, beta, training=False),
            "ln": layer_norm(x, (3, 2)),
            "ln_bwd": layer_norm_backward(dy, x, (3, 2))[0],
        }

    got = run(x, dy, jnp.asarray(0))
    want = {
        "y1": [
            [-1.06904344, 0.6324542671, 0],
            [-1.1e-16, -1.264908534, 0],
            [-0.5345217202, -0.6324542671, 1.41419942],
            [1.603565161, 1.264908534, -1.41419942],
        ],  # BN-1
        "rm": [0.3, 0.1, 0],  # BN-2
        "rv": [1.366666667, 1.233333333, 0.9666666667],
        "rm2": [0.37, 0.19, 0],
        "rv2": [1.43, 1.11, 1.67],
        "y_eval": [
            [-0.3094084619, 0.7688145134, 1.547641831],
            [1.36306971, 0.7688145134, -1.547641831],
        ],  # BN-4
        "cm": [2, 1, 0],  # BN-3: cumulative average of the two batches
        "cv": [3.333333333, 1.666666667, 4.333333333],
        **_np_norm_backwards_and_layer_norm(x, dy, gamma, rm_e, rv_e),
    }
    for name, value in want.items():
        pairs = zip(got[name], value, strict=True) if isinstance(value, tuple) else [(got[name], value)]
        for a, b in pairs:
            assert a.dtype == jnp.float32, name
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=name)


# ---------------------------------------------------------------- bad input


def test_batch_norm_bad_input():
    p = _fresh(dtype=jnp.float32)
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match=r"input must have ndim >= 2, \(N, C, \*\), got shape \(3,\)"):
        batch_norm(jnp.ones(3), **p)
    with pytest.raises(ValueError, match="input must have ndim"):
        batch_norm(jnp.ones(()), **p)  # (N, C, *) needs 2 dims; 4-D is BN2D-1's case
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        batch_norm(jnp.ones((4, 3), jnp.int32), **p)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\).*got \(4,\)"):
        batch_norm(x, jnp.zeros(4), p["running_var"])
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\).*got \(3, 1\)"):
        batch_norm(x, p["running_mean"], jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(2,\)"):
        batch_norm(x, None, None, weight=jnp.ones(2))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\).*got \(1,\)"):
        batch_norm(x, None, None, bias=jnp.ones(1))
    with pytest.raises(ValueError, match="must both be arrays or both be None"):
        batch_norm(x, p["running_mean"], None)
    with pytest.raises(ValueError, match=r"momentum must be in \[0.0, 1.0\], got 1.5"):
        batch_norm(x, **p, training=True, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be >= 0, got -1"):
        batch_norm(x, **p, eps=-1)
    with pytest.raises(ValueError, match="grad_output and input must have the same shape"):
        batch_norm_backward(jnp.ones((4, 2)), x, **p)


def test_layer_norm_bad_input():
    x = jnp.ones((2, 3, 4))
    with pytest.raises(
        ValueError,
        match=r"Given normalized_shape=\[3\], expected input with "
        r"shape \[\*, 3\], but got input of size \(2, 3, 4\)",
    ):
        layer_norm(x, 3)
    with pytest.raises(ValueError, match="expected input with shape"):
        layer_norm(x, (5, 2, 3, 4))
    with pytest.raises(ValueError, match="normalized_shape must be an int or a non-empty"):
        layer_norm(x, ())
    with pytest.raises(ValueError, match="normalized_shape must be an int or a non-empty"):
        layer_norm(x, (4.0,))
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 4\).*got \(4,\)"):
        layer_norm(x, (3, 4), weight=jnp.ones(4))
    with pytest.raises(TypeError, match="input must have a floating dtype"):
        layer_norm(jnp.ones((2, 3), jnp.int32), 3)
    with pytest.raises(ValueError, match="grad_output and input must have the same shape"):
        layer_norm_backward(jnp.ones((2, 3)), x, 4)
