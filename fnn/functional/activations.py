"""Activations with PyTorch semantics, each with a hand-derived backward.

Contract (shared/SEMANTICS.md 1.2):
- Every forward is plain `jax.numpy`, written so that `jax.grad` returns PyTorch's value at
  the kinks: relu'(0) = 0 (ACT-1), leaky_relu'(0) = slope (ACT-2), prelu'(0) = alpha
  (ACT-3), elu'(0) = alpha, i.e. 1 by default (ACT-4; torch's kernel takes the x <= 0
  branch), abs'(0) = 0 (ACT-7). NaN propagates as in torch (relu(nan) = nan).
- Stable for logits of +-1000: sigmoid, softplus, elu, softmax, log_softmax and logsumexp
  return finite values with finite gradients there (no exp of a large positive number is
  ever formed, not even in a `jnp.where` branch that is thrown away, since its gradient
  would be 0 * inf = NaN).
- `softplus` returns x exactly where beta * x > threshold (ACT-5).
- `softmax`, `log_softmax`, `logsumexp` reduce over `dim` (default -1). torch requires an
  explicit dim for logsumexp; fnn defaults to the last axis like softmax. Inputs need at
  least one dimension.
- `maxout(input, pieces)` splits channel dim 1 of size out * pieces into contiguous
  groups (out, pieces); ties send the gradient to the first maximal piece, like torch's
  `x.max(dim)` (ACT-8).
- Inputs must be floating: these are differentiable ops. Hyper-parameters (slope, alpha,
  beta, threshold, dim, pieces) are static Python numbers.

Backward convention: `f_backward(grad_output, <f's arguments>)` returns d(loss)/d(input),
or a tuple in argument order for several differentiable inputs (prelu).
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
from jax import lax

from fnn._checks import check_floating, check_same_shape

__all__ = [
    "abs",
    "abs_backward",
    "elu",
    "elu_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "log_softmax",
    "log_softmax_backward",
    "logsumexp",
    "logsumexp_backward",
    "maxout",
    "maxout_backward",
    "prelu",
    "prelu_backward",
    "relu",
    "relu_backward",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "softmax_backward",
    "softplus",
    "softplus_backward",
    "tanh",
    "tanh_backward",
]


def _dim(dim: int, x: jax.Array) -> int:
    """Normalise a torch-style dim (negative allowed) for an input of at least 1 dim."""
    try:
        d = operator.index(dim)
    except TypeError:
        raise TypeError(f"dim must be a Python int, got {dim!r}") from None
    n = jnp.ndim(x)
    if n == 0:
        raise ValueError(f"input must have at least 1 dimension to reduce over dim, got shape {()}")
    if not -n <= d < n:
        raise ValueError(
            f"dim must be in [{-n}, {n - 1}] for input of shape {tuple(jnp.shape(x))}, got {dim}"
        )
    return d % n


def _grad_check(grad_output: jax.Array, expected: tuple[int, ...]) -> None:
    if tuple(jnp.shape(grad_output)) != tuple(expected):
        raise ValueError(
            f"grad_output must have the forward output's shape {tuple(expected)}, "
            f"got {tuple(jnp.shape(grad_output))}"
        )


# ---------------------------------------------------------------- piecewise linear


def relu(input: jax.Array) -> jax.Array:
    """max(0, x). Written as where(x <= 0, 0, x): jax.grad gives 0 at 0 (ACT-1) and nan passes."""
    check_floating("input", input)
    return jnp.where(input <= 0, jnp.zeros_like(input), input)


def relu_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """y = x for x > 0, else 0  =>  dL/dx = g * [x > 0]; the kink x = 0 gets 0 (ACT-1)."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    return jnp.where(input <= 0, jnp.zeros_like(grad_output), grad_output)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """x if x > 0 else slope * x; jax.grad gives slope at 0 (ACT-2)."""
    check_floating("input", input)
    return jnp.where(input > 0, input, negative_slope * input)


def leaky_relu_backward(grad_output: jax.Array, input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """y = x (x > 0), slope * x (x <= 0)  =>  dL/dx = g * (1 if x > 0 else slope); at 0: slope."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    return jnp.where(input > 0, grad_output, negative_slope * grad_output)


def _prelu_weight(input: jax.Array, weight: jax.Array) -> jax.Array:
    """Validate weight (1,) or (C,) with C = input.shape[1]; reshape it to broadcast on dim 1."""
    check_floating("input", input)
    check_floating("weight", weight)
    if jnp.ndim(weight) != 1:
        raise ValueError(f"weight must be 1-D of shape (1,) or (C,), got shape {tuple(jnp.shape(weight))}")
    c = jnp.shape(weight)[0]
    if c == 1:
        return weight.reshape(())
    if jnp.ndim(input) < 2 or jnp.shape(input)[1] != c:
        raise ValueError(
            f"weight of shape ({c},) needs input with {c} channels on dim 1, "
            f"got input shape {tuple(jnp.shape(input))}"
        )
    return weight.reshape((1, c) + (1,) * (jnp.ndim(input) - 2))


def prelu(input: jax.Array, weight: jax.Array) -> jax.Array:
    """x if x > 0 else a * x, a = weight per channel (dim 1) or shared; grad at 0 = a (ACT-3)."""
    a = _prelu_weight(input, weight)
    return jnp.where(input > 0, input, a * input)


def prelu_backward(
    grad_output: jax.Array, input: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """y = x (x > 0), a_c * x (x <= 0).

    dL/dx = g * (1 if x > 0 else a_c)                 (x = 0 gets a_c, ACT-3)
    dL/da_c = sum over all positions of channel c of g * min(0, x)
    (one shared a: the sum runs over every element).
    """
    a = _prelu_weight(input, weight)
    check_same_shape("grad_output", grad_output, "input", input)
    grad_input = jnp.where(input > 0, grad_output, a * grad_output)
    contrib = jnp.where(input > 0, jnp.zeros_like(input), input) * grad_output
    if jnp.shape(weight)[0] == 1:
        grad_weight = jnp.sum(contrib).reshape(1)
    else:
        grad_weight = jnp.sum(contrib, axis=(0,) + tuple(range(2, jnp.ndim(input))))
    return grad_input, grad_weight.astype(weight.dtype)


def abs(input: jax.Array) -> jax.Array:
    """|x| as x * sign(x): jax.grad gives sign(x), so 0 at 0 like torch (ACT-7).

    (grad(jnp.abs)(0.) is 1, the JAX trap of ACT-7.)
    """
    check_floating("input", input)
    return input * jnp.sign(input)


def abs_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """y = |x|  =>  dL/dx = g * sign(x), with sign(0) = 0 (ACT-7)."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    return grad_output * jnp.sign(input)


# ---------------------------------------------------------------- smooth


def elu(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """x if x > 0 else alpha * (e^x - 1).

    The exponent is clamped to <= 0 inside the discarded branch, so x = 1000 never forms
    e^1000 (whose zero-weighted gradient would be NaN). At 0 the x <= 0 branch is taken,
    as in torch's kernel: grad = alpha (= 1 by default, ACT-4).
    """
    check_floating("input", input)
    neg = alpha * jnp.expm1(jnp.where(input > 0, jnp.zeros_like(input), input))
    return jnp.where(input > 0, input, neg)


def elu_backward(grad_output: jax.Array, input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """y = x (x > 0), alpha (e^x - 1) (x <= 0)  =>  dy/dx = 1 (x > 0), alpha e^x (x <= 0).

    At 0: alpha (ACT-4 for alpha = 1).
    """
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    neg = alpha * jnp.exp(jnp.where(input > 0, jnp.zeros_like(input), input))
    return grad_output * jnp.where(input > 0, jnp.ones_like(input), neg)


def sigmoid(input: jax.Array) -> jax.Array:
    """1 / (1 + e^-x) via lax.logistic, exact in both tails (sigmoid(-1000) = 0, no overflow)."""
    check_floating("input", input)
    return lax.logistic(input)


def sigmoid_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """s = 1/(1 + e^-x)  =>  ds/dx = e^-x / (1 + e^-x)^2 = s (1 - s)."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    s = lax.logistic(input)
    return grad_output * s * (1 - s)


def tanh(input: jax.Array) -> jax.Array:
    """Hyperbolic tangent."""
    check_floating("input", input)
    return jnp.tanh(input)


def tanh_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """t = tanh x  =>  dt/dx = 1/cosh^2 x = 1 - t^2."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    t = jnp.tanh(input)
    return grad_output * (1 - t * t)


def softplus(input: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """(1/beta) log(1 + e^(beta x)), and exactly x where beta * x > threshold (ACT-5).

    log(1 + e^z) is computed as logaddexp(0, z) = max(z, 0) + log1p(e^-|z|), finite for any
    z, so a large threshold cannot overflow either.
    """
    check_floating("input", input)
    z = beta * input
    return jnp.where(z > threshold, input, jnp.logaddexp(jnp.zeros_like(z), z) / beta)


def softplus_backward(
    grad_output: jax.Array, input: jax.Array, beta: float = 1.0, threshold: float = 20.0
) -> jax.Array:
    """y = (1/beta) log(1 + e^(beta x))  =>  dy/dx = e^(beta x)/(1 + e^(beta x)) = sigmoid(beta x);
    where beta x > threshold, y = x and dy/dx = 1 (ACT-5)."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    z = beta * input
    return jnp.where(z > threshold, grad_output, grad_output * lax.logistic(z))


# ---------------------------------------------------------------- reductions over dim


def _dims(dim: int | tuple[int, ...], x: jax.Array) -> tuple[int, ...]:
    """One dim or a tuple of dims (as torch.logsumexp takes), normalised and sorted."""
    dims = tuple(dim) if isinstance(dim, (tuple, list)) else (dim,)
    out = tuple(sorted({_dim(d, x) for d in dims}))
    if len(out) != len(dims):
        raise ValueError(f"dim {dim!r} names the same dimension more than once")
    return out


def logsumexp(input: jax.Array, dim: int | tuple[int, ...] = -1, keepdim: bool = False) -> jax.Array:
    """log sum_i e^(x_i) over `dim` (an int or a tuple of ints), shifted by the
    (gradient-free) max so e^1000 never forms.

    An infinite max (all -inf, or a +inf entry) is not subtracted, so -inf and +inf come out
    as in torch instead of NaN.
    """
    check_floating("input", input)
    d = _dims(dim, input)
    m = lax.stop_gradient(jnp.max(input, axis=d, keepdims=True))
    m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
    out = jnp.log(jnp.sum(jnp.exp(input - m), axis=d, keepdims=True)) + m
    return out if keepdim else jnp.squeeze(out, axis=d)


def logsumexp_backward(
    grad_output: jax.Array, input: jax.Array, dim: int | tuple[int, ...] = -1, keepdim: bool = False
) -> jax.Array:
    """y = log sum_j e^(x_j)  =>  dy/dx_i = e^(x_i) / sum_j e^(x_j) = e^(x_i - y), the softmax
    over the reduced dims, so dL/dx = g (broadcast back over `dim`) * e^(x - y)."""
    check_floating("input", input)
    d = _dims(dim, input)
    shape = tuple(jnp.shape(input))
    _grad_check(
        grad_output,
        tuple(1 if i in d else s for i, s in enumerate(shape))
        if keepdim
        else tuple(s for i, s in enumerate(shape) if i not in d),
    )
    g = grad_output if keepdim else jnp.expand_dims(grad_output, d)
    return g * jnp.exp(input - logsumexp(input, d, keepdim=True))


def softmax(input: jax.Array, dim: int = -1) -> jax.Array:
    """e^(x_i) / sum_j e^(x_j) over `dim` (ACT-6), after subtracting the max (stable)."""
    check_floating("input", input)
    d = _dim(dim, input)
    e = jnp.exp(input - lax.stop_gradient(jnp.max(input, axis=d, keepdims=True)))
    return e / jnp.sum(e, axis=d, keepdims=True)


def softmax_backward(grad_output: jax.Array, input: jax.Array, dim: int = -1) -> jax.Array:
    """y = softmax(x)  =>  dy_i/dx_k = y_i (delta_ik - y_k), so
    dL/dx_k = sum_i g_i y_i (delta_ik - y_k) = y_k (g_k - sum_i g_i y_i)."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    d = _dim(dim, input)
    y = softmax(input, d)
    return y * (grad_output - jnp.sum(grad_output * y, axis=d, keepdims=True))


def log_softmax(input: jax.Array, dim: int = -1) -> jax.Array:
    """x - logsumexp(x) over `dim` (ACT-6): finite for logits of +-1000."""
    check_floating("input", input)
    d = _dim(dim, input)
    return input - logsumexp(input, d, keepdim=True)


def log_softmax_backward(grad_output: jax.Array, input: jax.Array, dim: int = -1) -> jax.Array:
    """y_i = x_i - logsumexp(x)  =>  dy_i/dx_k = delta_ik - softmax(x)_k, so
    dL/dx_k = g_k - softmax(x)_k * sum_i g_i."""
    check_floating("input", input)
    check_same_shape("grad_output", grad_output, "input", input)
    d = _dim(dim, input)
    return grad_output - softmax(input, d) * jnp.sum(grad_output, axis=d, keepdims=True)


# ---------------------------------------------------------------- maxout


def _maxout_split(input: jax.Array, pieces: int) -> tuple[jax.Array, jax.Array]:
    """Reshape (N, out*pieces, *rest) -> (N, out, pieces, *rest); return it and the first argmax."""
    check_floating("input", input)
    if isinstance(pieces, bool) or not isinstance(pieces, int):
        raise TypeError(f"pieces must be a Python int, got {pieces!r}")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")
    shape = tuple(jnp.shape(input))
    if len(shape) < 2:
        raise ValueError(f"maxout input must have a channel dim 1 (ndim >= 2), got shape {shape}")
    if shape[1] % pieces:
        raise ValueError(
            f"maxout channel dim 1 (size {shape[1]}) must be divisible by pieces={pieces}, "
            f"got input shape {shape}"
        )
    z = input.reshape(shape[:1] + (shape[1] // pieces, pieces) + shape[2:])
    # jnp.argmax returns the first maximal index: the tie rule of ACT-8.
    return z, jnp.argmax(z, axis=2, keepdims=True)


def maxout(input: jax.Array, pieces: int) -> jax.Array:
    """y[:, j, ...] = max_i x[:, j*pieces + i, ...] (ACT-8).

    Gathered with take_along_axis at the first argmax, so jax.grad routes a tie's whole
    gradient to the first maximal piece (torch `x.max(dim)`), not split like jnp.max.
    """
    z, idx = _maxout_split(input, pieces)
    return jnp.squeeze(jnp.take_along_axis(z, idx, axis=2), axis=2)


def maxout_backward(grad_output: jax.Array, input: jax.Array, pieces: int) -> jax.Array:
    """y_j = z_{j, i*(j)} with i*(j) the first argmax  =>  dy_j/dz_{j,i} = [i = i*(j)],
    so dL/dz_{j,i} = g_j [i = i*(j)], reshaped back to the input's channel layout."""
    z, idx = _maxout_split(input, pieces)
    _grad_check(grad_output, z.shape[:2] + z.shape[3:])
    iota = lax.broadcasted_iota(idx.dtype, z.shape, 2)
    grad_z = jnp.where(iota == idx, jnp.expand_dims(grad_output, 2), jnp.zeros((), grad_output.dtype))
    return grad_z.reshape(jnp.shape(input))
