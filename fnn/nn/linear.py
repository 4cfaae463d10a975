"""Linear, Flatten and Unflatten layers (LIN-1, LIN-2, FLAT-1, FLAT-2)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax

from fnn import functional as F
from fnn import init as initializers
from fnn._checks import check_int
from fnn.functional.affine import check_sizes
from fnn.nn.base import Elementwise, Layer, canonical_dtype, check_input_dtype, require_dtype_available

__all__ = ["Flatten", "Linear", "Unflatten"]


@dataclass(frozen=True)
class Linear(Layer):
    """y = x Wᵀ + b with W (out, in). Default init is PyTorch's (LIN-1):
    W = kaiming_uniform(a=√5) = U(±1/√in), b = U(±1/√in) (bound 0 when in = 0).

    Params: ``weight`` (out_features, in_features) and, with ``bias``, ``bias``
    (out_features,); no state. The input is (..., in_features), the output (..., out_features).

    Args:
        in_features: size of the input's last dimension (>= 0).
        out_features: size of the output's last dimension (>= 0).
        bias: whether to learn an additive bias (default True).
        weight_init: None for torch's default, or any ``fnn.init``-style function
            ``(key, shape) -> array``, e.g. ``functools.partial(init.kaiming_normal,
            nonlinearity='relu')``; its result is cast to ``dtype``.
        bias_init: the same for the bias, e.g. ``functools.partial(init.constant, val=0.0)``.
        dtype: torch's factory keyword (DTYPE-1), keyword-only: ``'float32'`` (default),
            ``'float64'`` (needs JAX's 64-bit mode), ``'bfloat16'`` or ``'float16'``, or the
            matching numpy/jax dtype; the spec stores its name. ``init`` draws the
            parameters in that dtype, and an input of another dtype raises (DTYPE-2).

    Example:
        >>> import functools, jax, jax.numpy as jnp
        >>> from fnn import init, nn
        >>> Linear(3, 2, dtype=jax.numpy.float16)
        Linear(in_features=3, out_features=2, bias=True, weight_init=None, bias_init=None, dtype='float16')
        >>> ones = functools.partial(init.constant, val=1.0)
        >>> layer = nn.Linear(3, 2, weight_init=ones, bias_init=ones)
        >>> params, state = layer.init(jax.random.key(0))
        >>> y, _ = layer.apply(params, state, jnp.array([[1.0, 2.0, 3.0]]), train=False)
        >>> y.tolist()
        [[7.0, 7.0]]
    """

    in_features: int
    out_features: int
    bias: bool = True
    weight_init: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None
    bias_init: Callable[[jax.Array, tuple[int, ...]], jax.Array] | None = None
    dtype: str = field(default="float32", kw_only=True)

    def __post_init__(self):
        for name in ("in_features", "out_features"):  # sizes: ints >= 0, as torch's
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=0))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, "Linear"))

    def init(self, key):
        require_dtype_available(self.dtype, "Linear")
        k_w, k_b = jax.random.split(key)
        shape = (self.out_features, self.in_features)
        if self.weight_init is None:
            weight = initializers.kaiming_uniform(k_w, shape, a=math.sqrt(5), dtype=self.dtype)
        else:
            weight = self._custom("weight_init", self.weight_init, k_w, shape)
        params = {"weight": weight}
        if self.bias:
            if self.bias_init is None:
                bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
                params["bias"] = initializers.uniform(k_b, (self.out_features,), -bound, bound, self.dtype)
            else:
                params["bias"] = self._custom("bias_init", self.bias_init, k_b, (self.out_features,))
        return params, {}

    def _custom(self, name, fn, key, shape):
        value = jax.numpy.asarray(fn(key, shape), self.dtype)
        if value.shape != shape:
            raise ValueError(f"Linear {name} must return shape {shape}, got {value.shape}")
        return value

    def apply(self, params, state, x, *, key=None, train):
        check_input_dtype("Linear", x, params)
        return F.linear(x, params["weight"], params.get("bias")), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        y, new_state = self.apply(params, state, x, key=key, train=train)

        def pullback(grad_y):
            grad_x, grad_w, grad_b = F.linear_backward(grad_y, x, params["weight"], params.get("bias"))
            grads = {"weight": grad_w}
            if self.bias:
                grads["bias"] = grad_b
            return grads, grad_x

        return y, new_state, pullback


@dataclass(frozen=True)
class Flatten(Elementwise):
    """torch.nn.Flatten: merges dims start_dim..end_dim into one (FLAT-1).

    Args:
        start_dim: first dim to flatten (default 1, keeping the batch dim).
        end_dim: last dim to flatten, inclusive (default -1).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Flatten().apply({}, {}, jnp.zeros((2, 3, 4)), train=False)
        >>> y.shape
        (2, 12)
    """

    start_dim: int = 1
    end_dim: int = -1

    def _forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def _backward(self, x, g):
        return F.flatten_backward(g, x, self.start_dim, self.end_dim)


@dataclass(frozen=True)
class Unflatten(Elementwise):
    """torch.nn.Unflatten: splits dim ``dim`` into ``unflattened_size`` (FLAT-2).

    ``Unflatten(1, (1, 28, 28))`` turns a batch of 784-pixel rows into (N, 1, 28, 28) images,
    the input of a Conv2d.

    Args:
        dim: the dim to split (negative counts from the end).
        unflattened_size: the new dims' sizes (a tuple, or a list stored as a tuple); one
            may be -1, inferred from the others.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Unflatten(1, (1, 28, 28)).apply({}, {}, jnp.zeros((2, 784)), train=False)
        >>> y.shape
        (2, 1, 28, 28)
    """

    dim: int
    unflattened_size: tuple[int, ...]

    def __post_init__(self):
        check_int("dim", self.dim)  # its range is checked against the input's ndim in apply
        # a list (as torch accepts) would make the spec unhashable: stored as a tuple
        object.__setattr__(self, "unflattened_size", check_sizes(self.unflattened_size, "unflattened_size"))

    def _forward(self, x):
        return F.unflatten(x, self.dim, self.unflattened_size)

    def _backward(self, x, g):
        return F.unflatten_backward(g, x, self.dim, self.unflattened_size)
