"""Validation and bookkeeping shared by the losses in fnn.functional.losses.

Everything here runs at trace time on shapes, dtypes and Python numbers; value checks
(class targets in range) run only on concrete arrays, via fnn._checks. Under jit an
invalid class target cannot raise, so it makes its item's loss and gradient NaN (LBL-1).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import (
    check_classes_in_range,
    check_floating,
    check_int,
    check_integer,
    check_reduction,
    check_same_shape,
)


def pointwise_args(input: Any, target: Any, reduction: str) -> tuple[jax.Array, jax.Array]:
    """Validate a regression-style pair; the target is cast to the input's dtype."""
    check_reduction(reduction)
    input, target = jnp.asarray(input), jnp.asarray(target)
    check_floating("input", input)
    check_floating("target", target)
    check_same_shape("input", input, "target", target)
    return input, target.astype(input.dtype)


def optional_broadcast(
    name: str, value: Any, shape: tuple[int, ...], dtype: Any, what: str = "broadcast to"
) -> jax.Array | None:
    """A float array (or None) that broadcasts to `shape` without growing it."""
    if value is None:
        return None
    value = jnp.asarray(value)
    check_floating(name, value)
    try:
        ok = jnp.broadcast_shapes(value.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must {what} input of shape {tuple(shape)}, got {name} {value.shape}")
    return value.astype(dtype)


def grad_output_for(grad_output: Any, reduction: str, loss_shape: tuple[int, ...]) -> jax.Array:
    """grad_output is a scalar for 'mean'/'sum' and has the unreduced loss's shape for 'none'."""
    g = jnp.asarray(grad_output)
    expected = tuple(loss_shape) if reduction == "none" else ()
    if g.shape != expected:
        raise ValueError(
            f"grad_output must have shape {expected} (the loss's shape for "
            f"reduction={reduction!r}), got {g.shape}"
        )
    return g


def pointwise_scale(grad_output: Any, reduction: str, input: jax.Array) -> jax.Array:
    """dL/dℓ_i for each unreduced term of an element-wise loss of ``input``: g_i ('none'),
    g broadcast ('sum') or g/numel ('mean'), after checking ``grad_output``'s shape."""
    shape, dtype = input.shape, input.dtype
    g = grad_output_for(grad_output, reduction, shape).astype(dtype)
    if reduction == "none":
        return g
    if reduction == "mean":
        g = g / jnp.asarray(int(np.prod(shape)), dtype)  # empty input: the result is empty anyway
    return jnp.broadcast_to(g, shape)


def safe_ratio(total: jax.Array, den: jax.Array) -> jax.Array:
    """total/den, NaN when den == 0 (torch's 0/0), but with a zero gradient there.

    A plain division would send inf·0 = NaN into jax.grad when every target is ignored
    (NLL-2 wants zeros), so the zero denominator is swapped out before dividing.
    """
    zero = den == 0
    return jnp.where(zero, jnp.nan, total / jnp.where(zero, 1, den))


def check_ignore_index(ignore_index: Any) -> int:
    return check_int("ignore_index", ignore_index)


def class_weight(weight: Any, num_classes: int, dtype: Any) -> jax.Array | None:
    if weight is None:
        return None
    weight = jnp.asarray(weight)
    check_floating("weight", weight)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"weight must have shape ({num_classes},) (one entry per class), got weight {weight.shape}"
        )
    return weight.astype(dtype)


def class_input(input: Any) -> tuple[jax.Array, bool]:
    """Input as (N, C, d1..dK); unbatched (C,) becomes (1, C). Returns (input, unbatched)."""
    input = jnp.asarray(input)
    check_floating("input", input)
    if input.ndim == 0:
        raise ValueError(f"input must be (C,), (N, C) or (N, C, d1, ..., dK), got shape {input.shape}")
    unbatched = input.ndim == 1
    return (input[None] if unbatched else input), unbatched


def class_args(input: Any, weight: Any, ignore_index: Any) -> tuple[jax.Array, bool, jax.Array | None, int]:
    """The checks NLL and cross-entropy share: (input as (N, C, d...), unbatched, weight, ignore_index)."""
    ignore_index = check_ignore_index(ignore_index)
    x, unbatched = class_input(input)
    return x, unbatched, class_weight(weight, x.shape[1], x.dtype), ignore_index


def index_targets(input: jax.Array, unbatched: bool, target: Any, ignore_index: int) -> jax.Array:
    """Validate class-index targets for a batched input; returns them batched, signed."""
    target = jnp.asarray(target)
    check_integer("target", target)
    expected = () if unbatched else (input.shape[0], *input.shape[2:])
    if target.shape != expected:
        raise ValueError(
            f"target must have shape {expected} for input of shape "
            f"{input.shape[1:] if unbatched else input.shape}, got target {target.shape}"
        )
    check_classes_in_range("target", target, input.shape[1], ignore_index)
    # NLL-4: any integer dtype; a signed type keeps the comparison with ignore_index exact.
    if not (jnp.issubdtype(target.dtype, jnp.signedinteger) and target.dtype.itemsize >= 4):
        target = target.astype(jnp.int32)
    return target[None] if unbatched else target


def along_classes(v: jax.Array, ndim: int) -> jax.Array:
    """(C,) → (1, C, 1, ..., 1) so that it broadcasts along dim 1 of a rank-`ndim` array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def picked(target: jax.Array, ignore_index: int, weight: jax.Array | None, num_classes: int, dtype: Any):
    """Per-item (safe target, mask, w_{y_n}·mask, bad) for index targets.

    ``mask`` marks the items that count: neither ignored nor invalid. ``bad`` marks the
    invalid ones (outside [0, C) and not ignore_index; only traced targets get here, concrete
    ones raise first). Both get weight 0 and the safe class 0, so no gather wraps (−1 would
    read class C − 1) or clamps; the caller turns ``bad`` items into NaN (LBL-1).
    """
    counted = target != ignore_index
    bad = counted & ((target < 0) | (target >= num_classes))
    mask = counted & ~bad
    safe = jnp.where(mask, target, 0)
    w = mask.astype(dtype) if weight is None else jnp.where(mask, weight[safe], 0).astype(dtype)
    return safe, mask, w, bad


def nan_where_bad(loss: jax.Array, bad: jax.Array, picked_value: jax.Array) -> jax.Array:
    """Per-item losses with NaN at ``bad`` items, such that jax.grad is NaN there too (LBL-1).

    A plain ``where(bad, nan, loss)`` would give jax.grad a zero there. The NaN comes
    instead from ``nan_n·picked_value_n``, with ``picked_value`` (N, d...) the input value
    the loss already gathered for the item (at the placeholder class 0), so the common path
    reads nothing more: cross-entropy gathers a log-probability, whose derivative reaches
    every logit of the row through the softmax (a NaN row); NLL gathers the input entry
    itself (NaN at that entry, the only one NLL reads). ``nan_n`` is 0 on good items, so no
    0·NaN leaks into their gradient, and there the selected branch is the untouched loss.
    """
    nan_n = jnp.where(bad, jnp.nan, 0).astype(loss.dtype)
    return jnp.where(bad, nan_n * picked_value, loss)


def nan_where_bad_coef(coef: jax.Array, bad: jax.Array) -> jax.Array:
    """The manual-backward side of `nan_where_bad`: a per-item coefficient (N, d...) that is
    NaN at ``bad`` items (LBL-1), an (N, d...) select rather than one over every class."""
    return jnp.where(bad, jnp.nan, coef)


def take_class(x: jax.Array, safe_target: jax.Array) -> jax.Array:
    """x[n, y_n, d...] for every item: (N, C, d...) → (N, d...)."""
    return jnp.take_along_axis(x, safe_target[:, None], axis=1)[:, 0]


def finish(loss: jax.Array, reduction: str, den: jax.Array | None, unbatched: bool) -> jax.Array:
    """Reduce per-item losses (N, d...) the torch way; 'mean' divides by `den`."""
    if reduction == "none":
        return loss[0] if unbatched else loss
    total = jnp.sum(loss)
    return total if reduction == "sum" else safe_ratio(total, den)


def item_scale(
    g: jax.Array,
    reduction: str,
    item_shape: tuple[int, ...],
    den: jax.Array | None,
    unbatched: bool,
    dtype: Any,
) -> jax.Array:
    """dL/dℓ_n for each (batched) item, the reverse of `finish`."""
    g = g.astype(dtype)
    if reduction == "none":
        return g[None] if unbatched else g
    if reduction == "mean":
        g = g / jnp.where(den == 0, 1, den)  # every item ignored: all per-item weights are 0 too
    return jnp.broadcast_to(g, item_shape)
