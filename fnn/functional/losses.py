"""Losses with torch.nn.functional names, arguments, defaults and edge cases.

Contract (docs/semantics.md, sections 6-8 and LBL-1):
- ``reduction`` is 'mean' (default), 'sum' or 'none'. Element-wise losses (L1, MSE, Huber,
  SmoothL1, BCE, BCE-with-logits) average over all elements; NLL and index-target CE take
  the weighted mean Σℓ_n / Σ_n w_{y_n} (NLL-1); probability-target CE divides by N (CE-3).
- Element-wise losses need ``input`` and ``target`` of the same shape (torch broadcasts
  with a warning; fnn raises, MSE-1). The target is cast to the input's dtype.
- Class losses take input (C,), (N, C) or (N, C, d1..dK), classes on dim 1 (dim 0 when
  unbatched), and integer targets of the input's shape without the class dim, of any
  integer dtype (NLL-4; torch wants Long/Byte). ``cross_entropy`` also takes float class
  probabilities of the input's own shape.
- Only ``input`` is differentiated: ``f_backward(grad_output, <f's arguments>)`` returns
  dL/d input, ``grad_output`` a scalar for 'mean'/'sum' and of the output's shape for
  'none'. The forwards are plain jax.numpy (BCE's through a ``custom_jvp``), so ``jax.grad``
  agrees with the manual backward, kinks included: |d|'(0) = 0 (L1-1), BCE's gradient is
  torch's w(x − y)/max(x(1 − x), 1e-12) (BCE-2), an all-ignored batch gives a NaN 'mean'
  loss with a zero gradient (NLL-2).
- Shapes, dtypes and hyperparameters (reduction, delta, beta, ignore_index,
  label_smoothing: static Python values) are checked at trace time; values (class targets
  in range, BCE input and target in [0, 1]) only on concrete arrays, so every loss runs
  under jit, grad and vmap. Under jit a bad value poisons instead of raising: a class target
  outside [0, C) that is not ignore_index makes its item's loss and gradient NaN (the whole
  row for cross_entropy, the entry it reads for nll_loss; LBL-1), a BCE value outside
  [0, 1] its element's (BCE-4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_positive, check_range, check_reduction, is_concrete, reduce
from fnn.functional._loss_utils import (
    along_classes,
    class_args,
    finish,
    grad_output_for,
    index_targets,
    item_scale,
    nan_where_bad,
    nan_where_bad_coef,
    optional_broadcast,
    picked,
    pointwise_args,
    pointwise_scale,
    take_class,
)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "huber_loss",
    "huber_loss_backward",
    "l1_loss",
    "l1_loss_backward",
    "mse_loss",
    "mse_loss_backward",
    "nll_loss",
    "nll_loss_backward",
    "smooth_l1_loss",
    "smooth_l1_loss_backward",
]

Array = jax.Array

# torch clamps BCE's gradient denominator at the C++ float 1e-12, i.e. float32(1e-12)
# (9.99999996e-13), which is why torch's d BCE/dp at p=0, y=1 is -1.000000004e12.
_BCE_GRAD_FLOOR = float(np.float32(1e-12))


def _abs(d: Array) -> Array:
    # d·sign(d) equals |d| exactly, and its derivative sign(d) is 0 at 0 as in torch
    # (jnp.abs would give jax.grad a 1 there).
    return d * jnp.sign(d)


# --------------------------------------------------------------------------- regression


def l1_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """ℓ = |x − y| (L1-1).

    Args:
        input: a floating array of any shape.
        target: an array of the input's shape, cast to its dtype.
        reduction: 'mean' (default, over all elements), 'sum' or 'none'.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.l1_loss(jnp.array([1.0, -2.0, 0.0]), jnp.zeros(3)).tolist()
        1.0
    """
    input, target = pointwise_args(input, target, reduction)
    return reduce(_abs(input - target), reduction)


def l1_loss_backward(grad_output: Array, input: Array, target: Array, reduction: str = "mean") -> Array:
    """dℓ_i/dx_i = sign(x_i − y_i), with sign(0) = 0 (torch's subgradient, L1-1).

    With L = Σℓ_i ('sum') or Σℓ_i/n ('mean'): dL/dx_i = g·sign(d_i) (·1/n); 'none': g_i·sign(d_i).

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, reduction: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, y = jnp.array([1.0, -2.0, 0.0]), jnp.zeros(3)
        >>> F.l1_loss_backward(jnp.array(1.0), x, y, reduction="sum").tolist()  # sign(0) = 0
        [1.0, -1.0, 0.0]
    """
    input, target = pointwise_args(input, target, reduction)
    s = pointwise_scale(grad_output, reduction, input)
    return s * jnp.sign(input - target)


def mse_loss(input: Array, target: Array, reduction: str = "mean") -> Array:
    """ℓ = (x − y)² (MSE-1).

    Args:
        input: a floating array of any shape.
        target: an array of the input's shape, cast to its dtype.
        reduction: 'mean' (default, over all elements), 'sum' or 'none'.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.mse_loss(jnp.array([1.0, 2.0]), jnp.zeros(2)).tolist()
        2.5
    """
    input, target = pointwise_args(input, target, reduction)
    d = input - target
    return reduce(d * d, reduction)


def mse_loss_backward(grad_output: Array, input: Array, target: Array, reduction: str = "mean") -> Array:
    """dℓ_i/dx_i = 2(x_i − y_i); times g, g/n ('mean') or g_i ('none').

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, reduction: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.mse_loss_backward(jnp.array(1.0), jnp.array([1.0, 2.0]), jnp.zeros(2)).tolist()  # 2d / 2
        [1.0, 2.0]
    """
    input, target = pointwise_args(input, target, reduction)
    s = pointwise_scale(grad_output, reduction, input)
    return s * 2 * (input - target)


def huber_loss(input: Array, target: Array, reduction: str = "mean", delta: float = 1.0) -> Array:
    """ℓ = 0.5·d² if |d| < δ else δ·(|d| − 0.5·δ), d = x − y; δ must be > 0 (HUB-1).

    Args:
        input: a floating array of any shape.
        target: an array of the input's shape, cast to its dtype.
        reduction: 'mean' (default, over all elements), 'sum' or 'none'.
        delta: δ > 0 (default 1.0), where the quadratic turns linear; a static Python number.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.huber_loss(jnp.array([0.5, 3.0]), jnp.zeros(2), reduction="none").tolist()
        [0.125, 2.5]
    """
    input, target = pointwise_args(input, target, reduction)
    check_positive("delta", delta)
    d = input - target
    ad = _abs(d)
    return reduce(jnp.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta)), reduction)


def huber_loss_backward(
    grad_output: Array, input: Array, target: Array, reduction: str = "mean", delta: float = 1.0
) -> Array:
    """dℓ/dd = d inside |d| < δ, δ·sign(d) outside: both are clip(d, −δ, δ).

    The two pieces meet with value and slope at |d| = δ (0.5δ² and δ), so clip is exact there.

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, reduction, delta: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, y = jnp.array([0.5, 3.0]), jnp.zeros(2)
        >>> F.huber_loss_backward(jnp.array(1.0), x, y, reduction="sum").tolist()  # clip(d, -1, 1)
        [0.5, 1.0]
    """
    input, target = pointwise_args(input, target, reduction)
    check_positive("delta", delta)
    s = pointwise_scale(grad_output, reduction, input)
    return s * jnp.clip(input - target, -delta, delta)


def smooth_l1_loss(input: Array, target: Array, reduction: str = "mean", beta: float = 1.0) -> Array:
    """ℓ = 0.5·d²/β if |d| < β else |d| − 0.5·β; β = 0 is exactly L1, β < 0 an error (SL1-1).

    Huber_δ = δ·SmoothL1_{β=δ}; the two coincide only at δ = β = 1.

    Args:
        input: a floating array of any shape.
        target: an array of the input's shape, cast to its dtype.
        reduction: 'mean' (default, over all elements), 'sum' or 'none'.
        beta: β >= 0 (default 1.0), where the quadratic turns linear; a static Python number.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.smooth_l1_loss(jnp.array([1.0, 3.0]), jnp.zeros(2), reduction="none", beta=2.0).tolist()
        [0.25, 2.0]
    """
    input, target = pointwise_args(input, target, reduction)
    check_positive("beta", beta, strict=False)
    d = input - target
    ad = _abs(d)
    if beta == 0:  # d²/β would put 0/0 into the unused branch and NaN into jax.grad
        return reduce(ad, reduction)
    return reduce(jnp.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta), reduction)


def smooth_l1_loss_backward(
    grad_output: Array, input: Array, target: Array, reduction: str = "mean", beta: float = 1.0
) -> Array:
    """dℓ/dd = d/β inside |d| < β, sign(d) outside: clip(d/β, −1, 1); β = 0: sign(d) (L1).

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, reduction, beta: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, y = jnp.array([1.0, 3.0]), jnp.zeros(2)
        >>> F.smooth_l1_loss_backward(jnp.array(1.0), x, y, reduction="sum", beta=2.0).tolist()
        [0.5, 1.0]
    """
    input, target = pointwise_args(input, target, reduction)
    check_positive("beta", beta, strict=False)
    s = pointwise_scale(grad_output, reduction, input)
    d = input - target
    return s * (jnp.sign(d) if beta == 0 else jnp.clip(d / beta, -1, 1))


# --------------------------------------------------------------------------- binary


def _clamped_logs(x: Array) -> tuple[Array, Array]:
    # BCE-1: torch clamps both logs at −100, so BCE(0, 1) = BCE(1, 0) = 100 and 0·log 0 = 0.
    return jnp.maximum(jnp.log(x), -100.0), jnp.maximum(jnp.log1p(-x), -100.0)


def _bce_invalid(x: Array, y: Array) -> Array:
    # BCE-4: what torch rejects (x or y outside [0, 1]); NaN fails both comparisons, so it counts.
    return ~((x >= 0) & (x <= 1) & (y >= 0) & (y <= 1))


def _bce_dx(x: Array, y: Array) -> Array:
    # BCE-4: without the where, x outside [0, 1] would hit the 1e-12 floor and give a huge
    # but finite gradient.
    dx = (x - y) / jnp.maximum(x * (1 - x), jnp.asarray(_BCE_GRAD_FLOOR, x.dtype))
    return jnp.where(_bce_invalid(x, y), jnp.nan, dx)


def _bce_values(x: Array, y: Array) -> tuple[Array, Array, Array]:
    """(ℓ, log x, log(1 − x)), both logs clamped, ℓ NaN where x or y is outside [0, 1]."""
    log_x, log_1mx = _clamped_logs(x)
    out = -y * log_x - (1 - y) * log_1mx  # not −(a + b): gives +0, not −0, at x = y ∈ {0, 1}
    return jnp.where(_bce_invalid(x, y), jnp.nan, out), log_x, log_1mx


@jax.custom_jvp
def _bce_terms(x: Array, y: Array) -> Array:
    return _bce_values(x, y)[0]


@_bce_terms.defjvp
def _bce_terms_jvp(primals, tangents):
    # BCE-2: torch's gradient, not the derivative of the clamped loss (which is 0 at the clamp).
    (x, y), (dx, dy) = primals, tangents
    out, log_x, log_1mx = _bce_values(x, y)
    return out, _bce_dx(x, y) * dx + (log_1mx - log_x) * dy


def _check_unit_interval(name: str, a: Array) -> None:
    """BCE-4, on concrete arrays: torch's message, plus the first bad value and its index."""
    if not is_concrete(a):
        return
    v = np.asarray(a)
    bad = ~((v >= 0) & (v <= 1))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f" at index {first[0] if len(first) == 1 else first}" if first else ""
        hint = " (use binary_cross_entropy_with_logits for logits)" if name == "input" else ""
        raise ValueError(f"all elements of {name} should be between 0 and 1{hint}, got {v[first]}{at}")


def _bce_args(input, target, weight, reduction):
    input, target = pointwise_args(input, target, reduction)
    _check_unit_interval("input", input)  # torch checks the input first
    _check_unit_interval("target", target)
    return input, target, optional_broadcast("weight", weight, input.shape, input.dtype)


def binary_cross_entropy(
    input: Array, target: Array, weight: Array | None = None, reduction: str = "mean"
) -> Array:
    """ℓ = −w·[y·max(log x, −100) + (1 − y)·max(log(1 − x), −100)] (BCE-1).

    Soft targets y ∈ [0, 1] are allowed; ``weight`` broadcasts to the input and 'mean'
    divides by numel, not Σw (BCE-3). BCE-4, as torch: an input or a target outside
    [0, 1] (NaN included) raises ValueError("all elements of input should be between 0 and
    1") on concrete arrays; under jit, where values cannot raise, that element's loss and
    gradient (manual and jax.grad) are NaN, so a 'mean' or 'sum' is NaN too.

    Args:
        input: probabilities in [0, 1].
        target: targets in [0, 1], of the input's shape.
        weight: element-wise rescaling that broadcasts to the input, or None.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> p, y = jnp.array([0.5, 0.9, 0.0]), jnp.ones(3)
        >>> F.binary_cross_entropy(p, y, reduction="none").round(4).tolist()  # log clamped at -100
        [0.6931, 0.1054, 100.0]
    """
    input, target, w = _bce_args(input, target, weight, reduction)
    loss = _bce_terms(input, target)
    return reduce(loss if w is None else w * loss, reduction)


def binary_cross_entropy_backward(
    grad_output: Array, input: Array, target: Array, weight: Array | None = None, reduction: str = "mean"
) -> Array:
    """dℓ/dx = −w·[y/x − (1 − y)/(1 − x)] = w·(x − y)/(x(1 − x)), floored as torch does.

    BCE-2: the denominator is max(x(1 − x), 1e-12), so at x = 0, y = 1 the gradient is
    ≈ −1e12, not the 0 that the −100 clamp of the loss would give. BCE-4: an input or
    target outside [0, 1] raises on concrete arrays and gives NaN under jit.

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, weight, reduction: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> p, y = jnp.array([0.5, 0.8]), jnp.array([1.0, 0.0])
        >>> F.binary_cross_entropy_backward(jnp.array(1.0), p, y, reduction="sum").round(4).tolist()
        [-2.0, 5.0]
    """
    input, target, w = _bce_args(input, target, weight, reduction)
    s = pointwise_scale(grad_output, reduction, input)
    grad = s * _bce_dx(input, target)
    return grad if w is None else w * grad


def _bcel_args(input, target, weight, reduction, pos_weight):
    input, target = pointwise_args(input, target, reduction)
    w = optional_broadcast("weight", weight, input.shape, input.dtype)
    pw = optional_broadcast(
        "pos_weight",
        pos_weight,
        input.shape,
        input.dtype,
        what="broadcast along the last (class) dimension of",
    )
    return input, target, w, (target if pw is None else pw * target)


def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Array:
    """ℓ = −w·[p·y·log σ(x) + (1 − y)·log σ(−x)] (BCEL-1).

    Stable form: −log σ(x) = softplus(−x) and −log σ(−x) = softplus(x), with softplus a
    log-sum-exp, so ℓ = w·[p·y·softplus(−x) + (1 − y)·softplus(x)]; no −100 clamp (logit
    100 with y = 0 costs 100). ``pos_weight`` broadcasts along the last dimension.
    BCE-4: unlike ``binary_cross_entropy``, any target is accepted, as torch does: a target
    outside [0, 1] (e.g. 1.5) just enters the formula, and a NaN target gives a NaN loss.

    Args:
        input: logits, a floating array of any shape.
        target: an array of the input's shape (any values, see BCE-4 above).
        weight: element-wise rescaling that broadcasts to the input, or None.
        reduction: 'mean' (default, over all elements), 'sum' or 'none'.
        pos_weight: weight p of the positive term, broadcast along the last (class) dim, or None.

    Returns:
        The loss: a scalar, or the input's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, y = jnp.array([0.0, 1000.0]), jnp.array([1.0, 0.0])
        >>> F.binary_cross_entropy_with_logits(x, y, reduction="none").round(4).tolist()
        [0.6931, 1000.0]
    """
    input, target, w, py = _bcel_args(input, target, weight, reduction, pos_weight)
    loss = py * jax.nn.softplus(-input) + (1 - target) * jax.nn.softplus(input)
    return reduce(loss if w is None else w * loss, reduction)


def binary_cross_entropy_with_logits_backward(
    grad_output: Array,
    input: Array,
    target: Array,
    weight: Array | None = None,
    reduction: str = "mean",
    pos_weight: Array | None = None,
) -> Array:
    """softplus'(x) = σ(x), so dℓ/dx = w·[(1 − y)·σ(x) − p·y·σ(−x)].

    With p = 1 this is the familiar w·(σ(x) − y); σ(±x) never overflows, so it is finite at ±1000.

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the input's shape for 'none'.
        input, target, weight, reduction, pos_weight: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, y = jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0])
        >>> g = F.binary_cross_entropy_with_logits_backward(jnp.array(1.0), x, y, reduction="sum")
        >>> g.round(4).tolist()  # σ(x) - y
        [-0.5, 0.8808]
    """
    input, target, w, py = _bcel_args(input, target, weight, reduction, pos_weight)
    s = pointwise_scale(grad_output, reduction, input)
    grad = s * ((1 - target) * jax.nn.sigmoid(input) - py * jax.nn.sigmoid(-input))
    return grad if w is None else w * grad


# --------------------------------------------------------------------------- classes


def _nll_args(input, target, weight, ignore_index, reduction):
    check_reduction(reduction)
    x, unbatched, w, ignore_index = class_args(input, weight, ignore_index)
    return x, unbatched, index_targets(x, unbatched, target, ignore_index), w, ignore_index


def nll_loss(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """ℓ_n = −w_{y_n}·x_{n,y_n}·1[y_n ≠ ignore_index]; 'mean' = Σℓ_n / Σ_n w_{y_n}·1[y_n ≠ ii].

    The input is taken to be log-probabilities (unchecked). NLL-1..4: weighted mean; all
    items ignored → 'mean' NaN, 'sum' 0, 'none' zeros; (N, C, d1..dK) averages over every
    position; unbatched (C,) with a scalar target; any integer target dtype.
    LBL-1: a target outside [0, C) that is not ignore_index raises on concrete arrays and,
    under jit, makes that item's loss NaN (so 'mean' and 'sum' are NaN).

    Args:
        input: log-probabilities (C,), (N, C) or (N, C, d1..dK), classes on dim 1 (0 if unbatched).
        target: integer class indices of the input's shape without the class dim.
        weight: per-class weights (C,), or None.
        ignore_index: a target value that contributes neither loss nor weight (default -100).
        reduction: 'mean' (default, weighted), 'sum' or 'none'.

    Returns:
        The loss: a scalar, or the target's shape for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> log_probs, labels = jnp.array([[-1.0, -2.0], [-3.0, -0.5]]), jnp.array([0, 1])
        >>> F.nll_loss(log_probs, labels).tolist()  # (1 + 0.5) / 2
        0.75
    """
    x, unbatched, t, w, ii = _nll_args(input, target, weight, ignore_index, reduction)
    safe, mask, wn, bad = picked(t, ii, w, x.shape[1], x.dtype)
    # where, not a product: an ignored position's log-probability may be −inf.
    x_y = take_class(x, safe)
    loss = nan_where_bad(jnp.where(mask, -wn * x_y, 0), bad, x_y)
    return finish(loss, reduction, jnp.sum(wn), unbatched)


def nll_loss_backward(
    grad_output: Array,
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Array:
    """dℓ_n/dx_{n,c} = −w_{y_n}·1[c = y_n]·1[y_n ≠ ii]: one entry per item, zero elsewhere.

    'mean' scales by g/Σ_n w_{y_n}; when every item is ignored all those weights are 0 and
    the gradient is zeros, not NaN (NLL-2). LBL-1: an item whose (traced) target is
    outside [0, C) and not ignore_index gets NaN at the entry it reads (its placeholder
    class 0), zeros elsewhere, as jax.grad of ``nll_loss`` gives.

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the target's shape for 'none'.
        input, target, weight, ignore_index, reduction: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> log_probs, labels = jnp.array([[-1.0, -2.0], [-3.0, -0.5]]), jnp.array([0, 1])
        >>> F.nll_loss_backward(jnp.array(1.0), log_probs, labels).tolist()
        [[-0.5, 0.0], [0.0, -0.5]]
    """
    x, unbatched, t, w, ii = _nll_args(input, target, weight, ignore_index, reduction)
    safe, _, wn, bad = picked(t, ii, w, x.shape[1], x.dtype)
    item_shape = t.shape
    g = grad_output_for(grad_output, reduction, item_shape[1:] if unbatched else item_shape)
    s = item_scale(g, reduction, item_shape, jnp.sum(wn), unbatched, x.dtype)
    # LBL-1: a bad item's coefficient is NaN, at its placeholder class 0, as jax.grad gives.
    coef = nan_where_bad_coef(-(s * wn), bad)
    grad = jnp.where(jax.nn.one_hot(safe, x.shape[1], axis=1, dtype=bool), coef[:, None], 0)
    return grad[0] if unbatched else grad


def _ce_args(input, target, weight, ignore_index, reduction, label_smoothing):
    check_reduction(reduction)
    check_range("label_smoothing", label_smoothing, 0.0, 1.0)
    x, unbatched, w, ignore_index = class_args(input, weight, ignore_index)
    target = jnp.asarray(target)
    probs = target.shape == jnp.shape(input)
    if probs:
        if not jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                f"target of the input's shape {target.shape} holds class probabilities and must "
                f"have a floating dtype, got {target.dtype}"
            )
        if ignore_index >= 0:
            raise ValueError(f"ignore_index must be < 0 with class-probability targets, got {ignore_index}")
        t = target.astype(x.dtype)
        t = t[None] if unbatched else t
    else:
        if jnp.issubdtype(target.dtype, jnp.floating):
            raise TypeError(
                f"target of shape {target.shape} (input {jnp.shape(input)}) holds class indices and "
                f"must have an integer dtype, got {target.dtype}; class probabilities need the "
                f"input's shape"
            )
        t = index_targets(x, unbatched, target, ignore_index)
    return x, unbatched, t, w, ignore_index, probs


def _smoothed_probs(t: Array, w: Array | None, label_smoothing: float) -> Array:
    """w_c·y'_c with y' = (1 − ε)·y + ε/C (CE-3), for probability targets (N, C, d...)."""
    y = (1 - label_smoothing) * t + label_smoothing / t.shape[1]
    return y if w is None else y * along_classes(w, t.ndim)


def cross_entropy(
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """Softmax cross-entropy over dim 1 of logits, with torch's index and probability targets.

    Index targets (CE-1, CE-2): with log p = log_softmax(x, dim=1) (a stable log-sum-exp),
      ℓ_n = (1 − ε)·(−w_{y_n}·log p_{n,y_n}) + (ε/C)·S_n,  S_n = −Σ_c w_c·log p_{n,c},
    both 0 at ignored items; 'mean' divides the whole sum by Σ_n w_{y_n}·1[y_n ≠ ii].
    An ignore_index that is a valid class stays in the softmax denominator (CE-4); 'none'
    returns the weighted per-item loss (CE-6); an empty batch gives a NaN 'mean' (CE-5).
    Probability targets (CE-3), float and of the input's shape: y' = (1 − ε)·y + ε/C,
      ℓ_n = −Σ_c w_c·y'_c·log p_{n,c},  'mean' divides by N (items times positions), not Σw;
    ignore_index must then be negative.
    LBL-1: an index target outside [0, C) that is not ignore_index raises on concrete
    arrays; under jit it makes that item's loss NaN ('mean' and 'sum' NaN too), never the
    loss of a wrapped class (a plain gather would read −1 as class C − 1).

    Args:
        input: logits (C,), (N, C) or (N, C, d1..dK), classes on dim 1 (0 if unbatched).
        target: integer class indices of the input's shape without the class dim, or float
            class probabilities of the input's shape.
        weight: per-class weights (C,), or None.
        ignore_index: an index target value that contributes neither loss nor weight
            (default -100); must be negative with probability targets.
        reduction: 'mean' (default), 'sum' or 'none'.
        label_smoothing: ε in [0, 1] (default 0.0).

    Returns:
        The loss: a scalar, or one value per item (and position) for 'none'.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
        >>> F.cross_entropy(logits, jnp.array([0, 1])).round(4).tolist()
        0.41
        >>> F.cross_entropy(logits, jnp.array([0, -100])).round(4).tolist()  # second item ignored
        0.1269
        >>> F.cross_entropy(logits, jnp.array([[0.5, 0.5], [1.0, 0.0]])).round(4).tolist()  # probabilities
        0.91
    """
    x, unbatched, t, w, ii, probs = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing)
    eps, num_classes = label_smoothing, x.shape[1]
    logp = jax.nn.log_softmax(x, axis=1)
    if probs:
        loss = -jnp.sum(_smoothed_probs(t, w, eps) * logp, axis=1)
        return finish(loss, reduction, jnp.asarray(loss.size, x.dtype), unbatched)
    safe, mask, wn, bad = picked(t, ii, w, num_classes, x.dtype)
    logp_y = take_class(logp, safe)
    loss = jnp.where(mask, -wn * logp_y, 0)
    if eps > 0:
        wc = 1 if w is None else along_classes(w, x.ndim)
        smooth = jnp.where(mask, -jnp.sum(wc * logp, axis=1), 0)
        loss = (1 - eps) * loss + (eps / num_classes) * smooth
    return finish(nan_where_bad(loss, bad, logp_y), reduction, jnp.sum(wn), unbatched)


def cross_entropy_backward(
    grad_output: Array,
    input: Array,
    target: Array,
    weight: Array | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Array:
    """Softmax + cross-entropy collapses to "p minus target" (p = softmax(x, dim=1)).

    d log p_c/dx_j = δ_cj − p_j, so for any per-class coefficients a_c,
      d(−Σ_c a_c·log p_c)/dx_j = p_j·Σ_c a_c − a_j.
    Index targets: the NLL term has a = w_y·onehot(y) → w_y·(p − onehot(y)); the smoothing
      term has a = w → p·Σ_c w_c − w; so dℓ_n/dx = (1 − ε)·w_y·(p − onehot) + (ε/C)·(p·Σw − w),
      zero at ignored items; without weights this is p − ((1 − ε)·onehot + ε/C).
    Probability targets: a = w·y' → p·Σ_c w_c·y'_c − w·y' (= p − y' without weights).
    Then times g, g_n ('none'), g/N (probability 'mean') or g/Σ_n w_{y_n} (index 'mean';
    zeros when every item is ignored). LBL-1: the row of an item whose (traced) index
    target is invalid is NaN, as jax.grad of ``cross_entropy`` gives, not p − 0.

    Args:
        grad_output: dL/d loss: a scalar for 'mean'/'sum', the 'none' output's shape for 'none'.
        input, target, weight, ignore_index, reduction, label_smoothing: the forward's arguments.

    Returns:
        dL/d input, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
        >>> F.cross_entropy_backward(jnp.array(1.0), logits, jnp.array([0, 1])).round(4).tolist()
        [[-0.0596, 0.0596], [0.25, -0.25]]
        >>> g = F.cross_entropy_backward(jnp.array(1.0), jnp.zeros(2), jnp.array(0), label_smoothing=0.2)
        >>> g.round(4).tolist()  # p - ((1 - ε)·onehot + ε/C)
        [-0.4, 0.4]
    """
    x, unbatched, t, w, ii, probs = _ce_args(input, target, weight, ignore_index, reduction, label_smoothing)
    eps, num_classes, dtype = label_smoothing, x.shape[1], x.dtype
    p = jax.nn.softmax(x, axis=1)
    item_shape = (x.shape[0], *x.shape[2:])
    g = grad_output_for(grad_output, reduction, item_shape[1:] if unbatched else item_shape)
    if probs:
        a = _smoothed_probs(t, w, eps)
        s = item_scale(
            g, reduction, item_shape, jnp.asarray(int(np.prod(item_shape)), dtype), unbatched, dtype
        )
        grad = s[:, None] * (p * jnp.sum(a, axis=1, keepdims=True) - a)
    else:
        safe, mask, wn, bad = picked(t, ii, w, num_classes, dtype)
        s = item_scale(g, reduction, item_shape, jnp.sum(wn), unbatched, dtype)
        grad = (1 - eps) * wn[:, None] * (p - jax.nn.one_hot(safe, num_classes, axis=1, dtype=dtype))
        if eps > 0:
            wc, total = (1, num_classes) if w is None else (along_classes(w, x.ndim), jnp.sum(w))
            grad = grad + (eps / num_classes) * mask[:, None] * (p * total - wc)
        # LBL-1: a NaN scale makes a bad item's whole row NaN, as jax.grad of cross_entropy gives.
        grad = nan_where_bad_coef(s, bad)[:, None] * grad
    return grad[0] if unbatched else grad
