"""Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_ (CLIP-1).

    total = ‖concat(all leaves)‖_p   (p = norm_type; max |g| for inf)
    g ← g·min(1, max_norm/(total + 1e-6))

`clip_grad_norm` is the function (returns the clipped grads and the pre-clip total);
`clip_by_global_norm` is the same as a chainable, stateless transform, e.g.
`chain(clip_by_global_norm(1.0), sgd(0.1))`. The 1e-6 is torch's, so even a gradient
already at the max norm shrinks by a hair (CLIP-1's golden value shows it).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_positive
from fnn.optim.base import GradientTransformation, make_spec

__all__ = ["clip_by_global_norm", "clip_grad_norm", "global_norm"]


def _check_clip_args(max_norm: float, norm_type: float) -> None:
    check_positive("max_norm", max_norm, strict=False)  # 0 zeroes the gradients, as in torch
    check_positive("norm_type", norm_type)


def global_norm(grads: Any, norm_type: float = 2.0) -> jax.Array:
    """The p-norm of all leaves taken together, ‖concat(leaves)‖_p; 0 for no leaves.

    torch takes per-leaf norms first; the two are equal up to rounding.

    Args:
        grads: a pytree of arrays.
        norm_type: p > 0 (default 2.0); math.inf for the max norm.

    Returns:
        A scalar array in the leaves' result dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> grads = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
        >>> optim.global_norm(grads).item(), optim.global_norm(grads, float("inf")).item()
        (5.0, 4.0)
    """
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return jnp.zeros(())
    dtype = jnp.result_type(*leaves)
    if math.isinf(norm_type):
        return jnp.max(jnp.stack([jnp.max(jnp.abs(g), initial=0).astype(dtype) for g in leaves]))
    if norm_type == 2:  # the common case, as squares and a sqrt: less to trace and compile
        return jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(dtype))) for g in leaves))
    sums = [jnp.sum(jnp.abs(g.astype(dtype)) ** norm_type) for g in leaves]
    return jnp.sum(jnp.stack(sums)) ** (1 / norm_type)


def clip_grad_norm(grads: Any, max_norm: float, norm_type: float = 2.0) -> tuple[Any, jax.Array]:
    """torch.nn.utils.clip_grad_norm_ without the in-place update (CLIP-1).

    grads·min(1, max_norm/(total + 1e-6)), with total the global norm before clipping.

    Args:
        grads: a pytree of arrays.
        max_norm: the largest global norm, >= 0 (0 zeroes the gradients, as in torch).
        norm_type: p > 0 (default 2.0); math.inf for the max norm.

    Returns:
        (clipped grads of grads' structure, the pre-clip total norm as a scalar array).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> clipped, total = optim.clip_grad_norm(jnp.array([3.0, 4.0]), max_norm=1.0)
        >>> clipped.tolist(), total.item()
        ([0.6, 0.8], 5.0)
    """
    _check_clip_args(max_norm, norm_type)
    total = global_norm(grads, norm_type)
    coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
    clipped = jax.tree.map(lambda g: g * coef.astype(jnp.result_type(g)), grads)
    return clipped, total


def clip_by_global_norm(max_norm: float, norm_type: float = 2.0) -> GradientTransformation:
    """CLIP-1 as a stateless transform, to chain before an optimizer.

    Args:
        max_norm: the largest global norm, >= 0.
        norm_type: p > 0 (default 2.0); math.inf for the max norm.

    Returns:
        A stateless GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.clip_by_global_norm(1.0)
        >>> t.update(jnp.array([3.0, 4.0]), t.init(None))[0].tolist()
        [0.6, 0.8]
    """
    _check_clip_args(max_norm, norm_type)

    def update(grads, state, params=None):
        return clip_grad_norm(grads, max_norm, norm_type)[0], state

    args = {"max_norm": max_norm, "norm_type": norm_type}
    return GradientTransformation(lambda params: (), update, args, make_spec("clip_by_global_norm", **args))
