"""F.conv1d / F.conv2d, F.pad, nn.Conv1d and nn.Conv2d against PyTorch 2.13 fixtures
(tests/torch_reference/conv.json), without torch.

For every op case fnn's forward, its manual ``*_backward`` and ``jax.vjp`` of its forward are
compared with torch's output and autograd gradients in float64. Layer cases load torch's
state_dict into a float64 layer, then run torch's train and eval steps, comparing output and
gradients (apply_vjp's pullback and jax.vjp of apply); torch's fresh init sets the bounds
fnn's init must keep. Rules: CONV-1..8 and PAD-1..3 of docs/semantics.md.
"""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "conv.json").read_text())
CASES = FIXTURE["cases"]
RTOL, ATOL = 1e-10, 1e-12  # the same float64 sums up to summation order


def cases_of(*apis):
    chosen = [c for c in CASES if c["api"] in apis]
    return pytest.mark.parametrize("case", chosen, ids=[c["name"] for c in chosen])


def close(got, want, msg=""):
    assert got is not None, msg
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), RTOL, ATOL, err_msg=msg)


def arr(v):
    return None if v is None else jnp.asarray(v, jnp.float64)


@cases_of("fnn.functional.conv1d", "fnn.functional.conv2d")
def test_conv_equals_torch(x64, case):
    """CONV-1..4: output, manual backward and jax.vjp of the forward against torch autograd."""
    op = getattr(F, case["api"].rpartition(".")[2])
    backward = getattr(F, case["api"].rpartition(".")[2] + "_backward")
    kw = dict(case["kwargs"])
    bias = arr(kw.pop("bias"))
    x, w, g = arr(case["input"]), arr(case["weight"]), arr(case["cotangent"])

    @fast_jit
    def run(x, w, b, g):
        if b is None:
            y, pull = jax.vjp(lambda x, w: op(x, w, None, **kw), x, w)
        else:
            y, pull = jax.vjp(lambda x, w, b: op(x, w, b, **kw), x, w, b)
        return y, backward(g, x, w, b, **kw), pull(g)

    y, manual, auto = run(x, w, bias, g)
    close(y, case["output"], "forward")
    names = ("input", "weight") if bias is None else ("input", "weight", "bias")
    for name, got in zip(("input", "weight", "bias"), manual, strict=True):
        if case["grad"][name] is None:
            assert got is None, name
        else:
            close(got, case["grad"][name], f"manual grad {name}")
    for name, got in zip(names, auto, strict=True):
        close(got, case["grad"][name], f"jax.vjp grad {name}")


@cases_of("fnn.functional.pad")
def test_pad_equals_torch(x64, case):
    """PAD-1..3: each mode's output, pad_backward and jax.vjp of pad against torch autograd."""
    kw = case["kwargs"]
    pad = tuple(kw["pad"])
    x, g = arr(case["input"]), arr(case["cotangent"])

    @fast_jit
    def run(x, g):
        y, pull = jax.vjp(lambda x: F.pad(x, pad, kw["mode"], kw["value"]), x)
        return y, F.pad_backward(g, x, pad, kw["mode"]), pull(g)[0]

    y, manual, auto = run(x, g)
    close(y, case["output"], "forward")
    close(manual, case["grad"]["input"], "pad_backward")
    close(auto, case["grad"]["input"], "jax.vjp")


def layer_of(case):
    return getattr(nn, case["api"].rpartition(".")[2])(**case["kwargs"], dtype="float64")


@cases_of("fnn.nn.Conv1d", "fnn.nn.Conv2d")
def test_conv_layer_steps_equal_torch(x64, case):
    """CONV-7/8: torch's state_dict loads unchanged; each step's output, pullback and jax.vjp."""
    layer = layer_of(case)
    params, state = layer.load_state_dict(case["state_dict"])
    assert list(layer.state_dict(params, state)) == list(case["state_dict"]), "torch's names and order"

    @fast_jit(static_argnums=0)
    def run(train, params, x, g):
        y, _, pullback = layer.apply_vjp(params, {}, x, train=train)
        y_auto, pull = jax.vjp(lambda p, x: layer.apply(p, {}, x, train=train)[0], params, x)
        return y, y_auto, pullback(g), pull(g)

    for step in case["steps"]:
        y, y_auto, (gp, gx), (gp_auto, gx_auto) = run(
            step["train"], params, arr(step["input"]), arr(step["cotangent"])
        )
        for got in (y, y_auto):
            close(got, step["output"], "forward")
        for got in (gx, gx_auto):
            close(got, step["grad_input"], "grad_input")
        assert set(gp) == set(step["grad_params"]) == set(gp_auto)
        for name, want in step["grad_params"].items():
            close(gp[name], want, f"pullback grad {name}")
            close(gp_auto[name], want, f"jax.vjp grad {name}")


@cases_of("fnn.nn.Conv1d", "fnn.nn.Conv2d")
def test_conv_layer_init_matches_torchs_bounds(case):
    """CONV-7: fnn's init has torch's names, shapes and bound 1/√fan_in for weight and bias."""
    layer = getattr(nn, case["api"].rpartition(".")[2])(**case["kwargs"])
    params, state = layer.init(jax.random.key(0))
    assert state == {}
    torch_init = {k: np.asarray(v) for k, v in case["init_state_dict"].items()}
    assert list(layer.state_dict(params, state)) == list(torch_init)
    fan_in = math.prod(torch_init["weight"].shape[1:])
    bound = 1 / math.sqrt(fan_in)
    for name, value in params.items():
        assert value.shape == torch_init[name].shape and value.dtype == jnp.float32
        assert np.abs(torch_init[name]).max() <= bound  # the fixture: torch's own bound
        assert 0 < np.abs(np.asarray(value)).max() <= bound * (1 + 1e-6)


def test_lenet_c3_init_golden_values():
    """CONV-7's golden values: torch's Conv2d(6, 16, 5) draws |w|, |b| <= 1/√150; with 2400
    weights the largest |w|·√150 is within 1% of 1 (this seed: 0.99931; its 16 biases: 0.80479)."""
    (case,) = [c for c in CASES if c["name"] == "Conv2d-lenet-c3"]
    w, b = (np.asarray(case["init_state_dict"][k]) for k in ("weight", "bias"))
    assert w.shape == (16, 6, 5, 5)
    assert 0.99 < np.abs(w).max() * math.sqrt(150) <= 1
    assert np.abs(b).max() * math.sqrt(150) <= 1
    params, _ = nn.Conv2d(6, 16, 5).init(jax.random.key(1))
    assert 0.99 < float(jnp.abs(params["weight"]).max()) * math.sqrt(150) <= 1.0 + 1e-6
