"""Write losses.json: PyTorch's loss values and gradients for every loss of fnn.functional and
every loss spec class of fnn.nn, with each of their options, the fixture of
tests/test_reference_losses.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/torch213/bin/python tests/torch_reference/losses.py

or, on a fresh machine:

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/losses.py

Deterministic (numpy generators seeded from each case's name): rerunning rewrites the file
byte for byte. Everything is float64 (index targets int64); JSON floats round-trip exactly
(repr), inf and nan are written as Infinity and NaN.

Layout: {"torch", "generator", "cases": [...]}, each case

    {"api": "fnn.functional.<loss>" or "fnn.nn.<LossClass>", "name": unique id,
     "kwargs": the options the case runs with, by fnn's (= torch's) names, defaults written
               out; array options (weight, pos_weight) as nested lists (a float for a 0-d
               pos_weight), present only when given,
     "input", "target": the loss's arguments; "target_dtype": "int64" (class indices) or
               "float64",
     "output": torch's loss,
     "cotangent": a random dL/d(output) of the output's shape (a scalar for 'mean'/'sum'),
     "grad": {"input": dL/d(input), "target": dL/d(target)}: torch autograd's gradients of
             <output, cotangent>; "target" only where torch differentiates the target
             (float targets, except BCE's main cases, see below),
     "shapes": {key: shape} for input, target, output, cotangent and the grads (an empty
               array's nested list does not keep its shape),
     fnn.nn cases with a batch dimension also have
     "per_sample": {"loss_sum": [torch's reduction='sum' loss of each sample alone],
                    "weight": [each sample's share of the 'mean' denominator, from torch's
                               documented definition: its element count (element-wise
                               losses, BCE-3), its number of positions d1·…·dK (probability
                               targets, CE-3), Σ_d w_{y_d}·1[y_d ≠ ignore_index] (index
                               targets, NLL-1, CE-2)],
                    "mean": torch's reduction='mean' loss of the whole batch}}.

The torch reference of an fnn.functional loss is torch.nn.functional's function of the same
name with the same keyword arguments; that of an fnn.nn spec is the torch.nn class of the
same name built with the same keyword arguments. For a per-sample 'sum' an element-wise
weight with a batch dimension is sliced with the sample.

BCE's target gradient: torch differentiates binary_cross_entropy's target as
w·(log(1 − x) − log x), without the −100 clamp of the forward (inf at x ∈ {0, 1}). The
main BCE cases put x on 0 and 1 (BCE-1, BCE-2) and so do not ask for it; two dedicated
cases do, one with x inside (0, 1) and one with x ∈ {0, 1, 1e-50}.
"""

from __future__ import annotations

import json
import pathlib
import zlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_suffix(".json")
GENERATOR = "tests/torch_reference/losses.py"
TF = torch.nn.functional
REDS = ("mean", "sum", "none")
ARRAY_OPTIONS = ("weight", "pos_weight")
CLASS_LOSSES = ("nll_loss", "cross_entropy", "NLLLoss", "CrossEntropyLoss")
NN_NAMES = {
    "l1_loss": "L1Loss",
    "mse_loss": "MSELoss",
    "huber_loss": "HuberLoss",
    "smooth_l1_loss": "SmoothL1Loss",
    "binary_cross_entropy": "BCELoss",
    "binary_cross_entropy_with_logits": "BCEWithLogitsLoss",
    "nll_loss": "NLLLoss",
    "cross_entropy": "CrossEntropyLoss",
}


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def tensor(a, grad=False):
    a = np.asarray(a)
    dtype = torch.int64 if np.issubdtype(a.dtype, np.integer) else torch.float64
    return torch.tensor(a, dtype=dtype, requires_grad=grad)


def torch_options(kwargs):
    return {k: (tensor(v) if k in ARRAY_OPTIONS else v) for k, v in kwargs.items()}


def json_options(kwargs):
    return {k: (np.asarray(v).tolist() if k in ARRAY_OPTIONS else v) for k, v in kwargs.items()}


def reference(fn, kwargs):
    """torch's loss as a function of (input, target): the functional op or the nn class."""
    if fn in NN_NAMES.values():
        return getattr(torch.nn, fn)(**torch_options(kwargs))
    return lambda x, t: getattr(TF, fn)(x, t, **torch_options(kwargs))


# ----------------------------------------------------------------------------- inputs


def pointwise_pair(rng, shape, hits=()):
    """(input, target) with exact differences planted: d = 0 and d = ±h for each h in hits."""
    target = np.round(rng.normal(size=shape) * 64) / 64  # dyadic, so target ± h is exact
    d = rng.normal(size=shape) * 2
    flat = d.reshape(-1)
    specials = [0.0] + [s * h for h in hits for s in (1.0, -1.0)]
    k = min(len(specials), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = specials[:k]
    x = target + d
    for h in specials[:k]:
        assert np.any((x - target) == h), "a planted kink must be hit exactly"
    return x, target


def edge_logits(rng, shape):
    """Normal logits (scale 3) with exact 0, ±1, ±1000 planted."""
    x = rng.normal(size=shape) * 3
    flat = x.reshape(-1)
    specials = [0.0, 1000.0, -1000.0, 1.0, -1.0]
    k = min(len(specials), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = specials[:k]
    return x


def class_dims(shape):
    """(C, the target's shape) of a class input (C,), (N, C) or (N, C, d...)."""
    if len(shape) == 1:
        return shape[0], ()
    return shape[1], (shape[0], *shape[2:])


def index_targets(rng, shape, ignore_index=None, fraction=1 / 3):
    c, tshape = class_dims(shape)
    t = rng.integers(0, c, size=tshape)
    if ignore_index is not None and t.size:
        flat = t.reshape(-1)
        flat[rng.choice(flat.size, max(1, int(flat.size * fraction)), replace=False)] = ignore_index
    return t


def prob_targets(rng, shape):
    cdim = 0 if len(shape) == 1 else 1
    z = rng.normal(size=shape) * 2
    e = np.exp(z - z.max(axis=cdim, keepdims=True))
    return e / e.sum(axis=cdim, keepdims=True)


def bce_pair(rng, shape):
    """Probabilities in (0.01, 0.99) and soft targets, with x ∈ {0, 1} against y ∈ {0, 1}."""
    x = rng.uniform(0.01, 0.99, size=shape)
    y = rng.uniform(0, 1, size=shape)
    xf, yf = x.reshape(-1), y.reshape(-1)
    if xf.size >= 8:
        xf[:5] = [0.0, 0.0, 1.0, 1.0, 0.0]  # BCE-1: 100, 0, 100, 0; and x = 0 with a soft y
        yf[:8] = [1.0, 0.0, 0.0, 1.0, 0.3, 0.0, 1.0, 0.0]
    return x, y


# ----------------------------------------------------------------------------- one case


def per_sample(fn, kwargs, x, t):
    """torch's 'sum' of each sample alone, the documented 'mean' weight, the batch's 'mean'."""
    n = x.shape[0]
    sums, weights = [], []
    for i in range(n):
        kw = dict(kwargs, reduction="sum")
        for k in ARRAY_OPTIONS:  # an element-wise weight with a batch dimension goes with its sample
            v = kw.get(k)
            if v is not None and np.ndim(v) == x.ndim and np.shape(v)[0] == n and n > 1:
                kw[k] = np.asarray(v)[i : i + 1]
        sums.append(float(reference(fn, kw)(tensor(x[i : i + 1]), tensor(t[i : i + 1]))))
        if fn not in CLASS_LOSSES:
            weights.append(float(x[i].size))  # BCE-3: elements, not Σ weight
        elif t.shape == x.shape:
            weights.append(float(np.prod(x.shape[2:])))  # CE-3: positions
        else:
            ti = t[i]
            keep = ti != kwargs["ignore_index"]
            w = np.ones(x.shape[1]) if "weight" not in kwargs else np.asarray(kwargs["weight"])
            weights.append(float(np.sum(np.where(keep, w[np.where(keep, ti, 0)], 0.0))))  # NLL-1, CE-2
    mean = float(reference(fn, dict(kwargs, reduction="mean"))(tensor(x), tensor(t)))
    return {"loss_sum": sums, "weight": weights, "mean": mean}


def case(name, fn, kwargs, x, t, grad_target=None):
    """Run torch on one (input, target, options) and record everything the test needs.

    fn is a torch.nn.functional name (api fnn.functional.<fn>) or a torch.nn class name
    (api fnn.nn.<fn>); kwargs is the one dict both torch and the JSON's "kwargs" come from.
    """
    rng = rng_for(name + "/cotangent")
    x, t = np.asarray(x, np.float64), np.asarray(t)
    index = np.issubdtype(t.dtype, np.integer)
    if grad_target is None:
        grad_target = not index
    xt, tt = tensor(x, True), tensor(t, grad_target)
    out = reference(fn, kwargs)(xt, tt)
    cot = np.asarray(rng.normal(size=tuple(out.shape)))
    wrt = [xt] + ([tt] if grad_target else [])
    grads = torch.autograd.grad(out, wrt, tensor(cot))
    grad = {"input": grads[0].numpy()}
    if grad_target:
        grad["target"] = grads[1].numpy()
    nn = fn in NN_NAMES.values()
    arrays = {"input": x, "target": t, "output": out.detach().numpy(), "cotangent": cot}
    result = {
        "api": f"fnn.nn.{fn}" if nn else f"fnn.functional.{fn}",
        "kwargs": json_options(kwargs),
        "name": name,
        "input": x.tolist(),
        "target": t.tolist(),
        "target_dtype": "int64" if index else "float64",
        "output": arrays["output"].tolist(),
        "cotangent": cot.tolist(),
        "grad": {k: v.tolist() for k, v in grad.items()},
        "shapes": {
            **{k: list(np.shape(v)) for k, v in arrays.items()},
            **{f"grad_{k}": list(v.shape) for k, v in grad.items()},
        },
    }
    if nn and x.ndim >= (2 if fn in CLASS_LOSSES else 1):
        result["per_sample"] = per_sample(fn, kwargs, x, t)
    return result


# ----------------------------------------------------------------------------- the cases


def pointwise_cases():
    # L1-1 (gradient 0 at d = 0), MSE-1: every reduction, a 3-d input, an empty one ('mean' NaN).
    for fn in ("l1_loss", "mse_loss"):
        for red in REDS:
            yield f"{fn}-{red}", fn, {"reduction": red}, *pointwise_pair(rng_for(f"{fn}{red}"), (4, 5))
        yield f"{fn}-3d", fn, {"reduction": "mean"}, *pointwise_pair(rng_for(fn + "3d"), (2, 3, 5))
        yield f"{fn}-empty", fn, {"reduction": "mean"}, np.zeros((0, 5)), np.zeros((0, 5))
    # HUB-1: |d| = δ planted exactly; δ ≠ 1.
    for delta, reds in ((1.0, REDS), (0.5, ("mean",)), (2.0, ("none",))):
        for red in reds:
            name = f"huber_loss-d{delta}-{red}"
            pair = pointwise_pair(rng_for(name), (4, 5), (delta,))
            yield name, "huber_loss", {"reduction": red, "delta": delta}, *pair
    yield (
        "huber_loss-empty",
        "huber_loss",
        {"reduction": "mean", "delta": 1.0},
        np.zeros((0, 5)),
        np.zeros((0, 5)),
    )
    # SL1-1: |d| = β planted; β = 0 is exactly L1 (value and sign(0) = 0 gradient).
    for beta, reds in ((1.0, REDS), (0.5, ("sum",)), (2.0, ("none",)), (0.0, REDS)):
        for red in reds:
            name = f"smooth_l1_loss-b{beta}-{red}"
            pair = pointwise_pair(rng_for(name), (4, 5), (beta,) if beta else ())
            yield name, "smooth_l1_loss", {"reduction": red, "beta": beta}, *pair
    yield (
        "smooth_l1_loss-empty",
        "smooth_l1_loss",
        {"reduction": "mean", "beta": 1.0},
        np.zeros((0, 5)),
        np.zeros((0, 5)),
    )


def bce_cases():
    # BCE-1 (−100 clamp), BCE-2 (1e-12 floor: ≈ ∓1e12 at x ∈ {0, 1}), BCE-3 (weight broadcast,
    # 'mean' over numel). The target is not differentiated here (see the module docstring).
    fn = "binary_cross_entropy"
    weights = {"full": (4, 5), "class": (5,), "row": (4, 1)}
    for wname, red in (
        (None, "mean"),
        (None, "sum"),
        (None, "none"),
        ("full", "mean"),
        ("class", "none"),
        ("row", "sum"),
    ):
        name = f"bce-{wname or 'now'}-{red}"
        rng = rng_for(name)
        x, y = bce_pair(rng, (4, 5))
        kw = {"reduction": red}
        if wname:
            kw["weight"] = rng.uniform(0, 2, size=weights[wname])
        yield name, fn, kw, x, y, False
    rng = rng_for("bce-3d")
    x, y = bce_pair(rng, (2, 3, 5))
    yield (
        "bce-3d-class-weight",
        fn,
        {"weight": rng.uniform(0, 2, size=(5,)), "reduction": "mean"},
        x,
        y,
        False,
    )
    yield "bce-empty", fn, {"reduction": "mean"}, np.zeros((0, 5)), np.zeros((0, 5)), False
    # torch's target gradient w·(log(1 − x) − log x), inside (0, 1) and at the clamp.
    rng = rng_for("bce-target-grad")
    x, y = rng.uniform(0.01, 0.99, size=(4, 5)), rng.uniform(0, 1, size=(4, 5))
    kw = {"weight": rng.uniform(0, 2, size=(4, 5)), "reduction": "none"}
    yield "bce-target-grad", fn, kw, x, y, True
    x, y = rng.uniform(0.01, 0.99, size=(4, 5)), rng.uniform(0, 1, size=(4, 5))
    x[0], y[0] = [0.0, 0.0, 1.0, 1.0, 1e-50], [1.0, 0.0, 0.0, 1.0, 0.5]
    yield "bce-target-grad-at-clamp", fn, {"reduction": "sum"}, x, y, True


def bce_logits_cases():
    # BCEL-1: stable at ±1000, no −100 clamp, pos_weight broadcast (C,), (1,), (), (d1, C).
    fn = "binary_cross_entropy_with_logits"
    combos = [
        ((4, 5), None, None, "mean"),
        ((4, 5), None, None, "sum"),
        ((4, 5), None, None, "none"),
        ((4, 5), (4, 5), None, "mean"),
        ((4, 5), None, (5,), "sum"),
        ((4, 5), (5,), (5,), "none"),
        ((4, 5), (4, 1), (5,), "mean"),
        ((4, 5), None, (1,), "mean"),
        ((4, 5), None, (), "sum"),
        ((2, 3, 5), (3, 1), (3, 5), "none"),
        ((2, 3, 5), None, (5,), "mean"),
    ]
    for shape, wshape, pshape, red in combos:
        name = f"bcel-{'x'.join(map(str, shape))}-w{wshape}-p{pshape}-{red}".replace(" ", "")
        rng = rng_for(name)
        x = edge_logits(rng, shape)
        y = rng.uniform(0, 1, size=shape)
        y.reshape(-1)[:4] = [0.0, 1.0, 0.0, 1.0]
        kw = {"reduction": red}
        if wshape is not None:
            kw["weight"] = rng.uniform(0, 2, size=wshape)
        if pshape is not None:
            kw["pos_weight"] = rng.uniform(0.2, 3, size=pshape)
        yield name, fn, kw, x, y
    yield "bcel-empty", fn, {"reduction": "mean"}, np.zeros((0, 5)), np.zeros((0, 5))


def log_probs(x):
    return torch.log_softmax(tensor(x), dim=0 if x.ndim == 1 else 1).numpy()


def class_options(fn, weight, ii, smoothing, red, c, rng):
    kw = {"ignore_index": ii, "reduction": red}
    if fn == "cross_entropy":
        kw["label_smoothing"] = smoothing
    if weight:
        kw["weight"] = rng.uniform(0.2, 2, size=(c,))
    return kw


def nll_ce_index_cases():
    # NLL-1 (weighted mean), NLL-3 (K-dim, unbatched), CE-1, CE-2 (smoothing shares the
    # weighted denominator), CE-4 (ignore_index a valid class stays in the softmax), CE-6.
    # (weight, ignore_index, ignore some targets, label_smoothing)
    opts = [
        (False, -100, False, 0.0),
        (True, -100, True, 0.1),
        (True, 1, True, 0.0),
        (False, 2, True, 0.1),
        (True, 1, True, 0.2),
        (False, -100, True, 1.0),
    ]
    # K-dim 'sum' is left to the fnn.nn cases (the same ops): each compiled shape costs test time.
    k1 = ("mean", "none")
    plan = {
        "nll_loss": [
            ((4, 5), opts[:4], REDS),
            ((2, 3, 5), opts[1:2], k1),
            ((2, 3, 2, 5), opts[2:3], ("mean",)),
        ],
        "cross_entropy": [
            ((4, 5), opts, REDS),
            ((2, 3, 5), opts[4:5], k1),
            ((2, 3, 2, 5), opts[4:5], ("mean",)),
        ],
    }
    for fn, blocks in plan.items():
        for shape, block_opts, reds in blocks:
            for weight, ii, ignore, eps in block_opts:
                for red in reds:
                    name = (
                        f"{fn}-{'x'.join(map(str, shape))}-w{int(weight)}-ii{ii}-{int(ignore)}-ls{eps}-{red}"
                    )
                    if fn == "nll_loss":
                        name = name.replace(f"-ls{eps}", "")
                    rng = rng_for(name)
                    x = edge_logits(rng, shape)
                    t = index_targets(rng, shape, ii if ignore else None)
                    kw = class_options(fn, weight, ii, eps, red, shape[1], rng)
                    yield name, fn, kw, (log_probs(x) if fn == "nll_loss" else x), t
        # unbatched (C,) input with a scalar target (NLL-3); an ignored one gives a NaN 'mean'
        for tag, weight, ignored, eps, red in (
            ("plain", False, False, 0.0, "mean"),
            ("weight", True, False, 0.1, "none"),
            ("ignored", False, True, 0.1, "mean"),
        ):
            name = f"{fn}-unbatched-{tag}-ls{eps}-{red}"
            rng = rng_for(name)
            x = edge_logits(rng, (5,))
            t = np.array(-100 if ignored else rng.integers(0, 5))
            kw = class_options(fn, weight, -100, eps, red, 5, rng)
            yield name, fn, kw, (log_probs(x) if fn == "nll_loss" else x), t
        # NLL-2: every target ignored: 'mean' NaN, 'sum' 0, 'none' zeros, gradient zeros
        for weight in (False, True):
            for red in REDS:
                name = f"{fn}-all-ignored-w{int(weight)}-{red}"
                rng = rng_for(name)
                x = rng.normal(size=(4, 5))
                kw = class_options(fn, weight, -100, 0.1 if weight else 0.0, red, 5, rng)
                yield name, fn, kw, (log_probs(x) if fn == "nll_loss" else x), np.full(4, -100)
        # CE-5: an empty batch, 'mean' NaN
        for shape, red in (((0, 5), "mean"), ((0, 5), "none")):
            name = f"{fn}-empty-{'x'.join(map(str, shape))}-{red}"
            t = np.zeros(class_dims(shape)[1], np.int64)
            yield name, fn, class_options(fn, False, -100, 0.0, red, shape[1], None), np.zeros(shape), t


def ce_prob_cases():
    # CE-3: probability targets; 'mean' divides by N·d1·…·dK, not by the weights; smoothing
    # y' = (1 − ε)·y + ε/C, also with weight. torch differentiates the target too.
    fn = "cross_entropy"
    opts = [(False, 0.0), (True, 0.0), (True, 0.2), (False, 1.0)]
    blocks = [
        ((4, 5), opts, REDS),
        ((2, 3, 5), opts[2:3], ("mean", "none")),
        ((2, 3, 2, 5), opts[1:2], ("mean",)),
    ]
    for shape, block_opts, reds in blocks:
        for weight, eps in block_opts:
            for red in reds:
                name = f"cross_entropy-probs-{'x'.join(map(str, shape))}-w{int(weight)}-ls{eps}-{red}"
                rng = rng_for(name)
                x, p = edge_logits(rng, shape), prob_targets(rng, shape)
                yield name, fn, class_options(fn, weight, -100, eps, red, shape[1], rng), x, p
    for weight, eps, red in ((False, 0.0, "mean"), (True, 0.2, "none")):
        name = f"cross_entropy-probs-unbatched-w{int(weight)}-ls{eps}-{red}"
        rng = rng_for(name)
        x, p = edge_logits(rng, (5,)), prob_targets(rng, (5,))
        yield name, fn, class_options(fn, weight, -100, eps, red, 5, rng), x, p
    kw = class_options(fn, False, -100, 0.0, "mean", 5, None)
    yield "cross_entropy-probs-empty-mean", fn, kw, np.zeros((0, 5)), np.zeros((0, 5))


def spec_cases():
    """fnn.nn's classes: each option at least once, every reduction, per_sample on batches."""
    for fn, red, shape in (
        ("l1_loss", "mean", (4, 5)),
        ("l1_loss", "sum", (4, 5)),
        ("l1_loss", "none", (2, 3, 5)),
        ("mse_loss", "mean", (2, 3, 5)),
        ("mse_loss", "sum", (4, 5)),
        ("mse_loss", "none", (4, 5)),
    ):
        name = f"nn-{NN_NAMES[fn]}-{red}-{'x'.join(map(str, shape))}"
        yield name, NN_NAMES[fn], {"reduction": red}, *pointwise_pair(rng_for(name), shape)
    for fn, opt, values in (
        ("huber_loss", "delta", (0.5, 1.0, 2.0)),
        ("smooth_l1_loss", "beta", (0.0, 0.5, 1.0)),
    ):
        for v, red in zip(values, REDS, strict=True):
            name = f"nn-{NN_NAMES[fn]}-{opt}{v}-{red}"
            pair = pointwise_pair(rng_for(name), (4, 5), (v,) if v else ())
            yield name, NN_NAMES[fn], {"reduction": red, opt: v}, *pair
    for wshape, red in ((None, "sum"), ((4, 5), "mean"), ((5,), "none")):
        name = f"nn-BCELoss-w{wshape}-{red}".replace(" ", "")
        rng = rng_for(name)
        kw = {"reduction": red}
        if wshape:
            kw["weight"] = rng.uniform(0, 2, size=wshape)
        yield name, "BCELoss", kw, *bce_pair(rng, (4, 5)), False
    for shape, wshape, pshape, red in (
        ((4, 5), None, None, "none"),
        ((4, 5), (4, 1), (5,), "mean"),
        ((4, 5), None, (1,), "sum"),
        ((2, 3, 5), (3, 1), (3, 5), "mean"),
    ):
        name = f"nn-BCEWithLogitsLoss-{'x'.join(map(str, shape))}-w{wshape}-p{pshape}-{red}".replace(" ", "")
        rng = rng_for(name)
        x, y = edge_logits(rng, shape), rng.uniform(0, 1, size=shape)
        kw = {"reduction": red}
        if wshape:
            kw["weight"] = rng.uniform(0, 2, size=wshape)
        if pshape:
            kw["pos_weight"] = rng.uniform(0.2, 3, size=pshape)
        yield name, "BCEWithLogitsLoss", kw, x, y
    for fn, shape, weight, ii, eps, red in (
        ("nll_loss", (4, 5), True, 1, 0.0, "mean"),
        ("nll_loss", (2, 3, 5), True, -100, 0.0, "sum"),
        ("nll_loss", (2, 3, 2, 5), False, -100, 0.0, "none"),
        ("cross_entropy", (4, 5), True, 1, 0.1, "mean"),
        ("cross_entropy", (2, 3, 5), True, -100, 0.2, "none"),
        ("cross_entropy", (2, 3, 2, 5), False, 2, 0.0, "sum"),
    ):
        name = f"nn-{NN_NAMES[fn]}-{'x'.join(map(str, shape))}-w{int(weight)}-ii{ii}-ls{eps}-{red}"
        rng = rng_for(name)
        x = edge_logits(rng, shape)
        t = index_targets(rng, shape, ii)
        if len(shape) > 2:
            t[0] = ii  # a sample with every position ignored: per-sample weight 0
        kw = class_options(fn, weight, ii, eps, red, shape[1], rng)
        yield name, NN_NAMES[fn], kw, (log_probs(x) if fn == "nll_loss" else x), t
    for shape, weight, eps, red in (((4, 5), True, 0.2, "mean"), ((2, 3, 5), False, 0.0, "none")):
        name = f"nn-CrossEntropyLoss-probs-{'x'.join(map(str, shape))}-w{int(weight)}-ls{eps}-{red}"
        rng = rng_for(name)
        kw = class_options("cross_entropy", weight, -100, eps, red, shape[1], rng)
        yield name, "CrossEntropyLoss", kw, edge_logits(rng, shape), prob_targets(rng, shape)
    rng = rng_for("nn-CrossEntropyLoss-unbatched")
    kw = class_options("cross_entropy", False, -100, 0.1, "mean", 5, rng)
    yield "nn-CrossEntropyLoss-unbatched", "CrossEntropyLoss", kw, edge_logits(rng, (5,)), np.array(2)
    kw = class_options("cross_entropy", False, -100, 0.0, "mean", 5, None)
    yield "nn-CrossEntropyLoss-empty", "CrossEntropyLoss", kw, np.zeros((0, 5)), np.zeros(0, np.int64)


def main():
    cases = []
    for source in (
        pointwise_cases,
        bce_cases,
        bce_logits_cases,
        nll_ce_index_cases,
        ce_prob_cases,
        spec_cases,
    ):
        for args in source():
            cases.append(case(*args))
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    out = {"torch": torch.__version__, "generator": GENERATOR, "cases": cases}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(cases)} cases to {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
