"""Training: jitted steps, whole epochs as one lax.scan, evaluation and ``fit``.

- ``make_train_step(model, loss_fn, optimizer, grad)`` -> a jitted pure step
  ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.
  ``grad='autodiff'`` differentiates the forward with ``jax.value_and_grad``;
  ``grad='manual'`` runs the forward once with ``model.apply_vjp`` and backpropagates the
  loss's hand-derived backward (``fnn.functional.backward_of``) through the layers'.
- ``make_train_epoch`` compiles a whole epoch: the dataset stays on the device, a key
  shuffles it, and ``lax.scan`` runs one step per batch, gathering each batch by index.
  Shapes are static, so the last partial batch is dropped (``drop_last``); each epoch
  reshuffles, so every sample is still used over the run.
- ``evaluate`` runs eval mode over all samples (the last batch padded and masked);
  ``predict`` returns the eval-mode outputs.
- ``fit`` loops epochs with a progress bar, history, per-epoch atomic checkpoints and
  bit-identical resume: epoch e always uses ``fold_in(key, e)``, so a resumed run draws
  exactly the keys of an uninterrupted one.
- A loss is any ``loss_fn(output, target) -> scalar``. ``evaluate`` (and so ``fit`` with
  ``eval_data``) also calls it with ``reduction='none'`` for per-sample losses, and
  ``grad='manual'`` needs its hand-derived backward: the fnn.functional losses have both;
  a custom loss sets ``loss_fn.backward = f(grad_output, output, target)``
  (``fnn.functional.backward_of``).
- Building the same step or epoch twice (same model, loss, optimizer, options) returns
  the same compiled function, so it does not compile again.
- ``mesh=`` (a ``jax.sharding.Mesh`` with a ``'data'`` axis) makes all of the above data
  parallel (``fnn.distributed``): the same step function, jitted with params, state,
  optimizer state and keys replicated and each batch sharded along ``'data'``. The global
  ``batch_size`` must divide by the data-axis size. Without a mesh the single-device code
  is unchanged.
"""
from __future__ import annotations

import functools
import inspect
import os
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn import checkpoint as ckpt
from fnn._checks import check_batch_size
from fnn import distributed, optim
from fnn.functional import cross_entropy
from fnn.functional.backward import backward_of

Metrics = dict[str, jax.Array]
CHECKPOINT_NAME = "checkpoint.npz"


class FitResult(NamedTuple):
    params: Any
    state: Any
    opt_state: Any
    history: list[dict[str, float]]


def _correct(y: jax.Array, target: jax.Array) -> jax.Array:
    """Per-sample 0/1 correctness for class targets (argmax over dim 1); zeros otherwise."""
    if y.ndim >= 2 and jnp.issubdtype(target.dtype, jnp.integer):
        return (jnp.argmax(y, axis=1) == target).astype(jnp.float32)
    return jnp.zeros(target.shape[:1], jnp.float32)


def _loss_and_grads(model, loss_fn: Callable, grad: str):
    """(params, state, key, x, y) -> (loss, output, new_state, grads) for the chosen source."""
    if grad == "autodiff":
        def compute(params, state, key, x, y):
            def objective(p):
                out, new_state = model.apply(p, state, x, key=key, train=True)
                return loss_fn(out, y), (out, new_state)
            (loss, (out, new_state)), grads = jax.value_and_grad(objective, has_aux=True)(params)
            return loss, out, new_state, grads
    elif grad == "manual":
        loss_backward = backward_of(loss_fn)

        def compute(params, state, key, x, y):
            out, new_state, pullback = model.apply_vjp(params, state, x, key=key, train=True)
            loss = loss_fn(out, y)
            grads, _ = pullback(loss_backward(jnp.ones((), loss.dtype), out, y))
            return loss, out, new_state, grads
    else:
        raise ValueError(f"grad must be 'autodiff' or 'manual', got {grad!r}")
    return compute


def _raw_step(model, loss_fn, optimizer, grad):
    compute = _loss_and_grads(model, loss_fn, grad)

    def step(params, state, opt_state, key, x, y):
        loss, out, new_state, grads = compute(params, state, key, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optim.apply_updates(params, updates)
        return params, new_state, opt_state, {"loss": loss, "accuracy": jnp.mean(_correct(out, y))}

    return step


def _memoized(build: Callable) -> Callable:
    """Return the same compiled function for the same (hashable) arguments, so that
    building a step or an epoch twice for one model, loss and optimizer compiles once."""
    cached = functools.lru_cache(maxsize=64)(build)
    signature = inspect.signature(build)

    @functools.wraps(build)
    def get(*args, **kwargs):
        # One cache key per meaning: f(m, l, o, 32) and f(m, l, o, 32, "autodiff", mesh=None) agree.
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        args, kwargs = bound.args, bound.kwargs
        try:
            return cached(*args, **kwargs)
        except TypeError as error:  # an unhashable argument: build afresh
            if "unhashable" not in str(error):
                raise
            return build(*args, **kwargs)

    return get


@_memoized
def make_train_step(model, loss_fn: Callable, optimizer, grad: str = "autodiff", *,
                    mesh: jax.sharding.Mesh | None = None) -> Callable:
    """A jitted pure step ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``.

    With ``mesh`` the same step is jitted with ``in_shardings``: params, state, opt_state and
    key replicated, the batch ``x, y`` sharded along ``'data'``; outputs replicated. A batch
    whose length does not divide by the data-axis size raises before compiling. Under
    ``jax.distributed`` pass global arrays (``fnn.distributed.replicate`` / ``put_dataset``).
    """
    if mesh is None:
        return jax.jit(_raw_step(model, loss_fn, optimizer, grad))
    distributed.data_axis_size(mesh)
    rep, data = distributed.replicated(mesh), distributed.batch_sharding(mesh)
    sharded = jax.jit(_raw_step(model, loss_fn, optimizer, grad), in_shardings=(rep, rep, rep, rep, data, data),
                      out_shardings=rep)

    @functools.wraps(sharded)
    def checked(params, state, opt_state, key, x, y):
        distributed.check_batch_size(jnp.shape(x)[0], mesh)
        return sharded(params, state, opt_state, key, x, y)

    checked.lower = sharded.lower  # so callers can inspect the compiled shardings
    return checked


@_memoized
def make_train_epoch(model, loss_fn: Callable, optimizer, batch_size: int, grad: str = "autodiff", *,
                     mesh: jax.sharding.Mesh | None = None) -> Callable:
    """A jitted epoch ``(params, state, opt_state, key, x, y) -> (params, state, opt_state, metrics)``
    where x, y hold the whole training set and metrics holds per-step ``loss``/``accuracy``
    arrays of length ``len(x) // batch_size``. The carry (params, state, opt_state) is
    donated to the compiled epoch, which updates it in place: keep using the returned
    values, not the ones passed in (``fit`` passes copies).

    With ``mesh``, the carry and key must be replicated on it and x, y placed by
    ``fnn.distributed.put_dataset`` (``fit`` does both); each step's indices and batch are
    constrained to ``P('data')``, so with a replicated dataset every device gathers only its
    own rows, locally.
    """
    step = _raw_step(model, loss_fn, optimizer, grad)
    if mesh is None:
        def shard(a):
            return a
    else:
        distributed.check_batch_size(batch_size, mesh)
        data = distributed.batch_sharding(mesh)

        def shard(a):
            return jax.lax.with_sharding_constraint(a, data)

    def epoch(params, state, opt_state, key, x, y):
        n_batches = x.shape[0] // batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x.shape[0])[: n_batches * batch_size]
        batches = order.reshape(n_batches, batch_size)
        step_keys = jax.random.split(k_steps, n_batches)

        def body(carry, inputs):
            idx, k = inputs
            idx = shard(idx)
            params, state, opt_state, metrics = step(*carry, k, shard(x[idx]), shard(y[idx]))
            return (params, state, opt_state), metrics

        (params, state, opt_state), metrics = jax.lax.scan(body, (params, state, opt_state), (batches, step_keys))
        return params, state, opt_state, metrics

    if mesh is None:
        return jax.jit(epoch, donate_argnums=(0, 1, 2))
    rep = distributed.replicated(mesh)
    return jax.jit(epoch, out_shardings=rep, donate_argnums=(0, 1, 2))


def _in_batches(a: jax.Array, batch_size: int) -> jax.Array:
    """(n, ...) -> (ceil(n / b), b, ...), the last batch zero-padded."""
    n_batches = -(-a.shape[0] // batch_size)
    pad = n_batches * batch_size - a.shape[0]
    return jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(n_batches, batch_size, *a.shape[1:])


@functools.lru_cache(maxsize=32)
def _eval_fn(model, loss_fn, batch_size):
    """One compiled evaluator per (model, loss, batch size): fit calls it every epoch."""
    def run(params, state, x, y):
        n = x.shape[0]
        mask = _in_batches(jnp.ones((n,), jnp.float32), batch_size)

        def body(totals, inputs):
            xb, yb, m = inputs
            out, _ = model.apply(params, state, xb, train=False)
            per_sample = loss_fn(out, yb, reduction="none").reshape(batch_size, -1).mean(axis=1)
            return (totals[0] + jnp.sum(per_sample * m), totals[1] + jnp.sum(_correct(out, yb) * m)), None

        batches = (_in_batches(x, batch_size), _in_batches(y, batch_size), mask)
        (loss_sum, correct), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(())), batches)
        return loss_sum / n, correct / n

    return jax.jit(run)


@functools.lru_cache(maxsize=32)
def _predict_fn(model, batch_size):
    def run(params, state, x):
        def body(_, xb):
            return None, model.apply(params, state, xb, train=False)[0]

        _, out = jax.lax.scan(body, None, _in_batches(x, batch_size))
        return out.reshape(-1, *out.shape[2:])[: x.shape[0]]

    return jax.jit(run)


def evaluate(model, params: Any, state: Any, data: tuple[Any, Any], batch_size: int = 1000, *,
             loss_fn: Callable = cross_entropy) -> dict[str, float]:
    """Mean per-sample loss and accuracy over ``data = (x, y)`` in eval mode.
    ``loss_fn`` must accept ``reduction='none'`` (every fnn.functional loss does)."""
    x, y = (jnp.asarray(a) for a in data)
    _check_data("data", x, y, batch_size=1)
    check_batch_size(batch_size)
    loss, acc = _eval_fn(model, loss_fn, min(batch_size, x.shape[0]))(params, state, x, y)
    return {"loss": float(loss), "accuracy": float(acc)}


def predict(model, params: Any, state: Any, x: Any, batch_size: int = 1000) -> jax.Array:
    """The model's eval-mode outputs (e.g. logits) for every row of ``x``, computed in
    compiled batches; ``jnp.argmax(predict(...), 1)`` gives the predicted classes."""
    x = jnp.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
    check_batch_size(batch_size)
    return _predict_fn(model, min(batch_size, x.shape[0]))(params, state, x)


def _check_data(name: str, x, y, batch_size: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
    if batch_size > x.shape[0]:
        raise ValueError(f"{name}: batch_size {batch_size} exceeds the number of samples {x.shape[0]}")


def _check_classes(model, params, state, x, y) -> None:
    """Before compiling: integer labels must index the model's output classes."""
    if not jnp.issubdtype(y.dtype, jnp.integer):
        return
    out = jax.eval_shape(lambda p, s, xb: model.apply(p, s, xb, train=False)[0], params, state, x[:2])
    if len(out.shape) >= 2:
        classes, top, low = out.shape[1], int(jnp.max(y)), int(jnp.min(y))
        if top >= classes or low < 0:
            raise ValueError(f"labels must be in [0, {classes}) for a model with {classes} outputs, "
                             f"got labels in [{low}, {top}]")


class _Progress:
    """A one-line progress bar on stderr, only when it is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r" + text.ljust(100)[:100])
            sys.stderr.flush()
            self.shown = True

    def done(self) -> None:
        if self.enabled and self.shown:
            sys.stderr.write("\n")
            self.shown = False


def fit(model, loss_fn: Callable, optimizer, train_data: tuple[Any, Any], *, epochs: int, batch_size: int,
        key: jax.Array, eval_data: tuple[Any, Any] | None = None, grad: str = "autodiff",
        params: Any = None, state: Any = None, progress: bool = True, checkpoint_dir: str | None = None,
        resume: bool = False, mesh: jax.sharding.Mesh | None = None,
        on_epoch_end: Callable[[dict[str, float]], None] | None = None) -> FitResult:
    """Train ``model`` for ``epochs`` epochs; see the module docstring for the contract.

    ``history`` has one dict per epoch: ``epoch`` (1-based), ``train_loss``,
    ``train_accuracy`` (means over the epoch's steps), ``test_loss`` and ``test_accuracy``
    (when ``eval_data`` is given), ``train_seconds`` (the training part alone) and
    ``seconds`` (the whole epoch with evaluation; compile included in the first epoch). A non-finite loss raises ``FloatingPointError`` naming the
    epoch and step, before that epoch's checkpoint is written. ``on_epoch_end(record)``,
    when given, is called with each epoch's history record after its checkpoint is saved
    (e.g. to print progress where stderr is not a terminal).

    With ``mesh`` (see ``fnn.distributed``) training is data parallel and equals the
    one-device run up to float summation order. Under ``jax.distributed`` every process
    calls ``fit`` with the same arguments except ``train_data`` / ``eval_data``, which are
    that process's own shard (equal lengths; global arrays are accepted too); the run then
    equals one process training on the shards concatenated in process order. Only process
    0 writes checkpoints (``checkpoint_dir`` must be shared for ``resume``).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    batch_size = check_batch_size(batch_size)
    if grad not in ("autodiff", "manual"):
        raise ValueError(f"grad must be 'autodiff' or 'manual', got {grad!r}")
    if mesh is not None:
        distributed.check_batch_size(batch_size, mesh)
    x, y = (jnp.asarray(a) for a in train_data)
    local_x, local_y = x, y  # this process's rows, for the value checks below
    if mesh is not None:
        x, y = distributed.put_dataset(x, y, mesh)
    _check_data("train_data", x, y, batch_size)
    if eval_data is not None:
        eval_data = tuple(jnp.asarray(a) for a in eval_data)
        if mesh is not None:
            eval_data = distributed.put_dataset(*eval_data, mesh)
        _check_data("eval_data", *eval_data, batch_size=1)
    key_init, key_train = jax.random.split(key)
    if params is None or state is None:
        init_params, init_state = model.init(key_init)
        params = init_params if params is None else params
        state = init_state if state is None else state
    if not distributed.is_global(local_y):
        _check_classes(model, params, state, local_x, local_y)
    opt_state = optimizer.init(params)
    history: list[dict[str, float]] = []
    start = 0
    path = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if resume:
        if path is None:
            raise ValueError("resume=True needs checkpoint_dir")
        if os.path.exists(path):
            like = {"params": params, "state": state, "opt_state": opt_state, "key": key_train}
            tree, meta = ckpt.load(path, like=like)
            params, state, opt_state = tree["params"], tree["state"], tree["opt_state"]
            key_train = tree["key"]  # the run's own key, so resuming cannot change the draws
            history, start = list(meta["history"]), int(meta["epoch"])
    if path:
        os.makedirs(checkpoint_dir, exist_ok=True)

    # The epoch donates its carry buffers: copy so the caller's arrays stay valid.
    params, state, opt_state = jax.tree.map(jnp.array, (params, state, opt_state))
    if mesh is not None:
        params, state, opt_state, key_train = distributed.replicate((params, state, opt_state, key_train), mesh)
    run_epoch = make_train_epoch(model, loss_fn, optimizer, batch_size, grad, mesh=mesh)
    bar = _Progress(progress)
    for epoch in range(start, epochs):
        bar.show(f"epoch {epoch + 1}/{epochs} training ...")
        t0 = time.perf_counter()
        params, state, opt_state, metrics = run_epoch(params, state, opt_state,
                                                      jax.random.fold_in(key_train, epoch), x, y)
        losses = np.asarray(metrics["loss"])  # waits for the epoch: train time ends here
        train_seconds = time.perf_counter() - t0
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            bar.done()
            raise FloatingPointError(f"non-finite training loss {losses[bad[0]]} at epoch {epoch + 1}, "
                                     f"step {int(bad[0]) + 1}; the last good checkpoint is kept")
        record = {"epoch": epoch + 1, "train_loss": float(losses.mean()),
                  "train_accuracy": float(np.asarray(metrics["accuracy"]).mean())}
        if eval_data is not None:
            result = evaluate(model, params, state, eval_data, loss_fn=loss_fn)
            record.update(test_loss=result["loss"], test_accuracy=result["accuracy"])
        record["train_seconds"] = train_seconds
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        bar.show(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if path and jax.process_index() == 0:
            ckpt.save(path, {"params": params, "state": state, "opt_state": opt_state, "key": key_train},
                      metadata={"epoch": epoch + 1, "history": history})
        if on_epoch_end is not None:
            bar.done()
            on_epoch_end(record)
    bar.done()
    return FitResult(params, state, opt_state, history)
