"""One training step, written once: ``train_step``; and its compiled form, ``make_train_step``.

``train_step(model, loss, optimizer, train_state, batch) -> (train_state, metrics)`` is a
pure function that reads top to bottom: forward, loss, gradients (``grad='autodiff'``
differentiates the forward with ``jax.value_and_grad``; ``grad='manual'`` pulls the loss's
hand-derived backward through the layers' pullbacks), the global gradient norm, the
divergence guard and the optimizer update. Everything else that trains wraps it: the jitted
step below, the scanned and the probed epoch (``fnn.train.epoch``), ``fit`` and ``lr_find``.

- **Divergence never destroys the last good state.** When the loss or the global gradient
  norm is non-finite, the step returns params, state and optimizer state as they were,
  ``metrics["ok"]`` False and ``step`` not advanced.
- ``metrics``: ``loss``, ``grad_norm``, ``ok``, ``lr`` (of the latest applied update, with an
  ``fnn.optim`` learning-rate link), the task metrics and, with a probe, ``probe``.
- **Mixed precision** (``compute_dtype='bfloat16'``) is a cast on the way in (params and
  inputs) and on the way out (the output, up to the params' dtype, before the loss);
  params, optimizer state and BatchNorm statistics stay the float32 master copy (DTYPE-4).
- Compiling is jit's own cache: model, loss, optimizer and options are hashable specs,
  static arguments of one jitted function, so an equal step never compiles twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fnn import distributed, optim
from fnn._checks import check_grad_mode
from fnn._fast.guard import keep_if
from fnn.nn import as_loss, precision
from fnn.train.metrics import resolve_metrics
from fnn.train.probe import ProbeStep
from fnn.train.state import TrainState

__all__ = ["bind", "make_train_step", "static_options", "train_step"]


def train_step(
    model,
    loss,
    optimizer,
    train_state: TrainState,
    batch: tuple[Any, Any],
    *,
    key: jax.Array | None = None,
    grad: str = "autodiff",
    metrics: Any = None,
    compute_dtype: str | None = None,
    probe: Any = None,
    proceed: Any = True,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on one batch (see the module docstring); pure, jit it or scan it.

    Args:
        model: an ``fnn.nn`` layer.
        loss: an ``fnn.nn`` loss spec or a plain loss function (``fnn.nn.as_loss``).
        optimizer: an ``fnn.optim`` gradient transformation.
        train_state: the ``TrainState`` to step from.
        batch: ``(x, y)``.
        key: the step's PRNG key (dropout); default ``fold_in(train_state.key, train_state.step)``
            (None when both are None: a model without randomness).
        grad: ``'autodiff'`` or ``'manual'``.
        metrics: task metrics (``fnn.train.metrics.resolve_metrics``; default by target dtype).
        compute_dtype: None, or ``'bfloat16'`` / ``'float16'`` / ``'float32'`` (mixed precision).
        probe: an ``fnn.train.EpochProbe`` whose ``collect`` sees this step, or None.
        proceed: a bool (or traced bool) that must also hold for the update to apply; the
            epoch passes "every earlier step was finite", so nothing after a divergence applies.

    Returns:
        ``(train_state, metrics)``: the new state (``step`` + 1 when applied) and scalars.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn, optim, train
        >>> model, opt = nn.Linear(2, 1, bias=False), optim.sgd(lr=0.5)
        >>> ts = train.init_train_state(model, opt, jax.random.key(0), params={"weight": jnp.zeros((1, 2))})
        >>> batch = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0], [2.0]])
        >>> ts, m = train.train_step(model, nn.MSELoss(), opt, ts, batch, grad="manual")
        >>> ts.params["weight"].tolist(), round(float(m["loss"]), 4), int(ts.step)  # W - 0.5·dL/dW
        ([[0.5, 1.0]], 2.5, 1)
    """
    x, y = batch
    params, opt_state = train_state.params, train_state.opt_state
    if key is None and train_state.key is not None:
        key = jax.random.fold_in(train_state.key, train_state.step)
    # Forward, loss and gradients, from jax.grad or from the hand-derived backward.
    value, out, new_state, grads = _loss_and_grads(
        model, as_loss(loss), grad, params, train_state.state, key, x, y, compute_dtype
    )
    norm = optim.global_norm(grads)
    record = {"loss": value, "grad_norm": norm}
    record.update({name: jnp.mean(fn(out, y)) for name, fn in resolve_metrics(metrics, y)})
    # The divergence guard: a non-finite loss or gradient leaves everything as it was.
    ok = jnp.logical_and(proceed, jnp.isfinite(value) & jnp.isfinite(norm))

    def update():
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), new_state, new_opt_state

    params, state, opt_state = keep_if(ok, update, (params, train_state.state, opt_state))
    record["ok"] = ok
    if (lr := _last_lr(opt_state)) is not None:
        record["lr"] = lr
    if probe is not None:
        view = ProbeStep(train_state.params, train_state.state, key, x, y, grads, params, state, value, norm)
        record["probe"] = probe.collect(model, view)
    step = train_state.step + ok  # weakly typed, as the Python int init_train_state starts from
    return train_state._replace(params=params, state=state, opt_state=opt_state, step=step), record


def _loss_and_grads(model, loss, grad: str, params, state, key, x, y, compute_dtype: str | None):
    """``(loss, output, new_state, grads)`` of one batch, with ``compute_dtype``'s casts
    (none without it): params and ``x`` down on the way in, the output up before the loss,
    so that the loss and its backward run in the params' dtype."""
    x = precision.compute_input(x, compute_dtype)
    if grad == "autodiff":

        def objective(p):
            out, new_state = model.apply(
                precision.compute_params(model, p, compute_dtype), state, x, key=key, train=True
            )
            out = precision.compute_output(out, p, compute_dtype)
            return loss(out, y), (out, new_state)

        # The casts sit inside the differentiated function: their transposes cast the
        # gradients back to the params' dtype.
        (value, (out, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    else:
        low = precision.compute_params(model, params, compute_dtype)
        out_low, new_state, pullback = model.apply_vjp(low, state, x, key=key, train=True)
        out = precision.compute_output(out_low, params, compute_dtype)
        value = loss(out, y)
        grads, _ = pullback(loss.backward(jnp.ones((), value.dtype), out, y).astype(out_low.dtype))
        grads = precision.master_grads(grads, params, compute_dtype)
    if jnp.ndim(value) != 0:
        raise ValueError(
            f"training needs a loss that reduces to a scalar, got shape {jnp.shape(value)} "
            "(reduction='none'?)"
        )
    return value, out, new_state, grads


def _last_lr(opt_state: Any) -> jax.Array | None:
    """The learning rate of the latest applied update; None without an ``fnn.optim`` lr link."""
    try:
        return optim.last_lr(opt_state)
    except ValueError:
        return None


_STATIC = ("model", "loss", "optimizer", "grad", "metrics", "compute_dtype")


def _step_arrays(
    params, state, opt_state, key, x, y, *, model, loss, optimizer, grad, metrics, compute_dtype
):
    ts = TrainState(params, state, opt_state, key, 0, 0)
    ts, record = train_step(
        model, loss, optimizer, ts, (x, y), key=key, grad=grad, metrics=metrics, compute_dtype=compute_dtype
    )
    del record["ok"]
    return ts.params, ts.state, ts.opt_state, record


_compiled_step = jax.jit(_step_arrays, static_argnames=_STATIC)


# A second cache beside jit's: shardings are fixed when jit wraps a function (and jit takes no
# keyword arguments then), so one compiled step per mesh and options.
@functools.cache
def _sharded_step(mesh: jax.sharding.Mesh, **options) -> Callable:
    rep, data = distributed.replicated(mesh), distributed.batch_sharding(mesh)
    step = functools.partial(_step_arrays, **options)
    return jax.jit(step, in_shardings=(rep, rep, rep, rep, data, data), out_shardings=rep)


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
    """``train_step`` jitted over the carry's arrays:
    ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    Args:
        model, loss, optimizer, grad, metrics, compute_dtype: as for ``train_step``.
        mesh: a mesh with a ``'data'`` axis (``fnn.distributed``): each batch is sharded
            along it, everything else replicated; a batch that does not divide raises.

    Returns:
        The compiled step (``key`` is the step's PRNG key); ``metrics`` holds ``train_step``'s
        scalars but ``ok``. A non-finite step returns its inputs unchanged.

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
    options = static_options(model, loss, optimizer, grad, metrics, compute_dtype)
    if mesh is None:
        return bind(_compiled_step, options)
    distributed.data_axis_size(mesh)
    sharded = _sharded_step(mesh, **options)

    def step(params, state, opt_state, key, x, y):
        distributed.check_divisible_batch(jnp.shape(x)[0], mesh)
        return sharded(params, state, opt_state, key, x, y)

    step.lower = sharded.lower  # to inspect the compiled shardings
    return step


def bind(jitted: Callable, options: dict, **more) -> Callable:
    """``jitted`` with its static options bound; ``.lower`` too, to inspect the compiled program."""
    fn = functools.partial(jitted, **options, **more)
    fn.lower = functools.partial(jitted.lower, **options, **more)
    return fn


def static_options(model, loss, optimizer, grad, metrics, compute_dtype) -> dict:
    """The step's static arguments, checked and hashable, for jit to key its cache on."""
    if isinstance(metrics, dict | list):  # a dict becomes its (name, fn) pairs
        metrics = tuple(metrics.items() if isinstance(metrics, dict) else metrics)
    return dict(
        model=model,
        loss=as_loss(loss),
        optimizer=optimizer,
        grad=check_grad_mode(grad),
        metrics=metrics,
        compute_dtype=precision.check_compute_dtype(compute_dtype),
    )
