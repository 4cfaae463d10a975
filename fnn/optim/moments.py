"""Adam, AMSGrad and AdamW with torch's defaults (ADAM-1, ADAM-2, ADAMW-1).

    g ← −g if maximize
    Adam:  g ← g + λθ (coupled L2, masked, WD-1)
    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  v_max ← max(v_max, v) if amsgrad (raw v)
    s = (m/(1−β1ᵗ)) / (√v'/√(1−β2ᵗ) + eps),  v' = v_max if amsgrad else v,  t = step + 1
    Adam:  θ ← θ − lr·s
    AdamW: θ ← θ − lr·(s + λθ) = θ·(1 − lr·λ) − lr·s   (decoupled, on the un-updated θ,
           scaled by the same scheduled lr; the default mask applies here too)

eps must be > 0 (torch allows 0, where a zero gradient gives 0/0). eps is added after
bias-correcting √v, as in torch (optax's m̂/(√v̂ + eps) is the same formula). Torch's
AdamW default weight_decay is 0.01 (optax's is 1e-4).
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
    add_decayed_weights,
    check_half_open,
    check_tree_match,
    decay_and_maximize,
    init_step,
    make_spec,
    optimizer,
    scale,
    scale_by_learning_rate,
)

__all__ = ["AdamState", "adam", "adamw", "scale_by_adam"]


class AdamState(NamedTuple):
    """State of `scale_by_adam`.

    Attributes:
        step: int32 scalar, the number of updates already done.
        exp_avg: the first moment m, a pytree like params.
        exp_avg_sq: the second moment v, a pytree like params.
        max_exp_avg_sq: the running max of v with amsgrad, else ().
    """

    step: jax.Array  # int32, updates already done
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any  # () unless amsgrad


def scale_by_adam(
    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, amsgrad: bool = False
) -> GradientTransformation:
    """Adam's scaling without the −lr: u ← s of ADAM-1/ADAM-2.

    Args:
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the bias-corrected √v (default 1e-8).
        amsgrad: divide by the running max of v (ADAM-2, default False).

    Returns:
        A GradientTransformation whose state is an AdamState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale_by_adam()
        >>> g = jnp.array([0.5, -2.0])
        >>> t.update(g, t.init(g))[0].tolist()  # the first step is sign(g), bias-corrected
        [1.0, -1.0]
    """
    b1, b2 = betas

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return AdamState(init_step(), zeros(), zeros(), zeros() if amsgrad else ())

    def update(grads, state, params=None):
        check_tree_match(grads, state.exp_avg, "the optimizer state's exp_avg")
        t = state.step + 1
        m = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g.astype(m.dtype), grads, state.exp_avg)
        v = jax.tree.map(
            lambda g, v: b2 * v + (1 - b2) * jnp.square(g.astype(v.dtype)), grads, state.exp_avg_sq
        )
        vmax = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, v) if amsgrad else ()

        def step(m, v):
            bc1 = (1 - b1**t).astype(m.dtype)
            bc2_sqrt = jnp.sqrt(1 - b2**t).astype(m.dtype)
            return (m / bc1) / (jnp.sqrt(v) / bc2_sqrt + eps)

        out = jax.tree.map(step, m, vmax if amsgrad else v)
        out = jax.tree.map(lambda s, g: s.astype(jnp.result_type(g)), out, grads)
        return out, AdamState(t, m, v, vmax)

    args = {"betas": tuple(betas), "eps": eps, "amsgrad": amsgrad}
    return GradientTransformation(init, update, args, make_spec("scale_by_adam", **args))


def _check_adam_args(lr, betas, eps, weight_decay):
    lr = check_lr(lr)
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas}")
    check_half_open("betas[0]", betas[0])
    check_half_open("betas[1]", betas[1])
    check_positive("eps", eps)
    check_positive("weight_decay", weight_decay, strict=False)
    return lr, (float(betas[0]), float(betas[1]))


def adam(
    lr: float | Schedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    """torch.optim.Adam (coupled L2 weight decay) as a pure transform (ADAM-1, ADAM-2).

    Equal arguments give an equal, equally hashed optimizer; a mask function compares by
    identity, and a dict mask makes the optimizer equal only to itself (base.py).

    Args:
        lr: the learning rate (default 1e-3), >= 0, or a schedule step -> lr.
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the bias-corrected √v, > 0 (default 1e-8).
        weight_decay: λ of the coupled L2 term g + λθ (default 0).
        amsgrad: use the running max of v (default False).
        maximize: ascend instead of descend (default False).
        weight_decay_mask: which leaves decay; default: ndim >= 2 (WD-1).

    Returns:
        A GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.adam(lr=0.1)
        >>> params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -2.0])
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> updates.tolist()  # -lr·sign(g) on the first step
        [-0.1, 0.1]
    """
    lr, betas = _check_adam_args(lr, betas, eps, weight_decay)
    transforms = decay_and_maximize(weight_decay, weight_decay_mask, maximize)
    transforms += [scale_by_adam(betas, eps, amsgrad), scale_by_learning_rate(lr)]
    return optimizer(
        "adam",
        transforms,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )


def adamw(
    lr: float | Schedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    """torch.optim.AdamW (decoupled weight decay, ADAMW-1) as a pure transform.

    Equal arguments give an equal, equally hashed optimizer; a mask function compares by
    identity, and a dict mask makes the optimizer equal only to itself (base.py).

    Args:
        lr: the learning rate (default 1e-3), >= 0, or a schedule step -> lr.
        betas: (β1, β2), each in [0, 1) (default (0.9, 0.999)).
        eps: added to the bias-corrected √v, > 0 (default 1e-8).
        weight_decay: λ, applied as θ·(1 − lr·λ) (default 1e-2, torch's).
        amsgrad: use the running max of v (default False).
        maximize: ascend instead of descend (default False).
        weight_decay_mask: which leaves decay; default: ndim >= 2 (WD-1).

    Returns:
        A GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.adamw(lr=0.1, weight_decay=0.5)
        >>> params, grads = jnp.array([[1.0, 2.0]]), jnp.array([[0.5, -2.0]])
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> updates.tolist()  # -lr·(sign(g) + λθ)
        [[-0.15, 0.0]]
    """
    lr, betas = _check_adam_args(lr, betas, eps, weight_decay)
    transforms = [scale(-1.0)] if maximize else []
    transforms.append(scale_by_adam(betas, eps, amsgrad))
    if weight_decay != 0:
        transforms.append(add_decayed_weights(weight_decay, weight_decay_mask))
    transforms.append(scale_by_learning_rate(lr))
    return optimizer(
        "adamw",
        transforms,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
