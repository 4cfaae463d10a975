"""Sequential: a layer made of layers, with full manual backpropagation.

params and state are tuples with one entry per layer. A given key is split into one key
per layer (the same split in ``apply`` and ``apply_vjp``, so Dropout masks agree).
``apply`` chains the layers' ``apply`` (what ``jax.grad`` differentiates). ``apply_vjp``
chains the layers' ``apply_vjp``, keeping each pullback (which closes over that layer's
input; Dropout's over its mask), and its own pullback runs them in reverse. ``backward``
is the inherited one (``Layer.backward``: ``apply_vjp``'s pullback). A layer's pullback
recomputes its cheap internals (BatchNorm statistics), which XLA merges with the
forward's under jit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from fnn.nn.base import Layer

__all__ = ["Sequential", "num_params"]


@dataclass(frozen=True, init=False)
class Sequential(Layer):
    """torch.nn.Sequential: the layers applied in order, with manual backpropagation through all.

    params and state are tuples with one entry per layer; ``state_dict`` names them
    ``"<index>.<name>"`` as torch does.

    Args:
        *layers: fnn.nn layers (positional, as torch's ``Sequential(*modules)``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> params, state = model.init(jax.random.key(0))
        >>> [p["weight"].shape for p in params if p]
        [(3, 2), (1, 3)]
        >>> y, _ = model.apply(params, state, jnp.ones((4, 2)), train=False)
        >>> y.shape, nn.num_params(params)
        ((4, 1), 13)
    """

    layers: tuple[Layer, ...]

    def __init__(self, *layers: Layer):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential layer {i} must be an fnn.nn layer, got {type(layer).__name__}")
        object.__setattr__(self, "layers", tuple(layers))

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def _keys(self, key: jax.Array | None) -> tuple[Any, ...]:
        if key is None:
            return (None,) * len(self.layers)
        return tuple(jax.random.split(key, len(self.layers)))

    def _check_trees(self, params: Any, state: Any) -> None:
        """params and state: each a tuple with one entry per layer."""
        self._check_tree("params", params)
        self._check_tree("state", state)

    def _check_tree(self, name: str, tree: Any) -> None:
        if not isinstance(tree, tuple) or len(tree) != len(self.layers):
            got = (
                f"{type(tree).__name__} of length {len(tree)}"
                if isinstance(tree, (tuple, list))
                else type(tree).__name__
            )
            raise ValueError(
                f"Sequential {name} must be a tuple with one entry per layer ({len(self.layers)}), got {got}"
            )

    def init(self, key: jax.Array) -> tuple[tuple, tuple]:
        pairs = [
            layer.init(k)
            for layer, k in zip(self.layers, jax.random.split(key, len(self.layers)), strict=True)
        ]
        return tuple(p for p, _ in pairs), tuple(s for _, s in pairs)

    def apply(self, params, state, x, *, key=None, train):
        y, new_state, _ = self._forward(params, state, x, key, train)
        return y, new_state

    def _forward(self, params, state, x, key, train):
        self._check_trees(params, state)
        inputs, new_state = [], []
        for layer, p, s, k in zip(self.layers, params, state, self._keys(key), strict=True):
            inputs.append(x)
            x, s_new = layer.apply(p, s, x, key=k, train=train)
            new_state.append(s_new)
        return x, tuple(new_state), inputs

    def intermediates(self, params, state, x, *, key=None, train: bool) -> tuple[jax.Array, ...]:
        """Every layer's output, in order (the last is ``apply``'s output): for looking
        inside a network, e.g. activation statistics per layer.

        Args:
            params, state, x, key, train: as for ``apply``.

        Returns:
            A tuple with one array per layer.

        Example:
            >>> import jax.numpy as jnp
            >>> from fnn import nn
            >>> model = nn.Sequential(nn.Flatten(), nn.ReLU())
            >>> outs = model.intermediates(({}, {}), ({}, {}), jnp.array([[[-1.0, 2.0]]]), train=False)
            >>> [o.tolist() for o in outs]
            [[[-1.0, 2.0]], [[0.0, 2.0]]]
        """
        y, _, inputs = self._forward(params, state, x, key, train)
        return (*inputs[1:], y)

    def apply_vjp(self, params, state, x, *, key=None, train):
        self._check_trees(params, state)
        new_state, pullbacks = [], []
        for layer, p, s, k in zip(self.layers, params, state, self._keys(key), strict=True):
            x, s_new, pullback = layer.apply_vjp(p, s, x, key=k, train=train)
            new_state.append(s_new)
            pullbacks.append(pullback)

        def pullback(grad_y):
            grads = [None] * len(self.layers)
            for i in reversed(range(len(self.layers))):
                grads[i], grad_y = pullbacks[i](grad_y)
            return tuple(grads), grad_y

        return x, tuple(new_state), pullback

    def named_arrays(self, params, state, prefix=""):
        self._check_trees(params, state)
        for i, (layer, p, s) in enumerate(zip(self.layers, params, state, strict=True)):
            yield from layer.named_arrays(p, s, f"{prefix}{i}.")

    def _unflatten(self, loaded, like_params, like_state, prefix=""):
        pairs = [
            layer._unflatten(loaded, p, s, f"{prefix}{i}.")
            for i, (layer, p, s) in enumerate(zip(self.layers, like_params, like_state, strict=True))
        ]
        return tuple(p for p, _ in pairs), tuple(s for _, s in pairs)


def num_params(tree: Any) -> int:
    """Total number of scalars in a pytree of arrays (e.g. a model's params).

    Args:
        tree: any pytree whose leaves are arrays.

    Returns:
        The sum of the leaves' sizes, a Python int.

    Example:
        >>> import numpy as np
        >>> from fnn import nn
        >>> nn.num_params(({"weight": np.zeros((10, 784)), "bias": np.zeros(10)}, {}))
        7850
    """
    return sum(int(leaf.size) for leaf in jax.tree.leaves(tree))
