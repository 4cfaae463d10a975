"""Compiled training: one step, and a whole epoch as one ``lax.scan``.

- ``make_train_step(model, loss, optimizer, grad)`` -> a jitted pure step
  ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.
  ``grad='autodiff'`` differentiates the forward with ``jax.value_and_grad``;
  ``grad='manual'`` runs the forward once with ``model.apply_vjp`` and pulls the loss's
  hand-derived ``backward`` through the layers' pullbacks.
- ``make_train_epoch`` compiles a whole epoch: the dataset stays on the device, the key
  shuffles it, and ``lax.scan`` runs one step per batch, gathering each batch by index.
  Shapes are static, so the last partial batch is dropped; every epoch reshuffles, so
  every sample is still used over a run.
- **Divergence never destroys the last good state.** Inside the scanned epoch, once a
  step's loss or global gradient norm is non-finite (a squared norm that overflows
  float32 counts), that step and every later one leave params, state and opt_state as
  they were; per-step ``ok`` flags say where it happened, so the caller gets back the
  state from just before the first bad step.
- ``metrics`` per step: ``loss``, ``grad_norm`` (global L2 norm of the gradients),
  ``lr`` (the learning rate the update used, when the optimizer has an
  ``fnn.optim`` learning-rate link) and the task metrics (``fnn.train.metrics``).
- ``loss`` is an ``fnn.nn`` loss spec (``nn.CrossEntropyLoss()``) or a plain function,
  wrapped by ``fnn.nn.as_loss``.
- Building the same step or epoch twice (equal model, loss, optimizer and options)
  returns the same compiled function, so it does not compile again: specs and fnn
  optimizers compare by value.
- ``mesh=`` (a ``jax.sharding.Mesh`` with a ``'data'`` axis) makes both data parallel
  (``fnn.distributed``): params, state, optimizer state and keys replicated, each batch
  sharded along ``'data'``. The global batch size must divide by the data-axis size.

**Monitors** (``make_train_epoch(..., probe=m)``). The epoch calls a monitor only
through this protocol (``EpochProbe``); ``fnn.diagnostics.Probe`` implements it, and
this module never imports ``fnn.diagnostics`` (the layering ``train -> diagnostics``):

- ``m.interval(n_steps: int) -> int``: steps between points in an epoch of ``n_steps``
  steps (>= 1, a Python int; called at trace time). Points fall on the epoch's steps
  ``every, 2·every, ...`` (1-based, counted within the epoch).
- ``m.collect(model, step: ProbeStep) -> pytree of scalar arrays``: called inside the
  compiled step, traced, on the monitored steps only; ``ProbeStep``
  holds the step's inputs (params and state before the update, key, batch), its gradients,
  the params and state it produced, its loss and global gradient norm. It must be pure and
  return the same structure every time.
- ``m.summarize(model, points) -> dict``: on the host, turns the stacked points (the
  collected pytree with numpy leaves of length n_points) into plain JSON-able values
  (``fit`` puts them in ``record["probe"]``).

Without a monitor (the default) the epoch is the same compiled program as before monitors
existed: nothing of them is traced. With one, the epoch is a loop over chunks of
``every - 1`` plain steps and one monitored step (then the steps left over): the plain
steps run exactly the unmonitored code. Measured against a ``lax.cond`` on every step's
index, which cost 15-30% of the step at batch 128 on the CPU (its operands, params and
gradients, must be materialized every step), the chunks cost ~0 at run time and 50-80%
more compile time (the step is compiled twice: plain and monitored); see
experiments/README.md.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from fnn import distributed, optim
from fnn.nn import as_loss
from fnn.train import precision
from fnn.train import progress as progress_bar
from fnn.train.metrics import resolve_metrics

__all__ = [
    "GRAD_MODES",
    "EpochProbe",
    "ProbeStep",
    "check_grad_mode",
    "check_interval",
    "epoch_batches",
    "make_train_epoch",
    "make_train_step",
]

GRAD_MODES = ("autodiff", "manual")


def check_grad_mode(grad: str) -> str:
    """The one check of ``grad=``: 'autodiff' or 'manual'.

    Args:
        grad: the value to check.

    Returns:
        ``grad``, unchanged.

    Example:
        >>> from fnn.train.step import check_grad_mode
        >>> check_grad_mode("manual")
        'manual'
    """
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be 'autodiff' or 'manual', got {grad!r}")
    return grad


class ProbeStep(NamedTuple):
    """What a monitor sees of one training step (arrays traced inside the compiled epoch).

    Attributes:
        params: the parameters the step started from (its forward and gradients used these).
        state: the model state (BatchNorm running statistics) the step started from.
        key: the step's PRNG key: ``model.apply(params, state, x, key=key, train=True)``
            repeats the step's forward exactly, dropout masks included (with
            ``compute_dtype=``, in the params' float32: the step's own forward ran on bf16
            copies, ``fnn.train.precision``).
        x: the step's batch of inputs.
        y: the step's batch of targets.
        grads: the gradients of the step's loss with respect to ``params``.
        new_params: the parameters after the step's update.
        new_state: the model state after the step's forward.
        loss: the step's loss (batch mean), a scalar.
        grad_norm: the global L2 norm of ``grads``, a scalar.
    """

    params: Any
    state: Any
    key: Any
    x: jax.Array
    y: jax.Array
    grads: Any
    new_params: Any
    new_state: Any
    loss: jax.Array
    grad_norm: jax.Array


class EpochProbe(Protocol):
    """The protocol a monitor implements for ``make_train_epoch`` (see the module docstring)."""

    def interval(self, n_steps: int) -> int:
        """Steps between points in an epoch of ``n_steps`` steps (>= 1)."""

    def collect(self, model: Any, step: ProbeStep) -> Any:
        """A pytree of scalar arrays describing one step (traced, pure)."""

    def summarize(self, model: Any, points: Any) -> dict:
        """The stacked points (numpy leaves of length n_points) as plain JSON-able values."""

    # Optional: ``diagnose(history) -> list[dict]``; ``fit`` stores what it returns for the
    # newest epoch in ``record["diagnoses"]`` (``fnn.diagnostics.Probe`` runs the rules).


def _loss_and_grads(model, loss, grad: str, compute_dtype: str | None = None) -> Callable:
    """(params, state, key, x, y) -> (loss, output, new_state, grads) for the chosen source."""
    if compute_dtype is not None:
        return _mixed_loss_and_grads(model, loss, grad, compute_dtype)
    if grad == "autodiff":

        def compute(params, state, key, x, y):
            def objective(p):
                out, new_state = model.apply(p, state, x, key=key, train=True)
                return loss(out, y), (out, new_state)

            (value, (out, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
            return value, out, new_state, grads
    else:

        def compute(params, state, key, x, y):
            out, new_state, pullback = model.apply_vjp(params, state, x, key=key, train=True)
            value = loss(out, y)
            grads, _ = pullback(loss.backward(jnp.ones((), value.dtype), out, y))
            return value, out, new_state, grads

    return compute


def _mixed_loss_and_grads(model, loss, grad: str, compute_dtype: str) -> Callable:
    """The same, with the forward and backward in ``compute_dtype`` on cast copies of the
    params (fnn.train.precision); loss, output and grads come back in the params' dtype."""

    if grad == "autodiff":

        def compute(params, state, key, x, y):
            def objective(p):
                low = precision.compute_params(model, p, compute_dtype)
                x_low = precision.compute_input(x, compute_dtype)
                out, new_state = model.apply(low, state, x_low, key=key, train=True)
                out = precision.compute_output(out, p)
                return loss(out, y), (out, new_state)

            # The casts are inside the differentiated function: their transposes cast the
            # gradients back to the params' dtype.
            (value, (out, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
            return value, out, new_state, grads
    else:

        def compute(params, state, key, x, y):
            low = precision.compute_params(model, params, compute_dtype)
            x_low = precision.compute_input(x, compute_dtype)
            out_low, new_state, pullback = model.apply_vjp(low, state, x_low, key=key, train=True)
            out = precision.compute_output(out_low, params)
            value = loss(out, y)
            grad_out = loss.backward(jnp.ones((), value.dtype), out, y).astype(out_low.dtype)
            grads, _ = pullback(grad_out)
            grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
            return value, out, new_state, grads

    return compute


def _lr_used(opt_state: Any) -> jax.Array | None:
    """The learning rate of the latest update, when the optimizer has an lr link."""
    try:
        return optim.last_lr(opt_state)
    except ValueError:
        return None


def _gradients(model, loss, grad: str, metrics, compute_dtype: str | None = None) -> Callable:
    """The step up to its update: ``(params, state, key, x, y) -> (new_state, grads, record)``,
    ``record`` holding ``loss``, ``grad_norm`` and the task metrics (not ``lr``: ``_with_lr``)."""
    check_grad_mode(grad)
    loss = as_loss(loss)
    compute = _loss_and_grads(model, loss, grad, precision.check_compute_dtype(compute_dtype))

    def gradients(params, state, key, x, y):
        value, out, new_state, grads = compute(params, state, key, x, y)
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"training needs a loss that reduces to a scalar, got shape {jnp.shape(value)} "
                "(reduction='none'?)"
            )
        record = {"loss": value, "grad_norm": optim.global_norm(grads)}
        for name, fn in resolve_metrics(metrics, y):
            record[name] = jnp.mean(fn(out, y))
        return new_state, grads, record

    return gradients


def _update(optimizer, grads: Any, opt_state: Any, params: Any) -> tuple[Any, Any]:
    """The optimizer's update applied: ``(new_params, new_opt_state)``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state


def _with_lr(record: dict, new_opt_state: Any) -> dict:
    """``record`` plus ``lr``, the learning rate of the update that produced ``new_opt_state``
    (when the optimizer has an lr link)."""
    lr = _lr_used(new_opt_state)
    return record if lr is None else {**record, "lr": lr}


def _raw_step(model, loss, optimizer, grad: str, metrics, compute_dtype: str | None = None) -> Callable:
    """The unguarded step ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, record)``."""
    gradients = _gradients(model, loss, grad, metrics, compute_dtype)

    def step(params, state, opt_state, key, x, y):
        new_state, grads, record = gradients(params, state, key, x, y)
        params, opt_state = _update(optimizer, grads, opt_state, params)
        return params, new_state, opt_state, _with_lr(record, opt_state)

    return step


def _memoized(build: Callable) -> Callable:
    """Return the same compiled function for equal (hashable) arguments, so that building
    a step or an epoch twice for one model, loss and optimizer compiles once."""
    cached = functools.lru_cache(maxsize=64)(build)
    signature = inspect.signature(build)

    @functools.wraps(build)
    def get(*args, **kwargs):
        # One cache key per meaning: f(m, l, o, 32) and f(m, l, o, 32, "autodiff", mesh=None) agree.
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        args, kwargs = bound.args, bound.kwargs
        try:
            hash((args, tuple(sorted(kwargs.items()))))
        except TypeError:  # an unhashable argument (e.g. a dict of metrics): build afresh
            return build(*args, **kwargs)
        return cached(*args, **kwargs)

    get.cache_clear = cached.cache_clear
    return get


@_memoized
def make_train_step(
    model,
    loss,
    optimizer,
    grad: str = "autodiff",
    *,
    metrics=None,
    mesh: jax.sharding.Mesh | None = None,
    compute_dtype: str | None = None,
) -> Callable:
    """A jitted pure step ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    Args:
        model: an ``fnn.nn`` layer.
        loss: an ``fnn.nn`` loss spec or a plain loss function (``fnn.nn.as_loss``).
        optimizer: an ``fnn.optim`` gradient transformation.
        grad: ``'autodiff'`` (``jax.value_and_grad``) or ``'manual'`` (hand-derived backward).
        metrics: task metrics, see ``fnn.train.metrics.resolve_metrics``.
        mesh: a mesh with a ``'data'`` axis for data parallelism (``fnn.distributed``).
        compute_dtype: None (the default: compute in the params' dtype) or ``'bfloat16'``,
            ``'float16'``, ``'float32'``: mixed precision with the params, optimizer state and
            BatchNorm statistics kept as float32 master copies (``fnn.train.precision``,
            DTYPE-4). A static option: it is part of the compiled program.

    Returns:
        The compiled step; ``metrics`` holds ``loss``, ``grad_norm``, ``lr`` and the task
        metrics as scalars.

    With ``mesh`` the step is jitted with params, state, opt_state and key replicated and
    the batch ``x, y`` sharded along ``'data'``; a batch whose length does not divide by
    the data-axis size raises before compiling.

    Example:
        >>> import jax.numpy as jnp
        >>> from fnn import nn, optim, train
        >>> model, opt = nn.Linear(2, 1, bias=False), optim.sgd(lr=0.5)
        >>> params = {"weight": jnp.zeros((1, 2))}
        >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0], [2.0]])
        >>> step = train.make_train_step(model, nn.MSELoss(), opt, grad="manual")
        >>> params, state, opt_state, m = step(params, {}, opt.init(params), None, x, y)
        >>> params["weight"].tolist()  # W - 0.5·dL/dW, dL/dW = -(1, 2)
        [[0.5, 1.0]]
        >>> {name: round(float(v), 4) for name, v in sorted(m.items())}
        {'grad_norm': 2.2361, 'loss': 2.5, 'lr': 0.5, 'mae': 1.5}
    """
    raw = _raw_step(model, loss, optimizer, grad, metrics, compute_dtype=compute_dtype)
    if mesh is None:
        return jax.jit(raw)
    distributed.data_axis_size(mesh)
    rep, data = distributed.replicated(mesh), distributed.batch_sharding(mesh)
    sharded = jax.jit(raw, in_shardings=(rep, rep, rep, rep, data, data), out_shardings=rep)

    @functools.wraps(sharded)
    def checked(params, state, opt_state, key, x, y):
        distributed.check_divisible_batch(jnp.shape(x)[0], mesh)
        return sharded(params, state, opt_state, key, x, y)

    checked.lower = sharded.lower  # so callers can inspect the compiled shardings
    return checked


def _keep_if(good: jax.Array, new: Callable[[], Any], old: Any) -> Any:
    """``new()`` if ``good`` else ``old``, whole pytrees (the divergence guard).

    ``new`` is a function, so that on the CPU the update it computes runs inside a
    ``lax.cond`` on the one scalar: the taken branch writes the new params and optimizer
    state straight into the step's output buffers, and a bad step copies the old ones. Two
    other forms cost more on the CPU (experiments/README.md, "The divergence guard"):

    - ``jnp.where(good, new, old)`` per leaf: XLA:CPU fuses each where into its parameter's
      update kernel, and LLVM compiles each of those loops twice, once per value of the
      loop-invariant predicate (1.67 vs 1.20 MB of optimized LLVM IR for the benchmark MLP,
      ~0.2 s more compile time);
    - a cond choosing between ``new`` and ``old`` computed beforehand: both are operands, so
      the branch taken copies the new parameters and momentum buffers into the cond's result
      (six weight-matrix copies a step for the benchmark MLP); the batch-32 epoch ran
      1.10-1.17x faster without them.

    Elsewhere the where form: a GPU conditional copies its predicate to the host and waits
    for it, once per step, where the fused selects cost nothing. All give the same values.
    """

    def branch():
        return jax.lax.cond(good, new, lambda: old)

    return jax.lax.platform_dependent(cpu=branch, default=lambda: _select(good, new(), old))


def _select(good: jax.Array, new: Any, old: Any) -> Any:
    """The guard off the CPU: ``jnp.where(good, new, old)`` on every leaf."""
    return jax.tree.map(lambda a, b: jnp.where(good, a, b), new, old)


@_memoized
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
        progress_every: when > 0, report progress to ``fnn.train.progress`` every that many
            steps through a host callback (a different compiled program; 0 adds nothing).
        monitor: an object implementing ``EpochProbe`` (``fnn.diagnostics.Probe()``),
            or None (the default: nothing of a monitor is compiled in).

    Returns:
        The compiled epoch. ``x, y`` hold the whole training set; ``key`` is the epoch's key
        (``fit`` uses ``fold_in(run_key, epoch)``). ``metrics`` holds per-step arrays of
        length ``len(x) // batch_size``: those of the step, plus ``ok``, False from the first
        step whose loss or gradient norm is non-finite (that step and all later ones were
        not applied, see the module docstring). With a monitor, ``metrics["probe"]`` is
        ``{"every": () int32, "step": (P,) int32, "ok": (P,) bool, "points": pytree}``: the
        points of the steps ``every, 2·every, ...`` (1-based within the epoch, P =
        n_steps // every), each leaf of ``points`` stacked to shape (P,). A point's ``ok``
        is its step's: points from the first non-finite step on describe steps that were
        not applied (computed from the kept state); ``fit`` never reports them.

    The carry (params, state, opt_state) is donated to the compiled epoch, which updates
    it in place: keep using the returned values, not the ones passed in.

    With ``mesh``, the carry and key must be replicated on it and x, y placed by
    ``fnn.distributed.put_dataset`` (``fit`` does both); each step's indices and batch are
    constrained to ``P('data')``, so with a replicated dataset every device gathers only its
    own rows, locally. A monitor works with ``mesh`` too: its statistics are reductions over
    the global batch, which the partitioner turns into cross-device reductions.

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
    monitor = probe
    if monitor is not None:
        _check_monitor(monitor)
    gradients = _gradients(model, loss, grad, metrics, compute_dtype)
    if mesh is None:

        def shard(a):
            return a
    else:
        distributed.check_divisible_batch(batch_size, mesh)
        data = distributed.batch_sharding(mesh)

        def shard(a):
            return jax.lax.with_sharding_constraint(a, data)

    # Without a monitor, none of the `monitor is not None` branches below is traced: the
    # program is the one from before monitors existed (tests/test_diagnostics_probes.py).
    def body(watch, x, y, carry, inputs):
        params, state, opt_state, ok = carry
        idx, k, i = inputs
        idx = shard(idx)
        xb, yb = shard(x[idx]), shard(y[idx])
        new_state, grads, record = gradients(params, state, k, xb, yb)
        good = ok & jnp.isfinite(record["loss"]) & jnp.isfinite(record["grad_norm"])

        def taken():
            new_params, new_opt_state = _update(optimizer, grads, opt_state, params)
            return new_params, new_state, new_opt_state

        # The update once more outside the guard, for the lr it used and for a monitor (which
        # sees the update whether or not the guard keeps it); XLA drops what neither reads, so
        # only a monitored step (one in `every`) computes the update twice, in place of copying it.
        new_params, _, new_opt_state = taken()
        if watch:
            view = ProbeStep(
                params, state, k, xb, yb, grads, new_params, new_state, record["loss"], record["grad_norm"]
            )
            point = monitor.collect(model, view)
        record = _with_lr(record, new_opt_state)
        if progress_every > 0:
            jax.lax.cond(
                (i + 1) % progress_every == 0,
                lambda: jax.debug.callback(progress_bar.tick, i + 1),
                lambda: None,
            )
        params, state, opt_state = _keep_if(good, taken, (params, state, opt_state))
        carry = (params, state, opt_state, good)
        if watch:
            return carry, ({**record, "ok": good}, point)
        return carry, {**record, "ok": good}

    def epoch(params, state, opt_state, key, x, y):
        order, step_keys = epoch_batches(key, x.shape[0], batch_size)
        n_batches = order.shape[0]
        inputs = (order, step_keys, jnp.arange(n_batches))
        carry = (params, state, opt_state, jnp.ones((), bool))
        plain = functools.partial(body, False, x, y)
        if monitor is None:
            (params, state, opt_state, _), records = jax.lax.scan(plain, carry, inputs)
        else:
            every = check_interval(monitor.interval(n_batches), n_batches)
            watched = functools.partial(body, True, x, y)
            (params, state, opt_state, _), records = _scan_with_points(plain, watched, carry, inputs, every)
        return params, state, opt_state, records

    if mesh is None:
        return jax.jit(epoch, donate_argnums=(0, 1, 2))
    return jax.jit(epoch, out_shardings=distributed.replicated(mesh), donate_argnums=(0, 1, 2))


def epoch_batches(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """An epoch's draws from its key: the shuffle, then one key per step.

    ``key`` splits in two; the first shuffles ``arange(n)`` (``jax.random.permutation``), whose
    first ``(n // batch_size) * batch_size`` entries are the batches' indices in order; the
    second splits into one key per step. ``fnn.diagnostics.lr_find`` draws its batches with it
    too, so that its steps see the batches ``fit``'s epochs see.

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


def _scan_with_points(plain: Callable, watched: Callable, carry: Any, inputs: Any, every: int):
    """``lax.scan(plain, carry, inputs)``, but every ``every``-th step runs ``watched`` (the
    step plus ``monitor.collect``): a loop over chunks of ``every - 1`` plain steps and one
    watched step; a last chunk holds the steps left over (fewer than ``every``) and no
    watched step. The unwatched steps run the plain step's code, with nothing kept alive for
    the monitor (a ``lax.cond`` per step instead cost 15-30% of the step at batch 128: its
    operands, params and gradients, must exist as buffers every step, which stops XLA fusing
    the update). The plain steps are one loop with a per-chunk trip count, so the plain step
    is compiled once: a separate scan of the leftover steps compiled it a second time (0.6 s
    of the batch-128 benchmark's 4.1 s XLA compile, experiments/README.md). The records
    and points are written into buffers shaped by ``jax.eval_shape`` of ``watched``, jitted so
    that the call in the chunk reuses that trace."""
    n = jax.tree.leaves(inputs)[0].shape[0]
    n_points = n // every
    head = n_points * every
    watched = jax.jit(watched)
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


def _check_monitor(monitor: Any) -> None:
    for method in ("interval", "collect", "summarize"):
        if not callable(getattr(monitor, method, None)):
            raise TypeError(
                "probe must implement interval, collect and summarize (fnn.train.EpochProbe, e.g. "
                f"fnn.diagnostics.Probe()); {type(monitor).__name__} has no {method}()"
            )


def check_interval(every: Any, n_steps: int) -> int:
    """The one check of a monitor's ``interval``: an int >= 1.

    Args:
        every: what ``monitor.interval(n_steps)`` returned.
        n_steps: the epoch's number of steps, for the message.

    Returns:
        ``every``, a Python int.

    Example:
        >>> from fnn.train.step import check_interval
        >>> check_interval(12, 468)
        12
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"probe.interval({n_steps}) must return an int >= 1, got {every!r}")
    return every
