"""Derivatives twice: every manual backward composes with jax.vmap and jax.jvp.

For each op with a hand-derived ``*_backward`` in ``fnn.functional`` (losses included) and
each layer in ``fnn.nn`` (through ``Layer.backward``, i.e. the ``apply_vjp`` pullback), the
scalar objective is L(θ) = Σ f(θ)·v for a fixed cotangent v, and the manual gradient is
G(θ) = backward(v, θ). In float64:

(a) per-example gradients: ``jax.vmap(G)`` over a batch of independent examples (each its own
    call of the op, parameters shared) equals ``jax.vmap(jax.grad(L))``;
(b) forward-over-reverse Hessian-vector products: ``jax.jvp(G, θ, t)`` equals
    ``jax.jvp(jax.grad(L), θ, t)`` and the central differences (G(θ + h·t) − G(θ − h·t))/2h
    of the manual gradient (the independent check: it needs only G's values).

Piecewise-linear ops (relu, leaky_relu, abs, maxout, l1, the linear pieces of huber and
smooth_l1, dropout's mask) have a Hessian that is zero almost everywhere and undefined at
the kinks, so their inputs are drawn at least ``_MARGIN`` away from every kink (|x| for
relu/abs, the gap between maxout's pieces, |x − y| − δ for huber): the finite differences
with step ``_H`` then never straddle one, and the check says the manual HVP is that zero
(or, for prelu, linear and huber, the cross and curved terms that are not).
Tiny shapes; each case's quantities come from one compiled program (cheaper here than
eager dispatch, which compiles every primitive under every transformation on its own).
BCE's forward and backward share ``_bce_dx`` (its ``custom_jvp``), so its second
derivative is also checked against the closed form.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

_B = 3  # examples per vmap batch
_H = 1e-5  # finite-difference step along the direction
_MARGIN = 0.2  # minimum distance of any input from a kink


# ----------------------------------------------------------------------------- inputs


# Inputs are drawn with numpy: jax.random would compile a sampler per shape, eagerly.


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _uniform(rng, shape, low, high):
    return rng.uniform(low, high, shape)


def _off_kink(rng, shape, kink=0.0):
    """Normal draws pushed at least _MARGIN away from `kink` (keeping their side)."""
    z = rng.standard_normal(shape)
    return kink + np.sign(z) * (np.abs(z) + _MARGIN)


def _away_from(rng, shape, kinks, high):
    """Magnitudes in [_MARGIN, high] at least _MARGIN from every kink, with random signs."""
    mag = rng.uniform(_MARGIN, high, shape)

    def near(m):
        return np.any([np.abs(m - k) < _MARGIN for k in kinks], axis=0)

    while np.any(near(mag)):
        mag = np.where(near(mag), rng.uniform(_MARGIN, high, shape), mag)
    return np.where(rng.uniform(size=shape) < 0.5, -mag, mag)


def _maxout_input(rng, n, out, pieces):
    """(n, out*pieces) with distinct pieces per group: a random permutation of levels 0, 1,
    ... plus noise below 0.1, so the winner leads the runner-up by more than _MARGIN."""
    levels = np.argsort(rng.uniform(size=(n * out, pieces)), axis=1).astype(np.float64)
    noise = rng.uniform(-0.1, 0.1, (n * out, pieces))
    return (levels + noise).reshape(n, out * pieces)


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ----------------------------------------------------------------------------- cases


@dataclass(eq=False)  # hashed by identity: _results caches per case
class Case:
    """One op (or layer) under test.

    ``make(rng) -> (diff, data)`` draws one example: ``diff`` the differentiable inputs
    (a dict, in the backward's return order), ``data`` the non-differentiable array
    arguments (targets, keys), batched per example under vmap. ``forward(**diff, **data)``
    gives the output; ``backward(g, **diff, **data)`` the manual gradients as a tuple in
    ``diff``'s order (a bare array for one). ``shared`` names the diff entries that are
    parameters, broadcast across a vmap batch like DP-SGD's weights.
    """

    id: str
    op: str  # the functional op (or layer class name) covered, for the coverage tests
    make: Callable[[jax.Array], tuple[dict[str, Any], dict[str, Any]]]
    forward: Callable[..., jax.Array]
    backward: Callable[..., Any]
    shared: tuple[str, ...] = ()


def _op_case(id, op, make, shared=(), **static):
    """A case for F.<op> with F.<op>_backward, static options bound as keywords."""
    fwd = functools.partial(getattr(F, op), **static)
    bwd = functools.partial(getattr(F, f"{op}_backward"), **static)
    return Case(id, op, make, fwd, bwd, shared)


def _x(shape, kink=None, low=None, high=None):
    """make() for a single differentiable `input`."""

    def make(rng):
        if low is not None:
            return {"input": _uniform(rng, shape, low, high)}, {}
        return {"input": _normal(rng, shape) if kink is None else _off_kink(rng, shape, kink)}, {}

    return make


def _make_prelu(channels):
    def make(rng):
        return {"input": _off_kink(rng, (4, 3)), "weight": _uniform(rng, (channels,), 0.1, 0.5)}, {}

    return make


def _make_linear(bias):
    def make(rng):
        diff = {"input": _normal(rng, (2, 4)), "weight": _normal(rng, (3, 4))}
        if bias:
            diff["bias"] = _normal(rng, (3,))
        return diff, {}

    return make


def _make_batch_norm(training):
    def make(rng):
        diff = {
            "input": _normal(rng, (5, 3)),
            "weight": _uniform(rng, (3,), 0.5, 1.5),
            "bias": _normal(rng, (3,)),
        }
        data = {"running_mean": _normal(rng, (3,)), "running_var": _uniform(rng, (3,), 0.5, 2.0)}
        return diff, data

    return make


def _batch_norm_fwd(input, weight, bias, running_mean, running_var, training):
    return F.batch_norm(input, running_mean, running_var, weight, bias, training=training)[0]


def _batch_norm_bwd(g, input, weight, bias, running_mean, running_var, training):
    return F.batch_norm_backward(g, input, running_mean, running_var, weight, bias, training=training)


def _batch_norm_case(id, training):
    return Case(
        id,
        "batch_norm",
        _make_batch_norm(training),
        functools.partial(_batch_norm_fwd, training=training),
        functools.partial(_batch_norm_bwd, training=training),
        shared=("weight", "bias"),
    )


def _make_conv(x_shape, w_shape, bias=True):
    def make(rng):
        diff = {"input": _normal(rng, x_shape), "weight": _normal(rng, w_shape)}
        if bias:
            diff["bias"] = _normal(rng, (w_shape[0],))
        return diff, {}

    return make


def _distinct(rng, shape):
    """Values 0.5 apart in random order: no window of a max-pool holds a tie or a near-tie,
    so the finite differences never move its maximum (a max-pool is piecewise linear)."""
    n = int(np.prod(shape))
    return (0.5 * rng.permutation(n) - 0.25 * n).reshape(shape)


def _pool_x(shape):
    return lambda rng: ({"input": _distinct(rng, shape)}, {})


def _make_layer_norm(rng):
    return {
        "input": _normal(rng, (2, 2, 3)),
        "weight": _uniform(rng, (2, 3), 0.5, 1.5),
        "bias": _normal(rng, (2, 3)),
    }, {}


def _make_dropout(rng):
    return {"input": _normal(rng, (4, 3))}, {"key": jax.random.key(rng.integers(2**31))}


def _make_dropout2d(rng):
    return {"input": _normal(rng, (2, 3, 2, 2))}, {"key": jax.random.key(rng.integers(2**31))}


def _make_pointwise(kinks=None, low=None, high=None, target_range=None, weight=False, pos_weight=False):
    """input and target of shape (2, 3). With `kinks`, the difference input − target keeps
    _MARGIN away from each kink of |d| (and lands on both sides of a Huber/SmoothL1 switch);
    with `low`, the input is a probability in (low, high)."""

    def make(rng):
        shape = (2, 3)
        target = _normal(rng, shape) if target_range is None else _uniform(rng, shape, *target_range)
        if low is not None:
            input = _uniform(rng, shape, low, high)
        elif kinks is not None:
            input = target + _away_from(rng, shape, kinks, max(kinks) + 1.0)
        else:
            input = _normal(rng, shape)
        data = {"target": target}
        if weight:
            data["weight"] = _uniform(rng, shape, 0.5, 2.0)
        if pos_weight:
            data["pos_weight"] = _uniform(rng, (3,), 0.5, 3.0)
        return {"input": input}, data

    return make


def _make_classes(shape, num_classes, weight=False, probs=False, ignore=None, log_probs=False):
    """Logits of `shape` (classes on dim 1, or dim 0 unbatched) with index or probability targets."""
    axis = 0 if len(shape) == 1 else 1

    def make(rng):
        x = _normal(rng, shape)
        if log_probs:
            x = np.log(_softmax(x, axis))
        if probs:
            target = _softmax(_normal(rng, shape), axis)
        else:
            item = () if len(shape) == 1 else (shape[0], *shape[2:])
            target = rng.integers(0, num_classes, item).astype(np.int32)
            if ignore is not None:
                target.reshape(-1)[0] = ignore
        data = {"target": target}
        if weight:
            data["weight"] = _uniform(rng, (num_classes,), 0.5, 2.0)
        return {"input": x}, data

    return make


OP_CASES = [
    _op_case("relu", "relu", _x((3, 4), kink=0.0)),
    _op_case("leaky_relu", "leaky_relu", _x((3, 4), kink=0.0), negative_slope=0.2),
    _op_case("prelu_shared", "prelu", _make_prelu(1), shared=("weight",)),
    _op_case("prelu_per_channel", "prelu", _make_prelu(3), shared=("weight",)),
    _op_case("abs", "abs", _x((3, 4), kink=0.0)),
    _op_case("elu", "elu", _x((3, 4), kink=0.0), alpha=0.7),
    _op_case("sigmoid", "sigmoid", _x((3, 4))),
    _op_case("tanh", "tanh", _x((3, 4))),
    _op_case("softplus", "softplus", _x((3, 4))),
    # beta·x = 2x crosses threshold 1 at x = 0.5: both branches, none near the switch
    _op_case("softplus_threshold", "softplus", _x((3, 4), kink=0.5), beta=2.0, threshold=1.0),
    _op_case("logsumexp", "logsumexp", _x((3, 4)), dim=1),
    _op_case("logsumexp_dims_keepdim", "logsumexp", _x((2, 3, 2)), dim=(0, 2), keepdim=True),
    _op_case("softmax", "softmax", _x((3, 4)), dim=1),
    _op_case("softmax_dim0", "softmax", _x((3, 4)), dim=0),
    _op_case("log_softmax", "log_softmax", _x((3, 4)), dim=-1),
    _op_case("maxout", "maxout", lambda rng: ({"input": _maxout_input(rng, 2, 2, 3)}, {}), pieces=3),
    _op_case("dropout", "dropout", _make_dropout, p=0.4),
    _op_case("dropout_eval", "dropout", _make_dropout, p=0.4, training=False),
    _op_case("dropout2d", "dropout2d", _make_dropout2d, p=0.4),
    _op_case("scaled_tanh", "scaled_tanh", _x((3, 4)), amplitude=1.5, slope=0.8),
    _op_case("unflatten", "unflatten", _x((2, 6)), dim=1, sizes=(3, 2)),
    _op_case("linear", "linear", _make_linear(True), shared=("weight", "bias")),
    _op_case("linear_no_bias", "linear", _make_linear(False), shared=("weight",)),
    _op_case("flatten", "flatten", _x((2, 3, 2)), start_dim=1),
    _batch_norm_case("batch_norm_train", training=True),
    _batch_norm_case("batch_norm_eval", training=False),
    _op_case(
        "layer_norm", "layer_norm", _make_layer_norm, shared=("weight", "bias"), normalized_shape=(2, 3)
    ),
    _op_case("l1_loss", "l1_loss", _make_pointwise(kinks=(0.0,))),
    _op_case("l1_loss_none", "l1_loss", _make_pointwise(kinks=(0.0,)), reduction="none"),
    _op_case("mse_loss", "mse_loss", _make_pointwise()),
    _op_case("mse_loss_sum", "mse_loss", _make_pointwise(), reduction="sum"),
    _op_case("huber_loss", "huber_loss", _make_pointwise(kinks=(0.0, 1.5)), delta=1.5),
    _op_case("smooth_l1_loss", "smooth_l1_loss", _make_pointwise(kinks=(0.8,)), beta=0.8),
    _op_case(
        "binary_cross_entropy",
        "binary_cross_entropy",
        _make_pointwise(low=0.1, high=0.9, target_range=(0.0, 1.0), weight=True),
    ),
    _op_case(
        "bce_with_logits",
        "binary_cross_entropy_with_logits",
        _make_pointwise(target_range=(0.0, 1.0), weight=True, pos_weight=True),
    ),
    _op_case(
        "bce_with_logits_none",
        "binary_cross_entropy_with_logits",
        _make_pointwise(target_range=(0.0, 1.0)),
        reduction="none",
    ),
    _op_case(
        "nll_loss_weight_ignore",
        "nll_loss",
        _make_classes((4, 3), 3, weight=True, ignore=1, log_probs=True),
        ignore_index=1,
    ),
    _op_case("nll_loss_kdim_none", "nll_loss", _make_classes((2, 3, 2), 3, log_probs=True), reduction="none"),
    _op_case("cross_entropy", "cross_entropy", _make_classes((4, 3), 3)),
    _op_case(
        "cross_entropy_weight_ignore_smoothing",
        "cross_entropy",
        _make_classes((4, 3), 3, weight=True, ignore=-100),
        label_smoothing=0.2,
    ),
    _op_case(
        "cross_entropy_probs_smoothing",
        "cross_entropy",
        _make_classes((4, 3), 3, probs=True),
        label_smoothing=0.1,
    ),
    _op_case("cross_entropy_kdim_none", "cross_entropy", _make_classes((2, 3, 2), 3), reduction="none"),
    _op_case("cross_entropy_unbatched", "cross_entropy", _make_classes((3,), 3), reduction="sum"),
    # conv is bilinear in (input, weight): its HVP is the cross terms conv(t_x, w) + conv(x, t_w)
    _op_case(
        "conv1d_stride_pad_dilation",
        "conv1d",
        _make_conv((2, 2, 9), (3, 2, 3)),
        shared=("weight", "bias"),
        stride=2,
        padding=1,
        dilation=2,
    ),
    _op_case(
        "conv2d_groups_same_even_kernel_no_bias",
        "conv2d",
        _make_conv((1, 4, 5, 4), (2, 2, 2, 3), bias=False),
        shared=("weight",),
        padding="same",
        groups=2,
    ),
    _op_case(
        "conv2d_unbatched_stride_tuple",
        "conv2d",
        _make_conv((2, 5, 6), (3, 2, 2, 3)),
        shared=("weight", "bias"),
        stride=(2, 1),
        padding=(1, 0),
    ),
    # the fill value is the forward's alone (pad_backward has no `value`)
    Case(
        "pad_constant_crop_value",
        "pad",
        _x((2, 3, 4)),
        functools.partial(F.pad, pad=(1, -1, 2, 0), mode="constant", value=0.5),
        functools.partial(F.pad_backward, pad=(1, -1, 2, 0), mode="constant"),
    ),
    _op_case("pad_reflect", "pad", _x((1, 2, 4, 3)), pad=(2, 1, 1, 2), mode="reflect"),
    _op_case("pad_replicate", "pad", _x((1, 2, 3)), pad=(2, 3), mode="replicate"),
    _op_case("pad_circular", "pad", _x((1, 1, 3, 4)), pad=(1, 2, 2, 1), mode="circular"),
    # pooling is linear in its input (max-pool piecewise, away from ties): the HVP is zero
    _op_case(
        "max_pool1d_pad_dilation_ceil",
        "max_pool1d",
        _pool_x((2, 2, 9)),
        kernel_size=3,
        stride=2,
        padding=1,
        dilation=2,
        ceil_mode=True,
    ),
    _op_case(
        "max_pool2d_overlap_unbatched",
        "max_pool2d",
        _pool_x((2, 5, 5)),
        kernel_size=(3, 2),
        stride=1,
        padding=(1, 0),
    ),
    _op_case(
        "avg_pool1d_exclude_pad_ceil",
        "avg_pool1d",
        _x((2, 2, 8)),
        kernel_size=3,
        stride=2,
        padding=1,
        ceil_mode=True,
        count_include_pad=False,
    ),
    _op_case(
        "avg_pool2d_divisor_override",
        "avg_pool2d",
        _x((1, 2, 5, 6)),
        kernel_size=2,
        padding=1,
        divisor_override=3,
    ),
    _op_case("adaptive_avg_pool2d_none", "adaptive_avg_pool2d", _x((1, 2, 7, 5)), output_size=(3, None)),
]


# ----------------------------------------------------------------------------- layers


def _layer_case(id, layer, x_shape, train=True, kink=None, make_x=None, key_per_example=False):
    """A case for ``layer.backward`` (the apply_vjp pullback): diff = params and input."""
    like_params, like_state = jax.eval_shape(layer.init, jax.random.key(0))

    def make(rng):
        # Random parameters (vectors: scales in [0.5, 1.5]), not init's: BatchNorm's weight
        # of ones and bias of zeros would leave terms of the Hessian untested.
        params = jax.tree.map(
            lambda a: _uniform(rng, a.shape, 0.5, 1.5) if len(a.shape) <= 1 else _normal(rng, a.shape),
            like_params,
        )
        if make_x is not None:
            x = make_x(rng)
        else:
            x = _normal(rng, x_shape) if kink is None else _off_kink(rng, x_shape, kink)
        data = {"key": jax.random.key(rng.integers(2**31))} if key_per_example else {}
        return {"params": params, "input": x}, data

    def state():
        # BatchNorm's running statistics as float64 (the state is not differentiated).
        return jax.tree.map(
            lambda a: (
                np.ones(a.shape) if jnp.issubdtype(a.dtype, jnp.floating) else np.zeros(a.shape, a.dtype)
            ),
            like_state,
        )

    def forward(params, input, key=None):
        return layer.apply(params, state(), input, key=key, train=train)[0]

    def backward(g, params, input, key=None):
        return layer.backward(params, state(), input, g, key=key, train=train)

    return Case(id, type(layer).__name__, make, forward, backward, shared=("params",))


# Sequential's own pullback chains the layers' (each layer is covered alone above).
_MLP = nn.Sequential(
    nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ELU(), nn.Dropout(0.3), nn.Linear(3, 2)
)

LAYER_CASES = [
    _layer_case("ReLU", nn.ReLU(), (3, 4), kink=0.0),
    _layer_case("LeakyReLU", nn.LeakyReLU(0.1), (3, 4), kink=0.0),
    _layer_case("ELU", nn.ELU(0.5), (3, 4)),
    _layer_case("Sigmoid", nn.Sigmoid(), (3, 4)),
    _layer_case("Tanh", nn.Tanh(), (3, 4)),
    _layer_case("Softplus", nn.Softplus(beta=2.0), (3, 4)),
    _layer_case("Softmax", nn.Softmax(dim=1), (3, 4)),
    _layer_case("LogSoftmax", nn.LogSoftmax(dim=1), (3, 4)),
    _layer_case("Abs", nn.Abs(), (3, 4), kink=0.0),
    _layer_case("Maxout", nn.Maxout(3), None, make_x=lambda rng: _maxout_input(rng, 2, 2, 3)),
    _layer_case("PReLU", nn.PReLU(3), (4, 3), kink=0.0),
    _layer_case("Dropout_train", nn.Dropout(0.4), (4, 3), key_per_example=True),
    _layer_case("Dropout_eval", nn.Dropout(0.4), (4, 3), train=False),
    _layer_case("Flatten", nn.Flatten(), (2, 3, 2)),
    _layer_case("Linear", nn.Linear(4, 3), (2, 4)),
    _layer_case("BatchNorm1d_train", nn.BatchNorm1d(3), (5, 3)),
    _layer_case("BatchNorm1d_train_3d", nn.BatchNorm1d(2), (3, 2, 2)),
    _layer_case("BatchNorm1d_eval", nn.BatchNorm1d(3), (5, 3), train=False),
    _layer_case("BatchNorm2d_train", nn.BatchNorm2d(2), (3, 2, 2, 2)),
    _layer_case("Dropout2d_train", nn.Dropout2d(0.4), (2, 3, 2, 2), key_per_example=True),
    _layer_case("ScaledTanh", nn.ScaledTanh(), (3, 4)),
    _layer_case("Unflatten", nn.Unflatten(1, (3, 2)), (2, 6)),
    _layer_case("LayerNorm", nn.LayerNorm(3), (4, 3)),
    _layer_case("Sequential_train", _MLP, (4, 2, 2), key_per_example=True),
    _layer_case("Conv1d_reflect", nn.Conv1d(2, 3, 3, padding=2, padding_mode="reflect"), (2, 2, 5)),
    _layer_case("Conv2d", nn.Conv2d(2, 3, 3, stride=2, padding=1), (1, 2, 5, 5)),
    _layer_case(
        "Conv2d_circular_same_groups",
        nn.Conv2d(4, 2, (2, 3), padding="same", groups=2, bias=False, padding_mode="circular"),
        (1, 4, 3, 4),
    ),
    _layer_case(
        "MaxPool1d", nn.MaxPool1d(3, stride=2, padding=1), None, make_x=lambda rng: _distinct(rng, (2, 2, 7))
    ),
    _layer_case(
        "MaxPool2d", nn.MaxPool2d(2, stride=1), None, make_x=lambda rng: _distinct(rng, (1, 2, 4, 4))
    ),
    _layer_case("AvgPool1d", nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 8)),
    _layer_case("AvgPool2d", nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 5, 5)),
    _layer_case("AdaptiveAvgPool2d", nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 4)),
]


def _loss_spec_case(id, spec, make):
    return Case(
        id,
        type(spec).__name__,
        make,
        lambda input, target: spec(input, target),
        lambda g, input, target: spec.backward(g, input, target),
    )


LOSS_SPEC_CASES = [
    _loss_spec_case(
        "CrossEntropyLoss",
        nn.CrossEntropyLoss(weight=(1.0, 2.0, 0.5), label_smoothing=0.1),
        _make_classes((4, 3), 3),
    ),
    _loss_spec_case("MSELoss", nn.MSELoss(reduction="sum"), _make_pointwise()),
    _loss_spec_case(
        "BCEWithLogitsLoss",
        nn.BCEWithLogitsLoss(pos_weight=(2.0, 1.0, 0.5)),
        _make_pointwise(target_range=(0, 1)),
    ),
]

CASES = OP_CASES + LAYER_CASES + LOSS_SPEC_CASES


# ----------------------------------------------------------------------------- machinery


def _as_tuple(g):
    return g if isinstance(g, tuple) else (g,)


def _manual_grad(case: Case, names, diff, data, v):
    # `names` is the backward's return order; jax rebuilds dicts key-sorted inside transforms.
    # None is the gradient of an optional input left out (linear's bias=None): not in `names`.
    grads = [g for g in _as_tuple(case.backward(v, **diff, **data)) if g is not None]
    return dict(zip(names, grads, strict=True))


def _autodiff_grad(case: Case, diff, data, v):
    return jax.grad(lambda d: jnp.sum(case.forward(**d, **data) * v))(diff)


def _draw(case: Case, rng):
    """One example: (diff, data, cotangent v, direction t), all float64."""
    diff, data = case.make(rng)
    out = jax.eval_shape(lambda d: case.forward(**d, **data), diff)
    v = _normal(rng, out.shape)
    t = jax.tree.map(lambda a: _normal(rng, a.shape), diff)
    return diff, data, v, t


def _assert_trees_close(actual, desired, *, rtol, atol, what):
    """|a − d| ≤ atol·max(1, max|d|) + rtol·|d| per leaf: atol scaled by the leaf's size so
    entries that cancel to ~0 are judged against the leaf's magnitude."""
    paths = jax.tree_util.tree_flatten_with_path(desired)[0]
    actual_leaves = jax.tree.structure(desired).flatten_up_to(actual)
    for (path, d), a in zip(paths, actual_leaves, strict=True):
        a, d = np.asarray(a, np.float64), np.asarray(d, np.float64)
        assert a.shape == d.shape, f"{what} {jax.tree_util.keystr(path)}: shape {a.shape} != {d.shape}"
        scale = max(1.0, float(np.max(np.abs(d), initial=0.0)))
        np.testing.assert_allclose(
            a, d, rtol=rtol, atol=atol * scale, err_msg=f"{what} {jax.tree_util.keystr(path)}"
        )


def _stack(trees):
    def stack(*xs):
        # typed PRNG keys (dropout's) cannot go through numpy
        return jnp.stack(xs) if jnp.issubdtype(xs[0].dtype, jax.dtypes.prng_key) else np.stack(xs)

    return jax.tree.map(stack, *trees)


@functools.cache
def _results(case: Case) -> dict[str, Any]:
    """Every quantity both tests compare, for one case, from one compiled program."""
    rng = np.random.default_rng(1)
    diffs, datas, vs, _ = zip(*[_draw(case, rng) for _ in range(_B)], strict=True)
    names = tuple(diffs[0])
    # Parameters are one set for the whole batch (DP-SGD's layout); the rest is per example.
    diff_b = {n: diffs[0][n] if n in case.shared else _stack([d[n] for d in diffs]) for n in names}
    diff, data, v, t = _draw(case, np.random.default_rng(2))

    def compute(diff_b, data_b, vs, diff, data, v, t):
        in_axes = ({n: None if n in case.shared else 0 for n in names}, 0, 0)
        manual = functools.partial(_manual_grad, case, names)
        auto = functools.partial(_autodiff_grad, case)
        out = {
            "vmap_manual": jax.vmap(manual, in_axes=in_axes)(diff_b, data_b, vs),
            "vmap_auto": jax.vmap(auto, in_axes=in_axes)(diff_b, data_b, vs),
            "hvp_manual": jax.jvp(lambda d: manual(d, data, v), (diff,), (t,))[1],
            "hvp_auto": jax.jvp(lambda d: auto(d, data, v), (diff,), (t,))[1],
        }
        plus = manual(jax.tree.map(lambda p, d: p + _H * d, diff, t), data, v)
        minus = manual(jax.tree.map(lambda p, d: p - _H * d, diff, t), data, v)
        out["hvp_fd"] = jax.tree.map(lambda a, b: (a - b) / (2 * _H), plus, minus)
        return out

    # Compiled without XLA:CPU's slow passes (tests/fast_jit.py): ~1 s a case becomes a fifth
    # of that. (Running eagerly instead compiles every primitive under every transformation
    # separately: three times slower still.)
    return jax.device_get(fast_jit(compute)(diff_b, _stack(datas), np.stack(vs), diff, data, v, t))


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vmap_of_manual_backward_gives_per_example_gradients(case, x64):
    r = _results(case)
    _assert_trees_close(
        r["vmap_manual"], r["vmap_auto"], rtol=1e-10, atol=1e-12, what="vmap(manual) vs vmap(grad)"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_over_reverse_hvp_of_manual_backward(case, x64):
    r = _results(case)
    _assert_trees_close(r["hvp_manual"], r["hvp_auto"], rtol=1e-9, atol=1e-11, what="HVP manual vs jax")
    _assert_trees_close(r["hvp_manual"], r["hvp_fd"], rtol=1e-6, atol=1e-7, what="HVP manual vs FD")


def test_bce_second_derivative_is_the_closed_form(x64):
    # ℓ = −w[y log x + (1 − y) log(1 − x)]: ℓ' = w(x − y)/(x(1 − x)) and
    # ℓ'' = w(x² − 2xy + y)/(x(1 − x))², away from the 1e-12 floor (x in [0.1, 0.9]).
    rng = np.random.default_rng(3)
    x, y, w, t = (
        rng.uniform(0.1, 0.9, (2, 3)),
        rng.uniform(0, 1, (2, 3)),
        rng.uniform(0.5, 2, (2, 3)),
        rng.standard_normal((2, 3)),
    )

    def grad(x):
        return F.binary_cross_entropy_backward(jnp.ones(()), x, y, weight=w, reduction="sum")

    _, hvp = jax.jvp(grad, (jnp.asarray(x),), (jnp.asarray(t),))
    expected = w * (x * x - 2 * x * y + y) / (x * (1 - x)) ** 2 * t
    np.testing.assert_allclose(hvp, expected, rtol=1e-12)


# ----------------------------------------------------------------------------- coverage


def test_every_manual_backward_is_covered():
    backwards = {name.removesuffix("_backward") for name in dir(F) if name.endswith("_backward")}
    covered = {case.op for case in OP_CASES}
    assert backwards - covered == set(), f"ops without a second-order case: {sorted(backwards - covered)}"


def test_every_layer_is_covered():
    layers = {
        name
        for name in nn.__all__
        if inspect.isclass(getattr(nn, name))
        and issubclass(getattr(nn, name), nn.Layer)
        and getattr(nn, name) not in (nn.Layer, nn.Elementwise)
    }
    covered = {case.op for case in LAYER_CASES}
    assert layers - covered == set(), f"layers without a second-order case: {sorted(layers - covered)}"
