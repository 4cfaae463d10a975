"""Initializers equal in distribution to torch.nn.init (INIT-1..5, LIN-1).

Every initializer is a pure function with one interchangeable signature,
`init(key, shape, <hyperparameters>, dtype=jnp.float32) -> array`. The deterministic ones
(`constant`, `zeros`, `ones`) accept and ignore `key`, which may be None, so any of them can
be passed where an initializer is expected. Random ones need a key (typed `jax.random.key`
or legacy `PRNGKey`) and a floating dtype; the same key gives the same values.

Fans follow PyTorch's (out, in, *kernel) layout (INIT-1): fan_in = shape[1]·receptive field,
fan_out = shape[0]·receptive field, receptive field = product of dims ≥ 2. The normals are
**untruncated**, as in torch; `jax.nn.initializers.{glorot,he,lecun}_normal` truncate at ±2σ
and assume an (in, out) layout (the JAX trap of 1.1), so they are not used here.
A zero-element shape gives an empty array (torch warns and leaves the tensor as is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fnn._checks import check_positive, is_concrete, is_int, is_real

__all__ = [
    "calculate_fans",
    "calculate_gain",
    "constant",
    "kaiming_normal",
    "kaiming_uniform",
    "normal",
    "ones",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Shape = int | Sequence[int]
_LINEAR = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def _shape(shape: Shape) -> tuple[int, ...]:
    dims = (shape,) if is_int(shape) else tuple(shape)
    if not all(is_int(d) and d >= 0 for d in dims):
        raise ValueError(f"shape must be an int or a sequence of non-negative ints, got {shape!r}")
    return dims


def _random_args(who: str, key: Any, shape: Shape, dtype: Any) -> tuple[int, ...]:
    if key is None:
        raise ValueError(f"{who} needs a PRNG key (key=jax.random.key(...)), got None")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{who}: dtype must be a floating dtype, got {jnp.dtype(dtype)}")
    return _shape(shape)


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain (INIT-2): linear/conv*/sigmoid 1, tanh 5/3, relu √2,
    leaky_relu √(2/(1+a²)) with a = param (0.01 when None), selu 3/4.

    Args:
        nonlinearity: 'linear', 'conv1d'..'conv_transpose3d', 'sigmoid', 'tanh', 'relu',
            'leaky_relu' or 'selu'.
        param: leaky_relu's negative slope (None means 0.01); ignored otherwise.

    Returns:
        The gain, a Python float.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> round(init.calculate_gain("relu"), 4), init.calculate_gain("tanh")
        (1.4142, 1.6666666666666667)
    """
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif is_real(param):
            slope = param
        else:
            raise ValueError(f"negative_slope {param!r} not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4  # torch's choice for self-normalizing networks
    raise ValueError(
        f"Unsupported nonlinearity {nonlinearity!r}; expected one of "
        f"{[*_LINEAR, 'tanh', 'relu', 'leaky_relu', 'selu']}"
    )


def calculate_fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) for a weight of shape (out, in, *kernel) (INIT-1).

    Args:
        shape: a weight shape with at least 2 dims.

    Returns:
        ``(fan_in, fan_out)``, Python ints.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> init.calculate_fans((10, 784)), init.calculate_fans((16, 3, 5, 5))
        ((784, 10), (75, 400))
    """
    dims = _shape(shape)
    if len(dims) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for a shape with fewer than "
            f"2 dimensions, got shape {dims}"
        )
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def constant(key: Any, shape: Shape, val: float, dtype: Any = jnp.float32) -> jax.Array:
    """Array filled with `val` (INIT-5); `key` is ignored and may be None.

    Args:
        key: ignored, may be None (the common initializer signature).
        shape: an int or a sequence of non-negative ints.
        val: the fill value.
        dtype: the dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> init.constant(None, (2,), 0.5).tolist()
        [0.5, 0.5]
    """
    return jnp.full(_shape(shape), val, dtype)


def zeros(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Array of zeros; `key` is ignored and may be None.

    Args:
        key: ignored, may be None (the common initializer signature).
        shape: an int or a sequence of non-negative ints.
        dtype: the dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> init.zeros(None, 3).tolist()
        [0.0, 0.0, 0.0]
    """
    return jnp.zeros(_shape(shape), dtype)


def ones(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Array of ones; `key` is ignored and may be None.

    Args:
        key: ignored, may be None (the common initializer signature).
        shape: an int or a sequence of non-negative ints.
        dtype: the dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> init.ones(None, (1, 2)).tolist()
        [[1.0, 1.0]]
    """
    return jnp.ones(_shape(shape), dtype)


def uniform(key: Any, shape: Shape, a: float = 0.0, b: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    """U(a, b) (jax draws from [a, b)).

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        a: the lower bound (default 0.0).
        b: the upper bound, >= a (default 1.0).
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> w = init.uniform(jax.random.key(0), (4, 2), -2.0, 2.0)
        >>> bool((w >= -2.0).all() & (w < 2.0).all()), w.dtype
        (True, dtype('float32'))
    """
    dims = _random_args("uniform", key, shape, dtype)
    if is_concrete(a) and is_concrete(b) and a > b:
        raise ValueError(f"uniform needs a <= b, got a={a} and b={b}")
    return jax.random.uniform(key, dims, dtype, minval=a, maxval=b)


def normal(
    key: Any, shape: Shape, mean: float = 0.0, std: float = 1.0, dtype: Any = jnp.float32
) -> jax.Array:
    """N(mean, std²), untruncated.

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        mean: the mean (default 0.0).
        std: the standard deviation, >= 0 (default 1.0).
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> init.normal(jax.random.key(0), (2, 3), mean=5.0, std=0.0).tolist()
        [[5.0, 5.0, 5.0], [5.0, 5.0, 5.0]]
    """
    dims = _random_args("normal", key, shape, dtype)
    if is_concrete(std):
        check_positive("std", std, strict=False)
    return (mean + std * jax.random.normal(key, dims, dtype)).astype(dtype)


def _xavier_std(dims: tuple[int, ...], gain: float) -> float:
    fan_in, fan_out = calculate_fans(dims)
    return gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0  # 0 only when empty


def xavier_uniform(key: Any, shape: Shape, gain: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    """U(−b, b), b = gain·√(6/(fan_in + fan_out)) (INIT-3).

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        gain: the scale (default 1.0), e.g. ``calculate_gain('tanh')``.
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> w = init.xavier_uniform(jax.random.key(0), (4, 2))  # b = √(6 / 6) = 1
        >>> w.shape, bool((jnp.abs(w) <= 1.0).all())
        ((4, 2), True)
    """
    dims = _random_args("xavier_uniform", key, shape, dtype)
    # torch's operation order (√3·std), so the bound is torch's to the last bit
    bound = math.sqrt(3.0) * _xavier_std(dims, gain)
    return jax.random.uniform(key, dims, dtype, minval=-bound, maxval=bound)


def xavier_normal(key: Any, shape: Shape, gain: float = 1.0, dtype: Any = jnp.float32) -> jax.Array:
    """N(0, σ²), σ = gain·√(2/(fan_in + fan_out)), untruncated (INIT-3).

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        gain: the scale (default 1.0).
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> w = init.xavier_normal(jax.random.key(0), (200, 200))  # σ = √(2 / 400) ≈ 0.0707
        >>> round(float(w.std()), 2)
        0.07
    """
    dims = _random_args("xavier_normal", key, shape, dtype)
    std = _xavier_std(dims, gain)
    return (std * jax.random.normal(key, dims, dtype)).astype(dtype)


def _kaiming_std(who: str, dims: tuple[int, ...], a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{who}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    gain = calculate_gain(nonlinearity, a)
    fan_in, fan_out = calculate_fans(dims)
    fan = fan_in if mode == "fan_in" else fan_out
    return gain / math.sqrt(fan) if fan else 0.0  # fan 0 only for an empty array


def kaiming_uniform(
    key: Any,
    shape: Shape,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: Any = jnp.float32,
) -> jax.Array:
    """U(−b, b), b = gain·√(3/fan), gain = calculate_gain(nonlinearity, a) (INIT-4).

    The defaults give gain √2; `a=math.sqrt(5)` is torch's Linear weight init, b = 1/√in (LIN-1).

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        a: leaky_relu's negative slope for the gain (default 0).
        mode: 'fan_in' (default; preserves the forward variance) or 'fan_out' (the backward's).
        nonlinearity: the name given to ``calculate_gain`` (default 'leaky_relu').
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> import math
        >>> w = init.kaiming_uniform(jax.random.key(0), (4, 2), a=math.sqrt(5))  # b = 1/√2
        >>> bool((jnp.abs(w) <= 0.7072).all())
        True
    """
    dims = _random_args("kaiming_uniform", key, shape, dtype)
    bound = math.sqrt(3.0) * _kaiming_std("kaiming_uniform", dims, a, mode, nonlinearity)
    return jax.random.uniform(key, dims, dtype, minval=-bound, maxval=bound)


def kaiming_normal(
    key: Any,
    shape: Shape,
    a: float = 0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    dtype: Any = jnp.float32,
) -> jax.Array:
    """N(0, σ²), σ = gain/√fan, untruncated (INIT-4).

    Args:
        key: a JAX PRNG key (``jax.random.key`` or a legacy ``PRNGKey``).
        shape: an int or a sequence of non-negative ints.
        a: leaky_relu's negative slope for the gain (default 0).
        mode: 'fan_in' (default) or 'fan_out'.
        nonlinearity: the name given to ``calculate_gain`` (default 'leaky_relu').
        dtype: a floating dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import init
        >>> w = init.kaiming_normal(jax.random.key(0), (200, 200), nonlinearity="relu")  # σ = √2/√200 = 0.1
        >>> round(float(w.std()), 2)
        0.1
    """
    dims = _random_args("kaiming_normal", key, shape, dtype)
    std = _kaiming_std("kaiming_normal", dims, a, mode, nonlinearity)
    return (std * jax.random.normal(key, dims, dtype)).astype(dtype)
