"""Write pooling.json: PyTorch's F.max_pool1d/2d, F.avg_pool1d/2d and F.adaptive_avg_pool2d
with every option, and the nn.MaxPool1d/2d, nn.AvgPool1d/2d and nn.AdaptiveAvgPool2d modules,
the fixture of tests/test_reference_pooling.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/tv/bin/python tests/torch_reference/pooling.py

Deterministic (numpy generators seeded from each case's name): rerunning rewrites the file
byte for byte. Everything is float64; JSON floats round-trip exactly (repr). Max-pool inputs
are small integers, so windows hold ties and torch's tie rule (POOL-5) is pinned.

Layout: {"torch", "generator", "cases": [...]}, each case one of

- {"api": "fnn.functional.<op>", "name", "kwargs" (every argument after input, by fnn's
  names), "input", "output", "cotangent" (a random dL/d(output)), "grad": {"input"}: torch
  autograd's gradient of <output, cotangent>}.
- {"api": "fnn.nn.<Layer>", "name", "kwargs" (the constructor's arguments),
  "init_state_dict" and "state_dict" (both {}: pooling has no parameters), "steps":
  [{"train", "input", "cotangent", "output", "grad_input", "grad_params": {}}, ...]}, the
  layout of layers.json.
"""

from __future__ import annotations

import json
import pathlib
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
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    return np.asarray(a).tolist()


def draw(rng, name, shape):
    """Small integers for max-pool (ties in most windows), normal values otherwise."""
    if "max" in name.lower():
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    return rng.normal(size=shape)


DEFAULTS = {
    "max_pool1d": {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
    "avg_pool1d": {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
}
DEFAULTS["max_pool2d"] = DEFAULTS["max_pool1d"]
DEFAULTS["avg_pool2d"] = {**DEFAULTS["avg_pool1d"], "divisor_override": None}
DEFAULTS["adaptive_avg_pool2d"] = {}


def add_op(op, name, shape, **kw):
    name = f"{op}-{name}"
    rng = rng_for(name)
    kw = {**DEFAULTS[op], **kw}
    x = draw(rng, name, shape)
    xt = t64(x, True)
    y = getattr(TF, op)(xt, **kw)
    cot = rng.normal(size=tuple(y.shape))
    (gx,) = torch.autograd.grad(y, [xt], t64(cot))
    CASES.append(
        {
            "api": f"fnn.functional.{op}",
            "name": name,
            "kwargs": kw,
            "input": x.tolist(),
            "output": listed(y),
            "cotangent": cot.tolist(),
            "grad": {"input": listed(gx)},
        }
    )


def ops():
    # POOL-1 (unbatched), POOL-2 (stride None, tuples), POOL-4 (ceil_mode), POOL-5 (ties).
    add_op("max_pool1d", "defaults", (2, 3, 9), kernel_size=3)
    add_op("max_pool1d", "overlap-pad-ceil", (2, 2, 8), kernel_size=3, stride=2, padding=1, ceil_mode=True)
    add_op("max_pool1d", "dilation-unbatched", (3, 10), kernel_size=(2,), stride=(3,), dilation=2)
    add_op("max_pool1d", "stride1-ties", (1, 2, 7), kernel_size=3, stride=1, padding=1)
    add_op("max_pool2d", "defaults", (2, 2, 6, 7), kernel_size=2)
    add_op(
        "max_pool2d",
        "tuples",
        (1, 2, 7, 8),
        kernel_size=(3, 2),
        stride=(2, 1),
        padding=(1, 0),
        dilation=(1, 2),
    )
    add_op("max_pool2d", "ceil-unbatched", (2, 5, 5), kernel_size=3, stride=2, padding=1, ceil_mode=True)
    add_op("max_pool2d", "stride1-ties", (1, 1, 5, 5), kernel_size=2, stride=1)
    # AVGPOOL-1..3.
    add_op("avg_pool1d", "defaults", (2, 3, 9), kernel_size=3)
    add_op("avg_pool1d", "pad-ceil", (2, 2, 8), kernel_size=3, stride=2, padding=1, ceil_mode=True)
    add_op(
        "avg_pool1d",
        "exclude-pad-unbatched",
        (3, 8),
        kernel_size=(3,),
        stride=(2,),
        padding=(1,),
        ceil_mode=True,
        count_include_pad=False,
    )
    add_op("avg_pool2d", "defaults", (2, 2, 6, 7), kernel_size=2)
    add_op(
        "avg_pool2d",
        "tuples-ceil",
        (1, 2, 7, 8),
        kernel_size=(3, 2),
        stride=(2, 1),
        padding=(1, 0),
        ceil_mode=True,
    )
    add_op(
        "avg_pool2d", "exclude-pad", (1, 2, 7, 7), kernel_size=3, stride=2, padding=1, count_include_pad=False
    )
    add_op(
        "avg_pool2d", "divisor-override-unbatched", (2, 5, 6), kernel_size=2, padding=1, divisor_override=3
    )
    add_op(
        "avg_pool2d",
        "divisor-override-ceil-exclude",
        (1, 1, 7, 6),
        kernel_size=3,
        stride=2,
        padding=1,
        ceil_mode=True,
        count_include_pad=False,
        divisor_override=2,
    )
    # ADAPTIVE-1, ADAPTIVE-2.
    add_op("adaptive_avg_pool2d", "tuple", (2, 2, 7, 5), output_size=(3, 2))
    add_op("adaptive_avg_pool2d", "none-unbatched", (2, 6, 4), output_size=(None, 3))
    add_op("adaptive_avg_pool2d", "int-larger-than-input", (1, 1, 3, 4), output_size=5)
    add_op("adaptive_avg_pool2d", "golden-0-6", (1, 1, 7), output_size=(1, 3))


def add_layer(api, name, shape, **kw):
    """A pooling layer case: no parameters; one step per mode (a pool has no mode, so both
    must agree with torch)."""
    name = f"{api}-{name}"
    rng = rng_for(name)
    module = getattr(T, api)(**kw)
    steps = []
    for train in (True, False):
        module.train(train)
        x = draw(rng, name, shape)
        xt = t64(x, True)
        y = module(xt)
        cot = rng.normal(size=tuple(y.shape))
        (gx,) = torch.autograd.grad(y, [xt], t64(cot))
        steps.append(
            {
                "train": train,
                "input": x.tolist(),
                "cotangent": cot.tolist(),
                "output": listed(y),
                "grad_input": listed(gx),
                "grad_params": {},
            }
        )
    CASES.append(
        {
            "api": f"fnn.nn.{api}",
            "name": name,
            "kwargs": kw,
            "init_state_dict": {},
            "state_dict": {},
            "steps": steps,
        }
    )


def layers():
    mx = {"stride": None, "padding": 0, "dilation": 1, "return_indices": False, "ceil_mode": False}
    add_layer("MaxPool1d", "defaults", (2, 2, 8), kernel_size=2, **mx)
    add_layer(
        "MaxPool1d",
        "options",
        (2, 2, 9),
        kernel_size=3,
        **{**mx, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True},
    )
    add_layer("MaxPool2d", "defaults", (2, 2, 6, 6), kernel_size=2, **mx)
    add_layer(
        "MaxPool2d",
        "options-unbatched",
        (2, 7, 6),
        kernel_size=(3, 2),
        **{**mx, "stride": (2, 1), "padding": (1, 0), "dilation": (1, 2), "ceil_mode": True},
    )
    av = {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}
    add_layer("AvgPool1d", "defaults", (2, 2, 8), kernel_size=2, **av)
    add_layer(
        "AvgPool1d",
        "options",
        (2, 2, 8),
        kernel_size=3,
        **{**av, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
    )
    add_layer("AvgPool2d", "defaults", (2, 2, 6, 6), kernel_size=2, **av, divisor_override=None)
    add_layer(
        "AvgPool2d",
        "options-unbatched",
        (2, 7, 6),
        kernel_size=3,
        **{**av, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        divisor_override=None,
    )
    add_layer(
        "AvgPool2d",
        "divisor-override",
        (1, 2, 5, 5),
        kernel_size=2,
        **{**av, "padding": 1},
        divisor_override=3,
    )
    add_layer("AdaptiveAvgPool2d", "tuple", (2, 2, 7, 5), output_size=(3, 2))
    add_layer("AdaptiveAvgPool2d", "none-unbatched", (2, 6, 4), output_size=(None, 3))
    add_layer("AdaptiveAvgPool2d", "int", (1, 2, 5, 5), output_size=1)


def main():
    torch.set_num_threads(1)
    ops()
    layers()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/pooling.py", "cases": CASES}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
