"""F.batch_norm on (N, C, *) inputs, F.dropout2d, nn.BatchNorm2d and nn.Dropout2d against
PyTorch 2.13 fixtures (tests/torch_reference/norm2d.json), without torch.

For every op case fnn's forward, its manual ``*_backward`` and ``jax.vjp`` of its forward
are compared with torch's output and autograd gradients in float64 (batch_norm: the new
running statistics too). Layer cases load torch's state_dict, then run torch's training and
eval steps, comparing output, gradients (manual and jax.vjp) and buffers after each step.
Dropout: torch's generator is not JAX's, so each channel torch drew is given both kept and
dropped, and fnn's own mask for the case's key picks (DROP2D-1). Rules: BN2D-1..4,
DROP2D-1..3 of docs/semantics.md.
"""

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "norm2d.json").read_text())
CASES = FIXTURE["cases"]
RTOL, ATOL = 1e-10, 1e-12  # the same float64 formulas up to summation order


def cases_of(api, where=lambda c: True):
    chosen = [c for c in CASES if c["api"] == api and where(c)]
    return pytest.mark.parametrize("case", chosen, ids=[c["name"] for c in chosen])


def close(got, want, msg=""):
    assert got is not None, msg
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), RTOL, ATOL, err_msg=msg)


def arr(v):
    return None if v is None else jnp.asarray(v, jnp.float64)


@cases_of("fnn.functional.batch_norm")
def test_batch_norm_on_nd_input_equals_torch(x64, case):
    """BN2D-1/2 with BN-2..6's options: output, running statistics, manual backward, jax.vjp."""
    kw = {
        k: (arr(v) if k in ("running_mean", "running_var", "weight", "bias") else v)
        for k, v in case["kwargs"].items()
    }
    live = [k for k in ("weight", "bias") if kw[k] is not None]
    fixed = {k: v for k, v in kw.items() if k not in live}
    x, g = arr(case["input"]), arr(case["cotangent"])

    @fast_jit
    def run(x, g, params):
        named = dict(zip(live, params, strict=True))
        out, pullback = jax.vjp(
            lambda x, *p: F.batch_norm(x, **fixed, **dict(zip(live, p, strict=True))), x, *params
        )
        zeros = tuple(None if o is None else jnp.zeros_like(o) for o in out[1:])
        return out, F.batch_norm_backward(g, x, **fixed, **named), pullback((g, *zeros))

    (y, rm, rv), manual, auto = run(x, g, [kw[k] for k in live])
    close(y, case["output"], "forward")
    for got, want, what in (
        (rm, case["running_mean_out"], "running_mean"),
        (rv, case["running_var_out"], "running_var"),
    ):
        assert (got is None) == (want is None), what
        if want is not None:
            close(got, want, what)
    for name, got in zip(("input", "weight", "bias"), manual, strict=True):
        if case["grad"][name] is None:
            assert got is None, name
        else:
            close(got, case["grad"][name], f"manual grad {name}")
    for name, got in zip(["input", *live], auto, strict=True):
        close(got, case["grad"][name], f"jax.vjp grad {name}")


def _dropout2d_run(case):
    kw = dict(case["kwargs"])
    kw["key"] = None if kw["key"] is None else jax.random.key(kw["key"])
    x, g = arr(case["input"]), arr(case["cotangent"])
    shape = x.shape

    @fast_jit
    def run(x, g):
        y, pullback = jax.vjp(lambda a: F.dropout2d(a, **kw), x)
        keep = None
        if "mask" in case:
            keep = F.dropout_mask(kw["key"], shape[:2], kw["p"], x.dtype) != 0
        return keep, y, F.dropout2d_backward(g, x, **kw), pullback(g)[0]

    if x.ndim == 3:  # DROP2D-3: torch 2.13 reads 3-D as (N, C, L) and warns; fnn does both
        with pytest.warns(UserWarning, match="Received a 3D input"):
            return run(x, g)
    return run(x, g)


@cases_of("fnn.functional.dropout2d")
def test_dropout2d_equals_torch(x64, case):
    """DROP2D-1..3: whole channels, torch's scale 1/(1 - p), p = 0 / p = 1 / eval exactly;
    with fnn's mask choosing, per channel, torch's kept or dropped run."""
    keep, y, manual, auto = _dropout2d_run(case)
    want_y, want_g = np.asarray(case["output"]), np.asarray(case["grad"]["input"])
    if keep is not None:
        keep = np.asarray(keep)
        assert keep.any() and not keep.all(), "the key must give a mask with both states"
        same = (keep == (np.asarray(case["mask"]) == 1)).reshape(keep.shape + (1,) * (want_y.ndim - 2))
        want_y = np.where(same, want_y, np.asarray(case["output_complement"]))
        want_g = np.where(same, want_g, np.asarray(case["grad_complement"]))
    close(y, want_y, "forward")
    close(manual, want_g, "manual backward")
    close(auto, want_g, "jax.vjp")


def build(spec):
    name = spec["api"].rsplit(".", 1)[1]
    if name == "Sequential":
        return nn.Sequential(*(build(layer) for layer in spec["kwargs"]["layers"]))
    return getattr(nn, name)(**spec["kwargs"])


def nothing(layer):
    return tuple({} for _ in layer.layers) if isinstance(layer, nn.Sequential) else {}


def load(layer, case):
    params, state = layer.load_state_dict({k: np.asarray(v) for k, v in case["state_dict"].items()})
    widen = lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a  # noqa: E731
    return jax.tree.map(widen, params), jax.tree.map(widen, state)


LAYER_APIS = ("fnn.nn.BatchNorm2d", "fnn.nn.Dropout2d", "fnn.nn.Sequential")
LAYER_CASES = [c for c in CASES if c["api"] in LAYER_APIS]
layer_cases = pytest.mark.parametrize("case", LAYER_CASES, ids=[c["name"] for c in LAYER_CASES])


@layer_cases
def test_load_state_dict_takes_torch_names_order_and_values(x64, case):
    """BN2D-3: torch's state_dict loads unchanged (num_batches_tracked as int32)."""
    layer = build(case)
    got = layer.state_dict(*load(layer, case))
    assert list(got) == list(case["state_dict"])
    for name, want in case["state_dict"].items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@pytest.mark.parametrize("case", [c for c in LAYER_CASES if "init_state_dict" in c], ids=lambda c: c["name"])
def test_batchnorm2d_init_equals_torch_fresh_module(case):
    """BN2D-3: weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0."""
    layer = build(case)
    got = layer.state_dict(*layer.init(jax.random.key(0)))
    assert list(got) == list(case["init_state_dict"])
    for name, want in case["init_state_dict"].items():
        np.testing.assert_array_equal(got[name], np.asarray(want, got[name].dtype), err_msg=name)


def run_steps(layer, params, state, steps):
    """Each step's forward, manual backward, jax.vjp and (Dropout2d) channel mask, in one
    compiled program; the state runs through the steps as in training."""
    modes = [(s["train"], s["key"]) for s in steps]
    p_drop = getattr(layer, "p", None)

    @fast_jit
    def run(params, state, xs, gs):
        results = []
        for (train, seed), x, g in zip(modes, xs, gs, strict=True):
            key = None if seed is None else jax.random.key(seed)

            def forward(p, a, state=state, key=key, train=train):
                return layer.apply(p, state, a, key=key, train=train)  # (y, new_state): aux

            y, pullback, new_state = jax.vjp(forward, params, x, has_aux=True)
            auto_p, auto_x = pullback(g)
            grad_p, grad_x = layer.backward(params, state, x, g, key=key, train=train)
            keep = (
                F.dropout_mask(key, x.shape[:2], p_drop, x.dtype) != 0
                if seed is not None and p_drop
                else None
            )
            results.append((y, new_state, grad_p, grad_x, auto_p, auto_x, keep))
            state = new_state
        return results

    xs = [arr(s["input"]) for s in steps]
    gs = [arr(s["cotangent"]) for s in steps]
    return run(params, state, xs, gs)


@layer_cases
def test_train_and_eval_steps_equal_torch(x64, case):
    """BN2D-1..3, DROP2D-1/2: output, gradients (manual and jax.vjp) and buffers per step."""
    layer = build(case)
    params, state = load(layer, case)
    rtol = 1e-8 if isinstance(layer, nn.Sequential) else RTOL
    for i, (step, result) in enumerate(
        zip(case["steps"], run_steps(layer, params, state, case["steps"]), strict=True)
    ):
        y, new_state, grad_p, grad_x, auto_p, auto_x, keep = result
        where = f"step {i} (train={step['train']})"
        want_y, want_gx = np.asarray(step["output"]), np.asarray(step["grad_input"])
        if "mask" in step:
            keep = np.asarray(keep)
            assert keep.any() and not keep.all(), "the key must give a mask with both states"
            same = (keep == (np.asarray(step["mask"]) == 1))[:, :, None, None]
            want_y = np.where(same, want_y, np.asarray(step["output_complement"]))
            want_gx = np.where(same, want_gx, np.asarray(step["grad_input_complement"]))
        for got, want, what in (
            (y, want_y, "output"),
            (grad_x, want_gx, "manual grad_input"),
            (auto_x, want_gx, "jax.vjp grad_input"),
        ):
            np.testing.assert_allclose(np.asarray(got), want, rtol, ATOL, err_msg=f"{what}, {where}")
        for label, grads in (("manual", grad_p), ("jax.vjp", auto_p)):
            named = dict(layer.named_arrays(grads, nothing(layer)))
            assert sorted(named) == sorted(step["grad_params"]), f"{label} gradient names, {where}"
            for name, want in step["grad_params"].items():
                np.testing.assert_allclose(
                    named[name], want, rtol, ATOL, err_msg=f"{label} grad {name}, {where}"
                )
        buffers = dict(layer.named_arrays(nothing(layer), new_state))
        assert sorted(buffers) == sorted(step["buffers"]), where
        for name, want in step["buffers"].items():
            np.testing.assert_allclose(
                buffers[name], want, rtol, ATOL, err_msg=f"buffer {name} after {where}"
            )


def test_every_new_api_and_option_has_a_case():
    """Each API this fixture is for, and each of its options, appears in some case."""
    seen = {}
    for c in CASES:
        for s in [c, *c["kwargs"].get("layers", [])]:
            seen.setdefault(s["api"], set()).update(s["kwargs"])
    assert seen["fnn.functional.dropout2d"] >= {"key", "p", "training"}
    assert seen["fnn.functional.batch_norm"] >= {
        "running_mean",
        "weight",
        "training",
        "momentum",
        "eps",
        "num_batches_tracked",
    }
    assert seen["fnn.nn.BatchNorm2d"] >= {"num_features", "eps", "momentum", "affine", "track_running_stats"}
    assert seen["fnn.nn.Dropout2d"] >= {"p"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 4-D input never warns
        F.dropout2d(jnp.ones((1, 2, 2, 2)), jax.random.key(0))
