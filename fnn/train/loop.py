"""``fit``: epochs of the compiled epoch, evaluation, callbacks and checkpoints.

``fit`` is a short composition of the pieces below: prepare the data and the TrainState,
then per epoch run the compiled epoch, evaluate, let the callbacks act and write the
checkpoint. Its contract:

- **Continue any run.** ``fit(..., train_state=ts)`` goes on from ``ts`` with ``epochs``
  counting the total, exactly as ``resume=True`` does from a checkpoint:
  ``fit(epochs=4)`` equals ``fit(epochs=2)`` then ``fit(epochs=4, train_state=first.train_state)``
  bit for bit, optimizer moments included (epoch ``e`` always draws from
  ``fold_in(run_key, e)``). The returned history holds the epochs this call ran (after a
  ``resume``, the checkpoint's history too).
- **Never lose work on divergence.** When a step's loss or gradients are non-finite, the
  compiled epoch keeps the state from before that step, and ``fit`` raises
  ``TrainingDiverged`` (a ``FloatingPointError``) carrying that state in ``.result``; with
  ``checkpoint_dir`` it is also written to ``diverged.npz`` beside the last epoch's
  checkpoint, which stays as it was.
- **History.** One dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_<metric>``
  (means over the epoch's steps), ``grad_norm`` (mean global gradient norm), ``lr`` (the
  rate of the epoch's last step), ``test_loss`` / ``test_<metric>`` (with ``eval_data``;
  exact dataset means), ``train_seconds`` (training alone) and ``seconds`` (the epoch with
  evaluation; the first includes compiling).
- **Checkpoints** (``fnn.train.checkpointing``): ``resume=True`` checks the config
  fingerprint; an existing checkpoint with ``resume=False`` raises unless
  ``overwrite=True``; ``keep_best='test_loss'`` also keeps ``best.npz``.
- ``mesh=`` makes training data parallel (``fnn.distributed``); under
  ``jax.distributed`` every process passes its own shard of the data and only process 0
  writes checkpoints.
- **Monitor.** ``probe=True`` (``fnn.diagnostics.Probe()``) or any object implementing
  ``fnn.train.EpochProbe`` collects per-layer statistics inside the compiled epoch; each
  record then holds ``record["probe"] = {"every", "step", **monitor.summarize(...)}`` with
  plain floats and global 1-based steps (``TrainState.step`` after that step). This is the
  one place ``fnn.train`` touches ``fnn.diagnostics``, imported lazily here, so importing
  ``fnn.train`` does not import it. Off (the default), the compiled epoch is unchanged.
  A monitor may also define ``diagnose(history)``; ``fnn.diagnostics.Probe``'s runs the
  course's rules (``fnn.diagnostics.rules``) after each epoch, evaluation included, and the
  record gets ``record["diagnoses"]``: that epoch's findings as dicts (``Diagnosis._asdict()``),
  an empty list when there are none. Without a monitor, no rule runs.
  An epoch that diverges gets no record in the history (``fit`` raises ``TrainingDiverged``);
  its points from the bad step on, describing steps that were not applied, are dropped, and
  those of the steps applied before it, with their diagnoses, are in the error's ``record``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn import distributed, nn
from fnn._checks import check_batch_size
from fnn.train import checkpointing
from fnn.train.callbacks import Callback, Run, as_callbacks
from fnn.train.epoch import make_train_epoch
from fnn.train.evaluation import check_data, check_labels, evaluate_checked
from fnn.train.metrics import resolve_metrics
from fnn.train.precision import check_compute_dtype
from fnn.train.probe import EpochProbe
from fnn.train.progress import ProgressBar, callback_interval
from fnn.train.state import FitResult, TrainingDiverged, TrainState, init_train_state
from fnn.train.step import check_grad_mode

__all__ = ["fit"]


@dataclasses.dataclass
class _Data:
    x: jax.Array
    y: jax.Array
    eval: tuple[jax.Array, jax.Array] | None


def _prepare_data(train_data, eval_data, batch_size: int, mesh) -> tuple[_Data, tuple[Any, Any]]:
    """Device arrays (placed for ``mesh``), checked; also this process's own training rows."""
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
    return _Data(x, y, eval_data), local


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
    """Copies of the carry (the epoch donates its buffers; the caller's arrays stay valid)."""
    ts = ts.copy()
    if mesh is not None:
        ts = ts._replace(
            **dict(
                zip(
                    ("params", "state", "opt_state", "key"),
                    distributed.replicate((ts.params, ts.state, ts.opt_state, ts.key), mesh),
                    strict=True,
                )
            )
        )
    return ts


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


def _monitor_record(run: Run, monitor: EpochProbe, m: dict, first_step: int) -> dict:
    """The epoch's ``record["probe"]``: every, the points' global steps, the summary."""
    return {
        "every": int(m["every"]),
        "step": [first_step + int(s) for s in m["step"]],
        **monitor.summarize(run.model, m["points"]),
    }


def _train_epoch(
    run: Run, run_epoch, data: _Data, n_steps: int, monitor: EpochProbe | None = None
) -> tuple[TrainState, dict, dict | None]:
    """One compiled epoch; returns the new TrainState, the training part of the record
    and, if a step diverged, what happened (the TrainState is then the one before it)."""
    ts = run.train_state
    params, state, opt_state, m = run_epoch(
        ts.params, ts.state, ts.opt_state, jax.random.fold_in(ts.key, ts.epoch), data.x, data.y
    )
    m = jax.tree.map(np.asarray, m)  # waits for the epoch
    points = m.pop("probe", None)
    ok = m.pop("ok")
    done = n_steps if ok.all() else int(np.argmin(ok))
    ts = ts._replace(
        params=params,
        state=state,
        opt_state=opt_state,
        step=ts.step + done,
        epoch=ts.epoch + (done == n_steps),
    )
    if done < n_steps:
        lr = float(m["lr"][done]) if "lr" in m else None
        bad = {
            "epoch": run.train_state.epoch + 1,
            "step": done + 1,
            "loss": float(m["loss"][done]),
            "lr": lr,
            "grad_norm": float(m["grad_norm"][done]),
        }
        if monitor is not None:  # the points of the steps that were applied
            applied = {**points, "step": points["step"][points["ok"]]}
            applied["points"] = jax.tree.map(lambda a: a[points["ok"]], points["points"])
            bad["probe"] = _monitor_record(run, monitor, applied, run.train_state.step)
        return ts, {}, bad
    record = {"epoch": ts.epoch, "train_loss": float(m.pop("loss").mean())}
    lr = m.pop("lr", None)
    record.update({(k if k == "grad_norm" else f"train_{k}"): float(v.mean()) for k, v in m.items()})
    if lr is not None:
        record["lr"] = float(lr[-1])
    if monitor is not None:
        record["probe"] = _monitor_record(run, monitor, points, run.train_state.step)
    return ts, record, None


def _diverged_record(bad: dict, history: list[dict], monitor: EpochProbe | None) -> dict:
    """What is known of a diverged epoch, shaped like a record: ``train_loss`` and
    ``grad_norm`` are the bad step's; with a monitor, ``monitor`` holds the points of the
    steps applied before it and ``diagnoses`` the rules' findings (typically a learning
    rate too large)."""
    record = {"epoch": bad["epoch"], "train_loss": bad["loss"], "grad_norm": bad["grad_norm"]}
    if bad["lr"] is not None:
        record["lr"] = bad["lr"]
    if "probe" in bad:
        record["probe"] = bad["probe"]
    diagnose = getattr(monitor, "diagnose", None)
    if diagnose is not None:
        record["diagnoses"] = diagnose([*history, record])
    return record


def _diverged_error(info: dict, n_steps: int, saved: str | None, result: FitResult) -> TrainingDiverged:
    what = (
        f"loss {info['loss']}"
        if not np.isfinite(info["loss"])
        else f"gradient norm {info['grad_norm']} (loss {info['loss']:.4g})"
    )
    lr = f" with learning rate {info['lr']:.4g}" if info["lr"] is not None else ""
    kept = f" (also in {saved})" if saved else ""
    # LBL-1: under jit a class label outside [0, C) cannot raise; it makes the loss NaN.
    labels = (
        "; a NaN loss can also come from class labels outside [0, C) (or inputs outside the "
        "loss's domain, such as BCE probabilities outside [0, 1])"
        if np.isnan(info["loss"])
        else ""
    )
    return TrainingDiverged(
        f"training diverged at epoch {info['epoch']}, step {info['step']}/{n_steps}: non-finite {what}{lr}. "
        f"The state from just before that step is kept in error.result.train_state{kept}; "
        f"try a smaller learning rate{labels}",
        epoch=info["epoch"],
        step=info["step"],
        loss=info["loss"],
        lr=info["lr"],
        result=result,
    )


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
        checkpoint_dir: write ``checkpoint.npz`` there after every epoch.
        resume: go on from ``checkpoint_dir``'s checkpoint when there is one.
        overwrite: allow replacing an existing checkpoint when not resuming.
        keep_best: a history key (e.g. ``'test_loss'``); keeps its best epoch in ``best.npz``.
        mesh: a ``jax.sharding.Mesh`` with a ``'data'`` axis for data parallelism.
        monitor: True for ``fnn.diagnostics.Probe()`` (imported lazily, only then), a
            monitor object (``Probe(every=...)`` or any ``fnn.train.EpochProbe``), or
            False (default): per-layer statistics in each record's ``"probe"``.
        compute_dtype: None (default: the params' dtype) or ``'bfloat16'`` / ``'float16'``:
            mixed precision, the params, optimizer state and BatchNorm statistics stay the
            float32 master copy and each step computes in this dtype (``make_train_step``,
            ``fnn.train.precision``). The per-epoch evaluation runs on the float32 master
            params, in float32 (the more accurate choice; what a checkpoint restores).

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
    data, (local_x, local_y) = _prepare_data(train_data, eval_data, batch_size, mesh)
    ts = _initial_state(model, optimizer, key, train_state, params, state)
    if not distributed.is_global(local_y):
        check_labels(model, ts.params, ts.state, local_x, local_y, loss, "train_data")
    if data.eval is not None and not distributed.is_global(data.eval[1]):
        check_labels(model, ts.params, ts.state, *data.eval, loss, "eval_data")
    callbacks = as_callbacks(callbacks)
    checkpoints = checkpointing.Checkpoints(
        checkpoint_dir,
        checkpointing.fingerprint(model, loss, optimizer, batch_size, local_x, local_y),
        keep_best,
    )
    run = Run(model, loss, optimizer, ts, [], epochs, data.eval is not None)
    for cb in callbacks:
        cb.on_train_begin(run)
    ts, run.history = checkpoints.start(ts, resume, overwrite, callbacks)
    run.train_state = _owned(ts, mesh)
    epoch_args = dict(
        grad=grad,
        metrics=resolve_metrics(metrics, local_y),
        mesh=mesh,
        probe=_as_probe(probe),
        compute_dtype=check_compute_dtype(compute_dtype),
    )
    _run_epochs(run, data, batch_size, epoch_args, callbacks, checkpoints, progress)
    for cb in callbacks:
        cb.on_train_end(run)
    return FitResult(run.train_state, run.history)


def _run_epochs(
    run: Run,
    data: _Data,
    batch_size: int,
    epoch_args: dict,
    callbacks: list[Callback],
    checkpoints: checkpointing.Checkpoints,
    progress: bool,
) -> None:
    """Epochs until ``run.epochs`` are done or a callback stops: train, evaluate, call
    back, checkpoint; a divergence saves ``diverged.npz`` and raises."""
    n_steps = data.x.shape[0] // batch_size
    with ProgressBar(progress) as bar:
        run_epoch = make_train_epoch(
            run.model,
            run.loss,
            run.optimizer,
            batch_size,
            **epoch_args,
            progress_every=callback_interval(n_steps) if bar.enabled else 0,
        )
        while run.train_state.epoch < run.epochs and not run.stop_training:
            bar.begin_epoch(f"epoch {run.train_state.epoch + 1}/{run.epochs}", n_steps, batch_size)
            t0 = time.perf_counter()
            ts, record, bad = _train_epoch(run, run_epoch, data, n_steps, epoch_args["probe"])
            bar.done()
            if bad is not None:
                saved = checkpoints.diverged(ts, run, callbacks, bad)
                error = _diverged_error(bad, n_steps, saved, FitResult(ts, run.history))
                error.record = _diverged_record(bad, run.history, epoch_args["probe"])
                raise error
            record["train_seconds"] = time.perf_counter() - t0
            if data.eval is not None:
                scores = evaluate_checked(
                    run.model, ts.params, ts.state, *data.eval, run.loss, epoch_args["metrics"]
                )
                record.update({f"test_{k}": v for k, v in scores.items()})
            record["seconds"] = time.perf_counter() - t0
            run.train_state = ts
            run.history.append(record)
            diagnose = getattr(epoch_args["probe"], "diagnose", None)
            if diagnose is not None:
                record["diagnoses"] = diagnose(run.history)
            for cb in callbacks:
                cb.on_epoch_end(run, record)
            checkpoints.end_of_epoch(run, callbacks, record)
