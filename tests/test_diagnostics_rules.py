"""fnn.diagnostics.rules: each rule on a history built by hand in fit's record format.

References: every expected value is computed in the test by hand from the numbers it puts
into the history (a median, a geometric mean, a ratio of norms), and the shapes come from
measured runs: the course experiments' tables in experiments/README.md (initialization:
per-layer activation std; dead_relu: the -1 bias; learning_rates: lr 1e-4) and scratch
runs of fnn's MNIST MLP logged every 12 steps (the numbers experiments/README.md quotes for the rules).
No test runs a model: the probe that fills ``record["probe"]`` is tested elsewhere.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fnn.diagnostics import RULES, Diagnosis, diagnose, format_diagnosis

# ---------------------------------------------------------------------------------------------
# Builders for the contract's records


def linear(index, weight_norm, update_ratio, n, name=None):
    return {
        "index": index,
        "name": name or "Linear(512, 512)",
        "kind": "linear",
        "weight_norm": [weight_norm] * n if np.isscalar(weight_norm) else list(weight_norm),
        "grad_norm": [1.0] * n,
        "update_ratio": [update_ratio] * n if np.isscalar(update_ratio) else list(update_ratio),
    }


def act(index, kind, std, n, **series):
    names = {"relu": "ReLU()", "tanh": "Tanh()", "sigmoid": "Sigmoid()", "leaky_relu": "LeakyReLU(0.01)"}
    entry = {"index": index, "name": names.get(kind, "ELU(alpha=1.0)"), "kind": kind}
    entry["mean"] = [0.0] * n
    entry["std"] = [std] * n if np.isscalar(std) else list(std)
    for key, values in series.items():
        entry[key] = [values] * n if np.isscalar(values) else list(values)
    return entry


def record(epoch, loss, layers=(), every=12, first_step=None, **extra):
    """One epoch record: ``loss`` is the probed points' losses (the epoch mean is their mean)."""
    n = len(loss)
    first = first_step if first_step is not None else (epoch - 1) * n * every + every
    rec = {"epoch": epoch, "train_loss": float(np.mean(loss))}
    rec["probe"] = {
        "every": every,
        "step": [first + every * j for j in range(n)],
        "loss": list(loss),
        "grad_norm": [1.0] * n,
        "layers": list(layers),
    }
    rec.update(extra)
    return rec


def rules_of(history):
    return [(d.rule, d.layer, d.epoch, d.step) for d in diagnose(history)]


def healthy_layers(n, dead=0.05, std=0.6):
    """The default MLP's probed layers (Linear, BatchNorm1d, ReLU per hidden block)."""
    return [
        linear(1, 13.0, 1e-3, n, "Linear(784, 512)"),
        {"index": 2, "name": "BatchNorm1d(512)", "kind": "batchnorm", "running_var_min": [0.5] * n},
        act(3, "relu", std, n, dead_fraction=dead),
        linear(5, 13.0, 1e-3, n),
        {"index": 6, "name": "BatchNorm1d(512)", "kind": "batchnorm", "running_var_min": [0.5] * n},
        act(7, "relu", std * 1.01, n, dead_fraction=dead),
        linear(9, 1.8, 2e-3, n, "Linear(512, 10)"),
    ]


# ---------------------------------------------------------------------------------------------
# dead-relu


def test_dead_relu_fires_on_the_minus_one_bias_shape():
    # dead_relu experiment, bias -1: layer 6 (the third ReLU) measured 80-89% dead per batch.
    dead = [0.82, 0.80, 0.89, 0.81, 0.79]
    history = [record(1, [2.30] * 5, [act(6, "relu", 0.015, 5, dead_fraction=dead)])]
    (d,) = diagnose(history)
    # lower median of 5 values = the 3rd smallest: sorted 0.79, 0.80, 0.81, 0.82, 0.89
    assert (d.rule, d.layer, d.epoch, d.step) == ("dead-relu", "6 ReLU()", 1, 12)
    assert d.value == 0.81
    assert "81% of units dead" in d.message and "LeakyReLU or ELU" in d.message and "bias" in d.message


def test_dead_relu_reports_the_first_point_over_the_threshold_and_a_majority_of_an_even_count():
    dead = [0.4, 0.6, 0.7, 0.65]  # 3 of 4 over 50%: a majority; lower median = 2nd smallest = 0.6
    (d,) = diagnose([record(1, [2.0] * 4, [act(2, "relu", 0.5, 4, dead_fraction=dead)])])
    assert (d.step, d.value) == (24, 0.6)


@pytest.mark.parametrize(
    "dead",
    [
        [0.9, 0.1, 0.1, 0.1, 0.1],  # a transient spike at the first point
        [0.6, 0.6, 0.4, 0.4],  # half the points, not more than half
        [0.5, 0.5, 0.5],  # at the threshold, not over it
        [0.05] * 5,  # the default MLP
    ],
)
def test_dead_relu_silent_near_the_threshold(dead):
    history = [record(1, [2.0] * len(dead), [act(2, "relu", 0.5, len(dead), dead_fraction=dead)])]
    assert rules_of(history) == []


def test_dead_relu_only_for_relu_kind():
    # LeakyReLU's "dead" = never positive, but it still passes gradient (the contract).
    history = [record(1, [2.0] * 3, [act(2, "leaky_relu", 0.5, 3, dead_fraction=0.9)])]
    assert rules_of(history) == []


# ---------------------------------------------------------------------------------------------
# vanishing-signal / exploding-signal


def twelve_layers(kind, std_l1, std_l6, std_l12, n=1):
    """12 activation layers with the README's std at layers 1, 6 and 12, geometric in between
    (only the first and the last enter the per-layer geometric mean)."""
    stds = np.concatenate([np.geomspace(std_l1, std_l6, 6), np.geomspace(std_l6, std_l12, 7)[1:]]).tolist()
    layers = []
    for k, s in enumerate(stds):
        layers.append(linear(2 * k, 10.0, 1e-3, n, "Linear(256, 256)"))
        extra = {"dead_fraction": 0.0} if kind == "relu" else {"saturated_fraction": 0.0}
        layers.append(act(2 * k + 1, kind, s, n, **extra))
    return layers


@pytest.mark.parametrize(
    ("init", "std_l1", "std_l6", "std_l12", "readme_ratio"),
    [("N(0, 1)", 9.32, 1.76e6, 3.78e12, 11.4), ("constant 0.01", 0.090, 9.92, 2.79e3, None)],
)
def test_exploding_signal_fires_for_relu_with_normal_and_constant_init(
    init, std_l1, std_l6, std_l12, readme_ratio
):
    history = [record(1, [2.3], twelve_layers("relu", std_l1, std_l6, std_l12))]
    (d,) = diagnose(history)
    expected = math.exp(math.log(std_l12 / std_l1) / 11)  # 11 layer-to-layer factors
    assert (d.rule, d.layer, d.step) == ("exploding-signal", None, 12)
    assert d.value == pytest.approx(expected, rel=1e-12)
    if readme_ratio:  # experiments/README.md: "N(0,1) 11.4 (theory √128 = 11.3)"
        assert d.value == pytest.approx(readme_ratio, abs=0.05)
    assert "Kaiming" in d.message and "Xavier" in d.message and "×" in d.message


def test_vanishing_signal_fires_when_the_std_shrinks_more_than_2x_per_layer():
    # 3 ReLU layers, std 1.0 -> 0.4 -> 0.16: 0.4 per layer.
    layers = [act(i, "relu", s, 3, dead_fraction=0.1) for i, s in ((1, 1.0), (3, 0.4), (5, 0.16))]
    (d,) = diagnose([record(1, [2.0, 1.9, 1.8], layers)])
    assert d.rule == "vanishing-signal"
    assert d.value == pytest.approx(0.4, rel=1e-12)


def test_vanishing_signal_fires_when_the_last_layer_is_silent():
    # dead_relu's -1 bias net at its first point (scratch run): std 0.478 ... 0 in the last ReLU.
    stds = [0.4778, 0.1582, 0.015, 0.0, 0.0, 0.0]
    layers = [act(2 * k + 2, "relu", s, 1, dead_fraction=0.0) for k, s in enumerate(stds)]
    (d,) = diagnose([record(1, [2.30], layers)])
    assert (d.rule, d.value) == ("vanishing-signal", 0.0)


@pytest.mark.parametrize(
    ("kind", "std_l1", "std_l6", "std_l12"),
    [
        ("relu", 0.824, 0.841, 0.858),  # Kaiming + ReLU: 1.004 per layer
        ("tanh", 0.627, 0.291, 0.203),  # Xavier + tanh: 0.903 per layer
        ("relu", 0.583, 0.105, 0.0134),  # Xavier + ReLU: 0.71 per layer, within 2x
    ],
)
def test_signal_rules_silent_for_matched_inits(kind, std_l1, std_l6, std_l12):
    assert rules_of([record(1, [2.3], twelve_layers(kind, std_l1, std_l6, std_l12))]) == []


def test_signal_rules_silent_near_the_threshold_and_for_two_layers():
    # 0.55 per layer over 3 layers: within 2x.
    layers = [act(i, "relu", s, 1, dead_fraction=0.0) for i, s in ((1, 1.0), (3, 0.55), (5, 0.3025))]
    assert rules_of([record(1, [2.0], layers)]) == []
    # models.mlp(batch_norm=False) at torch's default init: 0.336 -> 0.1375, 0.41x, but only 2 layers.
    layers = [act(2, "relu", 0.3356, 1, dead_fraction=0.0), act(4, "relu", 0.1375, 1, dead_fraction=0.0)]
    assert rules_of([record(1, [2.3], layers)]) == []


def test_signal_rules_persist_over_most_points():
    # exploding (x4 per layer) at the first point only: a transient, silent.
    first = [1.0, 1.0, 1.0, 1.0, 1.0]
    last = [16.0, 1.0, 1.0, 1.0, 1.0]
    layers = [
        act(1, "relu", first, 5, dead_fraction=0.0),
        act(3, "relu", 1.0, 5, dead_fraction=0.0),
        act(5, "relu", last, 5, dead_fraction=0.0),
    ]
    assert rules_of([record(1, [2.0] * 5, layers)]) == []


# ---------------------------------------------------------------------------------------------
# saturation


def test_saturation_fires_for_tanh_with_normal_init():
    # initialization experiment, tanh N(0, 1): std ~0.97 in every layer (no signal finding),
    # 90-100% of the outputs beyond |y| > 0.98.
    sat = [0.902, 0.992, 0.996, 1.0, 0.992]
    layers = [
        act(1, "tanh", 0.975, 5, saturated_fraction=0.999),
        act(3, "tanh", 0.974, 5, saturated_fraction=0.998),
        act(5, "tanh", 0.974, 5, saturated_fraction=sat),
    ]
    found = diagnose([record(1, [6.6, 3.0, 2.4, 2.35, 2.35], layers)])
    assert [(d.rule, d.layer) for d in found] == [
        ("saturation", "1 Tanh()"),
        ("saturation", "3 Tanh()"),
        ("saturation", "5 Tanh()"),
    ]
    assert found[2].value == 0.992  # sorted 0.902, 0.992, 0.992, 0.996, 1.0: the middle one
    assert "99.2% of outputs saturated" in found[2].message


def test_saturation_fires_for_sigmoid():
    (d,) = diagnose([record(1, [0.7] * 3, [act(4, "sigmoid", 0.45, 3, saturated_fraction=[0.7, 0.6, 0.8])])])
    assert (d.rule, d.layer, d.value) == ("saturation", "4 Sigmoid()", 0.7)


@pytest.mark.parametrize("sat", [[0.5, 0.5, 0.5], [0.157, 0.14, 0.155], [0.9, 0.2, 0.2]])
def test_saturation_silent_near_the_threshold(sat):
    # 50% exactly; Xavier/Kaiming tanh's largest measured (15.7%); one saturated point.
    assert rules_of([record(1, [1.0] * 3, [act(2, "tanh", 0.6, 3, saturated_fraction=sat)])]) == []


# ---------------------------------------------------------------------------------------------
# lr-too-large


def test_lr_too_large_fires_on_a_huge_update_ratio():
    # The default MLP at SGD lr 50 (scratch run): the loss is 4.4e13 at the first point already and
    # falls back, but the step moved the weights by more than their norm. Two Linears with
    # ||W|| = 3 and 4 and update ratios 4 and 3: ||dW|| / ||W|| = sqrt(12² + 12²) / 5.
    layers = [linear(1, 3.0, [4.0, 1e-3, 0.0], 3), linear(4, 4.0, [3.0, 1e-3, 0.0], 3)]
    history = [record(1, [4.427e13, 4.586e13, 22.27], layers, lr=50.0)]
    (d,) = diagnose(history)
    assert (d.rule, d.layer, d.epoch, d.step) == ("lr-too-large", None, 1, 12)
    assert d.value == pytest.approx(12 * math.sqrt(2) / 5, rel=1e-12)
    assert "learning rate" in d.message and "try 5" in d.message


def test_lr_too_large_fires_when_the_loss_passes_ten_times_its_start():
    history = [record(1, [2.3, 2.0, 1.8, 23.5, 1.5])]
    (d,) = diagnose(history)
    assert (d.rule, d.step, d.value) == ("lr-too-large", 48, 23.5)
    assert "10.2× its start 2.3" in d.message  # 23.5 / 2.3 = 10.22
    assert "learning rate" in d.message and "10× smaller" in d.message


def test_lr_too_large_fires_on_a_non_finite_loss_and_reports_once_per_epoch():
    history = [record(1, [2.3, 9.9, math.inf, math.nan, 1e30])]
    (d,) = diagnose(history)
    assert (d.rule, d.step) == ("lr-too-large", 36)  # 9.9 at step 24 is within 10x; inf at 36 is not
    assert d.value == math.inf


def test_lr_too_large_fires_when_the_loss_climbs_over_a_window():
    # start 2.0; 5-point means: 0.9, 0.6, 0.5 x4, then 0.72, 0.94, 1.16, 1.38, 1.6. At the last
    # point the mean 1.6 is 1.1 above the earlier low 0.5, more than 50% of the start (1.0).
    loss = [2.0, 1.0] + [0.5] * 8 + [1.6] * 5
    (d,) = diagnose([record(1, loss)])
    assert (d.rule, d.step) == ("lr-too-large", 12 * 15)
    assert d.value == pytest.approx(1.6, rel=1e-12)


def test_lr_too_large_from_epoch_means_without_probe():
    # epoch means 2.0, 0.5, 1.6: 1.1 above the low, more than 50% of the first epoch's 2.0.
    history = [{"epoch": e + 1, "train_loss": v} for e, v in enumerate([2.0, 0.5, 1.6])]
    assert rules_of(history) == [("lr-too-large", None, 3, None)]
    history.append({"epoch": 4, "train_loss": math.nan})
    assert rules_of(history)[-1] == ("lr-too-large", None, 4, None)


def test_lr_too_large_fires_on_a_non_finite_gradient_norm_with_a_finite_loss():
    # What fit records of an epoch that diverged by an overflowing gradient before any
    # probed point (TrainingDiverged.record): a finite loss, an infinite gradient norm.
    (d,) = diagnose([{"epoch": 1, "train_loss": 2.3, "grad_norm": math.inf, "lr": 10.0}])
    assert (d.rule, d.epoch, d.step, d.value) == ("lr-too-large", 1, None, math.inf)
    assert "gradient norm became non-finite" in d.message and "try 1" in d.message
    assert diagnose([{"epoch": 1, "train_loss": 2.3, "grad_norm": 5.0}]) == []


@pytest.mark.parametrize(
    "loss",
    [
        [2.3, 2.0, 1.8, 22.9, 1.5],  # 9.96x the start
        [2.0, 1.0] + [0.5] * 8 + [1.45] * 5,  # climbs 0.95, within 50% of the start
        [2.3, 0.9, 0.6, 0.4, 0.3] + [0.001, 0.02] * 20,  # noisy near-zero losses late in training
    ],
)
def test_lr_too_large_silent_near_the_threshold(loss):
    layers = [linear(1, 3.0, 0.9, len(loss)), linear(4, 4.0, 0.9, len(loss))]  # update ratio 0.9 < 1
    assert rules_of([record(1, loss, layers)]) == []


# ---------------------------------------------------------------------------------------------
# lr-too-small


def crawling_epoch(update_ratios=(4.4e-6, 3.5e-6, 2.3e-5), loss_tail=(2.290, 2.289, 2.291, 2.290, 2.2895)):
    # learning_rates experiment at lr 1e-4 (scratch run, 39 points): first 5 points mean 2.3074,
    # last 5 mean 2.2899; Linear norms 13.1, 13.06, 1.83 (torch init) with these update ratios.
    loss = [2.316, 2.303, 2.302, 2.304, 2.312, *loss_tail]
    layers = [
        linear(1, 13.1, update_ratios[0], 10, "Linear(784, 512)"),
        act(2, "relu", 0.336, 10, dead_fraction=0.0),
        linear(3, 13.06, update_ratios[1], 10),
        act(4, "relu", 0.1375, 10, dead_fraction=0.008),
        linear(5, 1.83, update_ratios[2], 10, "Linear(512, 10)"),
    ]
    return record(1, loss, layers, lr=1e-4)


def test_lr_too_small_fires_at_lr_1e4():
    (d,) = diagnose([crawling_epoch()])
    norms, ratios = np.array([13.1, 13.06, 1.83]), np.array([4.4e-6, 3.5e-6, 2.3e-5])
    expected = np.linalg.norm(norms * ratios) / np.linalg.norm(norms)  # ||dW|| / ||W||, all Linears
    assert (d.rule, d.layer, d.epoch, d.step) == ("lr-too-small", None, 1, None)
    assert d.value == pytest.approx(expected, rel=1e-12)
    fall = 1 - np.mean([2.290, 2.289, 2.291, 2.290, 2.2895]) / np.mean([2.316, 2.303, 2.302, 2.304, 2.312])
    assert f"fell only {100 * fall:.3g}%" in d.message  # 0.759%
    assert "learning rate" in d.message and "about 100×" in d.message  # 1e-3 / 4.6e-6 = 217
    assert "0.01 instead of 0.0001" in d.message  # the record's lr 1e-4, times 100


@pytest.mark.parametrize(
    "epoch",
    [
        crawling_epoch(update_ratios=(1.2e-5, 1.2e-5, 1.2e-5)),  # updates above 1e-5
        crawling_epoch(loss_tail=(2.28, 2.28, 2.28, 2.28, 2.28)),  # loss falls 1.19%
    ],
)
def test_lr_too_small_silent_near_the_threshold(epoch):
    assert rules_of([epoch]) == []


def test_lr_too_small_silent_when_units_are_dead():
    # the -1 bias net: no update at all (ratio 0), but because its units are dead.
    epoch = crawling_epoch(update_ratios=(0.0, 0.0, 0.0))
    epoch["probe"]["layers"][3]["dead_fraction"] = [1.0] * 10
    assert [d.rule for d in diagnose([epoch])] == ["dead-relu"]


def test_lr_too_small_silent_when_the_signal_vanishes():
    # dead_relu's LeakyReLU net with bias -1: tiny updates, but the signal shrinks 0.19x per
    # layer (1.0 -> 0.19 -> 0.0361), and it is as stuck at lr 1 as at lr 0.01.
    epoch = crawling_epoch()
    epoch["probe"]["layers"] = [
        linear(1, 13.1, 4.4e-6, 10, "Linear(784, 512)"),
        act(2, "leaky_relu", 1.0, 10),
        linear(3, 13.06, 3.5e-6, 10),
        act(4, "leaky_relu", 0.19, 10),
        linear(5, 13.06, 3.5e-6, 10),
        act(6, "leaky_relu", 0.0361, 10),
        linear(7, 1.83, 2.3e-5, 10, "Linear(512, 10)"),
    ]
    assert [d.rule for d in diagnose([epoch])] == ["vanishing-signal"]


# ---------------------------------------------------------------------------------------------
# overfitting


def epochs_with(train, test):
    return [
        {"epoch": e + 1, "train_loss": a, "test_loss": b}
        for e, (a, b) in enumerate(zip(train, test, strict=True))
    ]


def test_overfitting_fires_after_three_rises_of_the_test_loss():
    # mlp_regularization's plain net: test loss drifts up from 0.0587 while train loss -> 5e-4.
    history = epochs_with([0.0021, 0.0012, 0.0008, 0.0005], [0.0587, 0.0595, 0.0610, 0.0624])
    (d,) = diagnose(history)
    assert (d.rule, d.layer, d.epoch, d.step) == ("overfitting", None, 4, None)
    assert d.value == pytest.approx(0.0624 / 0.0587 - 1, rel=1e-12)  # +6.3%
    assert "+6.3%" in d.message
    assert "early stopping" in d.message and "dropout" in d.message and "weight decay" in d.message


@pytest.mark.parametrize(
    ("train", "test"),
    [
        ([0.0021, 0.0012, 0.0008, 0.0005], [0.0587, 0.0600, 0.0598, 0.0624]),  # two rises only
        ([0.20, 0.21, 0.22, 0.23], [0.25, 0.26, 0.27, 0.28]),  # train rises too
        ([0.5, 0.3, 0.2, 0.1], [0.40, 0.30, 0.25, 0.20]),  # healthy
    ],
)
def test_overfitting_silent_near_the_threshold(train, test):
    assert rules_of(epochs_with(train, test)) == []


# ---------------------------------------------------------------------------------------------
# a healthy run, ordering, causality, JSON


def test_healthy_default_mlp_history_is_silent():
    # models.mlp() with SGD momentum: BN keeps the ReLU std ~0.6 in both layers, ~5% of units dead
    # per batch, update ratios ~1e-3, falling batch losses, test loss falling then flat.
    rng = np.random.default_rng(0)
    history = []
    level = 2.3
    for epoch in range(1, 6):
        loss = []
        for _ in range(39):
            level = max(0.02, level * 0.93)
            loss.append(float(level * rng.uniform(0.6, 1.5)))
        rec = record(epoch, loss, healthy_layers(39))
        rec["test_loss"] = [0.11, 0.08, 0.07, 0.068, 0.067][epoch - 1]
        rec["diagnoses"] = []
        history.append(rec)
    assert diagnose(history) == []
    assert diagnose([]) == []


def test_order_and_causality():
    # epoch 1 dead ReLU at step 24 and a loss blow-up at step 36; epoch 2 nothing new but the
    # layer is still dead. Diagnosing the first epoch alone gives the same findings for it.
    first = record(1, [2.3, 2.0, 30.0, 2.0], [act(5, "relu", 0.3, 4, dead_fraction=[0.1, 0.9, 0.9, 0.9])])
    second = record(2, [2.0] * 4, [act(5, "relu", 0.3, 4, dead_fraction=0.9)])
    full = diagnose([first, second])
    assert [(d.rule, d.epoch, d.step) for d in full] == [
        ("dead-relu", 1, 24),
        ("lr-too-large", 1, 36),
        ("dead-relu", 2, 60),
    ]
    assert diagnose([first]) == [d for d in full if d.epoch == 1]


def test_diagnose_reads_a_history_back_from_json():
    # history.json writes NaN as NaN (Python's json) or null (strict writers); both count as NaN.
    loss = [2.3, math.nan]
    rec = record(1, loss)
    back = json.loads(json.dumps([rec]))
    assert rules_of(back) == [("lr-too-large", None, 1, 24)]
    back[0]["probe"]["loss"][1] = None
    assert rules_of(back) == [("lr-too-large", None, 1, 24)]


def test_rules_table():
    assert set(RULES) == {
        "dead-relu",
        "vanishing-signal",
        "exploding-signal",
        "saturation",
        "lr-too-large",
        "lr-too-small",
        "overfitting",
    }
    for rule in RULES.values():
        assert rule.description and rule.threshold and rule.remedy


# ---------------------------------------------------------------------------------------------
# format_diagnosis


def test_format_diagnosis_layer_rule():
    d = Diagnosis("dead-relu", "2 ReLU()", 1, 36, 0.71, "71% of units dead. Try: ELU.")
    assert (
        format_diagnosis(d)
        == "diagnosis epoch 1 step 36 [dead-relu] layer 2 ReLU(): 71% of units dead. Try: ELU."
    )


def test_format_diagnosis_from_a_dict_folds_line_breaks():
    d = {"rule": "overfitting", "layer": None, "epoch": 7, "step": None, "value": 0.06, "message": "a\nb  c"}
    assert format_diagnosis(d) == "diagnosis epoch 7 [overfitting]: a b c"


def test_format_diagnosis_of_real_findings_is_one_line_with_units():
    history = [crawling_epoch(), record(2, [2.3, 2.0, 30.0], [act(5, "relu", 0.3, 3, dead_fraction=0.9)])]
    lines = [format_diagnosis(d) for d in diagnose(history)]
    assert len(lines) == 3
    for line in lines:
        assert "\n" not in line and line.startswith("diagnosis epoch ") and "Try: " in line
        assert "%" in line or "×" in line


# ---------------------------------------------------------------------------------------------
# bad input


def test_record_without_train_loss():
    with pytest.raises(ValueError, match=r"history\[1\] has no 'train_loss'"):
        diagnose([{"epoch": 1, "train_loss": 2.3}, {"epoch": 2, "test_loss": 2.0}])


def test_probe_without_loss_series():
    rec = record(1, [2.3, 2.2])
    del rec["probe"]["loss"]
    with pytest.raises(ValueError, match=r"history\[0\]\['probe'\] has no 'loss' series"):
        diagnose([rec])


def test_relu_layer_without_dead_fraction():
    rec = record(1, [2.3, 2.2], [act(2, "relu", 0.5, 2)])
    with pytest.raises(ValueError, match=r"\['layers'\]\[0\] has no 'dead_fraction' series"):
        diagnose([rec])


def test_layer_without_kind():
    rec = record(1, [2.3, 2.2], [{"index": 2, "name": "ReLU()", "std": [1.0, 1.0]}])
    with pytest.raises(ValueError, match=r"\['layers'\]\[0\] has no 'kind'"):
        diagnose([rec])


def test_series_length_differs_from_step():
    rec = record(1, [2.3, 2.2], [act(2, "tanh", [0.5], 2, saturated_fraction=0.1)])
    with pytest.raises(ValueError, match=r"\['std'\] has 1 entries, but 'step' has 2"):
        diagnose([rec])


def test_series_value_not_a_number():
    rec = record(1, [2.3, 2.2])
    rec["probe"]["loss"][1] = "2.2"
    with pytest.raises(ValueError, match=r"\['loss'\]\[1\] must be a number, got str"):
        diagnose([rec])


def test_probe_not_a_dict():
    with pytest.raises(ValueError, match=r"history\[0\]\['probe'\] must be a dict"):
        diagnose([{"epoch": 1, "train_loss": 2.3, "probe": [1, 2]}])


def test_epoch_not_an_int():
    with pytest.raises(ValueError, match=r"history\[0\]\['epoch'\] must be a 1-based int"):
        diagnose([{"epoch": 0, "train_loss": 2.3}])


def test_history_not_a_list():
    with pytest.raises(TypeError, match="history must be a list of epoch records"):
        diagnose({"epoch": 1, "train_loss": 2.3})


def test_format_diagnosis_dict_missing_a_field():
    with pytest.raises(ValueError, match="diagnosis dict has no 'message'"):
        format_diagnosis({"rule": "overfitting", "layer": None, "epoch": 1, "step": None, "value": 0.1})
