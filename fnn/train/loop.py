"""``fit``: epochs of the compiled epoch, each followed by evaluation, callbacks and a checkpoint.

- **Continue any run.** ``fit(..., train_state=ts)`` goes on from ``ts`` as ``resume=True``
  does from a checkpoint, ``epochs`` counting the total: ``fit(epochs=4)`` equals
  ``fit(epochs=2)`` then ``fit(epochs=4, train_state=first.train_state)`` bit for bit,
  optimizer moments included (epoch ``e`` draws from ``fold_in(run_key, e)``). The history
  holds the epochs this call ran (after a ``resume``, the checkpoint's too).
- **History.** One dict per epoch: ``epoch`` (1-based), ``train_loss`` and ``train_<metric>``
  (means over the epoch's steps), ``grad_norm`` (the mean global gradient norm), ``lr`` (the
  epoch's last step's), ``test_loss`` / ``test_<metric>`` (exact means over ``eval_data``),
  ``train_seconds`` (training alone) and ``seconds`` (the first includes compiling).
- **Never lose work on divergence.** At a non-finite loss or gradient the compiled epoch
  keeps the state from before that step, and ``fit`` raises ``TrainingDiverged`` holding it
  (and what is known of the epoch, which gets no history record); with ``checkpoint_dir``
  also in ``diverged.npz``, beside the last epoch's checkpoint, which stays as it was.
- **Probe.** ``probe=True`` (``fnn.diagnostics.Probe()``, imported only then) or any
  ``fnn.train.EpochProbe`` collects per-layer statistics inside the compiled epoch into
  ``record["probe"] = {"every", "step", **probe.summarize(...)}``, plain floats at global
  1-based steps. A probe's ``diagnose(history)``, if it has one, runs after each epoch into
  ``record["diagnoses"]`` (``Diagnosis._asdict()`` dicts, ``[]`` for none). Without a
  probe the compiled epoch is unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import distributed, nn
from fnn._checks import check_batch_size, check_grad_mode
from fnn.nn.precision import check_compute_dtype
from fnn.train import checkpointing
from fnn.train.callbacks import Callback, Run, as_callbacks
from fnn.train.epoch import make_train_epoch
from fnn.train.evaluation import check_data, check_labels, evaluate_checked
from fnn.train.metrics import resolve_metrics
from fnn.train.probe import EpochProbe
from fnn.train.progress import ProgressBar, callback_interval
from fnn.train.state import FitResult, TrainingDiverged, TrainState, init_train_state

__all__ = ["fit"]


def fit(
    model,
    loss,
    optimizer,
    train_data: tuple[Any, Any],
    *,
    epochs: int,
    batch_size: int,
    key: jax.Array | None = None,
    eval_data: tuple[Any, Any] | None = None,
    grad: str = "autodiff",
    train_state: TrainState | None = None,
    params: Any = None,
    state: Any = None,
    metrics: Any = None,
    callbacks: Any = (),
    progress: bool = True,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    keep_best: str | None = None,
    mesh: jax.sharding.Mesh | None = None,
    probe: Any = False,
    compute_dtype: str | None = None,
) -> FitResult:
    """Train ``model`` until ``epochs`` epochs are done (see the module docstring).

    Args:
        model: an ``fnn.nn`` layer.
        loss: an ``fnn.nn`` loss spec (``nn.CrossEntropyLoss()``) or a plain loss function.
        optimizer: an ``fnn.optim`` gradient transformation.
        train_data: ``(x, y)``; the last partial batch of each (reshuffled) epoch is dropped.
        epochs: the total number of epochs, counting those already in ``train_state`` or
            the resumed checkpoint.
        batch_size: samples per step (global, with ``mesh``).
        key: the run's PRNG key (not needed with ``train_state``).
        eval_data: ``(x, y)`` evaluated after every epoch.
        grad: ``'autodiff'`` or ``'manual'``.
        train_state: go on from this TrainState (e.g. ``FitResult.train_state``).
        params, state: start from these arrays instead of ``model.init``'s.
        metrics: task metrics (``fnn.train.metrics``); default accuracy for class labels,
            MAE otherwise.
        callbacks: ``Callback`` objects (``EarlyStopping``, ``LambdaCallback``, yours) and/or
            an ``fnn.optim.ReduceLROnPlateau``.
        progress: a progress bar on stderr during each epoch, when stderr is a terminal.
        checkpoint_dir: write ``checkpoint.npz`` there after every epoch
            (``fnn.train.checkpointing``).
        resume: go on from ``checkpoint_dir``'s checkpoint, if any, of the same config.
        overwrite: allow replacing an existing checkpoint when not resuming.
        keep_best: a history key (e.g. ``'test_loss'``); keeps its best epoch in ``best.npz``.
        mesh: a ``jax.sharding.Mesh`` with a ``'data'`` axis: data parallel training
            (``fnn.distributed``); under ``jax.distributed`` every process passes its own
            shard of the data and only process 0 writes checkpoints.
        probe: True for ``fnn.diagnostics.Probe()``, a probe object (``Probe(every=...)`` or
            any ``fnn.train.EpochProbe``), or False (the default).
        compute_dtype: None (the params' dtype) or ``'bfloat16'`` / ``'float16'``: each step
            computes in that dtype while params, optimizer state and BatchNorm statistics
            stay the float32 master copy (``fnn.nn.precision``); evaluation runs in float32.

    Returns:
        ``FitResult(train_state, history)``.

    Raises:
        TrainingDiverged: a non-finite loss or gradient (see the module docstring).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from fnn import nn, optim, train
        >>> x, y = jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0], [2.0]])
        >>> result = train.fit(
        ...     nn.Linear(2, 1, bias=False), nn.MSELoss(), optim.sgd(lr=0.5), (x, y),
        ...     epochs=3, batch_size=2, params={"weight": jnp.zeros((1, 2))}, state={},
        ...     key=jax.random.key(0), progress=False,
        ... )
        >>> [round(h["train_loss"], 4) for h in result.history]  # the error shrinks 2x a step
        [2.5, 0.625, 0.1562]
        >>> result.train_state.params["weight"].tolist()
        [[0.875, 1.75]]
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
    batch_size, grad, loss = check_batch_size(batch_size), check_grad_mode(grad), nn.as_loss(loss)
    if resume and train_state is not None:
        raise ValueError("pass either train_state= or resume=True, not both")
    train, eval_data, local = _prepare_data(train_data, eval_data, batch_size, mesh)
    ts = _initial_state(model, optimizer, key, train_state, params, state)
    for name, data in (("train_data", local), ("eval_data", eval_data)):
        if data is not None and not distributed.is_global(data[1]):
            check_labels(model, ts.params, ts.state, *data, loss, name)
    callbacks = as_callbacks(callbacks)
    fingerprint = checkpointing.fingerprint(model, loss, optimizer, batch_size, *local)
    checkpoints = checkpointing.Checkpoints(checkpoint_dir, fingerprint, keep_best, callbacks)
    run = Run(model, loss, optimizer, ts, [], epochs, eval_data is not None)
    for cb in callbacks:
        cb.on_train_begin(run)
    ts, run.history = checkpoints.start(ts, resume, overwrite)
    run.train_state = _owned(ts, mesh)
    epoch_args = dict(
        grad=grad,
        metrics=resolve_metrics(metrics, local[1]),
        mesh=mesh,
        probe=_as_probe(probe),
        compute_dtype=check_compute_dtype(compute_dtype),
    )
    _run_epochs(run, train, eval_data, batch_size, epoch_args, callbacks, checkpoints, progress)
    for cb in callbacks:
        cb.on_train_end(run)
    return FitResult(run.train_state, run.history)


def _prepare_data(train_data, eval_data, batch_size: int, mesh):
    """The checked training and eval data as device arrays placed for ``mesh``, and this
    process's own training rows (for the fingerprint, the labels check and the metrics)."""
    x, y = (jnp.asarray(a) for a in train_data)
    check_data("train_data", x, y, batch_size)
    local = (x, y)
    if mesh is not None:
        distributed.check_divisible_batch(batch_size, mesh)
        x, y = distributed.put_dataset(x, y, mesh)
    if eval_data is not None:
        eval_data = tuple(jnp.asarray(a) for a in eval_data)
        check_data("eval_data", *eval_data)
        if mesh is not None:
            eval_data = distributed.put_dataset(*eval_data, mesh)
    return (x, y), eval_data, local


def _initial_state(model, optimizer, key, train_state, params, state) -> TrainState:
    if train_state is not None:
        if not isinstance(train_state, TrainState):
            raise TypeError(f"train_state must be an fnn.train.TrainState, got {type(train_state).__name__}")
        if params is not None or state is not None:
            raise ValueError("pass either train_state or params/state, not both")
        return train_state
    if key is None:
        raise ValueError("fit needs key= (a jax.random.key) to initialise, or train_state= to go on from")
    return init_train_state(model, optimizer, key, params=params, state=state)


def _owned(ts: TrainState, mesh) -> TrainState:
    """A copy for the epoch to donate (the caller's arrays stay valid), placed for ``mesh``."""
    ts = ts.copy()
    if mesh is None:
        return ts
    params, state, opt_state, key = distributed.replicate((ts.params, ts.state, ts.opt_state, ts.key), mesh)
    return ts._replace(params=params, state=state, opt_state=opt_state, key=key)


def _as_probe(probe: Any) -> EpochProbe | None:
    """fit's ``probe=``: False/None off, True the default ``fnn.diagnostics.Probe()``."""
    if probe is None or probe is False:
        return None
    if probe is True:
        from fnn.diagnostics import Probe  # lazily: train sits below diagnostics

        return Probe()
    if isinstance(probe, (int, float, str)):
        raise TypeError(
            f"probe must be True, False or a probe such as fnn.diagnostics.Probe(every=...), got {probe!r}"
        )
    return probe


def _run_epochs(
    run: Run,
    train,
    eval_data,
    batch_size: int,
    epoch_args: dict,
    callbacks: list[Callback],
    checkpoints: checkpointing.Checkpoints,
    progress: bool,
) -> None:
    """Epochs until ``run.epochs`` are done or a callback stops: train, evaluate, diagnose,
    call back, checkpoint."""
    n_steps = train[0].shape[0] // batch_size
    probe, metrics = epoch_args["probe"], epoch_args["metrics"]
    diagnose = getattr(probe, "diagnose", None)
    with ProgressBar(progress) as bar:
        every = callback_interval(n_steps) if bar.enabled else 0
        run_epoch = make_train_epoch(
            run.model, run.loss, run.optimizer, batch_size, **epoch_args, progress_every=every
        )
        while run.train_state.epoch < run.epochs and not run.stop_training:
            bar.begin_epoch(f"epoch {run.train_state.epoch + 1}/{run.epochs}", n_steps, batch_size)
            t0 = time.perf_counter()
            ts, record, done = _train_epoch(run, run_epoch, train, n_steps, probe)
            bar.done()
            if done < n_steps:
                raise _diverged(run, ts, record, done + 1, n_steps, checkpoints, diagnose)
            record["train_seconds"] = time.perf_counter() - t0
            if eval_data is not None:
                scores = evaluate_checked(run.model, ts.params, ts.state, *eval_data, run.loss, metrics)
                record.update({f"test_{k}": v for k, v in scores.items()})
            record["seconds"] = time.perf_counter() - t0
            run.train_state = ts
            run.history.append(record)
            if diagnose is not None:
                record["diagnoses"] = diagnose(run.history)
            for cb in callbacks:
                cb.on_epoch_end(run, record)
            checkpoints.end_of_epoch(run, record)


def _train_epoch(run: Run, run_epoch, train, n_steps: int, probe: EpochProbe | None):
    """One compiled epoch: ``(train_state, record, steps applied)``. When a step diverged
    (fewer than ``n_steps`` applied), the TrainState is the one before it and the record
    holds that step's loss, gradient norm and lr, and the points of the steps before it."""
    ts = run.train_state
    key = jax.random.fold_in(ts.key, ts.epoch)
    params, state, opt_state, m = run_epoch(ts.params, ts.state, ts.opt_state, key, *train)
    m = jax.tree.map(np.asarray, m)  # waits for the epoch
    points, ok = m.pop("probe", None), m.pop("ok")
    done = n_steps if ok.all() else int(np.argmin(ok))
    epoch = ts.epoch + (done == n_steps)
    new = ts._replace(params=params, state=state, opt_state=opt_state, step=ts.step + done, epoch=epoch)
    record: dict[str, Any] = {"epoch": ts.epoch + 1}
    if done < n_steps:
        record.update(train_loss=float(m["loss"][done]), grad_norm=float(m["grad_norm"][done]))
        if "lr" in m and new.step > 0:  # the rate of the latest applied update; none yet: no rate
            record["lr"] = float(m["lr"][done])
        if points is not None:  # only the points of the steps that were applied
            kept = points["ok"]
            points = {**points, "step": points["step"][kept]}
            points["points"] = jax.tree.map(lambda a: a[kept], points["points"])
    else:
        record["train_loss"] = float(m.pop("loss").mean())
        lr = m.pop("lr", None)
        record.update({(k if k == "grad_norm" else f"train_{k}"): float(v.mean()) for k, v in m.items()})
        if lr is not None:
            record["lr"] = float(lr[-1])
    if probe is not None:
        summary = probe.summarize(run.model, points["points"])
        steps = [ts.step + int(s) for s in points["step"]]
        record["probe"] = {"every": int(points["every"]), "step": steps, **summary}
    return new, record, done


def _diverged(run: Run, ts: TrainState, record: dict, step: int, n_steps: int, checkpoints, diagnose):
    """The ``TrainingDiverged`` for a bad step: ``ts``, the state from just before it, is saved
    to ``diverged.npz``; ``record``, what is known of its epoch, gets the probe's diagnoses."""
    epoch, loss, lr, grad_norm = record["epoch"], record["train_loss"], record.get("lr"), record["grad_norm"]
    info = {"epoch": epoch, "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
    if "probe" in record:
        info["probe"] = record["probe"]
    saved = checkpoints.diverged(ts, run, info)
    if diagnose is not None:
        record["diagnoses"] = diagnose([*run.history, record])
    what = f"loss {loss}" if not np.isfinite(loss) else f"gradient norm {grad_norm} (loss {loss:.4g})"
    rate = f" with learning rate {lr:.4g}" if lr is not None else ""
    kept = f" (also in {saved})" if saved else ""
    # Under jit a class label outside [0, C) cannot raise: it makes the loss NaN.
    nan = "; a NaN loss can also come from class labels outside [0, C) (or inputs outside the loss's "
    nan += "domain, such as BCE probabilities outside [0, 1])"
    message = (
        f"training diverged at epoch {epoch}, step {step}/{n_steps}: non-finite {what}{rate}. "
        f"The state from just before that step is kept in error.result.train_state{kept}; "
        f"try a smaller learning rate{nan if np.isnan(loss) else ''}"
    )
    result = FitResult(ts, run.history)
    error = TrainingDiverged(message, epoch=epoch, step=step, loss=loss, lr=lr, result=result)
    error.record = record
    return error
