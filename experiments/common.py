"""Shared plumbing for the experiment scripts: the command line, output files, figures.

Every script runs as ``python experiments/NAME.py [--quick] [--out DIR]``: ``--quick``
shrinks data and epochs to seconds (the test suite runs it so no script rots), ``--out``
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


def parse_args(name: str, description: str, extra: Any = None) -> argparse.Namespace:
    """``--quick`` and ``--out``; ``extra(parser)`` may add script-specific options."""
    parser = argparse.ArgumentParser(prog=f"experiments/{name}.py", description=description)
    parser.add_argument("--quick", action="store_true", help="small data, few epochs: seconds, for tests")
    parser.add_argument("--out", default=str(ROOT / "experiments" / "out" / name), help="output directory")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args


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
