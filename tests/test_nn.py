"""fnn.nn: every layer's manual backward equals jax.vjp (float64), state handling,
PyTorch-style state_dict, immutability, jit and retrace behaviour, bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

KEY = jax.random.key(0)

LAYERS = [
    (nn.Linear(5, 3), (4, 5)),
    (nn.Linear(5, 3, bias=False), (2, 7, 5)),
    (nn.Flatten(), (4, 2, 3)),
    (nn.ReLU(), (4, 6)),
    (nn.LeakyReLU(0.2), (4, 6)),
    (nn.PReLU(), (4, 6)),
    (nn.PReLU(3), (4, 3, 5)),
    (nn.ELU(0.5), (4, 6)),
    (nn.Sigmoid(), (4, 6)),
    (nn.Tanh(), (4, 6)),
    (nn.Softplus(beta=2.0, threshold=1.0), (4, 6)),
    (nn.Softmax(dim=1), (4, 6)),
    (nn.LogSoftmax(dim=-1), (4, 6)),
    (nn.Abs(), (4, 6)),
    (nn.Maxout(3), (4, 6)),
    (nn.Dropout(0.3), (8, 6)),
    (nn.BatchNorm1d(6), (8, 6)),
    (nn.BatchNorm1d(3, affine=False), (5, 3, 4)),
    (nn.BatchNorm1d(6, track_running_stats=False), (8, 6)),
    (nn.BatchNorm1d(6, momentum=None), (8, 6)),
    (nn.BatchNorm2d(3), (4, 3, 2, 3)),
    (nn.BatchNorm2d(2, affine=False, momentum=None), (3, 2, 2, 2)),
    (nn.Dropout2d(0.4), (3, 4, 2, 2)),
    (nn.LayerNorm(6), (4, 6)),
    (nn.LayerNorm((3, 4), bias=False), (2, 3, 4)),
    (
        nn.Sequential(
            nn.Flatten(),
            nn.Linear(12, 8),
            nn.BatchNorm1d(8),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(8, 4),
            nn.Tanh(),
        ),
        (6, 3, 4),
    ),
]


def _to64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _normal(seed, shape):
    """Test data from numpy's generator: a jax.random draw compiles one sampler per shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _perturbed_init(layer):
    """float64 params moved away from their init (e.g. BN's γ=1, β=0), so every term of
    the backward is exercised, and the state."""
    params, state = _to64(layer.init(KEY))
    return jax.tree.map(lambda p: p + 0.3 * _normal(7, p.shape), params), state


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layer,shape", LAYERS, ids=[repr(l)[:40] for l, _ in LAYERS])
def test_manual_backward_matches_vjp(x64, layer, shape, train):
    params, state = _perturbed_init(layer)
    x = _normal(1, shape)
    key = jax.random.key(2)

    # Both sides in one compiled program: eagerly, every op of a Sequential's forward and
    # backward compiled on its own (about 150 programs, 20 s on 2 cores) for the same numbers;
    # fast_jit compiles it without XLA:CPU's slow passes (tests/fast_jit.py).
    @fast_jit
    def both(params, x):
        y, vjp = jax.vjp(lambda p, x: layer.apply(p, state, x, key=key, train=train)[0], params, x)
        v = _normal(3, y.shape)
        return vjp(v), layer.backward(params, state, x, v, key=key, train=train)

    (want_p, want_x), (got_p, got_x) = both(params, x)
    assert jax.tree.structure(got_p) == jax.tree.structure(want_p)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-10, atol=1e-12)
    for g, w in zip(jax.tree.leaves(got_p), jax.tree.leaves(want_p), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def _dot(a, b):
    """<a, b> over two pytrees, in numpy float64."""
    return sum(
        float(np.vdot(np.asarray(u), np.asarray(v)))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("layer,shape", LAYERS, ids=[repr(l)[:40] for l, _ in LAYERS])
def test_apply_vjp_is_apply_and_its_pullback_matches_finite_differences(x64, layer, shape, train):
    # apply_vjp is the manual path's one primitive: its forward must be apply's (same y, same
    # new state: BN-2 running stats, Dropout's mask for the same key). Its pullback is checked
    # against central differences of apply, which share no code with it or with jax.vjp:
    # <v, J·u> = (<v, f(θ + εu)> − <v, f(θ − εu)>) / 2ε for random directions u, one over the
    # parameters and one over the input (a wrong gradient entry changes <pullback(v), u>).
    params, state = _perturbed_init(layer)
    x = _normal(1, shape)
    key = jax.random.key(2)
    # Each side compiled on its own, as training and evaluation compile them (eager, every op
    # of a Sequential would compile separately).
    apply = jax.jit(lambda p, x: layer.apply(p, state, x, key=key, train=train))
    want_y, want_state = apply(params, x)
    v = _normal(3, want_y.shape)

    @jax.jit
    def manual(p, x):
        y, new_state, pullback = layer.apply_vjp(p, state, x, key=key, train=train)
        return y, new_state, pullback(v)

    y, new_state, (got_p, got_x) = manual(params, x)
    np.testing.assert_array_equal(y, want_y)
    assert jax.tree.structure(new_state) == jax.tree.structure(want_state)
    for a, b in zip(jax.tree.leaves(new_state), jax.tree.leaves(want_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(got_p) == jax.tree.structure(params)
    f = lambda p, x: _dot(v, apply(p, x)[0])  # noqa: E731
    eps = 1e-6
    u_x = _normal(4, x.shape)
    fd_x = (f(params, x + eps * u_x) - f(params, x - eps * u_x)) / (2 * eps)
    np.testing.assert_allclose(_dot(got_x, u_x), fd_x, rtol=1e-6, atol=1e-8)
    if jax.tree.leaves(params):
        u_p = jax.tree.map(lambda p: _normal(5, p.shape), params)
        shifted = lambda s: jax.tree.map(lambda p, u: p + s * u, params, u_p)  # noqa: E731
        fd_p = (f(shifted(eps), x) - f(shifted(-eps), x)) / (2 * eps)
        np.testing.assert_allclose(_dot(got_p, u_p), fd_p, rtol=1e-6, atol=1e-8)


def test_no_layer_overrides_backward():
    # backward is derived from apply_vjp once, in Layer; a layer that overrode it would have
    # two manual paths that could disagree.
    layer_types = {type(layer) for layer, _ in LAYERS} | {
        cls for cls in vars(nn).values() if isinstance(cls, type) and issubclass(cls, nn.Layer)
    }
    for cls in layer_types:
        assert cls.backward is nn.Layer.backward, cls.__name__
        if cls not in (nn.Layer, nn.Elementwise):
            assert cls.apply_vjp is not nn.Layer.apply_vjp, cls.__name__


def test_dropout_backward_redraws_the_forward_mask_from_the_key():
    # DROP-1: dL/dx = g·mask/(1−p) with the forward's mask; the mask is read off the forward
    # itself (y/x on an all-ones input), independently of the pullback code.
    layer = nn.Dropout(0.4)
    x = jnp.ones((16, 16))
    key = jax.random.key(9)
    y, _ = layer.apply({}, {}, x, key=key, train=True)
    g = jax.random.normal(KEY, x.shape)
    _, grad_x = layer.backward({}, {}, x, g, key=key, train=True)
    np.testing.assert_allclose(grad_x, g * y, rtol=1e-6)
    assert 0 < float(jnp.mean(y == 0)) < 1
    with pytest.raises(ValueError, match="grad_y and x must have the same shape"):
        layer.backward({}, {}, x, g[:2], key=key, train=True)


def test_linear_default_init_is_torch_LIN1():
    # LIN-1: W ~ U(-1/sqrt(in), 1/sqrt(in)), b the same; LIN-2: bias=False has no bias.
    params, state = nn.Linear(400, 300).init(KEY)
    bound = 1 / np.sqrt(400)
    assert params["weight"].shape == (300, 400) and params["bias"].shape == (300,)
    assert float(jnp.max(jnp.abs(params["weight"]))) <= bound
    assert float(jnp.max(jnp.abs(params["weight"]))) > 0.99 * bound
    np.testing.assert_allclose(float(jnp.std(params["weight"])), bound / np.sqrt(3), rtol=0.02)
    assert float(jnp.max(jnp.abs(params["bias"]))) <= bound
    assert set(nn.Linear(4, 2, bias=False).init(KEY)[0]) == {"weight"} and state == {}


def test_batchnorm_layer_running_stats_BN2_BN4():
    # BN-2's golden running stats after x1, x2, then eval (BN-4) leaves them unchanged.
    bn = nn.BatchNorm1d(3)
    params, state = bn.init(KEY)
    x1 = jnp.array([[1, 2, 0], [3, -1, 0], [2, 0, 1], [6, 3, -1]], jnp.float32)
    x2 = jnp.array([[0, 1, 2], [2, 1, -2]], jnp.float32)
    _, state = bn.apply(params, state, x1, train=True)
    assert int(state["num_batches_tracked"]) == 1
    _, state = bn.apply(params, state, x2, train=True)
    np.testing.assert_allclose(state["running_mean"], [0.37, 0.19, 0], atol=1e-6)
    np.testing.assert_allclose(state["running_var"], [1.43, 1.11, 1.67], rtol=1e-6)
    assert int(state["num_batches_tracked"]) == 2 and state["num_batches_tracked"].dtype == jnp.int32
    y, state_eval = bn.apply(params, state, x2, train=False)
    np.testing.assert_allclose(
        y, [[-0.3094084619, 0.7688145134, 1.547641831], [1.36306971, 0.7688145134, -1.547641831]], rtol=1e-5
    )
    assert state_eval is state


def test_batchnorm_momentum_none_cumulative_BN3():
    bn = nn.BatchNorm1d(3, momentum=None)
    params, state = bn.init(KEY)
    for x in ([[1, 2, 0], [3, -1, 0], [2, 0, 1], [6, 3, -1]], [[0, 1, 2], [2, 1, -2]]):
        _, state = bn.apply(params, state, jnp.array(x, jnp.float32), train=True)
    np.testing.assert_allclose(state["running_mean"], [2, 1, 0], atol=1e-6)
    np.testing.assert_allclose(state["running_var"], [3.333333333, 1.666666667, 4.333333333], rtol=1e-6)


def test_batchnorm_training_one_value_per_channel_BN7():
    bn = nn.BatchNorm1d(3)
    params, state = bn.init(KEY)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.apply(params, state, jnp.ones((1, 3)), train=True)
    y, _ = bn.apply(params, state, jnp.ones((1, 3)), train=False)  # eval with N = 1 is fine
    # BN-4 at init: running stats (0, 1), γ = 1, β = 0, so y = x / sqrt(1 + eps)
    np.testing.assert_allclose(y, np.full((1, 3), 1 / np.sqrt(1 + 1e-5)), rtol=1e-6)


def test_batchnorm2d_running_stats_eval_and_counter_BN2D3():
    # BN2D-3: BatchNorm1d's rules with per-channel statistics over N, H, W (n = N·H·W): the
    # numpy closed form of two training steps, the counter, then eval with the buffers.
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((4, 3, 2, 5)).astype(np.float32) * s + s for s in (1, 3)]
    bn = nn.BatchNorm2d(3)
    params, state = bn.init(KEY)
    assert {k: v.shape for k, v in state.items()} == {
        "running_mean": (3,),
        "running_var": (3,),
        "num_batches_tracked": (),
    }
    rm, rv = np.zeros(3), np.ones(3)
    for x in xs:
        y, state = bn.apply(params, state, jnp.asarray(x), train=True)
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        np.testing.assert_allclose(
            y, (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), atol=1e-5
        )
        rm, rv = 0.9 * rm + 0.1 * mean, 0.9 * rv + 0.1 * var * 40 / 39  # unbiased, n = 40
    np.testing.assert_allclose(state["running_mean"], rm, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["running_var"], rv, rtol=1e-5)
    assert int(state["num_batches_tracked"]) == 2 and state["num_batches_tracked"].dtype == jnp.int32
    y, state_eval = bn.apply(params, state, jnp.asarray(xs[0]), train=False)
    want = (xs[0] - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    assert state_eval is state
    untracked = nn.BatchNorm2d(3, track_running_stats=False)  # BN-5: batch stats in eval too
    assert untracked.init(KEY)[1] == {}
    y, _ = untracked.apply(params, {}, jnp.asarray(xs[1]), train=False)
    x = xs[1]
    want = (x - x.mean((0, 2, 3))[:, None, None]) / np.sqrt(x.var((0, 2, 3))[:, None, None] + 1e-5)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_batchnorm2d_takes_only_4d_input_and_batchnorm1d_no_4d_BN2D4():
    params, state = nn.BatchNorm2d(3).init(KEY)
    with pytest.raises(
        ValueError, match=r"BatchNorm2d: expected 4D input \(got 3D input of shape \(3, 4, 5\)\)"
    ):
        nn.BatchNorm2d(3).apply(params, state, jnp.ones((3, 4, 5)), train=True)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D or 3D input \(got 4D input"):
        nn.BatchNorm1d(3).apply(params, state, jnp.ones((2, 3, 4, 5)), train=True)
    with pytest.raises(ValueError, match="BatchNorm2d: expected 4D input"):
        nn.BatchNorm2d(3).apply_vjp(params, state, jnp.ones((2, 3, 4, 5, 1)), train=False)
    assert nn.BatchNorm2d(3) != nn.BatchNorm1d(3)  # equal fields, different layers


def test_dropout2d_layer_drops_channels_and_needs_key_in_training_only():
    # DROP2D-1: the layer applies F.dropout2d's channel mask for its key; eval is the identity
    layer = nn.Dropout2d(0.5)
    x = jnp.asarray(np.random.default_rng(1).uniform(1, 2, (4, 6, 3, 3)), jnp.float32)
    key = jax.random.key(3)
    y, _ = layer.apply({}, {}, x, key=key, train=True)
    np.testing.assert_array_equal(y, F.dropout2d(x, key, 0.5))
    per_channel = np.asarray(y == 0).reshape(4, 6, 9)
    assert (per_channel.all(-1) == per_channel.any(-1)).all() and 0 < per_channel.mean() < 1
    with pytest.raises(ValueError, match="Dropout2d needs a PRNG key"):
        layer.apply({}, {}, x, train=True)
    assert layer.apply({}, {}, x, train=False)[0] is x
    with pytest.raises(ValueError, match="between 0"):
        nn.Dropout2d(-0.5)
    assert nn.Dropout2d(0.5) != nn.Dropout(0.5)


def test_dropout_layer_needs_key_in_training_only():
    layer = nn.Dropout(0.5)
    x = jnp.ones((4, 4))
    with pytest.raises(ValueError, match="key"):
        layer.apply({}, {}, x, train=True)
    with pytest.raises(ValueError, match="key"):
        nn.Sequential(nn.Linear(4, 4), layer).apply(
            *nn.Sequential(nn.Linear(4, 4), layer).init(KEY), x, train=True
        )
    np.testing.assert_array_equal(layer.apply({}, {}, x, train=False)[0], x)
    with pytest.raises(ValueError, match="between 0"):
        nn.Dropout(1.5)


def test_sequential_dropout_same_key_same_mask():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    params, state = model.init(KEY)
    x = jnp.ones((4, 8))
    a = model.apply(params, state, x, key=jax.random.key(5), train=True)[0]
    b = model.apply(params, state, x, key=jax.random.key(5), train=True)[0]
    c = model.apply(params, state, x, key=jax.random.key(6), train=True)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_layers_are_immutable_and_hashable():
    layer = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.LayerNorm([3]))
    assert hash(layer) == hash(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.LayerNorm((3,))))
    assert layer == nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.LayerNorm((3,)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.layers[0].in_features = 5


def test_state_dict_names_and_round_trip():
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2, bias=False)
    )
    params, state = model.init(KEY)
    flat = model.state_dict(params, state)
    assert list(flat) == [
        "1.weight",
        "1.bias",
        "2.weight",
        "2.bias",
        "2.running_mean",
        "2.running_var",
        "2.num_batches_tracked",
        "4.weight",
    ]
    assert all(isinstance(v, np.ndarray) for v in flat.values())
    # torch stores num_batches_tracked as int64: loading casts to fnn's int32 counter.
    flat["2.num_batches_tracked"] = np.array(7, np.int64)
    p2, s2 = model.load_state_dict(flat)
    assert s2[2]["num_batches_tracked"].dtype == jnp.int32 and int(s2[2]["num_batches_tracked"]) == 7
    x = jax.random.normal(KEY, (5, 2, 2))
    np.testing.assert_array_equal(
        model.apply(params, state, x, train=False)[0], model.apply(p2, s2, x, train=False)[0]
    )


def test_load_state_dict_errors_name_the_entry():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    flat = model.state_dict(*model.init(KEY))
    missing = dict(flat)
    del missing["1.running_var"]
    with pytest.raises(KeyError, match=r"1\.running_var"):
        model.load_state_dict(missing)
    bad = dict(flat, **{"0.weight": np.zeros((3, 5), np.float32)})
    with pytest.raises(ValueError, match=r"0.weight.*\(3, 4\).*\(3, 5\)"):
        model.load_state_dict(bad)
    with pytest.raises(KeyError, match=r"2\.weight"):
        model.load_state_dict(dict(flat, **{"2.weight": np.zeros(3)}))


def test_load_torch_state_dict_gives_identical_outputs():
    torch = pytest.importorskip("torch")
    tm = torch.nn.Sequential(
        torch.nn.Linear(6, 5),
        torch.nn.BatchNorm1d(5),
        torch.nn.PReLU(),
        torch.nn.Linear(5, 3),
        torch.nn.LayerNorm(3),
    )
    tm.train()
    tm(torch.randn(16, 6))  # move the running stats away from their init
    tm.eval()
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.PReLU(), nn.Linear(5, 3), nn.LayerNorm(3))
    params, state = model.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(
        model.apply(params, state, jnp.asarray(x), train=False)[0],
        tm(torch.from_numpy(x)).detach().numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_sequential_rejects_bad_layers_and_trees():
    with pytest.raises(TypeError, match="layer 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    params, state = model.init(KEY)
    with pytest.raises(ValueError, match="one entry per layer"):
        model.apply(params[:1], state, jnp.ones((1, 2)), train=False)


def test_num_params():
    model = nn.Sequential(nn.Linear(784, 512), nn.BatchNorm1d(512), nn.Linear(512, 10))
    assert nn.num_params(model.init(KEY)[0]) == 784 * 512 + 512 + 2 * 512 + 512 * 10 + 10


def test_jitted_step_updates_running_stats_BN2_and_does_not_retrace():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    params, state = model.init(KEY)
    traces = []

    def step(params, state, x, key):
        traces.append(1)
        return model.apply(params, state, x, key=key, train=True)

    jitted = jax.jit(step)
    x = jax.random.normal(KEY, (10, 6))
    y1, s1 = jitted(params, state, x, jax.random.key(1))
    # BN-2 under jit, against numpy: from running stats (0, 1), momentum 0.1 and the unbiased
    # batch variance of the Linear's output.
    h = np.asarray(x, np.float64) @ np.asarray(params[0]["weight"], np.float64).T + np.asarray(
        params[0]["bias"]
    )
    np.testing.assert_allclose(s1[1]["running_mean"], 0.1 * h.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(s1[1]["running_var"], 0.9 + 0.1 * h.var(0, ddof=1), rtol=1e-5)
    assert y1.shape == (10, 3) and int(s1[1]["num_batches_tracked"]) == 1
    _, s2 = jitted(params, s1, x, jax.random.key(2))
    assert len(traces) == 1  # the second call, with new state and key, reused the trace
    assert int(s2[1]["num_batches_tracked"]) == 2


def test_linear_custom_initializers():
    import functools

    from fnn import init

    layer = nn.Linear(
        300,
        200,
        weight_init=functools.partial(init.kaiming_normal, nonlinearity="relu"),
        bias_init=functools.partial(init.constant, val=-1.0),
    )
    params, _ = layer.init(KEY)
    np.testing.assert_allclose(float(jnp.std(params["weight"])), np.sqrt(2 / 300), rtol=0.03)
    np.testing.assert_array_equal(params["bias"], -np.ones(200))
    assert hash(layer) == hash(layer)
    with pytest.raises(ValueError, match=r"weight_init must return shape \(2, 3\)"):
        nn.Linear(3, 2, weight_init=lambda key, shape: jnp.zeros((3, 2))).init(KEY)


def test_sequential_intermediates_are_each_layer_output():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    params, state = model.init(KEY)
    x = jax.random.normal(KEY, (5, 4))
    h1, h2, y = model.intermediates(params, state, x, train=False)
    np.testing.assert_allclose(h2, jnp.maximum(h1, 0))
    np.testing.assert_array_equal(y, model.apply(params, state, x, train=False)[0])


def test_linear_then_maxout_is_pylearn2s_maxout_layer(x64):
    # pylearn2.models.maxout.Maxout(num_units, num_pieces, irange, init_bias=0) is fnn's
    # Linear(in, units·pieces, weight_init=U(−irange, irange), bias_init=zeros) + Maxout(pieces):
    # pylearn2 stores W as (in, units·pieces) and takes max_i z[:, i : last_start + i + 1 : pieces],
    # i.e. unit j's pieces are the contiguous columns j·pieces .. j·pieces + pieces − 1.
    import functools

    from fnn import init

    units, pieces, irange = 4, 3, 0.005
    layer = nn.Sequential(
        nn.Linear(
            6,
            units * pieces,
            weight_init=functools.partial(init.uniform, a=-irange, b=irange),
            bias_init=init.zeros,
        ),
        nn.Maxout(pieces),
    )
    params, _ = layer.init(KEY)
    w, b = np.asarray(params[0]["weight"]), np.asarray(params[0]["bias"])
    assert np.abs(w).max() <= irange and np.abs(w).max() > 0.8 * irange and np.all(b == 0)
    params = (
        {"weight": jnp.asarray(np.random.default_rng(0).normal(size=w.shape)), "bias": jnp.zeros(12)},
        {},
    )
    x = np.random.default_rng(1).normal(size=(5, 6))
    z = x @ np.asarray(params[0]["weight"]).T  # pylearn2's x · W with W = weightᵀ
    last_start = units * pieces - pieces
    expected = functools.reduce(np.maximum, [z[:, i : last_start + i + 1 : pieces] for i in range(pieces)])
    y, _ = layer.apply(params, ({}, {}), jnp.asarray(x), train=False)
    np.testing.assert_allclose(y, expected, rtol=1e-15)


# ------------------------------------------------------------------ sizes: ints >= 0, as torch


@pytest.mark.parametrize("args,name,value", [((-1, 3), "in_features", -1), ((3, -2), "out_features", -2)])
def test_linear_rejects_a_negative_size(args, name, value):
    # torch.nn.Linear(-1, 3) raises (a tensor of negative dimension); so does the spec, at once
    with pytest.raises(ValueError, match=rf"{name} must be an int >= 0, got {value}"):
        nn.Linear(*args)
    with pytest.raises(TypeError, match=r"in_features must be an int, got 2\.5"):
        nn.Linear(2.5, 3)
    # size 0 is allowed, as in torch: an empty weight, and the bias bound 0 (LIN-1)
    params, _ = nn.Linear(0, 3).init(KEY)
    assert params["weight"].shape == (3, 0) and params["bias"].tolist() == [0.0, 0.0, 0.0]


def test_batchnorm_rejects_a_negative_num_features():
    with pytest.raises(ValueError, match="num_features must be an int >= 0, got -4"):
        nn.BatchNorm1d(-4)
    assert nn.BatchNorm1d(0).init(KEY)[0]["weight"].shape == (0,)


@pytest.mark.parametrize("shape", [-2, (3, -1), [-1]])
def test_layernorm_rejects_a_negative_normalized_shape(shape):
    with pytest.raises(ValueError, match=r"normalized_shape must hold sizes >= 0, got .*-"):
        nn.LayerNorm(shape)
    with pytest.raises(ValueError, match="normalized_shape must be an int or a non-empty sequence"):
        nn.LayerNorm(())


@pytest.mark.parametrize("n", [-1, 0])
def test_prelu_rejects_a_num_parameters_below_one(n):
    # one slope shared, or one per channel: at least one
    with pytest.raises(ValueError, match=rf"num_parameters must be an int >= 1, got {n}"):
        nn.PReLU(n)


@pytest.mark.parametrize("pieces", [-2, 0])
def test_maxout_rejects_pieces_below_one(pieces):
    # the same check and message as F.maxout, at construction
    with pytest.raises(ValueError, match=rf"pieces must be >= 1, got {pieces}"):
        nn.Maxout(pieces)
    with pytest.raises(TypeError, match=r"pieces must be a Python int, got 2\.0"):
        nn.Maxout(2.0)
