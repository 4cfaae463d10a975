"""Affine map and flatten, with PyTorch semantics and hand-derived backwards.

Contract (docs/semantics.md, rules LIN-1, LIN-2, FLAT-1):
- `linear(input, weight, bias=None)`: y = x W^T + b with weight of shape (out, in) and bias
  (out,) (LIN-1, LIN-2); input has shape (*, in), any number of leading dims (also none).
- `flatten(input, start_dim=1, end_dim=-1)` merges dims start_dim..end_dim (FLAT-1). The
  default start_dim=1 is that of `torch.nn.Flatten` (keep the batch dim), not of
  `torch.flatten` (0). Negative dims count from the end; a 0-d input counts as 1-d, as in torch.
- `unflatten(input, dim, sizes)` splits dim into `sizes`, one of which may be -1 (FLAT-2),
  as `torch.unflatten`; flatten's inverse.
- Shapes are checked at trace time; errors name the arguments and both shapes.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_dim, check_floating, check_grad_shape, is_int

__all__ = ["flatten", "flatten_backward", "linear", "linear_backward", "unflatten", "unflatten_backward"]


def _check_linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None) -> None:
    check_floating("input", input)
    check_floating("weight", weight)
    if jnp.ndim(weight) != 2:
        raise ValueError(
            f"weight must have shape (out_features, in_features), got shape {tuple(jnp.shape(weight))}"
        )
    if jnp.ndim(input) < 1 or jnp.shape(input)[-1] != jnp.shape(weight)[1]:
        raise ValueError(
            f"input's last dim must equal weight's in_features (weight.shape[1]); got input "
            f"shape {tuple(jnp.shape(input))} and weight shape {tuple(jnp.shape(weight))}"
        )
    if bias is not None:
        check_floating("bias", bias)
        if tuple(jnp.shape(bias)) != (jnp.shape(weight)[0],):
            raise ValueError(
                f"bias must have shape (out_features,) = ({jnp.shape(weight)[0]},) for weight "
                f"shape {tuple(jnp.shape(weight))}, got bias shape {tuple(jnp.shape(bias))}"
            )


def linear(input: jax.Array, weight: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """Affine map y = x W^T + b over the last dim of x (LIN-1).

    Args:
        input: a floating array (*, in_features); any number of leading dims, also none.
        weight: the weight, shape (out_features, in_features), torch's layout.
        bias: the bias, shape (out_features,), or None for no bias (LIN-2).

    Returns:
        An array (*, out_features).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> W = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> F.linear(jnp.array([[1.0, 2.0]]), W, jnp.array([0.0, 0.0, 1.0])).tolist()
        [[1.0, 2.0, 4.0]]
    """
    _check_linear(input, weight, bias)
    y = input @ weight.T
    return y if bias is None else y + bias


def linear_backward(
    grad_output: jax.Array, input: jax.Array, weight: jax.Array, bias: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Gradients of `linear` with respect to its input, weight and bias.

    y_(n,o) = sum_i x_(n,i) W_(o,i) + b_o  (n runs over all leading dims, flattened)

    dL/dx_(n,i) = sum_o g_(n,o) W_(o,i)      ->  G W
    dL/dW_(o,i) = sum_n g_(n,o) x_(n,i)      ->  G^T X
    dL/db_o     = sum_n g_(n,o)              (None when bias is None)

    Args:
        grad_output: dL/dy, shape (*, out_features).
        input: the forward's input x, shape (*, in_features).
        weight: the forward's weight, shape (out_features, in_features).
        bias: the forward's bias (out_features,), or None.

    Returns:
        (grad_input, grad_weight, grad_bias), of the shapes of input, weight and bias;
        grad_bias is None when bias is None.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> W = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> gx, gW, gb = F.linear_backward(jnp.ones((1, 3)), jnp.array([[1.0, 2.0]]), W, jnp.zeros(3))
        >>> gx.tolist(), gW.tolist(), gb.tolist()
        ([[2.0, 2.0]], [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]], [1.0, 1.0, 1.0])
    """
    _check_linear(input, weight, bias)
    out_f, in_f = jnp.shape(weight)
    expected = (*tuple(jnp.shape(input)[:-1]), out_f)
    check_grad_shape(grad_output, expected)
    g2 = grad_output.reshape(-1, out_f)
    grad_input = grad_output @ weight
    grad_weight = g2.T @ input.reshape(-1, in_f)
    grad_bias = None if bias is None else jnp.sum(g2, axis=0)
    return grad_input, grad_weight, grad_bias


def _flat_shape(shape: tuple[int, ...], start_dim: int, end_dim: int) -> tuple[int, ...]:
    n = max(len(shape), 1)  # torch wraps dims of a 0-d tensor as if it were 1-d
    s, e = check_dim("start_dim", start_dim, n, shape), check_dim("end_dim", end_dim, n, shape)
    if s > e:
        raise ValueError(
            f"start_dim cannot come after end_dim, got start_dim={start_dim} and "
            f"end_dim={end_dim} for input of shape {shape}"
        )
    full = shape if shape else (1,)
    return (*full[:s], math.prod(full[s : e + 1]), *full[e + 1 :])


def flatten(input: jax.Array, start_dim: int = 1, end_dim: int = -1) -> jax.Array:
    """Merge dims start_dim..end_dim into one (FLAT-1: (N, d1, ..., dk) -> (N, d1...dk)).

    Args:
        input: an array of any shape (a 0-d input counts as 1-d, as in torch).
        start_dim: the first dim to merge (default 1: keep the batch dim, as torch.nn.Flatten).
        end_dim: the last dim to merge, inclusive (default -1).

    Returns:
        The same elements, reshaped.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.flatten(jnp.zeros((2, 3, 4))).shape
        (2, 12)
    """
    return jnp.reshape(input, _flat_shape(tuple(jnp.shape(input)), start_dim, end_dim))


def flatten_backward(
    grad_output: jax.Array, input: jax.Array, start_dim: int = 1, end_dim: int = -1
) -> jax.Array:
    """Gradient of `flatten` with respect to its input.

    Flatten only relabels elements (a permutation-free reshape), so its Jacobian is the
    identity on the flat data: dL/dx = reshape(g, x.shape).

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input x.
        start_dim: the forward's start_dim (default 1).
        end_dim: the forward's end_dim (default -1).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.flatten_backward(jnp.ones((2, 12)), jnp.zeros((2, 3, 4))).shape
        (2, 3, 4)
    """
    expected = _flat_shape(tuple(jnp.shape(input)), start_dim, end_dim)
    check_grad_shape(grad_output, expected)
    return jnp.reshape(grad_output, jnp.shape(input))


def check_sizes(sizes: Any, name: str = "sizes") -> tuple[int, ...]:
    """``sizes`` of unflatten (a non-empty tuple or list of ints >= 0, at most one -1) as a
    tuple; the one check of the argument, for ``unflatten`` and ``nn.Unflatten``.

    >>> check_sizes([1, 28, -1])
    (1, 28, -1)
    """
    if not isinstance(sizes, (tuple, list)) or not all(is_int(s) for s in sizes):
        raise TypeError(f"{name} must be a tuple of ints, got {sizes!r}")
    if not sizes or not all(s >= -1 for s in sizes) or list(sizes).count(-1) > 1:
        raise ValueError(f"{name} must be a non-empty tuple of ints >= 0 with at most one -1, got {sizes!r}")
    return tuple(int(s) for s in sizes)


def _unflat_shape(shape: tuple[int, ...], dim: int, sizes: tuple[int, ...]) -> tuple[int, ...]:
    if not shape:
        raise ValueError("unflatten needs an input with at least 1 dimension, got a 0-d input")
    d = check_dim("dim", dim, len(shape), shape)
    sizes = check_sizes(sizes)
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes and known > 0 and shape[d] % known == 0:
        sizes = tuple(shape[d] // known if s == -1 else s for s in sizes)
    if -1 in sizes or math.prod(sizes) != shape[d]:
        raise ValueError(
            f"sizes {sizes} do not multiply up to the size of dim {dim} ({shape[d]}) "
            f"of the input of shape {shape}"
        )
    return (*shape[:d], *sizes, *shape[d + 1 :])


def unflatten(input: jax.Array, dim: int, sizes: tuple[int, ...]) -> jax.Array:
    """Split dim ``dim`` into ``sizes`` (FLAT-2: torch.unflatten; flatten's inverse).

    Args:
        input: an array with at least one dimension.
        dim: the dim to split (negative counts from the end).
        sizes: the new dims' sizes, whose product is the size of ``dim``; one of them may
            be -1, inferred from the others.

    Returns:
        The same elements, reshaped.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.unflatten(jnp.zeros((2, 784)), 1, (1, 28, -1)).shape
        (2, 1, 28, 28)
    """
    return jnp.reshape(input, _unflat_shape(tuple(jnp.shape(input)), dim, sizes))


def unflatten_backward(
    grad_output: jax.Array, input: jax.Array, dim: int, sizes: tuple[int, ...]
) -> jax.Array:
    """Gradient of `unflatten` with respect to its input.

    Like flatten, unflatten only relabels the elements of a row-major array, so its
    Jacobian is the identity on the flat data: dL/dx = reshape(g, x.shape).

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input x.
        dim: the forward's dim.
        sizes: the forward's sizes.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.unflatten_backward(jnp.ones((2, 1, 28, 28)), jnp.zeros((2, 784)), 1, (1, 28, 28)).shape
        (2, 784)
    """
    check_grad_shape(grad_output, _unflat_shape(tuple(jnp.shape(input)), dim, sizes))
    return jnp.reshape(grad_output, jnp.shape(input))
