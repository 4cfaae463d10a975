"""The three correlations of a convolution in XLA:CPU's canonical NHWC/HWIO layout (CONV-1, CONV-4).

Contract: ``correlate``, ``correlate_transposed`` and ``correlate_weight`` take and return
what their namesakes in ``fnn/functional/conv.py`` take and return (torch's NC* layout, 1 or
2 spatial dims) and equal them to rounding: the same sums, in another order (another
convolution algorithm), so not bit for bit (``tests/test_fast_conv.py``). ``correlate``'s
derivative is its own (a ``custom_jvp`` whose tangent is linear in the tangents): the two
tangent correlations are laid out so that reverse mode's transposes of them, the
convolutions ``jax.grad`` emits, are canonical too.

Why: XLA:CPU runs a convolution fast (a YNNPACK fusion) only in the canonical form
(input NHWC, kernel HWIO, output NHWC). Outside loops it rewrites torch's NCHW/OIHW to that
form itself; inside a loop body (``lax.scan``: fnn's training epoch and ``evaluate``) it does
not (jax-ml/jax#12868), and the NC* forms ran 8-20x slower there, forward and both
backward correlations alike. Written canonically with explicit transposes, a scanned
convolution costs what it costs outside the loop, and outside it costs the same as before
(experiments/README.md, "Convolution: lax.conv against im2col"). A 1-d convolution runs as
a 2-d one of height 1. With one input channel (an image net's first layer), grad_weight is an
im2col GEMM instead, patchesᵀ · g, which XLA:CPU runs several times faster than that
convolution.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = ["correlate", "correlate_transposed", "correlate_weight"]

CANONICAL = ("NHWC", "HWIO", "NHWC")
_NHWC, _NCHW = (0, 2, 3, 1), (0, 3, 1, 2)  # transposes between torch's layout and NHWC


def _as_2d(fn):
    """Run a 2-d correlation on 1-d operands: (N, C, L) as (N, C, 1, L), (s,) as (1, s), ..."""

    @functools.wraps(fn)
    def wrapped(a, b, stride, pads, dilation, groups):
        if a.ndim == 4:
            return fn(a, b, tuple(stride), tuple(map(tuple, pads)), tuple(dilation), groups)
        out = fn(
            a[:, :, None], b[:, :, None], (1, *stride), ((0, 0), *map(tuple, pads)), (1, *dilation), groups
        )
        return out[:, :, 0]

    return wrapped


def _gemm_weight(x, groups: int) -> bool:
    """grad_weight as an im2col GEMM: for one input channel (an image net's first layer)
    XLA:CPU's convolution of x with g is several times slower than patchesᵀ · g."""
    return groups == 1 and x.shape[1] == 1


def _patches(x, kernel, out, stride, pads, dilation):
    """x (N, 1, H, W) padded, each kernel tap's strided window side by side: (N, *out, kh·kw),
    tap (i, j) at column i·kw + j, as `_matrix`'s rows."""
    xh = lax.pad(x[:, 0], jnp.zeros((), x.dtype), [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads)])
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            start = (0, i * dilation[0], j * dilation[1])
            stop = (
                xh.shape[0],
                start[1] + stride[0] * (out[0] - 1) + 1,
                start[2] + stride[1] * (out[1] - 1) + 1,
            )
            taps.append(lax.slice(xh, start, stop, (1, *stride)))
    return jnp.stack(taps, axis=-1)


def _matrix(w):
    """A (O, 1, kh, kw) kernel as the (kh·kw, O) matrix that multiplies `_patches`."""
    return w.reshape(w.shape[0], -1).T


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _correlate(x, w, stride, pads, dilation, groups):
    y = lax.conv_general_dilated(
        x.transpose(_NHWC),
        w.transpose(2, 3, 1, 0),  # OIHW -> HWIO
        stride,
        pads,
        rhs_dilation=dilation,
        dimension_numbers=CANONICAL,
        feature_group_count=groups,
    )
    return y.transpose(_NCHW)


def _correlate_jvp(stride, pads, dilation, groups, primals, tangents):
    """ẏ = x̂ ⋆ w + x ⋆ ŵ. Each term is laid out so that its transpose (what reverse mode runs)
    is canonical: the ẋ term's kernel as (kh, kw, O, I), whose transpose swaps O and I into
    HWIO; the ŵ term as x (C, H, W, N) ⋆ ŵ (I, kh, kw, O) -> (H, W, N, O), whose transpose
    is x (C, H, W, N) NHWC ⋆ g (H, W, N, O) HWIO -> (C, kh, kw, O) NHWC."""
    x, w = primals
    dx, dw = tangents
    y = _correlate(x, w, stride, pads, dilation, groups)
    common = {
        "window_strides": stride,
        "padding": pads,
        "rhs_dilation": dilation,
        "feature_group_count": groups,
    }
    dy = None
    if not isinstance(dx, SymbolicZero):
        dy = lax.conv_general_dilated(
            dx.transpose(_NHWC), w.transpose(2, 3, 0, 1), dimension_numbers=("NHWC", "HWOI", "NHWC"), **common
        ).transpose(_NCHW)
    if not isinstance(dw, SymbolicZero):
        if _gemm_weight(x, groups):  # its transpose is correlate_weight's im2col GEMM
            term = _patches(x, w.shape[2:], y.shape[2:], stride, pads, dilation) @ _matrix(dw)
            term = term.transpose(_NCHW)
        else:
            term = lax.conv_general_dilated(
                x.transpose(1, 2, 3, 0),
                dw.transpose(1, 2, 3, 0),
                dimension_numbers=("CHWN", "IHWO", "HWNC"),
                **common,
            ).transpose(2, 3, 0, 1)
        dy = term if dy is None else dy + term
    return y, dy


_correlate.defjvp(_correlate_jvp, symbolic_zeros=True)
correlate = _as_2d(_correlate)


@_as_2d
def correlate_transposed(g, w_t, stride, full, dilation, groups):
    out = lax.conv_general_dilated(
        g.transpose(_NHWC),
        w_t.transpose(2, 3, 1, 0),
        (1, 1),
        full,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=CANONICAL,
        feature_group_count=groups,
    )
    return out.transpose(_NCHW)


@_as_2d
def correlate_weight(x, g, stride, reach, dilation, groups):
    if _gemm_weight(x, groups):
        sizes = [lo + size + hi for size, (lo, hi) in zip(x.shape[2:], reach, strict=True)]
        out = g.shape[2:]
        kernel = [
            (size - (p - 1) * s - 1) // d + 1
            for size, p, s, d in zip(sizes, out, stride, dilation, strict=True)
        ]
        patches = _patches(x, kernel, out, stride, reach, dilation).reshape(-1, kernel[0] * kernel[1])
        gw = patches.T @ g.transpose(_NHWC).reshape(-1, g.shape[1])  # (kh·kw, O)
        return gw.T.reshape(g.shape[1], 1, *kernel)
    # x (C, H, W, N): C the batch, N the summed feature; g (H, W, N, O) the kernel
    out = lax.conv_general_dilated(
        x.transpose(1, 2, 3, 0),
        g.transpose(2, 3, 0, 1),
        dilation,
        reach,
        rhs_dilation=stride,
        dimension_numbers=CANONICAL,
        batch_group_count=groups,
    )
    return out.transpose(3, 0, 1, 2)  # (C_in/groups, kh, kw, C_out) -> (C_out, C_in/groups, kh, kw)
