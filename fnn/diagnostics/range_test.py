"""The learning-rate range test (Smith 2015), fastai style: one compiled scan, smoothed loss.

``lr_find(model, loss, make_optimizer, data, key=...)`` trains a *copy* of the model for
``steps`` steps while the learning rate grows exponentially from ``min_lr`` to ``max_lr``,
``lr(t) = min_lr · (max_lr / min_lr) ** (t / (steps - 1))`` for the t-th update (t from 0),
and records each step's training loss. Its contract:

- **One compiled scan** of ``fnn.train.train_step`` (the epoch's own step body);
  ``make_optimizer(lr)`` is called once with the schedule above (equal by value), so running
  it again with equal arguments reuses the compiled program.
- **The caller's arrays are untouched**: nothing is donated, nothing returned but the curve.
- **Batches as ``fit``'s epochs draw them**: ``key`` is used exactly as ``fit(key=...)``
  uses it (``init_train_state``, then ``epoch_batches(fold_in(run_key, e), ...)``), so the
  first ``len(x) // batch_size`` steps see fit's first epoch's batches and dropout masks.
- **Smoothing**: ``smoothed_t = a_t / (1 − β^{t+1})`` with ``a_t = β a_{t-1} + (1 − β)
  loss_t``, ``a_{-1} = 0`` (fastai's ``LRFinder``; Adam's bias correction).
- **Where it stopped.** All ``steps`` steps run; those from the first step whose smoothed
  loss is non-finite or exceeds ``diverge_factor`` × the lowest smoothed loss so far are
  invalid (``valid`` False, ``diverged_at`` its index) and ignored by the suggestion. After a
  non-finite step nothing more is applied (the divergence guard). Losses are assumed >= 0.
- **The suggestion**: ``suggested_lr`` = (the lr at the minimum of the smoothed loss over
  the valid steps) / 10, fastai's "minimum divided by 10" (``rule`` says it in a sentence):
  at the minimum the loss is at the edge of stability, one decade below still descends fast.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn import nn, optim
from fnn._checks import check_batch_size, check_grad_mode
from fnn.nn.precision import check_compute_dtype
from fnn.optim.schedules import LRSchedule
from fnn.train import init_train_state
from fnn.train.epoch import epoch_batches, step_body
from fnn.train.evaluation import check_data, check_labels

__all__ = ["LRFindResult", "lr_find", "range_schedule", "summarize"]

RULE = (
    "suggested_lr = the learning rate at the minimum of the smoothed loss, divided by 10 "
    "(fastai's 'minimum loss / 10' reading of Smith's LR range test)"
)


class LRFindResult(NamedTuple):
    """The curve of an LR range test and the rate it suggests (see the module docstring).

    Attributes:
        lrs: float64 array (steps,), the learning rate each step's update used.
        losses: float64 array (steps,), each step's raw training loss (the batch mean, before
            that step's update), possibly inf/NaN after divergence.
        smoothed: float64 array (steps,), the bias-corrected exponential moving average.
        valid: bool array (steps,), False from the first diverged step on.
        diverged_at: the index of the first invalid step, or None when all are valid.
        suggested_lr: the suggested learning rate (``rule``).
        rule: one sentence naming the rule behind ``suggested_lr``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    valid: np.ndarray
    diverged_at: int | None
    suggested_lr: float
    rule: str


def _exponential_range(step: Any, min_lr: float, max_lr: float, steps: int) -> jax.Array:
    return min_lr * (max_lr / min_lr) ** (jnp.asarray(step, jnp.float32) / (steps - 1))


def _check_range(min_lr: Any, max_lr: Any, steps: Any) -> tuple[float, float, int]:
    for name, value in (("min_lr", min_lr), ("max_lr", max_lr)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if not max_lr > min_lr:
        raise ValueError(f"max_lr must be greater than min_lr, got min_lr={min_lr} and max_lr={max_lr}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int, got {steps!r}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the range needs its two ends), got {steps}")
    return float(min_lr), float(max_lr), int(steps)


def range_schedule(min_lr: float, max_lr: float, steps: int) -> LRSchedule:
    """The range test's schedule ``t -> min_lr · (max_lr/min_lr) ** (t/(steps-1))``.

    Args:
        min_lr: the rate of the first update, > 0.
        max_lr: the rate of the last update (t = steps - 1), > min_lr.
        steps: the number of updates, >= 2.

    Returns:
        An ``fnn.optim.LRSchedule`` (equal by value, so optimizers built on equal ranges
        share one compiled program).

    Example:
        >>> s = range_schedule(1e-3, 1.0, 4)
        >>> [round(float(s(t)), 6) for t in range(4)]  # a decade per step
        [0.001, 0.01, 0.1, 1.0]
    """
    min_lr, max_lr, steps = _check_range(min_lr, max_lr, steps)
    return LRSchedule("lr_range", _exponential_range, {"min_lr": min_lr, "max_lr": max_lr, "steps": steps})


def summarize(lrs: Any, losses: Any, *, beta: float = 0.98, diverge_factor: float = 4.0) -> LRFindResult:
    """Smooth a range test's raw losses, mark where it diverged and suggest a rate.

    This is the host-side half of ``lr_find`` (numpy, float64), usable on any recorded
    curve.

    Args:
        lrs: the learning rate of each step, shape (steps,).
        losses: the raw loss of each step, shape (steps,).
        beta: the moving average's decay, in [0, 1) (0: no smoothing).
        diverge_factor: a step whose smoothed loss exceeds this many times the lowest
            smoothed loss so far counts as diverged, > 1.

    Returns:
        ``LRFindResult``.

    Raises:
        FloatingPointError: the loss of the first step is already non-finite, so there is
            nothing to suggest from.

    Example:
        >>> r = summarize([0.01, 0.1, 1.0, 10.0], [2.0, 1.0, 0.5, 40.0], beta=0.0)
        >>> r.valid.tolist(), r.diverged_at, r.suggested_lr  # 40 > 4 x 0.5
        ([True, True, True, False], 3, 0.1)
    """
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    if lrs.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError(
            f"lrs and losses must be 1-d of the same length, got shapes {lrs.shape} and {losses.shape}"
        )
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if not (math.isfinite(diverge_factor) and diverge_factor > 1):
        raise ValueError(f"diverge_factor must be a finite number > 1, got {diverge_factor}")
    if lrs.size == 0 or not np.isfinite(losses[0]):
        raise FloatingPointError(
            f"the loss of the first step (lr {lrs[0] if lrs.size else 'n/a'}) is not finite: "
            "nothing to read from the range test; check the data and labels, or lower min_lr"
        )
    smoothed = np.empty_like(losses)
    average = 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN after divergence is expected
        for t, value in enumerate(losses):
            average = beta * average + (1 - beta) * value
            smoothed[t] = average / (1 - beta ** (t + 1))
        lowest = np.minimum.accumulate(np.where(np.isfinite(smoothed), smoothed, np.inf))
        bad = ~np.isfinite(smoothed) | (smoothed > diverge_factor * lowest)
    diverged_at = int(np.argmax(bad)) if bad.any() else None
    valid = np.arange(lrs.size) < (lrs.size if diverged_at is None else diverged_at)
    best = int(np.argmin(np.where(valid, smoothed, np.inf)))
    return LRFindResult(lrs, losses, smoothed, valid, diverged_at, float(lrs[best] / 10), RULE)


@functools.partial(
    jax.jit, static_argnames=("model", "loss", "optimizer", "batch_size", "grad", "steps", "compute_dtype")
)
def _range_test(params, state, opt_state, run_key, x, y, *, model, loss, optimizer, batch_size, grad, steps,
                compute_dtype):  # fmt: skip
    """The whole test as one scan of the epoch's step body over fit's batches: the records."""
    n = x.shape[0]
    n_epochs = -(-steps // (n // batch_size))
    epoch_keys = jax.vmap(lambda e: jax.random.fold_in(run_key, e))(jnp.arange(n_epochs))
    orders, step_keys = jax.vmap(lambda k: epoch_batches(k, n, batch_size))(epoch_keys)
    orders = orders.reshape(-1, batch_size)[:steps]
    step_keys = step_keys.reshape(-1, *step_keys.shape[2:])[:steps]
    body = step_body(model, loss, optimizer, x, y, grad=grad, metrics=(), compute_dtype=compute_dtype)
    carry = (params, state, opt_state, jnp.ones((), bool))
    _, records = jax.lax.scan(body, carry, (orders, step_keys, jnp.arange(steps)))
    return records


def lr_find(
    model: Any,
    loss: Any,
    make_optimizer: Callable[[Any], optim.GradientTransformation],
    data: tuple[Any, Any],
    *,
    key: jax.Array,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    params: Any = None,
    state: Any = None,
    batch_size: int = 128,
    grad: str = "autodiff",
    beta: float = 0.98,
    diverge_factor: float = 4.0,
    compute_dtype: str | None = None,
) -> LRFindResult:
    """Run the LR range test on a copy of the model (see the module docstring).

    Args:
        model: an ``fnn.nn`` layer (usually a ``Sequential``).
        loss: an ``fnn.nn`` loss spec or a plain loss function.
        make_optimizer: ``lr -> optimizer``; called once with the range schedule, e.g.
            ``lambda lr: fnn.optim.sgd(lr=lr, momentum=0.9)``.
        data: ``(x, y)`` training data; batches are drawn as ``fit``'s epoch draws them.
        key: a PRNG key, used as ``fit(key=...)`` uses it (init, shuffles, dropout).
        min_lr: the first step's rate, > 0 (default 1e-7).
        max_lr: the last step's rate, > min_lr (default 10).
        steps: the number of steps, >= 2 (default 100).
        params, state: start from these arrays instead of the model's init (not modified).
        batch_size: samples per step (default 128, the CLI's).
        grad: ``'autodiff'`` or ``'manual'``.
        beta: the smoothing's decay in [0, 1) (default 0.98, fastai's).
        diverge_factor: the smoothed loss above this many times its minimum counts as
            diverged, > 1 (default 4, fastai's).
        compute_dtype: as ``fit``'s: None (the params' dtype) or ``'bfloat16'`` /
            ``'float16'`` for mixed precision with float32 master weights (DTYPE-4).

    Returns:
        ``LRFindResult(lrs, losses, smoothed, valid, diverged_at, suggested_lr, rule)``.

    Raises:
        ValueError, TypeError: a bad range, steps, batch size, data or labels.
        FloatingPointError: the first step's loss is already non-finite.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn, optim
        >>> x = jax.random.normal(jax.random.key(1), (64, 2))
        >>> y = x @ jnp.array([[1.0], [-2.0]])
        >>> r = lr_find(nn.Linear(2, 1), nn.MSELoss(), lambda lr: optim.sgd(lr=lr), (x, y),
        ...             key=jax.random.key(0), min_lr=1e-3, max_lr=100.0, steps=30, batch_size=16)
        >>> r.diverged_at is not None and r.suggested_lr < float(r.lrs[r.diverged_at])
        True
    """
    min_lr, max_lr, steps = _check_range(min_lr, max_lr, steps)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    if not (math.isfinite(diverge_factor) and diverge_factor > 1):
        raise ValueError(f"diverge_factor must be a finite number > 1, got {diverge_factor}")
    batch_size, grad, loss = check_batch_size(batch_size), check_grad_mode(grad), nn.as_loss(loss)
    x, y = (jnp.asarray(a) for a in data)
    check_data("data", x, y, batch_size)
    schedule = range_schedule(min_lr, max_lr, steps)
    optimizer = make_optimizer(schedule)
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            "make_optimizer(lr) must return an fnn.optim optimizer (with init and update), "
            f"got {type(optimizer).__name__}"
        )
    ts = init_train_state(model, optimizer, key, params=params, state=state)
    check_labels(model, ts.params, ts.state, x, y, loss, "data")
    options = dict(
        batch_size=batch_size, grad=grad, steps=steps, compute_dtype=check_compute_dtype(compute_dtype)
    )
    records = _range_test(ts.params, ts.state, ts.opt_state, ts.key, x, y, model=model, loss=loss,
                          optimizer=optimizer, **options)  # fmt: skip
    # The rates the optimizer used (its lr link) where a step applied; the schedule elsewhere.
    planned = jax.vmap(schedule)(jnp.arange(steps))
    lrs = jnp.where(records["ok"], records["lr"], planned) if "lr" in records else planned
    return summarize(
        np.asarray(lrs, np.float64),
        np.asarray(records["loss"], np.float64),
        beta=beta,
        diverge_factor=diverge_factor,
    )
