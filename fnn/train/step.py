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
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn import distributed, optim
from fnn.nn import as_loss
from fnn.train import progress as progress_bar
from fnn.train.metrics import resolve_metrics

__all__ = ["GRAD_MODES", "check_grad_mode", "make_train_epoch", "make_train_step"]

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


def _loss_and_grads(model, loss, grad: str) -> Callable:
    """(params, state, key, x, y) -> (loss, output, new_state, grads) for the chosen source."""
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


def _lr_used(opt_state: Any) -> jax.Array | None:
    """The learning rate of the latest update, when the optimizer has an lr link."""
    try:
        return optim.last_lr(opt_state)
    except ValueError:
        return None


def _raw_step(model, loss, optimizer, grad: str, metrics) -> Callable:
    check_grad_mode(grad)
    loss = as_loss(loss)
    compute = _loss_and_grads(model, loss, grad)

    def step(params, state, opt_state, key, x, y):
        value, out, new_state, grads = compute(params, state, key, x, y)
        if jnp.ndim(value) != 0:
            raise ValueError(
                f"training needs a loss that reduces to a scalar, got shape {jnp.shape(value)} "
                "(reduction='none'?)"
            )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optim.apply_updates(params, updates)
        record = {"loss": value, "grad_norm": optim.global_norm(grads)}
        lr = _lr_used(opt_state)
        if lr is not None:
            record["lr"] = lr
        for name, fn in resolve_metrics(metrics, y):
            record[name] = jnp.mean(fn(out, y))
        return params, new_state, opt_state, record

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
    model, loss, optimizer, grad: str = "autodiff", *, metrics=None, mesh: jax.sharding.Mesh | None = None
) -> Callable:
    """A jitted pure step ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    Args:
        model: an ``fnn.nn`` layer.
        loss: an ``fnn.nn`` loss spec or a plain loss function (``fnn.nn.as_loss``).
        optimizer: an ``fnn.optim`` gradient transformation.
        grad: ``'autodiff'`` (``jax.value_and_grad``) or ``'manual'`` (hand-derived backward).
        metrics: task metrics, see ``fnn.train.metrics.resolve_metrics``.
        mesh: a mesh with a ``'data'`` axis for data parallelism (``fnn.distributed``).

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
    raw = _raw_step(model, loss, optimizer, grad, metrics)
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


def _keep_if(good: jax.Array, new: Any, old: Any) -> Any:
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
) -> Callable:
    """A jitted epoch ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    Args:
        model, loss, optimizer, grad, metrics, mesh: as for ``make_train_step``.
        batch_size: samples per step; the epoch runs ``len(x) // batch_size`` steps.
        progress_every: when > 0, report progress to ``fnn.train.progress`` every that many
            steps through a host callback (a different compiled program; 0 adds nothing).

    Returns:
        The compiled epoch. ``x, y`` hold the whole training set; ``key`` is the epoch's key
        (``fit`` uses ``fold_in(run_key, epoch)``). ``metrics`` holds per-step arrays of
        length ``len(x) // batch_size``: those of the step, plus ``ok``, False from the first
        step whose loss or gradient norm is non-finite (that step and all later ones were
        not applied, see the module docstring).

    The carry (params, state, opt_state) is donated to the compiled epoch, which updates
    it in place: keep using the returned values, not the ones passed in.

    With ``mesh``, the carry and key must be replicated on it and x, y placed by
    ``fnn.distributed.put_dataset`` (``fit`` does both); each step's indices and batch are
    constrained to ``P('data')``, so with a replicated dataset every device gathers only its
    own rows, locally.

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
    step = _raw_step(model, loss, optimizer, grad, metrics)
    if mesh is None:

        def shard(a):
            return a
    else:
        distributed.check_divisible_batch(batch_size, mesh)
        data = distributed.batch_sharding(mesh)

        def shard(a):
            return jax.lax.with_sharding_constraint(a, data)

    def body(x, y, carry, inputs):
        params, state, opt_state, ok = carry
        idx, k, i = inputs
        idx = shard(idx)
        new_params, new_state, new_opt_state, record = step(
            params, state, opt_state, k, shard(x[idx]), shard(y[idx])
        )
        good = ok & jnp.isfinite(record["loss"]) & jnp.isfinite(record["grad_norm"])
        if progress_every > 0:
            jax.lax.cond(
                (i + 1) % progress_every == 0,
                lambda: jax.debug.callback(progress_bar.tick, i + 1),
                lambda: None,
            )
        carry = (
            _keep_if(good, new_params, params),
            _keep_if(good, new_state, state),
            _keep_if(good, new_opt_state, opt_state),
            good,
        )
        return carry, {**record, "ok": good}

    def epoch(params, state, opt_state, key, x, y):
        n_batches = x.shape[0] // batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x.shape[0])[: n_batches * batch_size]
        inputs = (
            order.reshape(n_batches, batch_size),
            jax.random.split(k_steps, n_batches),
            jnp.arange(n_batches),
        )
        carry = (params, state, opt_state, jnp.ones((), bool))
        (params, state, opt_state, _), records = jax.lax.scan(functools.partial(body, x, y), carry, inputs)
        return params, state, opt_state, records

    if mesh is None:
        return jax.jit(epoch, donate_argnums=(0, 1, 2))
    return jax.jit(epoch, out_shardings=distributed.replicated(mesh), donate_argnums=(0, 1, 2))
