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
from fnn.nn.base import Elementwise, Layer, canonical_dtype, check_input_dtype, require_dtype_available


@dataclass(frozen=True)
class ReLU(Elementwise):
    def _forward(self, x):
        return F.relu(x)

    def _backward(self, x, g):
        return F.relu_backward(g, x)


@dataclass(frozen=True)
class LeakyReLU(Elementwise):
    negative_slope: float = 0.01

    def _forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _backward(self, x, g):
        return F.leaky_relu_backward(g, x, self.negative_slope)


@dataclass(frozen=True)
class ELU(Elementwise):
    alpha: float = 1.0

    def _forward(self, x):
        return F.elu(x, self.alpha)

    def _backward(self, x, g):
        return F.elu_backward(g, x, self.alpha)


@dataclass(frozen=True)
class Sigmoid(Elementwise):
    def _forward(self, x):
        return F.sigmoid(x)

    def _backward(self, x, g):
        return F.sigmoid_backward(g, x)


@dataclass(frozen=True)
class Tanh(Elementwise):
    def _forward(self, x):
        return F.tanh(x)

    def _backward(self, x, g):
        return F.tanh_backward(g, x)


@dataclass(frozen=True)
class Softplus(Elementwise):
    beta: float = 1.0
    threshold: float = 20.0

    def _forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def _backward(self, x, g):
        return F.softplus_backward(g, x, self.beta, self.threshold)


@dataclass(frozen=True)
class Softmax(Elementwise):
    dim: int = -1

    def _forward(self, x):
        return F.softmax(x, self.dim)

    def _backward(self, x, g):
        return F.softmax_backward(g, x, self.dim)


@dataclass(frozen=True)
class LogSoftmax(Elementwise):
    dim: int = -1

    def _forward(self, x):
        return F.log_softmax(x, self.dim)

    def _backward(self, x, g):
        return F.log_softmax_backward(g, x, self.dim)


@dataclass(frozen=True)
class Abs(Elementwise):
    def _forward(self, x):
        return F.abs(x)

    def _backward(self, x, g):
        return F.abs_backward(g, x)


@dataclass(frozen=True)
class Maxout(Elementwise):
    """Channel dim 1 of size out·pieces is grouped into `pieces` contiguous candidates (ACT-8)."""

    pieces: int

    def _forward(self, x):
        return F.maxout(x, self.pieces)

    def _backward(self, x, g):
        return F.maxout_backward(g, x, self.pieces)


@dataclass(frozen=True)
class PReLU(Layer):
    """torch's PReLU(num_parameters=1, init=0.25): weight (num_parameters,), per channel on
    dim 1. torch's ``init`` argument is named ``init_value`` here: ``init`` is the method.
    ``dtype`` is torch's factory keyword, keyword-only (DTYPE-1): the weight's dtype, one of
    ``'float32'`` (default), ``'float64'``, ``'bfloat16'``, ``'float16'``; an input of
    another dtype raises (DTYPE-2)."""

    num_parameters: int = 1
    init_value: float = 0.25
    dtype: str = field(default="float32", kw_only=True)

    def __post_init__(self):
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, "PReLU"))

    def init(self, key):
        if self.num_parameters < 1:
            raise ValueError(f"num_parameters must be >= 1, got {self.num_parameters}")
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
