"""The layer protocol shared by every spec in fnn.nn.

A layer is an immutable, hashable dataclass that holds only hyperparameters. It has four
pure methods; a layer implements the first three and inherits the last:

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
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DTYPES",
    "Elementwise",
    "Layer",
    "Params",
    "State",
    "canonical_dtype",
    "check_input_dtype",
    "require_dtype_available",
]

Params = dict[str, jax.Array]
State = dict[str, jax.Array]

# PyTorch registers parameters and buffers in this order; jax's dict pytrees come back
# from jit and eval_shape key-sorted, so state_dict order must not rely on dict order.
_TORCH_ORDER = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _torch_order(d: dict) -> list[str]:
    return sorted(d, key=lambda k: (_TORCH_ORDER.index(k) if k in _TORCH_ORDER else len(_TORCH_ORDER), k))


# torch's factory keyword `dtype=` on layers with parameters or buffers (DTYPE-1): the
# floating dtypes a layer may be built in, by canonical name.
DTYPES = ("float32", "float64", "bfloat16", "float16")


def canonical_dtype(dtype: Any, who: str) -> str:
    """The canonical name of a layer's ``dtype=`` argument (DTYPE-1).

    A spec stores the name, not a dtype object, so that it stays hashable, equal by value
    and readable in ``repr`` and in fit's config fingerprint.

    Args:
        dtype: a name from ``DTYPES`` or a numpy / jax dtype or scalar type
            (``jnp.float64``, ``np.dtype('float16')``, ``jnp.bfloat16``). Python's ``float``
            is refused: it means float64 to numpy but float32 to torch. None means float32,
            as torch's ``dtype=None`` means its default dtype.
        who: the layer, for the message.

    Returns:
        One of ``DTYPES``.

    Example:
        >>> import jax.numpy as jnp
        >>> canonical_dtype(jnp.bfloat16, "Linear"), canonical_dtype(None, "Linear")
        ('bfloat16', 'float32')
    """
    name = None
    if dtype is None:  # torch's dtype=None: the default dtype, float32 here
        name = "float32"
    elif isinstance(dtype, str):
        name = dtype
    elif dtype is not float and not isinstance(dtype, bool):
        try:
            name = jnp.dtype(dtype).name
        except TypeError:
            name = None
    if name not in DTYPES:
        raise ValueError(f"{who}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return name


def require_dtype_available(dtype: str, who: str) -> None:
    """Refuse float64 when JAX's 64-bit mode is off; without it jnp would silently give float32.

    Args:
        dtype: a canonical name from ``DTYPES``.
        who: the layer, for the message.

    Raises:
        ValueError: dtype is 'float64' and 64-bit mode is off.
    """
    if dtype == "float64" and jax.dtypes.canonicalize_dtype(np.float64) != np.float64:
        raise ValueError(
            f"{who}: dtype='float64' needs JAX's 64-bit mode, which is off: run inside "
            "`with jax.enable_x64(True):` or call jax.config.update('jax_enable_x64', True) first"
        )


def check_input_dtype(who: str, x: Any, *trees: dict[str, Any]) -> None:
    """Refuse an input whose dtype differs from the layer's floating arrays (DTYPE-2).

    torch raises here too ("mat1 and mat2 must have the same dtype, but got Double and
    Float"), integer inputs included; promoting instead would silently run the layer in
    another precision, or truncate the input. Dtypes are static, so under jit this check
    runs once, at trace time, and costs nothing.

    Args:
        who: the layer, for the message.
        x: the input.
        *trees: the layer's params and state dicts; integer entries are skipped.

    Raises:
        TypeError: naming both dtypes, when a floating entry's dtype differs from x's.
    """
    x_dtype = jnp.result_type(x)
    for tree in trees:
        for name in _torch_order(tree):
            a = tree[name]
            if a is None or not jnp.issubdtype(jnp.result_type(a), jnp.floating):
                continue  # num_batches_tracked is an integer counter
            a_dtype = jnp.result_type(a)
            if a_dtype != x_dtype:
                hint = f"cast the input with x.astype('{a_dtype}')"
                if x_dtype.name in DTYPES:
                    hint += f", or build the layer with dtype='{x_dtype}'"
                raise TypeError(
                    f"{who}: input and {name}: expected both to have the same dtype, got input "
                    f"{x_dtype} and {name} {a_dtype} ({hint})"
                )


@dataclass(frozen=True)
class Layer:
    """Base class: ``init`` gives neither parameters nor state; subclasses implement ``apply``
    and ``apply_vjp`` and inherit ``backward``.

    A spec holds only hyperparameters (its constructor's arguments), so it is hashable and
    can be a static argument of ``jax.jit``; arrays live in the ``(params, state)`` that
    ``init`` returns.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn
        >>> layer = nn.Linear(2, 1, bias=False)
        >>> params = {"weight": jnp.array([[1.0, -1.0]])}
        >>> x = jnp.array([[3.0, 1.0]])
        >>> y, _ = layer.apply(params, {}, x, train=False)
        >>> grads, grad_x = layer.backward(params, {}, x, jnp.ones_like(y), train=False)
        >>> y.tolist(), grads["weight"].tolist(), grad_x.tolist()
        ([[2.0]], [[3.0, 1.0]], [[1.0, -1.0]])
    """

    def init(self, key: jax.Array | None) -> tuple[Params, State]:
        """Build the layer's parameters and state, with PyTorch's names and this layer's dtypes.

        Args:
            key: a JAX PRNG key for random initialisation (layers without random init ignore it).

        Returns:
            ``(params, state)``: dicts of arrays, ``{}`` when the layer has none.
        """
        return {}, {}

    def apply(
        self, params: Params, state: State, x: jax.Array, *, key: jax.Array | None = None, train: bool
    ) -> tuple[jax.Array, State]:
        """The forward pass in plain ``jax.numpy`` (what ``jax.grad`` differentiates).

        Args:
            params: the layer's parameters, as ``init`` gives them.
            state: the layer's state (e.g. BatchNorm's running statistics).
            x: the input array.
            key: a PRNG key, needed by Dropout when ``train`` is True.
            train: training mode (a static Python bool), torch's ``module.train()``.

        Returns:
            ``(y, new_state)``.
        """
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
        """Yield (flat name, array) for params then buffers, in PyTorch's state_dict order.

        Args:
            params: the layer's parameters.
            state: the layer's state.
            prefix: prepended to each name (Sequential passes ``"0."``, ``"1."``, ...).

        Returns:
            An iterator of ``(name, array)`` pairs.
        """
        for name in _torch_order(params):
            yield prefix + name, params[name]
        for name in _torch_order(state):
            yield prefix + name, state[name]

    def state_dict(self, params: Any, state: Any) -> dict[str, np.ndarray]:
        """PyTorch-style flat names -> numpy arrays (``"1.weight"``, ``"2.running_var"``).

        Args:
            params: the layer's parameters.
            state: the layer's state.

        Returns:
            A dict of numpy arrays, params before buffers as in torch's ``state_dict()``.

        Example:
            >>> import jax
            >>> from fnn import nn
            >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.BatchNorm1d(3))
            >>> params, state = model.init(jax.random.key(0))
            >>> sd = model.state_dict(params, state)
            >>> [(name, sd[name].shape) for name in sd]  # doctest: +NORMALIZE_WHITESPACE
            [('0.weight', (3, 2)), ('0.bias', (3,)), ('2.weight', (3,)), ('2.bias', (3,)),
             ('2.running_mean', (3,)), ('2.running_var', (3,)), ('2.num_batches_tracked', ())]
        """
        return {name: np.asarray(value) for name, value in self.named_arrays(params, state)}

    def load_state_dict(self, flat: dict[str, Any]) -> tuple[Any, Any]:
        """Inverse of ``state_dict``; accepts a PyTorch ``state_dict()`` converted to numpy.

        Every expected entry must be present with the expected shape; extra entries are an
        error too (PyTorch's strict=True). Values are cast into the dtypes ``init`` gives,
        as torch's ``load_state_dict`` copies into the existing tensors: a float32
        ``state_dict`` loads into a ``dtype='float64'`` layer as float64 and the reverse
        (DTYPE-3), and torch's int64 ``num_batches_tracked`` becomes int32, fnn's fixed
        counter dtype.

        Args:
            flat: flat name -> array (numpy, jax, or anything ``np.asarray`` takes).

        Returns:
            ``(params, state)`` in the structure and dtypes of ``init``.

        Example:
            >>> import numpy as np
            >>> from fnn import nn
            >>> flat = {"weight": np.array([[1.0, 2.0]]), "bias": np.array([0.5])}  # float64
            >>> params, state = nn.Linear(2, 1).load_state_dict(flat)
            >>> params["weight"].dtype, params["bias"].tolist()  # cast into the layer's float32
            (dtype('float32'), [0.5])
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
            # A copy: jnp.asarray may alias a suitably aligned host buffer (a torch tensor's
            # .numpy() is one), and torch's next in-place step would then change these arrays.
            loaded[name] = jnp.array(value, dtype=like.dtype, copy=True)
        return self._unflatten(loaded, like_params, like_state)

    def _unflatten(
        self, loaded: dict[str, jax.Array], like_params: Any, like_state: Any, prefix: str = ""
    ) -> tuple[Any, Any]:
        params = {name: loaded[prefix + name] for name in _torch_order(like_params)}
        state = {name: loaded[prefix + name] for name in _torch_order(like_state)}
        return params, state


@dataclass(frozen=True)
class Elementwise(Layer):
    """A layer with no params or state: subclasses give ``_forward(x)`` and ``_backward(x, g)``.

    ``apply`` returns ``(_forward(x), state)`` and ``apply_vjp``'s pullback returns
    ``({}, _backward(x, grad_y))``; ``key`` and ``train`` are ignored.
    """

    def _forward(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def _backward(self, x: jax.Array, grad_y: jax.Array) -> jax.Array:
        raise NotImplementedError

    def apply(self, params, state, x, *, key=None, train):
        return self._forward(x), state

    def apply_vjp(self, params, state, x, *, key=None, train):
        return self._forward(x), state, lambda grad_y: ({}, self._backward(x, grad_y))
