"""Data parallelism with JAX's own SPMD partitioner: meshes, shardings, global arrays.

fnn writes no communication code. A ``jax.sharding.Mesh`` with a ``'data'`` axis tells
``fnn.train`` to run the *same* step function under ``jax.jit`` with

- params, state, optimizer state and keys **replicated** (``PartitionSpec()``);
- each batch **sharded** along ``'data'`` (``PartitionSpec('data')``): device i of the
  data axis holds rows ``[i*B/n, (i+1)*B/n)`` of the global batch of size ``B``.

Because the program is the one-device program, every reduction over the batch (the loss
mean, BatchNorm's batch statistics, the gradient sum) is over the *global* batch: XLA
inserts the all-reduces. Dropout masks depend only on the key and the global shape, so
they are the same bits as on one device (each device draws only its slice). Results equal
the one-device run up to float summation order.

Where the dataset lives (``put_dataset``):

- one process: the whole dataset is **replicated** on every device; each step gathers
  its batch with indices sharded along ``'data'``, so each device gathers only its own
  rows from local memory — no data communication at all. Costs one dataset copy per device.
- several processes (``jax.distributed.initialize``): each process passes only **its own
  shard** of the data (equal sizes); the global array is their concatenation in mesh order
  (process order for ``jax.make_mesh``), sharded along ``'data'``. The epoch still draws
  one global permutation, so training equals one process training on the concatenated
  dataset with the same key; the SPMD partitioner moves each batch's rows to their devices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnn._checks import check_batch_size

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_divisible_batch",
    "data_axis_size",
    "data_mesh",
    "is_global",
    "local_shard",
    "put_dataset",
    "replicate",
    "replicated",
]

DATA_AXIS = "data"


def data_mesh(num_devices: int | None = None, devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis ``'data'`` over ``devices``.

    Under ``jax.distributed`` the default covers every process's devices.

    Args:
        num_devices: use the first ``num_devices`` of ``jax.devices()`` (default: all of them).
        devices: the devices to use, in mesh order (overrides num_devices).

    Returns:
        A ``jax.sharding.Mesh`` with the one axis ``'data'``.

    Example:
        >>> from fnn import distributed
        >>> dict(distributed.data_mesh(1).shape)
        {'data': 1}
    """
    if devices is None:
        available = jax.devices()
        n = len(available) if num_devices is None else num_devices
        if not 1 <= n <= len(available):
            raise ValueError(f"num_devices must be in [1, {len(available)}] (the devices jax sees), got {n}")
        devices = available[:n]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_axis_size(mesh: Any) -> int:
    """The size of the mesh's ``'data'`` axis; a clear error for anything else.

    Args:
        mesh: a ``jax.sharding.Mesh`` with a ``'data'`` axis.

    Returns:
        The number of devices along ``'data'``.

    Example:
        >>> from fnn import distributed
        >>> distributed.data_axis_size(distributed.data_mesh(1))
        1
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if DATA_AXIS not in mesh.shape:
        raise ValueError(
            f"mesh must have a {DATA_AXIS!r} axis to shard batches along, "
            f"got axes {tuple(mesh.axis_names)} with sizes {dict(mesh.shape)}"
        )
    return int(mesh.shape[DATA_AXIS])


def check_divisible_batch(batch_size: int, mesh: Mesh) -> int:
    """The data-axis size, after checking the global batch splits evenly over it.

    Args:
        batch_size: the global batch size, a valid batch size (``fnn._checks.check_batch_size``).
        mesh: a mesh with a ``'data'`` axis.

    Returns:
        The size of the ``'data'`` axis.

    Raises:
        ValueError: batch_size is not divisible by that size.

    Example:
        >>> from fnn import distributed
        >>> distributed.check_divisible_batch(32, distributed.data_mesh(1))
        1
    """
    batch_size = check_batch_size(batch_size)
    n = data_axis_size(mesh)
    if batch_size % n:
        raise ValueError(
            f"global batch_size {batch_size} is not divisible by the mesh's {DATA_AXIS!r} axis "
            f"size {n}: every device needs the same number of samples"
        )
    return n


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that places a full copy on every device of ``mesh`` (``PartitionSpec()``).

    Args:
        mesh: the mesh.

    Returns:
        A ``NamedSharding``.

    Example:
        >>> from fnn import distributed
        >>> distributed.replicated(distributed.data_mesh(1)).is_fully_replicated
        True
    """
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding that splits dim 0 along the ``'data'`` axis (``PartitionSpec('data')``).

    Args:
        mesh: a mesh with a ``'data'`` axis.

    Returns:
        A ``NamedSharding``.

    Example:
        >>> from fnn import distributed
        >>> tuple(distributed.batch_sharding(distributed.data_mesh(1)).spec)
        ('data',)
    """
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf replicated on every device of ``mesh`` (all processes pass the same values).

    Args:
        tree: a pytree of arrays (numpy, jax, typed PRNG keys).
        mesh: the mesh.

    Returns:
        The same pytree of jax Arrays, each replicated over the mesh.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import distributed
        >>> x = distributed.replicate(jnp.ones(2), distributed.data_mesh(1))
        >>> x.sharding.is_fully_replicated, x.tolist()
        (True, [1.0, 1.0])
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    # device_put cannot target other processes' devices: build each global array from
    # this process's copy (typed keys travel as their raw key data).
    def one(leaf: Any) -> jax.Array:
        if is_global(leaf):
            return jax.jit(lambda a: a, out_shardings=sharding)(leaf)
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def is_global(a: Any) -> bool:
    """True for a jax.Array spanning devices of other processes (built by the caller).

    Args:
        a: any value.

    Returns:
        Whether ``a`` is a jax.Array that is not fully addressable from this process.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import distributed
        >>> distributed.is_global(jnp.ones(2))
        False
    """
    return isinstance(a, jax.Array) and not a.is_fully_addressable


def put_dataset(x: Any, y: Any, mesh: Mesh) -> tuple[jax.Array, jax.Array]:
    """Place a training/evaluation set for ``mesh`` (see the module docstring).

    One process: ``x``, ``y`` are the whole dataset, replicated. Several processes: they
    are this process's shard (numpy or local arrays, the same length in every process),
    assembled with ``jax.make_array_from_process_local_data``; global arrays pass through.

    Args:
        x: the inputs (N, ...), or this process's shard of them.
        y: the targets (N, ...), or this process's shard of them.
        mesh: a mesh with a ``'data'`` axis.

    Returns:
        (x, y) as global jax Arrays: replicated (one process) or sharded along ``'data'``.

    Example:
        >>> import numpy as np
        >>> from fnn import distributed
        >>> x, y = distributed.put_dataset(np.zeros((4, 2)), np.arange(4), distributed.data_mesh(1))
        >>> x.shape, y.tolist()
        ((4, 2), [0, 1, 2, 3])
    """
    data_axis_size(mesh)
    if is_global(x) and is_global(y):
        return x, y
    if jax.process_count() == 1:
        return replicate(x, mesh), replicate(y, mesh)
    sharding = batch_sharding(mesh)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    x, y = np.asarray(x), np.asarray(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"process {jax.process_index()}: local x and y must have the same length, "
            f"got {x.shape[0]} and {y.shape[0]}"
        )
    if x.shape[0] % local_devices:
        raise ValueError(
            f"process {jax.process_index()}: local shard of {x.shape[0]} samples is not divisible "
            f"by its {local_devices} devices on the {DATA_AXIS!r} axis"
        )
    return (
        jax.make_array_from_process_local_data(sharding, x),
        jax.make_array_from_process_local_data(sharding, y),
    )


def local_shard(n: int, process_index: int | None = None, process_count: int | None = None) -> slice:
    """The contiguous rows ``[start, stop)`` of an ``n``-sample dataset that a process loads.

    The processes' shards concatenate back to the dataset in process order. ``n`` must
    divide evenly (drop the remainder first).

    Args:
        n: the dataset's number of samples.
        process_index: this process's index (default ``jax.process_index()``).
        process_count: the number of processes (default ``jax.process_count()``).

    Returns:
        A ``slice`` of the rows to load.

    Example:
        >>> from fnn import distributed
        >>> distributed.local_shard(10, process_index=1, process_count=2)
        slice(5, 10, None)
    """
    i = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if n % count:
        raise ValueError(f"dataset of {n} samples does not split evenly over {count} processes")
    size = n // count
    return slice(i * size, (i + 1) * size)
