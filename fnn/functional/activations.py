"""Activations with PyTorch semantics, each with a hand-derived backward.

Contract (docs/semantics.md, rules ACT-1..ACT-9):
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
- `scaled_tanh(input, amplitude=1.7159, slope=2/3)`: A·tanh(S·x), LeCun 1998's (ACT-9).
- Inputs must be floating: these are differentiable ops. Hyper-parameters (slope, alpha,
  beta, threshold, dim, pieces) are static Python numbers.

Backward convention: `f_backward(grad_output, <f's arguments>)` returns d(loss)/d(input),
or a tuple in argument order for several differentiable inputs (prelu).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from fnn._checks import (
    check_backward_input,
    check_dim,
    check_floating,
    check_grad_shape,
    check_same_shape,
    is_int,
    is_real,
)

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
    "scaled_tanh",
    "scaled_tanh_backward",
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
    if jnp.ndim(x) == 0:
        raise ValueError(f"input must have at least 1 dimension to reduce over dim, got shape {()}")
    return check_dim("dim", dim, jnp.ndim(x), tuple(jnp.shape(x)))


# ---------------------------------------------------------------- piecewise linear


def relu(input: jax.Array) -> jax.Array:
    """Rectified linear unit, max(0, x), elementwise (ACT-1).

    Written as where(x <= 0, 0, x): jax.grad gives 0 at 0 (ACT-1) and nan passes.

    Args:
        input: a floating array of any shape.

    Returns:
        max(0, input), of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.relu(jnp.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 2.0]
    """
    check_floating("input", input)
    return jnp.where(input <= 0, jnp.zeros_like(input), input)


def relu_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """Gradient of `relu` with respect to its input.

    y = x for x > 0, else 0  =>  dL/dx = g * [x > 0]; the kink x = 0 gets 0 (ACT-1).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.relu_backward(jnp.ones(3), jnp.array([-1.0, 0.0, 2.0])).tolist()
        [0.0, 0.0, 1.0]
    """
    check_backward_input(grad_output, input)
    return jnp.where(input <= 0, jnp.zeros_like(grad_output), grad_output)


def leaky_relu(input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Leaky ReLU: x if x > 0 else negative_slope * x, elementwise (ACT-2).

    jax.grad gives the slope at 0, as torch does.

    Args:
        input: a floating array of any shape.
        negative_slope: the slope for x <= 0 (default 0.01), a static Python number.

    Returns:
        An array of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.leaky_relu(jnp.array([-2.0, 0.0, 3.0]), negative_slope=0.1).tolist()
        [-0.2, 0.0, 3.0]
    """
    check_floating("input", input)
    return jnp.where(input > 0, input, negative_slope * input)


def leaky_relu_backward(grad_output: jax.Array, input: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """Gradient of `leaky_relu` with respect to its input.

    y = x (x > 0), slope * x (x <= 0)  =>  dL/dx = g * (1 if x > 0 else slope); at 0: slope.

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        negative_slope: the forward's slope (default 0.01).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.leaky_relu_backward(jnp.ones(3), jnp.array([-2.0, 0.0, 3.0]), 0.1).tolist()
        [0.1, 0.1, 1.0]
    """
    check_backward_input(grad_output, input)
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
    """Parametric ReLU: x if x > 0 else a * x, with a learned slope a (ACT-3).

    a = weight per channel (dim 1) or one shared slope; jax.grad gives a at 0 (ACT-3).

    Args:
        input: a floating array; with C slopes it needs C channels on dim 1, e.g. (N, C, *).
        weight: the slopes, shape (1,) (shared) or (C,) (one per channel).

    Returns:
        An array of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[-1.0, 2.0], [-3.0, 4.0]])
        >>> F.prelu(x, jnp.array([0.25])).tolist()
        [[-0.25, 2.0], [-0.75, 4.0]]
    """
    a = _prelu_weight(input, weight)
    return jnp.where(input > 0, input, a * input)


def prelu_backward(
    grad_output: jax.Array, input: jax.Array, weight: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Gradients of `prelu` with respect to its input and its weight.

    y = x (x > 0), a_c * x (x <= 0).

    dL/dx = g * (1 if x > 0 else a_c)                 (x = 0 gets a_c, ACT-3)
    dL/da_c = sum over all positions of channel c of g * min(0, x)
    (one shared a: the sum runs over every element).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        weight: the forward's slopes, shape (1,) or (C,).

    Returns:
        (grad_input, grad_weight): dL/dx of the input's shape, and dL/da of the weight's
        shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[-1.0, 2.0], [-3.0, 4.0]])
        >>> gx, ga = F.prelu_backward(jnp.ones((2, 2)), x, jnp.array([0.25]))
        >>> gx.tolist()
        [[0.25, 1.0], [0.25, 1.0]]
        >>> ga.tolist()
        [-4.0]
    """
    a = _prelu_weight(input, weight)
    check_same_shape("grad_output", grad_output, "input", input)
    grad_input = jnp.where(input > 0, grad_output, a * grad_output)
    contrib = jnp.where(input > 0, jnp.zeros_like(input), input) * grad_output
    if jnp.shape(weight)[0] == 1:
        grad_weight = jnp.sum(contrib).reshape(1)
    else:
        grad_weight = jnp.sum(contrib, axis=(0, *tuple(range(2, jnp.ndim(input)))))
    return grad_input, grad_weight.astype(weight.dtype)


def abs(input: jax.Array) -> jax.Array:
    """Absolute value |x|, elementwise, with torch's gradient 0 at 0 (ACT-7).

    Written as x * sign(x): jax.grad gives sign(x), so 0 at 0 like torch (ACT-7).
    (grad(jnp.abs)(0.) is 1, the JAX trap of ACT-7.)

    Args:
        input: a floating array of any shape.

    Returns:
        |input|, of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.abs(jnp.array([-2.0, 0.0, 3.0])).tolist()
        [2.0, 0.0, 3.0]
    """
    check_floating("input", input)
    return input * jnp.sign(input)


def abs_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """Gradient of `abs` with respect to its input.

    y = |x|  =>  dL/dx = g * sign(x), with sign(0) = 0 (ACT-7).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.abs_backward(jnp.ones(3), jnp.array([-2.0, 0.0, 3.0])).tolist()
        [-1.0, 0.0, 1.0]
    """
    check_backward_input(grad_output, input)
    return grad_output * jnp.sign(input)


# ---------------------------------------------------------------- smooth


def elu(input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Exponential linear unit: x if x > 0 else alpha * (e^x - 1), elementwise (ACT-4).

    The exponent is clamped to <= 0 inside the discarded branch, so x = 1000 never forms
    e^1000 (whose zero-weighted gradient would be NaN). At 0 the x <= 0 branch is taken,
    as in torch's kernel: grad = alpha (= 1 by default, ACT-4).

    Args:
        input: a floating array of any shape.
        alpha: the scale of the negative branch (default 1.0), a static Python number.

    Returns:
        An array of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.elu(jnp.array([-1.0, 0.0, 2.0])).tolist()
        [-0.6321, 0.0, 2.0]
    """
    check_floating("input", input)
    neg = alpha * jnp.expm1(jnp.where(input > 0, jnp.zeros_like(input), input))
    return jnp.where(input > 0, input, neg)


def elu_backward(grad_output: jax.Array, input: jax.Array, alpha: float = 1.0) -> jax.Array:
    """Gradient of `elu` with respect to its input.

    y = x (x > 0), alpha (e^x - 1) (x <= 0)  =>  dy/dx = 1 (x > 0), alpha e^x (x <= 0).

    At 0: alpha (ACT-4 for alpha = 1).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        alpha: the forward's alpha (default 1.0).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.elu_backward(jnp.ones(3), jnp.array([-1.0, 0.0, 2.0])).tolist()
        [0.3679, 1.0, 1.0]
    """
    check_backward_input(grad_output, input)
    neg = alpha * jnp.exp(jnp.where(input > 0, jnp.zeros_like(input), input))
    return grad_output * jnp.where(input > 0, jnp.ones_like(input), neg)


def sigmoid(input: jax.Array) -> jax.Array:
    """Logistic sigmoid 1 / (1 + e^-x), elementwise.

    Computed by lax.logistic, exact in both tails (sigmoid(-1000) = 0, no overflow).

    Args:
        input: a floating array of any shape.

    Returns:
        Values in [0, 1], of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.sigmoid(jnp.array([-1.0, 0.0, 1.0])).tolist()
        [0.2689, 0.5, 0.7311]
    """
    check_floating("input", input)
    return lax.logistic(input)


def sigmoid_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """Gradient of `sigmoid` with respect to its input.

    s = 1/(1 + e^-x)  =>  ds/dx = e^-x / (1 + e^-x)^2 = s (1 - s).

    Args:
        grad_output: dL/ds, of the input's shape.
        input: the forward's input x.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.sigmoid_backward(jnp.ones(1), jnp.array([0.0])).tolist()
        [0.25]
    """
    check_backward_input(grad_output, input)
    s = lax.logistic(input)
    return grad_output * s * (1 - s)


def tanh(input: jax.Array) -> jax.Array:
    """Hyperbolic tangent, elementwise.

    Args:
        input: a floating array of any shape.

    Returns:
        tanh(input), in [-1, 1], of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.tanh(jnp.array([0.0, 1.0])).tolist()
        [0.0, 0.7616]
    """
    check_floating("input", input)
    return jnp.tanh(input)


def tanh_backward(grad_output: jax.Array, input: jax.Array) -> jax.Array:
    """Gradient of `tanh` with respect to its input.

    t = tanh x  =>  dt/dx = 1/cosh^2 x = 1 - t^2.

    Args:
        grad_output: dL/dt, of the input's shape.
        input: the forward's input x.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.tanh_backward(jnp.ones(2), jnp.array([0.0, 1.0])).tolist()
        [1.0, 0.42]
    """
    check_backward_input(grad_output, input)
    t = jnp.tanh(input)
    return grad_output * (1 - t * t)


def check_scaled_tanh(amplitude: float, slope: float) -> None:
    """The one check of scaled_tanh's A and S (finite Python numbers), for ``nn.ScaledTanh`` too."""
    for name, value in (("amplitude", amplitude), ("slope", slope)):
        if not is_real(value) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite Python number, got {value!r}")


def scaled_tanh(input: jax.Array, amplitude: float = 1.7159, slope: float = 2 / 3) -> jax.Array:
    """A·tanh(S·x), elementwise: LeCun et al. 1998's squashing function (ACT-9).

    With the defaults A = 1.7159 and S = 2/3 (the paper's Appendix A), f(±1) = ±1, the
    gain A·S ≈ 1.14 at 0 keeps unit-variance inputs near unit variance, and the second
    derivative peaks near ±1, where the targets lie.

    Args:
        input: a floating array of any shape.
        amplitude: A, the output's bound (default 1.7159).
        slope: S, the input's scale (default 2/3).

    Returns:
        A·tanh(S·input), of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.scaled_tanh(jnp.array([0.0, 1.0, -1.0])).round(4).tolist()
        [0.0, 1.0, -1.0]
    """
    check_floating("input", input)
    check_scaled_tanh(amplitude, slope)
    return amplitude * jnp.tanh(slope * input)


def scaled_tanh_backward(
    grad_output: jax.Array, input: jax.Array, amplitude: float = 1.7159, slope: float = 2 / 3
) -> jax.Array:
    """Gradient of `scaled_tanh` with respect to its input.

    y = A·t with t = tanh(S·x)  =>  dy/dx = A·S·(1 − t²) (the chain rule through S·x and
    tanh' = 1 − tanh²).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        amplitude: the forward's A (default 1.7159).
        slope: the forward's S (default 2/3).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.scaled_tanh_backward(jnp.ones(1), jnp.zeros(1)).round(4).tolist()
        [1.1439]
    """
    check_backward_input(grad_output, input)
    check_scaled_tanh(amplitude, slope)
    t = jnp.tanh(slope * input)
    return grad_output * (amplitude * slope) * (1 - t * t)


def softplus(input: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """Softplus (1/beta) log(1 + e^(beta x)), and exactly x where beta * x > threshold (ACT-5).

    log(1 + e^z) is computed as logaddexp(0, z) = max(z, 0) + log1p(e^-|z|), finite for any
    z, so a large threshold cannot overflow either.

    Args:
        input: a floating array of any shape.
        beta: the sharpness (default 1.0), a static Python number.
        threshold: above beta * x > threshold the output is x itself (default 20.0).

    Returns:
        Positive values of the input's shape and dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.softplus(jnp.array([-1.0, 0.0, 1.0, 30.0])).tolist()
        [0.3133, 0.6931, 1.3133, 30.0]
    """
    check_floating("input", input)
    z = beta * input
    return jnp.where(z > threshold, input, jnp.logaddexp(jnp.zeros_like(z), z) / beta)


def softplus_backward(
    grad_output: jax.Array, input: jax.Array, beta: float = 1.0, threshold: float = 20.0
) -> jax.Array:
    """Gradient of `softplus` with respect to its input.

    y = (1/beta) log(1 + e^(beta x))  =>  dy/dx = e^(beta x)/(1 + e^(beta x)) = sigmoid(beta x);
    where beta x > threshold, y = x and dy/dx = 1 (ACT-5).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        beta: the forward's beta (default 1.0).
        threshold: the forward's threshold (default 20.0).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.softplus_backward(jnp.ones(2), jnp.array([0.0, 30.0])).tolist()
        [0.5, 1.0]
    """
    check_backward_input(grad_output, input)
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
    """log sum_i e^(x_i) over `dim`, computed without overflow.

    The sum is shifted by the (gradient-free) max so e^1000 never forms. An infinite max (all
    -inf, or a +inf entry) is not subtracted, so -inf and +inf come out as in torch instead
    of NaN.

    Args:
        input: a floating array with at least one dimension.
        dim: the dim or tuple of dims to reduce (default -1, the last; torch has no default).
        keepdim: keep the reduced dims with size 1 (default False).

    Returns:
        The input's shape without `dim` (or with size 1 there when keepdim).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.logsumexp(jnp.array([[0.0, 0.0], [1.0, 1.0]]), dim=1).tolist()
        [0.6931, 1.6931]
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
    """Gradient of `logsumexp` with respect to its input.

    y = log sum_j e^(x_j)  =>  dy/dx_i = e^(x_i) / sum_j e^(x_j) = e^(x_i - y), the softmax
    over the reduced dims, so dL/dx = g (broadcast back over `dim`) * e^(x - y).

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input x.
        dim: the forward's dim(s) (default -1).
        keepdim: the forward's keepdim (default False).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.logsumexp_backward(jnp.array(1.0), jnp.array([0.0, 0.0])).tolist()
        [0.5, 0.5]
    """
    check_floating("input", input)
    d = _dims(dim, input)
    shape = tuple(jnp.shape(input))
    check_grad_shape(
        grad_output,
        tuple(1 if i in d else s for i, s in enumerate(shape))
        if keepdim
        else tuple(s for i, s in enumerate(shape) if i not in d),
    )
    g = grad_output if keepdim else jnp.expand_dims(grad_output, d)
    return g * jnp.exp(input - logsumexp(input, d, keepdim=True))


def softmax(input: jax.Array, dim: int = -1) -> jax.Array:
    """Softmax e^(x_i) / sum_j e^(x_j) over `dim` (ACT-6), after subtracting the max (stable).

    Args:
        input: a floating array with at least one dimension.
        dim: the dim to normalize over (default -1, the last).

    Returns:
        Probabilities summing to 1 along `dim`, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.softmax(jnp.array([1.0, 2.0, 3.0])).tolist()
        [0.09, 0.2447, 0.6652]
    """
    check_floating("input", input)
    d = _dim(dim, input)
    e = jnp.exp(input - lax.stop_gradient(jnp.max(input, axis=d, keepdims=True)))
    return e / jnp.sum(e, axis=d, keepdims=True)


def softmax_backward(grad_output: jax.Array, input: jax.Array, dim: int = -1) -> jax.Array:
    """Gradient of `softmax` with respect to its input.

    y = softmax(x)  =>  dy_i/dx_k = y_i (delta_ik - y_k), so
    dL/dx_k = sum_i g_i y_i (delta_ik - y_k) = y_k (g_k - sum_i g_i y_i).

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        dim: the forward's dim (default -1).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.softmax_backward(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0])).tolist()
        [0.25, -0.25]
    """
    check_backward_input(grad_output, input)
    d = _dim(dim, input)
    y = softmax(input, d)
    return y * (grad_output - jnp.sum(grad_output * y, axis=d, keepdims=True))


def log_softmax(input: jax.Array, dim: int = -1) -> jax.Array:
    """Log-softmax x - logsumexp(x) over `dim` (ACT-6), finite for logits of +-1000.

    Args:
        input: a floating array with at least one dimension.
        dim: the dim to normalize over (default -1, the last).

    Returns:
        Log-probabilities, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.log_softmax(jnp.array([0.0, 0.0])).tolist()
        [-0.6931, -0.6931]
    """
    check_floating("input", input)
    d = _dim(dim, input)
    return input - logsumexp(input, d, keepdim=True)


def log_softmax_backward(grad_output: jax.Array, input: jax.Array, dim: int = -1) -> jax.Array:
    """Gradient of `log_softmax` with respect to its input.

    y_i = x_i - logsumexp(x)  =>  dy_i/dx_k = delta_ik - softmax(x)_k, so
    dL/dx_k = g_k - softmax(x)_k * sum_i g_i.

    Args:
        grad_output: dL/dy, of the input's shape.
        input: the forward's input x.
        dim: the forward's dim (default -1).

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.log_softmax_backward(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0])).tolist()
        [0.5, -0.5]
    """
    check_backward_input(grad_output, input)
    d = _dim(dim, input)
    return grad_output - softmax(input, d) * jnp.sum(grad_output, axis=d, keepdims=True)


# ---------------------------------------------------------------- maxout


def check_pieces(pieces: int) -> None:
    """The one check of maxout's ``pieces`` (for ``maxout`` and ``nn.Maxout``): an int >= 1."""
    if not is_int(pieces):
        raise TypeError(f"pieces must be a Python int, got {pieces!r}")
    if pieces < 1:
        raise ValueError(f"pieces must be >= 1, got {pieces}")


def _maxout_split(input: jax.Array, pieces: int) -> tuple[jax.Array, jax.Array]:
    """Reshape (N, out*pieces, *rest) -> (N, out, pieces, *rest); return it and the first argmax."""
    check_floating("input", input)
    check_pieces(pieces)
    shape = tuple(jnp.shape(input))
    if len(shape) < 2:
        raise ValueError(f"maxout input must have a channel dim 1 (ndim >= 2), got shape {shape}")
    if shape[1] % pieces:
        raise ValueError(
            f"maxout channel dim 1 (size {shape[1]}) must be divisible by pieces={pieces}, "
            f"got input shape {shape}"
        )
    z = input.reshape((*shape[:1], shape[1] // pieces, pieces, *shape[2:]))
    # jnp.argmax returns the first maximal index: the tie rule of ACT-8.
    return z, jnp.argmax(z, axis=2, keepdims=True)


def maxout(input: jax.Array, pieces: int) -> jax.Array:
    """Maxout: the max over each group of `pieces` consecutive channels (ACT-8).

    y[:, j, ...] = max_i x[:, j*pieces + i, ...]. Gathered with take_along_axis at the first
    argmax, so jax.grad routes a tie's whole gradient to the first maximal piece (torch
    `x.max(dim)`), not split like jnp.max.

    Args:
        input: a floating array (N, out * pieces, *).
        pieces: the group size, a Python int >= 1 dividing dim 1.

    Returns:
        An array (N, out, *).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.maxout(jnp.array([[1.0, 5.0, 3.0, 2.0]]), pieces=2).tolist()
        [[5.0, 3.0]]
    """
    z, idx = _maxout_split(input, pieces)
    return jnp.squeeze(jnp.take_along_axis(z, idx, axis=2), axis=2)


def maxout_backward(grad_output: jax.Array, input: jax.Array, pieces: int) -> jax.Array:
    """Gradient of `maxout` with respect to its input.

    y_j = z_(j, i*(j)) with i*(j) the first argmax  =>  dy_j/dz_(j,i) = [i = i*(j)],
    so dL/dz_(j,i) = g_j [i = i*(j)], reshaped back to the input's channel layout.

    Args:
        grad_output: dL/dy, shape (N, out, *).
        input: the forward's input x, shape (N, out * pieces, *).
        pieces: the forward's group size.

    Returns:
        dL/dx, of the input's shape: g at each group's first maximum, 0 elsewhere.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[1.0, 5.0, 3.0, 2.0]])
        >>> F.maxout_backward(jnp.ones((1, 2)), x, pieces=2).tolist()
        [[0.0, 1.0, 1.0, 0.0]]
    """
    z, idx = _maxout_split(input, pieces)
    check_grad_shape(grad_output, z.shape[:2] + z.shape[3:])
    iota = lax.broadcasted_iota(idx.dtype, z.shape, 2)
    grad_z = jnp.where(iota == idx, jnp.expand_dims(grad_output, 2), jnp.zeros((), grad_output.dtype))
    return grad_z.reshape(jnp.shape(input))
