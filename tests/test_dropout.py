"""fnn.functional.stochastic: inverted dropout with explicit keys (DROP-1..DROP-3), and
channel dropout, dropout2d (DROP2D-1..3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn.functional.stochastic import (
    dropout,
    dropout2d,
    dropout2d_backward,
    dropout_backward,
    dropout_mask,
    keep_mask,
)

jdropout = jax.jit(dropout, static_argnames=("p", "training"))
# The statistical tests draw from whole compiled programs, one per shape and p (as a training
# step draws), instead of op by op: the same bits (the hash is integer arithmetic), the same
# scaled values, compiled by fast_jit (tests/fast_jit.py) in a fraction of the eager ops' time.
cdropout = fast_jit(dropout, static_argnames=("p", "training"))
cdropout_mask = fast_jit(dropout_mask, static_argnames=("shape", "p", "dtype"))
cdropout2d = fast_jit(dropout2d, static_argnames=("p", "training"))
ckeep_mask = fast_jit(keep_mask, static_argnames=("shape", "p"))


# Nothing here relies on which bits a key produces: the masks are checked through properties
# that hold for any correct draw (values, keep rate, independence, reproducibility), so a
# change in how masks are drawn keeps these tests meaningful. The one exception,
# test_mask_is_16_bit_halves_of_random_words_below_the_threshold, rebuilds the documented
# layout (two units per word of jax.random.bits, 16-bit threshold) in numpy.


def _sigma_bound(p, n):
    """4 standard deviations of the mean of n Bernoulli(p) draws."""
    return 4 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_values_are_zero_or_scaled_input_and_rate_is_p(p):
    x = jax.random.normal(jax.random.key(10), (500, 400)) + 3.0  # non-constant, never 0
    y, xn = np.asarray(cdropout(x, jax.random.key(0), p)), np.asarray(x)
    dropped = y == 0
    # DROP-1: every output is 0 or x/(1 - p) (inverted dropout scaling), for each element's own x
    np.testing.assert_allclose(y[~dropped], xn[~dropped] / (1 - p), rtol=1e-6)
    # DROP-1/DROP-3: Bernoulli(1 - p) per element; 2e5 draws put the drop rate within 4 sigma
    assert abs(dropped.mean() - p) < _sigma_bound(p, y.size)


def _kept(key, shape=(400, 500), p=0.5):
    return np.asarray(cdropout(jnp.ones(shape), key, p)) != 0


def _corr(a, b):
    return np.corrcoef(a.reshape(-1).astype(float), b.reshape(-1).astype(float))[0, 1]


def test_neighbouring_units_and_steps_are_uncorrelated():
    # DROP-3: independent per element, so the keep indicators of horizontal and vertical
    # neighbours, and of the same unit at two steps (two keys split from one), are uncorrelated;
    # a broadcast or a repeated mask gives correlation 1. The sample correlation of n
    # independent pairs has standard deviation 1/sqrt(n): 4/sqrt(n) is the 4-sigma bound.
    k1, k2 = jax.random.split(jax.random.key(1))
    a, b = _kept(k1), _kept(k2)
    pairs = {
        "next unit in a row": (a[:, :-1], a[:, 1:]),
        "next example in a batch": (a[:-1], a[1:]),
        "the next step's mask": (a, b),
    }
    for what, (u, v) in pairs.items():
        assert abs(_corr(u, v)) < 4 / np.sqrt(u.size), what
    # neither a whole row nor a whole column is dropped or kept together
    for axis in (0, 1):
        rate = a.mean(axis=axis)
        assert 0 < rate.min() and rate.max() < 1


def _halves(key, shape):
    """The documented draw, rebuilt in numpy: unit 2j / 2j + 1 of the last axis is the low / high
    16 bits of word j of jax.random.bits(key, (..., ceil(n / 2)), uint32)."""
    *lead, n = shape
    words = np.asarray(jax.random.bits(key, (*lead, (n + 1) // 2), jnp.uint32))
    return np.stack([words & 0xFFFF, words >> 16], axis=-1).reshape(*lead, -1)[..., :n]


@pytest.mark.parametrize("p", [0.2, 0.5, 0.1234])
def test_mask_is_16_bit_halves_of_random_words_below_the_threshold(p):
    # The keep probability is quantized to 16 bits: T = round((1 - p) 2^16) by hand (0.2 -> 52429,
    # 0.5 -> 32768, 0.1234 -> 57449, from 52428.8 and 57448.86), and a unit keeps iff its 16-bit
    # half-word is < T, so with uniform halves the realized keep probability is T / 2^16, within
    # 2^-17 of 1 - p. An odd last axis (1001) leaves each row's last high half unused.
    key, shape = jax.random.key(21), (1000, 1001)
    threshold = {0.2: 52429, 0.5: 32768, 0.1234: 57449}[p]
    assert abs(threshold / 2**16 - (1 - p)) <= 2**-17
    halves = _halves(key, shape)
    kept = np.asarray(cdropout_mask(key, shape, p)) != 0
    np.testing.assert_array_equal(kept, halves < threshold)
    # the sample holds the half-words at the boundary, so an off-by-one (<= T, < T - 1) would show
    assert (halves == threshold - 1).any() and (halves == threshold).any()
    # and the realized rate matches T / 2^16 within 4 sigma of the 1e6 draws
    assert abs(kept.mean() - threshold / 2**16) < _sigma_bound(1 - p, kept.size)


def test_quantized_threshold_edges():
    # p within 2^-17 of 0 or 1 rounds to T = 2^16 (keep all) or T = 0 (drop all): still within
    # 2^-17 of the requested p; the kept scale is torch's 1/(1 - p) regardless.
    key = jax.random.key(22)
    tiny, near_one = 1e-6, 1 - 1e-6
    np.testing.assert_array_equal(cdropout_mask(key, (300, 300), tiny), np.float32(1 / (1 - tiny)))
    np.testing.assert_array_equal(cdropout_mask(key, (300, 300), near_one), 0.0)
    # 0-d and empty masks draw too (a 0-d mask is the low half of one word)
    assert cdropout_mask(key, (), 0.5).shape == () and cdropout_mask(key, (3, 0), 0.5).shape == (3, 0)
    assert (np.asarray(cdropout_mask(key, (), 0.5)) != 0) == (_halves(key, (1,))[0] < 2**15)


@pytest.mark.parametrize("p", [0.1234, 0.5, 0.8])
def test_units_sharing_a_random_word_are_independent(p):
    # Units 2j and 2j + 1 of a row share one 32-bit word (its low and high halves). Independence
    # of their keep indicators: the chi-square statistic of the 2x2 table of the 5e5 pairs, with
    # 1 degree of freedom, stays below 15.14 (its 1e-4 upper quantile), and their correlation
    # below the 4-sigma bound 4/sqrt(n); a shared or complementary half gives correlation +-1.
    kept = np.asarray(cdropout_mask(jax.random.key(23), (1000, 1000), p)) != 0
    low, high = kept[:, 0::2].reshape(-1), kept[:, 1::2].reshape(-1)
    table = np.array([[np.sum(~low & ~high), np.sum(~low & high)], [np.sum(low & ~high), np.sum(low & high)]])
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    chi2 = np.sum((table - expected) ** 2 / expected)
    assert chi2 < 15.14, (chi2, table)
    assert abs(_corr(low, high)) < 4 / np.sqrt(low.size)


def test_eval_is_identity_without_key():
    x = jnp.arange(6.0).reshape(2, 3)
    assert dropout(x, None, 0.5, training=False) is x  # DROP-1: eval is identity
    np.testing.assert_array_equal(jax.grad(lambda x: dropout(x, None, 0.9, False).sum())(x), np.ones((2, 3)))
    np.testing.assert_array_equal(
        dropout_backward(jnp.ones((2, 3)), x, None, 0.5, training=False), np.ones((2, 3))
    )


def test_p0_identity_gradient_ones():
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(dropout(x, jax.random.key(0), 0.0), x)  # DROP-2
    np.testing.assert_array_equal(dropout(x, None, 0), x)  # no key needed at p = 0
    np.testing.assert_array_equal(
        jax.grad(lambda x: dropout(x, jax.random.key(0), 0.0).sum())(x), np.ones((2, 3))
    )
    np.testing.assert_array_equal(dropout_backward(jnp.ones((2, 3)), x, None, 0.0), np.ones((2, 3)))


def test_p1_zeros_with_zero_not_nan_gradient():
    x = jnp.arange(6.0).reshape(2, 3)
    key = jax.random.key(0)
    # DROP-2: p = 1 gives zeros and a zero gradient (Equinox gives NaN)
    np.testing.assert_array_equal(dropout(x, key, 1.0), np.zeros((2, 3)))
    for f in (dropout, jdropout):
        grad = jax.grad(lambda x, f=f: f(x, key, p=1.0).sum())(x)
        np.testing.assert_array_equal(grad, np.zeros((2, 3)))
    np.testing.assert_array_equal(dropout_backward(jnp.ones((2, 3)), x, key, 1.0), np.zeros((2, 3)))


def test_same_key_same_mask_different_keys_differ():
    x = jnp.ones((64, 64))
    a, b = cdropout(x, jax.random.key(3), 0.5), cdropout(x, jax.random.key(3), 0.5)
    np.testing.assert_array_equal(a, b)
    k1, k2 = jax.random.split(jax.random.key(3))
    assert not np.array_equal(cdropout(x, k1, 0.5), cdropout(x, k2, 0.5))


def test_typed_and_legacy_keys_give_the_same_mask():
    x = jnp.ones((32, 32))
    typed = cdropout(x, jax.random.key(7), 0.3)
    legacy = cdropout(x, jax.random.PRNGKey(7), 0.3)
    np.testing.assert_array_equal(typed, legacy)


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_mask_is_the_mask_dropout_applies(p):
    # dropout_mask's documented contract: its values are 0 or 1/(1 - p) (DROP-1) and it is the
    # mask dropout applies for the same key, read here off dropout's output on an all-ones input.
    key = jax.random.key(8)
    m = np.asarray(cdropout_mask(key, (40, 50), p))
    assert set(np.unique(m)) <= {0.0, np.float32(1.0 / (1.0 - p)) if p < 1 else 0.0}
    np.testing.assert_array_equal(m, cdropout(jnp.ones((40, 50)), key, p))


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_gradient_pattern_is_the_output_pattern(x64, p, make_key):
    # DROP-1: y = x·m with m independent of x, so dL/dx = g·m, and m = y/x can be read off the
    # forward's output (x is never 0 here): both the manual backward and jax.vjp of the forward
    # must give g·y/x, with the forward's mask redrawn from the same key.
    key = make_key(11)
    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, size=(5, 7)) * [[1], [-1], [1], [-1], [1]])
    g = jnp.asarray(np.random.default_rng(1).normal(size=(5, 7)))

    @fast_jit  # the forward, the manual backward and jax.vjp in one program (tests/fast_jit.py)
    def program(x, g, key):
        return (
            dropout(x, key, p),
            dropout_backward(g, x, key, p),
            jax.vjp(lambda x: dropout(x, key, p), x)[1](g)[0],
        )

    y, manual, vjp = program(x, g, key)
    want = np.asarray(g) * np.asarray(y) / np.asarray(x)
    np.testing.assert_allclose(manual, want, rtol=1e-14)
    np.testing.assert_allclose(vjp, want, rtol=1e-14)


def test_jitted_forward_and_backward_share_one_mask_and_keep_the_properties():
    # Training runs the forward and the manual backward in compiled programs: the backward,
    # compiled separately, must redraw the forward's mask (gradient pattern = output pattern),
    # and the jitted forward keeps DROP-1's values.
    x, key = jnp.arange(1.0, 101.0).reshape(10, 10), jax.random.key(5)
    y = np.asarray(jdropout(x, key, p=0.3))
    kept = y != 0
    np.testing.assert_allclose(y[kept], np.asarray(x)[kept] / 0.7, rtol=1e-6)
    assert 0 < kept.mean() < 1
    jback = jax.jit(dropout_backward, static_argnames=("p", "training"))
    g = jnp.full((10, 10), 2.0)
    np.testing.assert_allclose(jback(g, x, key, p=0.3), 2.0 * y / np.asarray(x), rtol=1e-6)


def test_dtype_follows_input():
    assert dropout(jnp.ones(4, jnp.bfloat16), jax.random.key(0), 0.5).dtype == jnp.bfloat16
    assert dropout_mask(jax.random.key(0), (3,), 0.5).dtype == jnp.float32


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_out_of_range_rejected(p):
    x = jnp.ones(3)
    with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, got {p}"):
        dropout(x, jax.random.key(0), p)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout(x, jax.random.key(0), p, training=False)  # checked in eval too, as torch does
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout_backward(x, x, jax.random.key(0), p)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        dropout_mask(jax.random.key(0), (3,), p)


def test_bad_arguments_rejected():
    x = jnp.ones(3)
    with pytest.raises(
        ValueError, match=r"dropout needs a PRNG key \(key=jax.random.key\(...\)\) when training, got None"
    ):
        dropout(x, None, 0.5)
    with pytest.raises(ValueError, match="dropout_backward needs a PRNG key"):
        dropout_backward(x, x, None, 0.5)
    with pytest.raises(TypeError, match="p must be a static Python number, got "):
        dropout(x, jax.random.key(0), jnp.float32(0.5))
    with pytest.raises(TypeError, match=r"key must be a PRNG key from jax.random.key .* got int"):
        dropout(x, 0, 0.5)
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        dropout(jnp.ones(3, jnp.int32), jax.random.key(0))
    with pytest.raises(ValueError, match=r"grad_output and input must have the same shape .* \(2,\)"):
        dropout_backward(jnp.ones(2), x, jax.random.key(0))


def test_forward_and_backward_share_one_hash_of_the_mask():
    # Design check behind fnn._fast.dropout_masks' packing: XLA fuses an elementwise mask's
    # threefry hash (23 xors: 20 rounds, the key parity, x0 ^ x1) into both the forward's and
    # the backward's fusion. The packed decisions leave one copy of the hash in the compiled
    # gradient. XLA:CPU's fusion decisions are what is checked, so only on the CPU.
    if jax.default_backend() != "cpu":
        pytest.skip("checks XLA:CPU's fusion of the mask")

    def loss(x, w, key):  # dropout between two matmuls, as in an MLP
        return jnp.sum(jnp.tanh(dropout(jax.nn.relu(x @ w), key, p=0.3) @ w))

    x, w = jnp.ones((64, 96)), jnp.ones((96, 96))
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w, jax.random.key(0)).compile().as_text()
    # An elementwise mask in this function compiles to 46 xors (the hash twice), measured.
    assert 20 <= hlo.count(" xor(") < 40


# ---------------------------------------------------------------- dropout2d (DROP2D)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout2d_zeroes_whole_channels_scaled_and_rate_is_p(p):
    # DROP2D-1: each (sample, channel) map is all zero or all x/(1 - p); 4000 channel draws
    # put the drop rate within 4 sigma of p.
    x = jax.random.normal(jax.random.key(10), (100, 40, 3, 4)) + 3.0  # never 0
    y, xn = np.asarray(cdropout2d(x, jax.random.key(1), p)), np.asarray(x)
    dropped = (y == 0).reshape(100, 40, 12)
    whole = dropped.all(-1)
    assert (dropped.any(-1) == whole).all()  # no channel partly dropped
    np.testing.assert_allclose(y[~whole], xn[~whole] / (1 - p), rtol=1e-6)
    assert abs(whole.mean() - p) < _sigma_bound(p, whole.size)


def test_dropout2d_mask_is_the_dropout_mask_of_the_channels():
    # DROP2D-1: the per-channel mask is keep_mask's definition at shape (N, C), broadcast
    # over H and W (one draw per channel, whatever the spatial size).
    key = jax.random.key(4)
    kept = np.asarray(ckeep_mask(key, (6, 5), 0.3))
    for hw in [(1, 1), (2, 3), (7, 1)]:
        y = np.asarray(cdropout2d(jnp.ones((6, 5, *hw)), key, 0.3))
        np.testing.assert_array_equal(
            y, np.where(kept, np.float32(1 / 0.7), 0)[:, :, None, None] * np.ones(hw)
        )


def test_dropout2d_same_key_same_channels_different_keys_differ():
    x = jnp.ones((16, 32, 2, 2))
    np.testing.assert_array_equal(cdropout2d(x, jax.random.key(3)), cdropout2d(x, jax.random.key(3)))
    k1, k2 = jax.random.split(jax.random.key(3))
    assert not np.array_equal(cdropout2d(x, k1), cdropout2d(x, k2))


@pytest.mark.parametrize("p", [0.0, 0.4, 1.0])
def test_dropout2d_backward_is_the_forward_mask_and_matches_vjp(x64, p):
    # DROP2D-1/2: y = x·m with m per channel and independent of x, so dL/dx = g·m = g·y/x;
    # the manual backward and jax.vjp of the forward both give it (p = 1: zeros, not NaN).
    key = jax.random.key(12)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(0.5, 2.0, (3, 4, 2, 3)) * rng.choice([-1, 1], (3, 4, 2, 3)))
    g = jnp.asarray(rng.normal(size=(3, 4, 2, 3)))

    @fast_jit  # the forward, the manual backward and jax.vjp in one program (tests/fast_jit.py)
    def program(x, g, key):
        vjp = jax.vjp(lambda x: dropout2d(x, key, p), x)[1](g)[0]
        return dropout2d(x, key, p), dropout2d_backward(g, x, key, p), vjp

    y, manual, vjp = program(x, g, key)
    want = np.asarray(g) * np.asarray(y) / np.asarray(x)
    np.testing.assert_allclose(manual, want, rtol=1e-14)
    np.testing.assert_allclose(vjp, want, rtol=1e-14)
    assert np.isfinite(np.asarray(vjp)).all()


def test_dropout2d_eval_and_p0_are_the_identity_without_key():
    # DROP2D-2
    x = jnp.arange(24.0).reshape(1, 2, 3, 4)
    assert dropout2d(x, None, 0.5, training=False) is x
    assert dropout2d(x, None, 0.0) is x
    np.testing.assert_array_equal(dropout2d_backward(jnp.ones_like(x), x, None, 0.5, False), np.ones(x.shape))
    np.testing.assert_array_equal(dropout2d(x, None, 1.0), np.zeros(x.shape))


def test_dropout2d_reads_a_3d_input_as_n_c_l_with_torchs_warning():
    # DROP2D-3: torch 2.13 drops channels of (N, C, L) for a 3-D input (and warns), it does
    # not treat it as an unbatched (C, H, W): the mask has one draw per (n, c).
    key = jax.random.key(6)
    with pytest.warns(UserWarning, match="Received a 3D input .* interpreted as shape \\(N, C, L\\)"):
        y = np.asarray(dropout2d(jnp.ones((8, 6, 5)), key, 0.5))
    np.testing.assert_array_equal(y, np.asarray(dropout2d(jnp.ones((8, 6, 5, 1)), key, 0.5))[..., 0])
    with pytest.warns(UserWarning, match="Received a 5-D input"):
        y5 = np.asarray(dropout2d(jnp.ones((8, 6, 2, 1, 2)), key, 0.5))
    np.testing.assert_array_equal(y5.reshape(8, 6, 4), np.repeat(y[:, :, :1], 4, axis=2))
    with pytest.warns(UserWarning, match="Received a 2-D input"):
        y2 = np.asarray(dropout2d(jnp.ones((8, 6)), key, 0.5))
    np.testing.assert_array_equal(y2, y[:, :, 0])


def test_dropout2d_bad_arguments_rejected():
    x = jnp.ones((2, 3, 4, 4))
    with pytest.raises(
        ValueError, match=r"feature dropout .* at least 2 dimensions \(N, C, \*\), got shape \(5,\)"
    ):
        dropout2d(jnp.ones(5), jax.random.key(0))
    with pytest.raises(ValueError, match=r"dropout probability has to be between 0 and 1, got 1\.5"):
        dropout2d(x, jax.random.key(0), 1.5, training=False)
    with pytest.raises(ValueError, match=r"dropout2d needs a PRNG key"):
        dropout2d(x, None, 0.5)
    with pytest.raises(ValueError, match=r"dropout2d_backward needs a PRNG key"):
        dropout2d_backward(x, x, None, 0.5)
    with pytest.raises(TypeError, match="input must have a floating dtype, got int32"):
        dropout2d(jnp.ones((2, 3, 4, 4), jnp.int32), jax.random.key(0))
    with pytest.raises(ValueError, match="grad_output and input must have the same shape"):
        dropout2d_backward(jnp.ones((2, 3, 4, 1)), x, jax.random.key(0))
