"""ReduceLROnPlateau: torch.optim.lr_scheduler.ReduceLROnPlateau as a pure, immutable object.

    plateau = ReduceLROnPlateau(mode="min", factor=0.5, patience=2)
    s = plateau.init(0.1)                      # PlateauState, s.lr == 0.1
    for epoch in ...:
        s = plateau.step(s, val_loss)          # a new state; s.lr is the rate for next epoch
        opt_state = fnn.optim.with_lr_scale(opt_state, s.lr / 0.1)

The rule is torch's line for line, in Python float64, so the lr sequence equals torch's:

    better(a, best):  min/rel: a < best·(1 − threshold)    min/abs: a < best − threshold
                      max/rel: a > best·(threshold + 1)    max/abs: a > best + threshold
    step(metric):     last_epoch += 1
                      if better(metric, best): best = metric, num_bad_epochs = 0
                      else: num_bad_epochs += 1
                      if cooldown_counter > 0: cooldown_counter −= 1, num_bad_epochs = 0
                      if num_bad_epochs > patience:
                          new = max(lr·factor, min_lr); lr = new if lr − new > eps
                          cooldown_counter = cooldown, num_bad_epochs = 0

best starts at +inf (min) or −inf (max); a NaN metric is never better (a bad epoch). Torch
quirks kept: in 'rel' mode a negative best moves the bar the other way (best·(1 − t) > best
when best < 0), and the first finite metric always beats the initial ±inf. The state is a
NamedTuple of Python numbers (JSON round-trips it); `step` runs on the host between
epochs, on a Python number or a concrete scalar, never a traced value.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from fnn._checks import check_lr, is_int, is_real

__all__ = ["PlateauState", "ReduceLROnPlateau"]


class PlateauState(NamedTuple):
    """Torch's scheduler attributes of the same names, as plain Python numbers.

    Being Python floats and ints, `json.dumps(s._asdict())` and
    `PlateauState(**json.loads(text))` round-trip it (best = ±inf is written as ±Infinity,
    which Python's json reads back).

    Attributes:
        lr: the current learning rate (torch's param_group["lr"]).
        best: the best metric so far; ±inf before the first step.
        num_bad_epochs: epochs since best improved (reset by cooldown and reductions).
        cooldown_counter: epochs of cooldown left.
        last_epoch: the number of step() calls.
    """

    lr: float  # the current learning rate (torch's param_group["lr"])
    best: float  # best metric so far; ±inf before the first step
    num_bad_epochs: int  # epochs since best improved (reset by cooldown and reductions)
    cooldown_counter: int  # epochs of cooldown left
    last_epoch: int  # number of step() calls


def _check_count(name: str, value: Any) -> None:
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _check_finite_nonneg(name: str, value: Any) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class ReduceLROnPlateau:
    """torch.optim.lr_scheduler.ReduceLROnPlateau without the optimizer, as an immutable object.

    Same arguments (mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps),
    defaults and rule as torch (see the module docstring). Frozen and hashable by value.

    Torch's own checks, same conditions, ValueError: factor < 1.0, mode in {'min', 'max'},
    threshold_mode in {'rel', 'abs'}. fnn adds: factor, threshold, min_lr and eps finite
    and >= 0, patience and cooldown integers >= 0 (torch accepts these and misbehaves).
    `min_lr` is one number: torch also takes a list, one per param group, and fnn has a
    single lr per optimizer. Numbers are stored as Python floats (min_lr=0 is 0.0).

    Args:
        mode: 'min' (lower metric is better) or 'max'.
        factor: new_lr = lr·factor on a reduction.
        patience: bad epochs tolerated; the (patience + 1)-th in a row reduces the lr.
        threshold: how much better than best counts as an improvement.
        threshold_mode: 'rel' (best·(1 ∓ threshold)) or 'abs' (best ∓ threshold).
        cooldown: epochs after a reduction during which bad epochs are not counted.
        min_lr: lower bound on the lr.
        eps: a reduction smaller than eps is skipped.

    Example:
        >>> from fnn import optim
        >>> plateau = optim.ReduceLROnPlateau(factor=0.5, patience=1)
        >>> s = plateau.init(0.1)
        >>> lrs = []
        >>> for metric in [1.0, 1.0, 1.0, 1.0, 1.0]:
        ...     s = plateau.step(s, metric)
        ...     lrs.append(s.lr)
        >>> lrs  # the second bad epoch in a row halves the lr
        [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if is_real(self.factor) and self.factor >= 1.0:
            raise ValueError(f"factor should be < 1.0, got {self.factor}")  # torch's check
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode {self.mode!r} is unknown: it must be 'min' or 'max'")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {self.threshold_mode!r} is unknown: it must be 'rel' or 'abs'")
        if isinstance(self.min_lr, (list, tuple)):
            raise TypeError(
                f"min_lr must be one number (fnn has one lr per optimizer; torch's "
                f"per-param-group list has no meaning here), got {self.min_lr!r}"
            )
        for name in ("factor", "threshold", "min_lr", "eps"):
            object.__setattr__(self, name, _check_finite_nonneg(name, getattr(self, name)))
        _check_count("patience", self.patience)
        _check_count("cooldown", self.cooldown)
        object.__setattr__(self, "patience", int(self.patience))
        object.__setattr__(self, "cooldown", int(self.cooldown))

    def init(self, lr: float) -> PlateauState:
        """The state before the first epoch.

        Args:
            lr: the optimizer's learning rate, a finite number >= 0.

        Returns:
            PlateauState(lr, best=±inf (the worst value for mode), 0, 0, 0).
        """
        lr = check_lr(lr, allow_schedule=False)
        return PlateauState(lr, math.inf if self.mode == "min" else -math.inf, 0, 0, 0)

    def is_better(self, a: float, best: float) -> bool:
        """Torch's `_is_better`: is metric `a` an improvement on `best`?

        Args:
            a: the new metric.
            best: the best metric so far.

        Returns:
            True when `a` beats `best` by more than the threshold in the direction of mode.
        """
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, state: PlateauState, metric: Any) -> PlateauState:
        """One epoch's end: torch's `scheduler.step(metric)`.

        Args:
            state: the state from `init` or the previous `step`.
            metric: the monitored value (a Python number or a concrete scalar array, a jax
                scalar being fetched from the device; never a traced value; NaN counts as a
                bad epoch).

        Returns:
            The next state; `state` is not modified. Its `lr` is the rate for the next epoch.
        """
        current = float(metric)
        lr, best = state.lr, state.best
        bad, cooldown_counter = state.num_bad_epochs, state.cooldown_counter
        if self.is_better(current, best):
            best, bad = current, 0
        else:
            bad += 1
        if cooldown_counter > 0:
            cooldown_counter -= 1
            bad = 0  # bad epochs during cooldown are ignored, as in torch
        if bad > self.patience:
            new_lr = max(lr * self.factor, self.min_lr)
            if lr - new_lr > self.eps:
                lr = new_lr
            cooldown_counter, bad = self.cooldown, 0
        return PlateauState(lr, best, bad, cooldown_counter, state.last_epoch + 1)
