"""Callbacks: code that runs between the epochs of ``fit`` and never recompiles the epoch.

A callback subclasses ``Callback`` (Keras' and Lightning's shape, on fnn's explicit state)
and overrides any of its hooks. It may stop training or replace ``run.train_state`` (e.g.
a new learning-rate scale in its ``opt_state``): the epoch is a compiled function of the
TrainState's *values*, so neither recompiles it. Its ``state_dict`` is saved in every
checkpoint, so a resumed run decides exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from fnn import optim
from fnn.train.state import TrainState

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "PlateauCallback", "Run"]


@dataclasses.dataclass
class Run:
    """What callbacks see and may change between epochs.

    Attributes:
        model, loss, optimizer: what ``fit`` trains with.
        train_state: the current ``TrainState``; replace it to change what the next epoch
            starts from.
        history: this ``fit`` call's records so far.
        epochs: the target total number of epochs.
        has_eval_data: whether ``fit`` got ``eval_data`` (so ``test_*`` keys exist).
        stop_training: set it to True to stop after this epoch.
    """

    model: Any
    loss: Any
    optimizer: Any
    train_state: TrainState
    history: list[dict[str, Any]]
    epochs: int
    has_eval_data: bool
    stop_training: bool = False


class Callback:
    """Base class: every hook does nothing.

    Example:
        >>> class CountEpochs(Callback):
        ...     def __init__(self):
        ...         self.n = 0
        ...     def on_epoch_end(self, run, record):
        ...         self.n += 1
        ...     def state_dict(self):
        ...         return {"n": self.n}
        >>> cb = CountEpochs()
        >>> cb.on_epoch_end(None, {"epoch": 1})
        >>> cb.state_dict()
        {'n': 1}
    """

    def on_train_begin(self, run: Run) -> None:
        """Called before the first epoch of a ``fit`` call.

        Args:
            run: the ``Run``.
        """

    def on_epoch_end(self, run: Run, record: dict[str, Any]) -> None:
        """Called after each epoch's training and evaluation, before its checkpoint is written.

        Args:
            run: the ``Run``.
            record: that epoch's history dict (keys may be added).
        """

    def on_train_end(self, run: Run) -> None:
        """Called after the last epoch (also after an early stop).

        Args:
            run: the ``Run``.
        """

    def state_dict(self) -> dict[str, Any]:
        """The callback's own state, saved in every checkpoint.

        Returns:
            A JSON-serialisable dict ({} by default).
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, on ``resume`` (after ``on_train_begin``).

        Args:
            state: the dict read from the checkpoint.
        """


class LambdaCallback(Callback):
    """A callback from plain functions.

    Args:
        on_train_begin: ``f(run)``.
        on_epoch_end: ``f(run, record)``.
        on_train_end: ``f(run)``.

    Example:
        >>> cb = LambdaCallback(on_epoch_end=lambda run, record: print(record["epoch"]))
        >>> cb.on_epoch_end(None, {"epoch": 3})
        3
    """

    def __init__(
        self,
        on_train_begin: Callable | None = None,
        on_epoch_end: Callable | None = None,
        on_train_end: Callable | None = None,
    ):
        hooks = {"on_train_begin": on_train_begin, "on_epoch_end": on_epoch_end, "on_train_end": on_train_end}
        for name, fn in hooks.items():
            if fn is not None:
                setattr(self, name, fn)  # the instance's function stands for the hook


def monitored(record: dict[str, Any], monitor: str, who: str) -> float:
    """``record[monitor]`` as a float, or an error naming the keys there are.

    Args:
        record: an epoch's history dict.
        monitor: the key to read.
        who: the caller's name, for the error message.

    Returns:
        The value as a Python float.
    """
    if monitor not in record:
        hint = " (test_* metrics need eval_data)" if monitor.startswith("test_") else ""
        raise ValueError(
            f"{who} monitors {monitor!r}, which the history does not have{hint}; "
            f"it has {sorted(k for k in record if isinstance(record[k], float))}"
        )
    return float(record[monitor])


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (absolute) in ``mode``'s direction.

    Args:
        value: the new value; NaN never improves.
        best: the best so far, or None before the first.
        mode: 'min' or 'max'.
        min_delta: the margin, >= 0.

    Returns:
        True on an improvement.

    Example:
        >>> improved(0.9, 1.0, "min"), improved(0.95, 1.0, "min", min_delta=0.1)
        (True, False)
    """
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs in a row (Keras' rule).

    With ``restore_best=True``, ``fit`` returns the whole TrainState of the best epoch (its
    optimizer state and counts too, so going on from it continues from that epoch); the
    history keeps every epoch run. After a ``resume``, only a best reached since can be
    restored (``keep_best=`` writes the best to ``best.npz``).

    Args:
        monitor: a history key, e.g. ``'test_loss'`` or ``'test_accuracy'``.
        mode: ``'min'`` or ``'max'``.
        patience: epochs without improvement before stopping (>= 0).
        min_delta: the smallest change that counts as an improvement (``improved``).
        restore_best: return the best epoch's TrainState instead of the last one.

    Attributes after ``fit``: ``best``, ``best_epoch``, ``stopped_epoch`` (None if it did
    not stop training).

    Example:
        >>> es = EarlyStopping(patience=2, restore_best=False)
        >>> run = Run(None, None, None, None, [], epochs=10, has_eval_data=True)
        >>> for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.85], start=1):
        ...     es.on_epoch_end(run, {"epoch": epoch, "test_loss": loss})
        >>> run.stop_training, es.best, es.best_epoch, es.stopped_epoch
        (True, 0.8, 2, 4)
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
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = float(min_delta), restore_best
        self._reset()

    def on_train_begin(self, run):
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: TrainState | None = None

    def on_epoch_end(self, run, record):
        value = monitored(record, self.monitor, "EarlyStopping")
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best:
                self._best_state = run.train_state.copy()
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


class PlateauCallback(Callback):
    """Drive an ``fnn.optim.ReduceLROnPlateau`` (what ``fit`` makes of one in ``callbacks=``).

    The plateau owns the learning rate (``s.lr``, torch's sequence exactly); the optimizer
    follows it through the ``lr_scale`` in its state: the rate in force is
    ``lr(step) · s.lr / lr(0)``, ``s.lr`` itself for a constant lr, a scaled schedule
    otherwise (as torch does when two schedulers act on one optimizer).

    Args:
        plateau: the ``fnn.optim.ReduceLROnPlateau``.
        monitor: the history key it steps on; default ``'test_loss'`` with eval data, else
            ``'train_loss'``.

    Example:
        >>> import jax.numpy as jnp
        >>> opt, params = optim.sgd(lr=optim.step_lr(0.1, step_size=5)), jnp.zeros(1)
        >>> ts = TrainState(params, {}, opt.init(params), None, 0, 0)
        >>> run = Run(None, None, opt, ts, [], epochs=10, has_eval_data=False)
        >>> cb = PlateauCallback(optim.ReduceLROnPlateau(factor=0.5, patience=0))
        >>> cb.on_train_begin(run)  # the plateau starts from the schedule's lr(0)
        >>> for epoch in (1, 2):  # the second epoch does not improve: halve
        ...     cb.on_epoch_end(run, {"epoch": epoch, "train_loss": 1.0})
        >>> cb.state.lr, optim.learning_rate_state(run.train_state.opt_state).lr_scale.item()
        (0.05, 0.5)
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
        lr = getattr(run.optimizer, "hyperparams", {}).get("lr")
        if lr is None:
            raise ValueError(
                "ReduceLROnPlateau needs an fnn.optim optimizer (sgd, adam, ...) that records "
                "its lr; this one has no 'lr' hyperparameter"
            )
        self.lr0 = float(lr(0)) if callable(lr) else float(lr)
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
    """fit's ``callbacks=`` as a list of Callbacks, a bare ReduceLROnPlateau in a PlateauCallback.

    Args:
        callbacks: None or an iterable of Callback / ReduceLROnPlateau objects.

    Returns:
        A list of Callback objects (TypeError for anything else).
    """
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
