"""fold_batchnorm: an eval-mode model with every ``Linear -> BatchNorm1d``, ``Conv1d ->
BatchNorm1d`` and ``Conv2d -> BatchNorm2d`` pair merged into one Linear or convolution
(torch.nn.utils.fusion.fuse_linear_bn_eval / fuse_conv_bn_eval, BN2D-5), so evaluation
skips BatchNorm's work.

The contract: ``fold_batchnorm(model, params, state) -> (model, params, state)`` returns a
new Sequential spec (hashable, so ``jit`` caches on it) whose eval-mode ``apply`` equals the
unfolded model's up to floating-point rounding. The fold is eval-only: the merged layer is a
``FoldedLinear``, ``FoldedConv1d`` or ``FoldedConv2d``, which raises when applied with
``train=True`` (training it would train a different model, one without BatchNorm's batch
statistics). It is pure jax.numpy
over the arrays, with every structural decision taken from the specs alone, so it also runs
inside ``jit`` on traced params (``fnn.train.evaluate`` folds there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from fnn.nn.base import Layer
from fnn.nn.conv import Conv1d, Conv2d
from fnn.nn.linear import Linear
from fnn.nn.normalization import BatchNorm1d, BatchNorm2d
from fnn.nn.sequential import Sequential

__all__ = ["FoldedConv1d", "FoldedConv2d", "FoldedLinear", "fold_batchnorm"]


@dataclass(frozen=True)
class FoldedLinear(Linear):
    """A Linear made by ``fold_batchnorm`` from a ``Linear -> BatchNorm1d`` pair: eval only.

    Its params are a Linear's (``weight``, ``bias``, so ``state_dict`` names match), its
    eval ``apply`` is ``Linear.apply``. It lives here, not in ``fnn.nn``'s public layers:
    only ``fold_batchnorm`` makes one, and torch has no such module (its fusion returns a
    plain Linear). Two decisions where a plain Linear would be silent:

    - ``train=True`` raises: the pair it replaces normalizes with batch statistics in
      training (BN-1), which this layer cannot. To fine-tune the folded weights on purpose,
      build ``nn.Linear(in_features, out_features)`` and pass it the same params.
    - the input must be 2-D (N, in_features): BatchNorm1d normalizes dim 1, which is the
      Linear's output features only for 2-D inputs, so only then is the fold exact.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn.nn.fold import FoldedLinear
        >>> layer = FoldedLinear(2, 1)
        >>> params = {"weight": jnp.array([[1.0, 2.0]]), "bias": jnp.array([0.5])}
        >>> layer.apply(params, {}, jnp.ones((1, 2)), train=False)[0].tolist()
        [[3.5]]
    """

    def _check(self, x: Any, train: bool) -> None:
        if train:
            raise ValueError(
                "FoldedLinear is eval-only (made by fold_batchnorm): apply it with train=False; "
                "train the unfolded Linear -> BatchNorm1d model instead"
            )
        if jnp.ndim(x) != 2:
            raise ValueError(
                f"FoldedLinear needs a 2-D input (N, {self.in_features}): BatchNorm1d's fold is exact "
                f"only when its channels are the Linear's output features; got shape {jnp.shape(x)}"
            )

    def apply(self, params, state, x, *, key=None, train):
        self._check(x, train)
        return super().apply(params, state, x, key=key, train=train)

    def apply_vjp(self, params, state, x, *, key=None, train):
        self._check(x, train)
        return super().apply_vjp(params, state, x, key=key, train=train)


def _eval_only(layer: Layer, train: bool) -> None:
    if train:
        unfolded = type(layer).__name__.removeprefix("Folded")
        raise ValueError(
            f"{type(layer).__name__} is eval-only (made by fold_batchnorm): apply it with train=False; "
            f"train the unfolded {unfolded} -> BatchNorm model instead"
        )


@dataclass(frozen=True)
class FoldedConv1d(Conv1d):
    """A Conv1d made by ``fold_batchnorm`` from a ``Conv1d -> BatchNorm1d`` pair: eval only.

    Its params are a Conv1d's with a ``bias`` (created by the fold if the conv had none), its
    eval ``apply`` is ``Conv1d.apply``; ``train=True`` raises, as ``FoldedLinear``.
    """

    def apply(self, params, state, x, *, key=None, train):
        _eval_only(self, train)
        return super().apply(params, state, x, key=key, train=train)

    def apply_vjp(self, params, state, x, *, key=None, train):
        _eval_only(self, train)
        return super().apply_vjp(params, state, x, key=key, train=train)


@dataclass(frozen=True)
class FoldedConv2d(Conv2d):
    """A Conv2d made by ``fold_batchnorm`` from a ``Conv2d -> BatchNorm2d`` pair: eval only.

    Its params are a Conv2d's with a ``bias`` (created by the fold if the conv had none), its
    eval ``apply`` is ``Conv2d.apply``; ``train=True`` raises, as ``FoldedLinear``.
    """

    def apply(self, params, state, x, *, key=None, train):
        _eval_only(self, train)
        return super().apply(params, state, x, key=key, train=train)

    def apply_vjp(self, params, state, x, *, key=None, train):
        _eval_only(self, train)
        return super().apply_vjp(params, state, x, key=key, train=train)


# (the layer, the BatchNorm that may follow it, its output size's field, the folded class)
_PAIRS = (
    (Linear, BatchNorm1d, "out_features", FoldedLinear),  # a Linear's features are BN1d's channels
    (Conv1d, BatchNorm1d, "out_channels", FoldedConv1d),  # (N, C, L): BN1d's 3-D case
    (Conv2d, BatchNorm2d, "out_channels", FoldedConv2d),
)


def _pair(layer: Layer, bn: Layer):
    """(output size field, folded class) when the pair's eval forward is affine per output
    channel with fixed coefficients, else None."""
    for cls, bn_cls, size, folded in _PAIRS:
        if (
            isinstance(layer, cls)  # a Folded* layer too: folding again is as exact
            and type(bn) is bn_cls  # exactly: BatchNorm2d is a BatchNorm1d subclass
            and bn.track_running_stats  # BN-5: untracked BN uses batch statistics in eval too
            and bn.num_features == getattr(layer, size)
            and bn.dtype == layer.dtype  # otherwise the unfolded model raises (DTYPE-2): keep that
        ):
            return size, folded
    return None


def _fold_pair(layer: Layer, bn: BatchNorm1d, params: dict, bn_params: dict, bn_state: dict, kind):
    """The merged layer and its params, computed in at least float32, stored in the layer dtype."""
    size, folded = kind
    dt = layer.dtype
    work = jnp.promote_types(dt, jnp.float32)
    w = params["weight"].astype(work)  # (out, ...): output channel first for Linear and conv
    b = params["bias"].astype(work) if layer.bias else jnp.zeros((getattr(layer, size),), work)
    mean = bn_state["running_mean"].astype(work)
    var = bn_state["running_var"].astype(work)
    gamma = bn_params["weight"].astype(work) if bn.affine else jnp.ones_like(mean)  # BN-6
    beta = bn_params["bias"].astype(work) if bn.affine else jnp.zeros_like(mean)
    scale = gamma / jnp.sqrt(var + jnp.asarray(bn.eps, work))
    new = {
        "weight": (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(dt),
        "bias": ((b - mean) * scale + beta).astype(dt),
    }
    fields = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer) if f.init}
    fields["bias"] = True  # b' exists even where the layer had no bias
    for hook in ("weight_init", "bias_init"):  # Linear's init hooks: nothing to initialize here
        if hook in fields:
            fields[hook] = None
    return folded(**fields), new


def fold_batchnorm(model: Layer, params: Any, state: Any) -> tuple[Layer, Any, Any]:
    """Merge every eval-mode ``Linear``/``Conv1d -> BatchNorm1d`` and ``Conv2d -> BatchNorm2d``
    pair of a Sequential into one Linear or convolution.

    Derivation. In eval mode BatchNorm uses its running statistics (BN-4), with γ = 1 and
    β = 0 when ``affine=False`` (BN-6), per channel j of its input. That channel is output
    feature j of a Linear, h_j = x · W_j + b_j, and output channel j of a convolution,
    h_j = (x ⋆ W_j) + b_j with W_j = W[j] its (in/groups, k...) filter::

        y_j = γ_j (h_j − μ_j) / √(σ²_j + eps) + β_j          (BN-4, eval)
            = s_j (x ⋆ W_j + b_j − μ_j) + β_j                with s_j = γ_j / √(σ²_j + eps)
            = x ⋆ (s_j W_j) + (s_j (b_j − μ_j) + β_j)

    since ⋆ (a dot product or a correlation) is linear in the filter. So the pair is one layer
    with W'[j] = s_j·W[j] (weight's dim 0 scaled by s) and b' = (b − μ)·s + β, where b = 0 for
    ``bias=False`` (the folded layer then has a bias). That is PyTorch's
    ``torch.nn.utils.fusion.fuse_linear_bn_eval`` / ``fuse_conv_bn_eval``; stride, padding
    (any ``padding_mode``), dilation and groups act on the input and are kept as they are.

    Decisions:

    - Eval only. The merged layer is a ``FoldedLinear``, ``FoldedConv1d`` or ``FoldedConv2d``,
      which raises with ``train=True``: in training the BatchNorm would use batch statistics
      (BN-1) and update its buffers (BN-2), neither of which a Linear or a convolution can
      do. Folding is for evaluation and deployment.
    - Exact up to rounding: the folded model computes the same affine map in another
      order. W' and b' are computed in float32 (float64 for float64 layers) and stored in
      the layer's dtype (bfloat16/float16 layers: one rounding of W' and b').
    - The pairs are exactly ``Linear -> BatchNorm1d``, ``Conv1d -> BatchNorm1d`` and
      ``Conv2d -> BatchNorm2d`` (the BatchNorm whose channels are the layer's outputs).
      What is kept: a BatchNorm with ``track_running_stats=False`` (it normalizes with
      batch statistics in eval too, BN-5), a BatchNorm not directly after such a layer, a
      layer followed by anything else, a pair whose ``num_features`` differs from the
      layer's outputs or whose dtypes differ, and every other layer (Dropout, activations,
      pooling, Flatten) with its params and state as they are. Nested Sequentials are
      folded recursively; a pair split across a Sequential boundary is not folded.
    - A model that is not a Sequential is returned as it is. The result is a new
      Sequential (one layer fewer per pair) with params and state tuples to match; the
      merged layer has no state. A ``FoldedLinear`` applies to 2-D inputs (N, features), the
      case in which its fold is exact (see ``FoldedLinear``).

    Args:
        model: an ``fnn.nn`` layer, usually a ``Sequential``.
        params, state: the model's params and state (concrete or traced arrays).

    Returns:
        ``(folded_model, folded_params, folded_state)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.ReLU())
        >>> params, state = model.init(jax.random.key(0))
        >>> state = ({}, {**state[1], "running_mean": jnp.array([0.5, -1.0])}, {})
        >>> folded, fparams, fstate = nn.fold_batchnorm(model, params, state)
        >>> [type(layer).__name__ for layer in folded]
        ['FoldedLinear', 'ReLU']
        >>> x = jnp.array([[1.0, 2.0, 3.0]])
        >>> want, _ = model.apply(params, state, x, train=False)
        >>> got, _ = folded.apply(fparams, fstate, x, train=False)
        >>> bool(jnp.allclose(got, want, atol=1e-6))
        True
    """
    if not isinstance(model, Sequential):
        return model, params, state
    model._check_trees(params, state)
    layers, new_params, new_state = [], [], []
    i, n = 0, len(model)
    while i < n:
        layer, p, s = model[i], params[i], state[i]
        kind = _pair(layer, model[i + 1]) if i + 1 < n else None
        if kind is not None:
            folded, folded_params = _fold_pair(layer, model[i + 1], p, params[i + 1], state[i + 1], kind)
            layers.append(folded)
            new_params.append(folded_params)
            new_state.append({})
            i += 2
            continue
        if isinstance(layer, Sequential):
            layer, p, s = fold_batchnorm(layer, p, s)
        layers.append(layer)
        new_params.append(p)
        new_state.append(s)
        i += 1
    return Sequential(*layers), tuple(new_params), tuple(new_state)
