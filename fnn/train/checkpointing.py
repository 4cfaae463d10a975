"""``fit``'s run checkpoints: what a run directory holds, resume and overwrite.

``fnn.checkpoint`` is the file format (any pytree, atomically); this module decides what
``fit`` puts in those files and when. Files in ``checkpoint_dir`` (``paths``):

- ``checkpoint.npz``: the latest epoch, written after every epoch. Tree: exactly the
  ``TrainState``. Metadata: ``epoch``, ``history``, ``fingerprint``, ``callbacks`` (each
  callback's ``state_dict``) and ``keep_best``.
- ``best.npz`` (with ``keep_best=``): the same for the best epoch so far.
- ``diverged.npz``: after a divergence, the state from just before the bad step, with
  ``diverged = {epoch, step, loss, lr}`` in its metadata.

A directory whose ``checkpoint.npz`` exists holds a run: starting there needs ``resume``
or ``overwrite`` (``check_start`` raises ``RunExistsError``; the command line asks the
same question through it). The fingerprint is a dict of canonical text descriptions:
``model``, ``loss``, ``optimizer`` (hyperparameters and schedules included),
``batch_size`` and ``data`` (training x and y shapes and dtypes). ``resume=True``
refuses a checkpoint whose fingerprint differs and names the field; the grad mode,
metrics and callbacks are free to change.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from fnn import checkpoint as ckpt
from fnn.train.callbacks import Callback, Run, improved, mode_for, monitored
from fnn.train.state import TrainState

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "DIVERGED_NAME",
    "Checkpoints",
    "RunExistsError",
    "check_fingerprint",
    "check_start",
    "describe",
    "fingerprint",
    "load",
    "paths",
    "save",
]

CHECKPOINT_NAME = "checkpoint.npz"
BEST_NAME = "best.npz"
DIVERGED_NAME = "diverged.npz"


def describe(obj: Any) -> str:
    """A canonical, process-independent description of a spec, optimizer or value, for fingerprints.

    No memory addresses appear in it: arrays are described by shape, dtype and a hash of
    their bytes, functions by their qualified name.

    Args:
        obj: a layer or loss spec, an optimizer or schedule, a container of them, or a value.

    Returns:
        The description text.

    Example:
        >>> from fnn import nn
        >>> describe(nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU()))[:67]
        'Sequential(layers=(Linear(in_features=2, out_features=3, bias=False'
        >>> describe(nn.Sequential(nn.ReLU()))
        'Sequential(layers=(ReLU()))'
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return repr(obj)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        a = np.asarray(obj)
        return f"array{a.shape}:{a.dtype}:{hashlib.sha1(a.tobytes()).hexdigest()[:12]}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in obj) + ")"
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k}: {describe(obj[k])}" for k in sorted(obj, key=str)) + "}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hyper = getattr(obj, "hyperparams", None)
        if isinstance(hyper, Mapping) and hyper:  # an fnn.optim transform or schedule: its arguments
            name = hyper.get("name") or getattr(obj, "name", type(obj).__name__)
            return f"{name}({', '.join(f'{k}={describe(v)}' for k, v in hyper.items() if k != 'name')})"
        fields = [f for f in dataclasses.fields(obj) if f.compare]
        return (
            f"{type(obj).__name__}({', '.join(f'{f.name}={describe(getattr(obj, f.name))}' for f in fields)})"
        )
    if isinstance(obj, functools.partial):
        parts = [describe(obj.func)] + [describe(a) for a in obj.args]
        parts += [f"{k}={describe(v)}" for k, v in sorted(obj.keywords.items())]
        return f"partial({', '.join(parts)})"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return type(obj).__qualname__


def fingerprint(model: Any, loss: Any, optimizer: Any, batch_size: int, x: Any, y: Any) -> dict[str, str]:
    """The fields ``resume`` compares (see the module docstring).

    Args:
        model: the model spec.
        loss: the loss spec.
        optimizer: the optimizer.
        batch_size: the training batch size.
        x: the training inputs (their shape and dtype count).
        y: the training targets (their shape and dtype count).

    Returns:
        A dict of text descriptions: model, loss, optimizer, batch_size, data.

    Example:
        >>> import numpy as np
        >>> from fnn import optim
        >>> x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int32)
        >>> fp = fingerprint(None, None, optim.sgd(lr=0.1), 32, x, y)
        >>> fp["batch_size"], fp["data"]
        ('32', 'x (4, 2) float32, y (4,) int32')
    """
    return {
        "model": describe(model),
        "loss": describe(loss),
        "optimizer": describe(optimizer),
        "batch_size": str(batch_size),
        "data": f"x {tuple(np.shape(x))} {x.dtype}, y {tuple(np.shape(y))} {y.dtype}",
    }


def _excerpt(a: str, b: str, context: int = 50) -> tuple[str, str]:
    """The two texts around their first difference."""
    i = next((k for k, (p, q) in enumerate(zip(a, b, strict=False)) if p != q), min(len(a), len(b)))
    start = max(0, i - context)

    def cut(s: str) -> str:
        return ("..." if start else "") + s[start : i + context] + ("..." if i + context < len(s) else "")

    return cut(a), cut(b)


def check_fingerprint(path: str, saved: Mapping[str, str] | None, current: Mapping[str, str]) -> None:
    """Refuse to resume from a run with another config, naming the first differing field.

    Args:
        path: the checkpoint's path, for the message.
        saved: the fingerprint stored in the checkpoint, or None (a file not written by ``fit``).
        current: this run's fingerprint.

    Raises:
        ValueError: saved is None, or a field differs (the message shows both values
            around the first difference).

    Example:
        >>> try:
        ...     check_fingerprint("run/checkpoint.npz", {"batch_size": "32"}, {"batch_size": "64"})
        ... except ValueError as e:
        ...     print(str(e).split(" (use")[0])
        run/checkpoint.npz: cannot resume, the batch_size differs: checkpoint has 32, this run has 64
    """
    if saved is None:
        raise ValueError(
            f"{path}: the checkpoint has no config fingerprint (it was not written by fit); "
            "cannot check it matches this run"
        )
    for field, value in current.items():
        if saved.get(field) != value:
            old, new = _excerpt(str(saved.get(field)), value)
            raise ValueError(
                f"{path}: cannot resume, the {field} differs: checkpoint has {old}, this run "
                f"has {new} (use another checkpoint_dir, or resume=False, overwrite=True)"
            )


def save(path: str, ts: TrainState, metadata: dict[str, Any]) -> None:
    """Write a TrainState with metadata, atomically; only process 0 writes.

    Args:
        path: the .npz file to write.
        ts: the TrainState.
        metadata: JSON-serialisable metadata (history, fingerprint, callbacks, ...); the
            TrainState's ``epoch`` is added.
    """
    if jax.process_index() == 0:
        ckpt.save(path, ts, metadata={"epoch": ts.epoch, **metadata})


def load(
    path: str, like: TrainState, fingerprint: Mapping[str, str] | None = None
) -> tuple[TrainState, dict[str, Any]]:
    """Read a checkpoint into the structure of ``like``.

    With ``fingerprint``, a config mismatch is reported by field before any array mismatch
    (naming the leaf); the file is read once, and a second time only to explain a structural
    mismatch.

    Args:
        path: the .npz file to read.
        like: a TrainState of the structure, shapes and dtypes expected.
        fingerprint: this run's fingerprint, to check against the saved one; None skips it.

    Returns:
        (the TrainState read, its metadata dict ({} when it has none)).

    Raises:
        ValueError: the fingerprint or the structure does not match.
    """
    try:
        ts, meta = ckpt.load(path, like=like)
    except ValueError:
        if fingerprint is not None:  # another config usually explains it better than a leaf
            check_fingerprint(path, (ckpt.load(path)[1] or {}).get("fingerprint"), fingerprint)
        raise
    if fingerprint is not None:
        check_fingerprint(path, (meta or {}).get("fingerprint"), fingerprint)
    return ts, meta or {}


def paths(checkpoint_dir: str | os.PathLike) -> dict[str, str]:
    """The checkpoint files of ``checkpoint_dir``: 'latest', 'best' and 'diverged'.

    Args:
        checkpoint_dir: the directory.

    Returns:
        A dict name -> path.

    Example:
        >>> paths("run")["best"]
        'run/best.npz'
    """
    d = os.fspath(checkpoint_dir)
    return {
        "latest": os.path.join(d, CHECKPOINT_NAME),
        "best": os.path.join(d, BEST_NAME),
        "diverged": os.path.join(d, DIVERGED_NAME),
    }


class RunExistsError(FileExistsError):
    """``checkpoint_dir`` already holds a run, and neither resume nor overwrite was asked for.

    Attributes:
        path: the existing ``checkpoint.npz``.
    """

    def __init__(self, path: str):
        super().__init__(f"{path} exists: pass resume=True to go on from it, or overwrite=True to start over")
        self.path = path


def check_start(checkpoint_dir: str | os.PathLike, resume: bool, overwrite: bool) -> bool:
    """Whether ``checkpoint_dir`` holds a run, refusing to start over one unasked.

    Args:
        checkpoint_dir: the run's directory (it need not exist).
        resume: going on from the run there is allowed.
        overwrite: replacing the run there is allowed.

    Returns:
        True when the directory holds a run (its ``checkpoint.npz`` exists).

    Raises:
        RunExistsError: it holds a run and neither ``resume`` nor ``overwrite`` is set.

    Example:
        >>> check_start("/nonexistent/run", resume=False, overwrite=False)
        False
    """
    latest = paths(checkpoint_dir)["latest"]
    if not os.path.exists(latest):
        return False
    if not (resume or overwrite):
        raise RunExistsError(latest)
    return True


class Checkpoints:
    """The checkpoint_dir side of ``fit``: start (fresh, overwrite or resume), per epoch, diverged."""

    def __init__(self, checkpoint_dir, fingerprint: dict[str, str], keep_best: str | None):
        self.paths = paths(checkpoint_dir) if checkpoint_dir else None
        self.fingerprint, self.keep_best, self.best = fingerprint, keep_best, None
        if keep_best is not None and self.paths is None:
            raise ValueError("keep_best needs checkpoint_dir")

    def start(
        self, ts: TrainState, resume: bool, overwrite: bool, callbacks: list[Callback]
    ) -> tuple[TrainState, list[dict]]:
        """The TrainState and history to start from (after ``on_train_begin``)."""
        if self.paths is None:
            if resume:
                raise ValueError("resume=True needs checkpoint_dir")
            return ts, []
        latest = self.paths["latest"]
        os.makedirs(os.path.dirname(latest), exist_ok=True)
        if not check_start(os.path.dirname(latest), resume, overwrite):
            return ts, []
        if not resume:
            for name in ("best", "diverged"):
                if os.path.exists(self.paths[name]) and jax.process_index() == 0:
                    os.unlink(self.paths[name])
            return ts, []
        ts, meta = load(latest, like=ts, fingerprint=self.fingerprint)
        # strict=False: a resumed run may pass fewer or more callbacks than were saved.
        for cb, saved in zip(callbacks, meta.get("callbacks", []), strict=False):
            if saved.get("type") == type(cb).__name__:
                cb.load_state_dict(saved["state"])
        self.best = (meta.get("keep_best") or {}).get("value")
        return ts, list(meta.get("history", []))

    def end_of_epoch(self, run: Run, callbacks: list[Callback], record: dict) -> None:
        if self.paths is None:
            return
        if self.keep_best is not None:
            value = monitored(record, self.keep_best, "keep_best")
            if improved(value, self.best, mode_for(self.keep_best)):
                self.best = value
                save(self.paths["best"], run.train_state, self._meta(run, callbacks))
        save(self.paths["latest"], run.train_state, self._meta(run, callbacks))

    def _meta(self, run: Run, callbacks: list[Callback]) -> dict:
        return {
            "history": run.history,
            "fingerprint": self.fingerprint,
            "callbacks": [{"type": type(cb).__name__, "state": cb.state_dict()} for cb in callbacks],
            "keep_best": {"monitor": self.keep_best, "value": self.best},
        }

    def diverged(self, ts: TrainState, run: Run, callbacks: list[Callback], info: dict) -> str | None:
        if self.paths is None:
            return None
        save(self.paths["diverged"], ts, {**self._meta(run, callbacks), "diverged": info})
        return self.paths["diverged"]
