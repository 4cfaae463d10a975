"""fold_batchnorm: an eval-mode model with every ``Linear -> BatchNorm1d`` pair merged into one
Linear (torch.nn.utils.fusion.fuse_linear_bn_eval), so evaluation skips BatchNorm's work.

The contract: ``fold_batchnorm(model, params, state) -> (model, params, state)`` returns a
new Sequential spec (hashable, so ``jit`` caches on it) whose eval-mode ``apply`` equals the
unfolded model's up to floating-point rounding. The fold is eval-only: the merged layer is a
``FoldedLinear``, a Linear that raises when applied with ``train=True`` (training it would
train a different model, one without BatchNorm's batch statistics). It is pure jax.numpy
over the arrays, with every structural decision taken from the specs alone, so it also runs
inside ``jit`` on traced params (``fnn.train.evaluate`` folds there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from fnn.nn.base import Layer
from fnn.nn.linear import Linear
from fnn.nn.normalization import BatchNorm1d
from fnn.nn.sequential import Sequential

__all__ = ["FoldedLinear", "fold_batchnorm"]


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


def _foldable(linear: Layer, bn: Layer) -> bool:
    """A pair whose eval forward is affine per output feature with fixed coefficients."""
    return (
        isinstance(linear, Linear)  # a FoldedLinear too: folding again is as exact
        and type(bn) is BatchNorm1d  # not BatchNorm2d: a Linear's features are not its channels
        and bn.track_running_stats  # BN-5: untracked BN uses batch statistics in eval too
        and bn.num_features == linear.out_features
        and bn.dtype == linear.dtype  # otherwise the unfolded model raises (DTYPE-2): keep that
    )


def _fold_pair(linear: Linear, bn: BatchNorm1d, lin_params: dict, bn_params: dict, bn_state: dict):
    """The merged layer and its params, computed in at least float32, stored in the layer dtype."""
    dt = linear.dtype
    work = jnp.promote_types(dt, jnp.float32)
    w = lin_params["weight"].astype(work)
    b = lin_params["bias"].astype(work) if linear.bias else jnp.zeros((linear.out_features,), work)
    mean = bn_state["running_mean"].astype(work)
    var = bn_state["running_var"].astype(work)
    gamma = bn_params["weight"].astype(work) if bn.affine else jnp.ones_like(mean)  # BN-6
    beta = bn_params["bias"].astype(work) if bn.affine else jnp.zeros_like(mean)
    scale = gamma / jnp.sqrt(var + jnp.asarray(bn.eps, work))
    params = {"weight": (w * scale[:, None]).astype(dt), "bias": ((b - mean) * scale + beta).astype(dt)}
    return FoldedLinear(linear.in_features, linear.out_features, dtype=dt), params


def fold_batchnorm(model: Layer, params: Any, state: Any) -> tuple[Layer, Any, Any]:
    """Merge every eval-mode ``Linear -> BatchNorm1d`` pair of a Sequential into one Linear.

    Derivation. In eval mode BatchNorm1d uses its running statistics (BN-4), with γ = 1 and
    β = 0 when ``affine=False`` (BN-6). For the Linear's output h = x Wᵀ + b, per output
    feature j::

        y_j = γ_j (h_j − μ_j) / √(σ²_j + eps) + β_j          (BN-4, eval)
            = s_j (x · W_j + b_j − μ_j) + β_j                with s_j = γ_j / √(σ²_j + eps)
            = x · (s_j W_j) + (s_j (b_j − μ_j) + β_j)

    so the pair is one Linear with W' = diag(s) W (row j scaled by s_j) and
    b' = (b − μ)·s + β, where b = 0 for ``Linear(bias=False)``. That is PyTorch's
    ``torch.nn.utils.fusion.fuse_linear_bn_eval``.

    Decisions:

    - Eval only. The merged layer is a ``FoldedLinear``, which raises with ``train=True``:
      in training the BatchNorm would use batch statistics (BN-1) and update its buffers
      (BN-2), neither of which a Linear can do. Folding is for evaluation and deployment.
    - Exact up to rounding: the folded model computes the same affine map in another
      order. W' and b' are computed in float32 (float64 for float64 layers) and stored in
      the layer's dtype (bfloat16/float16 layers: one rounding of W' and b').
    - What is kept: a BatchNorm1d with ``track_running_stats=False`` (it normalizes with
      batch statistics in eval too, BN-5), a BatchNorm1d not directly after a Linear, a
      Linear followed by anything else, a pair whose ``num_features`` differs from
      ``out_features`` or whose dtypes differ, and every other layer (Dropout, activations,
      Flatten) with its params and state as they are. Nested Sequentials are folded
      recursively; a pair split across a Sequential boundary is not folded.
    - A model that is not a Sequential is returned as it is. The result is a new
      Sequential (one layer fewer per pair) with params and state tuples to match; the
      merged layer has no state. It applies to 2-D inputs (N, features), the case in
      which the fold is exact (see ``FoldedLinear``).

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
        if i + 1 < n and _foldable(layer, model[i + 1]):
            folded, folded_params = _fold_pair(layer, model[i + 1], p, params[i + 1], state[i + 1])
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
