"""fnn.diagnostics end to end: real runs that provoke each rule, checked through ``diagnose``.

test_diagnostics_rules.py feeds the rules hand-built histories and test_diagnostics_probes.py
checks the probe's statistics; here real models train on subsets of the bundled MNIST
through ``fit(..., probe=True)`` (or the probe's ``collect`` on the initial weights for
the init rules), so each test checks that the course's setups fire their rule with the
numbers experiments/README.md quotes, and that the default MLP run stays silent. Each test
states the value it expects and where it comes from: a closed form (a variance derivation,
SGD's first step), the definition applied by hand to the record's own series, or the
measured run in experiments/README.md. The thresholds are the constants
of fnn/diagnostics/rules.py. Runs are small (at most 64 steps); the training runs are marked
slow, the checks at init are the fast tier's.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics

import jax
import jax.numpy as jnp
import pytest

import fnn.functional as F
from fnn import data, diagnostics, init, models, nn, optim, train
from fnn.diagnostics import rules


def mnist(n: int, split: str = "train") -> tuple[jax.Array, jax.Array]:
    images, labels = data.mnist(split)
    return jnp.asarray(data.normalize(images[:n])), jnp.asarray(labels[:n])


def fit(model, optimizer, n_train: int, epochs: int = 1, batch_size: int = 128, **kw) -> list[dict]:
    result = train.fit(
        model,
        F.cross_entropy,
        optimizer,
        mnist(n_train),
        epochs=epochs,
        batch_size=batch_size,
        key=jax.random.key(0),
        probe=True,
        progress=False,
        **kw,
    )
    return result.history


def by_rule(found: list[diagnostics.Diagnosis], rule: str) -> list[diagnostics.Diagnosis]:
    return [d for d in found if d.rule == rule]


def layer_series(record: dict, index: int, key: str) -> list[float]:
    (layer,) = [layer for layer in record["probe"]["layers"] if layer["index"] == index]
    return layer[key]


def at_init(model: nn.Sequential, weight_init, x: jax.Array) -> list[dict]:
    """A one-record history: Probe.collect on the initial weights (biases 0), forward only:
    no loss, no gradient and no update (recorded as 0), so only the activation rules judge it."""
    params, state = model.init(jax.random.key(0))
    weights = jax.random.split(jax.random.key(1), len(model.layers))
    params = tuple(
        {"weight": weight_init(k, p["weight"].shape), "bias": jnp.zeros_like(p["bias"])} if p else p
        for k, p in zip(weights, params, strict=True)
    )
    zeros = jax.tree.map(jnp.zeros_like, params)
    step = train.ProbeStep(
        params, state, jax.random.key(2), x, None, zeros, params, state, jnp.zeros(()), jnp.zeros(())
    )
    probe = diagnostics.Probe(every=1)
    point = jax.tree.map(lambda a: jnp.asarray(a)[None], probe.collect(model, step))
    return [
        {
            "epoch": 1,
            "train_loss": 0.0,
            "probe": {"every": 1, "step": [1], **probe.summarize(model, point)},
        }
    ]


def deep_stack(activation: nn.Layer, depth: int = 12, width: int = 256) -> nn.Sequential:
    """The initialization experiment's part 1: depth x [Linear(width, width) + activation]."""
    return nn.Sequential(*[layer for _ in range(depth) for layer in (nn.Linear(width, width), activation)])


GAUSS = jax.random.normal(jax.random.key(3), (512, 256))  # part 1's N(0, 1) inputs
ATANH_98 = math.atanh(0.98)  # tanh saturates where |y| > 0.98 (the contract)


# ---------------------------------------------------------------------------------------------
# At init: the signal rules and saturation (the initialization experiment)


def test_relu_constant_init_explodes_by_exactly_2_56_per_layer():
    # Constant 0.01 weights make every unit of a layer identical: layer l+1's pre-activation is
    # 0.01 * 256 * h_l, and ReLU is positively homogeneous, so the std grows by exactly 2.56 per
    # layer after the first (experiments/README.md measures 2.8e3 / 0.090 over 11 layers).
    found = diagnostics.diagnose(
        at_init(deep_stack(nn.ReLU()), functools.partial(init.constant, val=0.01), GAUSS)
    )
    (d,) = found
    assert (d.rule, d.layer, d.epoch, d.step) == ("exploding-signal", None, 1, 1)
    assert d.value == pytest.approx(0.01 * 256, rel=1e-4)
    assert "grows 2.56× per layer" in d.message and "Kaiming" in d.message


def test_relu_standard_normal_init_explodes_by_sqrt_fan_in_over_2():
    # Var(w) = 1: Var(y) = fan_in * Var(w) * E[x^2] and ReLU halves E[x^2], so the std grows by
    # sqrt(256 / 2) = 11.3 per layer (the course's derivation; measured 11.4 in the experiment).
    found = diagnostics.diagnose(
        at_init(deep_stack(nn.ReLU()), functools.partial(init.normal, std=1.0), GAUSS)
    )
    (d,) = found
    assert (d.rule, d.layer) == ("exploding-signal", None)
    assert d.value == pytest.approx(math.sqrt(128), rel=0.05)


def test_relu_too_small_variance_vanishes():
    # The course's "too small a variance vanishes": N(0, 0.01^2) weights shrink the std by
    # 0.01 * sqrt(256 / 2) = 0.113 per layer, far below the rule's 1/2. (The experiment's two
    # failing ReLU inits both explode, see the tests above, so this one is the vanishing case.)
    found = diagnostics.diagnose(
        at_init(deep_stack(nn.ReLU()), functools.partial(init.normal, std=0.01), GAUSS)
    )
    (d,) = found
    assert (d.rule, d.layer) == ("vanishing-signal", None)
    assert d.value == pytest.approx(0.01 * math.sqrt(128), rel=0.05)
    assert d.value < 1 / rules.SIGNAL_RATIO


@pytest.mark.parametrize(
    "activation, weight_init",
    [
        (nn.ReLU(), functools.partial(init.kaiming_normal, nonlinearity="relu")),  # ratio 1.0 by design
        (nn.ReLU(), init.xavier_normal),  # 1/sqrt(2) = 0.71 per layer: slower, above the rule's 0.5
        (nn.Tanh(), init.xavier_normal),  # 0.90 per layer in the experiment
    ],
    ids=["relu-kaiming", "relu-xavier", "tanh-xavier"],
)
def test_constant_variance_inits_are_silent(activation, weight_init):
    assert diagnostics.diagnose(at_init(deep_stack(activation), weight_init, GAUSS)) == []


def test_tanh_standard_normal_init_saturates_every_layer_and_keeps_its_std():
    # With Var(w) = 1 and 256 inputs of unit variance the first pre-activation is N(0, 16^2):
    # the fraction with |tanh(z)| > 0.98, i.e. |z| > atanh(0.98), is 1 - erf(atanh(0.98) / (16 sqrt 2)).
    history = at_init(deep_stack(nn.Tanh()), functools.partial(init.normal, std=1.0), GAUSS)
    found = diagnostics.diagnose(history)
    assert {d.rule for d in found} == {"saturation"}  # the std stays ~0.97: no signal finding
    assert [d.layer for d in found] == [f"{i} Tanh()" for i in range(1, 24, 2)]
    first = 1 - math.erf(ATANH_98 / (16 * math.sqrt(2)))
    assert found[0].value == pytest.approx(first, abs=0.02)
    # deeper layers see inputs with E[x^2] ~ 0.95 (almost all at +-1): std sqrt(256 * 0.95)
    deeper = 1 - math.erf(ATANH_98 / (math.sqrt(256 * 0.95) * math.sqrt(2)))
    assert all(d.value == pytest.approx(deeper, abs=0.02) for d in found[1:])


def test_tanh_constant_init_saturates_the_deep_layers():
    # Constant 0.01 weights: layer l+1's pre-activation is 2.56 * tanh(layer l's): the first
    # layers sit in tanh's linear range (std 0.15 after layer 1, measured), the deep ones at
    # +-1 (std 0.99 after layer 12): the experiment measures 56-100% saturated from layer 3 on.
    history = at_init(deep_stack(nn.Tanh()), functools.partial(init.constant, val=0.01), GAUSS)
    found = diagnostics.diagnose(history)
    assert {d.rule for d in found} == {"saturation"}
    fired = {int(d.layer.split()[0]) for d in found}
    assert 1 not in fired and 3 not in fired and {11, 13, 15, 17, 19, 21, 23} <= fired
    saturated = layer_series(history[0], 1, "saturated_fraction")[0]
    assert saturated < rules.SATURATED_FRACTION
    assert max(d.value for d in found) > 0.95


# ---------------------------------------------------------------------------------------------
# Training runs


@pytest.mark.slow
def test_dead_relu_fires_for_the_bias_minus_one_init():
    # The dead_relu experiment's setup: 784-256x6-10, Kaiming weights, every hidden bias -1,
    # plain SGD lr 0.1. Its README (the probe's definition, dead on a batch): layers 3-6 are
    # 79-100% dead, layers 1-2 2-12%; the rule's threshold is 50%.
    kaiming = functools.partial(init.kaiming_normal, nonlinearity="relu")
    layers, width = [nn.Flatten()], 784
    for _ in range(6):
        layers += [
            nn.Linear(width, 256, weight_init=kaiming, bias_init=functools.partial(init.constant, val=-1.0))
        ]
        layers += [nn.ReLU()]
        width = 256
    model = nn.Sequential(*layers, nn.Linear(width, 10, weight_init=kaiming, bias_init=init.zeros))
    history = fit(model, optim.sgd(lr=0.1), 2048)
    found = diagnostics.diagnose(history)
    dead = by_rule(found, "dead-relu")
    assert [d.layer for d in dead] == ["6 ReLU()", "8 ReLU()", "10 ReLU()", "12 ReLU()"]
    for d in dead:  # value = the lower median of the epoch's points (the rule's definition)
        assert d.value == statistics.median_low(
            layer_series(history[0], int(d.layer.split()[0]), "dead_fraction")
        )
    assert 0.6 <= dead[0].value <= 0.95
    assert [d.value for d in dead[1:]] == [1.0, 1.0, 1.0]  # -1 dominates W h once h is small
    for index in (2, 4):
        assert statistics.median_low(layer_series(history[0], index, "dead_fraction")) < rules.DEAD_FRACTION
    # the dead units stop the updates, so lr-too-small stays silent (the rule's exception)
    assert by_rule(found, "lr-too-small") == []


@pytest.mark.slow
def test_tanh_standard_normal_net_saturates_while_training():
    # The initialization experiment's tanh N(0, 1) net (6 hidden layers here) never leaves
    # saturation: 88% of every deeper layer's outputs stay saturated (the closed form above)
    # and the first, on MNIST's inputs, more.
    layers, width = [nn.Flatten()], 784
    for _ in range(6):
        layers += [
            nn.Linear(width, 256, weight_init=functools.partial(init.normal, std=1.0), bias_init=init.zeros)
        ]
        layers += [nn.Tanh()]
        width = 256
    history = fit(nn.Sequential(*layers, nn.Linear(width, 10)), optim.sgd(lr=0.01, momentum=0.9), 1024)
    found = by_rule(diagnostics.diagnose(history), "saturation")
    assert [d.layer for d in found] == [f"{i} Tanh()" for i in range(2, 13, 2)]
    deeper = 1 - math.erf(ATANH_98 / (math.sqrt(256 * 0.95) * math.sqrt(2)))
    assert all(d.value == pytest.approx(deeper, abs=0.02) for d in found[1:])
    assert found[0].value > deeper


@pytest.mark.slow
def test_lr_50_is_too_large():
    # `python -m fnn train --lr 50`: the default MLP, SGD momentum 0.9. Step 1 moves the Linear
    # weights by lr * ||g|| (the momentum buffer starts at g), 10x their norm, far above the
    # rule's ratio 1; the loss then passes 1e9 within 8 steps.
    history = fit(models.mlp(), optim.sgd(lr=50.0, momentum=0.9), 2048)
    (d,) = by_rule(diagnostics.diagnose(history), "lr-too-large")
    assert (d.epoch, d.step) == (1, 1)
    linears = [layer for layer in history[0]["probe"]["layers"] if layer["kind"] == "linear"]
    grad = math.sqrt(sum(layer["grad_norm"][0] ** 2 for layer in linears))
    weight = math.sqrt(sum(layer["weight_norm"][0] ** 2 for layer in linears))
    assert d.value == pytest.approx(50.0 * grad / weight, rel=0.01)
    assert d.value > rules.MAX_UPDATE
    assert "learning rate" in d.message and "try 5" in d.message


@pytest.mark.slow
def test_lr_1e_4_is_too_small():
    # The learning_rates experiment's lr 1e-4 (plain SGD, MLP 784-512-512-10 without BN or
    # dropout): the loss barely moves (0.04% over these 32 steps; 0.76% over a full epoch) and
    # each step moves the weights by lr * ||g|| / ||w|| ~ 5e-6, below the rule's 1e-5.
    history = fit(models.mlp(batch_norm=False, dropout=0.0), optim.sgd(lr=1e-4), 4096)
    found = diagnostics.diagnose(history)
    (d,) = found
    assert (d.rule, d.epoch, d.step, d.layer) == ("lr-too-small", 1, None, None)
    mon = history[0]["probe"]
    linears = [layer for layer in mon["layers"] if layer["kind"] == "linear"]
    expected = max(
        1e-4
        * math.sqrt(sum(layer["grad_norm"][j] ** 2 for layer in linears))
        / math.sqrt(sum(layer["weight_norm"][j] ** 2 for layer in linears))
        for j in range(len(mon["step"]))
    )
    # W_new - W in float32 loses ~2% of a 1e-7 update to rounding (|W| ~ 0.03)
    assert d.value == pytest.approx(expected, rel=0.05)
    assert 1e-6 < d.value < rules.SMALL_UPDATE
    fall = 1 - statistics.mean(mon["loss"][-5:]) / statistics.mean(mon["loss"][:5])
    assert abs(fall) < rules.SMALL_FALL
    assert "1000×" in d.message or "100×" in d.message


@pytest.mark.slow
def test_memorising_a_tiny_train_set_overfits():
    # 256 training images, a 1024-unit MLP without regularization, 16 epochs: the train loss
    # goes to ~0 while the held-out loss climbs (Prechelt's UP_3; the mlp_regularization experiment).
    test_data = mnist(1000, "test")
    history = fit(
        models.mlp(hidden=(1024,), batch_norm=False, dropout=0.0),
        optim.sgd(lr=0.1, momentum=0.9),
        256,
        epochs=16,
        batch_size=64,
        eval_data=test_data,
    )
    found = diagnostics.diagnose(history)
    overfit = by_rule(found, "overfitting")
    assert overfit, [(r["train_loss"], r["test_loss"]) for r in history]
    for d in overfit:  # the definition, by hand on the history
        window = history[d.epoch - 4 : d.epoch]
        test = [r["test_loss"] for r in window]
        assert all(b > a for a, b in itertools.pairwise(test))
        assert window[-1]["train_loss"] < window[0]["train_loss"]
        assert d.value == pytest.approx(test[-1] / test[0] - 1)
    last = overfit[-1]
    assert history[last.epoch - 1]["train_loss"] < 0.05 < history[last.epoch - 1]["test_loss"] / 10
    assert "early stopping" in last.message


@pytest.mark.slow
def test_default_mlp_run_is_silent():
    # The CLI's defaults: models.mlp() (BatchNorm, Dropout 0.2), SGD lr 0.1 with cosine decay,
    # momentum 0.9, weight decay 5e-4, batch 128; 2 epochs of 4096 images (64 steps), 32 points
    # an epoch. It trains (loss 2.3 -> ~0.2) and no rule may fire.
    steps = 2 * (4096 // 128)
    optimizer = optim.sgd(lr=optim.cosine_annealing_lr(0.1, T_max=steps), momentum=0.9, weight_decay=5e-4)
    history = fit(models.mlp(), optimizer, 4096, epochs=2)
    assert history[-1]["train_loss"] < 0.5
    assert diagnostics.diagnose(history) == []
