"""Mixed precision: float32 master weights, a reduced-precision compute dtype (DTYPE-4).

The classic recipe (what ``torch.autocast`` plus a float32 model and optimizer give a
PyTorch user), applied by ``fnn.train.train_step`` (and so by every loop that wraps it) with
``compute_dtype=``:

- The parameters, the optimizer state and BatchNorm's running statistics stay in the
  model's dtype (float32): they are the master copy, and the update is applied to them.
- Each step casts the floating parameters to ``compute_dtype`` (``compute_params``) and the
  input to it (``compute_input``), runs the forward and the backward (autodiff or manual) in
  that dtype, and casts the gradients back to the parameters' dtype before the optimizer.
- BatchNorm1d keeps its own parameters in float32 and takes the reduced-precision input
  through torch's mixed-type path: batch statistics, normalization, running-statistics update
  and its backward in float32, output in the compute dtype (``fnn.nn.BatchNorm1d``).
- The loss (log-softmax / cross-entropy, or any other) and the task metrics are computed in
  float32 from the output cast up (``compute_output``), as autocast runs them in float32.

``compute_dtype=None`` (the default everywhere) means the parameters' own dtype: every cast
here is then the identity, and the step's program has none.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fnn.nn.normalization import BatchNorm1d
from fnn.nn.sequential import Sequential

__all__ = [
    "COMPUTE_DTYPES",
    "check_compute_dtype",
    "compute_input",
    "compute_output",
    "compute_params",
    "master_grads",
]

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def check_compute_dtype(compute_dtype: Any) -> str | None:
    """The one check of ``compute_dtype=``: None or a name from ``COMPUTE_DTYPES``.

    Args:
        compute_dtype: None, a dtype name or a dtype (``jnp.bfloat16``).

    Returns:
        The canonical name, or None.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn.nn.precision import check_compute_dtype
        >>> check_compute_dtype(jnp.bfloat16), check_compute_dtype(None)
        ('bfloat16', None)
    """
    if compute_dtype is None:
        return None
    try:
        name = compute_dtype if isinstance(compute_dtype, str) else jnp.dtype(compute_dtype).name
    except TypeError:
        name = None
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype must be None or one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}"
        )
    return name


def _cast_floating(tree: Any, dtype: str) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def compute_params(model: Any, params: Any, compute_dtype: str | None) -> Any:
    """The parameters as the forward uses them: floating leaves cast to ``compute_dtype``,
    except BatchNorm1d's, which stay in their own dtype (its mixed-type path, DTYPE-4).

    Under ``jax.grad`` the cast is differentiated too, so the gradients with respect to the
    master parameters come out in the master dtype.

    Args:
        model: an ``fnn.nn`` layer or ``Sequential`` (nested ones too).
        params: its parameters (the master copy).
        compute_dtype: a name from ``COMPUTE_DTYPES``, or None (then nothing is cast).

    Returns:
        A pytree of the same structure.

    Example:
        >>> import jax
        >>> from fnn import nn
        >>> from fnn.nn.precision import compute_params
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
        >>> params, _ = model.init(jax.random.key(0))
        >>> low = compute_params(model, params, "bfloat16")
        >>> str(low[0]["weight"].dtype), str(low[1]["weight"].dtype)
        ('bfloat16', 'float32')
    """
    if compute_dtype is None:
        return params
    if isinstance(model, Sequential):
        pairs = zip(model.layers, params, strict=True)
        return tuple(compute_params(layer, p, compute_dtype) for layer, p in pairs)
    if isinstance(model, BatchNorm1d):
        return params
    return _cast_floating(params, compute_dtype)


def compute_input(x: Any, compute_dtype: str | None) -> Any:
    """The batch as the forward takes it: a floating input cast to ``compute_dtype``
    (integer inputs, e.g. token ids, pass unchanged).

    Args:
        x: the batch's inputs.
        compute_dtype: a name from ``COMPUTE_DTYPES``, or None (then nothing is cast).

    Returns:
        ``x`` in the compute dtype.
    """
    return x if compute_dtype is None else _cast_floating(x, compute_dtype)


def compute_output(out: Any, params: Any, compute_dtype: str | None) -> Any:
    """The model's output as the loss and metrics take it: cast up to the (master) params'
    floating dtype, so that log-softmax, the loss and its backward run in float32.

    Args:
        out: the model's output (compute dtype).
        params: the master parameters (their floating dtype is the target).

    Returns:
        ``out`` in the master dtype (unchanged when params have no floating leaf).
    """
    dtypes = {a.dtype for a in jax.tree.leaves(params) if jnp.issubdtype(a.dtype, jnp.floating)}
    if compute_dtype is None or not dtypes:
        return out
    return _cast_floating(out, jnp.result_type(*dtypes).name)


def master_grads(grads: Any, params: Any, compute_dtype: str | None) -> Any:
    """Gradients from a compute-dtype backward, cast to the master params' dtypes.

    Args:
        grads: gradients with the structure of ``params``.
        params: the master parameters.
        compute_dtype: a name from ``COMPUTE_DTYPES``, or None (then ``grads`` unchanged).

    Returns:
        ``grads``, each leaf in its parameter's dtype.
    """
    if compute_dtype is None:
        return grads
    return jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
