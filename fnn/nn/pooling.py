"""Pooling layers: MaxPool1d/2d, AvgPool1d/2d, AdaptiveAvgPool2d (POOL-1..POOL-6,
AVGPOOL-1..AVGPOOL-3, ADAPTIVE-1..ADAPTIVE-2).

No parameters and no state: ``init`` returns ``({}, {})``, ``train`` and ``key`` are ignored,
and the manual backward is the op's ``*_backward``. The constructors take torch's arguments,
in torch's order, and check them when the layer is built (the input's shape is checked at
the call); lists are stored as tuples so that a spec stays hashable.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnn import functional as F
from fnn.functional.pooling import IntOrTuple, adaptive_output_size, check_avg_options, pool_params
from fnn.nn.base import Elementwise

__all__ = ["AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d"]


def _freeze(layer, *names: str) -> None:
    for name in names:
        value = getattr(layer, name)
        if isinstance(value, list):
            object.__setattr__(layer, name, tuple(value))


@dataclass(frozen=True)
class _MaxPool(Elementwise):
    kernel_size: IntOrTuple
    stride: IntOrTuple | None = None
    padding: IntOrTuple = 0
    dilation: IntOrTuple = 1
    return_indices: bool = False
    ceil_mode: bool = False

    _n = 0

    def __post_init__(self):
        who = type(self).__name__
        _freeze(self, "kernel_size", "stride", "padding", "dilation")
        if self.return_indices is not False:
            raise ValueError(
                f"{who}: return_indices=True is not supported (fnn's max-pool returns the values "
                "only; the gradient's routing lives in max_pool*_backward)"
            )
        pool_params(who, self._n, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode


@dataclass(frozen=True)
class MaxPool1d(_MaxPool):
    """torch.nn.MaxPool1d: the max of each window along L (POOL-1..POOL-6).

    Input (N, C, L) or (C, L). Ties send the gradient to the window's first maximum, in
    the manual backward and in ``jax.grad`` alike.

    Args:
        kernel_size: the window length.
        stride: the step between windows (default None: kernel_size).
        padding: -inf padding on both sides, at most kernel_size // 2 (default 0).
        dilation: the spacing between a window's elements (default 1).
        return_indices: torch returns the argmax indices too when True; fnn supports only
            False (True raises a ValueError).
        ceil_mode: round the output length up instead of down (default False).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.MaxPool1d(2).apply({}, {}, jnp.array([[[1.0, 3.0, 2.0, 0.0]]]), train=False)
        >>> y.tolist()
        [[[3.0, 2.0]]]
    """

    _n = 1

    def _forward(self, x):
        return F.max_pool1d(x, *self._args())

    def _backward(self, x, g):
        return F.max_pool1d_backward(g, x, *self._args())


@dataclass(frozen=True)
class MaxPool2d(_MaxPool):
    """torch.nn.MaxPool2d: the max of each window (POOL-1..POOL-6).

    Input (N, C, H, W) or (C, H, W). Ties send the gradient to the window's first maximum
    in row-major order, in the manual backward and in ``jax.grad`` alike.

    Args:
        kernel_size: the window, an int or (kH, kW).
        stride: the step between windows (default None: kernel_size).
        padding: -inf padding on each side, at most kernel_size // 2 (default 0).
        dilation: the spacing between a window's elements (default 1).
        return_indices: torch returns the argmax indices too when True; fnn supports only
            False (True raises a ValueError).
        ceil_mode: round the output size up instead of down (default False).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> layer = nn.MaxPool2d(2)
        >>> y, _ = layer.apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4), train=False)
        >>> y.tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """

    _n = 2

    def _forward(self, x):
        return F.max_pool2d(x, *self._args())

    def _backward(self, x, g):
        return F.max_pool2d_backward(g, x, *self._args())


@dataclass(frozen=True)
class AvgPool1d(Elementwise):
    """torch.nn.AvgPool1d: the mean of each window along L (AVGPOOL-1, AVGPOOL-2).

    Input (N, C, L) or (C, L). torch's AvgPool1d has no divisor_override; nor has this one.

    Args:
        kernel_size: the window length.
        stride: the step between windows (default None: kernel_size).
        padding: zero padding on both sides, at most kernel_size // 2 (default 0).
        ceil_mode: round the output length up instead of down (default False).
        count_include_pad: count the padding in the divisor (default True).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.AvgPool1d(2).apply({}, {}, jnp.array([[[1.0, 3.0, 2.0, 0.0]]]), train=False)
        >>> y.tolist()
        [[[2.0, 1.0]]]
    """

    kernel_size: IntOrTuple
    stride: IntOrTuple | None = None
    padding: IntOrTuple = 0
    ceil_mode: bool = False
    count_include_pad: bool = True

    def __post_init__(self):
        _freeze(self, "kernel_size", "stride", "padding")
        pool_params("AvgPool1d", 1, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode)
        check_avg_options("AvgPool1d", self.count_include_pad, None)

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad

    def _forward(self, x):
        return F.avg_pool1d(x, *self._args())

    def _backward(self, x, g):
        return F.avg_pool1d_backward(g, x, *self._args())


@dataclass(frozen=True)
class AvgPool2d(Elementwise):
    """torch.nn.AvgPool2d: the mean of each window (AVGPOOL-1..AVGPOOL-3).

    Input (N, C, H, W) or (C, H, W).

    Args:
        kernel_size: the window, an int or (kH, kW).
        stride: the step between windows (default None: kernel_size).
        padding: zero padding on each side, at most kernel_size // 2 (default 0).
        ceil_mode: round the output size up instead of down (default False).
        count_include_pad: count the padding in the divisor (default True).
        divisor_override: a non-zero int that replaces every divisor (default None).

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.AvgPool2d(2).apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4), train=False)
        >>> y.tolist()
        [[[[2.5, 4.5], [10.5, 12.5]]]]
    """

    kernel_size: IntOrTuple
    stride: IntOrTuple | None = None
    padding: IntOrTuple = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    def __post_init__(self):
        _freeze(self, "kernel_size", "stride", "padding")
        pool_params("AvgPool2d", 2, self.kernel_size, self.stride, self.padding, 1, self.ceil_mode)
        check_avg_options("AvgPool2d", self.count_include_pad, self.divisor_override)

    def _args(self):
        return (
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def _forward(self, x):
        return F.avg_pool2d(x, *self._args())

    def _backward(self, x, g):
        return F.avg_pool2d_backward(g, x, *self._args())


@dataclass(frozen=True)
class AdaptiveAvgPool2d(Elementwise):
    """torch.nn.AdaptiveAvgPool2d: mean over windows chosen to give ``output_size`` (ADAPTIVE-1, -2).

    Input (N, C, H, W) or (C, H, W); output window i spans [floor(i·H/oH), ceil((i+1)·H/oH)).

    Args:
        output_size: (oH, oW) or one int for both; a None entry keeps that input size.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn
        >>> y, _ = nn.AdaptiveAvgPool2d(1).apply({}, {}, jnp.arange(16.0).reshape(1, 1, 4, 4), train=False)
        >>> y.tolist()
        [[[[7.5]]]]
    """

    output_size: int | tuple[int | None, int | None]

    def __post_init__(self):
        _freeze(self, "output_size")
        adaptive_output_size(self.output_size, (1, 1))  # the argument's checks; sizes come with the input

    def _forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def _backward(self, x, g):
        return F.adaptive_avg_pool2d_backward(g, x, self.output_size)
