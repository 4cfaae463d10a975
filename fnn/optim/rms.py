"""RMSprop with torch's defaults, centering and momentum (RMS-1).

    g ← −g if maximize;  g ← g + λθ (masked, WD-1)
    v ← α·v + (1−α)·g²
    d = √(v − ḡ²) + eps with ḡ ← α·ḡ + (1−α)·g if centered, else d = √v + eps
    if μ > 0: b ← μ·b + g/d, θ ← θ − lr·b;  else θ ← θ − lr·g/d

All state starts at zeros. eps sits outside the sqrt; optax's rmsprop differs (decay=0.9,
eps inside the sqrt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fnn._checks import check_lr, check_positive
from fnn.optim.base import (
    GradientTransformation,
    Schedule,
    check_half_open,
    check_tree_match,
    decay_and_maximize,
    make_spec,
    optimizer,
    scale_by_learning_rate,
)

__all__ = ["RmsState", "TraceState", "rmsprop", "scale_by_rms", "trace"]


class RmsState(NamedTuple):
    """State of `scale_by_rms`.

    Attributes:
        square_avg: the running average v of g², a pytree like params.
        grad_avg: the running average ḡ of g when centered, else ().
    """

    square_avg: Any
    grad_avg: Any  # () unless centered


class TraceState(NamedTuple):
    """State of `trace`.

    Attributes:
        momentum_buffer: the buffer b, a pytree like params.
    """

    momentum_buffer: Any


def scale_by_rms(alpha: float = 0.99, eps: float = 1e-8, centered: bool = False) -> GradientTransformation:
    """RMSprop's scaling without the −lr: u ← g/d with d as in RMS-1.

    Args:
        alpha: the smoothing constant of the averages, in [0, 1) (default 0.99).
        eps: added to the square root (default 1e-8).
        centered: subtract the squared running mean of g (default False).

    Returns:
        A GradientTransformation whose state is an RmsState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale_by_rms()
        >>> g = jnp.array([0.5, -2.0])
        >>> t.update(g, t.init(g))[0].tolist()  # g/√(0.01·g²) = 10·sign(g)
        [10.0, -10.0]
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return RmsState(zeros(), zeros() if centered else ())

    def update(grads, state, params=None):
        check_tree_match(grads, state.square_avg, "the optimizer state's square_avg")
        sq = jax.tree.map(
            lambda g, v: alpha * v + (1 - alpha) * jnp.square(g.astype(v.dtype)), grads, state.square_avg
        )
        if centered:
            ga = jax.tree.map(lambda g, m: alpha * m + (1 - alpha) * g.astype(m.dtype), grads, state.grad_avg)
            denom = jax.tree.map(lambda v, m: jnp.sqrt(v - jnp.square(m)) + eps, sq, ga)
        else:
            ga = ()
            denom = jax.tree.map(lambda v: jnp.sqrt(v) + eps, sq)
        out = jax.tree.map(lambda g, d: g / d.astype(jnp.result_type(g)), grads, denom)
        return out, RmsState(sq, ga)

    args = {"alpha": alpha, "eps": eps, "centered": centered}
    return GradientTransformation(init, update, args, make_spec("scale_by_rms", **args))


def trace(momentum: float) -> GradientTransformation:
    """Heavy-ball momentum as RMSprop uses it: b ← μ·b + u from b = 0.

    No first-step copy, unlike SGD-1.

    Args:
        momentum: μ.

    Returns:
        A GradientTransformation whose state is a TraceState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.trace(0.5)
        >>> g = jnp.array([1.0])
        >>> u1, state = t.update(g, t.init(g))
        >>> u2, state = t.update(g, state)
        >>> u1.tolist(), u2.tolist()
        ([1.0], [1.5])
    """

    def init(params):
        return TraceState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        check_tree_match(grads, state.momentum_buffer, "the optimizer state's momentum_buffer")
        bufs = jax.tree.map(lambda g, b: momentum * b + g.astype(b.dtype), grads, state.momentum_buffer)
        return bufs, TraceState(bufs)

    return GradientTransformation(init, update, {"momentum": momentum}, make_spec("trace", momentum=momentum))


def rmsprop(
    lr: float | Schedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    """torch.optim.RMSprop as a pure transform (RMS-1; alpha in [0, 1) and eps > 0 required).

    Equal arguments give an equal, equally hashed optimizer; a mask function compares by
    identity, and a dict mask makes the optimizer equal only to itself (base.py).

    Args:
        lr: the learning rate (default 1e-2), >= 0, or a schedule step -> lr.
        alpha: the smoothing constant, in [0, 1) (default 0.99).
        eps: added to the square root, > 0 (default 1e-8).
        weight_decay: λ of the coupled L2 term g + λθ (default 0).
        momentum: μ of the heavy-ball buffer on g/d (default 0: none).
        centered: normalize by the estimated variance instead of the raw second moment.
        maximize: ascend instead of descend (default False).
        weight_decay_mask: which leaves decay; default: ndim >= 2 (WD-1).

    Returns:
        A GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.rmsprop(lr=0.01)
        >>> params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -2.0])
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> updates.tolist()  # -lr·g/√((1 - α)·g²) = -0.1·sign(g)
        [-0.1, 0.1]
    """
    lr = check_lr(lr)
    check_half_open("alpha", alpha)
    check_positive("eps", eps)
    check_positive("weight_decay", weight_decay, strict=False)
    check_positive("momentum", momentum, strict=False)
    transforms = decay_and_maximize(weight_decay, weight_decay_mask, maximize)
    transforms.append(scale_by_rms(alpha, eps, centered))
    if momentum > 0:
        transforms.append(trace(momentum))
    transforms.append(scale_by_learning_rate(lr))
    return optimizer(
        "rmsprop",
        transforms,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
