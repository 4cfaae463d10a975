"""The layer protocol shared by every spec in fnn.nn.

A layer is an immutable, hashable dataclass that holds only hyperparameters. It has four
pure methods (DESIGN.md, tier 2); a layer implements the first three and inherits the last:

- ``init(key) -> (params, state)``: dicts of arrays with PyTorch's names; ``{}`` when a
  layer has none. Structures and dtypes are final here, so jitted steps never retrace.
- ``apply(params, state, x, *, key=None, train) -> (y, new_state)``: the plain forward in
  ``jax.numpy``, the one ``jax.grad`` differentiates. ``train`` is a static Python bool.
- ``apply_vjp(params, state, x, *, key=None, train) -> (y, new_state, pullback)``: the one
  primitive of the manual path. It runs the same forward (``y`` and ``new_state`` equal
  ``apply``'s) and returns ``pullback(grad_y) -> (grad_params, grad_x)``, built from the
  ``fnn.functional`` ``*_backward`` ops over the values of that forward (Dropout's mask,
  Sequential's per-layer inputs), so a training step runs the forward once.
- ``backward(params, state, x, grad_y, *, key=None, train) -> (grad_params, grad_x)`` is
  derived from ``apply_vjp`` here, once, and no layer overrides it: it takes the same
  ``state`` and ``key`` as the forward it differentiates (Dropout draws the same mask from
  the same key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

Params = dict[str, jax.Array]
State = dict[str, jax.Array]

# PyTorch registers parameters and buffers in this order; jax's dict pytrees come back
# from jit and eval_shape key-sorted, so state_dict order must not rely on dict order.
_TORCH_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _torch_order(d: dict) -> list[str]:
    return sorted(d, key=lambda k: (_TORCH_ORDER.index(k) if k in _TORCH_ORDER else len(_TORCH_ORDER), k))


@dataclass(frozen=True)
class Layer:
    """Base class: ``init`` gives neither parameters nor state; subclasses implement ``apply``
    and ``apply_vjp`` and inherit ``backward``."""

    def init(self, key: jax.Array | None) -> tuple[Params, State]:
        return {}, {}

    def apply(
        self, params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None, train: bool
    ) -> tuple[jax.Array, State]:
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def apply_vjp(
        self, params: Any, state: Any, x: jax.Array, *, key: jax.Array | None = None, train: bool
    ) -> tuple[jax.Array, Any, Callable[[jax.Array], tuple[Any, jax.Array]]]:
        """Forward plus its manual pullback.

        Args:
            params, state, x, key, train: as for ``apply``.

        Returns:
            ``(y, new_state, pullback)``: ``y`` and ``new_state`` equal ``apply``'s, and
            ``pullback(grad_y) -> (grad_params, grad_x)`` with ``grad_params`` of the
            structure of ``params``.
        """
        raise NotImplementedError(f"{type(self).__name__}.apply_vjp")

    def backward(
        self,
        params: Any,
        state: Any,
        x: jax.Array,
        grad_y: jax.Array,
        *,
        key: jax.Array | None = None,
        train: bool,
    ) -> tuple[Any, jax.Array]:
        """The manual backward of ``apply`` at ``x``: ``apply_vjp``'s pullback applied to ``grad_y``.

        Args:
            params, state, x, key, train: those of the forward being differentiated.
            grad_y: dL/dy, of the forward output's shape.

        Returns:
            ``(grad_params, grad_x)``.
        """
        _, _, pullback = self.apply_vjp(params, state, x, key=key, train=train)
        return pullback(grad_y)

    # -- PyTorch-style flat names -------------------------------------------------------
    def named_arrays(self, params: Any, state: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Yield (flat name, array) for params then buffers, in PyTorch's state_dict order."""
        for name in _torch_order(params):
            yield prefix + name, params[name]
        for name in _torch_order(state):
            yield prefix + name, state[name]

    def state_dict(self, params: Any, state: Any) -> dict[str, np.ndarray]:
        """PyTorch-style flat names -> numpy arrays (``"1.weight"``, ``"2.running_var"``)."""
        return {name: np.asarray(value) for name, value in self.named_arrays(params, state)}

    def load_state_dict(self, flat: dict[str, Any]) -> tuple[Any, Any]:
        """Inverse of ``state_dict``; accepts a PyTorch ``state_dict()`` converted to numpy.

        Every expected entry must be present with the expected shape; extra entries are an
        error too (PyTorch's strict=True). Values are cast to fnn's dtypes (e.g. torch's
        int64 ``num_batches_tracked`` becomes int32, fnn's fixed counter dtype).
        """
        like_params, like_state = jax.eval_shape(self.init, jax.random.key(0))
        expected = dict(self.named_arrays(like_params, like_state))
        missing = [name for name in expected if name not in flat]
        if missing:
            raise KeyError(f"state_dict is missing entry {missing[0]!r} (missing: {missing})")
        unexpected = [name for name in flat if name not in expected]
        if unexpected:
            raise KeyError(f"state_dict has unexpected entry {unexpected[0]!r} (unexpected: {unexpected})")
        loaded = {}
        for name, like in expected.items():
            value = np.asarray(flat[name])
            if value.shape != like.shape:
                raise ValueError(f"state_dict entry {name!r}: expected shape {like.shape}, got {value.shape}")
            loaded[name] = jax.numpy.asarray(value, dtype=like.dtype)
        return self._unflatten(loaded, like_params, like_state)

    def _unflatten(
        self, loaded: dict[str, jax.Array], like_params: Any, like_state: Any, prefix: str = ""
    ) -> tuple[Any, Any]:
        params = {name: loaded[prefix + name] for name in _torch_order(like_params)}
        state = {name: loaded[prefix + name] for name in _torch_order(like_state)}
        return params, state


@dataclass(frozen=True)
class Elementwise(Layer):
    """A layer with no params or state: subclasses give ``_forward(x)`` and ``_backward(x, g)``."""

    def _forward(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _backward(self, x: jax.Array, grad_y: jax.Array) -> jax.Array:
        raise NotImplementedError

    def apply(self, params, state, x, *, key=None, train):
        return self._forward(x), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        return self._forward(x), state, lambda grad_y: ({}, self._backward(x, grad_y))
