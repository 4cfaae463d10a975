"""Every fnn.nn layer against its torch.nn module (PyTorch 2.13 fixtures), without torch.

tests/torch_reference/layers.json holds, per case, a torch module's state_dict and a few
steps in training and eval mode: input, a random cotangent, torch's output, its autograd
gradients w.r.t. the input and every parameter, and the buffers after the step (its
generator, tests/torch_reference/layers.py, says what each torch reference is). fnn loads
the state_dict with ``load_state_dict``, then for each step its forward (``apply``), its
manual backward (``Layer.backward``) and ``jax.vjp`` of ``apply`` are compared with torch in
float64, and the new state it returns (the running statistics) with torch's buffers; the
next step starts from fnn's own new state, as training does. Rule IDs (LIN-*, BN-*, ACT-*,
DROP-*, FLAT-1) are those of docs/semantics.md.
"""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F
from fnn import nn

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "layers.json").read_text())
CASES = FIXTURE["cases"]
# fnn and torch evaluate the same float64 formulas up to summation order; a deep network
# (Sequential) compounds that rounding through 16 layers, hence its looser rtol.
RTOL, ATOL, DEEP_RTOL = 1e-10, 1e-12, 1e-8


def cases(where=lambda c: True):
    chosen = [c for c in CASES if where(c)]
    return pytest.mark.parametrize("case", chosen, ids=[c["name"] for c in chosen])


def build(spec):
    """The fnn layer of a fixture spec {"api": "fnn.nn.<Layer>", "kwargs": {...}}."""
    name = spec["api"].rsplit(".", 1)[1]
    if name == "Sequential":
        return nn.Sequential(*(build(layer) for layer in spec["kwargs"]["layers"]))
    return getattr(nn, name)(**spec["kwargs"])


def nothing(layer):
    """An empty params or state tree of the layer's structure (named_arrays lists the other)."""
    return tuple({} for _ in layer.layers) if isinstance(layer, nn.Sequential) else {}


def widen(tree):
    """float32 leaves to float64: the fixture's parameters are float32-exact, so this is lossless."""
    return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def load(layer, case):
    flat = {k: np.asarray(v) for k, v in case["state_dict"].items()}
    params, state = layer.load_state_dict(flat)
    return widen(params), widen(state)


def close(got, want, msg="", rtol=RTOL):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), rtol, ATOL, err_msg=msg)


def run_steps(layer, params, state, steps):
    """Every step's forward, manual backward, jax.vjp (and Dropout's mask) in one compiled
    program (compiled by fast_jit, tests/fast_jit.py); the state runs through the steps as in
    training."""
    modes = [(s["train"], s["key"]) for s in steps]

    @fast_jit
    def run(params, state, xs, gs):
        results = []
        for (train, seed), x, g in zip(modes, xs, gs, strict=True):
            key = None if seed is None else jax.random.key(seed)

            def forward(p, a, state=state, key=key, train=train):
                return layer.apply(p, state, a, key=key, train=train)  # (y, new_state): aux

            # apply's output and new state are those of jax.vjp's own forward.
            y, pullback, new_state = jax.vjp(forward, params, x, has_aux=True)
            auto_p, auto_x = pullback(g)
            grad_p, grad_x = layer.backward(params, state, x, g, key=key, train=train)
            mask = F.dropout_mask(key, x.shape, layer.p, x.dtype) if seed is not None else None
            results.append((y, new_state, grad_p, grad_x, auto_p, auto_x, mask))
            state = new_state
        return results

    xs = [jnp.asarray(s["input"], jnp.float64) for s in steps]
    gs = [jnp.asarray(s["cotangent"], jnp.float64) for s in steps]
    return run(params, state, xs, gs)


@cases()
def test_load_state_dict_takes_torch_names_order_and_values(x64, case):
    """torch's state_dict loads unchanged: same names in torch's order, same values
    (num_batches_tracked as fnn's int32 counter)."""
    layer = build(case)
    params, state = load(layer, case)
    got = layer.state_dict(params, state)
    assert list(got) == list(case["state_dict"])
    for name, want in case["state_dict"].items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


@cases(where=lambda c: "init_state_dict" in c)
def test_init_equals_torch_fresh_module(case):
    """BatchNorm1d (BN-1/BN-2 init: weight 1, bias 0, running_mean 0, running_var 1, count 0),
    LayerNorm, PReLU (ACT-3: init_value, torch's init): fnn's init is torch's fresh module."""
    layer = build(case)
    got = layer.state_dict(*layer.init(jax.random.key(0)))
    assert list(got) == list(case["init_state_dict"])
    for name, want in case["init_state_dict"].items():
        np.testing.assert_array_equal(got[name], np.asarray(want, got[name].dtype), err_msg=name)


@cases()
def test_train_and_eval_steps_equal_torch(x64, case):
    """LIN-1/2, BN-1..8, ACT-1..8, DROP-1/2, FLAT-1: output, input and parameter gradients
    (manual backward and jax.vjp) and the buffers after each step, in training and eval."""
    layer = build(case)
    params, state = load(layer, case)
    rtol = DEEP_RTOL if isinstance(layer, nn.Sequential) else RTOL
    results = run_steps(layer, params, state, case["steps"])
    for i, (step, result) in enumerate(zip(case["steps"], results, strict=True)):
        y, new_state, grad_p, grad_x, auto_p, auto_x, mask = result
        where = f"step {i} (train={step['train']})"
        want_y, want_gx = np.asarray(step["output"]), np.asarray(step["grad_input"])
        if "mask" in step:  # DROP-1: fnn's mask picks, per element, torch's kept or dropped run
            keep = np.asarray(mask) != 0
            assert keep.any() and not keep.all(), "the key must give a mask with both states"
            torch_keep = np.asarray(step["mask"]) == 1
            other_y, other_gx = (
                np.asarray(step["output_complement"]),
                np.asarray(step["grad_input_complement"]),
            )
            want_y = np.where(keep == torch_keep, want_y, other_y)
            want_gx = np.where(keep == torch_keep, want_gx, other_gx)
        assert y.shape == want_y.shape, where
        close(y, want_y, f"output, {where}", rtol)
        close(grad_x, want_gx, f"manual grad_input, {where}", rtol)
        close(auto_x, want_gx, f"jax.vjp grad_input, {where}", rtol)
        for label, grads in (("manual", grad_p), ("jax.vjp", auto_p)):
            named = dict(layer.named_arrays(grads, nothing(layer)))
            assert sorted(named) == sorted(step["grad_params"]), f"{label} gradient names, {where}"
            for name, want in step["grad_params"].items():
                close(named[name], want, f"{label} grad {name}, {where}", rtol)
        buffers = dict(layer.named_arrays(nothing(layer), new_state))
        assert sorted(buffers) == sorted(step["buffers"]), where
        for name, want in step["buffers"].items():
            close(buffers[name], want, f"buffer {name} after {where}", rtol)


# Constructor options a state_dict fixture cannot exercise: Linear's weight_init/bias_init
# only replace torch's initialization, which load_state_dict overwrites (fnn.init's formulas
# have their own fixtures); dtype (where a layer has it) is the parameters' precision, and
# these tests run every layer in float64 through widened float32-exact parameters.
NOT_STATE_DICT_OPTIONS = {"weight_init", "bias_init", "dtype"}


def test_every_layer_and_option_has_a_torch_case():
    """Every layer class of fnn.nn has a case (alone or inside a Sequential), and each of
    its constructor's fields is set by some case's kwargs."""
    covered = {}

    def visit(spec):
        covered.setdefault(spec["api"].rsplit(".", 1)[1], set()).update(spec["kwargs"])
        for inner in spec["kwargs"].get("layers", []):
            visit(inner)

    # the layers of issue 24 have fixtures of their own (norm2d.json, ...): every file counts
    for path in sorted((pathlib.Path(__file__).parent / "torch_reference").glob("*.json")):
        for case in json.loads(path.read_text()).get("cases", []):
            if case.get("api", "").startswith("fnn.nn."):
                visit(case)
    for name in nn.__all__:
        cls = getattr(nn, name)
        if not (isinstance(cls, type) and issubclass(cls, nn.Layer)) or cls in (nn.Layer, nn.Elementwise):
            continue
        assert name in covered, f"fnn.nn.{name} has no torch case"
        options = {f.name for f in dataclasses.fields(cls)} - NOT_STATE_DICT_OPTIONS
        missing = options - covered[name]
        assert not missing, f"fnn.nn.{name}: no torch case sets {sorted(missing)}"
