"""Convolution on XLA:CPU: lax.conv in torch's NCHW layout against NHWC and im2col + GEMM, for
the forward and for each correlation of the backward (grad_input, grad_weight).

Workload: the convolutions of a small MNIST CNN, float32, batch 128 (``--batch``), 3×3 kernels
with padding 1: ``1->32 @ 28x28`` (the first layer, C_in = 1), ``32->32 @ 28x28`` and
``32->64 @ 14x14``. Every variant takes and returns torch's layout (x NCHW, w OIHW), as
fnn's public ops must, so its transposes are part of its cost. Variants:

- ``nchw``: the readable definitions in ``fnn/functional/conv.py`` (``correlate``,
  ``correlate_transposed``, ``correlate_weight``: ``lax.conv_general_dilated`` with
  NCHW/OIHW dimension numbers);
- ``nhwc``: the same three correlations in XLA:CPU's canonical NHWC/HWIO form with
  transposes in and out (``fnn/_fast/conv.py``'s convolutions);
- ``im2col``: patches gathered by strided slices (NHWC), one GEMM; grad_input scatters the
  GEMM's patches back (col2im), grad_weight is patchesᵀ · g;
- ``fnn``: ``fnn/_fast/conv.py``, what ``F.conv2d`` / ``F.conv2d_backward`` run: ``nhwc``,
  except grad_weight with one input channel, which is ``im2col``'s GEMM;
- ``nchw-vjp`` / ``fnn-vjp`` (gradients only): ``jax.vjp`` of the definition's forward
  (JAX's transposes of an NCHW conv) and of ``fnn/_fast/conv.py``'s (its custom_jvp, laid
  out so that the transposes are canonical, or the GEMM): what ``jax.grad`` of a model runs.

Each (variant, op) runs in two contexts, each one jitted program: ``alone`` (the op by
itself) and ``scan`` (the op inside a ``lax.scan`` over ``--steps`` stacked inputs, as in
fnn's scanned epoch; XLA:CPU treats convolutions in a loop body differently:
jax-ml/jax#12868). Per row the best and median wall ms per op over ``--repeats`` calls,
interleaved so that load on shared cores hits all rows alike, the median CPU ms per op
(process time, all threads: steadier on shared cores), GFLOP/s from the best time
(2·N·O·C·kh·kw·H_out·W_out per op), and the largest difference from ``nchw``'s values.
``--quick``: one tiny layer, batch 8, 3 calls (seconds, for the test suite).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

import common

NAME = "benchmark_conv_ops"
LAYERS = {"1->32@28": (1, 32, 28), "32->32@28": (32, 32, 28), "32->64@14": (32, 64, 14)}
QUICK_LAYERS = {"4->8@6": (4, 8, 6)}


def _options(parser) -> None:
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128)")
    parser.add_argument("--repeats", type=int, default=None, help="calls per row (default 7)")
    parser.add_argument("--steps", type=int, default=None, help="scan length (default 3)")
    parser.add_argument("--layers", nargs="*", default=None, help=f"subset of {list(LAYERS)}")


def _variants():
    """{variant: (forward(x, w), grad_input(g, x, w), grad_weight(g, x, w))}, all NCHW/OIHW
    outside; 3×3 kernels, stride 1, padding 1, so grad_input's full padding is (1, 1) too."""
    import jax
    import jax.numpy as jnp

    from fnn._fast import conv as fast
    from fnn.functional import conv as definition

    pad = 1
    one, pads = (1, 1), ((1, 1), (1, 1))

    def correlations(mod):
        def grad_input(g, x, w):
            w_t = jnp.flip(w, (2, 3)).swapaxes(0, 1)  # in/out swapped (groups = 1), flipped
            return mod.correlate_transposed(g, w_t, one, pads, one, 1)

        return (
            lambda x, w: mod.correlate(x, w, one, pads, one, 1),
            grad_input,
            lambda g, x, w: mod.correlate_weight(x, g, one, pads, one, 1),
        )

    def autodiff(mod):
        def vjp(g, x, w):
            return jax.vjp(lambda x, w: mod.correlate(x, w, one, pads, one, 1), x, w)[1](g)

        return (None, lambda g, x, w: vjp(g, x, w)[0], lambda g, x, w: vjp(g, x, w)[1])

    def canonical_grad_weight(g, x, w):
        # x (C, H, W, N): C the batch, N the summed feature; g (H, W, N, O) the kernel
        gw = jax.lax.conv_general_dilated(
            x.transpose(1, 2, 3, 0), g.transpose(2, 3, 0, 1), one, pads, dimension_numbers=fast.CANONICAL
        )
        return gw.transpose(3, 0, 1, 2)

    def patches(x, k):
        xh = jnp.pad(x.transpose(0, 2, 3, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        h, w_ = x.shape[2], x.shape[3]
        return jnp.concatenate([xh[:, i : i + h, j : j + w_, :] for i in range(k) for j in range(k)], axis=-1)

    def im2col_forward(x, w):
        k = w.shape[2]
        wm = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])  # (kh·kw·C, O)
        return (patches(x, k) @ wm).transpose(0, 3, 1, 2)

    def im2col_grad_input(g, x, w):
        n, c, h, w_ = x.shape
        k = w.shape[2]
        wm = w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])
        dp = (g.transpose(0, 2, 3, 1) @ wm.T).reshape(n, h, w_, k * k, c)
        gx = jnp.zeros((n, h + 2 * pad, w_ + 2 * pad, c), x.dtype)
        for t in range(k * k):
            i, j = divmod(t, k)
            gx = gx.at[:, i : i + h, j : j + w_, :].add(dp[..., t, :])
        return gx[:, pad : pad + h, pad : pad + w_, :].transpose(0, 3, 1, 2)

    def im2col_grad_weight(g, x, w):
        k, o, c = w.shape[2], w.shape[0], w.shape[1]
        p = patches(x, k).reshape(-1, k * k * c)
        gw = p.T @ g.transpose(0, 2, 3, 1).reshape(-1, o)  # (kh·kw·C, O)
        return gw.reshape(k, k, c, o).transpose(3, 2, 0, 1)

    return {
        "nchw": correlations(definition),
        "nhwc": (*correlations(fast)[:2], canonical_grad_weight),
        "im2col": (im2col_forward, im2col_grad_input, im2col_grad_weight),
        "fnn": correlations(fast),
        "nchw-vjp": autodiff(definition),
        "fnn-vjp": autodiff(fast),
    }


def _bind(fn, op):
    """fn as f(x, g, w): the forward takes (x, w), a gradient (g, x, w)."""
    if op == "forward":
        return lambda x, g, w: fn(x, w)
    return lambda x, g, w: fn(g, x, w)


def _programs(variants, steps):
    """{(variant, op, context): jitted f(xs, gs, w)}; xs, gs stack `steps` inputs."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def alone(call):
        return lambda xs, gs, w: call(xs[0], gs[0], w)

    def scanned(call):
        def run(xs, gs, w):
            # the carry feeds every step, so XLA cannot hoist or drop the op
            def body(c, xg):
                return c + 1e-9 * jnp.mean(call(xg[0] + c, xg[1], w)), None

            return lax.scan(body, jnp.zeros((), xs.dtype), (xs, gs))[0]

        return run

    progs = {}
    for vname, fns in variants.items():
        for op, fn in zip(("forward", "grad_input", "grad_weight"), fns, strict=True):
            if fn is None:
                continue
            progs[(vname, op, "alone")] = jax.jit(alone(_bind(fn, op)))
            progs[(vname, op, "scan")] = jax.jit(scanned(_bind(fn, op)))
    return progs


def _cpu() -> float:
    """This process's CPU seconds, every thread: the steadier measure of work on shared cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    args = common.parse_args(NAME, __doc__.splitlines()[0], _options)
    common.optimized_compiles()  # unoptimized XLA:CPU convolutions are naive loops
    layers = QUICK_LAYERS if args.quick else {k: LAYERS[k] for k in (args.layers or LAYERS)}
    batch = args.batch or (8 if args.quick else 128)
    repeats = args.repeats or (3 if args.quick else 7)
    steps = args.steps or (2 if args.quick else 3)

    import jax
    import numpy as np

    variants = _variants()
    rows, load = [], [round(v, 2) for v in os.getloadavg()]
    for layer, (c_in, c_out, size) in layers.items():
        rng = np.random.default_rng(0)
        xs = jax.numpy.asarray(rng.normal(size=(steps, batch, c_in, size, size)).astype(np.float32))
        gs = jax.numpy.asarray(rng.normal(size=(steps, batch, c_out, size, size)).astype(np.float32))
        w = jax.numpy.asarray((rng.normal(size=(c_out, c_in, 3, 3)) / (3 * c_in**0.5)).astype(np.float32))
        progs = _programs(variants, steps)
        outs = {key: jax.block_until_ready(f(xs, gs, w)) for key, f in progs.items()}
        walls, cpus = {key: [] for key in progs}, {key: [] for key in progs}
        for _ in range(repeats):
            for key, f in progs.items():
                per = steps if key[2] == "scan" else 1
                c0, t0 = _cpu(), time.perf_counter()
                jax.block_until_ready(f(xs, gs, w))
                walls[key].append((time.perf_counter() - t0) / per)
                cpus[key].append((_cpu() - c0) / per)
        flops = 2 * batch * c_out * c_in * 9 * size * size
        for (vname, op, context), times in walls.items():
            ref = outs[("nchw", op, context)]  # every variant's values against the definition's
            diff = float(np.max(np.abs(np.asarray(outs[(vname, op, context)]) - np.asarray(ref))))
            rel = diff / max(float(np.max(np.abs(np.asarray(ref)))), 1e-30)
            rows.append(
                {
                    "layer": layer,
                    "op": op,
                    "context": context,
                    "variant": vname,
                    "best_ms": round(1e3 * min(times), 3),
                    "median_ms": round(1e3 * statistics.median(times), 3),
                    "cpu_median_ms": round(1e3 * statistics.median(cpus[(vname, op, context)]), 3),
                    "gflops": round(flops / min(times) / 1e9, 1),
                    "rel_diff_vs_nchw": rel,
                }
            )
    common.print_table(rows)
    results = {"batch": batch, "dtype": "float32", "repeats": repeats, "scan_steps": steps, "rows": rows}
    results["load_avg"] = {"before": load, "after": [round(v, 2) for v in os.getloadavg()]}
    common.save_json(args.out, results)


if __name__ == "__main__":
    main()
