"""Activation layers: thin specs over fnn.functional, torch.nn names and defaults.

Only PReLU has parameters (``weight`` of shape (num_parameters,), init 0.25, ACT-3), and
so only PReLU takes torch's ``dtype=`` (DTYPE-1): the others, Maxout included, have no
arrays of their own and compute in their input's dtype.
Softmax and LogSoftmax default to ``dim=-1`` (torch's ``dim=None`` is a deprecated
implicit choice; fnn makes it explicit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp

from fnn import functional as F
from fnn._checks import check_int
from fnn.functional.activations import check_pieces, check_scaled_tanh
from fnn.nn.base import Elementwise, Layer, canonical_dtype, check_input_dtype, require_dtype_available

__all__ = [
    "ELU",
    "Abs",
    "LeakyReLU",
    "LogSoftmax",
    "Maxout",
    "PReLU",
    "ReLU",
    "ScaledTanh",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
]


@dataclass(frozen=True)
class ReLU(Elementwise):
    """torch.nn.ReLU: max(0, x) elementwise, gradient 0 at 0 (ACT-1).

    No arguments, no params or state; ``apply`` returns ``(y, state)`` with y of x's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.ReLU().apply({}, {}, jnp.array([-1.0, 0.0, 2.0]), train=False)
        >>> y.round(4).tolist()
        [0.0, 0.0, 2.0]
    """

    def _forward(self, x):
        return F.relu(x)

    def _backward(self, x, g):
        return F.relu_backward(g, x)


@dataclass(frozen=True)
class LeakyReLU(Elementwise):
    """torch.nn.LeakyReLU: x if x > 0 else negative_slope·x, slope at 0 (ACT-2).

    Args:
        negative_slope: the slope for x <= 0 (default 0.01).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.LeakyReLU(0.1).apply({}, {}, jnp.array([-2.0, 0.0, 3.0]), train=False)
        >>> y.round(4).tolist()
        [-0.2, 0.0, 3.0]
    """

    negative_slope: float = 0.01

    def _forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _backward(self, x, g):
        return F.leaky_relu_backward(g, x, self.negative_slope)


@dataclass(frozen=True)
class ELU(Elementwise):
    """torch.nn.ELU: x if x > 0 else alpha·(exp(x) − 1); gradient alpha at 0 (ACT-4).

    Args:
        alpha: the scale of the negative part (default 1.0).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.ELU().apply({}, {}, jnp.array([-1.0, 0.0, 2.0]), train=False)
        >>> y.round(4).tolist()
        [-0.6321, 0.0, 2.0]
    """

    alpha: float = 1.0

    def _forward(self, x):
        return F.elu(x, self.alpha)

    def _backward(self, x, g):
        return F.elu_backward(g, x, self.alpha)


@dataclass(frozen=True)
class Sigmoid(Elementwise):
    """torch.nn.Sigmoid: 1 / (1 + exp(−x)), stable at ±1000.

    No arguments, no params or state.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Sigmoid().apply({}, {}, jnp.array([0.0, 2.0]), train=False)
        >>> y.round(4).tolist()
        [0.5, 0.8808]
    """

    def _forward(self, x):
        return F.sigmoid(x)

    def _backward(self, x, g):
        return F.sigmoid_backward(g, x)


@dataclass(frozen=True)
class Tanh(Elementwise):
    """torch.nn.Tanh: tanh(x) elementwise.

    No arguments, no params or state.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Tanh().apply({}, {}, jnp.array([0.0, 1.0]), train=False)
        >>> y.round(4).tolist()
        [0.0, 0.7616]
    """

    def _forward(self, x):
        return F.tanh(x)

    def _backward(self, x, g):
        return F.tanh_backward(g, x)


@dataclass(frozen=True)
class ScaledTanh(Elementwise):
    """A·tanh(S·x) elementwise, LeCun et al. 1998's squashing function (ACT-9); torch.nn has
    none. The defaults A = 1.7159, S = 2/3 give f(±1) = ±1.

    Args:
        amplitude: A, the output's bound (default 1.7159).
        slope: S, the input's scale (default 2/3).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.ScaledTanh().apply({}, {}, jnp.array([0.0, 1.0, 10.0]), train=False)
        >>> y.round(4).tolist()
        [0.0, 1.0, 1.7159]
    """

    amplitude: float = 1.7159
    slope: float = 2 / 3

    def __post_init__(self):
        check_scaled_tanh(self.amplitude, self.slope)  # the same messages as F.scaled_tanh

    def _forward(self, x):
        return F.scaled_tanh(x, self.amplitude, self.slope)

    def _backward(self, x, g):
        return F.scaled_tanh_backward(g, x, self.amplitude, self.slope)


@dataclass(frozen=True)
class Softplus(Elementwise):
    """torch.nn.Softplus: log(1 + exp(β·x)) / β, and x itself where β·x > threshold (ACT-5).

    Args:
        beta: β (default 1.0).
        threshold: above β·x > threshold the output is x exactly (default 20.0).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Softplus().apply({}, {}, jnp.array([0.0, 30.0]), train=False)
        >>> y.round(4).tolist()
        [0.6931, 30.0]
    """

    beta: float = 1.0
    threshold: float = 20.0

    def _forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def _backward(self, x, g):
        return F.softplus_backward(g, x, self.beta, self.threshold)


@dataclass(frozen=True)
class Softmax(Elementwise):
    """torch.nn.Softmax over ``dim``: exp(x) / Σ exp(x), stable for large logits.

    Args:
        dim: the axis to normalise over (default -1; torch's implicit ``dim=None`` is not offered).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Softmax().apply({}, {}, jnp.array([[0.0, 0.0], [0.0, 1000.0]]), train=False)
        >>> y.round(4).tolist()
        [[0.5, 0.5], [0.0, 1.0]]
    """

    dim: int = -1

    def _forward(self, x):
        return F.softmax(x, self.dim)

    def _backward(self, x, g):
        return F.softmax_backward(g, x, self.dim)


@dataclass(frozen=True)
class LogSoftmax(Elementwise):
    """torch.nn.LogSoftmax over ``dim``: x − logsumexp(x), stable for large logits.

    Args:
        dim: the axis to normalise over (default -1).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.LogSoftmax().apply({}, {}, jnp.array([0.0, 0.0]), train=False)
        >>> y.round(4).tolist()
        [-0.6931, -0.6931]
    """

    dim: int = -1

    def _forward(self, x):
        return F.log_softmax(x, self.dim)

    def _backward(self, x, g):
        return F.log_softmax_backward(g, x, self.dim)


@dataclass(frozen=True)
class Abs(Elementwise):
    """|x| elementwise, gradient 0 at 0 (ACT-7).

    No arguments, no params or state.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Abs().apply({}, {}, jnp.array([-1.5, 0.0, 2.0]), train=False)
        >>> y.round(4).tolist()
        [1.5, 0.0, 2.0]
    """

    def _forward(self, x):
        return F.abs(x)

    def _backward(self, x, g):
        return F.abs_backward(g, x)


@dataclass(frozen=True)
class Maxout(Elementwise):
    """Channel dim 1 of size out·pieces is grouped into `pieces` contiguous candidates (ACT-8).

    Output channel j is the max of input channels j·pieces .. (j + 1)·pieces − 1, so
    (N, out·pieces, ...) becomes (N, out, ...); ties send the gradient to the first maximum.

    Args:
        pieces: candidates per output channel, a positive int that divides dim 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.Maxout(2).apply({}, {}, jnp.array([[1.0, 3.0, -1.0, -2.0]]), train=False)
        >>> y.round(4).tolist()
        [[3.0, -1.0]]
    """

    pieces: int

    def __post_init__(self):
        check_pieces(self.pieces)  # the same messages as F.maxout

    def _forward(self, x):
        return F.maxout(x, self.pieces)

    def _backward(self, x, g):
        return F.maxout_backward(g, x, self.pieces)


@dataclass(frozen=True)
class PReLU(Layer):
    """torch.nn.PReLU: x if x > 0 else a·x, with a learned slope a per channel on dim 1 (ACT-3).

    Params: ``weight`` of shape (num_parameters,), filled with ``init_value``; no state.
    torch's ``init`` argument is named ``init_value`` here: ``init`` is the method.

    Args:
        num_parameters: 1 (one slope shared by all channels) or C, the input's dim 1 (default 1).
        init_value: the slopes' initial value (default 0.25).
        dtype: torch's factory keyword, keyword-only (DTYPE-1): the weight's dtype, one of
            ``'float32'`` (default), ``'float64'``, ``'bfloat16'``, ``'float16'`` or the
            matching numpy/jax dtype; an input of another dtype raises (DTYPE-2).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> layer = nn.PReLU()
        >>> params, state = layer.init(jax.random.key(0))
        >>> params["weight"].tolist()
        [0.25]
        >>> y, _ = layer.apply(params, state, jnp.array([[-2.0, 4.0]]), train=False)
        >>> y.tolist()
        [[-0.5, 4.0]]
    """

    num_parameters: int = 1
    init_value: float = 0.25
    dtype: str = field(default="float32", kw_only=True)

    def __post_init__(self):
        object.__setattr__(
            self, "num_parameters", check_int("num_parameters", self.num_parameters, minimum=1)
        )
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, "PReLU"))

    def init(self, key):
        require_dtype_available(self.dtype, "PReLU")
        return {"weight": jnp.full((self.num_parameters,), self.init_value, self.dtype)}, {}

    def apply(self, params, state, x, *, key=None, train):
        check_input_dtype("PReLU", x, params)
        return F.prelu(x, params["weight"]), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        y, new_state = self.apply(params, state, x, key=key, train=train)

        def pullback(grad_y):
            grad_x, grad_w = F.prelu_backward(grad_y, x, params["weight"])
            return {"weight": grad_w}, grad_x

        return y, new_state, pullback
