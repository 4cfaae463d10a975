"""Write conv.json: PyTorch's F.conv1d / F.conv2d with every option, F.pad in each mode, and
the nn.Conv1d / nn.Conv2d modules with every padding_mode, the fixture of
tests/test_reference_conv.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/tv/bin/python tests/torch_reference/conv.py

Deterministic (numpy generators and torch's generator seeded from each case's name):
rerunning rewrites the file byte for byte. Everything is float64; JSON floats round-trip
exactly (repr).

Layout: {"torch", "generator", "cases": [...]}, each case one of

- {"api": "fnn.functional.conv1d" | "fnn.functional.conv2d", "name", "kwargs" (bias as a
  list or null, stride, padding, dilation, groups: every argument after input and weight),
  "input", "weight", "output", "cotangent" (a random dL/d(output)), "grad": {"input",
  "weight", "bias"}: torch autograd's gradients of <output, cotangent> (bias null when None)}.
- {"api": "fnn.functional.pad", "name", "kwargs" ({"pad", "mode", "value"}), "input",
  "output", "cotangent", "grad": {"input"}}.
- {"api": "fnn.nn.Conv1d" | "fnn.nn.Conv2d", "name", "kwargs" (the constructor's arguments),
  "init_state_dict" (a freshly initialised torch module's, CONV-7), "state_dict" (the
  parameters the steps run with: float32-exact values), "steps": [{"train", "input",
  "cotangent", "output", "grad_input", "grad_params": {name: gradient}}, ...]}, the layout
  of layers.json ("Conv2d-lenet-c3" has its init only, no steps).
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


# ----------------------------------------------------------------------------- conv


def add_conv(n, name, x_shape, c_out, kernel, *, bias=True, **options):
    """One F.conv{n}d case; options are stride, padding, dilation, groups (defaults filled)."""
    name = f"conv{n}d-{name}"
    rng = rng_for(name)
    kw = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **options}
    c_in = x_shape[0] if len(x_shape) == n + 1 else x_shape[1]
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(c_out, c_in // kw["groups"], *kernel))
    b = rng.normal(size=(c_out,)) if bias else None
    xt, wt = t64(x, True), t64(w, True)
    bt = None if b is None else t64(b, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'same' with an even kernel: torch warns of a copy
        y = (TF.conv1d if n == 1 else TF.conv2d)(xt, wt, bt, **kw)
    cot = rng.normal(size=tuple(y.shape))
    grads = torch.autograd.grad(y, [xt, wt] + ([bt] if bias else []), t64(cot))
    CASES.append(
        {
            "api": f"fnn.functional.conv{n}d",
            "name": name,
            "kwargs": {"bias": listed(b), **kw},
            "input": x.tolist(),
            "weight": w.tolist(),
            "output": listed(y),
            "cotangent": cot.tolist(),
            "grad": {
                "input": listed(grads[0]),
                "weight": listed(grads[1]),
                "bias": listed(grads[2]) if bias else None,
            },
        }
    )


def convs():
    # CONV-1 (correlation, layout), CONV-2 ('same'/'valid'), CONV-3 (output size, unused
    # trailing rows with stride), CONV-4 (the three gradients), groups, dilation, no bias.
    add_conv(1, "defaults", (2, 3, 7), 4, (3,))
    add_conv(1, "stride2-pad1", (2, 2, 8), 3, (3,), stride=2, padding=1)
    add_conv(1, "stride3-unused-tail", (1, 2, 10), 2, (2,), stride=3)
    add_conv(1, "same-even-kernel", (1, 1, 7), 1, (4,), padding="same")
    add_conv(1, "same-dilation2", (2, 2, 9), 3, (4,), padding="same", dilation=2)
    add_conv(1, "valid-tuple", (2, 2, 6), 2, (3,), padding="valid", stride=(1,), dilation=(2,))
    add_conv(1, "groups2-no-bias", (2, 4, 6), 6, (3,), bias=False, groups=2, padding=(2,))
    add_conv(1, "unbatched", (3, 6), 2, (2,), padding=1)
    add_conv(2, "defaults", (2, 3, 5, 6), 4, (3, 3))
    add_conv(2, "stride2-pad1", (2, 2, 7, 6), 3, (3, 3), stride=2, padding=1)
    add_conv(2, "stride-tuple-unused-tail", (1, 2, 8, 9), 2, (2, 3), stride=(3, 2), padding=(1, 0))
    add_conv(2, "same-even-kernel", (1, 2, 5, 6), 2, (4, 2), padding="same")
    add_conv(2, "same-dilation", (1, 2, 7, 6), 2, (2, 3), padding="same", dilation=(3, 2))
    add_conv(2, "valid-dilation2", (2, 2, 7, 7), 3, (3, 2), padding="valid", dilation=2)
    add_conv(2, "groups3-no-bias", (2, 6, 4, 5), 3, (2, 2), bias=False, groups=3, padding=1)
    add_conv(2, "depthwise", (2, 4, 5, 5), 8, (3, 3), groups=4, stride=2, padding=(1, 2), dilation=(1, 2))
    add_conv(2, "unbatched", (2, 4, 5), 3, (3, 2), padding=(0, 1))


# ----------------------------------------------------------------------------- pad


def add_pad(name, shape, pad, mode="constant", value=0.0):
    name = f"pad-{name}"
    rng = rng_for(name)
    x = rng.normal(size=shape)
    xt = t64(x, True)
    y = TF.pad(xt, pad, mode=mode, value=value if mode == "constant" else None)
    cot = rng.normal(size=tuple(y.shape))
    (gx,) = torch.autograd.grad(y, [xt], t64(cot))
    CASES.append(
        {
            "api": "fnn.functional.pad",
            "name": name,
            "kwargs": {"pad": list(pad), "mode": mode, "value": value},
            "input": x.tolist(),
            "output": listed(y),
            "cotangent": cot.tolist(),
            "grad": {"input": listed(gx)},
        }
    )


def pads():
    # PAD-1: constant, any dims, value, negative entries crop.
    add_pad("constant-1d", (2, 5), (1, 2))
    add_pad("constant-value-2d", (2, 3, 4), (2, 0, 1, 3), value=-1.5)
    add_pad("constant-crop", (2, 3, 5), (-1, 2, 1, -2))
    add_pad("constant-3-dims", (2, 2, 3), (1, 1, 0, 1, 1, 0))
    # PAD-2/3: reflect, replicate, circular over the last 1 or 2 dims; negative crops.
    for mode in ("reflect", "replicate", "circular"):
        add_pad(f"{mode}-1d", (2, 3, 5), (2, 3), mode)
        add_pad(f"{mode}-2d", (2, 2, 4, 5), (1, 3, 3, 2), mode)
        add_pad(f"{mode}-unbatched-2d", (2, 4, 5), (4 if mode != "reflect" else 3, 0, 1, 2), mode)
        add_pad(f"{mode}-crop", (1, 2, 6), (-1, 3), mode)
    add_pad("replicate-wide", (1, 1, 3), (5, 4), "replicate")


# ----------------------------------------------------------------------------- layers


def add_layer(n, name, shape, modes=(True, False), **kw):
    """A Conv{n}d case: torch's fresh init, then float32-exact parameters and a step per
    entry of `modes` (True = train; a convolution has no mode, so both must agree with torch)."""
    api = f"Conv{n}d"
    name = f"{api}-{name}"
    rng = rng_for(name)
    torch.manual_seed(zlib.crc32(name.encode()))
    module = getattr(T, api)(**kw).double()
    init = {k: listed(v) for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(t64(f32_exact(rng.normal(size=tuple(p.shape)))))
    params = list(module.named_parameters())
    case = {
        "api": f"fnn.nn.{api}",
        "name": name,
        "kwargs": kw,
        "init_state_dict": init,
        "state_dict": {k: listed(v) for k, v in module.state_dict().items()},
    }
    steps = []
    for train in modes:
        module.train(train)
        x = rng.normal(size=shape)
        xt = t64(x, True)
        y = module(xt)
        cot = rng.normal(size=tuple(y.shape))
        grads = torch.autograd.grad(y, [xt] + [p for _, p in params], t64(cot))
        steps.append(
            {
                "train": train,
                "input": x.tolist(),
                "cotangent": cot.tolist(),
                "output": listed(y),
                "grad_input": listed(grads[0]),
                "grad_params": {k: listed(g) for (k, _), g in zip(params, grads[1:], strict=True)},
            }
        )
    case["steps"] = steps
    CASES.append(case)


def layers():
    # CONV-7 (init, state_dict names), CONV-8 (padding modes: F.pad, then a conv with padding 0).
    base = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros"}
    c1 = {"in_channels": 2, "out_channels": 4, "kernel_size": 3}
    add_layer(1, "defaults", (2, 2, 7), **c1, **base)
    add_layer(
        1,
        "reflect-same-even",
        (2, 2, 7),
        **{**c1, "kernel_size": 4},
        **{**base, "padding": "same", "padding_mode": "reflect"},
    )
    add_layer(
        1,
        "circular-stride2",
        (2, 2, 8),
        **c1,
        **{**base, "padding": 2, "stride": 2, "padding_mode": "circular"},
    )
    add_layer(
        1,
        "replicate-groups",
        (1, 2, 6),
        **c1,
        **{**base, "padding": 1, "groups": 2, "bias": False, "padding_mode": "replicate"},
    )
    c2 = {"in_channels": 2, "out_channels": 3, "kernel_size": (3, 2)}
    add_layer(2, "defaults", (2, 2, 5, 6), **c2, **base)
    add_layer(2, "zeros-same-dilation", (2, 2, 6, 5), **c2, **{**base, "padding": "same", "dilation": (2, 1)})
    add_layer(2, "reflect", (2, 2, 5, 5), **c2, **{**base, "padding": (2, 1), "padding_mode": "reflect"})
    add_layer(
        2,
        "replicate-stride",
        (1, 2, 6, 7),
        **c2,
        **{**base, "padding": 1, "stride": (2, 3), "padding_mode": "replicate"},
    )
    add_layer(
        2, "circular-same", (2, 2, 4, 5), **c2, **{**base, "padding": "same", "padding_mode": "circular"}
    )
    add_layer(
        2,
        "valid-groups-no-bias",
        (2, 4, 5, 5),
        **{**c2, "in_channels": 4, "out_channels": 2},
        **{**base, "padding": "valid", "groups": 2, "bias": False},
    )
    add_layer(2, "unbatched", (2, 5, 4), **c2, **{**base, "padding": 1, "padding_mode": "reflect"})
    # CONV-7's golden bounds: LeNet's C3, Conv2d(6, 16, 5), fan_in 150.
    add_layer(2, "lenet-c3", None, (), in_channels=6, out_channels=16, kernel_size=5, **base)


def main():
    torch.set_num_threads(1)
    convs()
    pads()
    layers()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/conv.py", "cases": CASES}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
