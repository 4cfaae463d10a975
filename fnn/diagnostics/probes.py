"""Per-layer statistics of training steps, collected inside the compiled epoch.

``Probe(every=None)`` is a frozen, hashable spec implementing ``fnn.train.EpochProbe``:
``fit(..., probe=True)`` or ``make_train_epoch(..., probe=Probe())`` call ``collect`` inside
the scanned epoch on every ``every``-th step of each epoch (counted within it, 1-based;
``None``: ``max(1, n_steps // POINTS_PER_EPOCH)``) and ``summarize`` on the host afterwards.

Per point: the step's batch-mean ``loss`` and ``grad_norm`` (global L2 norm of all
gradients); per top-level layer of a ``Sequential`` (another model counts as one layer)
that has statistics, by ``layer_kind``:

- ``"linear"``, ``"conv"``: ``weight_norm`` ||W|| (Frobenius, before the update), ``grad_norm``
  ||dL/dW||, ``update_ratio`` ||W_new - W|| / ||W|| (0 when both are 0, inf when only ||W||
  is); biases are not included.
- ``"batchnorm"`` (1d or 2d): ``running_var_min``, ``running_var_max`` after the step.
- every activation kind: ``mean`` and ``std`` (ddof=0) over all entries of its output;
  ``"relu"`` adds ``dead_fraction`` (units 0 for every sample); ``"leaky_relu"``, ``"elu"``,
  ``"prelu"`` the same on the pre-activation (units <= 0); ``"sigmoid"``, ``"tanh"`` (also
  ScaledTanh) and ``"saturating"`` (other bounded elementwise layers) ``saturated_fraction``:
  outputs within 1% of hi - lo of a limit (``saturation_limits``; tanh |y| > 0.98).

A unit is one position past the batch axis; in a conv net's (N, C, *) feature maps
(``channel_units``) it is a channel, dead when 0 for every sample and position. Statistics
are float32, from the step's own forward: ``collect`` reruns it with the step's params,
state and key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import nn
from fnn._checks import is_int
from fnn.diagnostics.rules import diagnose
from fnn.train import ProbeStep

__all__ = [
    "POINTS_PER_EPOCH",
    "SATURATION_MARGIN",
    "SIGMOID_SATURATION",
    "TANH_SATURATION",
    "Probe",
    "channel_units",
    "layer_kind",
    "layer_name",
    "saturation_limits",
]

POINTS_PER_EPOCH = 32
TANH_SATURATION = 0.98
SIGMOID_SATURATION = 0.01  # y < 0.01 or y > 0.99: the point where |tanh| = 0.98
SATURATION_MARGIN = 0.01  # both of the above: within 1% of the output range of a limit

_STAT_ORDER = (
    "weight_norm",
    "grad_norm",
    "update_ratio",
    "running_var_min",
    "running_var_max",
    "mean",
    "std",
    "dead_fraction",
    "saturated_fraction",
)
_ACTIVATION_KINDS = (
    (nn.ScaledTanh, "tanh"),
    (nn.ReLU, "relu"),
    (nn.LeakyReLU, "leaky_relu"),
    (nn.ELU, "elu"),
    (nn.PReLU, "prelu"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.Softplus, "activation"),
    (nn.Softmax, "activation"),
    (nn.LogSoftmax, "activation"),
    (nn.Abs, "activation"),
    (nn.Maxout, "activation"),
)


_CONV = (nn.Conv1d, nn.Conv2d)
_BATCHNORM = (nn.BatchNorm1d,)  # BatchNorm2d is one
# Layers whose output is (N, C, *) feature maps, and those whose output is (N, features).
_SPATIAL = (
    *_CONV, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.BatchNorm2d,
    nn.Dropout2d,
)  # fmt: skip
_FLAT = (nn.Linear, nn.Flatten)
_KNOWN_LIMITS = {nn.Tanh: (-1.0, 1.0), nn.Sigmoid: (0.0, 1.0)}
_FAR = 1e3  # where a bounded activation has reached its limits in float32


def layer_kind(layer: nn.Layer) -> str | None:
    """The probe's kind of a layer: "linear", "conv", "batchnorm", an activation kind, or None.

    Args:
        layer: an ``fnn.nn`` layer (a BatchNorm without running statistics has none).

    Returns:
        The kind (see the module docstring), None for a layer without statistics. An
        elementwise layer of no known kind is ``"saturating"`` when it is bounded on both
        sides (``saturation_limits``), None otherwise.

    Example:
        >>> from fnn import nn
        >>> [layer_kind(l) for l in (nn.Linear(2, 3), nn.ReLU(), nn.ELU(), nn.Dropout(0.5))]
        ['linear', 'relu', 'elu', None]
    """
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, _CONV):
        return "conv"
    if isinstance(layer, _BATCHNORM):
        return "batchnorm" if layer.track_running_stats else None
    for cls, kind in _ACTIVATION_KINDS:
        if isinstance(layer, cls):
            return kind
    if isinstance(layer, nn.Elementwise) and not isinstance(layer, _FLAT) and saturation_limits(layer):
        return "saturating"
    return None


@functools.cache
def saturation_limits(layer: nn.Layer) -> tuple[float, float] | None:
    """An elementwise activation's limits (lo, hi) at -inf and +inf, when both are finite.

    Tanh's are (-1, 1) and Sigmoid's (0, 1); another ``nn.Elementwise`` layer's are its
    float32 outputs at -1e3 and +1e3, kept when they equal those at -500 and +500 (the
    function has levelled off there) and differ. A unit saturates where its output lies
    within ``SATURATION_MARGIN`` of hi - lo of either limit: there the slope is ~0.

    Args:
        layer: an ``fnn.nn`` layer.

    Returns:
        ``(lo, hi)`` as Python floats, or None (unbounded, not elementwise, or not
        computable on a (2, 1) input).

    Example:
        >>> from fnn import nn
        >>> saturation_limits(nn.Tanh()), saturation_limits(nn.ReLU())
        ((-1.0, 1.0), None)
    """
    if type(layer) in _KNOWN_LIMITS:
        return _KNOWN_LIMITS[type(layer)]
    if not isinstance(layer, nn.Elementwise):
        return None
    try:
        with jax.ensure_compile_time_eval():  # concrete numbers even inside a traced epoch
            far = np.asarray(layer._forward(jnp.array([[-_FAR], [_FAR]], jnp.float32)), np.float64)
            near = np.asarray(layer._forward(jnp.array([[-_FAR / 2], [_FAR / 2]], jnp.float32)), np.float64)
    except Exception:  # a layer that is not elementwise on a (2, 1) batch has no limits here
        return None
    if far.shape != (2, 1) or not np.all(np.isfinite(far)) or not np.array_equal(far, near):
        return None
    lo, hi = float(far[0, 0]), float(far[1, 0])
    return (lo, hi) if lo < hi else None


def channel_units(layers: tuple, i: int) -> bool:
    """Whether layer ``i``'s units are channels: its nearest earlier layer that is Linear,
    Flatten or spatial (conv, pooling, BatchNorm2d, Dropout2d) is spatial.

    Args:
        layers: the model's top-level layers.
        i: the position of the layer in ``layers``.

    Returns:
        True for a conv net's (N, C, *) feature maps, False otherwise (also with no such layer).

    Example:
        >>> from fnn import nn
        >>> layers = (nn.Linear(4, 4), nn.ReLU())
        >>> channel_units(layers, 1), channel_units(layers, 0)
        (False, False)
    """
    for layer in reversed(layers[:i]):
        if isinstance(layer, _FLAT):
            return False
        if isinstance(layer, _SPATIAL):
            return True
    return False


def layer_name(layer: nn.Layer) -> str:
    """A short readable name: ``Linear(784, 512)``, ``BatchNorm1d(512)``,
    ``Conv2d(1, 6, kernel_size=5, padding=2)`` (torch's style: what is not default), else the
    spec's repr.

    Args:
        layer: an ``fnn.nn`` layer.

    Returns:
        The name the probe's series and the diagnoses use.

    Example:
        >>> from fnn import nn
        >>> layer_name(nn.Linear(784, 512)), layer_name(nn.BatchNorm1d(512)), layer_name(nn.ELU())
        ('Linear(784, 512)', 'BatchNorm1d(512)', 'ELU(alpha=1.0)')
    """
    if isinstance(layer, nn.Linear):
        return f"Linear({layer.in_features}, {layer.out_features}{'' if layer.bias else ', bias=False'})"
    if isinstance(layer, nn.BatchNorm1d):
        return f"{type(layer).__name__}({layer.num_features})"  # BatchNorm1d or BatchNorm2d
    if isinstance(layer, _CONV):
        return _conv_name(layer)
    if isinstance(layer, nn.ScaledTanh):  # the defaults' repr holds 2/3 to 16 digits
        default = type(layer)()
        if (layer.amplitude, layer.slope) == (default.amplitude, default.slope):
            return f"{type(layer).__name__}()"
        return f"{type(layer).__name__}(amplitude={layer.amplitude:.6g}, slope={layer.slope:.6g})"
    return repr(layer)


def _short(v: Any) -> Any:
    """(5, 5) -> 5: torch's tuples, shown once when every entry is equal."""
    if isinstance(v, tuple | list) and v and all(e == v[0] for e in v):
        return v[0]
    return tuple(v) if isinstance(v, list) else v


_CONV_DEFAULTS = (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", True))


def _conv_name(layer: nn.Layer) -> str:
    parts = [str(layer.in_channels), str(layer.out_channels), f"kernel_size={_short(layer.kernel_size)}"]
    for name, default in _CONV_DEFAULTS:
        value = _short(getattr(layer, name, default))
        if value != default:
            parts.append(f"{name}={value!r}")
    if getattr(layer, "padding_mode", "zeros") != "zeros":
        parts.append(f"padding_mode={layer.padding_mode!r}")
    return f"{type(layer).__name__}({', '.join(parts)})"


def _layers(model: Any) -> tuple:
    return model.layers if isinstance(model, nn.Sequential) else (model,)


def _per_layer(model: Any, tree: Any) -> tuple:
    return tree if isinstance(model, nn.Sequential) else (tree,)


def _f32(a: jax.Array) -> jax.Array:
    return jnp.asarray(a).astype(jnp.float32)


def _norm(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(_f32(a))))


def _units(a: jax.Array) -> jax.Array:
    """(N, units): one column per position past the batch axis."""
    a = _f32(a)
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)


def _linear_stats(p: dict, g: dict, p_new: dict) -> dict:
    w = _norm(p["weight"])
    dw = _norm(_f32(p_new["weight"]) - _f32(p["weight"]))
    ratio = jnp.where(w > 0, dw / jnp.where(w > 0, w, 1.0), jnp.where(dw > 0, jnp.inf, 0.0))
    return {"weight_norm": w, "grad_norm": _norm(g["weight"]), "update_ratio": ratio}


def _channels(a: jax.Array) -> jax.Array:
    """(C, N·positions): one row per channel of (N, C, *) feature maps."""
    a = _f32(a)
    return jnp.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


def _dead_fraction(a: jax.Array, dead: Any, channels: bool) -> jax.Array:
    """The fraction of units (channels) where ``dead(a)`` holds for every sample (and position)."""
    if channels and jnp.ndim(a) >= 3:
        return jnp.mean(jnp.all(dead(_channels(a)), axis=1))
    return jnp.mean(jnp.all(dead(_units(a)), axis=0))


def _activation_stats(layer: nn.Layer, kind: str, inp: jax.Array, out: jax.Array, channels: bool) -> dict:
    y = _f32(out)
    stats = {"mean": jnp.mean(y), "std": jnp.std(y)}
    if kind == "relu":
        stats["dead_fraction"] = _dead_fraction(out, lambda a: a == 0, channels)
    elif kind in ("leaky_relu", "elu", "prelu"):
        stats["dead_fraction"] = _dead_fraction(inp, lambda a: a <= 0, channels)
    elif kind == "tanh" and type(layer) is nn.Tanh:
        stats["saturated_fraction"] = jnp.mean(jnp.abs(y) > TANH_SATURATION)
    elif kind == "sigmoid" and type(layer) is nn.Sigmoid:
        stats["saturated_fraction"] = jnp.mean((y < SIGMOID_SATURATION) | (y > 1 - SIGMOID_SATURATION))
    elif kind in ("tanh", "sigmoid", "saturating") and saturation_limits(layer) is not None:
        lo, hi = saturation_limits(layer)
        margin = SATURATION_MARGIN * (hi - lo)
        stats["saturated_fraction"] = jnp.mean((y < lo + margin) | (y > hi - margin))
    return stats


@dataclass(frozen=True)
class Probe:
    """What to collect inside the compiled epoch, and how often (see the module docstring).

    Args:
        every: steps between points, counted within each epoch (points at its steps
            ``every, 2·every, ...``); None (default) means ``max(1, n_steps // 32)``, about
            32 points per epoch. An ``every`` larger than an epoch gives that epoch no point.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn, optim, train
        >>> from fnn.diagnostics import Probe
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> x, y = jnp.ones((8, 2)), jnp.zeros((8, 2))
        >>> result = train.fit(model, nn.MSELoss(), optim.sgd(lr=0.1), (x, y), epochs=1,
        ...     batch_size=2, key=jax.random.key(0), probe=Probe(every=2), progress=False)
        >>> m = result.history[0]["probe"]
        >>> m["every"], m["step"], [(l["index"], l["name"], l["kind"]) for l in m["layers"]]
        (2, [2, 4], [(0, 'Linear(2, 2)', 'linear'), (1, 'ReLU()', 'relu')])
    """

    every: int | None = None

    def __post_init__(self):
        if self.every is not None:
            if not is_int(self.every) or self.every < 1:
                raise ValueError(f"Probe every must be an int >= 1 or None, got {self.every!r}")
            object.__setattr__(self, "every", int(self.every))  # a numpy int becomes a JSON-able int

    def interval(self, n_steps: int) -> int:
        """Steps between points in an epoch of ``n_steps`` steps.

        Args:
            n_steps: the epoch's number of steps.

        Returns:
            ``every``, or ``max(1, n_steps // 32)`` when it is None.

        Example:
            >>> Probe().interval(468), Probe(every=5).interval(468), Probe().interval(10)
            (14, 5, 1)
        """
        return self.every if self.every is not None else max(1, n_steps // POINTS_PER_EPOCH)

    def collect(self, model: Any, step: ProbeStep) -> dict:
        """The statistics of one step (traced inside the compiled epoch).

        Args:
            model: the ``fnn.nn`` model being trained.
            step: the step's ``fnn.train.ProbeStep``.

        Returns:
            ``{"loss", "grad_norm", "layers"}``: float32 scalars, ``layers`` a tuple with one
            dict of scalars per layer that has statistics, in model order.
        """
        layers = _layers(model)
        params, grads = _per_layer(model, step.params), _per_layer(model, step.grads)
        new_params, new_state = _per_layer(model, step.new_params), _per_layer(model, step.new_state)
        kinds = [layer_kind(layer) for layer in layers]
        outputs = None
        if any(k not in (None, "linear", "conv", "batchnorm") for k in kinds):
            # The step's own forward again: same params, state, key (dropout masks), train mode.
            if isinstance(model, nn.Sequential):
                outputs = model.intermediates(step.params, step.state, step.x, key=step.key, train=True)
            else:
                outputs = (model.apply(step.params, step.state, step.x, key=step.key, train=True)[0],)
        stats = []
        for i, kind in enumerate(kinds):
            if kind in ("linear", "conv"):
                stats.append(_linear_stats(params[i], grads[i], new_params[i]))
            elif kind == "batchnorm":
                var = _f32(new_state[i]["running_var"])
                stats.append({"running_var_min": jnp.min(var), "running_var_max": jnp.max(var)})
            elif kind is not None:
                inp = step.x if i == 0 else outputs[i - 1]
                stats.append(_activation_stats(layers[i], kind, inp, outputs[i], channel_units(layers, i)))
        return {"loss": _f32(step.loss), "grad_norm": _f32(step.grad_norm), "layers": tuple(stats)}

    def summarize(self, model: Any, points: dict) -> dict:
        """Stacked points as the contract's plain values (``fit`` adds ``every`` and ``step``).

        Args:
            model: the model the points were collected on.
            points: ``collect``'s structure with numpy leaves of length n_points.

        Returns:
            ``{"loss": [...], "grad_norm": [...], "layers": [{"index", "name", "kind", ...}]}``
            with Python floats.
        """

        def floats(a) -> list[float]:
            return [float(v) for v in np.asarray(a)]

        layers = _layers(model)
        kinds = [(i, layer, layer_kind(layer)) for i, layer in enumerate(layers)]
        described = [
            {
                "index": i,
                "name": layer_name(layer),
                "kind": kind,
                **({"unit": "channel"} if "dead_fraction" in values and channel_units(layers, i) else {}),
                # jit hands dicts back key-sorted: restore the contract's order
                **{k: floats(values[k]) for k in sorted(values, key=_STAT_ORDER.index)},
            }
            for (i, layer, kind), values in zip(
                [t for t in kinds if t[2] is not None], points["layers"], strict=True
            )
        ]
        return {"loss": floats(points["loss"]), "grad_norm": floats(points["grad_norm"]), "layers": described}

    def diagnose(self, history: list[dict]) -> list[dict]:
        """The course's findings for the history's last epoch (what ``fit`` stores in it).

        Args:
            history: the epoch records so far, the newest last (test losses included, so
                the overfitting rule can read them).

        Returns:
            ``Diagnosis._asdict()`` of every finding of ``fnn.diagnostics.diagnose`` whose
            epoch is the last record's. The rules are causal (an epoch's findings read only
            the records up to it), so diagnosing after every epoch finds exactly what
            diagnosing the finished history would.

        Example:
            >>> history = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": t}
            ...            for e, t in enumerate([0.5, 0.4, 0.45, 0.5, 0.55], start=1)]
            >>> [(d["rule"], d["epoch"]) for d in Probe().diagnose(history)]
            [('overfitting', 5)]
        """
        if not history:
            return []
        epoch = history[-1]["epoch"]
        return [d._asdict() for d in diagnose(history) if d.epoch == epoch]
