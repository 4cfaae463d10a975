"""The scalar engine: f(x, y) = log(1 + e^{-(x+y)})·(x+y) as a graph, gradients checked against jax.grad.

The course's running example of reverse-mode autodiff. fnn.autograd.Scalar records every
operation (s = x + y, e = exp(-s), l = log(1 + e), f = l·s) while the value is computed;
one backward() pass then fills in ∂f/∂node for every node by the chain rule. The claim
tested is that these hand-rolled gradients equal jax.grad of the same expression, at the
worked point and along a line, and that the graph can be read: the DOT text (values and
gradients on every node) is always written, and rendered when Graphviz's `dot` exists.

Writes results.json (every node's value and gradient, the jax comparison), graph.dot,
graph.png / graph.svg when `dot` is installed, and along_line.png (f and ∂f/∂x along
x with y fixed: engine vs jax).
"""

from __future__ import annotations

import math
import os
import time

import common  # puts the repository root on sys.path
import jax
import jax.numpy as jnp
import numpy as np

from fnn.autograd import Scalar, draw, to_dot

NAME = "scalar_graph"
POINT = (1.0, 2.0)  # the worked example: x = 1, y = 2, so s = x + y = 3


def build(x0: float, y0: float) -> dict[str, Scalar]:
    """The expression as a labelled graph; returns every named node (f last)."""
    x = Scalar(x0, label="x")
    y = Scalar(y0, label="y")
    s = x + y
    s.label = "s = x + y"
    neg = -s
    neg.label = "-s"
    e = neg.exp()
    e.label = "e = exp(-s)"
    one_plus_e = Scalar(1.0, label="1 (constant)") + e
    one_plus_e.label = "1 + e"
    l = one_plus_e.log()
    l.label = "l = log(1 + e)"
    f = l * s
    f.label = "f = l * s"
    return {"x": x, "y": y, "s": s, "e": e, "l": l, "f": f}


def f_jax(x, y):
    s = x + y
    return jnp.log(1 + jnp.exp(-s)) * s


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0])
    t_start = time.perf_counter()
    jax.config.update("jax_enable_x64", True)  # the engine works in Python floats (float64)

    # ----- the worked point: values, engine gradients, jax.grad, closed form
    nodes = build(*POINT)
    f = nodes["f"]
    f.backward()
    jx, jy = (float(g) for g in jax.grad(f_jax, argnums=(0, 1))(*POINT))
    s = sum(POINT)
    closed = math.log1p(math.exp(-s)) - s / (1 + math.exp(s))  # ∂f/∂s = l − s·σ(−s)
    rows = [{"node": name, "value": n.data, "engine grad": n.grad} for name, n in nodes.items()]
    for r in rows:
        r["jax grad"] = {"x": jx, "y": jy}.get(r["node"], "")
    # Intermediate nodes: jax.grad with respect to the node itself, i.e. f as a function of it.
    s_node, e_node, l_node = nodes["s"].data, nodes["e"].data, nodes["l"].data
    interior = {
        "s": jax.grad(lambda t: f_jax(t, 0.0))(s_node),
        "e": jax.grad(lambda t: jnp.log(1 + t) * s_node)(e_node),
        "l": jax.grad(lambda t: t * s_node)(l_node),
        "f": 1.0,
    }
    for r in rows:
        if r["node"] in interior:
            r["jax grad"] = float(interior[r["node"]])
    err_point = max(abs(r["engine grad"] - r["jax grad"]) for r in rows)
    print(f"f(x, y) = log(1 + e^-(x+y))·(x+y) at (x, y) = {POINT}:")
    common.print_table(rows, ["node", "value", "engine grad", "jax grad"])
    print(
        f"closed form ∂f/∂x = log(1 + e^-s) - s·σ(-s) = {closed:.10g}; engine {nodes['x'].grad:.10g}; "
        f"max |engine - jax| over nodes = {err_point:.3g}"
    )

    # ----- the graph: DOT text always, a rendering when Graphviz is installed
    dot_text = to_dot(f)
    dot_path = os.path.join(args.out, "graph.dot")
    with open(dot_path, "w") as fh:
        fh.write(dot_text)
    print(f"graph: {dot_path} ({dot_text.count('->')} edges)")
    rendered, render_error = [], None
    for suffix in ("png", "svg"):
        try:
            rendered.append(str(draw(f, os.path.join(args.out, f"graph.{suffix}"))))
        except RuntimeError as err:  # no Graphviz `dot`: the DOT file is the deliverable
            render_error = str(err)
            break
    print(
        f"rendered: {', '.join(rendered)}"
        if rendered
        else f"not rendered ({render_error.split(';')[0]}); render with: dot -Tpng {dot_path} -o graph.png"
    )

    # ----- along a line: x varies, y fixed; one fresh graph per point
    n_points = 21 if args.quick else 401
    xs = np.linspace(-6.0, 4.0, n_points)
    y_fixed = POINT[1]
    engine_f, engine_dx = [], []
    for x0 in xs:
        g = build(float(x0), y_fixed)
        g["f"].backward()
        engine_f.append(g["f"].data)
        engine_dx.append(g["x"].grad)
    jax_f = np.asarray(jax.vmap(f_jax, (0, None))(jnp.asarray(xs), y_fixed))
    jax_dx = np.asarray(jax.vmap(jax.grad(f_jax), (0, None))(jnp.asarray(xs), y_fixed))
    err_f = float(np.max(np.abs(np.asarray(engine_f) - jax_f)))
    err_dx = float(np.max(np.abs(np.asarray(engine_dx) - jax_dx)))
    print(
        f"along x in [{xs[0]}, {xs[-1]}] ({n_points} points, y = {y_fixed}): "
        f"max |f engine - jax| = {err_f:.3g}, max |df/dx engine - jax| = {err_dx:.3g}"
    )

    wall = time.perf_counter() - t_start
    results = {
        "experiment": NAME,
        "quick": args.quick,
        "point": {"x": POINT[0], "y": POINT[1]},
        "nodes": rows,
        "closed_form_df_dx": closed,
        "max_abs_error_at_point": err_point,
        "dot_file": dot_path,
        "dot_nodes": dot_text.count("shape=record"),
        "rendered": rendered,
        "render_error": render_error,
        "line": {
            "y": y_fixed,
            "x": xs.tolist(),
            "engine_f": engine_f,
            "engine_df_dx": engine_dx,
            "jax_f": jax_f.tolist(),
            "jax_df_dx": jax_dx.tolist(),
            "max_abs_error_f": err_f,
            "max_abs_error_df_dx": err_dx,
        },
        "wall_seconds": wall,
    }
    common.save_json(args.out, results)
    print(f"wall {wall:.1f} s")

    plt = common.pyplot()
    if plt is not None:
        fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(10, 4))
        step = max(1, n_points // 40)  # markers sparse enough to see the line under them
        for ax, eng, ref, name in ((ax_f, engine_f, jax_f, "f(x, y)"), (ax_d, engine_dx, jax_dx, "∂f/∂x")):
            ax.plot(xs, ref, "-", lw=2, color="tab:blue", label="jax (jnp + jax.grad)")
            ax.plot(
                xs[::step],
                np.asarray(eng)[::step],
                "o",
                ms=4,
                mfc="none",
                color="tab:red",
                label="fnn.autograd.Scalar",
            )
            ax.axvline(POINT[0], color="gray", ls=":", lw=1, label=f"worked point x = {POINT[0]:g}")
            ax.axhline(0, color="black", lw=0.5)
            ax.set(xlabel=f"x   (y = {y_fixed:g} fixed)", ylabel=name, title=name)
            ax.grid(alpha=0.3)
            ax.legend()
        ax_f.set_title(r"$f(x, y) = \log(1 + e^{-(x+y)})\,(x+y)$")
        ax_d.set_title("∂f/∂x: Scalar.backward() vs jax.grad")
        fig.suptitle(
            f"Scalar reverse-mode engine vs jax along a line: max |difference| = {err_f:.1e} (f), "
            f"{err_dx:.1e} (∂f/∂x)"
        )
        common.save_figure(fig, args.out, "along_line.png")


if __name__ == "__main__":
    main()
