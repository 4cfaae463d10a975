"""The protocol of a probe: what the training step shows it, and what it must implement.

A probe collects statistics of some training steps inside the compiled epoch
(``fnn.diagnostics.Probe`` is the course's per-layer one). ``fit(probe=...)`` and
``make_train_epoch(probe=...)`` take any object implementing ``EpochProbe``, so ``fnn.train``
never imports ``fnn.diagnostics``. Points fall on the epoch's steps ``every, 2·every, ...``
(1-based, counted within the epoch). A probe may also define ``diagnose(history) -> list[dict]``:
``fit`` stores what it returns for the newest epoch in ``record["diagnoses"]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

from fnn._checks import is_int

__all__ = ["EpochProbe", "ProbeStep", "check_interval", "check_probe"]


class ProbeStep(NamedTuple):
    """What a probe sees of one training step (arrays traced inside the compiled epoch).

    Attributes:
        params: the parameters the step started from (its forward and gradients used these).
        state: the model state (BatchNorm running statistics) the step started from.
        key: the step's PRNG key: ``model.apply(params, state, x, key=key, train=True)``
            repeats the step's forward exactly, dropout masks included (with
            ``compute_dtype=``, in the params' float32, while the step's own forward ran on
            low-precision copies).
        x: the step's batch of inputs.
        y: the step's batch of targets.
        grads: the gradients of the step's loss with respect to ``params``.
        new_params: the parameters after the step (unchanged when the guard kept them).
        new_state: the model state after the step.
        loss: the step's loss (batch mean), a scalar.
        grad_norm: the global L2 norm of ``grads``, a scalar.
    """

    params: Any
    state: Any
    key: Any
    x: jax.Array
    y: jax.Array
    grads: Any
    new_params: Any
    new_state: Any
    loss: jax.Array
    grad_norm: jax.Array


class EpochProbe(Protocol):
    """The protocol a probe implements (see the module docstring)."""

    def interval(self, n_steps: int) -> int:
        """Steps between points in an epoch of ``n_steps`` steps: a Python int >= 1 (trace time)."""

    def collect(self, model: Any, step: ProbeStep) -> Any:
        """A pytree of scalar arrays describing one probed step (traced, pure, same structure)."""

    def summarize(self, model: Any, points: Any) -> dict:
        """On the host: the stacked points (numpy leaves of length n_points) as JSON-able values
        (``fit`` puts them in ``record["probe"]``)."""


def check_probe(probe: Any) -> Any:
    """``probe``, or a TypeError naming the first method of ``EpochProbe`` it lacks.

    Args:
        probe: the object to check.

    Returns:
        ``probe``, unchanged.
    """
    for method in ("interval", "collect", "summarize"):
        if not callable(getattr(probe, method, None)):
            raise TypeError(
                "probe must implement interval, collect and summarize (fnn.train.EpochProbe, e.g. "
                f"fnn.diagnostics.Probe()); {type(probe).__name__} has no {method}()"
            )
    return probe


def check_interval(every: Any, n_steps: int) -> int:
    """The one check of a probe's ``interval``: an int >= 1.

    Args:
        every: what ``probe.interval(n_steps)`` returned.
        n_steps: the epoch's number of steps, for the message.

    Returns:
        ``every``, a Python int.

    Example:
        >>> check_interval(12, 468)
        12
    """
    if not is_int(every) or every < 1:
        raise ValueError(f"probe.interval({n_steps}) must return an int >= 1, got {every!r}")
    return int(every)
