"""fnn.init: torch's gains and fans (INIT-1, INIT-2), the distributions of INIT-3/INIT-4/LIN-1
checked empirically on large draws, untruncated normals, determinism, dtypes and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnn import init

N_BIG = (1000, 1000)  # 1e6 samples: the mean is known to ~σ·1e-3, the std to ~0.07 %
P_BEYOND_2SIGMA = math.erfc(2 / math.sqrt(2))  # 0.0455 for an untruncated normal


def _keys(n):
    return jax.random.split(jax.random.key(42), n)


def _check_normal(w, std, mean=0.0):
    w = np.asarray(w, np.float64)
    assert abs(w.mean() - mean) < 5e-3 * std
    np.testing.assert_allclose(w.std(), std, rtol=5e-3)
    # untruncated (JAX trap in 1.1): the share beyond 2σ is 4.55 % (binomial sd 2e-4), not 0
    beyond = np.mean(np.abs(w - mean) > 2 * std)
    assert abs(beyond - P_BEYOND_2SIGMA) < 1.5e-3, beyond


def _check_uniform(w, low, high):
    w = np.asarray(w, np.float64)
    assert w.min() >= low and w.max() <= high
    width = high - low
    assert w.min() < low + 1e-3 * width and w.max() > high - 1e-3 * width  # bounds are reached
    assert abs(w.mean() - (low + high) / 2) < 5e-3 * width
    np.testing.assert_allclose(w.std(), width / math.sqrt(12), rtol=5e-3)


# ---------------------------------------------------------------- gain and fans


def test_calculate_gain_values():
    # INIT-2
    for name in (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    ):
        assert init.calculate_gain(name) == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(1.41414, abs=1e-5)  # a = 0.01
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="Unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope True not a valid number"):
        init.calculate_gain("leaky_relu", True)
    with pytest.raises(ValueError, match=r"negative_slope '0\.1' not a valid number"):
        init.calculate_gain("leaky_relu", "0.1")


def test_calculate_fans():
    # INIT-1: (out, in) layout; conv weights multiply by the receptive field
    assert init.calculate_fans((5, 3)) == (3, 5)
    assert init.calculate_fans((8, 4, 3, 3)) == (36, 72)
    assert init.calculate_fans([2, 6, 5]) == (30, 10)
    with pytest.raises(ValueError, match=r"fewer than 2 dimensions, got shape \(7,\)"):
        init.calculate_fans((7,))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.calculate_fans(7)


# ---------------------------------------------------------------- deterministic fills


def test_constant_zeros_ones_ignore_key():
    # INIT-5; key may be None so every initializer has the same signature
    np.testing.assert_array_equal(init.constant(None, (2, 3), 0.5), np.full((2, 3), 0.5))
    np.testing.assert_array_equal(init.zeros(jax.random.key(0), 4), np.zeros(4))
    np.testing.assert_array_equal(init.ones(None, (1, 2)), np.ones((1, 2)))
    assert init.ones(None, 3, dtype=jnp.int32).dtype == jnp.int32
    assert init.constant(None, (), 2.0).shape == ()


# ---------------------------------------------------------------- distributions


def test_uniform_and_normal():
    k1, k2 = _keys(2)
    _check_uniform(init.uniform(k1, N_BIG, a=-2.0, b=3.0), -2.0, 3.0)
    _check_normal(init.normal(k2, N_BIG, mean=1.5, std=0.3), 0.3, mean=1.5)
    np.testing.assert_array_equal(init.uniform(k1, (3,), a=2.0, b=2.0), [2.0, 2.0, 2.0])


def test_xavier():
    # INIT-3 with fan_in = 400, fan_out = 2500 (shape (out, in))
    k1, k2 = _keys(2)
    shape, gain = (2500, 400), 1.7
    _check_uniform(
        init.xavier_uniform(k1, shape, gain=gain), *(np.array([-1, 1]) * gain * math.sqrt(6 / 2900))
    )
    _check_normal(init.xavier_normal(k2, shape, gain=gain), gain * math.sqrt(2 / 2900))


def test_kaiming_defaults_and_fan_out():
    # INIT-4: defaults (a=0, leaky_relu) give gain √2 with fan_in; fan_out uses shape[0]
    k1, k2, k3, k4 = _keys(4)
    shape = (2000, 500)
    b = math.sqrt(2) * math.sqrt(3 / 500)
    _check_uniform(init.kaiming_uniform(k1, shape), -b, b)
    b_out = math.sqrt(2) * math.sqrt(3 / 2000)
    _check_uniform(init.kaiming_uniform(k2, shape, mode="fan_out"), -b_out, b_out)
    _check_normal(init.kaiming_normal(k3, shape), math.sqrt(2) / math.sqrt(500))
    _check_normal(
        init.kaiming_normal(k4, shape, mode="fan_out", nonlinearity="tanh"), (5 / 3) / math.sqrt(2000)
    )


def test_kaiming_linear_default_and_conv_fans():
    # LIN-1: kaiming_uniform(a=√5) gives U(−1/√in, 1/√in)
    k1, k2 = _keys(2)
    w = init.kaiming_uniform(k1, (4000, 250), a=math.sqrt(5))
    _check_uniform(w, -1 / math.sqrt(250), 1 / math.sqrt(250))
    # INIT-1: conv weight (out, in, k, k) has fan_in = in·k² = 10·25 = 250
    w = init.kaiming_normal(k2, (4000, 10, 5, 5), nonlinearity="relu")
    _check_normal(w, math.sqrt(2 / 250))


def test_zero_element_shapes_give_empty_arrays():
    k = jax.random.key(0)
    for f in (init.xavier_uniform, init.xavier_normal, init.kaiming_uniform, init.kaiming_normal):
        assert f(k, (0, 3)).shape == (0, 3)


# ---------------------------------------------------------------- determinism, keys, dtype, jit


def test_same_key_same_values_and_legacy_keys():
    key = jax.random.key(7)
    for f in (
        init.uniform,
        init.normal,
        init.xavier_uniform,
        init.xavier_normal,
        init.kaiming_uniform,
        init.kaiming_normal,
    ):
        np.testing.assert_array_equal(f(key, (6, 5)), f(key, (6, 5)))
        k1, k2 = jax.random.split(key)
        assert not np.array_equal(f(k1, (6, 5)), f(k2, (6, 5)))
        # a legacy PRNGKey(7) holds the same key data as jax.random.key(7): the same draw
        np.testing.assert_array_equal(f(jax.random.PRNGKey(7), (6, 5)), f(key, (6, 5)))


def test_dtype_argument():
    key = jax.random.key(1)
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        for f in (init.uniform, init.normal, init.xavier_normal, init.kaiming_uniform):
            assert f(key, (4, 3), dtype=dtype).dtype == dtype
        assert init.normal(key, (4, 3), mean=1.0, std=2.0, dtype=dtype).dtype == dtype


def test_float64_dtype(x64):
    key = jax.random.key(1)
    for f in (init.uniform, init.normal, init.xavier_uniform, init.kaiming_normal, init.zeros):
        assert f(key, (4, 3), dtype=jnp.float64).dtype == jnp.float64


def test_jitted_draws_follow_the_formulas():
    # Layers draw their parameters inside compiled init functions: one jitted program draws
    # each family, checked against its closed-form bound or std (INIT-3, INIT-4, LIN-1).
    k1, k2, k3 = _keys(3)

    @jax.jit
    def draw(k1, k2, k3):
        return (
            init.xavier_uniform(k1, (2500, 400)),
            init.kaiming_normal(k2, (2000, 500), mode="fan_out", nonlinearity="tanh"),
            init.kaiming_uniform(k3, (4000, 250), a=math.sqrt(5)),
        )

    xu, kn, lin = draw(k1, k2, k3)
    _check_uniform(xu, -math.sqrt(6 / 2900), math.sqrt(6 / 2900))
    _check_normal(kn, (5 / 3) / math.sqrt(2000))
    _check_uniform(lin, -1 / math.sqrt(250), 1 / math.sqrt(250))


# ---------------------------------------------------------------- bad input


def test_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out', got 'fan_avg'"):
        init.kaiming_uniform(key, (3, 4), mode="fan_avg")
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal(key, (3, 4), mode="in")
    with pytest.raises(ValueError, match="Unsupported nonlinearity 'gelu'"):
        init.kaiming_normal(key, (3, 4), nonlinearity="gelu")
    for f in (init.xavier_uniform, init.xavier_normal, init.kaiming_uniform, init.kaiming_normal):
        with pytest.raises(ValueError, match=r"fewer than 2 dimensions, got shape \(5,\)"):
            f(key, (5,))
    with pytest.raises(ValueError, match=r"uniform needs a <= b, got a=1\.0 and b=0\.0"):
        init.uniform(key, (3,), a=1.0, b=0.0)
    with pytest.raises(ValueError, match=r"std must be >= 0, got -0\.1"):
        init.normal(key, (3,), std=-0.1)
    with pytest.raises(ValueError, match=r"xavier_normal needs a PRNG key .*got None"):
        init.xavier_normal(None, (3, 4))
    with pytest.raises(TypeError, match="dtype must be a floating dtype, got int32"):
        init.normal(key, (3,), dtype=jnp.int32)
    with pytest.raises(
        ValueError,
        match=r"shape must be an int or a sequence of non-negative "
        r"ints, got \(3, -1\)",
    ):
        init.uniform(key, (3, -1))
