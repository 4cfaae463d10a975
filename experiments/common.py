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
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)))
