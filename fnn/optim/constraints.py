"""Max-norm weight constraints: torch.renorm, and the same as the last link of an optimizer.

    renorm(W, p, dim, maxnorm):  for each slice W_i along `dim`,
        n_i = ‖W_i‖_p;   W_i ← W_i · (maxnorm / (n_i + 1e-7))  where n_i > maxnorm, else unchanged

is `torch.renorm` (the 1e-7 is torch's, so a clipped slice lands a hair under maxnorm).
For fnn's weights, stored (out, in) as torch's, `dim=0` (the default) renormalises each
output unit's incoming weight vector (each row). That is the constraint of Srivastava et
al.'s max-norm dropout, Keras' `MaxNorm(axis=0)` (axis 0 of Keras' (in, out) kernel, the
same vectors) and pylearn2's `max_col_norm` (the columns of its (in, out) W, the same
vectors again). pylearn2 scales by clip(n, 0, max)/max(n, 1e-7) instead, which differs from
torch's factor only by the 1e-7 in the denominator (a relative 1e-7/maxnorm on clipped rows).

`max_norm(maxnorm)` applies it *after* the update, in the optax shape: placed last in a
chain, it turns the incoming `updates` into `renorm(params + updates) − params`, so that
`apply_updates(params, updates)` lands on the renormalised weights (up to one rounding of
the subtraction and re-addition). It needs `params`. Only the leaves selected by `mask` are
constrained; by default those with ndim >= 2 (the weight matrices, as the weight-decay
default WD-1), so by default biases are never renormalised.

    opt = optim.chain(optim.sgd(lr=0.1, momentum=0.5), optim.max_norm(1.9365))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_int, is_real
from fnn.optim.base import GradientTransformation, check_tree_match, make_spec, resolve_mask

__all__ = ["max_norm", "renorm"]

RENORM_EPS = 1e-7  # torch.renorm's: maxnorm / (norm + 1e-7)


def _check_renorm_args(p: float, maxnorm: float, name: str) -> None:
    if not is_real(p) or not p > 0:
        raise ValueError(f"p must be a number > 0 (or inf), got {p!r}")
    if not is_real(maxnorm) or not (math.isfinite(maxnorm) and maxnorm >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {maxnorm!r}")


def renorm(input: jax.Array, p: float, dim: int, maxnorm: float) -> jax.Array:
    """torch.renorm: scale each slice along `dim` whose p-norm exceeds `maxnorm` back to it.

    The scale is maxnorm/(norm + 1e-7); the other slices are returned unchanged.

    Args:
        input: an array with at least two dimensions (floating dtype), as torch requires.
        p: the norm's order, > 0 (math.inf for the max norm).
        dim: the dimension to slice along (0: one norm per row of a 2-D array); negative
            counts from the end.
        maxnorm: the largest norm a slice keeps, a finite number >= 0.

    Returns:
        The renormalised array, of `input`'s shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> W = jnp.array([[3.0, 4.0], [0.3, 0.4]])
        >>> optim.renorm(W, p=2, dim=0, maxnorm=1.0).tolist()  # only the first row is too long
        [[0.6, 0.8], [0.3, 0.4]]
    """
    _check_renorm_args(p, maxnorm, "maxnorm")
    x = jnp.asarray(input)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"renorm needs a floating input, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"renorm needs an input with at least 2 dimensions (as torch.renorm), got shape {x.shape}"
        )
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must be in [{-x.ndim}, {x.ndim}) for an input of shape {x.shape}, got {dim}")
    axes = tuple(a for a in range(x.ndim) if a != dim % x.ndim)
    if math.isinf(p):
        norms = jnp.max(jnp.abs(x), axis=axes, keepdims=True, initial=0)
    else:
        norms = jnp.sum(jnp.abs(x) ** p, axis=axes, keepdims=True) ** (1 / p)
    factor = jnp.where(norms > maxnorm, maxnorm / (norms + RENORM_EPS), 1.0).astype(x.dtype)
    return x * factor


def max_norm(
    max_norm: float, *, dim: int = 0, p: float = 2.0, mask: Any | Callable[[Any], Any] | None = None
) -> GradientTransformation:
    """Max-norm weight constraint after the update: `updates ← renorm(params + updates) − params`.

    Constrains each weight's slices along `dim` to a p-norm <= max_norm (see the module
    docstring), on the masked leaves.

    Args:
        max_norm: the largest norm, a finite number >= 0 (pylearn2's max_col_norm, Keras'
            MaxNorm(max_value)).
        dim: torch.renorm's dim; 0 (default) constrains each output unit's incoming weight
            vector of an (out, in) Linear weight.
        p: the norm's order (2: Euclidean).
        mask: a pytree of bools shaped like params, or a function params -> such a pytree;
            default: leaves with ndim >= 2 (weights, not biases).

    Returns:
        A stateless GradientTransformation; chain it last, after the optimizer.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import optim
        >>> opt = optim.chain(optim.sgd(lr=1.0), optim.max_norm(1.0))
        >>> params = jnp.zeros((1, 2))
        >>> updates, _ = opt.update(jnp.array([[-3.0, -4.0]]), opt.init(params), params)
        >>> optim.apply_updates(params, updates).tolist()  # [[3, 4]] renormed to norm 1
        [[0.6, 0.8]]
    """
    _check_renorm_args(p, max_norm, "max_norm")
    dim = check_int("dim", dim)
    limit = max_norm

    def update(updates, state, params=None):
        if params is None:
            raise ValueError(
                "max_norm needs params (it constrains params + updates): call update(updates, state, params)"
            )
        check_tree_match(updates, params, "params")

        def constrain(u, w, m):
            if isinstance(m, (bool, np.bool_)) and not m:
                return u  # resolved at trace time: an unconstrained leaf costs nothing
            # params + updates as apply_updates forms it (in the parameter's dtype)
            new = renorm((w + u).astype(jnp.result_type(w)), p, dim, limit)
            clipped = (new - w).astype(jnp.result_type(u))
            return clipped if isinstance(m, (bool, np.bool_)) else jnp.where(m, clipped, u)

        return jax.tree.map(constrain, updates, params, resolve_mask(mask, params)), state

    args = {"max_norm": max_norm, "dim": dim, "p": p, "mask": mask}
    return GradientTransformation(lambda params: (), update, args, make_spec("max_norm", **args))
