"""1-d and 2-d convolution (cross-correlation, torch's layout) with hand-derived backwards.

Contract (docs/semantics.md, rules CONV-1..CONV-6):
- `conv1d` / `conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)`:
  input (N, C_in, *spatial) or unbatched (C_in, *spatial); weight (C_out, C_in/groups, *k);
  bias (C_out,). y[n, o, p] = b[o] + Σ_{c, j} x_pad[n, g(o)·C_in/groups + c, p·s + j·d] w[o, c, j],
  an un-flipped correlation as in torch (CONV-1).
- stride, padding, dilation: an int or one value per spatial dim (a 1-tuple is repeated).
  padding may be 'valid' (no padding) or 'same' (CONV-2): only with stride 1; the total
  d·(k−1) splits as left = total // 2, right = total − left (the extra at the end).
- Output size per dim: ⌊(L + lo + hi − d(k−1) − 1) / s⌋ + 1 (CONV-3). With stride > 1 the
  trailing input rows no window reaches get gradient 0.
- Errors, at trace time, name the argument (CONV-5): input ndim, channels against
  weight·groups, groups dividing C_out, non-positive stride/dilation, negative padding,
  a bad padding string, 'same' with stride > 1, a kernel larger than the padded input.
- `conv*_backward` returns (grad_input, grad_weight, grad_bias or None) (CONV-4), from the
  correlations its derivation names, never jax.vjp.
- The three correlations are defined here (`correlate`, `correlate_transposed`,
  `correlate_weight`: lax.conv_general_dilated in torch's layout); the ops run them through
  fnn/_fast/conv.py, the same values in XLA:CPU's canonical NHWC layout (fast in lax.scan).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from fnn._checks import check_floating, check_grad_shape, is_int
from fnn._fast import conv as _fast_conv

__all__ = ["conv1d", "conv1d_backward", "conv2d", "conv2d_backward"]

IntOrTuple = int | Sequence[int]
Padding = int | Sequence[int] | str

# lax's layout strings: N batch, C feature, O/I kernel out/in features, then spatial dims.
_SPATIAL = {1: "H", 2: "HW"}


def _tuple(name: str, value: IntOrTuple, n: int, op: str) -> tuple[int, ...]:
    """An int, or n ints (a 1-sequence is repeated, as torch's conv accepts), as an n-tuple."""
    if is_int(value):
        return (int(value),) * n
    if isinstance(value, Sequence) and not isinstance(value, str) and all(is_int(v) for v in value):
        if len(value) == 1:
            return (int(value[0]),) * n
        if len(value) == n:
            return tuple(int(v) for v in value)
    raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")


def _padding_pairs(
    padding: Padding, kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...], op: str
) -> tuple[tuple[int, int], ...]:
    """(left, right) padding per spatial dim, from an int, a tuple, 'valid' or 'same' (CONV-2)."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding != "same":
            raise ValueError(f"{op}: invalid padding string {padding!r}, should be 'valid' or 'same'")
        if any(s != 1 for s in stride):
            raise ValueError(
                f"{op}: padding='same' is not supported for strided convolutions, got stride={stride}"
            )
        totals = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)]
        return tuple((t // 2, t - t // 2) for t in totals)
    pads = _tuple("padding", padding, n, op)
    if any(p < 0 for p in pads):
        raise ValueError(f"{op}: negative padding is not supported, got padding={padding!r}")
    return tuple((p, p) for p in pads)


def _conv_args(input, weight, bias, stride, padding, dilation, groups, n: int):
    """Check a conv's arguments (CONV-5); return (batched input, stride, pads, dilation)."""
    op = f"conv{n}d"
    for name, a in (("input", input), ("weight", weight)) + ((("bias", bias),) if bias is not None else ()):
        check_floating(name, a)
        if jnp.result_type(a) != jnp.result_type(input):
            raise TypeError(
                f"{op}: {name} must have input's dtype {jnp.result_type(input)}, got {jnp.result_type(a)}"
            )
    if jnp.ndim(input) not in (n + 1, n + 2):
        raise ValueError(
            f"{op}: expected {n + 1}-D (unbatched) or {n + 2}-D (batched) input, "
            f"got shape {tuple(jnp.shape(input))}"
        )
    if jnp.ndim(weight) != n + 2:
        raise ValueError(
            f"{op}: weight must be {n + 2}-D (out, in/groups, *kernel), got {tuple(jnp.shape(weight))}"
        )
    if not is_int(groups) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    x = input if jnp.ndim(input) == n + 2 else input[None]
    c_out, c_in_g, *kernel = jnp.shape(weight)
    if c_out % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide weight's out channels, got weight {tuple(weight.shape)}"
        )
    if x.shape[1] != c_in_g * groups:
        raise ValueError(
            f"{op}: given groups={groups} and weight {tuple(weight.shape)}, "
            f"input {tuple(jnp.shape(input))} must have {c_in_g * groups} channels, got {x.shape[1]}"
        )
    if bias is not None and tuple(jnp.shape(bias)) != (c_out,):
        raise ValueError(f"{op}: bias must have shape ({c_out},), got {tuple(jnp.shape(bias))}")
    stride_t, dilation_t = _tuple("stride", stride, n, op), _tuple("dilation", dilation, n, op)
    if any(s < 1 for s in stride_t):
        raise ValueError(f"{op}: non-positive stride is not supported, got stride={stride!r}")
    if any(d < 1 for d in dilation_t):
        raise ValueError(f"{op}: non-positive dilation is not supported, got dilation={dilation!r}")
    pads = _padding_pairs(padding, tuple(kernel), stride_t, dilation_t, op)
    padded = [size + lo + hi for size, (lo, hi) in zip(x.shape[2:], pads, strict=True)]
    effective = [d * (k - 1) + 1 for d, k in zip(dilation_t, kernel, strict=True)]
    if any(e > p for e, p in zip(effective, padded, strict=True)):
        raise ValueError(
            f"{op}: the kernel (dilated size {tuple(effective)}) is larger than the padded input "
            f"{tuple(padded)} (input {tuple(jnp.shape(input))}, padding {pads})"
        )
    return x, stride_t, pads, dilation_t


def _layout(n: int, lhs: str = "NC", rhs: str = "OI", out: str = "NC") -> tuple[str, str, str]:
    return lhs + _SPATIAL[n], rhs + _SPATIAL[n], out + _SPATIAL[n]


def correlate(x: jax.Array, w: jax.Array, stride, pads, dilation, groups: int) -> jax.Array:
    """The forward's correlation (CONV-1), in torch's layout: for x (N, C_in, *L) and w
    (C_out, C_in/groups, *k), y[n, o, p] = Σ_{c, j} x_pad[n, γ(o)·C_g + c, p·s + j·d] w[o, c, j].
    The public ops compute it through ``fnn/_fast/conv.py`` (the same values)."""
    n = jnp.ndim(x) - 2
    return lax.conv_general_dilated(
        x, w, stride, pads, rhs_dilation=dilation, dimension_numbers=_layout(n), feature_group_count=groups
    )


def correlate_transposed(g: jax.Array, w_t: jax.Array, stride, full, dilation, groups: int) -> jax.Array:
    """grad_input's correlation (CONV-4): g with s − 1 zeros between its rows (lhs_dilation),
    padded by `full`, against w_t, the flipped kernel with in/out swapped per group."""
    n = jnp.ndim(g) - 2
    return lax.conv_general_dilated(
        g,
        w_t,
        (1,) * n,
        full,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=_layout(n),
        feature_group_count=groups,
    )


def correlate_weight(x: jax.Array, g: jax.Array, stride, reach, dilation, groups: int) -> jax.Array:
    """grad_weight's correlation (CONV-4): x's channels as the batch and N as the summed
    feature, g's taps s apart as the kernel, output step d; (C_in/groups, C_out, *k) comes out
    with groups as batch groups, then (C_out, C_in/groups, *k)."""
    n = jnp.ndim(x) - 2
    return lax.conv_general_dilated(
        x,
        g,
        dilation,
        reach,
        rhs_dilation=stride,
        dimension_numbers=_layout(n, "CN", "IO", "NC"),
        batch_group_count=groups,
    ).swapaxes(0, 1)


def _conv(input, weight, bias, stride, padding, dilation, groups, n: int) -> jax.Array:
    x, stride, pads, dilation = _conv_args(input, weight, bias, stride, padding, dilation, groups, n)
    y = _fast_conv.correlate(x, weight, stride, pads, dilation, groups)
    if bias is not None:
        y = y + bias.reshape((-1,) + (1,) * n)
    return y if jnp.ndim(input) == n + 2 else y[0]


def conv1d(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """1-d convolution (torch's cross-correlation), CONV-1..3.

    Args:
        input: (N, C_in, L) or unbatched (C_in, L), floating.
        weight: (C_out, C_in/groups, k).
        bias: (C_out,) or None.
        stride: the step between windows (int or 1-tuple, >= 1).
        padding: zeros added on both sides (int or 1-tuple, >= 0), 'valid' or 'same'.
        dilation: the spacing between kernel taps (>= 1).
        groups: split the channels into this many independent convolutions.

    Returns:
        (N, C_out, L_out), or (C_out, L_out) for an unbatched input.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x = jnp.arange(1.0, 8.0).reshape(1, 1, 7)
        >>> F.conv1d(x, jnp.array([[[1.0, 0.0, 0.0, 0.0]]]), padding="same").tolist()
        [[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]]
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1)


def conv2d(
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> jax.Array:
    """2-d convolution (torch's cross-correlation), CONV-1..3.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W), floating.
        weight: (C_out, C_in/groups, kh, kw).
        bias: (C_out,) or None.
        stride: the step between windows (int or (sh, sw), >= 1).
        padding: zeros added on both sides of each dim (int or (ph, pw), >= 0), 'valid' or 'same'.
        dilation: the spacing between kernel taps (int or (dh, dw), >= 1).
        groups: split the channels into this many independent convolutions.

    Returns:
        (N, C_out, H_out, W_out), or (C_out, H_out, W_out) for an unbatched input.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.conv2d(jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 2, 2)), padding=1).tolist()
        [[[[1.0, 2.0, 2.0, 1.0], [2.0, 4.0, 4.0, 2.0], [2.0, 4.0, 4.0, 2.0], [1.0, 2.0, 2.0, 1.0]]]]
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2)


def _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, n: int):
    x, stride, pads, dilation = _conv_args(input, weight, bias, stride, padding, dilation, groups, n)
    c_out, c_in_g, *kernel = weight.shape
    sizes = x.shape[2:]
    out = [
        (size + lo + hi - d * (k - 1) - 1) // s + 1
        for size, (lo, hi), d, k, s in zip(sizes, pads, dilation, kernel, stride, strict=True)
    ]
    batched = jnp.ndim(input) == n + 2
    check_grad_shape(grad_output, (x.shape[0], c_out, *out) if batched else (c_out, *out))
    g = grad_output if batched else grad_output[None]
    # grad_input: g zero-inserted (lhs_dilation = s), padded to a full correlation, against
    # the flipped kernel with in/out channels swapped within each group.
    w_t = weight.reshape(groups, c_out // groups, c_in_g, *kernel).swapaxes(1, 2)
    w_t = jnp.flip(w_t.reshape(groups * c_in_g, c_out // groups, *kernel), axis=tuple(range(2, n + 2)))
    full = [
        (d * (k - 1) - lo, size + lo - 1 - (p - 1) * s)
        for size, (lo, _), d, k, s, p in zip(sizes, pads, dilation, kernel, stride, out, strict=True)
    ]
    grad_input = _fast_conv.correlate_transposed(g, w_t, stride, full, dilation, groups)
    # grad_weight: correlate x (channels as the batch, N summed) with g dilated by s, taps
    # d apart; the right padding ends at the last row a window reaches (a negative one
    # drops the trailing rows stride > 1 leaves unused).
    reach = [
        (lo, (p - 1) * s + d * (k - 1) + 1 - size - lo)
        for size, (lo, _), d, k, s, p in zip(sizes, pads, dilation, kernel, stride, out, strict=True)
    ]
    grad_weight = _fast_conv.correlate_weight(x, g, stride, reach, dilation, groups)
    grad_bias = None if bias is None else jnp.sum(g, axis=(0, *range(2, n + 2)))
    return (grad_input if batched else grad_input[0]), grad_weight, grad_bias


def conv1d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Gradients of `conv1d` with respect to its input, weight and bias (CONV-4).

    The derivation is `conv2d_backward`'s with one spatial dim: for
    y[n, o, p] = b[o] + Σ_{c, j} x_pad[n, γ(o)·C_g + c, p·s + j·d] w[o, c, j],
    dL/dx is the full correlation of g (s−1 zeros inserted between its entries) with the
    flipped kernel, in/out channels swapped per group, cropped by the padding;
    dL/dw[o, c, j] = Σ_{n, p} g[n, o, p] x_pad[n, γ(o)·C_g + c, p·s + j·d]; dL/db[o] = Σ_{n, p} g[n, o, p].

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input, (N, C_in, L) or (C_in, L).
        weight: the forward's weight, (C_out, C_in/groups, k).
        bias: the forward's bias (C_out,), or None.
        stride: the forward's stride.
        padding: the forward's padding.
        dilation: the forward's dilation.
        groups: the forward's groups.

    Returns:
        (grad_input, grad_weight, grad_bias) of the shapes of input, weight and bias;
        grad_bias is None when bias is None.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, w = jnp.array([[[1.0, 2.0, 3.0]]]), jnp.array([[[1.0, 10.0]]])
        >>> gx, gw, gb = F.conv1d_backward(jnp.ones((1, 1, 2)), x, w, jnp.zeros(1))
        >>> gx.tolist(), gw.tolist(), gb.tolist()
        ([[[1.0, 11.0, 10.0]]], [[[3.0, 5.0]]], [2.0])
    """
    return _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, 1)


def conv2d_backward(
    grad_output: jax.Array,
    input: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Gradients of `conv2d` with respect to its input, weight and bias (CONV-4).

    Write p, i, j for 2-d positions, C_g = C_in / groups and γ(o) for output channel o's
    group. With x_pad the zero-padded input and g = dL/dy, the forward is
        y[n, o, p] = b[o] + Σ_{c, j} x_pad[n, γ(o)·C_g + c, p·s + j·d] · w[o, c, j].
    Each term holds one x_pad, one w and one b, so
    - dL/dx_pad[n, γ·C_g + c, i] = Σ_{o in γ, p, j : p·s + j·d = i} g[n, o, p] w[o, c, j].
      With g_s the grad_output with s−1 zeros inserted between rows (g_s[p·s] = g[p]),
      this is Σ_{o, j} g_s[i − j·d] w[o, c, j]: the full correlation of g_s with the
      flipped, dilated kernel, in and out channels swapped within each group. Cropping the
      padding gives dL/dx; the rows past the last window (stride > 1) meet no term: 0.
    - dL/dw[o, c, j] = Σ_{n, p} g[n, o, p] · x_pad[n, γ(o)·C_g + c, p·s + j·d]: the
      correlation of x_pad with g (g's taps s apart, output step d), summed over n.
    - dL/db[o] = Σ_{n, p} g[n, o, p].

    Args:
        grad_output: dL/dy, of the forward output's shape.
        input: the forward's input, (N, C_in, H, W) or (C_in, H, W).
        weight: the forward's weight, (C_out, C_in/groups, kh, kw).
        bias: the forward's bias (C_out,), or None.
        stride: the forward's stride.
        padding: the forward's padding.
        dilation: the forward's dilation.
        groups: the forward's groups.

    Returns:
        (grad_input, grad_weight, grad_bias) of the shapes of input, weight and bias;
        grad_bias is None when bias is None.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> x, w = jnp.ones((1, 1, 3, 3)), jnp.ones((1, 1, 2, 2))
        >>> gx, gw, gb = F.conv2d_backward(jnp.ones((1, 1, 2, 2)), x, w, jnp.zeros(1))
        >>> gx.tolist(), gw.tolist(), gb.tolist()
        ([[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]], [[[[4.0, 4.0], [4.0, 4.0]]]], [4.0])
    """
    return _conv_backward(grad_output, input, weight, bias, stride, padding, dilation, groups, 2)
