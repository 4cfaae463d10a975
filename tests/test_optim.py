"""fnn.optim optimizers, transforms, clipping and max-norm against docs/semantics.md's rules and torch."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn.optim as optim

ALL = lambda p: jax.tree.map(lambda _: True, p)  # noqa: E731  torch's mask: decay everything

# 2.2: loss(w) = Σ(0.5·c·w² + d·w), grad = c·w + d
C = [1.0, 2.0, 3.0]
D = [0.1, -0.2, 0.3]
W0 = [1.0, -2.0, 0.5]

GOLDEN = [
    # (rule, optimizer, w after steps 1 | 2 | 3) — torch 2.13 float64, the rules' golden values
    ("SGD-1", optim.sgd(lr=0.1), [[0.89, -1.58, 0.32], [0.791, -1.244, 0.194], [0.7019, -0.9752, 0.1058]]),
    (
        "SGD-1",
        optim.sgd(lr=0.1, momentum=0.9),
        [[0.89, -1.58, 0.32], [0.692, -0.866, 0.032], [0.4346, -0.0302, -0.2668]],
    ),
    (
        "SGD-1",
        optim.sgd(lr=0.1, momentum=0.9, dampening=0.5),
        [[0.89, -1.58, 0.32], [0.7415, -1.034, 0.095], [0.565775, -0.4292, -0.13675]],
    ),
    (
        "SGD-1",
        optim.sgd(lr=0.1, momentum=0.9, nesterov=True),
        [[0.791, -1.202, 0.158], [0.53261, -0.36704, -0.13486], [0.2600531, 0.3275392, -0.3089038]],
    ),
    (
        "SGD-1 WD-1",
        optim.sgd(lr=0.1, momentum=0.9, weight_decay=0.1, weight_decay_mask=ALL),
        [[0.88, -1.56, 0.315], [0.6652, -0.8164, 0.02085], [0.388708, 0.044284, -0.2803485]],
    ),
    (
        "ADAG-1",
        optim.adagrad(lr=0.1),
        [
            [0.9, -1.9, 0.4],
            [0.8327327206, -1.831034483, 0.33598156],
            [0.7795852579, -1.775610151, 0.2872397744],
        ],
    ),
    (
        "ADAG-1 WD-1",
        optim.adagrad(
            lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.1, weight_decay_mask=ALL
        ),
        [
            [0.913845021, -1.901266836, 0.406590671],
            [0.8573368851, -1.838973964, 0.3503292632],
            [0.8151709173, -1.792884805, 0.3101859988],
        ],
    ),
    (
        "RMS-1",
        optim.rmsprop(lr=0.01),
        [
            [0.9000000091, -1.900000002, 0.4000000056],
            [0.8325478263, -1.830852953, 0.3357918208],
            [0.779111444, -1.775138247, 0.2867691843],
        ],
    ),
    (
        "RMS-1",
        optim.rmsprop(lr=0.01, momentum=0.9),
        [
            [0.9000000091, -1.900000002, 0.4000000056],
            [0.7425478345, -1.740852955, 0.2457918258],
            [0.5512432576, -1.543735919, 0.06624990401],
        ],
    ),
    (
        "RMS-1",
        optim.rmsprop(lr=0.01, centered=True),
        [
            [0.8994962277, -1.899496221, 0.3994962241],
            [0.8313830053, -1.829660325, 0.3346833592],
            [0.7771783747, -1.773119776, 0.2850098634],
        ],
    ),
    (
        "RMS-1",
        optim.rmsprop(lr=0.01, eps=0.1),
        [
            [0.9476190476, -1.919230769, 0.4357142857],
            [0.9059652022, -1.859941327, 0.3885334602],
            [0.8701949589, -1.810855281, 0.3500383565],
        ],
    ),
    (
        "ADAM-1",
        optim.adam(lr=0.1),
        [
            [0.9000000009, -1.9, 0.4000000006],
            [0.8003611628, -1.800156845, 0.3008827137],
            [0.7013824462, -1.700586601, 0.2035416273],
        ],
    ),
    (
        "ADAM-1 WD-1",
        optim.adam(lr=0.1, weight_decay=0.1, weight_decay_mask=ALL),
        [
            [0.9000000008, -1.9, 0.4000000005],
            [0.8003653058, -1.80015728, 0.3008903059],
            [0.701398914, -1.700588257, 0.2035742057],
        ],
    ),
    (
        "ADAM-1",
        optim.adam(lr=0.1, eps=0.1),
        [
            [0.9083333333, -1.902325581, 0.4052631579],
            [0.8172833576, -1.804853381, 0.311697042],
            [0.7271011774, -1.707694789, 0.2200831056],
        ],
    ),
    (
        "ADAMW-1 WD-1",
        optim.adamw(lr=0.1, weight_decay_mask=ALL),
        [
            [0.8990000009, -1.898, 0.3995000006],
            [0.798467137, -1.79626268, 0.2999902353],
            [0.6987040424, -1.694906697, 0.2023701313],
        ],
    ),
    (
        "ADAMW-1 WD-1",
        optim.adamw(lr=0.1, weight_decay=0.5, weight_decay_mask=ALL),
        [
            [0.8500000009, -1.8, 0.3750000006],
            [0.7081470944, -1.610385111, 0.2575214959],
            [0.5745680718, -1.430921259, 0.1484544746],
        ],
    ),
]


def run_quadratic(opt, steps=3, jit=False):
    c, d = jnp.asarray(C), jnp.asarray(D)
    w = jnp.asarray(W0)
    state = opt.init(w)
    update = jax.jit(opt.update) if jit else opt.update
    out = []
    for _ in range(steps):
        updates, state = update(c * w + d, state, w)
        w = optim.apply_updates(w, updates)
        out.append(np.asarray(w))
    return np.stack(out)


@pytest.mark.parametrize("rule,opt,expected", GOLDEN, ids=[f"{g[0]}-{i}" for i, g in enumerate(GOLDEN)])
def test_golden_trajectories(x64, rule, opt, expected):
    # The golden values of the rule named in `rule` (all three steps).
    np.testing.assert_allclose(run_quadratic(opt), expected, rtol=1e-9, atol=1e-10)


def test_golden_trajectory_under_jit(x64):
    # ADAM-1 row of 2.2, now through a jitted update.
    np.testing.assert_allclose(
        run_quadratic(optim.adam(lr=0.1), jit=True)[-1], [0.7013824462, -1.700586601, 0.2035416273], rtol=1e-9
    )


def test_amsgrad_shrinking_gradients(x64):
    # ADAM-2: v_max ← max(v_max, v) on the raw v; denominator √v_max/√(1−β2ᵗ) + eps.
    lr, b1, b2, eps = 0.1, 0.9, 0.5, 1e-8  # fast-forgetting v, so v < v_max soon
    grads = [np.array([1.0, -2.0]), np.array([0.1, -0.2]), np.array([0.01, 0.5]), np.array([0.001, -0.01])]
    theta = np.array([0.5, 0.5])
    m = v = vmax = np.zeros(2)
    expected = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = np.maximum(vmax, v)
        theta = theta - (lr / (1 - b1**t)) * m / (np.sqrt(vmax) / np.sqrt(1 - b2**t) + eps)
        expected.append(theta)

    def run(opt):
        p, out = jnp.array([0.5, 0.5]), []
        s = opt.init(p)
        for g in grads:
            u, s = opt.update(jnp.asarray(g), s, p)
            p = optim.apply_updates(p, u)
            out.append(np.asarray(p))
        return np.stack(out)

    np.testing.assert_allclose(run(optim.adam(lr=lr, betas=(b1, b2), amsgrad=True)), expected, rtol=1e-12)
    # With shrinking gradients v falls below v_max, so plain Adam takes different steps.
    assert np.abs(run(optim.adam(lr=lr, betas=(b1, b2)))[-1] - expected[-1]).max() > 1e-3
    np.testing.assert_allclose(
        run(optim.adamw(lr=lr, betas=(b1, b2), weight_decay=0, amsgrad=True)), expected, rtol=1e-12
    )


MAXIMIZABLE = [
    lambda **k: optim.sgd(lr=0.1, momentum=0.9, weight_decay=0.1, **k),
    lambda **k: optim.sgd(lr=0.1, momentum=0.9, nesterov=True, **k),
    lambda **k: optim.adagrad(lr=0.1, lr_decay=0.1, weight_decay=0.1, **k),
    lambda **k: optim.rmsprop(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1, **k),
    lambda **k: optim.adam(lr=0.1, weight_decay=0.1, amsgrad=True, **k),
    lambda **k: optim.adamw(lr=0.1, weight_decay=0.1, **k),
]


@pytest.mark.parametrize("make", MAXIMIZABLE)
def test_maximize_negates_gradient_before_decay(x64, make):
    # 1.6: maximize → g ← −g, applied first, so weight decay still shrinks θ (as torch).
    c, d = jnp.asarray(C), jnp.asarray(D)
    up, down = make(maximize=True, weight_decay_mask=ALL), make(weight_decay_mask=ALL)
    wu = wd = jnp.asarray(W0)
    su, sd = up.init(wu), down.init(wd)
    for _ in range(3):
        uu, su = up.update(c * wu + d, su, wu)
        ud, sd = down.update(-(c * wd + d), sd, wd)
        wu, wd = optim.apply_updates(wu, uu), optim.apply_updates(wd, ud)
    np.testing.assert_allclose(wu, wd, rtol=1e-13)
    assert up.hyperparams["maximize"] is True


def test_maximize_sgd_ascends(x64):
    # SGD-1 with maximize: θ ← θ + lr·g.
    opt = optim.sgd(lr=0.5, maximize=True)
    u, _ = opt.update(jnp.array([2.0, -4.0]), opt.init(jnp.zeros(2)), jnp.zeros(2))
    np.testing.assert_allclose(u, [1.0, -2.0])


def test_default_mask_skips_1d_leaves_and_all_true_is_torch():
    # WD-1: fnn decays only ndim >= 2 by default; the all-True mask decays biases too (torch).
    params = {"weight": jnp.ones((2, 3)), "bias": jnp.ones(2), "scale": jnp.ones(())}
    zeros = jax.tree.map(jnp.zeros_like, params)
    default = optim.sgd(lr=1.0, weight_decay=0.5)
    u, _ = default.update(zeros, default.init(params), params)
    np.testing.assert_allclose(u["weight"], -0.5 * np.ones((2, 3)))
    np.testing.assert_allclose(u["bias"], np.zeros(2))
    np.testing.assert_allclose(u["scale"], 0.0)
    torch_like = optim.sgd(lr=1.0, weight_decay=0.5, weight_decay_mask=ALL)
    u, _ = torch_like.update(zeros, torch_like.init(params), params)
    for leaf in jax.tree.leaves(u):
        np.testing.assert_allclose(leaf, -0.5 * np.ones_like(leaf))
    # an explicit pytree of bools works too
    explicit = optim.sgd(
        lr=1.0, weight_decay=0.5, weight_decay_mask={"weight": False, "bias": True, "scale": False}
    )
    u, _ = explicit.update(zeros, explicit.init(params), params)
    np.testing.assert_allclose(u["weight"], np.zeros((2, 3)))
    np.testing.assert_allclose(u["bias"], -0.5 * np.ones(2))


def test_adamw_default_mask_decouples_only_matrices():
    # ADAMW-1 with WD-1: with zero grads the Adam step is 0, leaving θ·(1 − lr·λ) on matrices.
    params = {"weight": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
    opt = optim.adamw(lr=0.1, weight_decay=0.5)
    u, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    new = optim.apply_updates(params, u)
    np.testing.assert_allclose(new["weight"], 2.0 * (1 - 0.1 * 0.5) * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(new["bias"], [2.0, 2.0])


def test_chain_threads_updates_and_state():
    grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
    params = jax.tree.map(jnp.zeros_like, grads)
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(lr=0.1, momentum=0.9))
    state = opt.init(params)
    assert isinstance(state, tuple) and len(state) == 2
    u, state = opt.update(grads, state, params)
    clipped, total = optim.clip_grad_norm(grads, 1.0)
    np.testing.assert_allclose(total, 5.0)
    for k in grads:  # first momentum step is the undampened copy (SGD-1): u = −lr·clipped
        np.testing.assert_allclose(u[k], -0.1 * clipped[k], rtol=1e-6)
    # the inner optimizer's own state advanced
    assert int(jax.tree.leaves(state[1])[0]) == 1


def test_hyperparams_exposed_and_read_only():
    opt = optim.adam(lr=0.01, betas=(0.8, 0.99), amsgrad=True)
    assert opt.hyperparams["name"] == "adam"
    assert (opt.hyperparams["lr"], opt.hyperparams["betas"], opt.hyperparams["eps"]) == (
        0.01,
        (0.8, 0.99),
        1e-8,
    )
    assert optim.adamw().hyperparams["weight_decay"] == 1e-2  # ADAMW-1 default
    assert optim.sgd().hyperparams["lr"] == 1e-3  # SGD-1 default
    assert optim.adagrad().hyperparams["eps"] == 1e-10  # ADAG-1 default
    assert optim.rmsprop().hyperparams["alpha"] == 0.99  # RMS-1 default
    with pytest.raises(TypeError):
        opt.hyperparams["lr"] = 1.0
    hash(opt)  # usable as a static jit argument


RETRACE = [
    optim.sgd(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1),
    optim.sgd(lr=0.1, momentum=0.9, nesterov=True),
    optim.sgd(lr=optim.step_lr(0.1, step_size=1, gamma=0.5)),
    optim.adagrad(lr_decay=0.1, weight_decay=0.1),
    optim.rmsprop(momentum=0.9, centered=True),
    optim.adam(amsgrad=True, weight_decay=0.1),
    optim.adamw(lr=optim.cosine_annealing_lr(0.1, T_max=3)),
    optim.chain(optim.clip_by_global_norm(1.0), optim.adam()),
    optim.chain(
        optim.sgd(lr=optim.exponential_lr(0.1, 0.9, min_lr=0.01), momentum=optim.linear_lr(0.7)),
        optim.max_norm(1.0),
    ),
]


@pytest.mark.parametrize("opt", RETRACE)
def test_jitted_step_traces_once(opt):
    # State structures and dtypes are fixed at init, so steps 2 and 3 reuse the trace
    # (SGD-1's first-step copy is a where on the int32 step, not a state change).
    traces = 0
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}

    @jax.jit
    def step(params, state):
        nonlocal traces
        traces += 1
        grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    state0 = opt.init(params)
    state = state0
    for _ in range(3):
        params, state = step(params, state)
    assert traces == 1
    assert jax.tree.structure(state) == jax.tree.structure(state0)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(state0), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    steps = [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
    assert steps and all(int(s) == 3 for s in steps)


def test_clip_grad_norm_golden():
    # CLIP-1: [3, 4] with max_norm 1 → [0.59999988, 0.79999984], total 5 (torch float32).
    clipped, total = optim.clip_grad_norm(jnp.array([3.0, 4.0]), 1.0)
    np.testing.assert_allclose(clipped, [0.59999988, 0.79999984], rtol=2e-7)
    np.testing.assert_allclose(total, 5.0)
    assert clipped.dtype == jnp.float32


def test_clip_grad_norm_global_over_leaves_and_no_op_below_max(x64):
    # CLIP-1: the norm is over the concatenation of all leaves; coef is capped at 1.
    grads = {"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}
    clipped, total = optim.clip_grad_norm(grads, 10.0)
    np.testing.assert_allclose(total, 5.0)
    np.testing.assert_array_equal(clipped["a"], grads["a"])
    clipped, total = optim.clip_grad_norm(grads, 2.5)
    np.testing.assert_allclose(clipped["b"], [[4.0 * 2.5 / (5.0 + 1e-6)]], rtol=1e-14)
    _, inf_total = optim.clip_grad_norm(grads, 1.0, norm_type=float("inf"))
    np.testing.assert_allclose(inf_total, 4.0)
    state = ()
    u, _ = optim.clip_by_global_norm(2.5).update(grads, state)
    np.testing.assert_allclose(u["a"], clipped["a"])


def test_apply_updates_keeps_param_dtype():
    params = {"w": jnp.ones(2, jnp.bfloat16)}
    new = optim.apply_updates(params, {"w": jnp.full(2, 0.5, jnp.float32)})
    assert new["w"].dtype == jnp.bfloat16


BAD = [
    (lambda: optim.sgd(lr=-0.1), "lr must be a finite number >= 0, got -0.1"),
    (lambda: optim.sgd(momentum=-0.5), "momentum must be >= 0, got -0.5"),
    (lambda: optim.sgd(weight_decay=-1), "weight_decay must be >= 0, got -1"),
    (lambda: optim.sgd(nesterov=True), "nesterov=True requires momentum > 0.*momentum=0"),
    (lambda: optim.sgd(momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
    (lambda: optim.adagrad(lr=-1), "lr must be a finite number >= 0, got -1"),
    (lambda: optim.adagrad(lr_decay=-0.1), "lr_decay must be >= 0, got -0.1"),
    (lambda: optim.adagrad(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
    (lambda: optim.adagrad(initial_accumulator_value=-1), "initial_accumulator_value must be >= 0, got -1"),
    (lambda: optim.adagrad(eps=0), "eps must be > 0, got 0"),
    (lambda: optim.rmsprop(alpha=1.0), r"alpha must be in \[0.0, 1.0\), got 1.0"),
    (lambda: optim.rmsprop(alpha=-0.1), r"alpha must be in \[0.0, 1.0\), got -0.1"),
    (lambda: optim.rmsprop(eps=-1e-8), "eps must be > 0, got -1e-08"),
    (lambda: optim.rmsprop(momentum=-0.9), "momentum must be >= 0, got -0.9"),
    (lambda: optim.rmsprop(weight_decay=-1), "weight_decay must be >= 0, got -1"),
    (lambda: optim.rmsprop(lr=-1), "lr must be a finite number >= 0, got -1"),
    (lambda: optim.adam(betas=(1.0, 0.999)), r"betas\[0\] must be in \[0.0, 1.0\), got 1.0"),
    (lambda: optim.adam(betas=(0.9, -0.1)), r"betas\[1\] must be in \[0.0, 1.0\), got -0.1"),
    (lambda: optim.adam(betas=(0.9,)), r"betas must be a pair"),
    (lambda: optim.adam(eps=0.0), "eps must be > 0, got 0.0"),
    (lambda: optim.adam(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
    (lambda: optim.adam(lr=-1e-3), "lr must be a finite number >= 0, got -0.001"),
    (lambda: optim.adamw(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
    (lambda: optim.adamw(betas=(0.9, 1.5)), r"betas\[1\] must be in \[0.0, 1.0\), got 1.5"),
    (lambda: optim.clip_grad_norm(jnp.ones(2), -0.5), "max_norm must be >= 0, got -0.5"),
    (lambda: optim.clip_by_global_norm(-1.0), "max_norm must be >= 0, got -1.0"),
    (lambda: optim.add_decayed_weights(-0.1), "weight_decay must be >= 0, got -0.1"),
    # NaN and inf pass torch's lr >= 0 check and poison the first step; fnn rejects them
    (lambda: optim.sgd(lr=float("nan")), "lr must be a finite number >= 0, got nan"),
    (lambda: optim.adamw(lr=float("inf")), "lr must be a finite number >= 0, got inf"),
    (lambda: optim.rmsprop(lr=np.float32("nan")), "lr must be a finite number >= 0, got nan"),
    (lambda: optim.scale_by_learning_rate(-2.0), "lr must be a finite number >= 0, got -2.0"),
    (lambda: optim.max_norm(-1.0), r"max_norm must be a finite number >= 0, got -1.0"),
    (lambda: optim.max_norm(float("inf")), r"max_norm must be a finite number >= 0, got inf"),
    (lambda: optim.max_norm(1.0, p=0), r"p must be a number > 0 \(or inf\), got 0"),
    (lambda: optim.renorm(jnp.ones(3), 2, 0, 1.0), r"renorm needs an input with at least 2 dimensions"),
    (lambda: optim.renorm(jnp.ones((2, 3)), 2, 2, 1.0), r"dim must be in \[-2, 2\) .* got 2"),
    (lambda: optim.renorm(jnp.ones((2, 3)), -1.0, 0, 1.0), r"p must be a number > 0 \(or inf\), got -1.0"),
    (lambda: optim.renorm(jnp.ones((2, 3)), 2, 0, -0.5), r"maxnorm must be a finite number >= 0, got -0.5"),
]


@pytest.mark.parametrize("make,match", BAD, ids=[m for _, m in BAD])
def test_bad_arguments_raise_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "opt",
    [optim.sgd(momentum=0.9), optim.sgd(), optim.adagrad(), optim.rmsprop(), optim.adam(), optim.adamw()],
)
def test_update_with_mismatched_grad_tree_raises(opt):
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    state = opt.init(params)
    with pytest.raises(ValueError, match="grads must have the same tree structure as params"):
        opt.update({"w": jnp.ones((2, 2))}, state, params)


@pytest.mark.parametrize("opt", [optim.sgd(momentum=0.9), optim.adagrad(), optim.rmsprop(), optim.adam()])
def test_mismatched_grad_tree_caught_against_state_without_params(opt):
    state = opt.init({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match="grads must have the same tree structure as the optimizer state"):
        opt.update({"w": jnp.ones((2, 2))}, state)


def test_weight_decay_needs_params_and_a_matching_mask():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    opt = optim.adamw()
    with pytest.raises(ValueError, match="add_decayed_weights needs params"):
        opt.update(params, opt.init(params))
    opt = optim.sgd(weight_decay=0.1, weight_decay_mask={"w": True})
    with pytest.raises(ValueError, match="weight_decay_mask must have the tree structure of params"):
        opt.update(params, opt.init(params), params)


# --- the learning rate in the state (LearningRateState, with_lr_scale, last_lr) ---


def test_learning_rate_state_at_init_and_after_updates():
    opt = optim.sgd(lr=0.1, momentum=0.9)
    state = opt.init(jnp.zeros(3))
    lrs = optim.learning_rate_state(state)
    assert isinstance(lrs, optim.LearningRateState) and lrs is state[-1]
    for leaf, dtype, value in [
        (lrs.step, jnp.int32, 0),
        (lrs.lr_scale, jnp.float32, 1.0),
        (lrs.last_lr, jnp.float32, 0.0),
    ]:
        assert leaf.shape == () and leaf.dtype == dtype and leaf == value
    _, state = opt.update(jnp.ones(3), state, jnp.zeros(3))
    assert int(state[-1].step) == 1 and optim.last_lr(state) == np.float32(0.1)


def test_lr_scale_half_halves_the_update_exactly(x64):
    # u = (−lr·g)·lr_scale: 0.5 is a power of two, so the closed form is exact in float64.
    g = jnp.asarray([0.3, -1.7, 2.5e-3])
    opt = optim.sgd(lr=0.1)
    state = optim.with_lr_scale(opt.init(g), 0.5)
    u, state = opt.update(g, state)
    np.testing.assert_array_equal(u, (-0.1 * np.asarray(g)) * 0.5)
    assert u.dtype == jnp.float64
    assert optim.last_lr(state) == np.float32(0.1) * np.float32(0.5)
    # and for a stateful optimizer: the whole update is halved, nothing else changes
    adam = optim.adam(lr=0.1)
    full, s_full = adam.update(g, adam.init(g), g)
    half, s_half = adam.update(g, optim.with_lr_scale(adam.init(g), 0.5), g)
    np.testing.assert_array_equal(half, 0.5 * np.asarray(full))
    np.testing.assert_array_equal(s_half[0].exp_avg, s_full[0].exp_avg)


def test_lr_scale_keeps_bf16_updates_in_bf16():
    g = jnp.asarray([1.0, -2.0], jnp.bfloat16)
    opt = optim.sgd(lr=0.25)
    u, _ = opt.update(g, optim.with_lr_scale(opt.init(g), 0.5))
    assert u.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u, np.float32), [-0.125, 0.25])


def test_last_lr_follows_a_schedule_step_by_step(x64):
    # last_lr = float32(lr(step))·lr_scale, step = updates done before this one.
    opt = optim.adam(lr=optim.cosine_annealing_lr(0.1, T_max=5, eta_min=0.01))
    p = jnp.ones(2)
    state = opt.init(p)
    update = jax.jit(opt.update)
    got, want = [], []
    for step in range(8):
        scale = 1.0 if step < 4 else 0.25  # a plateau halfway through
        state = optim.with_lr_scale(state, scale)
        _, state = update(jnp.ones(2), state, p)
        got.append(optim.last_lr(state))
        want.append(np.float32(0.01 + (0.1 - 0.01) * (1 + np.cos(np.pi * step / 5)) / 2) * np.float32(scale))
    assert all(x.dtype == jnp.float32 for x in got)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float32), rtol=1e-7, atol=0)


def test_last_lr_is_adagrads_decayed_rate():
    # ADAG-1: clr = lr/(1 + step·lr_decay) is the rate the update used.
    opt = optim.adagrad(lr=0.1, lr_decay=0.5)
    state = opt.init(jnp.ones(1))
    for step in range(3):
        _, state = opt.update(jnp.ones(1), state)
        np.testing.assert_allclose(optim.last_lr(state), 0.1 / (1 + step * 0.5), rtol=1e-7)


def test_changing_lr_scale_between_calls_does_not_retrace():
    traces = 0
    opt = optim.sgd(lr=0.1, momentum=0.9)
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}

    @jax.jit
    def step(params, state):
        nonlocal traces
        traces += 1
        grads = jax.tree.map(jnp.ones_like, params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, updates

    state = opt.init(params)
    last = []
    for scale in [1.0, 0.5, 0.1, 0.0, 1]:
        state = optim.with_lr_scale(state, scale)
        params, state, updates = step(params, state)
        last.append(float(optim.last_lr(state)))
    assert traces == 1
    np.testing.assert_allclose(last, [0.1, 0.05, 0.01, 0.0, 0.1], rtol=1e-7)
    assert float(jnp.abs(updates["w"]).max()) > 0


def test_lr_helpers_find_the_link_inside_a_chain_and_leave_the_input_alone():
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(lr=0.01))
    state = opt.init({"w": jnp.ones((2, 2))})
    scaled = optim.with_lr_scale(state, 0.3)
    assert jax.tree.structure(scaled) == jax.tree.structure(state)
    assert optim.learning_rate_state(state).lr_scale == 1.0  # not modified
    lrs = optim.learning_rate_state(scaled)
    assert lrs.lr_scale.dtype == jnp.float32 and lrs.lr_scale == np.float32(0.3)
    assert lrs is scaled[1][-1]
    # a traced scale works too (e.g. inside a jitted epoch)
    assert jax.jit(optim.with_lr_scale)(state, 0.5)[1][-1].lr_scale == 0.5


@pytest.mark.parametrize(
    "state,count",
    [
        ((), 0),
        ({"a": 1.0}, 0),
        (optim.chain(optim.sgd(0.1), optim.adam()).init(jnp.ones(2)), 2),
    ],
)
def test_learning_rate_state_needs_exactly_one(state, count):
    for fn in (optim.learning_rate_state, optim.last_lr, lambda s: optim.with_lr_scale(s, 0.5)):
        with pytest.raises(ValueError, match=f"exactly one LearningRateState .*found {count}"):
            fn(state)


@pytest.mark.parametrize(
    "scale,match",
    [
        (-0.5, "scale must be a finite number >= 0, got -0.5"),
        (float("nan"), "scale must be a finite number >= 0, got nan"),
        (float("inf"), "scale must be a finite number >= 0, got inf"),
        (jnp.ones(2), r"scale must be a scalar, got shape \(2,\)"),
    ],
)
def test_with_lr_scale_rejects_bad_scales(scale, match):
    state = optim.sgd(0.1).init(jnp.ones(2))
    with pytest.raises(ValueError, match=match):
        optim.with_lr_scale(state, scale)


# --- equal hyperparameters ⇒ equal, hashable optimizers ---

MASK = ALL  # one function object: optimizers built with it compare equal

EQUAL_CASES = [
    # (make, a different-hyperparameter variant)
    (lambda: optim.sgd(lr=0.1), lambda: optim.sgd(lr=0.2)),
    (lambda: optim.sgd(lr=0.1, momentum=0.9, nesterov=True), lambda: optim.sgd(lr=0.1, momentum=0.9)),
    (lambda: optim.sgd(lr=0.1, maximize=True), lambda: optim.sgd(lr=0.1)),
    (
        lambda: optim.sgd(lr=0.1, weight_decay=0.1, weight_decay_mask=MASK),
        lambda: optim.sgd(lr=0.1, weight_decay=0.1),
    ),
    (lambda: optim.adagrad(lr=0.1, lr_decay=0.1), lambda: optim.adagrad(lr=0.1, lr_decay=0.2)),
    (lambda: optim.rmsprop(centered=True), lambda: optim.rmsprop()),
    (lambda: optim.rmsprop(momentum=0.9), lambda: optim.rmsprop(momentum=0.8)),
    (lambda: optim.adam(betas=(0.8, 0.99)), lambda: optim.adam(betas=(0.8, 0.999))),
    (lambda: optim.adam(amsgrad=True), lambda: optim.adam()),
    (lambda: optim.adamw(), lambda: optim.adam()),  # same numbers, other rule
    (lambda: optim.adamw(weight_decay=0.1), lambda: optim.adamw(weight_decay=0.2)),
    (
        lambda: optim.adamw(lr=optim.cosine_annealing_lr(0.1, T_max=100)),
        lambda: optim.adamw(lr=optim.cosine_annealing_lr(0.1, T_max=101)),
    ),
    (lambda: optim.sgd(lr=optim.step_lr(0.1, 3)), lambda: optim.sgd(lr=optim.multistep_lr(0.1, [3]))),
    (lambda: optim.clip_by_global_norm(1.0), lambda: optim.clip_by_global_norm(1.0, norm_type=1.0)),
    (
        lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.adam()),
        lambda: optim.chain(optim.clip_by_global_norm(2.0), optim.adam()),
    ),
    (
        lambda: optim.sgd(momentum=optim.linear_lr(0.7, 5 / 7, total_iters=100)),
        lambda: optim.sgd(momentum=optim.linear_lr(0.7, 5 / 7, total_iters=101)),
    ),
    (
        lambda: optim.chain(optim.sgd(lr=0.1), optim.max_norm(1.9365)),
        lambda: optim.chain(optim.sgd(lr=0.1), optim.max_norm(1.9365, dim=1)),
    ),
]


@pytest.mark.parametrize("make,other", EQUAL_CASES)
def test_equal_hyperparameters_give_equal_hashable_optimizers(make, other):
    a, b, c = make(), make(), other()
    assert a is not b and a == b and hash(a) == hash(b)
    assert a != c and b != c
    assert {a: 1}[b] == 1 and len({a, b, c}) == 2


def test_sgd_is_a_memo_key():
    assert {optim.sgd(lr=0.1): 1}[optim.sgd(lr=0.1)] == 1
    assert optim.sgd(lr=0.1) == optim.sgd(0.1, 0.0, 0.0, 0.0, False)  # defaults spelled out
    assert optim.sgd(lr=0.1) != "sgd" and optim.sgd(lr=0.1) != optim.adam(lr=0.1)
    # equal values of different types are different specs: a numpy scalar is not weakly
    # typed in JAX, so it may compile differently (lr itself is always stored as a float)
    assert optim.sgd(momentum=0.9) != optim.sgd(momentum=np.float64(0.9))
    assert optim.sgd(lr=1) == optim.sgd(lr=np.float64(1.0))


def test_equal_optimizers_share_one_compiled_step():
    traces = 0

    def step(opt, params):
        nonlocal traces
        traces += 1
        u, _ = opt.update(params, opt.init(params), params)
        return optim.apply_updates(params, u)

    jitted = jax.jit(step, static_argnums=0)
    p = jnp.ones(3)
    jitted(optim.adam(lr=0.1, weight_decay=0.1), p)
    jitted(optim.adam(lr=0.1, weight_decay=0.1), p)
    assert traces == 1
    jitted(optim.adam(lr=0.2, weight_decay=0.1), p)
    assert traces == 2


def test_mask_functions_compare_by_identity_and_dict_masks_by_object():
    # A mask function is hashed by identity: two equal-looking lambdas are two masks.
    assert optim.sgd(weight_decay=0.1, weight_decay_mask=lambda p: p) != optim.sgd(
        weight_decay=0.1, weight_decay_mask=lambda p: p
    )
    # A dict mask is unhashable: the optimizer falls back to identity, without error.
    mask = {"w": True, "b": False}
    a = optim.sgd(weight_decay=0.1, weight_decay_mask=mask)
    b = optim.sgd(weight_decay=0.1, weight_decay_mask=mask)
    assert a.spec is None and a == a and a != b and {a: 1}[a] == 1
    # a tuple mask is hashable, so it compares by value
    assert optim.sgd(weight_decay=0.1, weight_decay_mask=(True, False)) == optim.sgd(
        weight_decay=0.1, weight_decay_mask=(True, False)
    )


def test_transforms_without_spec_compare_by_their_functions():
    t = optim.GradientTransformation(lambda p: (), lambda g, s, p=None: (g, s))
    assert t == t and t != optim.GradientTransformation(t.init, lambda g, s, p=None: (g, s))
    assert t == optim.GradientTransformation(t.init, t.update) and hash(t) == hash(t)
    assert optim.chain(t, optim.sgd()) == optim.chain(t, optim.sgd())


def test_one_lr_rule_for_every_caller():
    # fnn._checks.check_lr: torch's lr >= 0, finite; a schedule passes through (where allowed).
    from fnn._checks import check_lr

    sched = optim.step_lr(0.1, 2)
    assert check_lr(0) == 0.0 and check_lr(np.float32(0.5)) == 0.5 and check_lr(jnp.asarray(2.0)) == 2.0
    assert check_lr(sched) is sched and optim.sgd(lr=sched).hyperparams["lr"] is sched
    with pytest.raises(TypeError, match="lr must be a number here, not a schedule"):
        check_lr(sched, allow_schedule=False)
    for bad in [True, "0.1", [0.1], jnp.ones(2)]:
        with pytest.raises(TypeError, match="lr must be a finite number >= 0, got"):
            optim.sgd(lr=bad)


# ---------------------------------------------------------------- max-norm and momentum schedules
# tests/torch_reference/max_norm.json: torch.renorm, and torch SGD with lr/momentum set in
# param_groups before each step and W renormalised after it (see max_norm.py there).
MAX_NORM = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "max_norm.json").read_text())


@pytest.mark.parametrize("case", MAX_NORM["renorm"], ids=[c["name"] for c in MAX_NORM["renorm"]])
def test_renorm_equals_torch(x64, case):
    got = optim.renorm(jnp.asarray(case["input"]), case["p"], case["dim"], case["maxnorm"])
    np.testing.assert_allclose(got, case["output"], rtol=1e-13, atol=1e-15)


def test_renorm_fixture_covers_rows_under_at_and_over_the_limit():
    rows = MAX_NORM["renorm"][0]
    norms = np.linalg.norm(np.asarray(rows["input"]), axis=1)
    assert (norms > rows["maxnorm"]).any() and (norms < rows["maxnorm"]).any() and (norms == 0).any()
    assert np.isclose(norms, rows["maxnorm"], rtol=1e-15).any()
    assert {c["p"] for c in MAX_NORM["renorm"]} >= {1.0, 2.0, 3.0, float("inf")}


def _quadratic_grads(params, c, d):
    """grad of Σ(0.5·c·θ² + d·θ) with θ = [W | b] (b as the last column)."""
    g = c * jnp.concatenate([params["W"], params["b"][:, None]], axis=1) + d
    return {"W": g[:, :3], "b": g[:, 3]}


@pytest.mark.parametrize("case", MAX_NORM["sgd"], ids=[c["name"] for c in MAX_NORM["sgd"]])
def test_sgd_with_lr_and_momentum_schedules_and_max_norm_equals_torch(x64, case):
    lr = optim.exponential_lr(0.1, gamma=0.8, min_lr=0.03)
    # 0.5 + 0.04·min(t, 5)
    momentum = optim.linear_lr(0.7, start_factor=5 / 7, end_factor=1.0, total_iters=5)
    steps = range(len(case["lrs"]))
    np.testing.assert_allclose([float(lr(t)) for t in steps], case["lrs"], rtol=1e-14)
    np.testing.assert_allclose([float(momentum(t)) for t in steps], case["mus"], rtol=1e-14)
    opt = optim.sgd(lr=lr, momentum=momentum, weight_decay_mask=ALL, **case["kwargs"])
    if case["maxnorm"] is not None:
        opt = optim.chain(opt, optim.max_norm(case["maxnorm"]))
    c, d = jnp.asarray(case["c"]), jnp.asarray(case["d"])
    params = {"W": jnp.asarray(case["W0"]), "b": jnp.asarray(case["b0"])}
    state = opt.init(params)
    for t in steps:
        updates, state = opt.update(_quadratic_grads(params, c, d), state, params)
        params = optim.apply_updates(params, updates)
        np.testing.assert_allclose(params["W"], case["W"][t], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(params["b"], case["b"][t], rtol=1e-12, atol=1e-14)
    if case["maxnorm"] is not None:
        assert np.all(np.linalg.norm(params["W"], axis=1) <= case["maxnorm"])
        assert np.any(np.linalg.norm(np.asarray(case["W"]), axis=2) >= case["maxnorm"] - 1e-6)  # it bound


def test_live_renorm_and_max_norm_sgd_against_torch(x64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for _ in range(20):
        x = rng.normal(size=(int(rng.integers(1, 6)), int(rng.integers(1, 6)), 2))
        p, dim = float(rng.choice([1.0, 2.0, 2.5, np.inf])), int(rng.integers(-3, 3))
        maxnorm = float(rng.uniform(0, 2))
        want = torch.renorm(torch.tensor(x), p, dim, maxnorm).numpy()
        got = optim.renorm(jnp.asarray(x), p, dim, maxnorm)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    W = torch.tensor(rng.normal(size=(5, 4)), requires_grad=True)
    opt_t = torch.optim.SGD([W], lr=0.5, momentum=0.9)
    opt = optim.chain(optim.sgd(lr=0.5, momentum=0.9), optim.max_norm(1.0))
    params = {"W": jnp.asarray(W.detach().numpy())}
    state = opt.init(params)
    for _ in range(5):
        opt_t.zero_grad()
        (W**3).sum().backward()
        opt_t.step()
        with torch.no_grad():
            W.copy_(torch.renorm(W, 2, 0, 1.0))
        updates, state = opt.update({"W": 3 * params["W"] ** 2}, state, params)
        params = optim.apply_updates(params, updates)
    np.testing.assert_allclose(params["W"], W.detach().numpy(), rtol=1e-12)


def test_max_norm_constrains_weights_only_and_only_over_the_limit(x64):
    # per output unit (row of an (out, in) weight), after the update; biases untouched by default
    params = {"weight": jnp.array([[3.0, 4.0], [0.3, 0.4]]), "bias": jnp.array([30.0, 40.0])}
    zero = jax.tree.map(jnp.zeros_like, params)
    u, state = optim.max_norm(1.0).update(zero, (), params)
    new = optim.apply_updates(params, u)
    np.testing.assert_allclose(new["weight"], [[3 / (5 + 1e-7), 4 / (5 + 1e-7)], [0.3, 0.4]], rtol=1e-15)
    np.testing.assert_array_equal(u["bias"], 0.0)
    assert state == ()
    # the constraint acts on params + updates: an update that pushes a row over the limit is cut back
    before = {"weight": jnp.array([[0.6, 0.8], [0.3, 0.4]]), "bias": jnp.zeros(2)}
    step = {"weight": jnp.array([[0.0, 0.0], [0.6, 0.8]]), "bias": jnp.zeros(2)}
    u, _ = optim.max_norm(1.0).update(step, (), before)
    scale = 1 / (1.5 + 1e-7)  # row 1 lands on [0.9, 1.2], norm 1.5
    np.testing.assert_allclose(u["weight"], [[0.0, 0.0], [0.9 * scale - 0.3, 1.2 * scale - 0.4]], atol=1e-15)
    # dim=1 constrains columns; a mask picks leaves (array leaves through jnp.where)
    u, _ = optim.max_norm(1.0, dim=1, mask={"weight": jnp.asarray(True), "bias": False}).update(
        zero, (), params
    )
    cols = np.linalg.norm(np.asarray(optim.apply_updates(params, u)["weight"]), axis=0)
    np.testing.assert_allclose(cols, [1.0, 1.0], rtol=1e-6)


def test_max_norm_needs_params_and_a_2d_leaf():
    t = optim.max_norm(1.0)
    with pytest.raises(ValueError, match="max_norm needs params"):
        t.update({"w": jnp.ones((2, 2))}, t.init(None))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        optim.max_norm(1.0, mask=ALL).update({"b": jnp.ones(2)}, (), {"b": jnp.ones(2)})
    with pytest.raises(TypeError, match=r"dim must be an int, got 0\.5"):
        optim.max_norm(1.0, dim=0.5)


def test_learning_rate_before_momentum_is_pylearn2s_rule(x64):
    # pylearn2 / Hinton: v ← μ_t·v − lr_t·g;  θ ← θ + v  (a plain numpy loop, independent of fnn)
    lr = optim.exponential_lr(0.1, gamma=1 / 1.25, min_lr=0.02)
    mu = optim.linear_lr(0.7, start_factor=5 / 7, total_iters=4)
    opt = optim.chain(optim.scale_by_learning_rate(lr), optim.scale_by_sgd_momentum(mu))
    c, d = np.array([1.0, 2.0, 3.0]), np.array([0.1, -0.2, 0.3])
    theta, v = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    params = jnp.asarray(theta)
    state = opt.init(params)
    for t in range(8):
        v = (0.5 + 0.05 * min(t, 4)) * v - max(0.1 * 0.8**t, 0.02) * (c * theta + d)
        theta = theta + v
        updates, state = opt.update(jnp.asarray(c) * params + jnp.asarray(d), state, params)
        params = optim.apply_updates(params, updates)
        np.testing.assert_allclose(params, theta, rtol=1e-13)
    assert float(optim.last_lr(state)) == pytest.approx(max(0.1 * 0.8**7, 0.02))
    # torch's rule (SGD-1) with the same schedules differs once lr changes
    torch_rule = optim.sgd(lr=lr, momentum=mu)
    p, s = jnp.asarray([1.0, -2.0, 0.5]), torch_rule.init(params)
    for _ in range(8):
        u, s = torch_rule.update(jnp.asarray(c) * p + jnp.asarray(d), s, p)
        p = optim.apply_updates(p, u)
    assert not np.allclose(p, theta, rtol=1e-6)


def test_momentum_schedule_needs_no_numeric_checks_but_numbers_still_get_them():
    sched = optim.linear_lr(0.9)
    assert optim.sgd(momentum=sched, nesterov=True).hyperparams["momentum"] is sched
    with pytest.raises(ValueError, match=r"momentum must be >= 0, got -0\.1"):
        optim.sgd(momentum=-0.1)
