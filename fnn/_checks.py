"""Argument validation shared by every public function.

Checks run at trace time on what is visible then (shapes, dtypes, Python numbers) and,
for concrete arrays only, on values (e.g. class targets in range). Every error names the
argument, what was expected and what was received.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when `x` holds values now (not a tracer inside jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def check_floating(name: str, x: Any) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {jnp.result_type(x)}")


def check_integer(name: str, x: Any) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise TypeError(f"{name} must have an integer dtype (class indices), got {jnp.result_type(x)}")


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape (no silent broadcasting), "
            f"got {name_a} {tuple(jnp.shape(a))} and {name_b} {tuple(jnp.shape(b))}"
        )


def check_backward_input(grad_output: Any, input: Any) -> None:
    """An elementwise backward's arguments: a floating ``input`` and a ``grad_output`` of its shape."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)


def check_ndim(name: str, x: Any, allowed: tuple[int, ...]) -> None:
    if jnp.ndim(x) not in allowed:
        raise ValueError(f"{name} must have ndim in {allowed}, got shape {tuple(jnp.shape(x))}")


def check_dim(name: str, dim: Any, ndim: int, shape: tuple[int, ...]) -> int:
    """A torch-style dim (negative counts from the end) of an ``ndim``-dim input, as an index
    in [0, ndim); ``shape`` is the input's, for the message.

    >>> check_dim("dim", -1, 3, (2, 3, 4))
    2
    """
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"{name} must be a Python int, got {dim!r}") from None
    if not -ndim <= d < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim - 1}] for input of shape {shape}, got {d}")
    return d % ndim


def check_grad_shape(grad_output: Any, expected: tuple[int, ...]) -> None:
    """A backward's ``grad_output`` must have its forward output's shape (no broadcasting)."""
    if tuple(jnp.shape(grad_output)) != tuple(expected):
        raise ValueError(
            f"grad_output must have the forward output's shape {tuple(expected)}, "
            f"got {tuple(jnp.shape(grad_output))}"
        )


def is_int(value: Any) -> bool:
    """True for a Python or numpy integer that is not a bool (``True`` is an int to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """True for a Python or numpy real number (int or float) that is not a bool.

    Arrays are refused, 0-d ones included: this is the check for a static Python number.

    >>> is_real(0.5), is_real(2), is_real(True), is_real(np.float32(0.5))
    (True, True, False, True)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as a Python int, or a TypeError/ValueError naming ``name``.

    Args:
        name: the argument's name, for the message.
        value: what was passed; a bool is refused.
        minimum: the smallest value allowed, or None for any.

    Returns:
        ``int(value)``.

    Example:
        >>> check_int("patience", 3, minimum=0)
        3
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


GRAD_MODES = ("autodiff", "manual")


def check_grad_mode(grad: Any) -> str:
    """The one check of ``grad=``: ``'autodiff'`` (``jax.grad`` of the forward) or ``'manual'``
    (the hand-derived backward).

    Args:
        grad: the value to check.

    Returns:
        ``grad``, unchanged.

    Example:
        >>> check_grad_mode("manual")
        'manual'
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be 'autodiff' or 'manual', got {grad!r}")
    return grad


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Closed interval [low, high] on a Python number."""
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def check_positive(name: str, value: float, *, strict: bool = True) -> None:
    if not (value > 0 if strict else value >= 0):
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'}, got {value}")


def check_lr(lr: Any, *, allow_schedule: bool = True) -> float | Callable[[Any], Any]:
    """The one learning-rate rule (optim, schedules, classic): torch's lr >= 0, and finite.

    Torch rejects only lr < 0; NaN and inf pass its check and then poison every parameter
    on the first step, so they are rejected here. A 0-d array counts as a number (torch
    accepts a 1-element tensor).

    Args:
        lr: a real number, or (with allow_schedule) a callable schedule step -> lr, which
            passes through unchecked: its values are traced.
        allow_schedule: False where only a number makes sense (a schedule's base lr, the
            classic learners).

    Returns:
        The lr as a Python float, or the schedule unchanged.
    """
    if callable(lr):
        if allow_schedule:
            return lr
        raise TypeError(f"lr must be a number here, not a schedule, got {lr!r}")
    real_0d = (
        isinstance(lr, (np.ndarray, jax.Array))
        and lr.shape == ()
        and (jnp.issubdtype(lr.dtype, jnp.integer) or jnp.issubdtype(lr.dtype, jnp.floating))
    )
    if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) or real_0d):
        raise TypeError(f"lr must be a finite number >= 0, got {lr!r} of type {type(lr).__name__}")
    value = float(lr)
    if not (math.isfinite(value) and value >= 0):
        shown = lr if isinstance(lr, (int, float)) else value  # -1 reads as -1, np.float32 as a float
        raise ValueError(f"lr must be a finite number >= 0, got {shown}")
    return value


def check_batch_size(batch_size: Any, n_samples: int | None = None, what: str = "") -> int:
    """The one batch-size check: an int >= 1 (numpy integers too; bools are not sizes) and,
    given ``n_samples``, at most that many (``what`` names the data in the message)."""
    if isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    try:
        batch_size = operator.index(batch_size)
    except TypeError:
        raise TypeError(f"batch_size must be an int, got {batch_size!r}") from None
    check_positive("batch_size", batch_size)
    if n_samples is not None and batch_size > n_samples:
        prefix = f"{what}: " if what else ""
        raise ValueError(f"{prefix}batch_size {batch_size} exceeds the number of samples {n_samples}")
    return batch_size


def check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def check_classes_in_range(
    name: str, target: Any, num_classes: int, ignore_index: int | None = None, *, what: str = "values"
) -> None:
    """The one class-label check (losses, one_hot, the classic learners, evaluate, fit, the
    data loaders): every integer label in [0, num_classes) or equal to ``ignore_index``.

    It needs values, so it runs on concrete arrays only (on the host: a device array is
    copied there) and returns without looking under jit, where the class losses turn an
    invalid label into NaN instead (LBL-1).

    Args:
        name: what the labels are, for the message (``"target"``, ``"eval_data"``).
        target: integer labels of any shape.
        num_classes: C, the number of classes.
        ignore_index: a label value that is allowed besides the classes, or None.
        what: the noun after ``name`` in the message (``"values"``, ``"labels"``).

    Raises:
        ValueError: naming the first bad value, its index, the valid range and how many
            labels are bad.
    """
    if not is_concrete(target):
        return
    t = np.asarray(target)
    bad = (t < 0) | (t >= num_classes)
    if ignore_index is not None:
        bad &= t != ignore_index
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f" at index {first[0] if len(first) == 1 else first}" if first else ""
    also = f"; ignore_index={ignore_index} is also allowed" if ignore_index is not None else ""
    raise ValueError(
        f"{name} {what} must be in [0, {num_classes}), got {t[first].item()}{where} ({int(bad.sum())} "
        f"of {t.size} out of range, spanning [{t[bad].min()}, {t[bad].max()}]{also})"
    )


def check_key(name: str, key: Any, who: str) -> None:
    if key is None:
        raise ValueError(f"{who} needs a PRNG key ({name}=jax.random.key(...)) when training, got None")


def reduce(loss: jax.Array, reduction: str) -> jax.Array:
    """Apply a PyTorch-style reduction ('mean' of an empty array is NaN, as in torch)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return jnp.sum(loss)
    return jnp.mean(loss)
