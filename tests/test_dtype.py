"""torch's ``dtype=`` factory keyword on the layers (DTYPE-1..3): the specs, init and
load_state_dict in each dtype, the mixed-dtype error, float64 parity with torch through
tests/torch_reference/dtype.json, and the manual backward in bfloat16 and float16."""

import functools
import importlib
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import checkpoint, models, nn

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "dtype.json").read_text())
KEY = jax.random.key(0)

# One spec per layer with parameters or buffers, built with a given dtype.
LAYERS = {
    "Linear": lambda **kw: nn.Linear(3, 2, **kw),
    "BatchNorm1d": lambda **kw: nn.BatchNorm1d(3, **kw),
    "LayerNorm": lambda **kw: nn.LayerNorm(3, **kw),
    "PReLU": lambda **kw: nn.PReLU(3, **kw),
}


def _build(api, kwargs):
    module, name = api.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


def _grads_by_name(spec, grads):
    """Parameter gradients under their state_dict names (no buffers)."""
    no_state = tuple({} for _ in spec.layers) if isinstance(spec, nn.Sequential) else {}
    return spec.state_dict(grads, no_state)


def _close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-10, atol=1e-10, err_msg=what)


# ------------------------------------------------------------------ specs


def test_dtype_is_stored_by_name_so_specs_stay_hashable_and_equal_by_value():
    # DTYPE-1: every spelling of one dtype gives one spec (equal, same hash, one dict key).
    for make in LAYERS.values():
        spellings = [make(dtype="float64"), make(dtype=jnp.float64), make(dtype=np.dtype("float64"))]
        assert len(set(spellings)) == 1 and spellings[0].dtype == "float64"
        assert hash(spellings[0]) == hash(spellings[2])
        assert make() == make(dtype="float32") != make(dtype="bfloat16")
        assert make(dtype=jnp.bfloat16).dtype == "bfloat16" and make(dtype=np.float16).dtype == "float16"
        assert "dtype='float64'" in repr(spellings[1])
        assert make(dtype=None) == make()  # torch's dtype=None: the default, float32


@pytest.mark.parametrize("bad", ["int32", jnp.int32, "complex64", float, "double", "float8_e4m3fn", "f8"])
def test_linear_rejects_other_dtypes_naming_the_value(bad):
    # DTYPE-1: Python's float is refused as ambiguous (numpy: float64, torch: float32).
    with pytest.raises(
        ValueError, match=r"Linear: dtype must be one of float32, float64, bfloat16, float16, got"
    ):
        nn.Linear(3, 2, dtype=bad)
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        nn.Linear(3, 2, dtype=bad)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_layer_rejects_an_integer_dtype(layer):
    with pytest.raises(ValueError, match=f"{layer}: dtype must be one of .*got 'int8'"):
        LAYERS[layer](dtype="int8")


@pytest.mark.parametrize("layer", list(LAYERS))
def test_float64_without_64_bit_mode_is_a_clear_error(layer):
    # jnp would silently give float32 (with a warning) when x64 is off.
    with pytest.raises(ValueError, match=f"{layer}: dtype='float64' needs JAX's 64-bit mode"):
        LAYERS[layer](dtype="float64").init(KEY)


# ------------------------------------------------------------------ init and load_state_dict


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16", "float16"])
def test_init_gives_the_dtype_and_batchnorm_buffers_follow(x64, dtype):
    for name, make in LAYERS.items():
        params, state = jax.eval_shape(make(dtype=dtype).init, KEY)  # dtypes without compiling
        for k, v in (params | state).items():
            want = jnp.int32 if k == "num_batches_tracked" else jnp.dtype(dtype)
            assert v.dtype == want, (name, k, v.dtype)
        if name == "BatchNorm1d":
            assert set(state) == {"running_mean", "running_var", "num_batches_tracked"}
    params, _ = jax.eval_shape(nn.Linear(3, 2, dtype=dtype, weight_init=lambda k, s: jnp.ones(s)).init, KEY)
    assert params["weight"].dtype == jnp.dtype(dtype)  # a custom init's result is cast too


def test_linear_float64_init_is_torch_default_bounds(x64):
    # LIN-1 in float64: U(±1/√in) drawn in float64, so not a widened float32 draw.
    params, _ = nn.Linear(25, 20, dtype="float64").init(KEY)
    w = np.asarray(params["weight"])
    assert w.dtype == np.float64 and np.abs(w).max() <= 1 / 5
    assert np.any(w != w.astype(np.float32).astype(np.float64))


def test_float32_state_dict_loads_into_float64_model_and_back(x64, tmp_path):
    # DTYPE-3: load_state_dict casts into the module's dtype, as torch copies into its
    # existing tensors; BatchNorm's buffers follow. The reference is numpy's own cast.
    spec32 = models.mlp(4, (5,), 3, dropout=0.0)
    spec64 = models.mlp(4, (5,), 3, dropout=0.0, dtype="float64")
    params, state = spec32.init(KEY)
    state = jax.tree.map(lambda v: v + 3 if v.dtype == jnp.int32 else v + 0.123456789, state)
    sd32 = spec32.state_dict(params, state)
    checkpoint.save(tmp_path / "sd32.npz", sd32)  # through a file, as a saved state_dict travels
    loaded, _ = checkpoint.load(tmp_path / "sd32.npz")
    p64, s64 = spec64.load_state_dict(loaded)
    sd64 = spec64.state_dict(p64, s64)
    assert sd64.keys() == sd32.keys()
    for k, v in sd64.items():
        want = np.int32 if k.endswith("num_batches_tracked") else np.float64
        assert v.dtype == want, k
        np.testing.assert_array_equal(v, sd32[k].astype(want))  # widening is exact
    assert int(sd64["2.num_batches_tracked"]) == 3

    rng = np.random.default_rng(0)
    sd_f64 = {k: (v if v.dtype == np.int32 else rng.normal(size=v.shape)) for k, v in sd64.items()}
    p32, s32 = spec32.load_state_dict(sd_f64)
    for k, v in spec32.state_dict(p32, s32).items():
        if not k.endswith("num_batches_tracked"):
            assert v.dtype == np.float32, k
            np.testing.assert_array_equal(v, sd_f64[k].astype(np.float32))  # round to nearest


def test_load_state_dict_copies_even_an_aligned_host_buffer():
    # A torch tensor's .numpy() is 64-byte aligned, which jnp.asarray may alias on CPU: torch's
    # next in-place BatchNorm update then changed the "loaded" fnn state. A loaded array must
    # not see later writes to the caller's buffer.
    spec = nn.BatchNorm1d(40)
    params, state = spec.init(KEY)
    sd = {}
    for k, v in spec.state_dict(params, state).items():
        buf = np.empty(v.nbytes + 64, np.uint8)
        sd[k] = buf[(-buf.ctypes.data) % 64 :][: v.nbytes].view(v.dtype).reshape(v.shape)
        sd[k][...] = v
    loaded_params, loaded_state = spec.load_state_dict(sd)
    sd["running_mean"][...] = 7.0
    sd["weight"][...] = 7.0
    np.testing.assert_array_equal(loaded_state["running_mean"], np.zeros(40, np.float32))
    np.testing.assert_array_equal(loaded_params["weight"], np.ones(40, np.float32))


def test_mlp_and_softmax_regression_pass_dtype_to_every_layer_with_arrays():
    spec = models.mlp(6, (4, 4), 3, dtype="bfloat16")
    dtypes = {type(layer).__name__: layer.dtype for layer in spec.layers if hasattr(layer, "dtype")}
    assert dtypes == {"Linear": "bfloat16", "BatchNorm1d": "bfloat16"}
    assert all(
        layer.dtype == "bfloat16" for layer in spec.layers if isinstance(layer, nn.Linear | nn.BatchNorm1d)
    )
    for init in ("kaiming", "xavier"):
        params, state = jax.eval_shape(models.mlp(6, (4,), 3, init=init, dtype="float16").init, KEY)
        assert {str(v.dtype) for v in jax.tree.leaves((params, state))} == {"float16", "int32"}
    assert models.softmax_regression(6, 3, dtype="float16")[1] == nn.Linear(6, 3, dtype="float16")


# ------------------------------------------------------------------ mixed dtypes


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("x_dtype", ["float64", "bfloat16", "int32"])
def test_input_of_another_dtype_raises_naming_both(x64, layer, x_dtype):
    # DTYPE-2: torch raises for a float64, reduced-precision or integer input into a float32
    # Linear / PReLU ("mat1 and mat2 must have the same dtype, but got Double and Float").
    # A bfloat16 input to a float32 BatchNorm1d is torch's mixed type instead (DTYPE-4).
    if layer == "BatchNorm1d" and x_dtype == "bfloat16":
        pytest.skip("mixed-type BatchNorm: tested below")
    spec = LAYERS[layer]()
    params, state = spec.init(KEY)
    x = jnp.ones((4, 3), x_dtype)
    match = (
        f"{layer}: input and weight: expected both to have the same dtype, "
        f"got input {x_dtype} and weight float32"
    )
    with pytest.raises(TypeError, match=match):
        spec.apply(params, state, x, train=True)
    with pytest.raises(TypeError, match=match):
        spec.backward(params, state, x, jnp.ones((4, 2 if layer == "Linear" else 3), x_dtype), train=True)
    with pytest.raises(TypeError, match=match):  # at trace time under jit
        jax.jit(lambda p, s, a: spec.apply(p, s, a, train=False))(params, state, x)


def test_batchnorm_without_affine_checks_its_buffers(x64):
    spec = nn.BatchNorm1d(3, affine=False)
    params, state = spec.init(KEY)
    with pytest.raises(TypeError, match="input and running_mean: expected both to have the same dtype"):
        spec.apply(params, state, jnp.ones((4, 3), jnp.float64), train=False)


def test_layers_without_arrays_take_any_float_dtype(x64):
    # No arrays, nothing to disagree with: torch's LayerNorm(elementwise_affine=False) and
    # BatchNorm1d(affine=False, track_running_stats=False) run in the input's dtype too.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)))
    for spec in (
        nn.LayerNorm(3, elementwise_affine=False),
        nn.BatchNorm1d(3, affine=False, track_running_stats=False),
    ):
        params, state = spec.init(KEY)
        y, _ = spec.apply(params, state, x, train=True)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y.mean(0 if isinstance(spec, nn.BatchNorm1d) else 1), 0, atol=1e-12)


# ------------------------------------------------------------------ float64 parity with torch


def test_fixture_covers_every_layer_with_arrays():
    apis = {c["api"] for c in FIXTURE["cases"]}
    assert {f"fnn.nn.{name}" for name in LAYERS} | {"fnn.models.mlp"} <= apis
    assert all(c["kwargs"]["dtype"] == "float64" for c in FIXTURE["cases"])


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: c["name"])
def test_float64_torch_state_dict_loads_and_matches_torch(x64, case):
    # A torch module built with dtype=torch.float64: its state_dict loads into the float64
    # fnn spec unchanged, and forward, running statistics, manual backward and jax.grad
    # match torch to 1e-10 over train, train, eval steps (BN-1..4, LIN-1, ACT-3).
    spec = _build(case["api"], case["kwargs"])
    params, state = spec.load_state_dict({k: np.asarray(v) for k, v in case["state_dict"].items()})
    for leaf in jax.tree.leaves((params, state)):
        assert leaf.dtype in (jnp.float64, jnp.int32)

    @functools.partial(fast_jit, static_argnames="train")  # one program a mode (tests/fast_jit.py)
    def step_fn(params, state, x, g, train):
        y, new_state = spec.apply(params, state, x, train=train)
        grad_p, grad_x = spec.backward(params, state, x, g, train=train)
        auto = jax.grad(lambda p, a: jnp.sum(spec.apply(p, state, a, train=train)[0] * g), argnums=(0, 1))
        return y, new_state, (grad_p, grad_x), auto(params, x)

    for i, step in enumerate(case["steps"]):
        train, x, g = step["train"], jnp.asarray(step["input"]), jnp.asarray(step["grad_output"])
        assert x.dtype == jnp.float64
        y, new_state, (grad_p, grad_x), (auto_p, auto_x) = step_fn(params, state, x, g, train=train)
        _close(y, step["output"], f"output, step {i}")
        _close(grad_x, step["grad_input"], f"manual grad_input, step {i}")
        _close(auto_x, step["grad_input"], f"jax.grad grad_input, step {i}")
        manual, auto = _grads_by_name(spec, grad_p), _grads_by_name(spec, auto_p)
        assert sorted(manual) == sorted(step["grads"])
        for name, want in step["grads"].items():
            assert manual[name].dtype == np.float64
            _close(manual[name], want, f"manual {name}, step {i}")
            _close(auto[name], want, f"jax.grad {name}, step {i}")
        after = spec.state_dict(params, new_state)
        for name, want in step["state_dict_after"].items():
            _close(after[name], want, f"{name} after step {i}")
        state = new_state


# ------------------------------------------------------------------ reduced precision


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_manual_backward_and_jax_grad_run_in_reduced_precision(dtype):
    # Exactness is float64's test above; here every array stays in the dtype and is finite.
    spec = nn.Sequential(
        nn.Linear(6, 5, dtype=dtype),
        nn.BatchNorm1d(5, dtype=dtype),
        nn.PReLU(5, dtype=dtype),
        nn.Dropout(0.2),
        nn.LayerNorm(5, dtype=dtype),
    )

    @jax.jit  # one compilation: many eager ones would cost several times more
    def run(key):
        k_init, k_x, k_g, k = jax.random.split(key, 4)
        params, state = spec.init(k_init)
        x = jax.random.normal(k_x, (8, 6), dtype)
        g = jax.random.normal(k_g, (8, 5), dtype)
        y, new_state = spec.apply(params, state, x, key=k, train=True)
        manual = spec.backward(params, state, x, g, key=k, train=True)

        def objective(p, a):
            return jnp.sum(spec.apply(p, state, a, key=k, train=True)[0] * g)

        return y, new_state, manual, jax.grad(objective, argnums=(0, 1))(params, x)

    y, new_state, manual, auto = run(KEY)
    for tree in (y, new_state, manual, auto):
        for leaf in jax.tree.leaves(tree):
            assert leaf.dtype in (jnp.dtype(dtype), jnp.int32)
            assert bool(jnp.all(jnp.isfinite(leaf)))
    assert int(new_state[1]["num_batches_tracked"]) == 1


# ------------------------------------------------------------------ mixed-type BatchNorm


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
@pytest.mark.parametrize("train", [True, False])
def test_float32_batchnorm_takes_a_reduced_precision_input_in_float32(low, train):
    # DTYPE-4, torch's CPU mixed-type BatchNorm: statistics, running update and backward in
    # float32, output and grad_input in the input's dtype. Reference: numpy in float64 on the
    # input cast up (the layer's f32 arithmetic agrees to f32 rounding), then rounded to `low`.
    rng = np.random.default_rng(0)
    spec = nn.BatchNorm1d(3)
    params, state = spec.init(KEY)
    params = {"weight": jnp.asarray([1.5, -0.5, 2.0]), "bias": jnp.asarray([0.1, 0.2, -0.3])}
    state = state | {
        "running_mean": jnp.asarray([0.5, -1.0, 0.0]),
        "running_var": jnp.asarray([2.0, 0.5, 1.0]),
    }
    x = jnp.asarray(rng.normal(3.0, 2.0, (8, 3)), low)
    g = jnp.asarray(rng.normal(size=(8, 3)), low)
    y, new_state = spec.apply(params, state, x, train=train)
    (gp, gx), (auto_p, auto_x) = (
        spec.backward(params, state, x, g, train=train),
        jax.grad(
            lambda p, a: jnp.sum(spec.apply(p, state, a, train=train)[0].astype(jnp.float32) * g), (0, 1)
        )(params, x),
    )
    x64, g64 = np.asarray(x, np.float64), np.asarray(g, np.float64)
    w, b = np.asarray(params["weight"], np.float64), np.asarray(params["bias"], np.float64)
    if train:
        mean, var = x64.mean(0), x64.var(0)
    else:
        mean, var = (
            np.asarray(state["running_mean"], np.float64),
            np.asarray(state["running_var"], np.float64),
        )
    r = 1 / np.sqrt(var + 1e-5)
    x_hat = (x64 - mean) * r
    want_y = x_hat * w + b
    want_gx = w * r * (g64 - g64.mean(0) - x_hat * (g64 * x_hat).mean(0)) if train else w * r * g64
    assert y.dtype == jnp.dtype(low) and gx.dtype == jnp.dtype(low) and auto_x.dtype == jnp.dtype(low)
    eps = float(jnp.finfo(low).eps)
    np.testing.assert_allclose(np.asarray(y, np.float64), want_y, rtol=eps, atol=eps)
    for got in (gx, auto_x):
        np.testing.assert_allclose(np.asarray(got, np.float64), want_gx, rtol=eps, atol=4 * eps)
    for got in (gp, auto_p):
        assert {str(v.dtype) for v in got.values()} == {"float32"}
        np.testing.assert_allclose(got["weight"], (g64 * x_hat).sum(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got["bias"], g64.sum(0), rtol=1e-5, atol=1e-5)
    assert {str(v.dtype) for v in new_state.values()} == {"float32", "int32"}
    if train:  # the running update in float32 from the f32 batch statistics (BN-2)
        np.testing.assert_allclose(
            new_state["running_mean"], 0.9 * np.asarray(state["running_mean"]) + 0.1 * mean, rtol=1e-6
        )
        np.testing.assert_allclose(
            new_state["running_var"],
            0.9 * np.asarray(state["running_var"]) + 0.1 * x64.var(0, ddof=1),
            rtol=1e-6,
        )


def test_a_bfloat16_batchnorm_still_refuses_a_float32_input():
    # DTYPE-4 goes one way only: a reduced-precision input to float32 arrays, never the reverse.
    spec = nn.BatchNorm1d(3, dtype="bfloat16")
    params, state = spec.init(KEY)
    with pytest.raises(TypeError, match="got input float32 and weight bfloat16"):
        spec.apply(params, state, jnp.ones((4, 3)), train=True)
