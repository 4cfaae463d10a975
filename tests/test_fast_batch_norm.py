"""fnn._fast.batch_norm: the one-pass per-channel sums equal the plain two-pass definition of
fnn/functional/normalization.py to float rounding (another summation order, so not bit for
bit), including far from zero, where the textbook one-pass variance fails; the training
forward's custom_jvp gives jax's own derivatives of the plain forward, to every order."""

import jax
import jax.numpy as jnp
import numpy as np
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn._fast import batch_norm as fast_bn
from fnn.functional.normalization import batch_norm


def test_fast_batch_norm_sums_equal_the_two_pass_definition():
    # fnn/_fast/batch_norm.py: the one-pass sums about a per-channel pivot equal the plain
    # two-pass mean((x − μ)²) and Σ dy·(x − μ) to float32 rounding (not bit for bit: another
    # summation order), also for a channel whose mean is 10⁴ standard deviations from 0, where
    # the textbook one-pass E[x²] − E[x]² would lose every digit; a constant channel gives 0.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 8, 8))
    x[:, 1] = x[:, 1] * 1e-3 + 10.0  # |μ|/σ = 1e4
    x[:, 2] = 7.25  # constant: variance exactly 0
    dy = rng.standard_normal(x.shape)
    axes = (0, 2, 3)
    xf, dyf = jnp.asarray(x, jnp.float32), jnp.asarray(dy, jnp.float32)
    mean, var = fast_bn.batch_stats(xf, axes)
    s_dy, s_dyx = fast_bn.backward_sums(dyf, xf, axes, mean)
    # the plain definition, two passes in float32, and the exact values in float64
    d_mean = jnp.mean(xf, axis=axes)
    d_var = jnp.mean(jnp.square(xf - d_mean.reshape(1, 3, 1, 1)), axis=axes)
    x64_ = x.astype(np.float32).astype(np.float64)
    e_mean, e_var = x64_.mean(axes), x64_.var(axes)
    e_dyx = (dy.astype(np.float32) * (x64_ - e_mean.reshape(1, 3, 1, 1))).sum(axes)
    np.testing.assert_allclose(mean, d_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mean, e_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, d_var, rtol=2e-4)  # the definition's own error, here
    np.testing.assert_allclose(var[:2], e_var[:2], rtol=1e-4)
    assert var[2] == 0.0 and mean[2] == 7.25
    np.testing.assert_allclose(s_dy, dy.astype(np.float32).sum(axes), rtol=1e-5)
    # Σ dy·(x − μ) inherits μ's float32 rounding, |μ|·2⁻²⁴ per unit of Σ|dy|, as the
    # definition's x − μ does
    bound = 1e-5 * np.abs(e_dyx) + 2.0**-23 * np.abs(e_mean) * np.abs(dy).sum(axes)
    assert (np.abs(np.asarray(s_dyx) - e_dyx) <= bound).all(), (s_dyx, e_dyx, bound)
    y, _, _ = batch_norm(xf, None, None, training=True)
    assert np.isfinite(np.asarray(y)).all()


def _plain_train_bn(x, w, b, eps=1e-5):
    """BN-1's training forward, two passes, plain jax.numpy: jax differentiates it itself."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=axes)
    return (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + eps) * w.reshape(shape) + b.reshape(
        shape
    )


def test_normalize_its_jvp_vjp_and_second_order_equal_the_plain_forwards(x64):
    # fast_bn.normalize (a custom_jvp) against jax's own derivatives of the plain two-pass
    # forward, float64: the value, a JVP (forward mode), a VJP (its transpose) and a
    # Hessian-vector product (the tangent rule differentiated again).
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((3, 2, 2, 3)) * 2 + 1)
    w, b = jnp.asarray(rng.standard_normal(2)), jnp.asarray(rng.standard_normal(2))
    tx, tw, tb = (jnp.asarray(rng.standard_normal(a.shape)) for a in (x, w, b))
    ct = jnp.asarray(rng.standard_normal(x.shape))
    axes = (0, 2, 3)

    def fast(x, w, b):
        return fast_bn.normalize(x, w, b, 1e-5, axes)

    @fast_jit
    def both(x, w, b):
        out = []
        for f in (fast, _plain_train_bn):
            y, ty = jax.jvp(f, (x, w, b), (tx, tw, tb))
            grads = jax.vjp(f, x, w, b)[1](ct)

            def loss(x, w, b, f=f):
                return jnp.sum(jnp.sin(f(x, w, b)) * ct)

            hvp = jax.jvp(jax.grad(loss, argnums=(0, 1, 2)), (x, w, b), (tx, tw, tb))[1]
            out.append((y, ty, grads, hvp))
        return out

    got, want = both(x, w, b)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
