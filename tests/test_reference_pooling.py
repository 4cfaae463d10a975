"""F.max_pool1d/2d, F.avg_pool1d/2d, F.adaptive_avg_pool2d and the pooling layers against
PyTorch 2.13 fixtures (tests/torch_reference/pooling.json), without torch.

For every op case fnn's forward, its manual ``*_backward`` and ``jax.vjp`` of its forward are
compared with torch's output and autograd gradient in float64; max-pool inputs are small
integers, so the gradients pin torch's tie rule (POOL-5) for the manual backward and for
jax.vjp alike. Layer cases run torch's train and eval steps through apply_vjp's pullback and
jax.vjp of apply. All op cases run in one compiled program, all layer cases in another.
Rules: POOL-1..6, AVGPOOL-1..3, ADAPTIVE-1..2 of docs/semantics.md.
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "pooling.json").read_text())
CASES = FIXTURE["cases"]
OPS = [c for c in CASES if c["api"].startswith("fnn.functional.")]
LAYERS = [c for c in CASES if c["api"].startswith("fnn.nn.")]
RTOL, ATOL = 1e-12, 1e-12  # max-pool is exact; averages may differ by summation order


def close(got, want, msg):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), RTOL, ATOL, err_msg=msg)


def arr(v):
    return jnp.asarray(v, jnp.float64)


def _kwargs(case):
    kw = dict(case["kwargs"])
    for name in ("kernel_size", "stride", "padding", "dilation", "output_size"):
        if isinstance(kw.get(name), list):
            kw[name] = tuple(kw[name])
    return kw


def test_pooling_equals_torch(x64):
    """Every op case: output, manual backward and jax.vjp of the forward against torch."""

    @fast_jit
    def run(xs, gs):
        results = []
        for case, x, g in zip(OPS, xs, gs, strict=True):
            name, kw = case["api"].rpartition(".")[2], _kwargs(case)
            op, backward = getattr(F, name), getattr(F, name + "_backward")
            y, pull = jax.vjp(lambda x, op=op, kw=kw: op(x, **kw), x)
            results.append((y, backward(g, x, **kw), pull(g)[0]))
        return results

    results = run([arr(c["input"]) for c in OPS], [arr(c["cotangent"]) for c in OPS])
    for case, (y, manual, auto) in zip(OPS, results, strict=True):
        close(y, case["output"], f"{case['name']}: forward")
        close(manual, case["grad"]["input"], f"{case['name']}: manual backward")
        close(auto, case["grad"]["input"], f"{case['name']}: jax.vjp")


def test_pooling_layers_equal_torch(x64):
    """Every layer case, both modes: output, apply_vjp's pullback and jax.vjp of apply."""
    layers = [getattr(nn, c["api"].rpartition(".")[2])(**_kwargs(c)) for c in LAYERS]
    for layer, case in zip(layers, LAYERS, strict=True):
        assert layer.init(jax.random.key(0)) == ({}, {}), case["name"]

    @fast_jit
    def run(xs, gs):
        results = []
        for layer, case, xc, gc in zip(layers, LAYERS, xs, gs, strict=True):
            for step, x, g in zip(case["steps"], xc, gc, strict=True):
                train = step["train"]
                y, _, pullback = layer.apply_vjp({}, {}, x, train=train)
                y_auto, pull = jax.vjp(
                    lambda x, layer=layer, train=train: layer.apply({}, {}, x, train=train)[0], x
                )
                results.append((y, y_auto, pullback(g)[1], pull(g)[0]))
        return results

    xs = [[arr(s["input"]) for s in c["steps"]] for c in LAYERS]
    gs = [[arr(s["cotangent"]) for s in c["steps"]] for c in LAYERS]
    results = iter(run(xs, gs))
    for case in LAYERS:
        for step in case["steps"]:
            y, y_auto, gx, gx_auto = next(results)
            where = f"{case['name']} train={step['train']}"
            close(y, step["output"], f"{where}: forward")
            close(y_auto, step["output"], f"{where}: apply")
            close(gx, step["grad_input"], f"{where}: pullback")
            close(gx_auto, step["grad_input"], f"{where}: jax.vjp")
