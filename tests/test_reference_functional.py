"""fnn.functional's non-loss ops against PyTorch 2.13 fixtures, without torch installed.

tests/torch_reference/functional.json holds torch's forward values and autograd gradients
(for a random cotangent) of every op with each option, in float64; its generator,
tests/torch_reference/functional.py, says what each case's torch reference is. For every
case three things are compared with torch: fnn's forward, fnn's manual ``*_backward`` and
``jax.vjp`` of fnn's forward. The rule IDs (ACT-*, LIN-*, FLAT-1, DROP-*, BN-*) are those
of docs/semantics.md; each case's name says which option it exercises.
"""

import functools
import inspect
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fast_jit import fast_jit  # tests/fast_jit.py

from fnn import functional as F

FIXTURE = json.loads((pathlib.Path(__file__).parent / "torch_reference" / "functional.json").read_text())
CASES = FIXTURE["cases"]
ARRAY_KWARGS = ("weight", "bias", "running_mean", "running_var")
TUPLE_KWARGS = ("dim", "normalized_shape", "shape")
# Tight: fnn and torch run the same float64 formulas up to summation order; atol covers
# outputs and gradients that are exactly 0 in one and ~1e-17 in the other.
RTOL, ATOL = 1e-10, 1e-12


def cases_of(*apis, where=lambda c: True):
    chosen = [c for c in CASES if c["api"] in {f"fnn.functional.{a}" for a in apis} and where(c)]
    return pytest.mark.parametrize("case", chosen, ids=[c["name"] for c in chosen])


def fnn_kwargs(case):
    """The case's kwargs as fnn takes them: arrays, tuples, PRNG keys, dtypes."""
    out = {}
    for k, v in case["kwargs"].items():
        if k in ARRAY_KWARGS and v is not None:
            v = jnp.asarray(v, jnp.float64)
        elif k in TUPLE_KWARGS and isinstance(v, list):
            v = tuple(v)
        elif k == "key" and v is not None:
            v = jax.random.key(v)
        elif k == "dtype" and v is not None:
            v = jnp.dtype(v)
        out[k] = v
    return out


def close(got, want, msg=""):
    assert got is not None, msg
    np.testing.assert_allclose(np.asarray(got), np.asarray(want, np.float64), RTOL, ATOL, err_msg=msg)


def op(case):
    name = case["api"].rsplit(".", 1)[1]
    return getattr(F, name), getattr(F, f"{name}_backward")


def differentiable(case):
    """Names of the differentiable arguments, in fnn's argument order: the input, then the
    array arguments torch took gradients for (None ones included, their gradient is None)."""
    return ["input"] + [k for k in case["grad"] if k != "input"]


SMOOTH = (
    "relu",
    "leaky_relu",
    "elu",
    "prelu",
    "sigmoid",
    "tanh",
    "softplus",
    "softmax",
    "log_softmax",
    "logsumexp",
    "abs",
    "linear",
    "flatten",
    "unflatten",
    "scaled_tanh",
    "maxout",
    "layer_norm",
    "batch_norm",
)


def three_ways(case):
    """fn(x, g, params) -> (forward, manual backward, {argument: jax.vjp gradient}) for the
    case's op, params being the values of its non-None differentiable array arguments."""
    fwd, bwd = op(case)
    kw = fnn_kwargs(case)
    live = [n for n in differentiable(case)[1:] if kw[n] is not None]
    fixed = {k: v for k, v in kw.items() if k not in live}

    def forward(x, *params):
        """(the output that the cotangent is for, the op's whole result as aux)."""
        y = fwd(x, **fixed, **dict(zip(live, params, strict=True)))
        return (y[0] if isinstance(y, tuple) else y), y

    def run(x, g, params):
        # The forward value is jax.vjp's own evaluation of the op, not a second call.
        _, pullback, out = jax.vjp(forward, x, *params, has_aux=True)
        named = dict(zip(live, params, strict=True))
        return out, bwd(g, x, **fixed, **named), dict(zip(["input", *live], pullback(g), strict=True))

    x = jnp.asarray(case["input"], jnp.float64)
    g = jnp.asarray(case["cotangent"], jnp.float64)
    return run, (x, g, [kw[n] for n in live])


@functools.cache
def results_of(api):
    """Every case of one op evaluated in one compiled program, by case name (None when that
    program fails, so each case then runs alone and a failure names its case). On CPU the
    XLA compilation is nearly all of these tests' time: one program per op compiles in about
    four fifths of the time of one per case, and eager evaluation is slower still (every
    primitive, and jax.vjp's pullback, compiles on its own); fast_jit compiles it without
    XLA:CPU's slow passes (tests/fast_jit.py)."""
    cases = [c for c in CASES if c["api"] == api and "mask" not in c]
    runs, args = zip(*(three_ways(c) for c in cases), strict=True)
    try:
        results = fast_jit(lambda args: [run(*a) for run, a in zip(runs, args, strict=True)])(list(args))
    except Exception:
        return None
    return dict(zip([c["name"] for c in cases], results, strict=True))


@cases_of(*SMOOTH, "dropout", where=lambda c: "mask" not in c)
def test_forward_manual_backward_and_vjp_equal_torch(x64, case):
    """ACT-1..8, LIN-1/2, FLAT-1, BN-1..6/8, DROP-2: values, manual backward, jax.vjp."""
    names = differentiable(case)
    grouped = results_of(case["api"])
    if grouped is None:
        run, args = three_ways(case)
        out, manual, auto = fast_jit(run)(*args)
    else:
        out, manual, auto = grouped[case["name"]]

    if isinstance(out, tuple):  # batch_norm: (output, new_running_mean, new_running_var), BN-2/BN-4
        out, new_rm, new_rv = out
        for got, key in ((new_rm, "running_mean_out"), (new_rv, "running_var_out")):
            if case[key] is None:
                assert got is None, key
            else:
                close(got, case[key], key)
    assert out.shape == np.shape(case["output"])
    close(out, case["output"], "forward")

    manual = manual if isinstance(manual, tuple) else (manual,)
    assert len(manual) == len(names)
    for name, got in zip(names, manual, strict=True):
        if case["grad"][name] is None:
            assert got is None, f"manual grad {name} must be None for a None argument"
        else:
            close(got, case["grad"][name], f"manual grad {name}")

    assert set(auto) == {n for n in names if case["grad"][n] is not None}
    for name, got in auto.items():
        close(got, case["grad"][name], f"jax.vjp grad {name}")


@cases_of("dropout", where=lambda c: "mask" in c)
def test_dropout_equals_torch_for_fnn_mask(x64, case):
    """DROP-1: y = x * mask / (1 - p) with fnn's mask (F.dropout_mask from the same key);
    torch gave every element both kept and dropped, and fnn's mask picks one per element."""
    x, g = jnp.asarray(case["input"], jnp.float64), jnp.asarray(case["cotangent"], jnp.float64)
    kw = fnn_kwargs(case)

    @fast_jit
    def run(x, g):
        _, pullback = jax.vjp(lambda a: F.dropout(a, **kw), x)
        mask = F.dropout_mask(kw["key"], x.shape, kw["p"], x.dtype)
        return mask, F.dropout(x, **kw), F.dropout_backward(g, x, **kw), pullback(g)[0]

    mask, y, manual, auto = run(x, g)
    keep = np.asarray(mask) != 0
    assert keep.any() and not keep.all(), "the key must give a mask with both states"
    torch_mask = np.asarray(case["mask"]) == 1

    def pick(run, complement):
        run, complement = np.asarray(run), np.asarray(complement)
        kept = np.where(torch_mask, run, complement)
        dropped = np.where(torch_mask, complement, run)
        return np.where(keep, kept, dropped)

    want_y = pick(case["output"], case["output_complement"])
    want_g = pick(case["grad"]["input"], case["grad_complement"])
    close(y, want_y, "forward")
    close(manual, want_g, "manual backward")
    close(auto, want_g, "jax.vjp")


@cases_of("dropout_mask")
def test_dropout_mask_takes_torch_values(x64, case):
    """DROP-1/DROP-2: the mask holds 0 and torch's kept scale 1/(1 - p) only; ones at p = 0,
    zeros at p = 1; in the requested dtype (default: the default float dtype)."""
    kw = fnn_kwargs(case)
    mask = jax.jit(F.dropout_mask, static_argnames=("shape", "p", "dtype"))(**kw)
    assert mask.shape == tuple(kw["shape"])
    assert mask.dtype == (kw["dtype"] or jnp.result_type(float))
    torch_out = np.asarray(case["output"])
    torch_scale = set(np.unique(torch_out[torch_out != 0]).tolist())
    values = set(np.unique(np.asarray(mask, np.float64)).tolist())
    p = kw["p"]
    if p == 0:
        assert values == torch_scale == {1.0}
    elif p == 1:
        assert values == {0.0} and not torch_out.any()
    else:
        (scale,) = torch_scale
        assert (
            values == {0.0, scale} if mask.dtype == jnp.float64 else values == {0.0, float(np.float32(scale))}
        )


@cases_of("one_hot")
def test_one_hot_equals_torch(x64, case):
    got = F.one_hot(jnp.asarray(case["input"]), **fnn_kwargs(case))
    assert got.shape == np.shape(case["output"])
    np.testing.assert_array_equal(got, case["output"])


def test_every_non_loss_op_and_option_has_a_torch_case():
    """Every public non-loss op of fnn.functional has a case, and every argument after its
    first appears in some case's kwargs (losses have their own fixture; backward_of is a
    lookup, not an op)."""
    covered = {}
    # the ops of issue 24 have fixtures of their own (norm2d.json, ...): every file counts
    for path in sorted((pathlib.Path(__file__).parent / "torch_reference").glob("*.json")):
        for c in json.loads(path.read_text()).get("cases", []):
            if c.get("api", "").startswith("fnn.functional."):
                # an argument counts as set when it is an option (kwargs) or an input array
                # the case holds by its name (conv.json's weight)
                covered.setdefault(c["api"].rsplit(".", 1)[1], set()).update(c["kwargs"], c)
    for name in dir(F):
        fn = getattr(F, name)
        if (
            name.startswith("_")
            or not inspect.isfunction(fn)
            or name.endswith("_backward")
            or name == "backward_of"
            or fn.__module__ == "fnn.functional.losses"
        ):
            continue
        assert name in covered, f"fnn.functional.{name} has no torch case"
        options = list(inspect.signature(fn).parameters)[1:]
        if name == "dropout_mask":  # (key, shape, p, dtype): all are options
            options = list(inspect.signature(fn).parameters)
        missing = set(options) - covered[name]
        assert not missing, f"fnn.functional.{name}: no torch case sets {sorted(missing)}"
