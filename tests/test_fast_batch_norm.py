"""fnn._fast.batch_norm: the one-pass per-channel sums equal the plain two-pass definition of
fnn/functional/normalization.py to float rounding (another summation order, so not bit for
bit), including far from zero, where the textbook one-pass variance fails."""

import jax.numpy as jnp
import numpy as np

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
