"""The course's rules: read a training history, say what is wrong and what to try.

``diagnose(history)`` reads a history exactly as ``fit`` returns it (a list of epoch
records: ``"epoch"``, ``"train_loss"``, optionally ``"test_loss"``, ``"lr"`` and, with
``fit(probe=True)``, the ``"probe"`` series of issue 11's contract) and returns one
``Diagnosis`` per finding. ``format_diagnosis`` turns one into the line the CLI prints.
The module is pure Python on plain numbers: it never touches an array and imports
nothing else from fnn, so it runs on a ``history.json`` read back from disk too.

Conventions (decisions where the issue is silent):

- **Once per (rule, layer) per epoch, at its first step.** A rule that judges monitored
  points reports the epoch's first point where its condition held as ``step``; a rule
  that judges the epoch as a whole (lr-too-small, overfitting, a non-finite epoch mean)
  has ``step=None``. Model-level rules have ``layer=None``; layer rules name the layer as
  ``"<index> <name>"``, e.g. ``"2 ReLU()"``.
- **A layer's state must persist.** dead-relu, saturation and the signal rules fire for an
  epoch only when their condition holds at *more than half* of the epoch's monitored
  points (so one transient batch does not fire, a layer killed by its init does). Their
  ``value`` is the matching median (the lower median for "above a threshold", the upper
  for "below", so that ``value`` beyond the threshold is exactly "a majority of points
  beyond it"); an epoch with a single point is judged on that point. Points whose value
  is NaN (a diverged step) are left out of the count.
- **Causal.** A diagnosis for epoch ``e`` depends only on the records up to ``e``, so
  diagnosing after every epoch and diagnosing the finished history agree (``fit`` can
  store each epoch's new diagnoses as it goes). lr-too-large reads monitored points only
  when *every* record has them and the epoch means otherwise; the choice is made for the
  whole history.
- **Silent without data.** A rule that needs monitor series says nothing for an epoch
  without ``"probe"``, for layers of other kinds, or for too few points; overfitting
  needs ``"test_loss"``. Keys that no rule reads (``"diagnoses"``, accuracies, times)
  are ignored.
- **Bad input.** A record without ``"train_loss"``, or a malformed ``"probe"`` (a
  missing key, a series whose length differs from ``"step"``, a value that is not a
  number) raises ``ValueError`` naming the record and the key. ``None`` in a series
  counts as NaN (strict JSON writers store NaN that way).

The rules (``RULES`` holds each one's description, threshold and remedy; the numbers are
module constants):

dead-relu
    A ``"relu"`` layer (nn.ReLU only: LeakyReLU/ELU/PReLU still pass gradient) has more
    than ``DEAD_FRACTION`` = 50% of its units dead, i.e. 0 for every sample of a batch,
    at most of the epoch's monitored points. Source: the course's ``dead_relu``
    experiment (a -1 bias shift kills hidden layers 3-6 of a 784-256x6-10 MLP: 80%, then
    100% of their units are 0 on a batch of 128; 0-4% with zero biases); CS231n "Neural Networks Part 1"
    (a large learning rate can kill "as much as 40%" of a network); Maas et al. 2013
    (LeakyReLU), Clevert et al. 2016 (ELU). The issue's threshold is 50%.
vanishing-signal / exploding-signal
    The activation std changes by more than ``SIGNAL_RATIO`` = 2x per layer over depth:
    the per-layer factor is the geometric mean ``(std_last / std_first) ** (1 / (L - 1))``
    over the model's ``L`` activation layers (every kind), the number the course's
    derivation predicts to be constant (Var(y) = fan_in Var(w) E[x^2]) and the one
    ``experiments/README.md`` quotes (ReLU: Xavier 0.71, Kaiming 1.00, N(0, 1) 11.4 per
    layer). Below 1/2 is vanishing, above 2 exploding. It needs ``SIGNAL_MIN_LAYERS`` = 3
    activation layers: the problem is the compounding over depth, and with two the one
    ratio would flag every torch-default-init MLP without BatchNorm (Var(w) = 1/(3 fan_in)
    gives 1/sqrt(6) = 0.41 per ReLU layer; measured 0.41 on ``models.mlp(batch_norm=False)``,
    which trains to 97% at lr 0.1). Points where the first layer's std is 0 or not finite
    are left out (a dead first layer is dead-relu's finding). Measured on the
    initialization experiment's 12-layer nets: ReLU N(0, 1) 11.4, constant 0.01 2.6 and
    Xavier 0.70 per layer, Kaiming 0.95-1.0; tanh Xavier 0.90, Kaiming 0.98. So ReLU with
    N(0, 1) or a constant init fires, Kaiming+ReLU and Xavier+tanh do not. (tanh with
    N(0, 1) or a constant init keeps its std near 1 because every unit sits at +-1: the
    saturation rule catches those.) Source: Glorot & Bengio 2010, He et al. 2015, the
    course's ``initialization`` experiment.
saturation
    A ``"sigmoid"``/``"tanh"`` layer has more than ``SATURATED_FRACTION`` = 50% of its
    outputs saturated (contract: tanh ``|y| > 0.98``, sigmoid ``y < 0.01`` or
    ``y > 0.99``) at most monitored points. Measured: tanh with N(0, 1) weights 90-100% in
    every layer, with constant 0.01 weights 56-100% from layer 3 on; Xavier and Kaiming at
    most 16%. Source: LeCun et al. 1998 "Efficient BackProp", Glorot & Bengio 2010.
lr-too-large
    The training loss (a) becomes non-finite, (b) passes ``LOSS_BLOWUP`` = 10x its start
    (the first point's loss, or the first epoch's mean), or (c) rises over a window: the
    mean over the last ``RISE_WINDOW`` = 5 monitored points exceeds the lowest earlier
    (non-overlapping) window mean by more than ``RISE_FRACTION`` = 50% of the start loss;
    or (d) a monitored step moves the Linear weights by more than their own norm (the
    model's update ratio, defined under lr-too-small, above ``MAX_UPDATE`` = 1, 1000x the
    healthy 1e-3); or (e) the record's gradient norm is non-finite while its loss is not
    (what ``fit`` records of an epoch that diverged by an overflowing gradient,
    ``TrainingDiverged.record``). Without monitor points the window of (c) is one epoch mean. (b) and
    (c) need a positive start loss; (c) is measured against the start, not against the
    low, because late batch losses near 0 are noisy by large factors. (d) is there
    because the loss can blow up before the first monitored point and then fall back,
    leaving no sane start to compare to: the default MLP (BatchNorm) with SGD lr 50 has
    loss 4.4e13 at step 12, the first point, then 9-22 with most units dead, and update
    ratio 3.8 at step 12; healthy runs peak at 0.07 (SGD lr 0.05, momentum 0.9) and 0.03
    (lr 1, momentum 0.9). (A model whose Linear weights all start at 0, monitored every
    step, has ratios of 1-2 at step 2: monitor it less often.) When several hold in one
    epoch the earliest step is reported; ``value`` is the loss that fired (the window
    mean for (c), the update ratio for (d)). Source: the course's ``learning_rates``
    experiment (lr 10: x1e26 within 7 steps; lr 1 oscillates 2.3 -> 9.9 -> 41 before
    NaN); CS231n "Neural Networks Part 3" (the update ratio).
lr-too-small
    Over epoch 1 the loss falls by less than ``SMALL_FALL`` = 1% (mean of its first 5
    monitored points against the mean of its last 5; with fewer than 10 points, of its
    first and last halves) *and* the model's update ratio over all Linear weights
    together, ``sqrt(sum((update_ratio * weight_norm) ** 2) / sum(weight_norm ** 2))``
    over the Linear layers, stays below ``SMALL_UPDATE`` = 1e-5 at every point (one
    number for the model: the last Linear of an MLP has a 5x larger ratio than the
    others, measured 2.3e-5 against 4e-6 at lr 1e-4); ``value`` is its largest point.
    Silent when dead-relu or vanishing-signal fires in epoch 1: dead units and a vanishing
    signal also stop the updates, and a larger step revives neither (the -1 bias ReLU net's
    ratio is exactly 0; the -1 bias LeakyReLU net, 0.19x per layer, is as stuck at lr 1 as
    at lr 0.01). Measured on
    ``models.mlp(batch_norm=False)``, plain SGD: lr 1e-4 falls 0.76% with ratio <= 5.5e-6
    (fires); lr 1e-3 falls 7.7% with ratio ~5e-5; the default MLP at lr 0.05 ~5e-3.
    Source: the course's ``learning_rates`` experiment; CS231n "Neural Networks Part 3"
    (update/weight ratio ~1e-3); Smith 2015, the LR range test (``lr_find``).
overfitting
    The test loss rose in each of ``OVERFIT_EPOCHS`` = 3 consecutive epochs (4 records)
    while the train loss fell over the same epochs (last below first: a train loss near 0
    may wobble from epoch to epoch). Fires at every epoch where it holds; ``value`` is
    the test loss's relative rise over the window. Source: Prechelt 1998 "Early stopping
    - but when?" (criterion UP_s: s successive rises of the validation error); the
    course's ``mlp_regularization`` experiment; Srivastava et al. 2014 (dropout), Krogh &
    Hertz 1992 (weight decay).
"""

from __future__ import annotations

import itertools
import math
import numbers
import statistics
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

DEAD_FRACTION = 0.5
SATURATED_FRACTION = 0.5
SIGNAL_RATIO = 2.0
SIGNAL_MIN_LAYERS = 3
LOSS_BLOWUP = 10.0
RISE_WINDOW = 5
RISE_FRACTION = 0.5
SMALL_FALL = 0.01
SMALL_UPDATE = 1e-5
MAX_UPDATE = 1.0
HEALTHY_UPDATE = 1e-3
OVERFIT_EPOCHS = 3

# Contract (issue 11): the activation kinds, and the series each kind must carry that a rule reads.
ACTIVATION_KINDS = ("relu", "leaky_relu", "elu", "prelu", "tanh", "sigmoid", "activation")
_REQUIRED_SERIES = {
    "linear": ("weight_norm", "update_ratio"),
    "relu": ("std", "dead_fraction"),
    "tanh": ("std", "saturated_fraction"),
    "sigmoid": ("std", "saturated_fraction"),
    "leaky_relu": ("std",),
    "elu": ("std",),
    "prelu": ("std",),
    "activation": ("std",),
}


class Diagnosis(NamedTuple):
    """One finding of one rule (issue 11's contract).

    Attributes:
        rule: a key of ``RULES``, e.g. ``"dead-relu"``.
        layer: ``"<index> <name>"`` of the layer, e.g. ``"2 ReLU()"``; None for model-level rules.
        epoch: the 1-based epoch where it was found.
        step: the global 1-based step of the first point that fired; None for epoch-level rules.
        value: the measured number the rule judged (see the module docstring).
        message: one plain sentence of what was seen, with units, then ``Try:`` and the remedies.
    """

    rule: str
    layer: str | None
    epoch: int
    step: int | None
    value: float
    message: str


class Rule(NamedTuple):
    """A rule's documentation, as ``RULES`` holds it.

    Attributes:
        description: what the rule looks at, in a few words.
        threshold: when it fires, with the numbers.
        remedy: what to try, the text after ``Try:`` in each message.
    """

    description: str
    threshold: str
    remedy: str


_INIT_REMEDY = (
    "Kaiming init for ReLU layers (models.mlp(init='kaiming')), Xavier for tanh/sigmoid, or BatchNorm"
)
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        "dead-relu": Rule(
            "ReLU units that output 0 for every sample of a batch get no gradient and stop learning",
            f"more than {DEAD_FRACTION:.0%} of a ReLU layer's units dead at most of an epoch's "
            "monitored points",
            "lower the learning rate, use LeakyReLU or ELU, check the init (a negative bias shift "
            "or a constant weight init kills units)",
        ),
        "vanishing-signal": Rule(
            "the activation std shrinks from layer to layer, so deep layers see (and pass back) "
            "almost nothing",
            f"activation std shrinks by more than {SIGNAL_RATIO:g}× per layer (geometric mean over "
            f"{SIGNAL_MIN_LAYERS} or more activation layers) at most monitored points",
            _INIT_REMEDY,
        ),
        "exploding-signal": Rule(
            "the activation std grows from layer to layer, so deep layers blow up or saturate",
            f"activation std grows by more than {SIGNAL_RATIO:g}× per layer (geometric mean over "
            f"{SIGNAL_MIN_LAYERS} or more activation layers) at most monitored points",
            _INIT_REMEDY,
        ),
        "saturation": Rule(
            "sigmoid/tanh outputs stuck at their limits, where the derivative is nearly 0",
            f"more than {SATURATED_FRACTION:.0%} of a sigmoid/tanh layer's outputs saturated at most "
            "monitored points",
            "Xavier init (smaller weights), normalize the inputs, BatchNorm before the activation, "
            "or ReLU in hidden layers",
        ),
        "lr-too-large": Rule(
            "steps overshoot: the training loss blows up or climbs",
            f"the training loss becomes non-finite, passes {LOSS_BLOWUP:g}× its start, or its "
            f"{RISE_WINDOW}-point mean rises above an earlier low by more than {RISE_FRACTION:.0%} "
            f"of the start; or a step's update ratio ‖Δw‖/‖w‖ exceeds {MAX_UPDATE:g}",
            "a 10× smaller learning rate (lr_find suggests one), gradient clipping or a warm-up",
        ),
        "lr-too-small": Rule(
            "steps too small: the loss crawls",
            f"the training loss falls by less than {SMALL_FALL:.0%} over epoch 1 and the update ratio "
            f"‖Δw‖/‖w‖ stays below {SMALL_UPDATE:g}",
            "a larger learning rate (lr_find suggests one)",
        ),
        "overfitting": Rule(
            "the model memorizes the training set: test loss up, train loss down",
            f"the test loss rises in {OVERFIT_EPOCHS} consecutive epochs while the train loss falls",
            "early stopping (train.EarlyStopping, or fit(keep_best='test_loss')), dropout, weight decay",
        ),
    }
)
_RULE_ORDER = {name: i for i, name in enumerate(RULES)}


# ---------------------------------------------------------------------------------------------
# Reading and checking a history


class _Layer(NamedTuple):
    index: int
    label: str  # "<index> <name>"
    kind: str
    series: dict[str, list[float]]


class _Probe(NamedTuple):
    steps: list[int]
    loss: list[float]
    layers: list[_Layer]


class _Epoch(NamedTuple):
    epoch: int
    train_loss: float
    test_loss: float | None
    lr: float | None
    monitor: _Probe | None
    grad_norm: float | None = None


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _series(container: Mapping, key: str, where: str, length: int | None) -> list[float]:
    if key not in container:
        raise ValueError(f"{where} has no {key!r} series")
    values = container[key]
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ValueError(f"{where}[{key!r}] must be a list, got {type(values).__name__}")
    if length is not None and len(values) != length:
        raise ValueError(f"{where}[{key!r}] has {len(values)} entries, but 'step' has {length}")
    return [_number(v, f"{where}[{key!r}][{i}]") for i, v in enumerate(values)]


def _read_monitor(monitor: Any, where: str) -> _Probe:
    if not isinstance(monitor, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(monitor).__name__}")
    steps = _series(monitor, "step", where, None)
    if not all(math.isfinite(s) and s == int(s) and s >= 1 for s in steps):
        raise ValueError(f"{where}['step'] must hold global 1-based step numbers, got {steps}")
    n = len(steps)
    loss = _series(monitor, "loss", where, n)
    layers_in = monitor.get("layers", [])
    if isinstance(layers_in, str | bytes) or not isinstance(layers_in, Sequence):
        raise ValueError(f"{where}['layers'] must be a list, got {type(layers_in).__name__}")
    layers = []
    for j, entry in enumerate(layers_in):
        at = f"{where}['layers'][{j}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{at} must be a dict, got {type(entry).__name__}")
        for key, kind, kind_name in (
            ("index", numbers.Integral, "an int"),
            ("name", str, "a str"),
            ("kind", str, "a str"),
        ):
            if key not in entry:
                raise ValueError(f"{at} has no {key!r}")
            if isinstance(entry[key], bool) or not isinstance(entry[key], kind):
                raise ValueError(f"{at}[{key!r}] must be {kind_name}, got {entry[key]!r}")
        series = {key: _series(entry, key, at, n) for key in _REQUIRED_SERIES.get(entry["kind"], ())}
        for key, values in entry.items():  # the other series must line up with 'step' too
            if key not in series and isinstance(values, list):
                series[key] = _series(entry, key, at, n)
        layers.append(_Layer(int(entry["index"]), f"{entry['index']} {entry['name']}", entry["kind"], series))
    return _Probe([int(s) for s in steps], loss, layers)


def _read(history: Any) -> list[_Epoch]:
    if isinstance(history, Mapping | str | bytes) or not isinstance(history, Sequence):
        raise TypeError(f"history must be a list of epoch records (dicts), got {type(history).__name__}")
    epochs = []
    for i, record in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(record, Mapping):
            raise TypeError(f"{where} must be an epoch record (dict), got {type(record).__name__}")
        if "train_loss" not in record:
            raise ValueError(f"{where} has no 'train_loss' (every epoch record of fit has one)")
        epoch = record.get("epoch", i + 1)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"{where}['epoch'] must be a 1-based int, got {epoch!r}")
        train_loss = _number(record["train_loss"], f"{where}['train_loss']")
        test_loss = _number(record["test_loss"], f"{where}['test_loss']") if "test_loss" in record else None
        lr = _number(record["lr"], f"{where}['lr']") if record.get("lr") is not None else None
        monitor = _read_monitor(record["probe"], f"{where}['probe']") if "probe" in record else None
        grad_norm = record.get("grad_norm")
        grad_norm = _number(grad_norm, f"{where}['grad_norm']") if grad_norm is not None else None
        epochs.append(_Epoch(epoch, train_loss, test_loss, lr, monitor, grad_norm))
    return epochs


# ---------------------------------------------------------------------------------------------
# Formatting helpers: numbers with units, no newlines


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def _times(x: float) -> str:
    return f"{x:.3g}×"


def _num(x: float) -> str:
    return f"{x:.4g}"


def _steps(n: int) -> str:
    return f"{n} monitored step" + ("" if n == 1 else "s")


def _message(rule: str, seen: str) -> str:
    return f"{seen}. Try: {RULES[rule].remedy}."


# ---------------------------------------------------------------------------------------------
# The rules


def _persistent(values: list[float], threshold: float, above: bool) -> tuple[float, int] | None:
    """(median, position of the first point beyond the threshold) when more than half of the
    non-NaN ``values`` are beyond ``threshold``; None otherwise."""
    points = [(j, v) for j, v in enumerate(values) if not math.isnan(v)]
    if not points:
        return None
    kept = [v for _, v in points]
    if above:
        median = statistics.median_low(kept)
        return (median, next(j for j, v in points if v > threshold)) if median > threshold else None
    median = statistics.median_high(kept)
    return (median, next(j for j, v in points if v < threshold)) if median < threshold else None


def _count(values: list[float], threshold: float, above: bool) -> tuple[int, int]:
    kept = [v for v in values if not math.isnan(v)]
    return sum((v > threshold) if above else (v < threshold) for v in kept), len(kept)


def _layer_fraction_rules(epochs: list[_Epoch]) -> list[Diagnosis]:
    found = []
    checks = (
        (
            "dead-relu",
            ("relu",),
            "dead_fraction",
            DEAD_FRACTION,
            "of units dead (0 for every sample of a batch)",
        ),
        ("saturation", ("tanh", "sigmoid"), "saturated_fraction", SATURATED_FRACTION, "of outputs saturated"),
    )
    for ep in epochs:
        if ep.monitor is None:
            continue
        for layer in ep.monitor.layers:
            for rule, kinds, key, threshold, what in checks:
                if layer.kind not in kinds:
                    continue
                values = layer.series[key]
                hit = _persistent(values, threshold, above=True)
                if hit is None:
                    continue
                median, first = hit
                k, n = _count(values, threshold, above=True)
                seen = (
                    f"{_pct(median)} {what}; median of the epoch's {_steps(n)}, over "
                    f"{_pct(threshold)} at {k} of {n}"
                )
                found.append(
                    Diagnosis(
                        rule, layer.label, ep.epoch, ep.monitor.steps[first], median, _message(rule, seen)
                    )
                )
    return found


def _signal_rules(epochs: list[_Epoch]) -> list[Diagnosis]:
    found = []
    for ep in epochs:
        if ep.monitor is None:
            continue
        acts = [layer for layer in ep.monitor.layers if layer.kind in ACTIVATION_KINDS]
        if len(acts) < SIGNAL_MIN_LAYERS:
            continue
        first, last = acts[0], acts[-1]
        ratios = []
        for s0, s1 in zip(first.series["std"], last.series["std"], strict=True):
            if not (math.isfinite(s0) and s0 > 0) or math.isnan(s1):
                ratios.append(math.nan)
            else:
                ratios.append((s1 / s0) ** (1 / (len(acts) - 1)))
        for rule, threshold, above, verb, side in (
            ("vanishing-signal", 1 / SIGNAL_RATIO, False, "shrinks", "below"),
            ("exploding-signal", SIGNAL_RATIO, True, "grows", "above"),
        ):
            hit = _persistent(ratios, threshold, above)
            if hit is None:
                continue
            median, j = hit
            k, n = _count(ratios, threshold, above)
            seen = (
                f"the activation std {verb} {_times(median)} per layer (geometric mean over "
                f"{len(acts)} activation layers; median of the epoch's {_steps(n)}, {side} "
                f"{_times(threshold)} at {k} of {n}): at step {ep.monitor.steps[j]} it went from "
                f"{_num(first.series['std'][j])} (layer {first.label}) to "
                f"{_num(last.series['std'][j])} (layer {last.label})"
            )
            found.append(Diagnosis(rule, None, ep.epoch, ep.monitor.steps[j], median, _message(rule, seen)))
    return found


def _lr_too_large(epochs: list[_Epoch]) -> list[Diagnosis]:
    points = all(ep.monitor is not None and ep.monitor.steps for ep in epochs)
    if points:  # (epoch index, step, loss) over the whole run
        series = [
            (e, s, v)
            for e, ep in enumerate(epochs)
            for s, v in zip(ep.monitor.steps, ep.monitor.loss, strict=True)
        ]
        window = RISE_WINDOW
    else:
        series = [(e, None, ep.train_loss) for e, ep in enumerate(epochs)]
        window = 1
    if not series:
        return []
    start = series[0][2]
    scale = start if math.isfinite(start) and start > 0 else None
    # epoch index -> (step, priority, value, what seen); the earliest step wins, then the priority
    fired: dict[int, tuple[int | None, int, float, str]] = {}

    def fire(e: int, step: int | None, priority: int, value: float, what: str) -> None:
        key = (math.inf if step is None else step, priority)
        if e not in fired or key < (math.inf if fired[e][0] is None else fired[e][0], fired[e][1]):
            fired[e] = (step, priority, value, what)

    means: list[float] = []  # means[j]: mean of the window ending at point j (NaN if incomplete)
    low = math.inf  # lowest window mean ending at least one window before the current point
    for j, (e, step, loss) in enumerate(series):
        tail = [v for _, _, v in series[max(0, j - window + 1) : j + 1]]
        means.append(sum(tail) / window if len(tail) == window else math.nan)
        if j >= window and math.isfinite(means[j - window]):
            low = min(low, means[j - window])
        at = f" at step {step}" if step is not None else f" in epoch {epochs[e].epoch}"
        if not math.isfinite(loss):
            fire(e, step, 0, loss, f"the training loss became non-finite ({loss}){at}")
        elif scale is not None and loss > LOSS_BLOWUP * scale:
            what = (
                f"the training loss reached {_num(loss)}{at}, {_times(loss / scale)} its start {_num(start)}"
            )
            fire(e, step, 1, loss, what)
        elif scale is not None and math.isfinite(means[j]) and means[j] - low > RISE_FRACTION * scale:
            mean_of = f"a {window}-point mean" if window > 1 else "an epoch mean"
            rise = _pct((means[j] - low) / scale)
            what = (
                f"the training loss climbed to {mean_of} of {_num(means[j])}{at}, up from an earlier "
                f"low of {_num(low)} (a rise of {rise} of its start {_num(start)})"
            )
            fire(e, step, 3, means[j], what)
    for e, ep in enumerate(epochs):
        if ep.monitor is not None:  # a step that moved the weights by more than their own norm
            for j, step in enumerate(ep.monitor.steps):
                ratio = _model_update_ratio(ep.monitor.layers, j)
                if math.isfinite(ratio) and ratio > MAX_UPDATE:
                    what = (
                        f"the update ratio ‖Δw‖/‖w‖ of the Linear weights was {_num(ratio)} at step {step}, "
                        f"a step larger than the weights themselves (healthy is ~{HEALTHY_UPDATE:g})"
                    )
                    fire(e, step, 2, ratio, what)
                    break
        if not math.isfinite(ep.train_loss):  # also when no monitored point showed it
            fire(e, None, 0, ep.train_loss, f"the epoch's mean training loss is non-finite ({ep.train_loss})")
        elif ep.grad_norm is not None and not math.isfinite(ep.grad_norm):  # (e): a finite loss
            fire(e, None, 0, ep.grad_norm, f"the gradient norm became non-finite ({ep.grad_norm})")
    found = []
    for e, (step, _, value, what) in sorted(fired.items()):
        lr = epochs[e].lr
        here = (
            f" (the epoch's last learning rate was {lr:.3g}: try {lr / 10:.3g})"
            if lr is not None and lr > 0
            else ""
        )
        message = f"{what}: the learning rate is too large. Try: {RULES['lr-too-large'].remedy}{here}."
        found.append(Diagnosis("lr-too-large", None, epochs[e].epoch, step, value, message))
    return found


def _model_update_ratio(layers: list[_Layer], j: int) -> float:
    """‖Δw‖/‖w‖ of all Linear weights together at point ``j`` (NaN without Linears)."""
    linears = [layer for layer in layers if layer.kind == "linear"]
    delta = sum((layer.series["update_ratio"][j] * layer.series["weight_norm"][j]) ** 2 for layer in linears)
    norm = sum(layer.series["weight_norm"][j] ** 2 for layer in linears)
    return math.sqrt(delta / norm) if norm > 0 else math.nan


def _lr_too_small(epochs: list[_Epoch], stuck_epochs: set[int]) -> list[Diagnosis]:
    ep = next((ep for ep in epochs if ep.epoch == 1), None)
    if ep is None or ep.monitor is None or ep.epoch in stuck_epochs:
        return []
    mon = ep.monitor
    n = len(mon.steps)
    if n < 2 or not any(layer.kind == "linear" for layer in mon.layers):
        return []
    w = min(RISE_WINDOW, n // 2)
    head, tail = sum(mon.loss[:w]) / w, sum(mon.loss[-w:]) / w
    ratios = [_model_update_ratio(mon.layers, j) for j in range(n)]
    if not (math.isfinite(head) and math.isfinite(tail) and head > 0) or not all(map(math.isfinite, ratios)):
        return []
    fall, largest = 1 - tail / head, max(ratios)
    if fall >= SMALL_FALL or largest >= SMALL_UPDATE:
        return []
    factor = HEALTHY_UPDATE / largest if largest > 0 else math.inf
    how = ""
    if math.isfinite(factor) and factor >= 10:
        factor = 10 ** round(math.log10(factor))
        how = f"; about {factor:g}× would bring the update ratio near {HEALTHY_UPDATE:g}"
        if ep.lr is not None and ep.lr > 0:
            how += f" ({ep.lr * factor:.3g} instead of {ep.lr:.3g})"
    seen = (
        f"over epoch 1 the training loss fell only {_pct(fall)} ({w}-point means {_num(head)} → "
        f"{_num(tail)}) and the update ratio ‖Δw‖/‖w‖ of the Linear weights stayed at or below "
        f"{largest:.2g} (healthy is ~{HEALTHY_UPDATE:g}): the learning rate is too small"
    )
    message = f"{seen}. Try: {RULES['lr-too-small'].remedy}{how}."
    return [Diagnosis("lr-too-small", None, ep.epoch, None, largest, message)]


def _overfitting(epochs: list[_Epoch]) -> list[Diagnosis]:
    found = []
    k = OVERFIT_EPOCHS
    for i in range(k, len(epochs)):
        window = epochs[i - k : i + 1]
        test = [ep.test_loss for ep in window]
        train = [ep.train_loss for ep in window]
        if any(t is None or not math.isfinite(t) for t in test) or not all(map(math.isfinite, train)):
            continue
        if all(b > a for a, b in itertools.pairwise(test)) and train[-1] < train[0]:
            rise = test[-1] / test[0] - 1 if test[0] > 0 else math.inf
            seen = (
                f"the test loss rose in each of the last {k} epochs, {_num(test[0])} → {_num(test[-1])} "
                f"(+{_pct(rise)}), while the train loss fell, {_num(train[0])} → {_num(train[-1])}: "
                "the model is overfitting"
            )
            found.append(
                Diagnosis("overfitting", None, epochs[i].epoch, None, rise, _message("overfitting", seen))
            )
    return found


def diagnose(history: Sequence[Mapping[str, Any]]) -> list[Diagnosis]:
    """Every diagnosis the course's rules make on a training history.

    Pure: it reads ``history`` and returns new values. The rules, thresholds and the
    choices behind them are in the module docstring and in ``RULES``.

    Args:
        history: the epoch records, as ``fit`` returns them (``FitResult.history``) or as
            ``history.json`` holds them: each a dict with ``"train_loss"`` and optionally
            ``"epoch"`` (default: its 1-based position), ``"test_loss"``, ``"lr"`` and
            ``"probe"`` (issue 11's series).

    Returns:
        The diagnoses, ordered by epoch, then step (epoch-level ones last), then rule
        (in ``RULES`` order), then layer index. Empty for a healthy run.

    Raises:
        TypeError: ``history`` is not a list of dicts.
        ValueError: a record without ``"train_loss"``, or a malformed ``"probe"``; the
            message names the record and the key.

    Example:
        >>> history = [{"epoch": 1, "train_loss": 2.3}, {"epoch": 2, "train_loss": 41.0}]
        >>> [(d.rule, d.epoch, d.value) for d in diagnose(history)]
        [('lr-too-large', 2, 41.0)]
    """
    epochs = _read(history)
    found = _layer_fraction_rules(epochs)
    signal = _signal_rules(epochs)
    # Dead units and a vanishing signal stop the updates too, and a larger step revives neither.
    stuck = {d.epoch for d in found + signal if d.rule in ("dead-relu", "vanishing-signal")}
    found += signal + _lr_too_large(epochs) + _lr_too_small(epochs, stuck)
    found += _overfitting(epochs)

    def order(d: Diagnosis) -> tuple:
        layer_index = int(d.layer.split(" ", 1)[0]) if d.layer else -1
        return (d.epoch, math.inf if d.step is None else d.step, _RULE_ORDER[d.rule], layer_index)

    return sorted(found, key=order)


def format_diagnosis(d: Diagnosis | Mapping[str, Any]) -> str:
    """The one readable line the CLI prints for a diagnosis.

    ``diagnosis epoch E [step S] [RULE] [layer L]: MESSAGE``, with any line breaks in the
    message folded into spaces, so it is always one line.

    Args:
        d: a ``Diagnosis``, or its ``_asdict()`` as ``history.json`` and
            ``diagnostics.json`` store it.

    Returns:
        The line, without a trailing newline.

    Raises:
        ValueError: a dict without one of ``Diagnosis``'s fields (the message names it).

    Example:
        >>> d = Diagnosis("overfitting", None, 7, None, 0.063, "the test loss rose. Try: dropout.")
        >>> format_diagnosis(d)
        'diagnosis epoch 7 [overfitting]: the test loss rose. Try: dropout.'
    """
    if not isinstance(d, Diagnosis):
        if not isinstance(d, Mapping):
            raise TypeError(f"expected a Diagnosis or a dict, got {type(d).__name__}")
        missing = [f for f in Diagnosis._fields if f not in d]
        if missing:
            raise ValueError(f"diagnosis dict has no {missing[0]!r} (fields: {', '.join(Diagnosis._fields)})")
        d = Diagnosis(**{f: d[f] for f in Diagnosis._fields})
    step = f" step {d.step}" if d.step is not None else ""
    layer = f" layer {d.layer}" if d.layer else ""
    message = " ".join(str(d.message).split())
    return f"diagnosis epoch {d.epoch}{step} [{d.rule}]{layer}: {message}"
