"""one_hot: class indices -> indicator vectors (torch.nn.functional.one_hot).

Not differentiable (integer input). ``num_classes=-1`` infers max(tensor) + 1, which needs
concrete values; under jit pass ``num_classes``. The result is int32 (torch gives int64;
fnn keeps x64 off); cast it to a float dtype for use as probability targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fnn._checks import check_classes_in_range, check_integer, is_concrete

__all__ = ["one_hot"]


def one_hot(tensor: jax.Array, num_classes: int = -1) -> jax.Array:
    """Indicator vectors of integer class indices: (*,) in [0, num_classes) -> (*, num_classes).

    Args:
        tensor: an integer array of class indices, any shape.
        num_classes: the number of classes, >= 1; -1 (default) infers max(tensor) + 1, which
            needs concrete values (pass it under jit).

    Returns:
        An int32 array (*tensor.shape, num_classes) with a single 1 per row.

    Raises:
        ValueError: an index outside [0, num_classes) (checked on concrete values), or
            num_classes < 1 and not -1.

    Example:
        >>> import jax.numpy as jnp
        >>> import fnn.functional as F
        >>> F.one_hot(jnp.array([0, 2]), 3).tolist()
        [[1, 0, 0], [0, 0, 1]]
    """
    check_integer("tensor", tensor)
    if num_classes == -1:
        if not is_concrete(tensor):
            raise ValueError("one_hot: num_classes=-1 needs concrete values; pass num_classes under jit")
        num_classes = int(np.max(np.asarray(tensor), initial=-1)) + 1
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (or -1 to infer), got {num_classes}")
    check_classes_in_range("tensor", tensor, num_classes)
    return (jnp.asarray(tensor)[..., None] == jnp.arange(num_classes)).astype(jnp.int32)
