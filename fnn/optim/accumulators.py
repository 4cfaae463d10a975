"""Adagrad with torch's defaults and eps placement (ADAG-1).

    g ← −g if maximize;  g ← g + λθ (masked, WD-1)
    G ← G + g²   (G starts at initial_accumulator_value)
    θ ← θ − clr·g/(√G + eps),   clr = lr(step)/(1 + step·lr_decay)

step counts the updates already done (torch's t − 1). eps sits outside the sqrt; optax's
adagrad differs (initial_accumulator_value=0.1, eps=1e-7 inside the sqrt).
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
    make_spec,
    optimizer,
    scale_by_learning_rate,
)

__all__ = ["AdagradState", "adagrad", "scale_by_adagrad"]


class AdagradState(NamedTuple):
    """State of `scale_by_adagrad`.

    Attributes:
        sum: the running Σg² per parameter (torch's state name), a pytree like params.
    """

    sum: Any  # running Σg² per parameter (torch's state name)


def scale_by_adagrad(initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> GradientTransformation:
    """Adagrad's scaling without the −lr: u ← g/(√G + eps) after G ← G + g².

    Args:
        initial_accumulator_value: G at init, >= 0 (default 0).
        eps: added to √G (default 1e-10).

    Returns:
        A GradientTransformation whose state is an AdagradState.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> t = optim.scale_by_adagrad()
        >>> g = jnp.array([2.0])
        >>> u1, state = t.update(g, t.init(g))
        >>> u2, state = t.update(g, state)
        >>> u1.tolist(), u2.tolist()  # 2/√4, then 2/√8
        ([1.0], [0.7071])
    """

    def init(params):
        return AdagradState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update(grads, state, params=None):
        check_tree_match(grads, state.sum, "the optimizer state's sum")
        sums = jax.tree.map(lambda g, s: s + jnp.square(g.astype(s.dtype)), grads, state.sum)
        out = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps).astype(jnp.result_type(g)), grads, sums)
        return out, AdagradState(sums)

    args = {"initial_accumulator_value": initial_accumulator_value, "eps": eps}
    return GradientTransformation(init, update, args, make_spec("scale_by_adagrad", **args))


def adagrad(
    lr: float | Schedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
    weight_decay_mask: Any | Callable[[Any], Any] | None = None,
) -> GradientTransformation:
    """torch.optim.Adagrad as a pure transform (ADAG-1; eps must be > 0 here, torch allows 0).

    Equal arguments give an equal, equally hashed optimizer; a mask function compares by
    identity, and a dict mask makes the optimizer equal only to itself (base.py).

    Args:
        lr: the learning rate (default 1e-2), >= 0, or a schedule step -> lr.
        lr_decay: the rate is lr(step)/(1 + step·lr_decay) (default 0).
        weight_decay: λ of the coupled L2 term g + λθ (default 0).
        initial_accumulator_value: G at init, >= 0 (default 0).
        eps: added to √G, > 0 (default 1e-10).
        maximize: ascend instead of descend (default False).
        weight_decay_mask: which leaves decay; default: ndim >= 2 (WD-1).

    Returns:
        A GradientTransformation.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.adagrad(lr=0.1)
        >>> params, grads = jnp.array([1.0, 2.0]), jnp.array([0.5, -2.0])
        >>> updates, state = opt.update(grads, opt.init(params), params)
        >>> updates.tolist()  # -lr·g/√(g²)
        [-0.1, 0.1]
        >>> updates, state = opt.update(grads, state, params)
        >>> updates.tolist()  # -lr·g/√(2g²)
        [-0.0707, 0.0707]
    """
    lr = check_lr(lr)
    check_positive("lr_decay", lr_decay, strict=False)
    check_positive("weight_decay", weight_decay, strict=False)
    check_positive("initial_accumulator_value", initial_accumulator_value, strict=False)
    check_positive("eps", eps)
    if lr_decay == 0:
        effective_lr = lr
    else:
        base = lr if callable(lr) else (lambda step: lr)
        effective_lr = lambda step: base(step) / (1 + step * lr_decay)  # noqa: E731
    transforms = decay_and_maximize(weight_decay, weight_decay_mask, maximize)
    transforms += [scale_by_adagrad(initial_accumulator_value, eps), scale_by_learning_rate(effective_lr)]
    return optimizer(
        "adagrad",
        transforms,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        initial_accumulator_value=initial_accumulator_value,
        eps=eps,
        maximize=maximize,
        weight_decay_mask=weight_decay_mask,
    )
