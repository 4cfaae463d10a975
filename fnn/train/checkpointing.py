"""``fit``'s run checkpoints: what a run directory holds, resume and overwrite.

``fnn.checkpoint`` is the file format; this module decides what ``fit`` writes in
``checkpoint_dir`` (``paths``) and when:

- ``checkpoint.npz``: the latest epoch, written after every epoch. Tree: exactly the
  ``TrainState``. Metadata: ``epoch``, ``history``, ``fingerprint``, ``callbacks`` (each
  callback's ``state_dict``) and ``keep_best``.
- ``best.npz`` (with ``keep_best=``): the same for the best epoch so far.
- ``diverged.npz``: after a divergence, the state from just before the bad step, with
  ``diverged = {epoch, step, loss, lr, grad_norm}`` in its metadata.

A directory whose ``checkpoint.npz`` exists holds a run: starting there needs ``resume``
or ``overwrite`` (``check_start``, for ``fit`` and the command line). The fingerprint
describes ``model``, ``loss``, ``optimizer`` (hyperparameters and schedules included),
``batch_size`` and ``data`` (training shapes and dtypes) as canonical text; ``resume=True``
refuses a checkpoint whose fingerprint differs, naming the field. The grad mode, metrics
and callbacks are free to change.
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
from fnn.train.callbacks import Callback, Run, improved, monitored
from fnn.train.state import TrainState

__all__ = [
    "BEST_NAME",
    "CHECKPOINT_NAME",
    "DIVERGED_NAME",
    "Checkpoints",
    "RunExistsError",
    "check_start",
    "describe",
    "fingerprint",
    "paths",
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
        model, loss, optimizer: the specs and the optimizer.
        batch_size: the training batch size.
        x, y: the training data (only their shapes and dtypes count).

    Returns:
        A dict of text descriptions: model, loss, optimizer, batch_size, data.

    Example:
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


def _check_fingerprint(path: str, saved: Mapping[str, str] | None, current: Mapping[str, str]) -> None:
    """Refuse to resume from a run with another config, naming the first differing field.

    >>> saved, current = {"batch_size": "32"}, {"batch_size": "64"}
    >>> _check_fingerprint("run/c.npz", saved, current)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: run/c.npz: cannot resume, the batch_size differs: checkpoint has 32, this run has 64 ...
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


def paths(checkpoint_dir: str | os.PathLike) -> dict[str, str]:
    """The checkpoint files of ``checkpoint_dir``.

    Args:
        checkpoint_dir: the directory.

    Returns:
        ``{"latest": ..., "best": ..., "diverged": ...}``, the paths.

    Example:
        >>> paths("run")["best"]
        'run/best.npz'
    """
    names = {"latest": CHECKPOINT_NAME, "best": BEST_NAME, "diverged": DIVERGED_NAME}
    return {which: os.path.join(os.fspath(checkpoint_dir), name) for which, name in names.items()}


class RunExistsError(FileExistsError):
    """``checkpoint_dir`` already holds a run, and neither resume nor overwrite was asked for.

    Attributes:
        path: the existing ``checkpoint.npz``.
    """

    def __init__(self, path: str):
        super().__init__(f"{path} exists: pass resume=True to go on from it, or overwrite=True to start over")
        self.path = path


def check_start(checkpoint_dir: str | os.PathLike, resume: bool, overwrite: bool) -> bool:
    """Whether ``checkpoint_dir`` (which need not exist) holds a run, refusing to start over
    one unasked.

    Args:
        checkpoint_dir: the run's directory.
        resume, overwrite: whether going on from, or replacing, the run there is allowed.

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
    """``fit``'s side of ``checkpoint_dir``: where to start, and what to write after each
    epoch and on divergence (nothing without a directory).

    Args:
        checkpoint_dir: the run's directory, or None.
        fingerprint: this run's ``fingerprint``.
        keep_best: the history key whose best epoch goes to ``best.npz``, or None.
        callbacks: the run's callbacks, whose ``state_dict`` each checkpoint holds.
    """

    def __init__(
        self, checkpoint_dir, fingerprint: dict[str, str], keep_best: str | None, callbacks: list[Callback]
    ):
        self.paths = paths(checkpoint_dir) if checkpoint_dir else None
        self.fingerprint, self.keep_best, self.callbacks, self.best = fingerprint, keep_best, callbacks, None
        if keep_best is not None and self.paths is None:
            raise ValueError("keep_best needs checkpoint_dir")

    def start(self, ts: TrainState, resume: bool, overwrite: bool) -> tuple[TrainState, list[dict]]:
        """The TrainState and history to start from; a fresh start removes the old best and
        diverged files, a resume restores the callbacks' state (call after ``on_train_begin``)."""
        if self.paths is None:
            if resume:
                raise ValueError("resume=True needs checkpoint_dir")
            return ts, []
        directory = os.path.dirname(self.paths["latest"])
        os.makedirs(directory, exist_ok=True)
        if not check_start(directory, resume, overwrite):
            return ts, []
        if not resume:
            for name in ("best", "diverged"):
                if os.path.exists(self.paths[name]) and jax.process_index() == 0:
                    os.unlink(self.paths[name])
            return ts, []
        latest = self.paths["latest"]
        try:
            ts, meta = ckpt.load(latest, like=ts)
        except ValueError:  # another config explains a leaf's mismatch better
            _check_fingerprint(latest, (ckpt.load(latest)[1] or {}).get("fingerprint"), self.fingerprint)
            raise
        meta = meta or {}
        _check_fingerprint(latest, meta.get("fingerprint"), self.fingerprint)
        # strict=False: a resumed run may pass fewer or more callbacks than were saved.
        for cb, saved in zip(self.callbacks, meta.get("callbacks", []), strict=False):
            if saved.get("type") == type(cb).__name__:
                cb.load_state_dict(saved["state"])
        self.best = (meta.get("keep_best") or {}).get("value")
        return ts, list(meta.get("history", []))

    def end_of_epoch(self, run: Run, record: dict) -> None:
        """Write ``checkpoint.npz`` (and ``best.npz`` when ``keep_best`` improved)."""
        if self.paths is None:
            return
        if self.keep_best is not None:
            value = monitored(record, self.keep_best, "keep_best")
            if improved(value, self.best, "max" if self.keep_best.endswith("accuracy") else "min"):
                self.best = value
                self._write("best", run.train_state, run)
        self._write("latest", run.train_state, run)

    def diverged(self, ts: TrainState, run: Run, info: dict) -> str | None:
        """Write ``diverged.npz`` with ``info`` in its metadata; returns its path (None: no directory)."""
        return None if self.paths is None else self._write("diverged", ts, run, diverged=info)

    def _write(self, name: str, ts: TrainState, run: Run, **extra) -> str:
        """Write ``ts`` and the run's metadata to the ``name`` file, atomically; only process 0 writes."""
        if jax.process_index() == 0:
            meta = {
                "epoch": ts.epoch,
                "history": run.history,
                "fingerprint": self.fingerprint,
                "callbacks": [{"type": type(cb).__name__, "state": cb.state_dict()} for cb in self.callbacks],
                "keep_best": {"monitor": self.keep_best, "value": self.best},
                **extra,
            }
            ckpt.save(self.paths[name], ts, metadata=meta)
        return self.paths[name]
