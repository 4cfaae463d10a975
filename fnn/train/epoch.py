"""A whole epoch as one compiled loop of ``train_step``: ``make_train_epoch``, ``epoch_batches``.

- The dataset stays on the device; the epoch's key shuffles it (``epoch_batches``) and a
  ``lax.scan`` runs ``train_step`` once per batch, gathering each batch by index. Shapes
  are static, so the last partial batch is dropped; every epoch reshuffles, so every
  sample is still used over a run.
- The carry is donated: params, state and optimizer state are updated in place.
- After the first non-finite step, no later step of the epoch applies (``train_step``'s
  ``proceed``), so the caller gets back the state from just before it; per-step ``ok``
  flags say where it happened.
- With a probe (``fnn.train.EpochProbe``), the epoch is a loop over chunks of
  ``every - 1`` plain steps and one probed step (then the steps left over): the plain steps
  run exactly the unprobed code, and without a probe nothing of it is traced.
- ``mesh=`` makes the epoch data parallel (``fnn.distributed``): the carry replicated, each
  batch sharded along ``'data'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn import distributed
from fnn.train import progress as progress_bar
from fnn.train.probe import EpochProbe, check_interval, check_probe
from fnn.train.state import TrainState
from fnn.train.step import bind, static_options, train_step

__all__ = ["epoch_batches", "make_train_epoch", "step_body"]


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """An epoch's draws from its key: the shuffle, then one key per step.

    ``key`` splits in two; the first shuffles ``arange(n)`` (``jax.random.permutation``), whose
    first ``(n // batch_size) * batch_size`` entries are the batches' indices in order; the
    second splits into one key per step.

    Args:
        key: the epoch's key.
        n: the number of training samples.
        batch_size: samples per step.

    Returns:
        ``(order, keys)``: int32 indices of shape ``(n // batch_size, batch_size)`` and one key
        per step (shape ``(n // batch_size,)``; ``(n // batch_size, 2)`` for a legacy uint32 key).

    Example:
        >>> import jax
        >>> order, keys = epoch_batches(jax.random.key(0), 10, 3)
        >>> order.shape, keys.shape, len(set(order.ravel().tolist()))  # 9 distinct samples
        ((3, 3), (3,), 9)
    """
    n_batches = n // batch_size
    k_perm, k_steps = jax.random.split(key)
    order = jax.random.permutation(k_perm, n)[: n_batches * batch_size]
    return order.reshape(n_batches, batch_size), jax.random.split(k_steps, n_batches)


def step_body(model, loss, optimizer, x, y, *, grad="autodiff", metrics=None, compute_dtype=None,
              probe=None, progress_every: int = 0, shard: Callable = lambda a: a) -> Callable:  # fmt: skip
    """The body of a scanned loop of ``train_step`` over batches of ``(x, y)`` gathered by index.

    Args:
        model, loss, optimizer, grad, metrics, compute_dtype, probe: as for ``train_step``.
        x, y: the whole dataset, on the device.
        progress_every, shard: as for ``make_train_epoch``; ``shard`` constrains each batch.

    Returns:
        ``body((params, state, opt_state, ok), (idx, key, i)) -> (carry, record)``: ``ok`` is
        "every earlier step was finite" (``train_step``'s ``proceed``), ``i`` the step's index.
    """

    def body(carry, inputs):
        params, state, opt_state, ok = carry
        idx, key, i = inputs
        idx = shard(idx)
        ts = TrainState(params, state, opt_state, key, 0, 0)
        options = dict(grad=grad, metrics=metrics, compute_dtype=compute_dtype, probe=probe, proceed=ok)
        ts, record = train_step(
            model, loss, optimizer, ts, (shard(x[idx]), shard(y[idx])), key=key, **options
        )
        if progress_every > 0:
            tick = lambda: jax.debug.callback(progress_bar.tick, i + 1)  # noqa: E731
            jax.lax.cond((i + 1) % progress_every == 0, tick, lambda: None)
        return (ts.params, ts.state, ts.opt_state, record["ok"]), record

    return body


def _epoch(params, state, opt_state, key, x, y, *, model, loss, optimizer, batch_size, grad, metrics,
           compute_dtype, progress_every, probe, mesh):  # fmt: skip
    order, keys = epoch_batches(key, x.shape[0], batch_size)
    n_steps = order.shape[0]
    inputs = (order, keys, jnp.arange(n_steps))
    carry = (params, state, opt_state, jnp.ones((), bool))
    body = functools.partial(
        step_body, model, loss, optimizer, x, y, grad=grad, metrics=metrics, compute_dtype=compute_dtype,
        progress_every=progress_every, shard=_sharder(mesh),
    )  # fmt: skip
    if probe is None:
        (params, state, opt_state, _), records = jax.lax.scan(body(), carry, inputs)
    else:
        every = check_interval(probe.interval(n_steps), n_steps)
        (params, state, opt_state, _), records = _probed_scan(body(), body(probe=probe), carry, inputs, every)
    return params, state, opt_state, records


def _sharder(mesh) -> Callable:
    if mesh is None:
        return lambda a: a
    data = distributed.batch_sharding(mesh)
    return lambda a: jax.lax.with_sharding_constraint(a, data)


_STATIC = ("model", "loss", "optimizer", "batch_size", "grad", "metrics", "compute_dtype", "progress_every",
           "probe", "mesh")  # fmt: skip
_compiled_epoch = jax.jit(_epoch, static_argnames=_STATIC, donate_argnums=(0, 1, 2))


# A second cache beside jit's: shardings are fixed when jit wraps a function (and jit takes no
# keyword arguments then), so one compiled epoch per mesh and options.
@functools.cache
def _sharded_epoch(mesh: jax.sharding.Mesh, **options) -> Callable:
    epoch = functools.partial(_epoch, mesh=mesh, **options)
    return jax.jit(epoch, donate_argnums=(0, 1, 2), out_shardings=distributed.replicated(mesh))


def make_train_epoch(
    model,
    loss,
    optimizer,
    batch_size: int,
    grad: str = "autodiff",
    *,
    metrics=None,
    progress_every: int = 0,
    mesh: jax.sharding.Mesh | None = None,
    probe: EpochProbe | None = None,
    compute_dtype: str | None = None,
) -> Callable:
    """A jitted epoch ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    Args:
        model, loss, optimizer, grad, metrics, mesh, compute_dtype: as for ``make_train_step``.
        batch_size: samples per step; the epoch runs ``len(x) // batch_size`` steps.
        progress_every: when > 0, a host callback to ``fnn.train.progress`` every that many steps.
        probe: an ``fnn.train.EpochProbe`` (``fnn.diagnostics.Probe()``), or None (nothing of
            a probe is compiled in).

    Returns:
        The compiled epoch; ``x, y`` are the whole training set and ``key`` the epoch's key.
        ``metrics`` holds ``train_step``'s records stacked per step (``ok`` False from the first
        non-finite step on) and, with a probe, ``metrics["probe"] = {"every", "step", "ok",
        "points"}``: the points of steps ``every, 2·every, ...`` (1-based), leaves stacked.

    The carry is donated: keep using the returned arrays. With ``mesh``, the carry and key
    must be replicated on it and x, y placed by ``fnn.distributed.put_dataset`` (as ``fit`` does).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn, optim, train
        >>> model, opt = nn.Linear(2, 1, bias=False), optim.sgd(lr=0.5)
        >>> params = {"weight": jnp.zeros((1, 2))}
        >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), jnp.array([[1.0], [2.0], [3.0]])
        >>> epoch = train.make_train_epoch(model, nn.MSELoss(), opt, batch_size=1)
        >>> params, state, opt_state, m = epoch(params, {}, opt.init(params), jax.random.key(0), x, y)
        >>> m["loss"].shape, m["ok"].tolist()  # one entry per step
        ((3,), [True, True, True])
    """
    options = static_options(model, loss, optimizer, grad, metrics, compute_dtype)
    probe = None if probe is None else check_probe(probe)
    options.update(batch_size=batch_size, progress_every=progress_every, probe=probe)
    if mesh is None:
        return bind(_compiled_epoch, options, mesh=None)
    distributed.check_divisible_batch(batch_size, mesh)
    return _sharded_epoch(mesh, **options)


def _probed_scan(plain: Callable, probed: Callable, carry: Any, inputs: Any, every: int):
    """``lax.scan(plain, carry, inputs)``, but every ``every``-th step runs ``probed`` (the
    step with ``probe.collect``): a loop over chunks of ``every - 1`` plain steps and one
    probed step; a last chunk holds the steps left over (fewer than ``every``) and no probed
    step. The plain steps keep nothing alive for the probe, and run as one loop with a
    per-chunk trip count, so the plain step is compiled once. Records and points are
    written into buffers shaped by ``jax.eval_shape`` of the probed step."""
    n = jax.tree.leaves(inputs)[0].shape[0]
    n_points = n // every
    head = n_points * every

    @jax.jit  # jitted, so that the call in the chunk reuses eval_shape's trace
    def watched(carry, inputs):
        carry, record = probed(carry, inputs)
        point = record.pop("probe")
        return carry, (record, point)

    record_shapes, point_shapes = jax.eval_shape(watched, carry, jax.tree.map(lambda a: a[0], inputs))[1]
    records = jax.tree.map(lambda s: jnp.zeros((n, *s.shape), s.dtype), record_shapes)
    points = jax.tree.map(lambda s: jnp.zeros((n_points, *s.shape), s.dtype), point_shapes)

    def at(i):
        return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), inputs)

    def put(buffers, i, values):
        return jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, i, 0), buffers, values)

    def plain_step(i, state):
        carry, records, points = state
        carry, record = plain(carry, at(i))
        return carry, put(records, i, record), points

    def chunk(j, state):
        start = j * every
        state = jax.lax.fori_loop(start, jnp.minimum(start + every - 1, n), plain_step, state)

        def watch(state):
            (carry, records, points), i = state, start + every - 1
            carry, (record, point) = watched(carry, at(i))
            return carry, put(records, i, record), put(points, j, point)

        if n_points == 0:  # an interval longer than the epoch: no point
            return state
        if head == n:  # every chunk ends on a point
            return watch(state)
        return jax.lax.cond(j < n_points, watch, lambda state: state, state)

    n_chunks = n_points + (head < n)
    carry, records, points = jax.lax.fori_loop(0, n_chunks, chunk, (carry, records, points))
    records["probe"] = {
        "every": jnp.asarray(every, jnp.int32),
        "step": jnp.arange(every, head + 1, every, dtype=jnp.int32),
        "ok": records["ok"][every - 1 : head : every],
        "points": points,
    }
    return carry, records
