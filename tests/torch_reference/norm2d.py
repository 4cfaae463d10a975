"""Write norm2d.json: PyTorch's batch normalization of (N, C, *) inputs, channel dropout
(F.dropout2d) and the nn.BatchNorm2d / nn.Dropout2d modules, the fixture of
tests/test_reference_norm2d.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/tv/bin/python tests/torch_reference/norm2d.py

Deterministic (numpy generators and torch's generator seeded from each case's name):
rerunning rewrites the file byte for byte. Everything is float64; JSON floats round-trip
exactly (repr).

Layout: {"torch", "generator", "cases": [...]}, each case one of

- {"api": "fnn.functional.batch_norm" | "fnn.functional.dropout2d", "name", "kwargs" (every
  argument after the input, by fnn's names; arrays as lists, null for None), "input",
  "output", "cotangent" (a random dL/d(output)), "grad": {"input", "weight", "bias"}: torch
  autograd's gradients of <output, cotangent> (null where the argument is None)}, with, for
  batch_norm, "running_mean_out" / "running_var_out" (fnn's 2nd and 3rd results). The
  reference is torch.nn.functional.batch_norm, except: momentum=None is a
  torch.nn.BatchNorm2d/3d(momentum=None) whose num_batches_tracked is set to
  kwargs["num_batches_tracked"] before one training forward, and eval without buffers is
  torch's module behaviour (batch statistics, BN-5).
- dropout2d in training with 0 < p < 1: torch's generator differs from JAX's. The case runs
  torch.nn.functional.dropout2d itself ("output", "grad"), records the channels it kept as
  "mask" (N, C) of 0/1, and the complementary mask's `x * (1 − mask) / (1 − p)` and its
  gradient as "output_complement" / "grad_complement", so that every channel is given by
  torch both kept and dropped; the test picks, channel by channel, the one fnn's mask for
  kwargs["key"] (the seed of jax.random.key) selects. A 3-D input is torch 2.13's (N, C, L)
  reading (DROP2D-3; torch warns).
- {"api": "fnn.nn.BatchNorm2d" | "fnn.nn.Dropout2d" | "fnn.nn.Sequential", "name", "kwargs"
  (the constructor's arguments; Sequential: {"layers": [{"api", "kwargs"}, ...]}),
  "state_dict" (torch's, before the first step; float32-exact values), "init_state_dict"
  (BatchNorm2d: a fresh module's), "steps": [{"train", "key" (seed or null), "input",
  "cotangent", "output", "grad_input", "grad_params": {name: gradient}, "buffers": {name:
  value after the step}}, ...]}, the layout of layers.json. A Dropout2d training step with
  0 < p < 1 carries "mask", "output_complement" and "grad_input_complement" as above.
"""

from __future__ import annotations

import json
import pathlib
import warnings
import zlib

import numpy as np
import torch

T, TF = torch.nn, torch.nn.functional
OUT = pathlib.Path(__file__).with_suffix(".json")
CASES: list[dict] = []


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def t64(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def listed(a):
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    return np.asarray(a).tolist()


def f32_exact(a):
    return np.asarray(a, np.float32).astype(np.float64)


def per_channel(v, ndim):
    return v.view((1, -1) + (1,) * (ndim - 2))


# ----------------------------------------------------------------------------- batch_norm


def bn_reference(x, kw):
    """(output, running_mean, running_var) of torch for fnn's batch_norm arguments."""
    rm = None if kw["running_mean"] is None else kw["running_mean"].clone()
    rv = None if kw["running_var"] is None else kw["running_var"].clone()
    if kw["momentum"] is None:  # BN-3: the module's cumulative average
        module = (T.BatchNorm2d if x.dim() == 4 else T.BatchNorm3d)(
            x.shape[1], eps=kw["eps"], momentum=None, affine=False
        ).double()
        module.running_mean.copy_(rm)
        module.running_var.copy_(rv)
        module.num_batches_tracked.fill_(kw["num_batches_tracked"])
        y = module(x)
        if kw["weight"] is not None:
            y = y * per_channel(kw["weight"], x.dim())
        if kw["bias"] is not None:
            y = y + per_channel(kw["bias"], x.dim())
        return y, module.running_mean, module.running_var
    use_batch = kw["training"] or rm is None  # BN-5: no buffers, batch statistics
    y = TF.batch_norm(x, rm, rv, kw["weight"], kw["bias"], use_batch, kw["momentum"], kw["eps"])
    return y, rm, rv


def batch_norm():
    # BN2D-1 (statistics over N and every spatial dim, unbiased running variance with
    # n = N·prod(*)), BN2D-2 (backward), with BN-2..6's options on 4-D and 5-D input.
    cases = [
        # (shape, training, affine, track, momentum, eps, num_batches_tracked)
        ((3, 2, 2, 3), True, True, True, 0.1, 1e-5, None),
        ((3, 2, 2, 3), False, True, True, 0.1, 1e-5, None),
        ((3, 2, 2, 3), False, True, False, 0.1, 1e-5, None),
        ((3, 2, 2, 3), True, False, False, 0.1, 1e-3, None),
        ((2, 3, 2, 2), True, True, True, None, 1e-5, 2),
        ((1, 2, 1, 2), True, True, True, 0.5, 1e-5, None),
        ((2, 3, 2, 1, 2), True, True, True, 0.1, 1e-5, None),
        ((2, 3, 2, 1, 2), False, False, True, 0.1, 0.5, None),
    ]
    for shape, training, affine, track, momentum, eps, nbt in cases:
        name = (
            f"batch_norm-{shape}-training={training}-affine={affine}-track={track}"
            f"-momentum={momentum}-eps={eps}" + ("" if nbt is None else f"-num_batches_tracked={nbt}")
        )
        rng = rng_for(name)
        c = shape[1]
        x = rng.normal(size=shape) * 2 + 1
        kwargs = {
            "running_mean": rng.normal(size=c) if track else None,
            "running_var": rng.uniform(0.5, 2, size=c) if track else None,
            "weight": rng.normal(size=c) if affine else None,
            "bias": rng.normal(size=c) if affine else None,
            "training": training,
            "momentum": momentum,
            "eps": eps,
            "num_batches_tracked": nbt,
        }
        xt = t64(x, True)
        kw_t = {
            k: (t64(v, k in ("weight", "bias")) if isinstance(v, np.ndarray) else v)
            for k, v in kwargs.items()
        }
        y, rm, rv = bn_reference(xt, kw_t)
        cot = rng.normal(size=shape)
        wrt = [xt] + [kw_t[k] for k in ("weight", "bias") if kw_t[k] is not None]
        grads = list(torch.autograd.grad(y, wrt, t64(cot)))
        grad = {"input": listed(grads.pop(0))}
        for k in ("weight", "bias"):
            grad[k] = listed(grads.pop(0)) if kw_t[k] is not None else None
        CASES.append(
            {
                "api": "fnn.functional.batch_norm",
                "name": name,
                "kwargs": {k: listed(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
                "input": x.tolist(),
                "output": listed(y),
                "cotangent": cot.tolist(),
                "grad": grad,
                "running_mean_out": listed(rm),
                "running_var_out": listed(rv),
            }
        )


# ----------------------------------------------------------------------------- dropout2d


def torch_dropout2d(x, p, training, cot):
    """torch's F.dropout2d (3-D input read as (N, C, L), warning silenced) and its gradient."""
    xt = t64(x, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = TF.dropout2d(xt, p=p, training=training)
    (gx,) = torch.autograd.grad(y, [xt], t64(cot))
    return y.detach().numpy(), gx.numpy()


def dropout2d():
    # DROP2D-2: p = 0 and eval are the identity, p = 1 zeros (gradient zeros, not NaN).
    for p, training in [(0.0, True), (1.0, True), (0.5, False)]:
        name = f"dropout2d-p={p}-training={training}"
        rng = rng_for(name)
        x, cot = rng.normal(size=(2, 3, 2, 2)), rng.normal(size=(2, 3, 2, 2))
        y, gx = torch_dropout2d(x, p, training, cot)
        CASES.append(
            {
                "api": "fnn.functional.dropout2d",
                "name": name,
                "kwargs": {"key": 0 if 0 < p < 1 and training else None, "p": p, "training": training},
                "input": x.tolist(),
                "output": y.tolist(),
                "cotangent": cot.tolist(),
                "grad": {"input": gx.tolist()},
            }
        )
    # DROP2D-1, DROP2D-3: torch's own channel draw, and its complement.
    for p, shape, seed in [(0.5, (3, 4, 2, 2), 1), (0.2, (2, 5, 1, 3), 2), (0.5, (4, 3, 5), 3)]:
        name = f"dropout2d-p={p}-{shape}-mask"
        rng = rng_for(name)
        torch.manual_seed(zlib.crc32(name.encode()))
        x, cot = rng.normal(size=shape), rng.normal(size=shape)
        y, gx = torch_dropout2d(x, p, True, cot)
        mask = (np.abs(y).reshape(*shape[:2], -1).sum(-1) != 0).astype(np.float64)
        full = mask.reshape(*shape[:2], *(1,) * (len(shape) - 2))
        assert np.array_equal(y, x * (full / (1 - p))), "torch drops whole channels, scaled 1/(1 - p)"
        assert 0 < mask.mean() < 1, "both states present"
        CASES.append(
            {
                "api": "fnn.functional.dropout2d",
                "name": name,
                "kwargs": {"key": seed, "p": p, "training": True},
                "input": x.tolist(),
                "output": y.tolist(),
                "cotangent": cot.tolist(),
                "grad": {"input": gx.tolist()},
                "mask": mask.tolist(),
                "output_complement": (x * ((1 - full) / (1 - p))).tolist(),
                "grad_complement": (cot * ((1 - full) / (1 - p))).tolist(),
            }
        )


# ----------------------------------------------------------------------------- layers


def layer(api, **kw):
    return {"api": f"fnn.nn.{api}", "kwargs": kw}


def torch_module(spec):
    name, kw = spec["api"].rsplit(".", 1)[1], spec["kwargs"]
    if name == "Sequential":
        return T.Sequential(*(torch_module(inner) for inner in kw["layers"]))
    return getattr(T, name)(**kw)


def state_dict(module):
    return {k: v.detach().numpy().tolist() for k, v in module.state_dict().items()}


def add_layer(spec, name, shape, modes, *, buffers=None):
    """Record a layer case: random float32-exact parameters (and given buffers), then one
    step per entry of `modes` (True = train), buffers after each."""
    rng = rng_for(name)
    torch.manual_seed(zlib.crc32(name.encode()))
    module = torch_module(spec).double()
    init = state_dict(module)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(t64(f32_exact(rng.normal(size=tuple(p.shape)) * 0.5 + p.detach().numpy())))
        for bname, value in (buffers or {}).items():
            buf = module.get_buffer(bname)
            buf.fill_(0).add_(torch.as_tensor(value, dtype=buf.dtype))
    case = {"api": spec["api"], "kwargs": spec["kwargs"], "name": name, "state_dict": state_dict(module)}
    if spec["api"].endswith("BatchNorm2d"):
        case["init_state_dict"] = init
    params = list(module.named_parameters())
    p_drop = spec["kwargs"].get("p")
    steps = []
    for i, train in enumerate(modes):
        module.train(train)
        x = rng.normal(size=shape) * 2 + 0.5
        step = {"train": train, "key": 10 + i if train and p_drop else None, "input": x.tolist()}
        xt = t64(x, True)
        y = module(xt)
        cot = rng.normal(size=tuple(y.shape))
        grads = torch.autograd.grad(y, [xt] + [p for _, p in params], t64(cot))
        step.update(
            cotangent=cot.tolist(),
            output=listed(y),
            grad_input=listed(grads[0]),
            grad_params={n: listed(g) for (n, _), g in zip(params, grads[1:], strict=True)},
            buffers={k: listed(v) for k, v in module.named_buffers()},
        )
        if p_drop and train and 0 < p_drop < 1:  # DROP2D-1: torch's channels and their complement
            out = np.asarray(step["output"])
            mask = (np.abs(out).reshape(*shape[:2], -1).sum(-1) != 0).astype(np.float64)
            full = mask.reshape(*shape[:2], *(1,) * (len(shape) - 2))
            assert 0 < mask.mean() < 1, "both states present"
            step.update(
                mask=mask.tolist(),
                output_complement=(x * ((1 - full) / (1 - p_drop))).tolist(),
                grad_input_complement=(cot * ((1 - full) / (1 - p_drop))).tolist(),
            )
        steps.append(step)
    case["steps"] = steps
    CASES.append(case)


def layers():
    # BN2D-3: BatchNorm2d's running statistics, counter and state_dict, train and eval;
    # BN2D-1's n = N·H·W in the unbiased running variance.
    bn = dict(num_features=3, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
    tte = (True, True, False, True)
    add_layer(layer("BatchNorm2d", **bn), "BatchNorm2d", (4, 3, 2, 3), tte)
    add_layer(
        layer("BatchNorm2d", **{**bn, "momentum": None, "eps": 1e-3}),
        "BatchNorm2d-momentum-None-eval-first",
        (2, 3, 3, 2),
        (False, True, False, True),
        buffers={
            "running_mean": f32_exact([0.5, -1.0, 2.0]),
            "running_var": f32_exact([0.5, 2.0, 1.5]),
            "num_batches_tracked": 5,
        },
    )
    add_layer(
        layer("BatchNorm2d", **{**bn, "affine": False, "momentum": 0.3}),
        "BatchNorm2d-no-affine",
        (3, 3, 2, 2),
        tte,
    )
    add_layer(
        layer("BatchNorm2d", **{**bn, "track_running_stats": False}),
        "BatchNorm2d-no-running-stats",
        (3, 3, 2, 2),
        (True, False),
    )
    # DROP2D-1/2
    add_layer(layer("Dropout2d", p=0.5), "Dropout2d-p0.5", (4, 5, 2, 2), (True, False))
    add_layer(layer("Dropout2d", p=0.0), "Dropout2d-p0", (2, 3, 2, 2), (True, False))
    add_layer(layer("Dropout2d", p=1.0), "Dropout2d-p1", (2, 3, 2, 2), (True, False))
    # A small network: torch's state_dict names (0.weight, 0.running_mean, ...) load unchanged.
    net = layer(
        "Sequential",
        layers=[
            layer("BatchNorm2d", **{**bn, "num_features": 2}),
            layer("ReLU"),
            layer("Dropout2d", p=0.0),
            layer("Flatten", start_dim=1, end_dim=-1),
            layer("Linear", in_features=8, out_features=3, bias=True),
            layer("BatchNorm1d", **bn),
        ],
    )
    add_layer(net, "Sequential-bn2d", (5, 2, 2, 2), (True, False, True))


def main():
    torch.set_num_threads(1)
    batch_norm()
    dropout2d()
    layers()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/norm2d.py", "cases": CASES}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
