"""Shared plumbing for the experiment scripts: the command line, output files, figures.

Every script runs as ``python experiments/NAME.py [--quick] [--out DIR]``: ``--quick``
shrinks data and epochs to seconds (the test suite runs it so no script rots) and compiles
without LLVM's optimizations (``--xla_backend_optimization_level=0``), ``--out``
defaults to ``experiments/out/NAME``. Results go to ``DIR/results.json``; figures are
PNGs in DIR when matplotlib is installed (an optional extra: ``pip install -e .[plots]``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

# Scripts run from a clone without installing: make the repository importable.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


QUICK_XLA_FLAG = "--xla_backend_optimization_level=0"  # what --quick adds to XLA_FLAGS


def parse_args(name: str, description: str, extra: Any = None) -> argparse.Namespace:
    """``--quick`` and ``--out``; ``extra(parser)`` may add script-specific options."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small data, few epochs, unoptimized compiles: seconds, for tests",
    )
    parser.add_argument("--out", default=str(ROOT / "experiments" / "out" / name), help="output directory")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.quick:
        # A quick run's time is mostly XLA compiling epoch programs it then runs a few steps
        # of: LLVM's optimizations cost about a third of that CPU time and buy nothing back.
        # XLA reads the flag when the backend starts, after this (the scripts compute nothing
        # before parsing their arguments); full runs keep the default optimized code.
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_XLA_FLAG}".strip()
    os.makedirs(args.out, exist_ok=True)
    return args


def optimized_compiles() -> None:
    """Undo ``--quick``'s unoptimized compiles, before JAX starts its backend: XLA:CPU's
    convolutions then stay naive loops (~100x slower), which costs a CNN script more than
    the compile time saved."""
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "").replace(QUICK_XLA_FLAG, "").strip()


def save_json(out: str, results: dict, name: str = "results.json") -> str:
    path = os.path.join(out, name)
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=float)
    return path


def pyplot():
    """matplotlib.pyplot with a file-only backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: skipping figures (pip install -e '.[plots]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str, name: str) -> str:
    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"figure: {path}")
    return path


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """A plain fixed-width table of dicts (floats to 4 significant digits)."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def mnist(n_train: int | None = None, n_test: int | None = None) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """``((x_train, y_train), (x_test, y_test))``: the first ``n_train`` / ``n_test`` MNIST
    samples (all when None), images normalized with MNIST's mean/std to float32, labels
    int32, as jax arrays."""
    import jax.numpy as jnp

    from fnn import data

    splits = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = data.mnist(split)
        splits.append((jnp.asarray(data.normalize(images[:n])), jnp.asarray(labels[:n])))
    return splits[0], splits[1]


def print_history(history: list[dict]) -> None:
    """``fit``'s per-epoch history as a table (train/test loss and accuracy, seconds)."""
    columns = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")
    print_table(history, [c for c in columns if c in history[0]])


def plot_history(
    ax_loss: Any, ax_acc: Any, history: list[dict], loss_name: str = "cross-entropy loss"
) -> None:
    """Train (mean over the epoch) and test (end of epoch) loss and accuracy per epoch of
    ``fit``'s history on two axes, with labels, grid, legend and whole-epoch ticks (call
    ``legend()`` again after adding more lines)."""
    epochs = [r["epoch"] for r in history]
    for ax, key, scale, ylabel, title in (
        (ax_loss, "loss", 1, loss_name, "Loss"),
        (ax_acc, "accuracy", 100, "accuracy (%)", "Accuracy"),
    ):
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in history], "o-", label="train (mean over epoch)")
        ax.plot(epochs, [scale * r[f"test_{key}"] for r in history], "s-", label="test (end of epoch)")
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 15:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)


def train_monitored(
    model: Any,
    loss: Any,
    optimizer: Any,
    params: Any,
    state: Any,
    train_data: tuple[Any, Any],
    *,
    epochs: int,
    batch_size: int,
    key: Any,
    probe: Any = None,
) -> tuple[Any, Any, list[float], list[dict], int | None]:
    """``fit(probe=...)`` for experiments that need what fit drops: every step's loss, and
    the probe's points of a diverged epoch (fit raises and reports none). ``probe`` is the
    ``fnn.diagnostics.Probe`` to run (default ``Probe()``).

    Returns ``(params, state, step_losses, history, diverged_at)``: the step losses up to and
    including the first step whose loss or gradient norm is non-finite (the run stops there,
    params and state are those from before it; ``diverged_at`` is its global 1-based step,
    None when every step was finite); one record per epoch run, as fit's (``epoch``,
    ``train_loss``, ``lr``, ``probe`` with global steps), except that a diverged epoch's
    record keeps its points up to the bad step and its ``train_loss`` is the mean up to that
    step, so ``fnn.diagnostics.diagnose(history)`` sees the divergence. Epoch ``e``
    (0-based) draws from ``fold_in(key, e)``, as fit does.
    """
    import operator

    import jax
    import numpy as np

    from fnn import diagnostics, train

    monitor = probe or diagnostics.Probe()
    run_epoch = train.make_train_epoch(model, loss, optimizer, batch_size, probe=monitor)
    opt_state = optimizer.init(params)
    losses: list[float] = []
    history: list[dict] = []
    for e in range(epochs):
        params, state, opt_state, m = run_epoch(
            params, state, opt_state, jax.random.fold_in(key, e), *train_data
        )
        m = jax.tree.map(np.asarray, m)
        ok = m["ok"]
        done = len(ok) if ok.all() else int(np.argmin(ok)) + 1  # steps run, the bad one included
        points = m["probe"]
        kept = int(np.sum(points["step"] <= done))
        record = {"epoch": e + 1, "train_loss": float(np.mean(m["loss"][:done]))}
        if "lr" in m:
            record["lr"] = float(m["lr"][done - 1])
        record["probe"] = {
            "every": int(points["every"]),
            "step": [len(losses) + int(s) for s in points["step"][:kept]],
            **monitor.summarize(model, jax.tree.map(operator.itemgetter(slice(kept)), points["points"])),
        }
        losses.extend(m["loss"][:done].tolist())
        history.append(record)
        if not ok.all():
            return params, state, losses, history, len(losses)
    return params, state, losses, history, None


def at_init(model: Any, params: Any, state: Any, x: Any, key: Any, y: Any = None, loss: Any = None) -> dict:
    """A one-point history record of ``fnn.diagnostics.Probe.collect`` on the initial
    weights: the training-mode forward on ``x`` (what step 1 would see), with the loss and
    gradients on ``y`` when ``loss`` is given; without, a forward-only point whose loss and
    gradients are recorded as 0. No update is taken, so every update ratio is 0: only the
    activation rules (dead-relu, saturation, vanishing/exploding signal) can judge it.
    ``diagnose([at_init(...)])`` gives the diagnoses at initialization."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fnn import diagnostics, nn, train

    if loss is None:
        value, grads = jnp.zeros(()), jax.tree.map(jnp.zeros_like, params)
    else:

        def objective(p):
            return nn.as_loss(loss)(model.apply(p, state, x, key=key, train=True)[0], y)

        value, grads = jax.value_and_grad(objective)(params)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    step = train.ProbeStep(params, state, key, x, y, grads, params, state, value, grad_norm)
    monitor = diagnostics.Probe(every=1)
    point = jax.tree.map(lambda a: np.asarray(a)[None], monitor.collect(model, step))
    return {
        "epoch": 1,
        "train_loss": float(value),
        "probe": {"every": 1, "step": [1], **monitor.summarize(model, point)},
    }


def findings(history: list[dict]) -> list[dict]:
    """``fnn.diagnostics.diagnose(history)`` as JSON-able dicts, for results.json."""
    from fnn import diagnostics

    return [d._asdict() for d in diagnostics.diagnose(history)]


def summarize_findings(found: list[dict]) -> str:
    """One short cell per run for the tables: each rule once, with the layers it named and
    the range of its values, e.g. ``dead-relu 9,11,13 (97-100%); lr-too-large``."""
    if not found:
        return "-"
    parts = []
    for rule in dict.fromkeys(d["rule"] for d in found):
        hits = [d for d in found if d["rule"] == rule]
        layers = sorted({int(d["layer"].split()[0]) for d in hits if d["layer"]})
        text = rule + (" " + ",".join(map(str, layers)) if layers else "")
        if rule in ("dead-relu", "saturation"):
            lo, hi = min(d["value"] for d in hits), max(d["value"] for d in hits)
            text += (
                f" ({100 * lo:.0f}%)"
                if round(100 * lo) == round(100 * hi)
                else f" ({100 * lo:.0f}-{100 * hi:.0f}%)"
            )
        elif rule in ("vanishing-signal", "exploding-signal"):
            values = sorted({f"{d['value']:.2g}" for d in hits}, key=float)
            text += f" ({'-'.join(values[:: max(1, len(values) - 1)])}x/layer)"
        parts.append(text)
    return "; ".join(parts)
