"""Conv1d and Conv2d layers: torch.nn.Conv1d/Conv2d's arguments, init and padding modes.

Params: ``weight`` (out_channels, in_channels/groups, *kernel_size) and, with ``bias``,
``bias`` (out_channels,); no state, so a torch module's ``state_dict`` loads unchanged.
Init (CONV-7): weight kaiming_uniform(a=√5), i.e. U(±1/√fan_in) with fan_in =
in_channels/groups · prod(kernel_size); bias U(±1/√fan_in).

``padding_mode`` (CONV-8): 'zeros' lets the convolution pad; 'reflect', 'replicate' and
'circular' pad the input with ``F.pad`` first (the (left, right) pairs of ``padding``, or
of 'same') and convolve with padding 0, as torch does. The backward runs the same two steps
in reverse: ``conv*_backward``, then ``pad_backward``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax

from fnn import functional as F
from fnn import init as initializers
from fnn._checks import check_int
from fnn.functional.conv import _padding_pairs, _tuple
from fnn.nn.base import Layer, canonical_dtype, check_input_dtype, require_dtype_available

__all__ = ["Conv1d", "Conv2d"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@dataclass(frozen=True)
class _ConvNd(Layer):
    """The shared body of Conv1d and Conv2d; ``_n`` is the number of spatial dims."""

    in_channels: int
    out_channels: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] | str = 0
    dilation: int | Sequence[int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"
    dtype: str = field(default="float32", kw_only=True)

    _n = 0

    def __post_init__(self):
        name, n = type(self).__name__, self._n
        for arg in ("in_channels", "out_channels"):
            object.__setattr__(self, arg, check_int(arg, getattr(self, arg), minimum=1))
        object.__setattr__(self, "groups", check_int("groups", self.groups, minimum=1))
        for arg in ("kernel_size", "stride", "dilation"):  # hashable tuples, each >= 1
            value = _tuple(arg, getattr(self, arg), n, name)
            if any(v < 1 for v in value):
                raise ValueError(f"{name}: {arg} must be positive, got {getattr(self, arg)!r}")
            object.__setattr__(self, arg, value)
        if not isinstance(self.padding, str):
            object.__setattr__(self, "padding", _tuple("padding", self.padding, n, name))
        _padding_pairs(self.padding, self.kernel_size, self.stride, self.dilation, name)  # CONV-5
        for arg in ("in_channels", "out_channels"):
            if getattr(self, arg) % self.groups:
                raise ValueError(
                    f"{name}: {arg}={getattr(self, arg)} must be divisible by groups={self.groups}"
                )
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}"
            )
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, name))

    def init(self, key):
        require_dtype_available(self.dtype, type(self).__name__)
        k_w, k_b = jax.random.split(key)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        params = {"weight": initializers.kaiming_uniform(k_w, shape, a=math.sqrt(5), dtype=self.dtype)}
        if self.bias:
            bound = 1 / math.sqrt(math.prod(shape[1:]))
            params["bias"] = initializers.uniform(k_b, (self.out_channels,), -bound, bound, self.dtype)
        return params, {}

    def _pad(self) -> tuple[int, ...]:
        """F.pad's flat (left, right) list, last dim first, for a non-'zeros' padding_mode."""
        pairs = _padding_pairs(
            self.padding, self.kernel_size, self.stride, self.dilation, type(self).__name__
        )
        return tuple(p for pair in reversed(pairs) for p in pair)

    def _conv_kwargs(self) -> dict:
        padding = self.padding if self.padding_mode == "zeros" else 0
        return {"stride": self.stride, "padding": padding, "dilation": self.dilation, "groups": self.groups}

    def apply(self, params, state, x, *, key=None, train):
        y, _ = self._forward(params, x)
        return y, state

    def _forward(self, params, x):
        check_input_dtype(type(self).__name__, x, params)
        padded = x if self.padding_mode == "zeros" else F.pad(x, self._pad(), mode=self.padding_mode)
        conv = F.conv1d if self._n == 1 else F.conv2d
        return conv(padded, params["weight"], params.get("bias"), **self._conv_kwargs()), padded

    def apply_vjp(self, params, state, x, *, key=None, train):
        y, padded = self._forward(params, x)
        conv_backward = F.conv1d_backward if self._n == 1 else F.conv2d_backward

        def pullback(grad_y):
            grad_x, grad_w, grad_b = conv_backward(
                grad_y, padded, params["weight"], params.get("bias"), **self._conv_kwargs()
            )
            if self.padding_mode != "zeros":
                grad_x = F.pad_backward(grad_x, x, self._pad(), mode=self.padding_mode)
            grads = {"weight": grad_w}
            if self.bias:
                grads["bias"] = grad_b
            return grads, grad_x

        return y, state, pullback


@dataclass(frozen=True)
class Conv1d(_ConvNd):
    """torch.nn.Conv1d: y = conv1d(x, W, b) over (N, C_in, L) or unbatched (C_in, L) input.

    Args:
        in_channels, out_channels: channel counts, each divisible by ``groups``.
        kernel_size, stride, dilation: an int or a 1-tuple, each >= 1 (stored as tuples).
        padding: an int, a 1-tuple, 'valid' or 'same' ('same' only with stride 1, CONV-2).
        groups: channel groups (default 1). bias: learn a bias (default True).
        padding_mode: 'zeros' (default), 'reflect', 'replicate' or 'circular' (CONV-8).
        dtype: the parameters' dtype, keyword-only (DTYPE-1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> layer = nn.Conv1d(2, 4, 3, padding="same")
        >>> params, state = layer.init(jax.random.key(0))
        >>> layer.apply(params, state, jnp.ones((5, 2, 7)), train=False)[0].shape
        (5, 4, 7)
    """

    _n = 1


@dataclass(frozen=True)
class Conv2d(_ConvNd):
    """torch.nn.Conv2d: y = conv2d(x, W, b) over (N, C_in, H, W) or unbatched (C_in, H, W).

    Args:
        in_channels, out_channels: channel counts, each divisible by ``groups``.
        kernel_size, stride, dilation: an int or a pair, each >= 1 (stored as pairs).
        padding: an int, a pair, 'valid' or 'same' ('same' only with stride 1, CONV-2).
        groups: channel groups (default 1). bias: learn a bias (default True).
        padding_mode: 'zeros' (default), 'reflect', 'replicate' or 'circular' (CONV-8).
        dtype: the parameters' dtype, keyword-only (DTYPE-1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> layer = nn.Conv2d(1, 6, 5, padding=2)
        >>> params, state = layer.init(jax.random.key(0))
        >>> params["weight"].shape, layer.apply(params, state, jnp.ones((3, 1, 28, 28)), train=False)[0].shape
        ((6, 1, 5, 5), (3, 6, 28, 28))
    """

    _n = 2
