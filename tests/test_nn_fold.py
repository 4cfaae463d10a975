"""fnn.nn.fold_batchnorm: the folded model against the unfolded one (BN-4, BN-5, BN-6), and the
folded weights against the closed form W' = diag(γ/√(σ²+eps)) W, b' = (b − μ)·γ/√(σ²+eps) + β in numpy;
Linear -> BatchNorm1d, Conv1d -> BatchNorm1d and Conv2d -> BatchNorm2d (BN2D-5)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import nn


def randomize(model, seed, dtype=np.float32):
    """Random weights, γ, β and running statistics (var in [0.2, 3.2]) from numpy in the
    shapes and dtypes init gives (read by eval_shape, so no draw is compiled), counters 0,
    so that nothing is 0 or 1 and BatchNorm is no identity."""
    params, state = jax.eval_shape(model.init, jax.random.key(seed))
    rng = np.random.default_rng(seed)

    def draw(name, leaf):
        if jnp.issubdtype(leaf.dtype, jnp.integer):
            return jnp.zeros(leaf.shape, leaf.dtype)
        low = 0.2 if name == "running_var" else -1.5
        return jnp.asarray(rng.uniform(low, low + 3, leaf.shape).astype(dtype), leaf.dtype)

    def walk(tree):
        if isinstance(tree, tuple):
            return tuple(walk(t) for t in tree)
        return {k: draw(k, v) for k, v in tree.items()}

    return walk(params), walk(state)


def eval_apply(model, params, state, x):
    """The eval-mode output, the whole model compiled at once (faster to test than op by op)."""
    return fast_jit(lambda p, s, x: model.apply(p, s, x, train=False)[0])(params, state, x)


@functools.cache
def fold_program(model):
    """The fold and both eval-mode outputs in one program (the test's own, compiled by
    fast_jit), the fold on traced arrays as ``evaluate`` folds it; and the folded spec, which
    the fold decides from the specs alone while tracing."""
    spec = []

    @fast_jit
    def program(params, state, x):
        folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
        spec.append(folded)
        got = folded.apply(fparams, fstate, x, train=False)[0]
        return fparams, fstate, got, model.apply(params, state, x, train=False)[0]

    return program, spec


def fold_and_apply(model, params, state, x):
    """(folded spec, folded params, folded state, folded output, unfolded output)."""
    program, spec = fold_program(model)
    fparams, fstate, got, want = program(params, state, x)
    return spec[-1], fparams, fstate, got, want


def mixed_model(dtype="float32"):
    return nn.Sequential(
        nn.Linear(8, 16, dtype=dtype),
        nn.BatchNorm1d(16, dtype=dtype),  # folded
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(16, 12, bias=False, dtype=dtype),
        nn.BatchNorm1d(12, affine=False, dtype=dtype),  # folded: no bias, no γ/β
        nn.Tanh(),
        nn.Linear(12, 6, dtype=dtype),
        nn.BatchNorm1d(6, track_running_stats=False, dtype=dtype),  # kept (BN-5)
        nn.BatchNorm1d(6, dtype=dtype),  # kept: after a BatchNorm, not a Linear
        nn.Linear(6, 3, dtype=dtype),  # kept: last layer, nothing follows
    )


def test_folded_model_structure():
    model = mixed_model()
    params, state = randomize(model, 0)
    folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
    names = [type(layer).__name__ for layer in folded]
    assert names == [
        "FoldedLinear",
        "ReLU",
        "Dropout",
        "FoldedLinear",
        "Tanh",
        "Linear",
        "BatchNorm1d",
        "BatchNorm1d",
        "Linear",
    ]
    assert len(fparams) == len(fstate) == len(folded)
    assert fstate[0] == {} and fstate[3] == {}
    # the kept layers keep their arrays untouched
    for i_old, i_new in ((2, 1), (3, 2), (6, 4), (7, 5), (8, 6), (9, 7), (10, 8)):
        old, new = (params[i_old], state[i_old]), (fparams[i_new], fstate[i_new])
        assert all(a is b for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new), strict=True))
    # a spec: hashable, and equal for equal inputs (jit caches on it)
    again, _, _ = nn.fold_batchnorm(mixed_model(), params, state)
    assert hash(folded) == hash(again) and folded == again


def test_folded_weights_match_the_closed_form_in_numpy():
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4, eps=1e-3))
    params, state = randomize(model, 1)
    _, fparams, _ = nn.fold_batchnorm(model, params, state)
    w, b = (np.asarray(params[0][k], np.float64) for k in ("weight", "bias"))
    g, beta = (np.asarray(params[1][k], np.float64) for k in ("weight", "bias"))
    mu, var = (np.asarray(state[1][k], np.float64) for k in ("running_mean", "running_var"))
    s = g / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(fparams[0]["weight"], w * s[:, None], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fparams[0]["bias"], (b - mu) * s + beta, rtol=1e-6, atol=1e-7)


def test_float32_folded_equals_unfolded_to_rounding():
    model = mixed_model()
    for seed in range(2):
        params, state = randomize(model, seed)
        x = jax.random.normal(jax.random.key(100 + seed), (64, 8)) * 3
        _, _, _, got, want = fold_and_apply(model, params, state, x)
        assert got.dtype == jnp.float32
        # float32 rounding of a different summation order: outputs are O(1), eps32 = 1.2e-7
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_float64_folded_equals_unfolded_to_1e_12(x64):
    model = mixed_model("float64")
    params, state = randomize(model, 3, np.float64)
    x = jax.random.normal(jax.random.key(4), (50, 8), jnp.float64) * 3
    _, fparams, _, got, want = fold_and_apply(model, params, state, x)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(fparams) if leaf.dtype != jnp.int32)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_dtypes_are_preserved(dtype):
    model = nn.Sequential(nn.Linear(6, 5, dtype=dtype), nn.BatchNorm1d(5, dtype=dtype), nn.ReLU())
    params, state = randomize(model, 5)
    x = jax.random.normal(jax.random.key(6), (16, 6)).astype(dtype)
    folded, fparams, _, got, want = fold_and_apply(model, params, state, x)
    assert folded[0].dtype == dtype and {str(a.dtype) for a in fparams[0].values()} == {dtype}
    assert got.dtype == want.dtype
    # bfloat16 has an 8-bit mantissa (eps 2⁻⁷): a few roundings either way
    np.testing.assert_allclose(np.float32(got), np.float32(want), rtol=5e-2, atol=5e-2)


def test_nested_sequentials_are_folded_recursively():
    inner = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
    model = nn.Sequential(inner, nn.Sequential(nn.Linear(6, 3)), nn.BatchNorm1d(3), nn.Linear(3, 2))
    params, state = randomize(model, 7)
    x = jax.random.normal(jax.random.key(8), (10, 4))
    folded, _, _, got, want = fold_and_apply(model, params, state, x)
    assert [type(layer).__name__ for layer in folded[0]] == ["FoldedLinear", "ReLU"]
    # a pair split across a Sequential boundary stays as it is
    assert [type(layer).__name__ for layer in folded][1:] == ["Sequential", "BatchNorm1d", "Linear"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_nothing_to_fold_and_non_sequential_models_are_returned_as_they_are():
    linear = nn.Linear(3, 2)
    params, state = linear.init(jax.random.key(0))
    assert nn.fold_batchnorm(linear, params, state) == (linear, params, state)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2))
    params, state = model.init(jax.random.key(0))
    folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
    assert folded == model and fparams == params and fstate == state


def test_fold_runs_under_jit_with_traced_arrays():
    model = mixed_model()
    params, state = randomize(model, 9)
    x = jax.random.normal(jax.random.key(10), (32, 8))

    @jax.jit
    def folded_apply(params, state, x):
        folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
        return folded.apply(fparams, fstate, x, train=False)[0]

    want = eval_apply(model, params, state, x)
    np.testing.assert_allclose(folded_apply(params, state, x), want, rtol=1e-5, atol=1e-5)


def test_folded_linear_refuses_training():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    folded, fparams, fstate = nn.fold_batchnorm(model, *model.init(jax.random.key(0)))
    with pytest.raises(ValueError, match=r"FoldedLinear is eval-only.*train=False"):
        folded.apply(fparams, fstate, jnp.ones((4, 3)), train=True)
    with pytest.raises(ValueError, match="FoldedLinear is eval-only"):
        folded.backward(fparams, fstate, jnp.ones((4, 3)), jnp.ones((4, 2)), train=True)


def test_folded_linear_refuses_inputs_that_are_not_2d():
    # Linear on (N, L, in) then BatchNorm1d normalizes dim 1 (L), not the Linear's features
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    folded, fparams, fstate = nn.fold_batchnorm(model, *model.init(jax.random.key(0)))
    with pytest.raises(ValueError, match=r"FoldedLinear needs a 2-D input \(N, 3\).*got shape \(4, 2, 3\)"):
        folded.apply(fparams, fstate, jnp.ones((4, 2, 3)), train=False)


def test_params_of_the_wrong_structure_are_named():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    params, state = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"Sequential params must be a tuple with one entry per layer \(2\)"):
        nn.fold_batchnorm(model, params[:1], state)
    with pytest.raises(ValueError, match=r"Sequential state must be a tuple with one entry per layer \(2\)"):
        nn.fold_batchnorm(model, params, [state[0]])


# ---------------------------------------------------------------- Conv -> BatchNorm (issue 24)


def conv_model(dtype="float32"):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),  # folded, a bias created
        nn.ReLU(),
        nn.Conv2d(4, 6, 2, stride=2, groups=2, padding_mode="zeros", dtype=dtype),
        nn.BatchNorm2d(6, affine=False, eps=1e-3, dtype=dtype),  # folded: no γ/β
        nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect", dilation=1, dtype=dtype),
        nn.BatchNorm2d(6, track_running_stats=False, dtype=dtype),  # kept (BN-5)
        nn.Flatten(),
    )


def test_conv_batchnorm_pairs_fold_and_others_are_kept():
    model = conv_model()
    params, state = randomize(model, 7)
    folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
    names = [type(layer).__name__ for layer in folded]
    assert names == ["FoldedConv2d", "ReLU", "FoldedConv2d", "Conv2d", "BatchNorm2d", "Flatten"]
    assert folded[0].bias and set(fparams[0]) == {"weight", "bias"} and fstate[0] == {}
    assert (folded[2].stride, folded[2].groups) == (model[3].stride, model[3].groups)
    # a conv's channels are not a Linear's features, nor BatchNorm1d's of 4-D input: not pairs
    for pair in (
        nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm1d(3)),
        nn.Sequential(nn.Linear(2, 3), nn.BatchNorm2d(3)),
        nn.Sequential(nn.Conv1d(2, 3, 1), nn.BatchNorm2d(3)),
    ):
        kept, _, _ = nn.fold_batchnorm(pair, *pair.init(jax.random.key(0)))
        assert kept == pair


def test_folded_conv_weights_match_the_closed_form_in_numpy():
    # W'[o] = s_o·W[o], b' = (b − μ)·s + β with s = γ/√(σ² + eps); b = 0 without a bias
    model = nn.Sequential(nn.Conv2d(2, 3, 2, bias=False), nn.BatchNorm2d(3, eps=1e-3))
    params, state = randomize(model, 8)
    _, fparams, _ = nn.fold_batchnorm(model, params, state)
    w = np.asarray(params[0]["weight"], np.float64)
    g, beta = (np.asarray(params[1][k], np.float64) for k in ("weight", "bias"))
    mu, var = (np.asarray(state[1][k], np.float64) for k in ("running_mean", "running_var"))
    s = g / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(fparams[0]["weight"], w * s[:, None, None, None], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fparams[0]["bias"], -mu * s + beta, rtol=1e-6, atol=1e-7)


def test_float64_folded_conv_equals_conv_then_batchnorm_in_eval(x64):
    # BN-4 in eval: the folded convolutions give the unfolded model's output to 1e-12
    for model, shape in (
        (conv_model("float64"), (2, 3, 6, 6)),
        (
            nn.Sequential(
                nn.Conv1d(3, 4, 3, padding=2, dilation=2, dtype="float64"),
                nn.BatchNorm1d(4, dtype="float64"),
                nn.Tanh(),
            ),
            (2, 3, 7),
        ),
    ):
        params, state = randomize(model, 9, np.float64)
        x = jnp.asarray(np.random.default_rng(10).standard_normal(shape) * 3)
        folded, _, _, got, want = fold_and_apply(model, params, state, x)
        assert type(folded[0]).__name__ in ("FoldedConv1d", "FoldedConv2d")
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_folded_conv_refuses_training():
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    folded, fparams, fstate = nn.fold_batchnorm(model, *model.init(jax.random.key(0)))
    with pytest.raises(ValueError, match=r"FoldedConv2d is eval-only.*train=False"):
        folded.apply(fparams, fstate, jnp.ones((1, 2, 3, 3)), train=True)
