"""BatchNorm1d, BatchNorm2d and LayerNorm layers (BN-1..8, BN2D-1..4).

Both take torch's factory keyword ``dtype=`` (keyword-only; DTYPE-1): ``'float32'``
(default), ``'float64'`` (needs JAX's 64-bit mode), ``'bfloat16'`` or ``'float16'``. The
parameters and BatchNorm1d's ``running_mean`` / ``running_var`` are of that dtype;
``num_batches_tracked`` is always int32 (where torch uses int64: int32 needs no 64-bit mode,
and the default float32 run keeps that off; ``load_state_dict`` casts). An input of another
dtype than the layer's arrays raises (DTYPE-2), with one exception, torch's CPU "mixed type"
BatchNorm: a bfloat16 or float16 input to a float32 BatchNorm1d is cast up, normalized and its
statistics (batch and running) computed in float32, and the output is cast back to the input's
dtype (DTYPE-4; mixed-precision training keeps BatchNorm's statistics float32 this way).
``track_running_stats=False`` gives no state and batch statistics in both modes (BN-5);
``affine=False`` gives no params (BN-6).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp

from fnn import functional as F
from fnn._checks import check_int, is_int
from fnn.functional.normalization import normalized_dims
from fnn.nn.base import Layer, canonical_dtype, check_input_dtype, require_dtype_available

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


_LOW = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _mixed_input(x, params, state):
    """The input's dtype when it is bfloat16/float16 and every floating array of the layer is
    float32 (torch's CPU mixed-type BatchNorm, DTYPE-4), else None."""
    x_dtype = jnp.result_type(x)
    arrays = [a for a in (*params.values(), *state.values()) if jnp.issubdtype(a.dtype, jnp.floating)]
    if x_dtype in _LOW and arrays and all(a.dtype == jnp.float32 for a in arrays):
        return x_dtype
    return None


@dataclass(frozen=True)
class BatchNorm1d(Layer):
    """torch.nn.BatchNorm1d over the channels of (N, C) or (N, C, L) inputs (BN-1..8).

    Training normalises with the batch mean and biased variance and updates
    running_mean / running_var with the unbiased one; eval uses the running statistics.
    Params: ``weight`` (ones) and ``bias`` (zeros) of shape (C,) when ``affine``. State:
    ``running_mean`` (zeros), ``running_var`` (ones) and the int32 ``num_batches_tracked``
    when ``track_running_stats``.

    Args:
        num_features: C, the size of the input's dim 1.
        eps: added to the variance before the square root (default 1e-5).
        momentum: the running statistics' update factor, r ← (1 − m)·r + m·batch (default
            0.1); None for a cumulative average over the batches seen (BN-3).
        affine: learn a per-channel scale and shift (default True).
        track_running_stats: keep running statistics (default True); False gives no state
            and batch statistics in both modes (BN-5).
        dtype: torch's factory keyword, keyword-only (DTYPE-1); see the module docstring.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> bn = nn.BatchNorm1d(1)
        >>> params, state = bn.init(jax.random.key(0))
        >>> y, state = bn.apply(params, state, jnp.array([[1.0], [3.0]]), train=True)
        >>> y.round(4).tolist()
        [[-1.0], [1.0]]
        >>> state["running_mean"].round(4).tolist(), state["running_var"].round(4).tolist()
        ([0.2], [1.1])
    """

    num_features: int
    eps: float = 1e-5
    momentum: float | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    dtype: str = field(default="float32", kw_only=True)

    _NDIMS = (2, 3)  # torch's _check_input_dim: the ranks this module accepts

    def __post_init__(self):
        object.__setattr__(self, "num_features", check_int("num_features", self.num_features, minimum=0))
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, type(self).__name__))

    def _check_input_dim(self, x) -> None:
        if jnp.ndim(x) not in self._NDIMS:
            want = " or ".join(f"{d}D" for d in self._NDIMS)
            raise ValueError(
                f"{type(self).__name__}: expected {want} input "
                f"(got {jnp.ndim(x)}D input of shape {jnp.shape(x)})"
            )

    def init(self, key):
        require_dtype_available(self.dtype, type(self).__name__)
        c, dt = self.num_features, self.dtype
        params = {"weight": jnp.ones((c,), dt), "bias": jnp.zeros((c,), dt)} if self.affine else {}
        state = {}
        if self.track_running_stats:
            state = {
                "running_mean": jnp.zeros((c,), dt),
                "running_var": jnp.ones((c,), dt),
                "num_batches_tracked": jnp.zeros((), jnp.int32),
            }
        return params, state

    def _call_args(self, params, state, train):
        """Arguments of F.batch_norm for this mode: batch stats when training or untracked."""
        use_batch = train or not self.track_running_stats
        return dict(
            running_mean=state.get("running_mean"),
            running_var=state.get("running_var"),
            weight=params.get("weight"),
            bias=params.get("bias"),
            training=use_batch,
            momentum=self.momentum,
            eps=self.eps,
            num_batches_tracked=state.get("num_batches_tracked"),
        )

    def apply(self, params, state, x, *, key=None, train):
        self._check_input_dim(x)
        low = _mixed_input(x, params, state)
        check_input_dtype(type(self).__name__, x if low is None else x.astype(jnp.float32), params, state)
        if low is not None:  # DTYPE-4: statistics in float32, the output in the input's dtype
            x = x.astype(jnp.float32)
        y, mean, var = F.batch_norm(x, **self._call_args(params, state, train))
        if low is not None:
            y = y.astype(low)
        if not (train and self.track_running_stats):
            return y, state
        return y, {
            "running_mean": mean,
            "running_var": var,
            "num_batches_tracked": state["num_batches_tracked"] + 1,
        }

    def apply_vjp(self, params, state, x, *, key=None, train):
        # The backward recomputes the batch statistics from x (F.batch_norm_backward's
        # contract); under jit XLA merges that with the forward's.
        y, new_state = self.apply(params, state, x, key=key, train=train)

        low = _mixed_input(x, params, state)
        x32 = x if low is None else x.astype(jnp.float32)

        def pullback(grad_y):
            if low is not None:  # DTYPE-4: the backward in float32 too, grad_x in the input's dtype
                grad_y = grad_y.astype(jnp.float32)
            args = self._call_args(params, state, train)
            grad_x, grad_w, grad_b = F.batch_norm_backward(grad_y, x32, **args)
            if low is not None:
                grad_x = grad_x.astype(low)
            return ({"weight": grad_w, "bias": grad_b} if self.affine else {}), grad_x

        return y, new_state, pullback


@dataclass(frozen=True)
class BatchNorm2d(BatchNorm1d):
    """torch.nn.BatchNorm2d over the channels of (N, C, H, W) inputs (BN-1..8, BN2D-1..4).

    BatchNorm1d's rules with statistics per channel over N, H and W (n = N·H·W, BN2D-1):
    the batch mean and biased variance normalise in training, running_mean / running_var
    are updated with the unbiased variance (÷(n − 1)), eval uses the running statistics.
    Params, state, ``momentum=None``, ``track_running_stats``, dtypes and ``num_batches_tracked``
    are BatchNorm1d's, so a torch BatchNorm2d's ``state_dict`` loads unchanged. Only a 4-D
    input is accepted, as torch ("expected 4D input", BN2D-4).

    Args:
        num_features: C, the size of the input's dim 1.
        eps: added to the variance before the square root (default 1e-5).
        momentum: the running statistics' update factor (default 0.1); None for a
            cumulative average over the batches seen (BN-3).
        affine: learn a per-channel scale and shift (default True).
        track_running_stats: keep running statistics (default True); False gives no state
            and batch statistics in both modes (BN-5).
        dtype: torch's factory keyword, keyword-only (DTYPE-1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> bn = nn.BatchNorm2d(1)
        >>> params, state = bn.init(jax.random.key(0))
        >>> x = jnp.array([[[[1.0, 3.0]]], [[[1.0, 3.0]]]])  # (2, 1, 1, 2): n = 4
        >>> y, state = bn.apply(params, state, x, train=True)
        >>> y.round(4).reshape(-1).tolist()
        [-1.0, 1.0, -1.0, 1.0]
        >>> state["running_mean"].round(4).tolist(), state["running_var"].round(4).tolist()
        ([0.2], [1.0333])
    """

    _NDIMS = (4,)


@dataclass(frozen=True)
class LayerNorm(Layer):
    """torch.nn.LayerNorm over the trailing ``normalized_shape`` dims, the same in train and eval.

    Params: ``weight`` (ones) and ``bias`` (zeros) of shape ``normalized_shape`` when
    ``elementwise_affine`` (``bias`` only if ``bias``); no state.

    Args:
        normalized_shape: an int or a tuple (a list is stored as a tuple): the input's last dims.
        eps: added to the (biased) variance before the square root (default 1e-5).
        elementwise_affine: learn a per-element scale and, with ``bias``, a shift (default True).
        bias: learn the shift, when ``elementwise_affine`` (default True).
        dtype: torch's factory keyword, keyword-only (DTYPE-1); see the module docstring.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> ln = nn.LayerNorm(2)
        >>> params, state = ln.init(jax.random.key(0))
        >>> y, _ = ln.apply(params, state, jnp.array([[1.0, 3.0]]), train=False)
        >>> y.round(4).tolist()
        [[-1.0, 1.0]]
    """

    normalized_shape: int | tuple[int, ...]
    eps: float = 1e-5
    elementwise_affine: bool = True
    bias: bool = True
    dtype: str = field(default="float32", kw_only=True)

    def __post_init__(self):
        # An int stays an int; a list (as torch accepts) would make the spec unhashable, so
        # a sequence is stored as a tuple.
        dims = normalized_dims(self.normalized_shape)
        shape = dims[0] if is_int(self.normalized_shape) else dims
        object.__setattr__(self, "normalized_shape", shape)
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype, "LayerNorm"))

    @property
    def _shape(self) -> tuple[int, ...]:
        return normalized_dims(self.normalized_shape)

    def init(self, key):
        if not self.elementwise_affine:
            return {}, {}
        require_dtype_available(self.dtype, "LayerNorm")
        params = {"weight": jnp.ones(self._shape, self.dtype)}
        if self.bias:
            params["bias"] = jnp.zeros(self._shape, self.dtype)
        return params, {}

    def apply(self, params, state, x, *, key=None, train):
        check_input_dtype("LayerNorm", x, params)
        return F.layer_norm(x, self._shape, params.get("weight"), params.get("bias"), self.eps), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        y, new_state = self.apply(params, state, x, key=key, train=train)

        def pullback(grad_y):
            grad_x, grad_w, grad_b = F.layer_norm_backward(
                grad_y, x, self._shape, params.get("weight"), params.get("bias"), self.eps
            )
            grads = {}
            if "weight" in params:
                grads["weight"] = grad_w
            if "bias" in params:
                grads["bias"] = grad_b
            return grads, grad_x

        return y, new_state, pullback
