"""What BatchNorm2d's training forward + backward costs at a CNN's size: fnn's one-pass 4-D
path against the two-pass definition it replaced, and against hand-written JAX.

One training step of batch normalization of an (N, C, H, W) float32 input (default 128 × 32 ×
28 × 28, the first conv block of a small MNIST CNN at batch 128): the output, the new
running statistics, and the gradients of ⟨y, dy⟩ for a random dy with respect to the input,
γ and β. Rows (each one jitted program):

- ``fnn-manual``: ``nn.BatchNorm2d.apply_vjp`` and its pullback (``F.batch_norm_backward``);
- ``fnn-autodiff``: ``jax.vjp`` of ``nn.BatchNorm2d.apply``;
- ``two-pass-manual`` / ``two-pass-autodiff``: the same through ``nn.BatchNorm1d`` on the
  input viewed as (N, C, H·W), the same statistics by the plain two-pass definition of
  ``fnn/functional/normalization.py`` (what 4-D inputs ran before fnn/_fast/batch_norm.py);
- ``pure-jax``: a hand-written two-pass BatchNorm (jnp.mean, then the mean of the squared
  deviations) differentiated by ``jax.vjp``, as ``benchmark_cnn.py``'s hand-written epoch does.

The rows run interleaved in one process so that load from other processes on shared cores
hits them alike; per row the best and median wall ms over ``--repeats`` calls and the median
CPU ms per call (process time: the steadier measure of the work on shared cores). Every row's
output and gradients are checked against ``two-pass-autodiff`` (float32 rounding).
``--quick``: a (8, 4, 6, 6) input and 5 calls (seconds, for the test suite).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import common

NAME = "benchmark_batch_norm_2d"


def _options(parser) -> None:
    parser.add_argument("--shape", type=int, nargs=4, default=None, help="N C H W (default 128 32 28 28)")
    parser.add_argument("--repeats", type=int, default=None, help="calls per row (default 60)")


def _rows(shape):
    import jax
    import jax.numpy as jnp

    from fnn import nn

    n, c, h, w = shape
    bn2, bn1 = nn.BatchNorm2d(c), nn.BatchNorm1d(c)

    def fnn_manual(p, s, x, dy, layer=bn2, view=lambda a: a):
        y, s2, pullback = layer.apply_vjp(p, s, view(x), train=True)
        gp, gx = pullback(view(dy))
        return y.reshape(shape), s2, gp, gx.reshape(shape)

    def fnn_autodiff(p, s, x, dy, layer=bn2, view=lambda a: a):
        (y, s2), vjp = jax.vjp(lambda p, x: layer.apply(p, s, view(x), train=True), p, x)
        gp, gx = vjp((view(dy), jax.tree.map(jnp.zeros_like, s2)))
        return y.reshape(shape), s2, gp, gx

    flat = lambda a: a.reshape(n, c, h * w)  # noqa: E731

    def pure_jax(p, s, x, dy):
        axes, cs = (0, 2, 3), (1, c, 1, 1)

        def forward(p, x):
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean.reshape(cs)), axis=axes)
            y = (x - mean.reshape(cs)) * jax.lax.rsqrt(var.reshape(cs) + 1e-5)
            return y * p["weight"].reshape(cs) + p["bias"].reshape(cs), (mean, var)

        y, vjp, (mean, var) = jax.vjp(forward, p, x, has_aux=True)
        gp, gx = vjp(dy)
        m = n * h * w
        s2 = {
            "running_mean": 0.9 * s["running_mean"] + 0.1 * mean,
            "running_var": 0.9 * s["running_var"] + 0.1 * var * m / (m - 1),
            "num_batches_tracked": s["num_batches_tracked"] + 1,
        }
        return y, s2, gp, gx

    return {
        "fnn-manual": fnn_manual,
        "fnn-autodiff": fnn_autodiff,
        "two-pass-manual": lambda p, s, x, dy: fnn_manual(p, s, x, dy, bn1, flat),
        "two-pass-autodiff": lambda p, s, x, dy: fnn_autodiff(p, s, x, dy, bn1, flat),
        "pure-jax": pure_jax,
    }


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0], _options)
    shape = tuple(args.shape or ((8, 4, 6, 6) if args.quick else (128, 32, 28, 28)))
    repeats = args.repeats or (5 if args.quick else 60)

    import jax
    import jax.numpy as jnp
    import numpy as np

    from fnn import nn

    kx, kd = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, shape, jnp.float32) * 2 + 3
    dy = jax.random.normal(kd, shape, jnp.float32)
    params, state = nn.BatchNorm2d(shape[1]).init(jax.random.key(1))
    params = {"weight": params["weight"] * 1.1, "bias": params["bias"] + 0.2}
    progs = {name: jax.jit(f) for name, f in _rows(shape).items()}
    outs = {name: jax.block_until_ready(f(params, state, x, dy)) for name, f in progs.items()}
    ref = jax.tree.leaves(outs["two-pass-autodiff"])

    def max_diff(out):
        pairs = zip(jax.tree.leaves(out), ref, strict=True)
        return max(
            float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in pairs
        )

    err = {name: max_diff(o) for name, o in outs.items()}

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    load = [round(v, 2) for v in os.getloadavg()]
    walls = {k: [] for k in progs}
    cpus = {k: [] for k in progs}
    for _ in range(repeats):
        for name, f in progs.items():
            c0, t0 = cpu(), time.perf_counter()
            jax.block_until_ready(f(params, state, x, dy))
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(cpu() - c0)
    rows = [
        {
            "row": name,
            "best_ms": round(1e3 * min(walls[name]), 2),
            "median_ms": round(1e3 * statistics.median(walls[name]), 2),
            "cpu_median_ms": round(1e3 * statistics.median(cpus[name]), 2),
            "max_abs_diff_vs_two_pass_autodiff": err[name],
        }
        for name in progs
    ]
    common.print_table(rows)
    results = {"shape": list(shape), "dtype": "float32", "repeats": repeats, "rows": rows}
    results["load_avg"] = {"before": load, "after": [round(v, 2) for v in os.getloadavg()]}
    common.save_json(args.out, results)


if __name__ == "__main__":
    main()
