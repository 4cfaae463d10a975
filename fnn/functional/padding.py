"""torch.nn.functional.pad's four modes, with a hand-derived backward.

Contract (docs/semantics.md, rules PAD-1..PAD-3):
- `pad(input, pad, mode='constant', value=0.0)`: `pad` lists (left, right) pairs from the
  last dim backwards, as torch: (1, 2) pads the last dim, (1, 2, 3, 4) the last two.
- 'constant' (PAD-1): any number of dims (len(pad) <= 2·ndim); a negative entry crops
  that side; the result may not be negative in size.
- 'reflect', 'replicate', 'circular' (PAD-2) pad the last 1, 2 or 3 dims of an input with
  one or two more dims (a batch and/or channel dim), as torch requires; `value` must be 0.
  Output position u (in the input's coordinates) reads input index
  reflect: |u| mirrored at L−1 (each pad < L), replicate: clamp(u, 0, L−1),
  circular: the input cropped first by any negative pad, then wrapped (each pad <= L and
  at most the cropped length). A negative reflect/replicate pad crops the padded result.
- `pad_backward` (PAD-3): constant mode slices the padding back off; the others add each
  output's gradient onto the input element it was read from.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn._checks import check_floating, check_grad_shape, is_int, is_real

__all__ = ["pad", "pad_backward"]

MODES = ("constant", "reflect", "replicate", "circular")


def _pairs(input: jax.Array, pad: Sequence[int], mode: str, value: float) -> list[tuple[int, int, int]]:
    """Check pad's arguments; return (axis, left, right) for each padded dim."""
    check_floating("input", input)
    if mode not in MODES:
        raise ValueError(f"pad: mode must be one of {MODES}, got {mode!r}")
    if not isinstance(pad, Sequence) or isinstance(pad, str) or not all(is_int(p) for p in pad):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if len(pad) % 2:
        raise ValueError(f"pad: pad's length must be even ((left, right) pairs), got {pad!r}")
    ndim, k = jnp.ndim(input), len(pad) // 2
    if k > ndim:
        raise ValueError(
            f"pad: pad {pad!r} pads {k} dims, more than the input's {ndim} (shape {jnp.shape(input)})"
        )
    if mode != "constant":
        if k not in (1, 2, 3) or ndim not in (k + 1, k + 2):
            raise ValueError(
                f"pad: mode {mode!r} with a pad of length {len(pad)} needs a {k + 1}-D or {k + 2}-D input, "
                f"got shape {tuple(jnp.shape(input))}"
            )
        if not is_real(value) or value != 0:
            raise ValueError(f"pad: mode {mode!r} takes no fill value, got value={value!r}")
    triples = [(ndim - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])) for i in range(k)]
    for axis, lo, hi in triples:
        size = jnp.shape(input)[axis]
        _check_sizes(mode, size, lo, hi, axis, input)
    return triples


def _check_sizes(mode: str, size: int, lo: int, hi: int, axis: int, input: jax.Array) -> None:
    where = f"padding ({lo}, {hi}) of dim {axis} of input {tuple(jnp.shape(input))}"
    if mode == "reflect" and (lo >= size or hi >= size):
        raise ValueError(f"pad: reflect padding must be less than the dim's size, got {where}")
    if mode == "circular":
        kept = size - max(-lo, 0) - max(-hi, 0)
        if lo > min(size, kept) or hi > min(size, kept):
            raise ValueError(f"pad: circular padding may wrap around at most once, got {where}")
    if size + lo + hi < (0 if mode == "constant" else 1):  # torch: "input is too small"
        raise ValueError(f"pad: the padded size would be {size + lo + hi}, got {where}")


def _source(mode: str, size: int, lo: int, hi: int) -> np.ndarray:
    """For each output position along one dim, the input index it reads (PAD-2)."""
    u = np.arange(-lo, size + hi)  # output positions in the input's coordinates
    if mode == "reflect":
        u = np.abs(u)
        return np.where(u > size - 1, 2 * (size - 1) - u, u)
    if mode == "replicate":
        return np.clip(u, 0, size - 1)
    start, stop = max(-lo, 0), size - max(-hi, 0)  # circular: crop first, then wrap
    return start + (u - start) % max(stop - start, 1)


def pad(input: jax.Array, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> jax.Array:
    """Pad (or crop, with negative entries) the last dims of `input`, as torch's F.pad.

    Args:
        input: a floating array.
        pad: (left, right) pairs, the last dim's first: (l, r) or (l_w, r_w, l_h, r_h), ...
        mode: 'constant' (PAD-1), 'reflect', 'replicate' or 'circular' (PAD-2).
        value: the fill value of 'constant' mode (must be 0 for the others).

    Returns:
        The padded array.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.array([[[0.0, 1.0, 2.0, 3.0]]])
        >>> F.pad(x, (2, 1), mode="reflect")[0, 0].tolist()
        [2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0]
        >>> F.pad(x, (2, 1), mode="circular")[0, 0].tolist()
        [2.0, 3.0, 0.0, 1.0, 2.0, 3.0, 0.0]
    """
    triples = _pairs(input, pad, mode, value)
    if mode == "constant":
        config = [(0, 0, 0)] * jnp.ndim(input)
        for axis, lo, hi in triples:
            config[axis] = (lo, hi, 0)
        return lax.pad(input, jnp.asarray(value, input.dtype), config)
    y = input
    for axis, lo, hi in triples:
        y = jnp.take(y, _source(mode, y.shape[axis], lo, hi), axis=axis)
    return y


def pad_backward(
    grad_output: jax.Array, input: jax.Array, pad: Sequence[int], mode: str = "constant"
) -> jax.Array:
    """Gradient of `pad` with respect to its input (PAD-3).

    Every mode copies: y[j] = x[s(j)] along each padded dim, with s the source map of
    PAD-2 (constant mode: s is the identity shifted by the left pad, and fill positions
    read no input). So dL/dx[i] = Σ_{j : s(j) = i} g[j]:
    - constant: g with the padding sliced off (a cropped side's gradient is 0), which is
      lax.pad of g by the negated pads;
    - reflect / replicate / circular: each g[j] is added onto x[s(j)]; an edge or mirrored
      element collects its own gradient plus those of its copies. The map is separable
      (one gather per padded dim), so each dim is folded back on its own.

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input.
        pad: the forward's pad.
        mode: the forward's mode.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.zeros((1, 1, 4))
        >>> F.pad_backward(jnp.ones((1, 1, 7)), x, (2, 1), mode="reflect")[0, 0].tolist()
        [1.0, 2.0, 3.0, 1.0]
    """
    triples = _pairs(input, pad, mode, 0.0)
    out_shape = list(jnp.shape(input))
    for axis, lo, hi in triples:
        out_shape[axis] += lo + hi
    check_grad_shape(grad_output, tuple(out_shape))
    if mode == "constant":
        config = [(0, 0, 0)] * jnp.ndim(input)
        for axis, lo, hi in triples:
            config[axis] = (-lo, -hi, 0)
        return lax.pad(grad_output, jnp.asarray(0, grad_output.dtype), config)
    g = grad_output
    for axis, lo, hi in triples:
        size = jnp.shape(input)[axis]
        moved = jnp.moveaxis(g, axis, -1)
        folded = jnp.zeros((*moved.shape[:-1], size), g.dtype).at[..., _source(mode, size, lo, hi)].add(moved)
        g = jnp.moveaxis(folded, -1, axis)
    return g
