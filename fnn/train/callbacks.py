"""Callbacks: code that runs between epochs and never recompiles the epoch.

The protocol (Keras' and Lightning's shape, on fnn's explicit state). A callback
subclasses ``Callback`` and overrides any of:

- ``on_train_begin(run)``: before the first epoch of this ``fit`` call.
- ``on_epoch_end(run, record)``: after each epoch's training and evaluation, before its
  checkpoint is written. ``record`` is that epoch's history dict (add keys to it if you
  like). Set ``run.stop_training = True`` to stop after this epoch; replace
  ``run.train_state`` (e.g. a new learning-rate scale in its ``opt_state``) to change what
  the next epoch starts from. The epoch is a compiled function of the TrainState's
  *values*, so none of this recompiles it.
- ``on_train_end(run)``: after the last epoch (also after an early stop).
- ``state_dict() -> dict`` / ``load_state_dict(d)``: the callback's own JSON-serialisable
  state, saved in every checkpoint and restored on ``resume`` (after ``on_train_begin``),
  so a resumed run decides exactly as an uninterrupted one.

``run`` is a ``Run``: ``model``, ``loss``, ``optimizer``, ``train_state``, ``history``
(this call's records), ``epochs`` (the target total), ``has_eval_data`` and
``stop_training``.

Example (also in the README)::

    class PrintLR(fnn.train.Callback):
        def on_epoch_end(self, run, record):
            print(record["epoch"], record["lr"])
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn import optim
from fnn.train.state import TrainState

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "PlateauCallback", "Run"]


@dataclasses.dataclass
class Run:
    """What callbacks see and may change between epochs (see the module docstring)."""

    model: Any
    loss: Any
    optimizer: Any
    train_state: TrainState
    history: list[dict[str, Any]]
    epochs: int
    has_eval_data: bool
    stop_training: bool = False


class Callback:
    """Base class: every hook does nothing (see the module docstring for the protocol)."""

    def on_train_begin(self, run: Run) -> None:
        pass

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> None:
        pass

    def on_train_end(self, run: Run) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda run, r: print(r))``.

    Args:
      on_train_begin: ``f(run)``.
      on_epoch_end: ``f(run, record)``.
      on_train_end: ``f(run)``.
    """

    def __init__(
        self,
        on_train_begin: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_end: Callable | None = None,
    ):
        self._begin, self._epoch, self._end = on_train_begin, on_epoch_end, on_train_end

    def on_train_begin(self, run):
        if self._begin:
            self._begin(run)

    def on_epoch_end(self, run, record):
        if self._epoch:
            self._epoch(run, record)

    def on_train_end(self, run):
        if self._end:
            self._end(run)


def mode_for(monitor: str) -> str:
    """'max' for accuracy-like metrics, 'min' for losses and errors."""
    return "max" if monitor.endswith("accuracy") else "min"


def monitored(record: dict[str, Any], monitor: str, who: str) -> float:
    """``record[monitor]`` as a float, or an error naming the keys there are."""
    if monitor not in record:
        hint = " (test_* metrics need eval_data)" if monitor.startswith("test_") else ""
        raise ValueError(
            f"{who} monitors {monitor!r}, which the history does not have{hint}; "
            f"it has {sorted(k for k in record if isinstance(record[k], float))}"
        )
    return float(record[monitor])


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """value beats best by more than min_delta in the direction of mode; NaN never does."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs (Keras' rule).

    An epoch improves when its value beats the best so far by more than ``min_delta``
    (absolute; lower for ``mode='min'``, higher for ``'max'``; NaN never improves). After
    ``patience`` epochs in a row without improvement, training stops. With
    ``restore_best=True``, ``fit`` returns the whole TrainState of the best epoch (params,
    buffers, optimizer state, and its epoch/step counts, so going on from it continues
    from that epoch); the history keeps every epoch run. After a ``resume``, the best
    state can only be restored if it was reached after resuming (the checkpoint holds the
    latest state, not the best; ``keep_best=`` writes that to ``best.npz``).

    Args:
      monitor: a history key, e.g. ``'test_loss'`` or ``'test_accuracy'``.
      mode: ``'min'`` or ``'max'``.
      patience: epochs without improvement before stopping (>= 0).
      min_delta: the smallest change that counts as an improvement (>= 0).
      restore_best: return the best epoch's TrainState instead of the last one.

    Attributes after ``fit``: ``best``, ``best_epoch``, ``stopped_epoch`` (None if it did
    not stop training).
    """

    def __init__(
        self,
        monitor: str = "test_loss",
        mode: str = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor, self.mode, self.patience = monitor, check_mode(mode), patience
        self.min_delta, self.restore_best = float(min_delta), restore_best
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: TrainState | None = None

    def on_train_begin(self, run):
        self._reset()

    def on_epoch_end(self, run, record):
        value = monitored(record, self.monitor, "EarlyStopping")
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self._best_state = copy_train_state(run.train_state)
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = record["epoch"]
            run.stop_training = True

    def on_train_end(self, run):
        if self.restore_best and self._best_state is not None:
            run.train_state = self._best_state

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


def copy_train_state(ts: TrainState) -> TrainState:
    """A copy whose buffers survive the next epoch (which donates the carry's)."""
    return ts._replace(
        **{f: jax.tree.map(jnp.copy, getattr(ts, f)) for f in ("params", "state", "opt_state")}
    )


def base_lr(optimizer: Any) -> float:
    """The optimizer's lr at step 0 (its ``lr`` hyperparameter, or its schedule's start)."""
    lr = getattr(optimizer, "hyperparams", {}).get("lr")
    if lr is None:
        raise ValueError(
            "ReduceLROnPlateau needs an fnn.optim optimizer (sgd, adam, ...) that records "
            "its lr; this one has no 'lr' hyperparameter"
        )
    return float(lr(0)) if callable(lr) else float(lr)


class PlateauCallback(Callback):
    """Drive an ``fnn.optim.ReduceLROnPlateau`` from a history metric, between epochs.

    The plateau object owns the learning rate (``s.lr``, torch's sequence exactly); the
    optimizer follows it through the ``lr_scale`` in its state: the rate in force is
    ``lr(step) · s.lr / lr(0)``, which is ``s.lr`` itself for a constant lr and scales a
    schedule (as torch does when two schedulers act on one optimizer). ``fit`` wraps a
    bare ``ReduceLROnPlateau`` in ``callbacks=`` in this class.

    Args:
      plateau: the ``fnn.optim.ReduceLROnPlateau``.
      monitor: the history key it steps on; default ``'test_loss'`` with eval data, else
        ``'train_loss'``.
    """

    def __init__(self, plateau: optim.ReduceLROnPlateau, monitor: str | None = None):
        if not isinstance(plateau, optim.ReduceLROnPlateau):
            raise TypeError(
                f"PlateauCallback needs an fnn.optim.ReduceLROnPlateau, got {type(plateau).__name__}"
            )
        self.plateau, self.monitor = plateau, monitor
        self.lr0: float | None = None
        self.state: Any = None

    def on_train_begin(self, run):
        if self.monitor is None:
            self.monitor = "test_loss" if run.has_eval_data else "train_loss"
        self.lr0 = base_lr(run.optimizer)
        scale = float(optim.learning_rate_state(run.train_state.opt_state).lr_scale)
        self.state = self.plateau.init(self.lr0 * scale)

    def on_epoch_end(self, run, record):
        self.state = self.plateau.step(self.state, monitored(record, self.monitor, "ReduceLROnPlateau"))
        opt_state = optim.with_lr_scale(run.train_state.opt_state, self.state.lr / self.lr0)
        run.train_state = run.train_state._replace(opt_state=opt_state)

    def state_dict(self):
        return dict(self.state._asdict())

    def load_state_dict(self, state):
        self.state = type(self.state)(**state)


def as_callbacks(callbacks: Any) -> list[Callback]:
    """fit's ``callbacks=``: Callback objects; a bare ReduceLROnPlateau gets a PlateauCallback."""
    out = []
    for cb in callbacks or ():
        if isinstance(cb, optim.ReduceLROnPlateau):
            cb = PlateauCallback(cb)
        if not isinstance(cb, Callback):
            raise TypeError(
                f"callbacks must be fnn.train.Callback objects (or an fnn.optim.ReduceLROnPlateau), "
                f"got {type(cb).__name__}"
            )
        out.append(cb)
    return out
