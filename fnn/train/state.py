"""Everything a run carries, in one value (``TrainState``), and what ``fit`` returns.

``fit`` takes a TrainState (``train_state=``) and returns one (``FitResult.train_state``),
and its checkpoints hold exactly one. An epoch's randomness depends only on the run key and
the epoch number, so going on from any TrainState equals never having stopped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["FitResult", "TrainState", "TrainingDiverged", "init_train_state"]


class TrainState(NamedTuple):
    """The whole state of a training run.

    Attributes:
        params: the model's parameters.
        state: the model's buffers (BatchNorm running statistics).
        opt_state: the optimizer's state (moments, momentum buffers, step count, the
            learning-rate scale that ``ReduceLROnPlateau`` changes).
        key: the run's PRNG key, never changed: epoch ``e`` (0-based) draws its shuffle and
            dropout masks from ``fold_in(key, e)``.
        epoch: epochs done, a Python int.
        step: optimizer steps done, a Python int.
    """

    params: Any
    state: Any
    opt_state: Any
    key: jax.Array
    epoch: int
    step: int

    def copy(self) -> TrainState:
        """A copy whose arrays survive the next compiled epoch (which donates the carry's).

        Returns:
            The TrainState with params, state and opt_state copied.
        """
        return self._replace(
            **{f: jax.tree.map(jnp.copy, getattr(self, f)) for f in ("params", "state", "opt_state")}
        )


def init_train_state(
    model: Any, optimizer: Any, key: jax.Array, *, params: Any = None, state: Any = None
) -> TrainState:
    """A fresh TrainState: ``key`` splits into the init key and the run key.

    Args:
        model: an ``fnn.nn`` layer (usually a ``Sequential``).
        optimizer: an ``fnn.optim`` gradient transformation.
        key: a PRNG key (``jax.random.key(seed)``).
        params, state: start from these arrays instead of ``model.init``'s.

    Returns:
        ``TrainState`` at epoch 0, step 0.

    Example:
        >>> from fnn import nn, optim
        >>> ts = init_train_state(nn.Linear(3, 2), optim.sgd(lr=0.1), jax.random.key(0))
        >>> ts.params["weight"].shape, ts.epoch, ts.step
        ((2, 3), 0, 0)
    """
    key_init, key_run = jax.random.split(key)
    if params is None or state is None:
        init_params, init_state = model.init(key_init)
        params = init_params if params is None else params
        state = init_state if state is None else state
    return TrainState(params, state, optimizer.init(params), key_run, 0, 0)


class FitResult(NamedTuple):
    """What ``fit`` returns; ``params``, ``state`` and ``opt_state`` are ``train_state``'s.

    Attributes:
        train_state: the ``TrainState`` after the last epoch (or the best one, with
            ``EarlyStopping(restore_best=True)``).
        history: one dict per epoch run by this call (``epoch``, ``train_loss``, ...).
    """

    train_state: TrainState
    history: list[dict[str, Any]]

    params = property(lambda self: self.train_state.params, doc="``train_state.params``.")
    state = property(lambda self: self.train_state.state, doc="``train_state.state``.")
    opt_state = property(lambda self: self.train_state.opt_state, doc="``train_state.opt_state``.")


class TrainingDiverged(FloatingPointError):
    """A step's loss or gradients became non-finite; nothing after it was applied.

    Attributes:
        epoch: the 1-based epoch in which it happened.
        step: the 1-based step within that epoch.
        loss: the step's loss (nan or ±inf, or finite with non-finite gradients).
        lr: the learning rate in force at that step (None when the optimizer has none).
        result: a ``FitResult`` whose ``train_state`` is the state from just before the bad
            step, with the history of the completed epochs.
        record: what ``fit`` knows of the diverged epoch, shaped like a history record but
            not in the history: ``epoch``, ``train_loss`` and ``grad_norm`` (the bad step's),
            ``lr``, and with a probe the ``probe`` points of the steps applied before it and
            their ``diagnoses``. ``{}`` when raised outside ``fit``.
    """

    def __init__(
        self, message: str, *, epoch: int, step: int, loss: float, lr: float | None, result: FitResult
    ):
        super().__init__(message)
        self.epoch, self.step, self.loss, self.lr, self.result = epoch, step, loss, lr, result
        self.record: dict = {}
