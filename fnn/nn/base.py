"""The layer protocol shared by every spec in fnn.nn.

A layer is an immutable, hashable dataclass that holds only hyperparameters. It has three
pure methods (DESIGN.md, tier 2):

- ``init(key) -> (params, state)``: dicts of arrays with PyTorch's names; ``{}`` when a
  layer has none. Structures and dtypes are final here, so jitted steps never retrace.
- ``apply(params, state, x, *, key=None, train) -> (y, new_state)``; ``train`` is a static
  Python bool.
- ``backward(params, state, x, grad_y, *, key=None, train) -> (grad_params, grad_x)``:
  the manual backward, built from the ``fnn.functional`` ``*_backward`` ops. It takes the
  same ``state`` and ``key`` as the forward it differentiates.

``apply_vjp`` returns the forward output together with a pullback, so a training step can
run the forward once and backpropagate through the same values (Sequential overrides it to
cache each layer's input).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

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
    """Base class: a layer with neither parameters nor state, the identity by default."""

    def init(self, key: jax.Array | None) -> tuple[Params, State]:
        return {}, {}

    def apply(self, params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None,
              train: bool) -> tuple[jax.Array, State]:
        raise NotImplementedError(f"{type(self).__name__}.apply")

    def backward(self, params: Params, state: State, x: jax.Array, grad_y: jax.Array, *,
                 key: jax.Array | None = None, train: bool) -> tuple[Params, jax.Array]:
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def apply_vjp(self, params: Any, state: Any, x: jax.Array, *, key: jax.Array | None = None,
                  train: bool) -> tuple[jax.Array, Any, Callable[[jax.Array], tuple[Any, jax.Array]]]:
        """Forward plus its manual pullback ``grad_y -> (grad_params, grad_x)``."""
        y, new_state = self.apply(params, state, x, key=key, train=train)

        def pullback(grad_y: jax.Array) -> tuple[Any, jax.Array]:
            return self.backward(params, state, x, grad_y, key=key, train=train)

        return y, new_state, pullback

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

    def _unflatten(self, loaded: dict[str, jax.Array], like_params: Any, like_state: Any,
                   prefix: str = "") -> tuple[Any, Any]:
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

    def backward(self, params, state, x, grad_y, *, key=None, train):
        return {}, self._backward(x, grad_y)
