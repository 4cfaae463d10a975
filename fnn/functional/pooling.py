"""Max, average and adaptive-average pooling with PyTorch semantics and hand-derived backwards.

Contract (docs/semantics.md, rules POOL-1..POOL-6, AVGPOOL-1..AVGPOOL-3, ADAPTIVE-1..ADAPTIVE-2):
- Layout NCL / NCHW; an unbatched (C, L) or (C, H, W) input is accepted as torch does, and
  any other rank is refused (POOL-1). Spatial and channel sizes must be non-zero; N may be 0.
- `kernel_size`, `stride`, `padding`, `dilation` are ints or tuples (one entry per spatial
  dim, or one entry for all); `stride=None` means the kernel size (POOL-2). Kernel, stride
  and dilation are >= 1, padding is >= 0 and at most kernel_size // 2 (POOL-3).
- Output size (POOL-4): floor((L + 2p - d(k-1) - 1) / s) + 1, or with ceil_mode the ceiling,
  minus one when the last window would start in the right padding. Fewer than 1 is an error.
- max-pool pads with -inf; the gradient of each window goes to its first maximal element
  in row-major window order, padding never (POOL-5), or to the last NaN when the window
  holds one (POOL-6). `jax.grad` of the forward follows the same rule through a custom_jvp
  whose tangent rule is linear in the tangent, so forward mode and HVPs work too.
  Overlapping windows add their gradients.
- avg-pool divides by the window's part inside input + padding (AVGPOOL-1), by the real
  elements only with count_include_pad=False (AVGPOOL-2), or by divisor_override (AVGPOOL-3).
- adaptive_avg_pool2d: output i averages [floor(i·L/out), ceil((i+1)·L/out)) (ADAPTIVE-1);
  a None entry of output_size keeps that input size (ADAPTIVE-2).

Backward convention: `op_backward(grad_output, input, <op's arguments>)` -> dL/d(input).
Max-pool's choice and routing run through fnn._fast.pooling (the same values, faster).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnn._checks import check_floating, check_grad_shape, is_int
from fnn._fast import pooling as fast

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "avg_pool1d",
    "avg_pool1d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "max_pool1d",
    "max_pool1d_backward",
    "max_pool2d",
    "max_pool2d_backward",
]

IntOrTuple = int | Sequence[int]


class Geometry(NamedTuple):
    """The static shape of one pooling call: per spatial dim, input size L, kernel k, stride
    s, padding p, dilation d and output size out. Hashable, so it can be a static argument."""

    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out: tuple[int, ...]

    def dims(self) -> list[tuple[int, int, int, int, int, int]]:
        """Per spatial dim: (size, kernel, stride, padding, dilation, out)."""
        return list(
            zip(self.size, self.kernel, self.stride, self.padding, self.dilation, self.out, strict=True)
        )

    def offsets(self) -> list[tuple[int, ...]]:
        """The kernel's taps in row-major order: torch's order for ties (POOL-5)."""
        return list(itertools.product(*(range(k) for k in self.kernel)))

    def _phase(self, offset: tuple[int, ...]) -> list[tuple[int, int]]:
        """Per dim, for tap `offset`: window i reads input position first + i·s, first = o·d - p,
        which is element q0 + i of phase r of the input, with r = first mod s, q0 = first // s."""
        return [
            ((o * d - p) % s, (o * d - p) // s)
            for (_, _, s, p, d, _), o in zip(self.dims(), offset, strict=True)
        ]

    def _phases(self) -> tuple[int, ...]:
        """Per dim, the length of one phase: ceil(size / stride)."""
        return tuple(-(-size // s) for size, s in zip(self.size, self.stride, strict=True))

    def split(self, x: jax.Array, fill: float) -> jax.Array:
        """(N, C, *size) -> (N, C, P1, s1, P2, s2, ...): element [q, r] along a dim is input
        position q·s + r (the stride's phases side by side), `fill` past the input's end."""
        edges = [
            (0, n * s - size, 0) for n, s, size in zip(self._phases(), self.stride, self.size, strict=True)
        ]
        padded = lax.pad(x, jnp.asarray(fill, x.dtype), [(0, 0, 0)] * 2 + edges)
        return padded.reshape(
            *x.shape[:2], *(a for n, s in zip(self._phases(), self.stride, strict=True) for a in (n, s))
        )

    def tap(self, x: jax.Array, offset: tuple[int, ...], fill: float) -> jax.Array:
        """Tap `offset` of every window, (N, C, *out): the input element that tap reads, or
        `fill` where it reads padding: its phase of the input, shifted by q0 and padded by
        `fill`. A contiguous slice of a phase, not a strided slice of x, so that its transpose
        (`place`, and jax.grad's) is a plain pad, not an interior one (experiments/README.md,
        "Pooling: routing max-pool's gradient")."""
        phase = self._phase(offset)
        grid = self.split(x, fill)[(slice(None),) * 2 + tuple(a for r, _ in phase for a in (slice(None), r))]
        edges = [(-q0, q0 + n - m, 0) for (_, q0), n, m in zip(phase, self.out, self._phases(), strict=True)]
        return lax.pad(grid, jnp.asarray(fill, x.dtype), [(0, 0, 0)] * 2 + edges)

    def place(self, taps: list[jax.Array]) -> jax.Array:
        """The transpose of `tap`, summed over taps: taps[t] (N, C, *out) put at the input
        positions tap t reads; values at padding positions are dropped, overlaps add."""
        grids: dict[tuple[int, ...], jax.Array] = {}
        for values, offset in zip(taps, self.offsets(), strict=True):
            phase = self._phase(offset)
            edges = [
                (q0, m - q0 - n, 0) for (_, q0), n, m in zip(phase, self.out, self._phases(), strict=True)
            ]
            shifted = lax.pad(values, jnp.zeros((), values.dtype), [(0, 0, 0)] * 2 + edges)
            key = tuple(r for r, _ in phase)
            grids[key] = shifted if key not in grids else grids[key] + shifted
        zeros = jnp.zeros((*taps[0].shape[:2], *self._phases()), taps[0].dtype)

        def interleave(prefix: tuple[int, ...]) -> jax.Array:  # dims from len(prefix) on, interleaved
            j = len(prefix)
            if j == len(self.size):
                return grids.get(prefix, zeros)
            return jnp.stack([interleave((*prefix, r)) for r in range(self.stride[j])], axis=3 + j)

        merged = interleave(()).reshape(
            *taps[0].shape[:2], *(n * s for n, s in zip(self._phases(), self.stride, strict=True))
        )
        return merged[(slice(None),) * 2 + tuple(slice(0, size) for size in self.size)]

    def valid(self, offset: tuple[int, ...]) -> np.ndarray | None:
        """Which windows' tap `offset` lies inside the input (not padding), as a static mask
        of shape out, or None when all do."""
        mask = np.ones(self.out, bool)
        for axis, ((size, _, s, p, d, n), o) in enumerate(zip(self.dims(), offset, strict=True)):
            position = np.arange(n) * s + o * d - p
            inside = (position >= 0) & (position < size)
            mask &= inside.reshape([-1 if j == axis else 1 for j in range(len(self.out))])
        return None if mask.all() else mask


# -- arguments ---------------------------------------------------------------------------


def _ntuple(who: str, name: str, value: IntOrTuple, n: int) -> tuple[int, ...]:
    """An int or a tuple of 1 or n ints, as n Python ints (torch's kernel_size=(2,) is (2, 2))."""
    items = (value,) if is_int(value) else tuple(value) if isinstance(value, (tuple, list)) else None
    if items is None or len(items) not in (1, n) or not all(is_int(v) for v in items):
        shape = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise TypeError(f"{who}: {name} must be {shape}, got {value!r}")
    return tuple(int(v) for v in items) * (n if len(items) == 1 else 1)


def output_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output size along one dim (POOL-4).

    >>> output_size(8, 3, 2, 0, 1, ceil_mode=True), output_size(8, 3, 2, 0, 1, ceil_mode=False)
    (4, 3)
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window would start in the right padding
        out -= 1
    return out


def _check_input(who: str, input: jax.Array, n: int) -> bool:
    """Check a pooling input's rank and sizes; True when it is batched (POOL-1)."""
    check_floating("input", input)
    shape = tuple(jnp.shape(input))
    if len(shape) not in (n + 1, n + 2):
        names = ("(C, L)", "(N, C, L)") if n == 1 else ("(C, H, W)", "(N, C, H, W)")
        raise ValueError(
            f"{who}: input must be {n + 1}-D {names[0]} (unbatched) or {n + 2}-D {names[1]}, "
            f"got shape {shape}"
        )
    if 0 in shape[-(n + 1) :]:
        raise ValueError(f"{who}: input must have non-zero channel and spatial sizes, got shape {shape}")
    return len(shape) == n + 2


def pool_params(
    who: str,
    n: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> tuple[tuple[int, ...], ...]:
    """Validate the arguments of an n-D pool (POOL-2, POOL-3); (kernel, stride, padding, dilation).

    >>> pool_params("max_pool2d", 2, 3, None, 1)
    ((3, 3), (3, 3), (1, 1), (1, 1))
    """
    k = _ntuple(who, "kernel_size", kernel_size, n)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    s = k if no_stride else _ntuple(who, "stride", stride, n)
    p, d = _ntuple(who, "padding", padding, n), _ntuple(who, "dilation", dilation, n)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{who}: ceil_mode must be a bool, got {ceil_mode!r}")
    for name, values, low in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1), ("padding", p, 0)):
        if min(values) < low:
            raise ValueError(f"{who}: {name} must be >= {low}, got {values if n > 1 else values[0]}")
    if any(pi > ki // 2 for pi, ki in zip(p, k, strict=True)):
        raise ValueError(
            f"{who}: padding must be at most half the kernel size (padding <= kernel_size // 2), "
            f"got padding={p if n > 1 else p[0]} and kernel_size={k if n > 1 else k[0]}"
        )
    return k, s, p, d


def geometry(who: str, input: jax.Array, n: int, *args, ceil_mode: bool = False) -> tuple[Geometry, bool]:
    """Check input and arguments of an n-D pool; (its Geometry, whether input is batched)."""
    batched = _check_input(who, input, n)
    k, s, p, d = pool_params(who, n, *args, ceil_mode=ceil_mode)
    size = tuple(jnp.shape(input)[-n:])
    out = tuple(output_size(*a, ceil_mode) for a in zip(size, k, s, p, d, strict=True))
    if min(out) < 1:
        raise ValueError(
            f"{who}: the kernel (kernel_size={k}, dilation={d}) is larger than the padded input "
            f"(spatial size {size}, padding={p}): the output size would be {out}"
        )
    return Geometry(size, k, s, p, d, out), batched


def _batched(fn, input: jax.Array, batched: bool, *more: jax.Array) -> jax.Array:
    """Run fn on (N, C, ...) arrays, adding and removing the batch dim of unbatched ones."""
    if batched:
        return fn(input, *more)
    return fn(input[None], *(m[None] for m in more))[0]


# -- max pooling --------------------------------------------------------------------------


def window_choice(x: jax.Array, y: jax.Array, geom: Geometry) -> jax.Array:
    """Per window, the index (in `geom.offsets()` order) of the element the gradient goes to:
    the first tap equal to the window's max y, never a padding tap (POOL-5), or the last NaN
    when the window holds one (POOL-6; torch's kernel takes `val > max || isnan(val)`)."""
    dtype = fast.choice_dtype(len(geom.offsets()))
    choice = jnp.full(y.shape, -1, dtype)
    for t, offset in enumerate(geom.offsets()):
        v = geom.tap(x, offset, -jnp.inf)
        hit = ((v == y) & (choice < 0)) | jnp.isnan(v)
        valid = geom.valid(offset)
        hit = hit if valid is None else hit & valid
        choice = jnp.where(hit, jnp.asarray(t, dtype), choice)
    return choice


def gather(dx: jax.Array, choice: jax.Array, geom: Geometry) -> jax.Array:
    """dy_w = dx at window w's chosen tap: the sum over taps of dx's tap where it was chosen."""
    zero = jnp.zeros((), dx.dtype)
    return sum(jnp.where(choice == t, geom.tap(dx, o, 0.0), zero) for t, o in enumerate(geom.offsets()))


def route(g: jax.Array, choice: jax.Array, geom: Geometry) -> jax.Array:
    """dL/dx_i = sum_w g_w [c(w) = i]: each tap's chosen g put back where the tap reads."""
    zero = jnp.zeros((), g.dtype)
    return geom.place([jnp.where(choice == t, g, zero) for t in range(len(geom.offsets()))])


def _tiles(geom: Geometry) -> bool:
    return fast.tiles(geom.size, geom.kernel, geom.stride, geom.padding, geom.dilation)


def _max_pool_definition(x: jax.Array, geom: Geometry) -> jax.Array:
    """Each window's max: the elementwise max of its taps, padding read as -inf (NaN
    propagates, as in torch: lax.max returns NaN when either side is NaN)."""
    return functools.reduce(lax.max, (geom.tap(x, o, -jnp.inf) for o in geom.offsets()))


@partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, geom: Geometry) -> jax.Array:
    return _max_pool_definition(x, geom)


def _max_and_choice(x: jax.Array, geom: Geometry) -> tuple[jax.Array, jax.Array]:
    """The windows' max and choice, through fnn._fast.pooling's faster paths (the same values).
    y is `_max_pool` itself, so that differentiating the rule below (second order) applies
    the same rule again, not lax.max's split of a tie."""
    if _tiles(geom):
        y = _max_pool(x, geom)
        return y, fast.window_choice(x, y, geom.kernel)
    y = fast.computed_once(lambda x: _max_pool(x, geom), x)
    return y, fast.computed_once(lambda x, y: window_choice(x, y, geom), x, y)


@_max_pool.defjvp
def _max_pool_jvp(geom: Geometry, primals, tangents):
    # y = x[chosen element of each window], so dy = dx[chosen]: a masked gather of the
    # tangent, linear in it, whose transpose (reverse mode) routes g to the chosen element.
    (x,), (dx,) = primals, tangents
    y, choice = _max_and_choice(x, geom)
    return y, fast.gather(dx, choice, geom.kernel) if _tiles(geom) else gather(dx, choice, geom)


def _max_pool_backward(g: jax.Array, x: jax.Array, geom: Geometry) -> jax.Array:
    _, choice = _max_and_choice(x, geom)
    return fast.route(g, choice, geom.kernel) if _tiles(geom) else route(g, choice, geom)


def max_pool1d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """1-D max pooling, torch.nn.functional.max_pool1d (POOL-1..POOL-6).

    Args:
        input: a floating array (N, C, L) or unbatched (C, L).
        kernel_size: the window length k.
        stride: the step between windows (default None: k).
        padding: -inf padding on both sides, at most k // 2 (default 0).
        dilation: the spacing between a window's elements (default 1).
        ceil_mode: round the output length up instead of down (default False).

    Returns:
        An array (N, C, L_out) (or (C, L_out)) holding each window's max.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.max_pool1d(jnp.array([[[1.0, 3.0, 2.0, 0.0, 5.0]]]), 2, ceil_mode=True).tolist()
        [[[3.0, 2.0, 5.0]]]
    """
    args = (kernel_size, stride, padding, dilation)
    geom, batched = geometry("max_pool1d", input, 1, *args, ceil_mode=ceil_mode)
    return _batched(lambda x: _max_pool(x, geom), input, batched)


def max_pool1d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Gradient of `max_pool1d` with respect to its input (as `max_pool2d_backward`, in 1-D).

    y_w = x_(c(w)), with c(w) the element of window w chosen by POOL-5/POOL-6, so
    dL/dx_i = sum_w g_w [c(w) = i].

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input, kernel_size, stride, padding, dilation, ceil_mode: the forward's arguments.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.max_pool1d_backward(jnp.ones((1, 1, 2)), jnp.array([[[1.0, 1.0, 0.0, 2.0]]]), 2).tolist()
        [[[1.0, 0.0, 0.0, 1.0]]]
    """
    args = (kernel_size, stride, padding, dilation)
    geom, batched = geometry("max_pool1d", input, 1, *args, ceil_mode=ceil_mode)
    check_grad_shape(grad_output, (*jnp.shape(input)[:-1], *geom.out))
    return _batched(lambda x, g: _max_pool_backward(g, x, geom), input, batched, grad_output)


def max_pool2d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """2-D max pooling, torch.nn.functional.max_pool2d (POOL-1..POOL-6).

    Args:
        input: a floating array (N, C, H, W) or unbatched (C, H, W).
        kernel_size: the window (kH, kW), or one int for both.
        stride: the step between windows (default None: the kernel size).
        padding: -inf padding on each side, at most kernel_size // 2 (default 0).
        dilation: the spacing between a window's elements (default 1).
        ceil_mode: round the output size up instead of down (default False).

    Returns:
        An array (N, C, H_out, W_out) (or (C, H_out, W_out)) holding each window's max.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.arange(16.0).reshape(1, 1, 4, 4)
        >>> F.max_pool2d(x, 2).tolist()
        [[[[5.0, 7.0], [13.0, 15.0]]]]
    """
    args = (kernel_size, stride, padding, dilation)
    geom, batched = geometry("max_pool2d", input, 2, *args, ceil_mode=ceil_mode)
    return _batched(lambda x: _max_pool(x, geom), input, batched)


def max_pool2d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> jax.Array:
    """Gradient of `max_pool2d` with respect to its input.

    Each output is one element of its window: y_w = x_(c(w)), with c(w) the first maximal
    element in row-major window order (POOL-5; the last NaN if any, POOL-6; padding never).
    So dy_w/dx_i = [c(w) = i], and dL/dx_i = sum_w g_w [c(w) = i]: every window routes its
    whole gradient to one element, and an element chosen by overlapping windows sums theirs.
    Computed tap by tap: for each kernel offset, the windows that chose that tap put g at
    the strided input positions the tap reads (the transpose of a strided slice).

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input, kernel_size, stride, padding, dilation, ceil_mode: the forward's arguments.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.max_pool2d_backward(jnp.ones((1, 1, 1, 1)), jnp.ones((1, 1, 2, 2)), 2).tolist()
        [[[[1.0, 0.0], [0.0, 0.0]]]]
    """
    args = (kernel_size, stride, padding, dilation)
    geom, batched = geometry("max_pool2d", input, 2, *args, ceil_mode=ceil_mode)
    check_grad_shape(grad_output, (*jnp.shape(input)[:-2], *geom.out))
    return _batched(lambda x, g: _max_pool_backward(g, x, geom), input, batched, grad_output)


# -- average pooling ----------------------------------------------------------------------


def divisor(geom: Geometry, count_include_pad: bool, divisor_override: int | None) -> np.ndarray:
    """Each window's divisor, a static array of shape out (AVGPOOL-1..AVGPOOL-3).

    Along each dim a window [start, start + k) is clipped to input + padding,
    [-p, L + p) (AVGPOOL-1), or to the input [0, L) with count_include_pad=False (AVGPOOL-2);
    the divisor is the product of the clipped lengths, or divisor_override (AVGPOOL-3).
    """
    if divisor_override is not None:
        return np.full(geom.out, float(divisor_override))
    result = np.ones(geom.out)
    for i, (size, k, s, p, _, n) in enumerate(geom.dims()):
        start = np.arange(n) * s - p
        end = np.minimum(start + k, size + p)
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        result = result * (end - start).reshape([-1 if j == i else 1 for j in range(len(geom.out))])
    return result


def check_avg_options(who, count_include_pad, divisor_override) -> None:
    if not isinstance(count_include_pad, (bool, np.bool_)):
        raise TypeError(f"{who}: count_include_pad must be a bool, got {count_include_pad!r}")
    bad = divisor_override is not None and (not is_int(divisor_override) or divisor_override == 0)
    if bad:
        raise ValueError(f"{who}: divisor_override must be None or a non-zero int, got {divisor_override!r}")


def _avg_pool(x: jax.Array, geom: Geometry, div: np.ndarray) -> jax.Array:
    summed = sum(geom.tap(x, o, 0.0) for o in geom.offsets())
    return summed / jnp.asarray(div, x.dtype)


def _avg_pool_backward(g: jax.Array, geom: Geometry, div: np.ndarray) -> jax.Array:
    share = g / jnp.asarray(div, g.dtype)
    return geom.place([share] * len(geom.offsets()))


def _avg_geometry(
    who, input, n, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override=None
):
    check_avg_options(who, count_include_pad, divisor_override)
    geom, batched = geometry(who, input, n, kernel_size, stride, padding, 1, ceil_mode=ceil_mode)
    return geom, batched, divisor(geom, count_include_pad, divisor_override)


def avg_pool1d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """1-D average pooling, torch.nn.functional.avg_pool1d (AVGPOOL-1, AVGPOOL-2).

    torch's avg_pool1d has no divisor_override; neither has this one.

    Args:
        input: a floating array (N, C, L) or unbatched (C, L).
        kernel_size: the window length k.
        stride: the step between windows (default None: k).
        padding: zero padding on both sides, at most k // 2 (default 0).
        ceil_mode: round the output length up instead of down (default False).
        count_include_pad: divide by the window's length inside input + padding (default
            True) or by its real elements only.

    Returns:
        An array (N, C, L_out) (or (C, L_out)) of window means.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.avg_pool1d(jnp.ones((1, 1, 8)), 3, 2, 1, ceil_mode=True).tolist()  # AVGPOOL-1
        [[[0.6666666865348816, 1.0, 1.0, 1.0, 0.5]]]
    """
    args = ("avg_pool1d", input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)
    geom, batched, div = _avg_geometry(*args)
    return _batched(lambda x: _avg_pool(x, geom, div), input, batched)


def avg_pool1d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> jax.Array:
    """Gradient of `avg_pool1d` with respect to its input (as `avg_pool2d_backward`, in 1-D).

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input, kernel_size, stride, padding, ceil_mode, count_include_pad: the forward's.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.avg_pool1d_backward(jnp.ones((1, 1, 3)), jnp.ones((1, 1, 4)), 2, 1).tolist()
        [[[0.5, 1.0, 1.0, 0.5]]]
    """
    args = ("avg_pool1d", input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, None)
    geom, batched, div = _avg_geometry(*args)
    check_grad_shape(grad_output, (*jnp.shape(input)[:-1], *geom.out))
    return _batched(lambda g: _avg_pool_backward(g, geom, div), grad_output, batched)


def avg_pool2d(
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """2-D average pooling, torch.nn.functional.avg_pool2d (AVGPOOL-1..AVGPOOL-3).

    Args:
        input: a floating array (N, C, H, W) or unbatched (C, H, W).
        kernel_size: the window (kH, kW), or one int for both.
        stride: the step between windows (default None: the kernel size).
        padding: zero padding on each side, at most kernel_size // 2 (default 0).
        ceil_mode: round the output size up instead of down (default False).
        count_include_pad: divide by the window's area inside input + padding (default True)
            or by its real elements only.
        divisor_override: a non-zero int that replaces every divisor (default None).

    Returns:
        An array (N, C, H_out, W_out) (or (C, H_out, W_out)) of window means.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.avg_pool2d(jnp.arange(16.0).reshape(1, 1, 4, 4), 2).tolist()
        [[[[2.5, 4.5], [10.5, 12.5]]]]
    """
    options = (ceil_mode, count_include_pad, divisor_override)
    geom, batched, div = _avg_geometry("avg_pool2d", input, 2, kernel_size, stride, padding, *options)
    return _batched(lambda x: _avg_pool(x, geom, div), input, batched)


def avg_pool2d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """Gradient of `avg_pool2d` with respect to its input.

    y_w = (1/D_w) sum_(i in window w) x_i, with padding contributing zeros and D_w the
    window's divisor (AVGPOOL-1..AVGPOOL-3), so dy_w/dx_i = [i in w] / D_w and
    dL/dx_i = sum_(w containing i) g_w / D_w. Computed tap by tap: each kernel offset puts
    g / D at the strided input positions it reads; padding positions are dropped.

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override:
            the forward's arguments.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.avg_pool2d_backward(jnp.ones((1, 1, 1, 1)), jnp.ones((1, 1, 2, 2)), 2).tolist()
        [[[[0.25, 0.25], [0.25, 0.25]]]]
    """
    options = (ceil_mode, count_include_pad, divisor_override)
    geom, batched, div = _avg_geometry("avg_pool2d", input, 2, kernel_size, stride, padding, *options)
    check_grad_shape(grad_output, (*jnp.shape(input)[:-2], *geom.out))
    return _batched(lambda g: _avg_pool_backward(g, geom, div), grad_output, batched)


# -- adaptive average pooling -------------------------------------------------------------


def adaptive_windows(size: int, out: int) -> np.ndarray:
    """The (out, size) 0/1 matrix whose row i marks [floor(i·size/out), ceil((i+1)·size/out))
    (ADAPTIVE-1).

    >>> adaptive_windows(7, 3).astype(int).tolist()
    [[1, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1]]
    """
    i = np.arange(out)[:, None]
    j = np.arange(size)[None, :]
    return ((j >= (i * size) // out) & (j < -((-(i + 1) * size) // out))).astype(np.float64)


def adaptive_output_size(output_size, size: tuple[int, int]) -> tuple[int, int]:
    who = "adaptive_avg_pool2d"
    items = (output_size,) * 2 if is_int(output_size) else output_size
    if not isinstance(items, (tuple, list)) or len(items) != 2:
        raise TypeError(
            f"{who}: output_size must be an int or a tuple of 2 (ints or None), got {output_size!r}"
        )
    result = []
    for item, n in zip(items, size, strict=True):
        if item is not None and (not is_int(item) or item < 0):
            raise ValueError(f"{who}: output_size entries must be ints >= 0 or None, got {output_size!r}")
        result.append(n if item is None else int(item))  # ADAPTIVE-2
    return tuple(result)


def _adaptive_geometry(input, output_size):
    who = "adaptive_avg_pool2d"
    check_floating("input", input)
    shape = tuple(jnp.shape(input))
    if len(shape) not in (3, 4):
        raise ValueError(f"{who}: input must be 3-D (C, H, W) (unbatched) or 4-D (N, C, H, W), got {shape}")
    if 0 in shape[-2:]:
        raise ValueError(f"{who}: input must have non-zero spatial sizes, got shape {shape}")
    out = adaptive_output_size(output_size, shape[-2:])
    rows, cols = adaptive_windows(shape[-2], out[0]), adaptive_windows(shape[-1], out[1])
    return rows, cols, np.outer(rows.sum(1), cols.sum(1)), out


def adaptive_avg_pool2d(input: jax.Array, output_size: int | tuple[int | None, int | None]) -> jax.Array:
    """Adaptive 2-D average pooling, torch.nn.functional.adaptive_avg_pool2d (ADAPTIVE-1, -2).

    y_(i,j) = mean of x over rows [floor(i·H/oH), ceil((i+1)·H/oH)) and the same for columns:
    y = (R x Cᵀ) / count, with R, C the 0/1 window matrices of `adaptive_windows`.

    Args:
        input: a floating array (N, C, H, W) or unbatched (C, H, W).
        output_size: (oH, oW), or one int for both; a None entry keeps that input size.

    Returns:
        An array (N, C, oH, oW) (or (C, oH, oW)).

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.adaptive_avg_pool2d(jnp.arange(7.0).reshape(1, 1, 7), (None, 3)).tolist()
        [[[1.0, 3.0, 5.0]]]
    """
    rows, cols, count, _ = _adaptive_geometry(input, output_size)
    r, c = jnp.asarray(rows, input.dtype), jnp.asarray(cols, input.dtype)
    return jnp.einsum("ih,...hw,jw->...ij", r, input, c) / jnp.asarray(count, input.dtype)


def adaptive_avg_pool2d_backward(
    grad_output: jax.Array, input: jax.Array, output_size: int | tuple[int | None, int | None]
) -> jax.Array:
    """Gradient of `adaptive_avg_pool2d` with respect to its input.

    y = (R x Cᵀ) / count  =>  dL/dx = Rᵀ (g / count) C: each output's gradient is shared
    equally among its window's elements, and overlapping windows add.

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input.
        output_size: the forward's output_size.

    Returns:
        dL/dx, of the input's shape.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.adaptive_avg_pool2d_backward(jnp.ones((1, 1, 1)), jnp.ones((1, 2, 2)), 1).tolist()
        [[[0.25, 0.25], [0.25, 0.25]]]
    """
    rows, cols, count, out = _adaptive_geometry(input, output_size)
    check_grad_shape(grad_output, (*jnp.shape(input)[:-2], *out))
    r, c = jnp.asarray(rows, grad_output.dtype), jnp.asarray(cols, grad_output.dtype)
    share = grad_output / jnp.asarray(count, grad_output.dtype)
    return jnp.einsum("ih,...ij,jw->...hw", r, share, c)
