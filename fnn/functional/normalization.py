"""Batch normalization (torch's F.batch_norm) and layer normalization, with manual backwards.

Contract (docs/semantics.md, rules BN-1..BN-8, BN2D-1..BN2D-2):

- `batch_norm` takes input (N, C, *): (N, C), (N, C, L), (N, C, H, W), ...; statistics are
  per channel over N and every spatial position, n = N·prod(*) (BN2D-1). It returns
  `(output, new_running_mean, new_running_var)`; the caller keeps the buffers (and
  `num_batches_tracked`, which this function never increments).
- Batch statistics are used when `training=True`, and also in eval when the buffers are
  None (track_running_stats=False, BN-5); then the returned buffers are None too.
  Normalization uses the biased variance (÷n); the running update uses the unbiased one
  (÷(n−1)), BN-2. In eval with buffers, the running statistics are used and returned
  unchanged (BN-4).
- `momentum=None` means a cumulative average (BN-3): m = 1/(num_batches_tracked + 1), where
  `num_batches_tracked` is the count of batches seen BEFORE this one (so the first batch,
  count 0, replaces the initial buffers). It is then required; any integer scalar or array.
- Whenever batch statistics are used and n == 1, a ValueError is raised (BN-7). Like
  torch's BatchNorm1d module this includes eval with track_running_stats=False, which also
  normalizes with batch statistics; eval with buffers and N = 1 is fine.
- The running-statistics update is wrapped in `stop_gradient`: buffers carry no gradient.
- Inputs of 4 or more dims take the per-channel sums of the forward and the backward in one
  pass over the data (`fnn/_fast/batch_norm.py`, about a per-channel pivot), and jax.grad
  through the training forward BN-8's formula (a custom_jvp there): the same values to
  rounding as the two-pass form written here, which (N, C) and (N, C, L) keep exactly.

`layer_norm` follows torch.nn.functional.layer_norm: normalize over the trailing dims given
by `normalized_shape` (int or tuple) with the biased variance; weight/bias have that shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_floating, check_positive, check_range, check_same_shape, is_int
from fnn._fast import batch_norm as _fast_bn

__all__ = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward"]


def _check_param(name: str, p: Any, shape: tuple[int, ...], why: str) -> None:
    if p is None:
        return
    check_floating(name, p)
    if tuple(jnp.shape(p)) != shape:
        raise ValueError(f"{name} must have shape {shape} ({why}), got {tuple(jnp.shape(p))}")


def _bn_setup(
    input: Any,
    running_mean: Any,
    running_var: Any,
    weight: Any,
    bias: Any,
    training: bool,
    momentum: float | None,
    eps: float,
) -> tuple[tuple[int, ...], int, bool]:
    """Validate batch_norm arguments; return (reduction axes, n, use_batch_stats)."""
    check_floating("input", input)
    shape = tuple(jnp.shape(input))
    if len(shape) < 2:
        raise ValueError(f"input must have ndim >= 2, (N, C, *), got shape {shape}")
    c = (shape[1],)
    why = f"one per channel of input {shape}"
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "running_mean and running_var must both be arrays or both be None "
            f"(track_running_stats=False), got running_mean "
            f"{'None' if running_mean is None else 'an array'} and running_var "
            f"{'None' if running_var is None else 'an array'}"
        )
    for name, p in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        _check_param(name, p, c, why)
    if momentum is not None:
        check_range("momentum", momentum, 0.0, 1.0)
    check_positive("eps", eps, strict=False)
    axes = (0, *range(2, len(shape)))  # N and every spatial dim (BN2D-1)
    n = math.prod(shape[:1] + shape[2:])
    use_batch_stats = bool(training) or running_mean is None
    if use_batch_stats and n == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {shape}")
    return axes, n, use_batch_stats


def _per_channel(v: jax.Array, ndim: int) -> jax.Array:
    """Reshape a (C,) vector to broadcast against (N, C, *)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _bn_stats(
    input: Any, running_mean: Any, running_var: Any, axes: tuple[int, ...], use_batch_stats: bool
) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) per channel used to normalize: batch (biased var, BN-1) or running (BN-4)."""
    x = jnp.asarray(input)
    if use_batch_stats and x.ndim >= 4:  # the same values, one pass over x (BN2D-1)
        return _fast_bn.batch_stats(x, axes)
    if use_batch_stats:
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - _per_channel(mean, x.ndim)), axis=axes)
        return mean, var
    return jnp.asarray(running_mean, x.dtype), jnp.asarray(running_var, x.dtype)


def batch_norm(
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Batch normalization forward (BN-1..7, BN2D-1..2); returns (output, new_running_mean, new_running_var).

    `training` and the None-ness of the buffers are static (Python) choices. With
    `momentum=None`, `num_batches_tracked` is the number of batches seen before this one
    and the update uses m = 1/(num_batches_tracked + 1) (BN-3).

    Args:
        input: a floating array (N, C, *): (N, C), (N, C, L), (N, C, H, W), ...
        running_mean: the running mean buffer (C,), or None (track_running_stats=False).
        running_var: the running variance buffer (C,), or None (together with running_mean).
        weight: the scale γ (C,), or None for 1 (affine=False, BN-6).
        bias: the shift β (C,), or None for 0.
        training: normalize with batch statistics and update the buffers (default False).
        momentum: the running-average factor in [0, 1] (default 0.1), or None for a
            cumulative average (BN-3).
        eps: added to the variance before the square root (default 1e-5), >= 0.
        num_batches_tracked: batches seen before this one; required when momentum is None.

    Returns:
        (output, new_running_mean, new_running_var): output of the input's shape; the buffers
        (C,), updated in training (BN-2), unchanged in eval, None when they were None.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[0.0], [1.0], [2.0]])
        >>> y, rm, rv = F.batch_norm(x, jnp.zeros(1), jnp.ones(1), training=True)
        >>> y.tolist(), rm.tolist(), rv.tolist()
        ([[-1.2247], [0.0], [1.2247]], [0.1], [1.0])
    """
    axes, n, use_batch_stats = _bn_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    x = jnp.asarray(input)
    mean, var = _bn_stats(x, running_mean, running_var, axes, use_batch_stats)
    if use_batch_stats and x.ndim >= 4:  # the same values; jax.grad costs the manual backward
        c = x.shape[1]
        w = jnp.ones(c, x.dtype) if weight is None else jnp.asarray(weight)
        b = jnp.zeros(c, x.dtype) if bias is None else jnp.asarray(bias)
        y = _fast_bn.normalize(x, w, b, eps, axes)
    else:
        y = (x - _per_channel(mean, x.ndim)) * _per_channel(jax.lax.rsqrt(var + eps), x.ndim)
        if weight is not None:
            y = y * _per_channel(jnp.asarray(weight), x.ndim)
        if bias is not None:
            y = y + _per_channel(jnp.asarray(bias), x.ndim)

    if not training or running_mean is None:
        return y, running_mean, running_var  # BN-4 (unchanged) / BN-5 (no buffers)
    if momentum is None:
        if num_batches_tracked is None:
            raise ValueError(
                "num_batches_tracked (the count of batches before this one) is "
                "required when momentum is None (cumulative average, BN-3), got None"
            )
        m = 1.0 / (jnp.asarray(num_batches_tracked) + 1.0)
    else:
        m = momentum
    rm, rv = jnp.asarray(running_mean), jnp.asarray(running_var)
    # The buffers are state, not a function of the parameters: no gradient flows into them.
    batch_mean = jax.lax.stop_gradient(mean)
    unbiased_var = jax.lax.stop_gradient(var) * (n / (n - 1))  # BN-2: unbiased in the update
    new_rm = ((1 - m) * rm + m * batch_mean).astype(rm.dtype)
    new_rv = ((1 - m) * rv + m * unbiased_var).astype(rv.dtype)
    return y, new_rm, new_rv


def batch_norm_backward(
    grad_output: jax.Array,
    input: jax.Array,
    running_mean: jax.Array | None,
    running_var: jax.Array | None,
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    num_batches_tracked: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Gradients (grad_input, grad_weight, grad_bias) of `batch_norm`'s output (BN-8).

    Sums Σ and means run over the statistics axes (N and every spatial dim), r = 1/√(σ² + eps),
    x̂ = (x − μ)·r, y = γ·x̂ + β, dy = grad_output:
      dβ = Σ dy,   dγ = Σ dy·x̂.
    Batch statistics (training, or no buffers): μ and σ² depend on x, with
      ∂μ/∂x_i = 1/n and ∂σ²/∂x_i = 2(x_i − μ)/n, so
      dx = γ·r·(dy − mean(dy) − x̂·mean(dy·x̂)).
    Running statistics (eval with buffers): μ, σ² are constants, so dx = γ·r·dy.
    γ = 1 when weight is None; grad_weight / grad_bias are None when weight / bias are.

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x, (N, C, *).
        running_mean: the forward's running_mean (C,), or None.
        running_var: the forward's running_var (C,), or None.
        weight: the forward's γ (C,), or None.
        bias: the forward's β (C,), or None.
        training: the forward's training flag: batch statistics, whose dependence on x
            enters dx.
        momentum: the forward's momentum (only validated: the buffers carry no gradient).
        eps: the forward's eps (default 1e-5).
        num_batches_tracked: the forward's count (accepted for symmetry; unused here).

    Returns:
        (grad_input, grad_weight, grad_bias): dL/dx of the input's shape, dL/dγ and dL/dβ
        of shape (C,) (None where weight / bias is None).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[0.0], [1.0], [2.0]])
        >>> dx, dw, db = F.batch_norm_backward(
        ...     jnp.array([[1.0], [0.0], [0.0]]), x, jnp.zeros(1), jnp.ones(1),
        ...     jnp.ones(1), jnp.zeros(1), training=True)
        >>> dx.tolist(), dw.tolist(), db.tolist()
        ([[0.2041], [-0.4082], [0.2041]], [-1.2247], [1.0])
    """
    axes, n, use_batch_stats = _bn_setup(
        input, running_mean, running_var, weight, bias, training, momentum, eps
    )
    check_same_shape("grad_output", grad_output, "input", input)
    x, dy = jnp.asarray(input), jnp.asarray(grad_output)
    mean, var = _bn_stats(x, running_mean, running_var, axes, use_batch_stats)
    r = _per_channel(jax.lax.rsqrt(var + eps), x.ndim)
    x_hat = (x - _per_channel(mean, x.ndim)) * r
    gamma = 1.0 if weight is None else _per_channel(jnp.asarray(weight), x.ndim)
    if x.ndim >= 4:  # Σ dy and Σ dy·x̂ = r·Σ dy·(x − μ) in one pass over dy and x (BN2D-2)
        s_dy, s_dyxc = _fast_bn.backward_sums(dy, x, axes, mean)
        s_dyx = s_dyxc * jax.lax.rsqrt(var + eps)
        dy_mean, dyx_mean = _per_channel(s_dy / n, x.ndim), _per_channel(s_dyx / n, x.ndim)
    else:
        s_dy, s_dyx = jnp.sum(dy, axis=axes), jnp.sum(dy * x_hat, axis=axes)
        if use_batch_stats:
            dy_mean = jnp.mean(dy, axis=axes, keepdims=True)
            dyx_mean = jnp.mean(dy * x_hat, axis=axes, keepdims=True)
    if use_batch_stats:
        grad_input = gamma * r * (dy - dy_mean - x_hat * dyx_mean)
    else:
        grad_input = gamma * r * dy
    grad_weight = None if weight is None else s_dyx
    grad_bias = None if bias is None else s_dy
    return grad_input, grad_weight, grad_bias


def normalized_dims(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``normalized_shape`` (an int, or a non-empty sequence of ints >= 0) as a tuple of ints.

    The one check of the argument, for ``layer_norm`` and ``nn.LayerNorm``.

    >>> normalized_dims(3), normalized_dims([2, 4])
    ((3,), (2, 4))
    """
    ns = (normalized_shape,) if is_int(normalized_shape) else tuple(normalized_shape)
    if not ns or not all(is_int(d) for d in ns):
        raise ValueError(
            f"normalized_shape must be an int or a non-empty sequence of ints, got {normalized_shape!r}"
        )
    if any(d < 0 for d in ns):
        raise ValueError(f"normalized_shape must hold sizes >= 0, got {normalized_shape!r}")
    return tuple(int(d) for d in ns)


def _ln_setup(
    input: Any, normalized_shape: int | Sequence[int], weight: Any, bias: Any, eps: float
) -> tuple[int, ...]:
    """Validate layer_norm arguments; return the normalized (trailing) axes."""
    check_floating("input", input)
    ns = normalized_dims(normalized_shape)
    shape = tuple(jnp.shape(input))
    if len(shape) < len(ns) or shape[len(shape) - len(ns) :] != ns:
        raise ValueError(
            f"Given normalized_shape={list(ns)}, expected input with shape "
            f"[*, {', '.join(map(str, ns))}], but got input of size {shape}"
        )
    for name, p in (("weight", weight), ("bias", bias)):
        _check_param(name, p, ns, "normalized_shape")
    check_positive("eps", eps, strict=False)
    return tuple(range(len(shape) - len(ns), len(shape)))


def _ln_normalize(x: jax.Array, axes: tuple[int, ...], eps: float) -> tuple[jax.Array, jax.Array]:
    """(x̂, r) with biased variance over `axes`, keepdims."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    r = jax.lax.rsqrt(var + eps)
    return (x - mean) * r, r


def layer_norm(
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> jax.Array:
    """Layer normalization y = γ·(x − μ)/√(σ² + eps) + β over the trailing `normalized_shape` dims.

    Statistics are per sample, with the biased variance, as torch.nn.functional.layer_norm.

    Args:
        input: a floating array (*, *normalized_shape).
        normalized_shape: the trailing shape to normalize over, an int or a tuple of ints.
        weight: the scale γ of shape normalized_shape, or None for 1.
        bias: the shift β of shape normalized_shape, or None for 0.
        eps: added to the variance before the square root (default 1e-5), >= 0.

    Returns:
        An array of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.layer_norm(jnp.array([[0.0, 1.0, 2.0]]), 3).tolist()
        [[-1.2247, 0.0, 1.2247]]
    """
    axes = _ln_setup(input, normalized_shape, weight, bias, eps)
    x_hat, _ = _ln_normalize(jnp.asarray(input), axes, eps)
    y = x_hat
    if weight is not None:
        y = y * jnp.asarray(weight)
    if bias is not None:
        y = y + jnp.asarray(bias)
    return y


def layer_norm_backward(
    grad_output: jax.Array,
    input: jax.Array,
    normalized_shape: int | Sequence[int],
    weight: jax.Array | None = None,
    bias: jax.Array | None = None,
    eps: float = 1e-5,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Gradients (grad_input, grad_weight, grad_bias) of `layer_norm`.

    Per sample, over the D normalized elements: x̂ = (x − μ)·r, r = 1/√(σ² + eps), y = γ⊙x̂ + β.
    With g = dy⊙γ (the gradient reaching x̂), and ∂μ/∂x_i = 1/D, ∂σ²/∂x_i = 2(x_i − μ)/D:
      dx = r·(g − mean(g) − x̂·mean(g⊙x̂))   (means over the normalized dims),
      dγ = Σ_samples dy⊙x̂,   dβ = Σ_samples dy   (sums over the leading dims).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        normalized_shape: the forward's normalized_shape.
        weight: the forward's weight, or None.
        bias: the forward's bias, or None.
        eps: the forward's eps (default 1e-5).

    Returns:
        (grad_input, grad_weight, grad_bias): dL/dx of the input's shape, dL/dγ and dL/dβ of
        shape normalized_shape (None where weight / bias is None).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[0.0, 1.0, 2.0]])
        >>> dx, dw, db = F.layer_norm_backward(
        ...     jnp.array([[1.0, 0.0, 0.0]]), x, 3, jnp.ones(3), jnp.zeros(3))
        >>> dx.tolist(), dw.tolist(), db.tolist()
        ([[0.2041, -0.4082, 0.2041]], [-1.2247, 0.0, 0.0], [1.0, 0.0, 0.0])
    """
    axes = _ln_setup(input, normalized_shape, weight, bias, eps)
    check_same_shape("grad_output", grad_output, "input", input)
    x, dy = jnp.asarray(input), jnp.asarray(grad_output)
    x_hat, r = _ln_normalize(x, axes, eps)
    g = dy if weight is None else dy * jnp.asarray(weight)
    grad_input = r * (
        g - jnp.mean(g, axis=axes, keepdims=True) - x_hat * jnp.mean(g * x_hat, axis=axes, keepdims=True)
    )
    lead = tuple(range(x.ndim - len(axes)))
    grad_weight = None if weight is None else jnp.sum(dy * x_hat, axis=lead)
    grad_bias = None if bias is None else jnp.sum(dy, axis=lead)
    return grad_input, grad_weight, grad_bias
