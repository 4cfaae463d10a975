"""Export a Scalar graph as Graphviz DOT text, and render it when Graphviz is installed.

`to_dot(root)` needs nothing beyond the standard library: each value is a record node
showing its label, data and grad; each operation is a small ellipse node placed between
its inputs and its result, so the picture reads left to right like the computation.
`draw(root, path)` pipes that text through the Graphviz `dot` program to write SVG or PNG
(chosen by the file suffix) and raises a RuntimeError saying so when `dot` is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from fnn.autograd.scalar import Scalar

__all__ = ["draw", "to_dot"]

_FORMATS = {".svg": "svg", ".png": "png"}


def _escape(text: str) -> str:
    """Escape the characters that are special inside a DOT record label."""
    for ch in '\\{}|<>"':
        text = text.replace(ch, "\\" + ch)
    return text


def to_dot(root: Scalar, *, rankdir: str = "LR", precision: int = 4) -> str:
    """The graph that ends at `root` as Graphviz DOT text.

    One record per value (label, data, grad) and one ellipse per operation, placed between
    its inputs and its result.

    Args:
        root: the Scalar the graph ends at (usually the one `backward()` was called on).
        rankdir: Graphviz's layout direction, 'LR' (default), 'RL', 'TB' or 'BT'.
        precision: the significant digits shown for data and grad (default 4).

    Returns:
        The DOT text, ending with a newline.

    Example:
        >>> from fnn.autograd import Scalar, to_dot
        >>> x = Scalar(2.0, label="x")
        >>> y = x.exp()
        >>> y.backward()
        >>> print(to_dot(y))
        digraph scalar {
          rankdir=LR;
          node [fontname="monospace"];
          n0 [shape=record, label="{ x | data 2 | grad 7.389 }"];
          n1 [shape=record, label="{ data 7.389 | grad 1 }"];
          n1_op [shape=ellipse, label="exp"];
          n1_op -> n1;
          n0 -> n1_op;
        }
        <BLANKLINE>
    """
    if not isinstance(root, Scalar):
        raise TypeError(f"to_dot: root must be a Scalar, got {type(root).__name__}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"to_dot: rankdir must be 'LR', 'RL', 'TB' or 'BT', got {rankdir!r}")
    order = root.topological_order()
    ids = {id(node): f"n{i}" for i, node in enumerate(order)}
    lines = ["digraph scalar {", f"  rankdir={rankdir};", '  node [fontname="monospace"];']
    for node in order:
        name = ids[id(node)]
        fields = [_escape(node.label)] if node.label else []
        fields += [f"data {node.data:.{precision}g}", f"grad {node.grad:.{precision}g}"]
        lines.append(f'  {name} [shape=record, label="{{ {" | ".join(fields)} }}"];')
        if node.inputs:
            op = f"{name}_op"
            lines.append(f'  {op} [shape=ellipse, label="{_escape(node.op)}"];')
            lines.append(f"  {op} -> {name};")
            for child in node.inputs:
                lines.append(f"  {ids[id(child)]} -> {op};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(root: Scalar, path: str | Path, **kwargs) -> Path:
    """Render the graph to `path` (.svg or .png) with Graphviz's `dot`.

    Args:
        root: the Scalar the graph ends at.
        path: the output file; its suffix (.svg or .png) picks the format.
        **kwargs: `rankdir` and `precision`, passed to `to_dot`.

    Returns:
        The path written, as a pathlib.Path.

    Raises:
        ValueError: the suffix is neither .svg nor .png.
        RuntimeError: the `dot` program is not on PATH (install Graphviz, e.g.
            `apt install graphviz` or `brew install graphviz`, or use `to_dot` and render the
            text elsewhere), or it failed.

    Example:
        >>> from fnn.autograd import Scalar, draw
        >>> draw(Scalar(2.0).exp(), "graph.svg")  # doctest: +SKIP
        PosixPath('graph.svg')
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"draw: path must end in .svg or .png, got {str(path)!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "draw: the Graphviz program 'dot' was not found on PATH; install Graphviz "
            "(e.g. `apt install graphviz` or `brew install graphviz`) or call to_dot() "
            "and render the DOT text elsewhere"
        )
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(path)],
        input=to_dot(root, **kwargs),
        text=True,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"draw: dot failed with exit code {result.returncode}: {result.stderr.strip()}")
    return path
