"""SGD with torch's momentum, dampening and Nesterov rules (SGD-1).

    g ← −g if maximize;  g ← g + λθ (masked, WD-1)
    if μ ≠ 0:  b ← g at the first update (an undampened copy), else b ← μ·b + (1−τ)·g
               g ← g + μ·b if nesterov else b
    θ ← θ − lr·g

The first-update copy is a `jnp.where` on the int32 step count, so the state (step,
momentum_buffer = zeros_like(params)) has the same structure before and after the first
step and a jitted update never retraces. Optax's sgd matches only when τ = 0.

`momentum` may be a schedule `step -> μ`, like `lr` (step = updates already done, from 0):
update t uses μ(t) in both the buffer and the Nesterov term. That is torch with
`param_groups[i]['momentum']` set before each `step()` (as OneCycleLR's momentum cycling
does), provided μ(t) > 0 at every step: torch skips the buffer entirely at a step whose
momentum is 0 (and restarts it with a copy later), whereas a schedule keeps it (b ← g there).

pylearn2 and Hinton's guide write momentum as v ← μv − lr·g; θ ← θ + v. With a constant lr
that equals SGD-1 (v = −lr·b); with a decaying lr it weighs past gradients by their own lr
instead of the current one. `chain(scale_by_learning_rate(lr), scale_by_sgd_momentum(μ))`
is that rule exactly (the momentum link then accumulates −lr·g).
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
    check_tree_match,
    decay_and_maximize,
    init_step,
    make_spec,
    optimizer,
    scale_by_learning_rate,
)

__all__ = ["SgdMomentumState", "scale_by_sgd_momentum", "sgd"]


class SgdMomentumState(NamedTuple):
    """State of `scale_by_sgd_momentum`.

    Attributes:
        step: int32 scalar, the number of updates already done.
        momentum_buffer: the buffer b, a pytree like params (zeros at init).
    """

    step: jax.Array  # int32, updates already done
    momentum_buffer: Any  # pytree like params


def scale_by_sgd_momentum(
    momentum: float | Schedule, dampening: float = 0.0, nesterov: bool = False
) -> GradientTransformation:
    """The momentum part of SGD-1, without the −lr: b ← g at the first update, then μ·b + (1−τ)·g.

    Args:
        momentum: μ, a number or a schedule step -> μ (see the module docstring).
        dampening: τ (default 0).
        nesterov: return g + μ·b instead of b (default False).

    Returns:
        A GradientTransformation whose state is a SgdMomentumState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale_by_sgd_momentum(0.9)
        >>> g = jnp.array([1.0])
        >>> u1, state = t.update(g, t.init(g))
        >>> u2, state = t.update(g, state)
        >>> u1.tolist(), u2.tolist()  # a copy of g first, then 0.9·b + g
        ([1.0], [1.9])
    """

    def init(params):
        return SgdMomentumState(init_step(), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        check_tree_match(grads, state.momentum_buffer, "the optimizer state's momentum_buffer")
        first = state.step == 0
        mu = momentum(state.step) if callable(momentum) else momentum

        def buffer(g, b):
            g = g.astype(b.dtype)
            return jnp.where(first, g, jnp.asarray(mu, b.dtype) * b + (1 - dampening) * g)

        bufs = jax.tree.map(buffer, grads, state.momentum_buffer)
        if nesterov:

            def nesterov_step(g, b):
                dtype = jnp.result_type(g)
                return g + jnp.asarray(mu, dtype) * b.astype(dtype)

            out = jax.tree.map(nesterov_step, grads, bufs)
        else:
            out = bufs
        return out, SgdMomentumState(state.step + 1, bufs)

    args = {"momentum": momentum, "dampening": dampening, "nesterov": nesterov}
    return GradientTransformation(init, update, args, make_spec("scale_by_sgd_momentum", **args))


def sgd(
    lr: float | Schedule = 1e-3,
    momentum: float | Schedule = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    """torch.optim.SGD as a pure transform (SGD-1).

    `lr` is a number or a schedule step -> lr (step = updates already done, from 0); so is
    `momentum` (a schedule is always on, see the module docstring). Equal arguments give an
    equal, equally hashed optimizer; a mask function compares by identity, and a dict mask
    makes the optimizer equal only to itself (base.py).

    Args:
        lr: the learning rate (default 1e-3), >= 0, or a schedule.
        momentum: μ (default 0: plain SGD), >= 0, or a schedule.
        dampening: τ, the weight 1 − τ of a new gradient in the buffer (default 0).
        weight_decay: λ of the coupled L2 term g + λθ (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend instead of descend (default False).
        weight_decay_mask: which leaves decay, a pytree of bools or a function params -> such
            a pytree; default: ndim >= 2 (WD-1; torch decays every leaf).

    Returns:
        A GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.sgd(lr=0.1, momentum=0.9)
        >>> params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
        >>> state = opt.init(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> updates.tolist()  # -lr·g: the buffer starts as a copy of g
        [-0.05, 0.1]
        >>> updates, state = opt.update(grads, state, params)
        >>> updates.tolist()  # -lr·(0.9·g + g)
        [-0.095, 0.19]
        >>> optim.apply_updates(params, updates).tolist()
        [0.905, 2.19]
    """
    lr = check_lr(lr)
    scheduled = callable(momentum)
    if not scheduled:
        check_positive("momentum", momentum, strict=False)
    check_positive("weight_decay", weight_decay, strict=False)
    if nesterov and ((not scheduled and momentum <= 0) or dampening != 0):
        raise ValueError(
            "nesterov=True requires momentum > 0 and dampening = 0, "
            f"got momentum={momentum}, dampening={dampening}"
        )
    transforms = decay_and_maximize(weight_decay, weight_decay_mask, maximize)
    if scheduled or momentum != 0:
        transforms.append(scale_by_sgd_momentum(momentum, dampening, nesterov))
    transforms.append(scale_by_learning_rate(lr))
    return optimizer(
        "sgd",
        transforms,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
