"""Per-layer statistics of training steps, collected inside the compiled epoch.

``Probe(every=None)`` is a frozen, hashable spec implementing ``fnn.train.EpochProbe``:
``fit(..., probe=True)`` or ``make_train_epoch(..., probe=Probe())`` call ``collect`` inside
the scanned epoch on every ``every``-th step of each epoch (counted within it, 1-based;
``None``: ``max(1, n_steps // POINTS_PER_EPOCH)``) and ``summarize`` on the host afterwards.

Per point: the step's batch-mean ``loss`` and ``grad_norm`` (global L2 norm of all
gradients); per top-level layer of a ``Sequential`` (another model counts as one layer)
that has statistics, by ``layer_kind``:

- ``"linear"``: ``weight_norm`` ||W|| (Frobenius, before the update), ``grad_norm``
  ||dL/dW||, ``update_ratio`` ||W_new - W|| / ||W|| (0 when both are 0, inf when only ||W||
  is); biases are not included.
- ``"batchnorm"``: ``running_var_min``, ``running_var_max`` after the step.
- every activation kind: ``mean`` and ``std`` (ddof=0) over all entries of its output;
  ``"relu"`` adds ``dead_fraction`` (units 0 for every sample); ``"leaky_relu"``, ``"elu"``,
  ``"prelu"`` the same on the pre-activation (units <= 0 for every sample); ``"sigmoid"`` and
  ``"tanh"`` add ``saturated_fraction`` (sigmoid y < 0.01 or y > 0.99, tanh |y| > 0.98).

A unit is one position past the batch axis. Statistics are float32 whatever the model's
dtype, and come from the very forward the step trained on: ``collect`` reruns the model
with the step's params, state and key (the same dropout masks) in train mode.
"""

from __future__ import annotations

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
    "SIGMOID_SATURATION",
    "TANH_SATURATION",
    "Probe",
    "layer_kind",
    "layer_name",
]

POINTS_PER_EPOCH = 32
TANH_SATURATION = 0.98
SIGMOID_SATURATION = 0.01  # y < 0.01 or y > 0.99: the point where |tanh| = 0.98

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


def layer_kind(layer: nn.Layer) -> str | None:
    """The probe's kind of a layer: "linear", "batchnorm", an activation kind, or None.

    Args:
        layer: an ``fnn.nn`` layer (a BatchNorm1d without running statistics has none).

    Returns:
        The kind (see the module docstring), None for a layer without statistics.

    Example:
        >>> from fnn import nn
        >>> [layer_kind(l) for l in (nn.Linear(2, 3), nn.ReLU(), nn.ELU(), nn.Dropout(0.5))]
        ['linear', 'relu', 'elu', None]
    """
    if isinstance(layer, nn.Linear):
        return "linear"
    if isinstance(layer, nn.BatchNorm1d):
        return "batchnorm" if layer.track_running_stats else None
    for cls, kind in _ACTIVATION_KINDS:
        if isinstance(layer, cls):
            return kind
    return None


def layer_name(layer: nn.Layer) -> str:
    """A short readable name: ``Linear(784, 512)``, ``BatchNorm1d(512)``, else the spec's repr.

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
        return f"BatchNorm1d({layer.num_features})"
    return repr(layer)


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


def _activation_stats(kind: str, inp: jax.Array, out: jax.Array) -> dict:
    y = _f32(out)
    stats = {"mean": jnp.mean(y), "std": jnp.std(y)}
    if kind == "relu":
        stats["dead_fraction"] = jnp.mean(jnp.all(_units(out) == 0, axis=0))
    elif kind in ("leaky_relu", "elu", "prelu"):
        stats["dead_fraction"] = jnp.mean(jnp.all(_units(inp) <= 0, axis=0))
    elif kind == "tanh":
        stats["saturated_fraction"] = jnp.mean(jnp.abs(y) > TANH_SATURATION)
    elif kind == "sigmoid":
        stats["saturated_fraction"] = jnp.mean((y < SIGMOID_SATURATION) | (y > 1 - SIGMOID_SATURATION))
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
        if any(k not in (None, "linear", "batchnorm") for k in kinds):
            # The step's own forward again: same params, state, key (dropout masks), train mode.
            if isinstance(model, nn.Sequential):
                outputs = model.intermediates(step.params, step.state, step.x, key=step.key, train=True)
            else:
                outputs = (model.apply(step.params, step.state, step.x, key=step.key, train=True)[0],)
        stats = []
        for i, kind in enumerate(kinds):
            if kind == "linear":
                stats.append(_linear_stats(params[i], grads[i], new_params[i]))
            elif kind == "batchnorm":
                var = _f32(new_state[i]["running_var"])
                stats.append({"running_var_min": jnp.min(var), "running_var_max": jnp.max(var)})
            elif kind is not None:
                inp = step.x if i == 0 else outputs[i - 1]
                stats.append(_activation_stats(kind, inp, outputs[i]))
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

        kinds = [(i, layer, layer_kind(layer)) for i, layer in enumerate(_layers(model))]
        described = [
            {
                "index": i,
                "name": layer_name(layer),
                "kind": kind,
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
