"""Pooling on XLA:CPU: fnn's max-pool (forward, manual backward, jax.grad) against
lax.reduce_window and its gradient, XLA's select_and_scatter; avg-pool alongside.

Workload: float32, (128, 32, 28, 28) by default (``--shape``), one jitted program per row,
warm. Pools (``--pools``): ``max 2x2`` (kernel 2, stride 2: the windows tile the input, the
CNNs' pool), ``max 3x3/s2/p1`` (overlapping, padded: ResNet's stem), ``max 3x3/s1/p1`` (nine
windows read every element) and ``avg 2x2`` (LeNet-5's subsampling). Rows per pool:

- ``reduce_window``: the obvious JAX code, ``lax.reduce_window`` (max or add); its gradient is
  ``jax.vjp`` of it: XLA's ``select_and_scatter`` for a max (whose ties go to the first
  maximum, but whose padding can win a tie at -inf and whose NaN rule is not torch's);
- ``definition``: fnn.functional.pooling's readable definitions only: the forward as the
  max (or sum) of the window's taps (strided slices), the window choice tap by tap
  (``window_choice``), the backward routed through each stride phase (``route``), and the
  gradient as jax.vjp of a custom_jvp built from them (``gather``), without fnn/_fast;
- ``fnn``: what ``F.max_pool2d`` / ``F.max_pool2d_backward`` / ``jax.grad`` run: the same,
  with fnn/_fast/pooling.py's reshape path when the windows tile the input, and the window
  choice computed once (``computed_once``) otherwise.

Per row: the best and median wall ms over ``--repeats`` calls, interleaved so that load on
shared cores hits every row alike, and the largest difference from the definition's values
(0: the same values). ``--quick``: batch 4, 4 channels, 8×8, 3 calls (seconds, for the tests).
"""

from __future__ import annotations

import os
import statistics
import time

import common

NAME = "benchmark_pool_ops"
POOLS = {
    "max 2x2": ("max", 2, 2, 0),
    "max 3x3/s2/p1": ("max", 3, 2, 1),
    "max 3x3/s1/p1": ("max", 3, 1, 1),
    "avg 2x2": ("avg", 2, 2, 0),
}


def _options(parser) -> None:
    parser.add_argument("--shape", type=int, nargs=4, default=None, help="N C H W (default 128 32 28 28)")
    parser.add_argument("--repeats", type=int, default=None, help="calls per row (default 7)")
    parser.add_argument("--pools", nargs="*", default=None, help=f"subset of {list(POOLS)}")


def _definition_max(geom):
    """max-pool's forward, manual backward and jax.vjp from the readable definitions only."""
    from functools import partial

    import jax

    from fnn.functional import pooling as P

    forward = partial(P._max_pool_definition, geom=geom)

    @jax.custom_jvp
    def pool(x):
        return forward(x)

    @pool.defjvp
    def _(primals, tangents):
        (x,), (dx,) = primals, tangents
        y = pool(x)
        return y, P.gather(dx, P.window_choice(x, y, geom), geom)

    def manual(x, g):
        return P.route(g, P.window_choice(x, forward(x), geom), geom)

    return pool, manual, lambda x, g: jax.vjp(pool, x)[1](g)[0]


def _rows_of(kind, k, s, p, x):
    """{row: (forward(x), manual(x, g) or None, vjp(x, g))} for one pool."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import fnn.functional as F
    from fnn.functional import pooling as P

    window, strides, pads = (1, 1, k, k), (1, 1, s, s), ((0, 0), (0, 0), (p, p), (p, p))
    if kind == "max":

        def rw(x):
            return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, pads)

        geom, _ = P.geometry("max_pool2d", x, 2, k, s, p)
        pool, manual, vjp = _definition_max(geom)
        fnn = (
            lambda x: F.max_pool2d(x, k, s, p),
            lambda x, g: F.max_pool2d_backward(g, x, k, s, p),
            lambda x, g: jax.vjp(lambda z: F.max_pool2d(z, k, s, p), x)[1](g)[0],
        )
        definition = (pool, manual, vjp)
    else:

        def rw(x):
            return lax.reduce_window(x, 0.0, lax.add, window, strides, pads) / (k * k)

        fnn = (
            lambda x: F.avg_pool2d(x, k, s, p),
            lambda x, g: F.avg_pool2d_backward(g, x, k, s, p),
            lambda x, g: jax.vjp(lambda z: F.avg_pool2d(z, k, s, p), x)[1](g)[0],
        )
        definition = fnn  # avg-pool has no fast path: fnn runs its definition
    baseline = (rw, None, lambda x, g: jax.vjp(rw, x)[1](g)[0])
    return {"reduce_window": baseline, "definition": definition, "fnn": fnn}


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0], _options)
    shape = tuple(args.shape or ((4, 4, 8, 8) if args.quick else (128, 32, 28, 28)))
    repeats = args.repeats or (3 if args.quick else 7)
    pools = {name: POOLS[name] for name in (args.pools or POOLS)}

    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.normal(size=shape).astype(np.float32))
    rows, load = [], [round(v, 2) for v in os.getloadavg()]
    for pool_name, (kind, k, s, p) in pools.items():
        variants = _rows_of(kind, k, s, p, x)
        y = variants["fnn"][0](x)
        g = jax.numpy.asarray(rng.normal(size=y.shape).astype(np.float32))
        progs = {}
        for vname, (fwd, manual, vjp) in variants.items():
            progs[(vname, "forward")] = (jax.jit(fwd), (x,))
            if manual is not None:
                progs[(vname, "manual backward")] = (jax.jit(manual), (x, g))
            progs[(vname, "jax.grad")] = (jax.jit(vjp), (x, g))
        outs = {key: np.asarray(jax.block_until_ready(f(*a))) for key, (f, a) in progs.items()}
        times = {key: [] for key in progs}
        for _ in range(repeats):
            for key, (f, a) in progs.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(*a))
                times[key].append(time.perf_counter() - t0)
        for (vname, op), ts in times.items():
            ref = outs[("definition", "forward" if op == "forward" else "jax.grad")]
            rows.append(
                {
                    "pool": pool_name,
                    "op": op,
                    "variant": vname,
                    "best_ms": round(1e3 * min(ts), 3),
                    "median_ms": round(1e3 * statistics.median(ts), 3),
                    "max_diff_vs_definition": float(np.max(np.abs(outs[(vname, op)] - ref))),
                }
            )
    common.print_table(rows)
    results = {"shape": list(shape), "dtype": "float32", "repeats": repeats, "rows": rows}
    results["load_avg"] = {"before": load, "after": [round(v, 2) for v in os.getloadavg()]}
    common.save_json(args.out, results)


if __name__ == "__main__":
    main()
