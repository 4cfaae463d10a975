"""Mini-batches over (x, y) arrays, shuffled by a JAX PRNG key.

`batches(x, y, batch_size, key=..., shuffle=True, drop_last=False, num_classes=None)` follows
torch.utils.data.DataLoader: each epoch visits every example once in a random order
(the order is `epoch_permutation(key, len(x))`, so the same key gives the same order),
in `num_batches(len(x), batch_size, drop_last)` batches; the last batch is smaller
unless `drop_last=True`, which drops it. With ``shuffle=False`` the order is 0..n-1 and
`key` is ignored (as torch ignores a generator then). Shuffling without a key is an
error: there is no global RNG. The caller splits its key once per epoch. With
``num_classes`` the labels are checked first (each in [0, num_classes)).

`batches` yields slices of the inputs (numpy in, numpy out; jax in, jax out) and is
for host-side loops. For a compiled epoch the trainer takes `epoch_permutation` and
`num_batches` to gather device-resident batches and `lax.scan` over them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from fnn._checks import check_batch_size, check_classes_in_range, check_integer, check_positive

__all__ = ["batches", "epoch_permutation", "num_batches"]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Number of batches in an epoch of `n` examples (floor with drop_last, else ceil).

    Args:
        n: the number of examples, >= 0.
        batch_size: rows per batch, a positive int.
        drop_last: drop the last, smaller batch (default False).

    Returns:
        The number of batches, a Python int.

    Example:
        >>> from fnn import data
        >>> data.num_batches(10, 4), data.num_batches(10, 4, drop_last=True)
        (3, 2)
    """
    batch_size = check_batch_size(batch_size)
    check_positive("n", n, strict=False)
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_permutation(key: jax.Array, n: int) -> jax.Array:
    """A random permutation of 0..n-1 (int32) determined by `key`; jit-able for static n.

    Args:
        key: the epoch's PRNG key.
        n: the number of examples, >= 0 (static under jit).

    Returns:
        An int32 array of shape (n,) holding each of 0..n-1 once.

    Example:
        >>> import jax
        >>> from fnn import data
        >>> perm = data.epoch_permutation(jax.random.key(0), 5)
        >>> sorted(perm.tolist()), perm.dtype
        ([0, 1, 2, 3, 4], dtype('int32'))
    """
    check_positive("n", n, strict=False)
    return jax.random.permutation(key, n)


def batches(
    x: Any,
    y: Any,
    batch_size: int,
    *,
    key: jax.Array | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    num_classes: int | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Yield (xb, yb) mini-batches covering one epoch; see the module docstring.

    Args:
        x, y: inputs and targets with the same number of rows (numpy or jax arrays).
        batch_size: rows per batch.
        key: the epoch's PRNG key; needed when ``shuffle``.
        shuffle: visit the rows in the order ``epoch_permutation(key, len(x))``.
        drop_last: drop the last, smaller batch.
        num_classes: when given, ``y`` holds class labels and each must be in
            [0, num_classes); checked once, here, on the host, since inside a compiled
            step a bad label only makes the loss NaN (LBL-1).

    Returns:
        An iterator over ``(xb, yb)``.

    Example:
        >>> import jax, numpy as np
        >>> from fnn import data
        >>> x, y = np.arange(10.0).reshape(5, 2), np.array([0, 1, 0, 1, 1])
        >>> [yb.tolist() for _, yb in data.batches(x, y, 2, shuffle=False)]
        [[0, 1], [0, 1], [1]]
        >>> shuffled = data.batches(x, y, 2, key=jax.random.key(0), drop_last=True)
        >>> [len(xb) for xb, _ in shuffled]  # the fifth row is in the dropped last batch
        [2, 2]
    """
    # Validate here, not inside the generator, so errors surface at the call.
    batch_size = check_batch_size(batch_size)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got x {len(x)} and y {len(y)}")
    if num_classes is not None:
        check_integer("y", y)
        check_positive("num_classes", num_classes)
        check_classes_in_range("y", y, num_classes, what="labels")
    if shuffle and key is None:
        raise ValueError("batches needs a PRNG key (key=jax.random.key(...)) when shuffle=True, got None")
    n = len(x)
    order = np.asarray(epoch_permutation(key, n)) if shuffle else None
    return _iterate(x, y, n, batch_size, order, drop_last)


def _iterate(
    x: Any, y: Any, n: int, batch_size: int, order: np.ndarray | None, drop_last: bool
) -> Iterator[tuple[Any, Any]]:
    for b in range(num_batches(n, batch_size, drop_last)):
        s = slice(b * batch_size, min((b + 1) * batch_size, n))
        if order is None:
            yield x[s], y[s]
        else:
            idx = order[s]
            yield x[idx], y[idx]
