"""The course's rules: read a training history, say what is wrong and what to try.

``diagnose(history)`` reads the epoch records ``fit`` returns (``"epoch"``,
``"train_loss"``, optionally ``"test_loss"``, ``"lr"``, ``"grad_norm"`` and, with
``fit(probe=True)``, the ``"probe"`` series of ``fnn.diagnostics.Probe``) and returns one
``Diagnosis`` per finding; ``format_diagnosis`` turns one into the line the CLI prints.
``RULES`` documents each rule (what it looks at, when it fires, what to try); thresholds
are the module's constants, and each rule's exact definition is its function's docstring.
It works on plain Python numbers, so it reads a ``history.json`` from disk as well.

- **Once per (rule, layer) per epoch.** A rule on probed points reports the epoch's first
  point where its condition held as ``step``; a rule on the epoch as a whole has
  ``step=None``. Layer rules name the layer ``"<index> <name>"``, others ``layer=None``.
- **A layer's state must persist.** dead-relu, saturation and the signal rules fire when
  their condition holds at more than half of the epoch's probed points (NaN points left
  out; one point decides alone). ``value`` is the matching median: the lower one above a
  threshold, the upper one below, so it is beyond the threshold exactly when most are.
- **Causal.** Epoch ``e``'s findings read only the records up to ``e``, so diagnosing
  after each epoch and diagnosing the finished history agree.
- **Silent without data.** A rule says nothing where its series or ``"test_loss"`` are
  missing; keys no rule reads are ignored.
- **Bad input.** A record without ``"train_loss"`` or a malformed ``"probe"`` raises
  ``ValueError`` naming the record and the key; ``None`` in a series counts as NaN.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from fnn._checks import is_int, is_real

__all__ = [
    "ACTIVATION_KINDS",
    "DEAD_FRACTION",
    "HEALTHY_UPDATE",
    "LOSS_BLOWUP",
    "MAX_UPDATE",
    "OVERFIT_EPOCHS",
    "RISE_FRACTION",
    "RISE_WINDOW",
    "RULES",
    "SATURATED_FRACTION",
    "SIGNAL_MIN_LAYERS",
    "SIGNAL_RATIO",
    "SMALL_FALL",
    "SMALL_UPDATE",
    "WEIGHT_KINDS",
    "Diagnosis",
    "Rule",
    "diagnose",
    "format_diagnosis",
]

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

# The probe's activation kinds, and the series of each kind that a rule reads.
ACTIVATION_KINDS = ("relu", "leaky_relu", "elu", "prelu", "tanh", "sigmoid", "saturating", "activation")
# The kinds with a weight whose update ratio the learning-rate rules read.
WEIGHT_KINDS = ("linear", "conv")
_REQUIRED_SERIES = {
    "linear": ("weight_norm", "update_ratio"),
    "conv": ("weight_norm", "update_ratio"),
    "relu": ("std", "dead_fraction"),
    "tanh": ("std", "saturated_fraction"),
    "sigmoid": ("std", "saturated_fraction"),
    "saturating": ("std", "saturated_fraction"),
    "leaky_relu": ("std",),
    "elu": ("std",),
    "prelu": ("std",),
    "activation": ("std",),
}


class Diagnosis(NamedTuple):
    """One finding of one rule.

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
            "ReLU units (after a convolution: channels) that output 0 for every sample (and "
            "position) of a batch get no gradient and stop learning",
            f"more than {DEAD_FRACTION:.0%} of a ReLU layer's units (channels) dead at most of an "
            "epoch's probed points",
            "lower the learning rate, use LeakyReLU or ELU, check the init (a negative bias shift "
            "or a constant weight init kills units)",
        ),
        "vanishing-signal": Rule(
            "the activation std shrinks from layer to layer, so deep layers see (and pass back) "
            "almost nothing",
            f"activation std shrinks by more than {SIGNAL_RATIO:g}× per layer (geometric mean over "
            f"{SIGNAL_MIN_LAYERS} or more activation layers) at most probed points",
            _INIT_REMEDY,
        ),
        "exploding-signal": Rule(
            "the activation std grows from layer to layer, so deep layers blow up or saturate",
            f"activation std grows by more than {SIGNAL_RATIO:g}× per layer (geometric mean over "
            f"{SIGNAL_MIN_LAYERS} or more activation layers) at most probed points",
            _INIT_REMEDY,
        ),
        "saturation": Rule(
            "sigmoid/tanh outputs stuck at their limits, where the derivative is nearly 0",
            f"more than {SATURATED_FRACTION:.0%} of a sigmoid/tanh (or other bounded activation) "
            "layer's outputs within 1% of its output range of a limit at most probed points",
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
    unit: str = "unit"  # "channel" in a conv net's feature maps


class _Probe(NamedTuple):
    steps: list[int]
    loss: list[float]
    layers: list[_Layer]


class _Epoch(NamedTuple):
    epoch: int
    train_loss: float
    test_loss: float | None
    lr: float | None
    probe: _Probe | None
    grad_norm: float | None = None


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _number(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if not is_real(value):
        raise ValueError(f"{where} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _optional_number(record: Mapping, key: str, where: str) -> float | None:
    value = record.get(key)
    return None if value is None else _number(value, f"{where}[{key!r}]")


def _series(container: Mapping, key: str, where: str, length: int | None) -> list[float]:
    if key not in container:
        raise ValueError(f"{where} has no {key!r} series")
    values = container[key]
    if not _is_list(values):
        raise ValueError(f"{where}[{key!r}] must be a list, got {type(values).__name__}")
    if length is not None and len(values) != length:
        raise ValueError(f"{where}[{key!r}] has {len(values)} entries, but 'step' has {length}")
    return [_number(v, f"{where}[{key!r}][{i}]") for i, v in enumerate(values)]


_LAYER_FIELDS = (
    ("index", is_int, "an int"),
    ("name", lambda v: isinstance(v, str), "a str"),
    ("kind", lambda v: isinstance(v, str), "a str"),
)


def _read_layer(entry: Any, at: str, n: int) -> _Layer:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{at} must be a dict, got {type(entry).__name__}")
    for key, valid, kind_name in _LAYER_FIELDS:
        if key not in entry:
            raise ValueError(f"{at} has no {key!r}")
        if not valid(entry[key]):
            raise ValueError(f"{at}[{key!r}] must be {kind_name}, got {entry[key]!r}")
    series = {key: _series(entry, key, at, n) for key in _REQUIRED_SERIES.get(entry["kind"], ())}
    for key, values in entry.items():  # the other series must line up with 'step' too
        if key not in series and isinstance(values, list):
            series[key] = _series(entry, key, at, n)
    unit = entry.get("unit", "unit")
    if unit not in ("unit", "channel"):
        raise ValueError(f"{at}['unit'] must be 'unit' or 'channel', got {unit!r}")
    return _Layer(int(entry["index"]), f"{entry['index']} {entry['name']}", entry["kind"], series, unit)


def _read_probe(probe: Any, where: str) -> _Probe:
    if not isinstance(probe, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(probe).__name__}")
    steps = _series(probe, "step", where, None)
    if not all(math.isfinite(s) and s == int(s) and s >= 1 for s in steps):
        raise ValueError(f"{where}['step'] must hold global 1-based step numbers, got {steps}")
    n = len(steps)
    loss = _series(probe, "loss", where, n)
    layers = probe.get("layers", [])
    if not _is_list(layers):
        raise ValueError(f"{where}['layers'] must be a list, got {type(layers).__name__}")
    read = [_read_layer(entry, f"{where}['layers'][{j}]", n) for j, entry in enumerate(layers)]
    return _Probe([int(s) for s in steps], loss, read)


def _read_record(record: Any, i: int) -> _Epoch:
    where = f"history[{i}]"
    if not isinstance(record, Mapping):
        raise TypeError(f"{where} must be an epoch record (dict), got {type(record).__name__}")
    if "train_loss" not in record:
        raise ValueError(f"{where} has no 'train_loss' (every epoch record of fit has one)")
    epoch = record.get("epoch", i + 1)
    if not is_int(epoch) or epoch < 1:
        raise ValueError(f"{where}['epoch'] must be a 1-based int, got {epoch!r}")
    train_loss = _number(record["train_loss"], f"{where}['train_loss']")
    test_loss = _number(record["test_loss"], f"{where}['test_loss']") if "test_loss" in record else None
    probe = _read_probe(record["probe"], f"{where}['probe']") if "probe" in record else None
    lr, grad_norm = _optional_number(record, "lr", where), _optional_number(record, "grad_norm", where)
    return _Epoch(int(epoch), train_loss, test_loss, lr, probe, grad_norm)


def _read(history: Any) -> list[_Epoch]:
    if isinstance(history, Mapping) or not _is_list(history):
        raise TypeError(f"history must be a list of epoch records (dicts), got {type(history).__name__}")
    return [_read_record(record, i) for i, record in enumerate(history)]


# ---------------------------------------------------------------------------------------------
# Formatting helpers: numbers with units, no newlines


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def _times(x: float) -> str:
    return f"{x:.3g}×"


def _num(x: float) -> str:
    return f"{x:.4g}"


def _steps(n: int) -> str:
    return f"{n} probed step" + ("" if n == 1 else "s")


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


def _probed(epochs: list[_Epoch]) -> Iterator[tuple[_Epoch, _Probe]]:
    return ((ep, ep.probe) for ep in epochs if ep.probe is not None)


# (rule, layer kinds, series, threshold, what the fraction counts, by the layer's unit)
_FRACTION_RULES = (
    (
        "dead-relu",
        ("relu",),
        "dead_fraction",
        DEAD_FRACTION,
        {
            "unit": "of units dead (0 for every sample of a batch)",
            "channel": "of channels dead (0 for every sample and position of a batch)",
        },
    ),
    (
        "saturation",
        ("tanh", "sigmoid", "saturating"),
        "saturated_fraction",
        SATURATED_FRACTION,
        {"unit": "of outputs saturated", "channel": "of outputs saturated"},
    ),
)


def _layer_fraction_rules(epochs: list[_Epoch]) -> list[Diagnosis]:
    """dead-relu and saturation, per layer and epoch.

    dead-relu: an ``"relu"`` layer (nn.ReLU only: LeakyReLU, ELU and PReLU still pass
    gradient) has more than ``DEAD_FRACTION`` of its units dead (0 for every sample of the
    batch; a layer marked ``"unit": "channel"`` counts channels, dead when 0 for every sample
    and position) at most of the epoch's probed points. saturation: a ``"sigmoid"``,
    ``"tanh"`` or ``"saturating"`` layer has more than ``SATURATED_FRACTION`` of its outputs
    saturated (within 1% of the output range of a limit: tanh ``|y| > 0.98``, sigmoid
    ``y < 0.01`` or ``y > 0.99``) at most points. ``value``: the lower median.
    Sources: CS231n "Neural Networks Part 1"; Maas et al. 2013 (LeakyReLU), Clevert et al.
    2016 (ELU); LeCun et al. 1998 "Efficient BackProp", Glorot & Bengio 2010.
    """
    found = []
    for ep, probe in _probed(epochs):
        for layer in probe.layers:
            for rule, kinds, key, threshold, whats in _FRACTION_RULES:
                hit = _persistent(layer.series[key], threshold, above=True) if layer.kind in kinds else None
                if hit is None:
                    continue
                median, first = hit
                k, n = _count(layer.series[key], threshold, above=True)
                seen = (
                    f"{_pct(median)} {whats[layer.unit]}; median of the epoch's {_steps(n)}, over "
                    f"{_pct(threshold)} at {k} of {n}"
                )
                step = probe.steps[first]
                found.append(Diagnosis(rule, layer.label, ep.epoch, step, median, _message(rule, seen)))
    return found


def _signal_ratios(first: _Layer, last: _Layer, depth: int) -> list[float]:
    """Per point, the geometric-mean std factor per layer; NaN where it is undefined."""
    ratios = []
    for s0, s1 in zip(first.series["std"], last.series["std"], strict=True):
        if not (math.isfinite(s0) and s0 > 0) or math.isnan(s1):
            ratios.append(math.nan)
        else:
            ratios.append((s1 / s0) ** (1 / (depth - 1)))
    return ratios


def _signal_rules(epochs: list[_Epoch]) -> list[Diagnosis]:
    """vanishing-signal and exploding-signal, per epoch.

    The per-layer factor of the activation std is the geometric mean
    ``(std_last / std_first) ** (1 / (L - 1))`` over the model's ``L`` activation layers (every
    kind of ``ACTIVATION_KINDS``), the number the variance derivation Var(y) = fan_in Var(w)
    E[x^2] predicts to be constant. Below ``1 / SIGNAL_RATIO`` at most probed points is
    vanishing (``value``: the upper median), above ``SIGNAL_RATIO`` exploding (the lower
    median). It needs ``SIGNAL_MIN_LAYERS`` activation layers: the problem is the compounding
    over depth. Points where the first layer's std is 0 or not finite are left out (a dead
    first layer is dead-relu's finding). Sources: Glorot & Bengio 2010, He et al. 2015.
    """
    found = []
    for ep, probe in _probed(epochs):
        acts = [layer for layer in probe.layers if layer.kind in ACTIVATION_KINDS]
        if len(acts) < SIGNAL_MIN_LAYERS:
            continue
        first, last = acts[0], acts[-1]
        ratios = _signal_ratios(first, last, len(acts))
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
                f"{_times(threshold)} at {k} of {n}): at step {probe.steps[j]} it went from "
                f"{_num(first.series['std'][j])} (layer {first.label}) to "
                f"{_num(last.series['std'][j])} (layer {last.label})"
            )
            found.append(Diagnosis(rule, None, ep.epoch, probe.steps[j], median, _message(rule, seen)))
    return found


class _Finding(NamedTuple):
    """One reason for lr-too-large in an epoch (the earliest step wins, then the priority)."""

    step: int | None  # None: the epoch as a whole, after every step
    priority: int
    value: float
    what: str

    def order(self) -> tuple[float, int]:
        return (math.inf if self.step is None else self.step, self.priority)


class _Start(NamedTuple):
    """What the loss is compared with: the first point's loss, and the rise window's length."""

    loss: float
    window: int

    @property
    def scale(self) -> float | None:
        return self.loss if math.isfinite(self.loss) and self.loss > 0 else None


def _loss_points(epochs: list[_Epoch]) -> tuple[list[tuple[int, int | None, float]], int]:
    """(epoch index, step, loss) over the run and the rise window: the probed points when
    every record has some, otherwise the epoch means with a window of one."""
    if all(ep.probe is not None and ep.probe.steps for ep in epochs):
        points = [
            (e, s, v)
            for e, ep in enumerate(epochs)
            for s, v in zip(ep.probe.steps, ep.probe.loss, strict=True)
        ]
        return points, RISE_WINDOW
    return [(e, None, ep.train_loss) for e, ep in enumerate(epochs)], 1


def _loss_finding(
    start: _Start, loss: float, mean: float, low: float, at: str, step: int | None
) -> _Finding | None:
    """The finding of one point's loss and window mean (``low``: the lowest earlier window)."""
    scale = start.scale
    if not math.isfinite(loss):
        return _Finding(step, 0, loss, f"the training loss became non-finite ({loss}){at}")
    if scale is not None and loss > LOSS_BLOWUP * scale:
        what = (
            f"the training loss reached {_num(loss)}{at}, {_times(loss / scale)} its start {_num(start.loss)}"
        )
        return _Finding(step, 1, loss, what)
    if scale is not None and math.isfinite(mean) and mean - low > RISE_FRACTION * scale:
        mean_of = f"a {start.window}-point mean" if start.window > 1 else "an epoch mean"
        what = (
            f"the training loss climbed to {mean_of} of {_num(mean)}{at}, up from an earlier "
            f"low of {_num(low)} (a rise of {_pct((mean - low) / scale)} of its start {_num(start.loss)})"
        )
        return _Finding(step, 3, mean, what)
    return None


def _loss_findings(epochs: list[_Epoch]) -> Iterator[tuple[int, _Finding]]:
    """lr-too-large (a) to (c): a non-finite loss, a blow-up, a rising window mean."""
    points, window = _loss_points(epochs)
    if not points:
        return
    start = _Start(points[0][2], window)
    means: list[float] = []  # means[j]: mean of the window ending at point j (NaN if incomplete)
    low = math.inf  # lowest window mean ending at least one window before the current point
    for j, (e, step, loss) in enumerate(points):
        tail = [v for _, _, v in points[max(0, j - window + 1) : j + 1]]
        means.append(sum(tail) / window if len(tail) == window else math.nan)
        if j >= window and math.isfinite(means[j - window]):
            low = min(low, means[j - window])
        at = f" at step {step}" if step is not None else f" in epoch {epochs[e].epoch}"
        finding = _loss_finding(start, loss, means[j], low, at, step)
        if finding is not None:
            yield e, finding


def _epoch_findings(epochs: list[_Epoch]) -> Iterator[tuple[int, _Finding]]:
    """lr-too-large (d) and (e), and a non-finite epoch mean no probed point showed."""
    for e, ep in enumerate(epochs):
        for j, step in enumerate(ep.probe.steps if ep.probe is not None else ()):
            ratio = _model_update_ratio(ep.probe.layers, j)
            if math.isfinite(ratio) and ratio > MAX_UPDATE:  # moved the weights by more than their norm
                what = (
                    f"the update ratio ‖Δw‖/‖w‖ of the {_weights(ep.probe.layers)} weights was "
                    f"{_num(ratio)} at step {step}, "
                    f"a step larger than the weights themselves (healthy is ~{HEALTHY_UPDATE:g})"
                )
                yield e, _Finding(step, 2, ratio, what)
                break
        if not math.isfinite(ep.train_loss):
            what = f"the epoch's mean training loss is non-finite ({ep.train_loss})"
            yield e, _Finding(None, 0, ep.train_loss, what)
        elif ep.grad_norm is not None and not math.isfinite(ep.grad_norm):  # (e): a finite loss
            yield e, _Finding(None, 0, ep.grad_norm, f"the gradient norm became non-finite ({ep.grad_norm})")


def _lr_too_large(epochs: list[_Epoch]) -> list[Diagnosis]:
    """lr-too-large, once per epoch.

    The training loss (a) becomes non-finite, (b) passes ``LOSS_BLOWUP`` times its start
    (the first point's loss), or (c) rises over a window: the mean of the last
    ``RISE_WINDOW`` points exceeds the lowest earlier, non-overlapping window mean by more
    than ``RISE_FRACTION`` of the start; or (d) a probed step's model update ratio (see
    ``_model_update_ratio``) exceeds ``MAX_UPDATE``; or (e) the record's gradient norm is
    non-finite while its loss is not (``TrainingDiverged.record``). Probed points are read
    when every record has them, the epoch means otherwise (then the window is one epoch).
    (b) and (c) need a positive start, and (c) is measured against the start because late
    batch losses near 0 are noisy by large factors. (d) catches a loss that blew up before
    the first point and fell back. When several hold in an epoch the earliest step is
    reported, with its loss as ``value`` (the window mean for (c), the ratio for (d)).
    Source: CS231n "Neural Networks Part 3" (the update ratio).
    """
    fired: dict[int, _Finding] = {}
    for e, finding in itertools.chain(_loss_findings(epochs), _epoch_findings(epochs)):
        if e not in fired or finding.order() < fired[e].order():
            fired[e] = finding
    found = []
    for e, finding in sorted(fired.items()):
        lr = epochs[e].lr
        here = (
            f" (the epoch's last learning rate was {lr:.3g}: try {lr / 10:.3g})"
            if lr is not None and lr > 0
            else ""
        )
        message = (
            f"{finding.what}: the learning rate is too large. Try: {RULES['lr-too-large'].remedy}{here}."
        )
        found.append(Diagnosis("lr-too-large", None, epochs[e].epoch, finding.step, finding.value, message))
    return found


def _weights(layers: list[_Layer]) -> str:
    """Which weights the model update ratio covers: "Linear", "Conv" or "Linear and Conv"."""
    kinds = [k for k in WEIGHT_KINDS if any(layer.kind == k for layer in layers)]
    return " and ".join({"linear": "Linear", "conv": "Conv"}[k] for k in kinds) or "Linear"


def _model_update_ratio(layers: list[_Layer], j: int) -> float:
    """‖Δw‖/‖w‖ of all Linear and Conv weights together at point ``j`` (NaN without any):
    ``sqrt(sum((update_ratio * weight_norm) ** 2) / sum(weight_norm ** 2))``."""
    linears = [layer for layer in layers if layer.kind in WEIGHT_KINDS]
    delta = sum((layer.series["update_ratio"][j] * layer.series["weight_norm"][j]) ** 2 for layer in linears)
    norm = sum(layer.series["weight_norm"][j] ** 2 for layer in linears)
    return math.sqrt(delta / norm) if norm > 0 else math.nan


def _larger_lr_hint(largest: float, lr: float | None) -> str:
    """How much larger a step would bring the update ratio near ``HEALTHY_UPDATE``."""
    factor = HEALTHY_UPDATE / largest if largest > 0 else math.inf
    if not (math.isfinite(factor) and factor >= 10):
        return ""
    factor = 10 ** round(math.log10(factor))
    how = f"; about {factor:g}× would bring the update ratio near {HEALTHY_UPDATE:g}"
    if lr is not None and lr > 0:
        how += f" ({lr * factor:.3g} instead of {lr:.3g})"
    return how


def _lr_too_small(epochs: list[_Epoch], stuck_epochs: set[int]) -> list[Diagnosis]:
    """lr-too-small, on epoch 1 only.

    Over epoch 1 the loss falls by less than ``SMALL_FALL`` (the mean of its first
    ``RISE_WINDOW`` probed points against the mean of its last; with fewer than twice as
    many points, of its first and last halves) *and* the model's update ratio over all
    Linear and Conv weights together (``_model_update_ratio``: one number for the model, as
    the last Linear of an MLP moves several times faster than the others) stays below
    ``SMALL_UPDATE`` at every point; ``value`` is its largest point. Silent when dead-relu
    or vanishing-signal fires in epoch 1 (``stuck_epochs``): they stop the updates too, and
    a larger step revives neither. Sources: CS231n "Neural Networks Part 3" (an update
    ratio near 1e-3 is healthy); Smith 2015, the LR range test (``lr_find``).
    """
    ep = next((ep for ep in epochs if ep.epoch == 1), None)
    if ep is None or ep.probe is None or ep.epoch in stuck_epochs:
        return []
    probe = ep.probe
    n = len(probe.steps)
    if n < 2 or not any(layer.kind in WEIGHT_KINDS for layer in probe.layers):
        return []
    w = min(RISE_WINDOW, n // 2)
    head, tail = sum(probe.loss[:w]) / w, sum(probe.loss[-w:]) / w
    ratios = [_model_update_ratio(probe.layers, j) for j in range(n)]
    if not (math.isfinite(head) and math.isfinite(tail) and head > 0) or not all(map(math.isfinite, ratios)):
        return []
    fall, largest = 1 - tail / head, max(ratios)
    if fall >= SMALL_FALL or largest >= SMALL_UPDATE:
        return []
    seen = (
        f"over epoch 1 the training loss fell only {_pct(fall)} ({w}-point means {_num(head)} → "
        f"{_num(tail)}) and the update ratio ‖Δw‖/‖w‖ of the {_weights(probe.layers)} weights stayed "
        f"at or below {largest:.2g} (healthy is ~{HEALTHY_UPDATE:g}): the learning rate is too small"
    )
    message = f"{seen}. Try: {RULES['lr-too-small'].remedy}{_larger_lr_hint(largest, ep.lr)}."
    return [Diagnosis("lr-too-small", None, ep.epoch, None, largest, message)]


def _overfitting(epochs: list[_Epoch]) -> list[Diagnosis]:
    """overfitting, at every epoch where it holds.

    The test loss rose in each of ``OVERFIT_EPOCHS`` consecutive epochs (so over
    ``OVERFIT_EPOCHS + 1`` records) while the train loss fell over the same epochs (last
    below first: a train loss near 0 may wobble). ``value``: the test loss's relative rise
    over the window. Source: Prechelt 1998 "Early stopping - but when?" (criterion UP_s).
    """
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

    Pure: it reads ``history`` and returns new values. ``RULES`` and the module docstring
    say what each rule looks at and when it fires.

    Args:
        history: the epoch records, as ``fit`` returns them (``FitResult.history``) or as
            ``history.json`` holds them: each a dict with ``"train_loss"`` and optionally
            ``"epoch"`` (default: its 1-based position), ``"test_loss"``, ``"lr"`` and
            ``"probe"`` (the series of ``fnn.diagnostics.Probe``).

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
