"""fnn.diagnostics.probes and the probe hook of fnn.train: statistics against numpy on
the same step (params and gradients by an independent jax.grad, activations from
model.intermediates), closed forms on a model with known weights, the every/step
bookkeeping, the probe-off program against a reference epoch without the hook, no
retracing, divergence, resume, mesh, and the errors. The tests that fit or run an epoch are
marked slow (tests/README.md, "Tiers")."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py
from poison import PoisonAt  # tests/poison.py

from fnn import checkpoint, nn, optim
from fnn import functional as F
from fnn.diagnostics import Probe
from fnn.train import (
    LambdaCallback,
    TrainingDiverged,
    fit,
    init_train_state,
    make_train_epoch,
    make_train_step,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_data(n=64, d=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x, rng.integers(0, classes, size=n).astype(np.int32)


def every_kind_model():
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(16, 3),
        nn.Tanh(),
        nn.ELU(),
        nn.Sigmoid(),
        nn.LogSoftmax(),
    )


def epoch_draws(key, n, batch_size):
    """fit's documented draws for one epoch: the shuffle and one key per step."""
    k_perm, k_steps = jax.random.split(key)
    steps = n // batch_size
    order = np.asarray(jax.random.permutation(k_perm, n))[: steps * batch_size].reshape(steps, batch_size)
    return order, jax.random.split(k_steps, steps)


# ---------------------------------------------------------------- against numpy


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_every_statistic_equals_numpy_on_the_same_step(grad):
    model, opt = every_kind_model(), optim.sgd(lr=0.5, momentum=0.9)
    x, y = toy_data(48)
    params, state = model.init(jax.random.key(3))
    key = jax.random.key(7)
    epoch = make_train_epoch(model, nn.NLLLoss(), opt, 16, grad, probe=Probe(every=1))
    *_, m = epoch(
        jax.tree.map(jnp.array, params), jax.tree.map(jnp.array, state), opt.init(params), key, x, y
    )
    summary = Probe().summarize(model, jax.tree.map(np.asarray, m["probe"]["points"]))
    layer = {entry["index"]: entry for entry in summary["layers"]}
    assert [(i, e["kind"]) for i, e in layer.items()] == [
        (0, "linear"), (1, "batchnorm"), (2, "relu"), (4, "linear"), (5, "tanh"), (6, "elu"),
        (7, "sigmoid"), (8, "activation"),
    ]  # fmt: skip
    assert m["probe"]["step"].tolist() == [1, 2, 3] and m["probe"]["ok"].all()

    # Independently: the same three steps, one by one; gradients by jax.grad of a loss written
    # here; activations by model.intermediates with each step's key in train mode.
    order, keys = epoch_draws(key, 48, 16)
    step = make_train_step(model, nn.NLLLoss(), opt, grad)
    p, s, o = params, state, opt.init(params)
    tol = dict(rtol=2e-5, atol=1e-6)

    @fast_jit  # the test's own reference program (tests/fast_jit.py)
    def reference(p, s, xb, yb, k):
        def objective(p):
            out, _ = model.apply(p, s, xb, key=k, train=True)
            return -jnp.mean(out[jnp.arange(len(yb)), yb])

        return jax.value_and_grad(objective)(p), model.intermediates(p, s, xb, key=k, train=True)

    for t in range(3):
        xb, yb, k = x[order[t]], y[order[t]], keys[t]
        (loss, g), outs = reference(p, s, xb, yb, k)
        inputs = [xb, *(np.asarray(a) for a in outs)]
        p_new, s_new, o, _ = step(p, s, o, k, xb, yb)
        np.testing.assert_allclose(summary["loss"][t], loss, **tol)
        flat = np.concatenate([np.ravel(a) for a in jax.tree.leaves(g)]).astype(np.float64)
        np.testing.assert_allclose(summary["grad_norm"][t], np.sqrt(np.sum(flat**2)), **tol)
        for i in (0, 4):
            w, w_new, gw = (np.asarray(a["weight"], np.float64) for a in (p[i], p_new[i], g[i]))
            np.testing.assert_allclose(layer[i]["weight_norm"][t], np.linalg.norm(w), **tol)
            np.testing.assert_allclose(layer[i]["grad_norm"][t], np.linalg.norm(gw), **tol)
            ratio = np.linalg.norm(w_new - w) / np.linalg.norm(w)
            np.testing.assert_allclose(layer[i]["update_ratio"][t], ratio, rtol=1e-4)
        var = np.asarray(s_new[1]["running_var"])
        np.testing.assert_allclose(
            (layer[1]["running_var_min"][t], layer[1]["running_var_max"][t]), (var.min(), var.max()), **tol
        )
        for i in (2, 5, 6, 7, 8):
            out = inputs[i + 1]
            np.testing.assert_allclose(layer[i]["mean"][t], out.mean(), **tol)
            np.testing.assert_allclose(layer[i]["std"][t], out.std(), rtol=1e-4, atol=1e-6)
        # Fractions are stored as float32 (1/3 is 0.33333334): compared within float32 rounding.
        expected = {
            (2, "dead_fraction"): np.all(inputs[3] == 0, axis=0).mean(),
            (5, "saturated_fraction"): (np.abs(inputs[6]) > 0.98).mean(),
            (7, "saturated_fraction"): ((inputs[8] < 0.01) | (inputs[8] > 0.99)).mean(),
            (6, "dead_fraction"): np.all(inputs[6] <= 0, axis=0).mean(),  # on the pre-activation
        }
        for (i, key), value in expected.items():
            assert layer[i][key][t] == pytest.approx(float(value), rel=1e-7)
        p, s = p_new, s_new


# ---------------------------------------------------------------- closed forms


def known_model_and_params():
    """Weights chosen so every statistic has a closed form on inputs in [0, 1)."""
    model = nn.Sequential(
        nn.Linear(3, 4),  # W = 0.5, b = -10: pre-activation < -8.5 for every sample
        nn.ReLU(),  # all units dead: dead_fraction 1, mean 0, std 0
        nn.Linear(4, 4),  # W = 0, b = 100
        nn.Tanh(),  # tanh(100) = 1: saturated_fraction 1, mean 1
        nn.Linear(4, 4),  # W = 0, b = -10
        nn.ELU(),  # pre-activation -10 everywhere: dead_fraction 1 (on the input), mean elu(-10)
        nn.Linear(4, 2),  # W = 0, b = 50
        nn.Sigmoid(),  # sigmoid(50) = 1: saturated_fraction 1
    )
    params = (
        {"weight": jnp.full((4, 3), 0.5), "bias": jnp.full((4,), -10.0)},
        {},
        {"weight": jnp.zeros((4, 4)), "bias": jnp.full((4,), 100.0)},
        {},
        {"weight": jnp.zeros((4, 4)), "bias": jnp.full((4,), -10.0)},
        {},
        {"weight": jnp.zeros((2, 4)), "bias": jnp.full((2,), 50.0)},
        {},
    )
    return model, params, ({},) * 8


@pytest.mark.slow
def test_closed_forms_on_known_weights():
    model, params, state = known_model_and_params()
    x = np.random.default_rng(0).uniform(size=(8, 3)).astype(np.float32)
    y = np.zeros((8, 2), np.float32)
    result = fit(
        model, nn.MSELoss(), optim.sgd(lr=0.1), (x, y), epochs=1, batch_size=4, params=params,
        state=state, key=jax.random.key(0), probe=Probe(every=1), progress=False,
    )  # fmt: skip
    m = result.history[0]["probe"]
    layer = {entry["index"]: entry for entry in m["layers"]}
    assert m["every"] == 1 and m["step"] == [1, 2]
    assert [(i, e["name"], e["kind"]) for i, e in layer.items()] == [
        (0, "Linear(3, 4)", "linear"), (1, "ReLU()", "relu"), (2, "Linear(4, 4)", "linear"),
        (3, "Tanh()", "tanh"), (4, "Linear(4, 4)", "linear"), (5, "ELU(alpha=1.0)", "elu"),
        (6, "Linear(4, 2)", "linear"), (7, "Sigmoid()", "sigmoid"),
    ]  # fmt: skip
    # Nothing reaches the first Linear through the dead ReLU: no gradient, no update.
    assert layer[0]["weight_norm"] == pytest.approx([0.5 * np.sqrt(12)] * 2)
    assert layer[0]["grad_norm"] == [0.0, 0.0] and layer[0]["update_ratio"] == [0.0, 0.0]
    assert layer[1] == {**layer[1], "dead_fraction": [1.0, 1.0], "mean": [0.0, 0.0], "std": [0.0, 0.0]}
    assert layer[3]["saturated_fraction"] == [1.0, 1.0] and layer[3]["mean"] == [1.0, 1.0]
    assert layer[5]["dead_fraction"] == [1.0, 1.0]
    assert layer[5]["mean"] == pytest.approx([np.expm1(-10.0)] * 2, rel=1e-5)
    assert layer[7]["saturated_fraction"] == [1.0, 1.0]
    # sigmoid(50) is 1.0 in float32, so sigmoid' = y (1 - y) = 0 stops every gradient: the
    # outputs stay 1 against targets 0 (MSE 1), and W = 0 that does not move has ratio 0/0 := 0.
    assert m["loss"] == [1.0, 1.0] and m["grad_norm"] == [0.0, 0.0]
    assert layer[6]["weight_norm"] == [0.0, 0.0] and layer[6]["update_ratio"] == [0.0, 0.0]


@pytest.mark.slow
def test_update_ratio_of_a_zero_weight_that_moves_is_inf():
    model = nn.Linear(2, 1)  # not a Sequential: one layer, index 0
    params = {"weight": jnp.zeros((1, 2)), "bias": jnp.zeros((1,))}
    x, y = np.ones((4, 2), np.float32), np.ones((4, 1), np.float32)
    m = fit(
        model, nn.MSELoss(), optim.sgd(lr=0.25), (x, y), epochs=1, batch_size=4, params=params, state={},
        key=jax.random.key(0), probe=Probe(every=1), progress=False,
    ).history[0]["probe"]  # fmt: skip
    # dL/dW = 2·(0 - 1)·x = (-2, -2): ||g|| = sqrt(8); W moves to (0.5, 0.5) from 0.
    assert m["layers"] == [
        {
            "index": 0, "name": "Linear(2, 1)", "kind": "linear", "weight_norm": [0.0],
            "grad_norm": [pytest.approx(np.sqrt(8))], "update_ratio": [np.inf],
        }
    ]  # fmt: skip
    assert m["loss"] == [1.0] and m["grad_norm"] == [pytest.approx(np.sqrt(8 + 4))]  # bias grad -2


@pytest.mark.slow
def test_a_model_without_probed_layers_has_only_model_statistics():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5))
    x = np.ones((4, 1, 2), np.float32)

    m = fit(
        model, nn.MSELoss(), optim.sgd(lr=0.1), (x, np.zeros((4, 2), np.float32)), epochs=1, batch_size=2,
        key=jax.random.key(0), probe=True, progress=False,
    ).history[0]["probe"]  # fmt: skip
    assert m["layers"] == [] and m["grad_norm"] == [0.0, 0.0] and m["step"] == [1, 2]


# ---------------------------------------------------------------- every and steps


@pytest.mark.slow
def test_points_fall_every_k_steps_with_global_steps_and_the_steps_own_loss():
    x, y = toy_data(40, d=2, classes=2)
    model, opt = nn.Sequential(nn.Linear(2, 2), nn.ReLU()), optim.sgd(lr=0.05)
    common = dict(epochs=3, batch_size=4, key=jax.random.key(1), progress=False)  # 10 steps an epoch
    plain = fit(model, F.cross_entropy, opt, (x, y), **common)
    watched = fit(model, F.cross_entropy, opt, (x, y), probe=Probe(every=3), **common)
    assert [h["probe"]["step"] for h in watched.history] == [[3, 6, 9], [13, 16, 19], [23, 26, 29]]
    assert all(h["probe"]["every"] == 3 for h in watched.history)
    # Watching does not change training (another program, the same steps).
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(watched.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # The points' losses are those steps' losses in the unprobed epoch's per-step metrics.
    ts = init_train_state(model, opt, jax.random.key(1))  # fit's documented start
    epoch = make_train_epoch(model, F.cross_entropy, opt, 4)
    *_, metrics = epoch(ts.params, ts.state, opt.init(ts.params), jax.random.fold_in(ts.key, 0), x, y)
    np.testing.assert_allclose(watched.history[0]["probe"]["loss"], metrics["loss"][2::3], rtol=1e-6)
    np.testing.assert_allclose(
        watched.history[0]["probe"]["grad_norm"], metrics["grad_norm"][2::3], rtol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize(("n_steps", "every", "points"), [(100, 3, 33), (20, 1, 20)])
def test_default_every_gives_about_32_points_per_epoch(n_steps, every, points):
    assert Probe().interval(n_steps) == every == max(1, n_steps // 32)
    x, y = np.ones((n_steps, 1), np.float32), np.ones((n_steps, 1), np.float32)
    m = fit(
        nn.Linear(1, 1), nn.MSELoss(), optim.sgd(lr=0.01), (x, y), epochs=1, batch_size=1,
        key=jax.random.key(0), probe=True, progress=False,
    ).history[0]["probe"]  # fmt: skip
    assert m["every"] == every and m["step"] == list(range(every, points * every + 1, every))


@pytest.mark.slow
def test_every_longer_than_an_epoch_gives_no_points():
    x, y = np.ones((8, 1), np.float32), np.ones((8, 1), np.float32)
    m = fit(
        nn.Linear(1, 1), nn.MSELoss(), optim.sgd(lr=0.01), (x, y), epochs=1, batch_size=2,
        key=jax.random.key(0), probe=Probe(every=5), progress=False,
    ).history[0]["probe"]  # fmt: skip
    assert m["step"] == [] and m["loss"] == [] and m["layers"][0]["weight_norm"] == []


# ---------------------------------------------------------------- the compiled program


@pytest.mark.slow
@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_a_probe_changes_nothing_the_epoch_computes(grad):
    # The probed epoch (chunks of plain steps, then a probed one) against the plain scan: the
    # same params, state, optimizer state and per-step records, bit for bit, from the same
    # inputs, and its program has one more loop, the scan over chunks.
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    opt = optim.sgd(lr=0.1, momentum=0.9)
    x, y = toy_data(40, d=4)

    def args():
        params, state = model.init(jax.random.key(0))
        return params, state, opt.init(params), jax.random.key(1), x, y

    plain = make_train_epoch(model, nn.CrossEntropyLoss(), opt, 8, grad)
    probed = make_train_epoch(model, nn.CrossEntropyLoss(), opt, 8, grad, probe=Probe(every=2))
    *carry_a, records_a = plain(*args())
    *carry_b, records_b = probed(*args())
    del records_b["probe"]
    for a, b in zip(
        jax.tree.leaves((carry_a, records_a)), jax.tree.leaves((carry_b, records_b)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loops = [e.lower(*args()).as_text().count("stablehlo.while") for e in (plain, probed)]
    assert loops[1] > loops[0]


@pytest.mark.slow
def test_probed_fit_compiles_once_over_epochs():
    traces, seen = [], []

    def counted(input, target, reduction="mean"):
        traces.append(1)  # runs only while tracing
        return F.cross_entropy(input, target, reduction=reduction)

    x, y = toy_data(40, d=6)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    result = fit(
        model, nn.FunctionLoss(counted, backward=F.cross_entropy_backward), optim.sgd(lr=0.1), (x, y),
        epochs=3, batch_size=8, key=jax.random.key(0), probe=Probe(every=2), progress=False,
        callbacks=[LambdaCallback(on_epoch_end=lambda run, record: seen.append(len(traces)))],
    )  # fmt: skip
    # 5 steps an epoch, every 2: chunks and a leftover step. The plain and the watched step
    # are each traced once in epoch 1 (one loop runs the chunks' and the leftover's plain
    # steps), never again.
    assert seen == [2, 2, 2]
    assert result.history[2]["probe"]["step"] == [12, 14]


def module_level_imports(tree: ast.AST) -> list[str]:
    """The modules a file imports when it is loaded (not those imported inside functions)."""
    names = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        names += module_level_imports(node)
    return names


def test_loading_fnn_train_never_imports_diagnostics():
    # Train sits below diagnostics: fnn/train imports it only inside a function (fit's
    # probe=True), so loading fnn.train alone never loads it. (`import fnn` may load both.)
    found = [
        (path.name, name)
        for path in sorted(Path(ROOT, "fnn", "train").rglob("*.py"))
        for name in module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
        if name == "fnn.diagnostics" or name.startswith("fnn.diagnostics.")
    ]
    assert found == []


# ---------------------------------------------------------------- divergence, resume, mesh


POISONED_AT_12 = nn.Sequential(nn.Linear(6, 4), PoisonAt(12), nn.ReLU(), nn.Linear(4, 3))


@pytest.fixture(scope="module")
def diverged():
    """The TrainingDiverged of one probed fit of POISONED_AT_12 (8 steps of 8 an epoch, every 1:
    the NaN is global step 13, epoch 2's 5th), shared by the two tests that read it."""
    x, y = toy_data(64)
    with pytest.raises(TrainingDiverged) as info:
        fit(POISONED_AT_12, F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=3, batch_size=8,
            key=jax.random.key(0), probe=True, progress=False)  # fmt: skip
    return info.value


@pytest.mark.slow
@pytest.mark.xdist_group("probes-diverged")
def test_points_from_the_first_bad_step_on_are_marked_and_fit_still_raises(diverged):
    # One gradient source: the marking is the epoch's, the same code for both.
    model, opt = POISONED_AT_12, optim.sgd(lr=0.1)
    x, y = toy_data(64)  # 8 steps of 8 an epoch: step 12 (0-based) is epoch 2, step 5 (1-based)
    # One epoch of a model poisoned at its 5th step: points at steps 2, 4, 6, 8.
    early = nn.Sequential(model.layers[0], PoisonAt(4), *model.layers[2:])
    params, state = early.init(jax.random.key(0))
    epoch = make_train_epoch(early, F.cross_entropy, opt, 8, "manual", probe=Probe(every=2))
    *_, m = epoch(params, state, opt.init(params), jax.random.key(1), x, y)
    assert m["probe"]["step"].tolist() == [2, 4, 6, 8]
    assert m["probe"]["ok"].tolist() == [True, True, False, False] == m["ok"][1::2].tolist()
    assert np.isnan(m["probe"]["points"]["loss"][2]) and np.isfinite(m["probe"]["points"]["loss"][:2]).all()
    # fit of the model poisoned at step 12 still raises, after epoch 1's points.
    history = diverged.result.history
    assert [h["epoch"] for h in history] == [1] and history[0]["probe"]["step"] == list(range(1, 9))


@pytest.mark.slow
@pytest.mark.xdist_group("probes-diverged")
def test_the_diverged_epoch_keeps_its_applied_points_and_its_diagnosis(diverged):
    record = diverged.record
    assert record["epoch"] == 2 and np.isnan(record["train_loss"]) and record["lr"] == pytest.approx(0.1)
    # Global steps 9-12 were applied before the bad one; their points are finite.
    assert record["probe"]["step"] == [9, 10, 11, 12]
    assert np.isfinite(record["probe"]["loss"]).all()
    # A NaN loss is the lr-too-large rule's first trigger, and its message says so.
    rules = [(d["rule"], d["epoch"]) for d in record["diagnoses"]]
    assert rules == [("lr-too-large", 2)] and "learning rate" in record["diagnoses"][0]["message"]
    assert diverged.result.history[-1]["epoch"] == 1  # the partial epoch is not in the history


@pytest.mark.slow
def test_fit_stores_each_epochs_diagnoses_in_its_record():
    # Closed form: bias -10 and weights 0.5 on inputs in [0, 1) give pre-activations below
    # -5.5 for every sample, so every ReLU unit is dead (value 1.0) and, with zero gradient
    # through the ReLU, stays dead in every epoch; the rule fires once per epoch.
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3))
    params, state = model.init(jax.random.key(0))
    params = ({"weight": jnp.full((4, 6), 0.5), "bias": jnp.full((4,), -10.0)}, {}, params[2])
    x, y = toy_data(64)
    x = np.abs(x) % 1.0
    result = fit(model, F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=2, batch_size=8,
                 params=params, state=state, key=jax.random.key(1), probe=True, progress=False)  # fmt: skip
    for epoch, record in enumerate(result.history, start=1):
        dead = [d for d in record["diagnoses"] if d["rule"] == "dead-relu"]
        assert [(d["layer"], d["epoch"], d["value"]) for d in dead] == [("1 ReLU()", epoch, 1.0)]
        assert "LeakyReLU" in dead[0]["message"]
    # Without a probe no rule runs and the record has no diagnoses.
    quiet = fit(model, F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=1, batch_size=8,
                params=params, state=state, key=jax.random.key(1), progress=False)  # fmt: skip
    assert "diagnoses" not in quiet.history[0]


@pytest.mark.slow
def test_resume_with_a_probe_equals_an_uninterrupted_run_and_keeps_the_series(tmp_path):
    x, y = toy_data(64)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    common = dict(batch_size=16, key=jax.random.key(0), progress=False, probe=Probe(every=2))
    opt = optim.adam(lr=1e-2)
    whole = fit(model, F.cross_entropy, opt, (x, y), epochs=2, **common)
    fit(model, F.cross_entropy, opt, (x, y), epochs=1, checkpoint_dir=str(tmp_path), **common)
    resumed = fit(
        model, F.cross_entropy, opt, (x, y), epochs=2, checkpoint_dir=str(tmp_path), resume=True, **common
    )
    for a, b in zip(
        jax.tree.leaves(whole.train_state[:3]), jax.tree.leaves(resumed.train_state[:3]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert [h["probe"] for h in resumed.history] == [h["probe"] for h in whole.history]
    _, meta = checkpoint.load(tmp_path / "checkpoint.npz")
    # The series round-trip through the checkpoint's JSON metadata.
    assert [h["probe"] for h in meta["history"]] == [h["probe"] for h in whole.history]
    assert [h["probe"]["step"] for h in meta["history"]] == [[2, 4], [6, 8]]


@pytest.mark.slow
def test_mesh_gives_the_one_device_points():
    script = textwrap.dedent(
        """
        import json, jax, numpy as np
        from fnn import distributed, nn, optim, train
        from fnn.diagnostics import Probe
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6)).astype(np.float32)
        y = rng.integers(0, 3, size=64).astype(np.int32)
        model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.Tanh())
        out = {}
        for name, mesh in (("one", None), ("mesh", distributed.data_mesh(2))):
            h = train.fit(model, nn.CrossEntropyLoss(), optim.sgd(lr=0.1), (x, y), epochs=1,
                          batch_size=16, key=jax.random.key(0), probe=Probe(every=1),
                          progress=False, mesh=mesh).history
            out[name] = h[0]["probe"]
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    one, mesh = out["one"], out["mesh"]
    assert mesh["step"] == one["step"] == [1, 2, 3, 4]
    leaves = jax.tree_util.tree_leaves_with_path
    for (path, a), (_, b) in zip(leaves(one), leaves(mesh), strict=True):
        if isinstance(a, float):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=str(path))
        else:
            assert a == b


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("every", [0, -3, 2.0, True, "4"])
def test_every_must_be_an_int_of_at_least_one(every):
    with pytest.raises(ValueError, match=rf"Probe every must be an int >= 1 or None, got {every!r}"):
        Probe(every=every)


def test_fit_probe_must_be_a_flag_or_a_probe():
    x, y = toy_data(16)
    with pytest.raises(TypeError, match=r"probe must be True, False or a probe .* got 'yes'"):
        fit(nn.Linear(6, 3), F.cross_entropy, optim.sgd(lr=0.1), (x, y), epochs=1, batch_size=8,
            key=jax.random.key(0), probe="yes", progress=False)  # fmt: skip


def test_an_object_without_the_protocol_is_refused_by_name():
    class Half:
        def interval(self, n_steps):
            return 1

    with pytest.raises(
        TypeError, match=r"probe must implement interval, collect and summarize.*Half has no collect"
    ):
        make_train_epoch(nn.Linear(2, 1), nn.MSELoss(), optim.sgd(lr=0.1), 2, probe=Half())


def test_a_probe_interval_below_one_is_refused():
    @dataclass(frozen=True)
    class Never(Probe):
        def interval(self, n_steps):
            return 0

    epoch = make_train_epoch(nn.Linear(2, 1), nn.MSELoss(), optim.sgd(lr=0.1), 2, probe=Never())
    params, _ = nn.Linear(2, 1).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"probe.interval\(2\) must return an int >= 1, got 0"):
        epoch(
            params, {}, optim.sgd(lr=0.1).init(params), jax.random.key(1), jnp.ones((4, 2)), jnp.ones((4, 1))
        )
