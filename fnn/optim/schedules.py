"""Learning-rate schedules: closed forms of torch.optim.lr_scheduler (SCHED-1).

A schedule is a pure function `step -> lr`, where step is the number of optimizer updates
already done, counting from 0 like torch's scheduler epoch counter (`last_epoch` after
`step` has been called that many times). Pass one as `lr=` to any optimizer: the first
update uses schedule(0). step may be a Python int or a traced int32 array; the result is a
jnp scalar.

A schedule is an `LRSchedule`: a frozen, hashable object holding its name, a module-level
formula and its arguments (`schedule.hyperparams`, read-only). Two schedules built with
equal arguments are equal and hash equal, so optimizers built on them are equal too and
share one compiled step.

Torch defines most schedulers recursively; the closed forms below are what torch's own
`_get_closed_form_lr` gives, and equal the recursions up to rounding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax.numpy as jnp

from fnn._checks import check_lr, check_positive, check_range, is_int
from fnn.optim.base import typed_items

__all__ = [
    "LRSchedule",
    "cosine_annealing_lr",
    "exponential_lr",
    "linear_lr",
    "multistep_lr",
    "step_lr",
    "warmup_cosine",
]

Schedule = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, eq=False)
class LRSchedule:
    """A schedule `step -> lr` computing `formula(step, **hyperparams)`, equal by value.

    Equal and hash equal by (name, formula, hyperparams and their types), never by object
    identity. `formula` is a module-level function (one per schedule kind), so equal
    arguments give the same computation; `hyperparams` holds hashable values only (numbers,
    tuples).

    Attributes:
        name: the schedule's name, e.g. 'step_lr'.
        formula: the module-level function (step, **hyperparams) -> lr.
        hyperparams: the arguments, a read-only mapping.

    Example:
        >>> from fnn import optim
        >>> s = optim.step_lr(0.1, step_size=2)
        >>> s == optim.step_lr(0.1, step_size=2), s
        (True, step_lr(lr=0.1, step_size=2, gamma=0.1))
    """

    name: str
    formula: Callable[..., Any]
    hyperparams: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hyperparams", MappingProxyType(dict(self.hyperparams)))

    def __call__(self, step: Any) -> Any:
        return self.formula(step, **self.hyperparams)

    def _key(self) -> tuple:
        return (self.name, self.formula, typed_items(self.hyperparams))  # types too, as make_spec

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LRSchedule):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparams.items())
        return f"{self.name}({args})"


def _schedule(formula: Callable[..., Any], **hyperparams: Any) -> LRSchedule:
    return LRSchedule(formula.__name__.lstrip("_"), formula, hyperparams)


def _float(step: Any) -> Any:
    """The step as the default float dtype (float64 under x64), for exact fractions."""
    return jnp.asarray(step, jnp.result_type(float))


def _check_int(name: str, value: Any, low: int, why: str = "") -> None:
    if not is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{why}, got {value!r}")


def _step_lr(step, lr, step_size, gamma):
    return lr * gamma ** (jnp.asarray(step) // step_size)


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> LRSchedule:
    """StepLR: lr·γ^⌊step/step_size⌋.

    Args:
        lr: the rate at step 0, a finite number >= 0.
        step_size: steps between decays, an int >= 1.
        gamma: the decay factor, >= 0 (default 0.1).

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.step_lr(0.1, step_size=2, gamma=0.5)
        >>> [float(s(t)) for t in range(5)]
        [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    lr = check_lr(lr, allow_schedule=False)
    _check_int("step_size", step_size, 1)
    check_positive("gamma", gamma, strict=False)
    return _schedule(_step_lr, lr=lr, step_size=step_size, gamma=gamma)


def _multistep_lr(step, lr, milestones, gamma):
    ms = jnp.asarray(sorted(milestones), jnp.int32).reshape(-1)
    return lr * gamma ** jnp.sum(jnp.asarray(step) >= ms)


def multistep_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> LRSchedule:
    """MultiStepLR: lr·γ^(number of milestones ≤ step).

    A repeated milestone counts twice, as in torch (whose milestones are a Counter).
    Milestones may come unsorted.

    Args:
        lr: the rate at step 0, a finite number >= 0.
        milestones: the steps at which the rate is multiplied by γ, ints >= 0.
        gamma: the decay factor, >= 0 (default 0.1).

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.multistep_lr(1.0, milestones=[1, 3], gamma=0.1)
        >>> [float(s(t)) for t in range(5)]
        [1.0, 0.1, 0.1, 0.01, 0.01]
    """
    lr = check_lr(lr, allow_schedule=False)
    for m in milestones:
        _check_int("milestones", m, 0)
    check_positive("gamma", gamma, strict=False)
    return _schedule(_multistep_lr, lr=lr, milestones=tuple(milestones), gamma=gamma)


def _exponential_lr(step, lr, gamma, min_lr=0.0):
    # exp(step·ln γ) rather than γ**step: in float32, γ = 1/1.000004 is stored with a relative
    # error of up to 3e-8, which γ**step multiplies by step (0.45% after 150k steps); ln γ is
    # taken in Python's float64 and step·ln γ loses only the final rounding.
    step = jnp.asarray(step)
    if gamma == 0:
        value = jnp.where(step == 0, lr, 0.0)
    else:
        value = lr * jnp.exp(_float(step) * math.log(gamma))
    return jnp.maximum(value, min_lr) if min_lr > 0 else value


def exponential_lr(lr: float, gamma: float, min_lr: float = 0.0) -> LRSchedule:
    """ExponentialLR, with an optional floor: max(lr·γ^step, min_lr).

    With ``min_lr = 0`` (the default) this is torch's ExponentialLR exactly. The floor is
    pylearn2's ``ExponentialDecay(decay_factor, min_lr)``, which is this schedule with
    γ = 1/decay_factor (the update after k earlier ones uses lr/decay_factor^k, never
    less than min_lr).

    Args:
        lr: the rate of the first update (step 0), a finite number >= 0.
        gamma: the per-step factor, >= 0.
        min_lr: the floor, 0 <= min_lr <= lr.

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.exponential_lr(1.0, gamma=0.5, min_lr=0.2)
        >>> [float(s(t)) for t in range(4)]
        [1.0, 0.5, 0.25, 0.2]
    """
    lr = check_lr(lr, allow_schedule=False)
    check_positive("gamma", gamma, strict=False)
    check_positive("min_lr", min_lr, strict=False)
    if min_lr > lr:
        raise ValueError(f"min_lr must be <= lr, got min_lr={min_lr} and lr={lr}")
    if min_lr == 0:  # torch's ExponentialLR: min_lr=0 stays out of the spec, one schedule either way
        return _schedule(_exponential_lr, lr=lr, gamma=gamma)
    return _schedule(_exponential_lr, lr=lr, gamma=gamma, min_lr=float(min_lr))


def _linear_lr(step, lr, start_factor, end_factor, total_iters):
    # A float step: int32 / int would be float32 even under x64 (the optimizers pass int32).
    frac = jnp.minimum(_float(step), total_iters) / total_iters
    return lr * (start_factor + (end_factor - start_factor) * frac)


def linear_lr(
    lr: float, start_factor: float = 1 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> LRSchedule:
    """LinearLR (warm-up): lr·(s + (e − s)·min(step, total_iters)/total_iters).

    Args:
        lr: the base rate, a finite number >= 0.
        start_factor: s, the factor at step 0, in (0, 1] (default 1/3).
        end_factor: e, the factor from step total_iters on, in [0, 1] (default 1).
        total_iters: the steps the factor takes to go from s to e, >= 1 (default 5).

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.linear_lr(0.3, total_iters=2)
        >>> [float(s(t)) for t in range(4)]
        [0.1, 0.2, 0.3, 0.3]
    """
    lr = check_lr(lr, allow_schedule=False)
    if not 0 < start_factor <= 1:
        raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
    check_range("end_factor", end_factor, 0.0, 1.0)
    _check_int("total_iters", total_iters, 1)
    return _schedule(
        _linear_lr, lr=lr, start_factor=start_factor, end_factor=end_factor, total_iters=total_iters
    )


def _cosine_annealing_lr(step, lr, T_max, eta_min):
    return eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * jnp.asarray(step) / T_max)) / 2


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> LRSchedule:
    """CosineAnnealingLR: η_min + (lr − η_min)·(1 + cos(π·step/T_max))/2 (SCHED-1).

    Periodic past T_max (it rises again, as torch's does; optax clamps).

    Args:
        lr: the rate at step 0, a finite number >= 0.
        T_max: the steps of one half-period, an int >= 1.
        eta_min: the lowest rate, reached at step T_max (default 0).

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.cosine_annealing_lr(1.0, T_max=4)
        >>> [float(s(t)) for t in range(6)]
        [1.0, 0.8536, 0.5, 0.1464, 0.0, 0.1464]
    """
    lr = check_lr(lr, allow_schedule=False)
    _check_int("T_max", T_max, 1)
    check_positive("eta_min", eta_min, strict=False)
    return _schedule(_cosine_annealing_lr, lr=lr, T_max=T_max, eta_min=eta_min)


def _warmup_cosine(step, lr, warmup_steps, total_steps, eta_min):
    step = jnp.asarray(step)
    warm = lr * _float(step) / max(warmup_steps, 1)
    progress = jnp.clip((_float(step) - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
    cos = eta_min + (lr - eta_min) * (1 + jnp.cos(math.pi * progress)) / 2
    return jnp.where(step < warmup_steps, warm, cos)


def warmup_cosine(lr: float, warmup_steps: int, total_steps: int, eta_min: float = 0.0) -> LRSchedule:
    """Linear warm-up from 0 to lr, then one cosine half-period down to eta_min, then eta_min.

    Over warmup_steps the rate rises linearly, then falls along one cosine half-period to
    eta_min at total_steps, then stays at eta_min for ever (not periodic, unlike
    cosine_annealing_lr):

        step < W:       lr·step/W
        W ≤ step ≤ T:   η_min + (lr − η_min)·(1 + cos(π·(step − W)/(T − W)))/2
        step > T:       η_min

    The convention of HuggingFace's cosine schedule with warm-up and optax's
    warmup_cosine_decay_schedule(0, lr, W, T, η_min): the first update (step 0) has lr 0
    when W > 0, and total_steps counts the warm-up steps too.

    Args:
        lr: the peak rate, a finite number >= 0.
        warmup_steps: W, an int >= 0.
        total_steps: T, an int > W.
        eta_min: the final rate (default 0).

    Returns:
        The schedule.

    Example:
        >>> from fnn import optim
        >>> s = optim.warmup_cosine(1.0, warmup_steps=2, total_steps=6)
        >>> [float(s(t)) for t in range(8)]
        [0.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    lr = check_lr(lr, allow_schedule=False)
    _check_int("warmup_steps", warmup_steps, 0)
    _check_int("total_steps", total_steps, warmup_steps + 1, " (more than warmup_steps)")
    check_positive("eta_min", eta_min, strict=False)
    return _schedule(
        _warmup_cosine, lr=lr, warmup_steps=warmup_steps, total_steps=total_steps, eta_min=eta_min
    )
