"""Write init.json: torch.nn.init's formulas (gains, fans, the bound or std of every
initializer) and the default parameters of torch's Linear, BatchNorm1d, LayerNorm and PReLU,
the fixture of tests/test_reference_init.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn. From the repository root:

    /work/torch213/bin/python tests/torch_reference/init.py

or, on a fresh machine,

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/init.py

Top level {"torch", "generator", "cases"}; every case has "api" (the fnn name), "kwargs"
(fnn's argument names and values; shapes as lists, dtypes as names) and "name", then:

- fnn.init.calculate_gain: "gain" (torch.nn.init.calculate_gain), or "error" (torch's
  exception type) for an argument torch rejects.
- fnn.init.calculate_fans: "fan_in", "fan_out" (torch.nn.init._calculate_fan_in_and_fan_out),
  or "error" for fewer than 2 dimensions.
- the random initializers: "dist" ("uniform" or "normal"), "low"/"high" or "mean"/"std" as
  torch's formula gives them (computed here with torch's own helpers, in torch's operation
  order), "sample_std" (the distribution's std: std, or (high − low)/√12); for the 100k-element
  shape BIG also "torch_sample" (n, mean, std, min, max of torch's draw, which the generator
  checks against the formula); or "error" (torch's exception type) for an argument torch
  rejects (a 1-D shape, an unknown fan mode). The formula is also checked against the
  (low, high) / (mean, std) torch actually passes to Tensor.uniform_ / Tensor.normal_
  (captured by wrapping them).
- fnn.init.constant / zeros / ones: "output" (torch's filled float64 tensor).
- fnn.nn.Linear: "weight_bound", "bias_bound" (captured at torch's uniform_ calls; null when
  torch makes no call: a zero-element weight, or bias=False).
- fnn.nn.BatchNorm1d / LayerNorm / PReLU: "params" and "state" (the float32 parameters and
  buffers of torch's freshly built module, by state_dict name).

Deterministic (torch.manual_seed), so rerunning rewrites the file byte for byte.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import torch
from torch.nn import init as tinit

OUT = pathlib.Path(__file__).with_suffix(".json")
BIG = [250, 100, 4]  # 100k elements: the shape whose draws are checked statistically

NONLINEARITIES = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "selu",
]
SHAPES = [[5, 3], [3, 4, 5], [2, 6, 3, 2], BIG]  # 2-D and conv-style (receptive fields 5, 6, 4; INIT-1)


class Capture:
    """Record the (a, b) torch passes to Tensor.uniform_ / Tensor.normal_ inside the `with`."""

    def __enter__(self):
        self.calls, self.saved = [], {}
        for name in ("uniform_", "normal_"):
            original = getattr(torch.Tensor, name)
            self.saved[name] = original

            def wrapper(t, a=0.0, b=1.0, *args, _name=name, _orig=original, **kw):
                self.calls.append((_name.rstrip("_"), float(a), float(b)))
                return _orig(t, a, b, *args, **kw)

            setattr(torch.Tensor, name, wrapper)
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)


def gain_cases():
    for nl in NONLINEARITIES:
        params = [None, 0, 0.2, 1, -0.5, 3, math.sqrt(5)] if nl == "leaky_relu" else [None, 0.2]
        for param in params:
            kwargs = {"nonlinearity": nl, "param": param}
            gain = tinit.calculate_gain(**kwargs)
            yield {
                "api": "fnn.init.calculate_gain",
                "name": f"gain_{nl}_{param}",
                "kwargs": kwargs,
                "gain": gain,
            }
    for nl, param in [("gelu", None), ("leaky_relu", True), ("leaky_relu", "0.1")]:
        kwargs = {"nonlinearity": nl, "param": param}
        try:
            tinit.calculate_gain(**kwargs)
        except ValueError as e:
            name = f"gain_error_{nl}_{param}"
            yield {
                "api": "fnn.init.calculate_gain",
                "name": name,
                "kwargs": kwargs,
                "error": type(e).__name__,
            }
        else:
            raise AssertionError(f"torch accepted calculate_gain{kwargs}")


def fan_cases():
    for shape in [[4], [], [5, 3], [7, 1], [3, 4, 5], [2, 6, 3, 2]]:
        kwargs = {"shape": shape}
        name = "fans_" + ("x".join(map(str, shape)) or "scalar")
        try:
            fan_in, fan_out = tinit._calculate_fan_in_and_fan_out(torch.empty(shape))
        except ValueError as e:
            yield {
                "api": "fnn.init.calculate_fans",
                "name": name,
                "kwargs": kwargs,
                "error": type(e).__name__,
            }
        else:
            fans = {"fan_in": fan_in, "fan_out": fan_out}
            yield {"api": "fnn.init.calculate_fans", "name": name, "kwargs": kwargs, **fans}


def torch_formula(fn, t, kw):
    """(dist, p0, p1) in torch's own operation order (torch/nn/init.py), from torch's helpers."""
    if fn == "uniform":
        return "uniform", float(kw["a"]), float(kw["b"])
    if fn == "normal":
        return "normal", float(kw["mean"]), float(kw["std"])
    fan_in, fan_out = tinit._calculate_fan_in_and_fan_out(t)
    if fn.startswith("xavier"):
        std = kw["gain"] * math.sqrt(2.0 / float(fan_in + fan_out))
        return (
            ("uniform", -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
            if fn.endswith("uniform")
            else (
                "normal",
                0.0,
                std,
            )
        )
    fan = tinit._calculate_correct_fan(t, kw["mode"])
    std = tinit.calculate_gain(kw["nonlinearity"], kw["a"]) / math.sqrt(fan)
    if fn.endswith("uniform"):
        bound = math.sqrt(3.0) * std
        return "uniform", -bound, bound
    return "normal", 0.0, std


DEFAULTS = {
    "uniform": {"a": 0.0, "b": 1.0},
    "normal": {"mean": 0.0, "std": 1.0},
    "xavier_uniform": {"gain": 1.0},
    "xavier_normal": {"gain": 1.0},
    "kaiming_uniform": {"a": 0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
    "kaiming_normal": {"a": 0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
}
OPTIONS = {
    "uniform": [{}, {"a": -0.3, "b": 0.7}, {"a": 2.0, "b": 2.5}],
    "normal": [{}, {"mean": 0.5, "std": 0.2}, {"mean": -1.0, "std": 3.0}],
    "xavier_uniform": [{}, {"gain": 2.0}, {"gain": 5 / 3}],
    "xavier_normal": [{}, {"gain": 0.5}, {"gain": math.sqrt(2.0)}],
    "kaiming_uniform": [
        {},
        {"a": math.sqrt(5)},
        {"mode": "fan_out", "nonlinearity": "relu"},
        {"a": 0.2, "mode": "fan_in", "nonlinearity": "leaky_relu"},
        {"nonlinearity": "tanh", "mode": "fan_out"},
        {"nonlinearity": "selu"},
    ],
    "kaiming_normal": [
        {},
        {"mode": "fan_out"},
        {"a": 0.1, "nonlinearity": "leaky_relu"},
        {"nonlinearity": "selu"},
        {"nonlinearity": "linear", "mode": "fan_out"},
        {"a": -0.5, "nonlinearity": "relu", "mode": "fan_in"},
    ],
}


def random_cases():
    for fn, options in OPTIONS.items():
        for i, opt in enumerate(options):
            for j, shape in enumerate(SHAPES):
                # both dtypes, a third float32; float64 for BIG (fewer compilations in the test)
                dtype = "float32" if (i + j) % 3 == 2 and shape != BIG else "float64"
                kw = {**DEFAULTS[fn], **opt}
                kwargs = {"shape": shape, **kw, "dtype": dtype}
                name = f"{fn}_{i}_{'x'.join(map(str, shape))}"
                t = torch.empty(shape, dtype=getattr(torch, dtype))
                dist, p0, p1 = torch_formula(fn, t, kw)
                with Capture() as cap:
                    getattr(tinit, fn + "_")(t, **kw)
                assert cap.calls == [(dist, p0, p1)], (name, cap.calls, (dist, p0, p1))
                case = {"api": f"fnn.init.{fn}", "name": name, "kwargs": kwargs, "dist": dist}
                if dist == "uniform":
                    case.update(low=p0, high=p1, sample_std=(p1 - p0) / math.sqrt(12.0))
                else:
                    case.update(mean=p0, std=p1, sample_std=p1)
                if shape == BIG:
                    case["torch_sample"] = torch_sample(fn, kw, shape, case)
                yield case
    # torch's rejections: fans of a 1-D shape, an unknown fan mode
    for fn, kw, shape in [
        ("xavier_uniform", {"gain": 1.0}, [4]),
        ("xavier_normal", {"gain": 1.0}, [4]),
        ("kaiming_uniform", DEFAULTS["kaiming_uniform"], [4]),
        ("kaiming_normal", DEFAULTS["kaiming_normal"], [4]),
        ("kaiming_uniform", {**DEFAULTS["kaiming_uniform"], "mode": "fan_avg"}, [5, 3]),
        ("kaiming_normal", {**DEFAULTS["kaiming_normal"], "mode": "fan_avg"}, [5, 3]),
    ]:
        try:
            getattr(tinit, fn + "_")(torch.empty(shape, dtype=torch.float64), **kw)
        except ValueError as e:
            name = f"{fn}_error_{kw.get('mode', '')}_{'x'.join(map(str, shape))}"
            kwargs = {"shape": shape, **kw, "dtype": "float64"}
            yield {"api": f"fnn.init.{fn}", "name": name, "kwargs": kwargs, "error": type(e).__name__}
        else:
            raise AssertionError(f"torch accepted {fn}{kw} on {shape}")


def torch_sample(fn, kw, shape, case):
    """A large torch draw with the case's arguments: the formula must describe it."""
    draws = getattr(tinit, fn + "_")(torch.empty(shape, dtype=torch.float64), **kw).flatten()
    n = draws.numel()
    stats = {
        "n": n,
        "mean": draws.mean().item(),
        "std": draws.std().item(),
        "min": draws.min().item(),
        "max": draws.max().item(),
    }
    sd = case["sample_std"]
    centre = (case["low"] + case["high"]) / 2 if case["dist"] == "uniform" else case["mean"]
    assert abs(stats["mean"] - centre) < 6 * sd / math.sqrt(n), (case["name"], stats)
    assert abs(stats["std"] / sd - 1) < 6 / math.sqrt(2 * n), (case["name"], stats)
    if case["dist"] == "uniform":
        assert case["low"] <= stats["min"] and stats["max"] <= case["high"], (case["name"], stats)
    return stats


def constant_cases():
    for fn, kw, shape in [
        ("constant", {"val": 0.3}, [2, 3]),
        ("constant", {"val": -2.0}, [4]),
        ("zeros", {}, [3, 2]),
        ("ones", {}, [2, 2, 2]),
    ]:
        t = torch.empty(shape, dtype=torch.float64)
        out = tinit.constant_(t, kw["val"]) if fn == "constant" else getattr(tinit, fn + "_")(t)
        kwargs = {"shape": shape, **kw, "dtype": "float64"}
        name = f"{fn}_{'x'.join(map(str, shape))}"
        yield {"api": f"fnn.init.{fn}", "name": name, "kwargs": kwargs, "output": out.tolist()}


def layer_cases():
    for kwargs in [
        {"in_features": 3, "out_features": 4, "bias": True},
        {"in_features": 20, "out_features": 5, "bias": True},
        {"in_features": 6, "out_features": 2, "bias": False},
        {"in_features": 0, "out_features": 3, "bias": True},
        {"in_features": 200, "out_features": 1000, "bias": True},  # big enough for statistics
    ]:
        with warnings.catch_warnings(), Capture() as cap:
            warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op"
            torch.nn.Linear(**kwargs)
        highs = [hi for _, _lo, hi in cap.calls]
        weight = highs.pop(0) if kwargs["in_features"] else None
        bias = highs.pop(0) if kwargs["bias"] else None
        assert not highs, cap.calls
        name = f"linear_{kwargs['in_features']}_{kwargs['out_features']}_{kwargs['bias']}"
        yield {
            "api": "fnn.nn.Linear",
            "name": name,
            "kwargs": kwargs,
            "weight_bound": weight,
            "bias_bound": bias,
        }
    # fnn's names; PReLU's `init` is `init_value` in fnn (init is the layer's method)
    defaults = {
        "BatchNorm1d": {"eps": 1e-5, "momentum": 0.1, "affine": True, "track_running_stats": True},
        "LayerNorm": {"eps": 1e-5, "elementwise_affine": True, "bias": True},
        "PReLU": {"num_parameters": 1, "init_value": 0.25},
    }
    for i, (api, options) in enumerate(
        [
            ("BatchNorm1d", {"num_features": 3}),
            ("BatchNorm1d", {"num_features": 2, "affine": False}),
            ("BatchNorm1d", {"num_features": 2, "track_running_stats": False, "momentum": None}),
            ("LayerNorm", {"normalized_shape": 4}),
            ("LayerNorm", {"normalized_shape": [2, 3], "bias": False}),
            ("LayerNorm", {"normalized_shape": 3, "elementwise_affine": False}),
            ("PReLU", {}),
            ("PReLU", {"num_parameters": 3, "init_value": 0.1}),
        ]
    ):
        kwargs = {**defaults[api], **options}
        targs = {("init" if k == "init_value" else k): v for k, v in kwargs.items()}
        module = getattr(torch.nn, api)(**targs)  # float32, torch's default and fnn's
        params = {k: v.tolist() for k, v in module.named_parameters()}
        state = {k: v.tolist() for k, v in module.named_buffers()}
        name = f"{api.lower()}_{i}"
        yield {"api": f"fnn.nn.{api}", "name": name, "kwargs": kwargs, "params": params, "state": state}


def main():
    torch.manual_seed(0)
    cases = [*gain_cases(), *fan_cases(), *random_cases(), *constant_cases(), *layer_cases()]
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/init.py", "cases": cases}
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in out["cases"])
    head = json.dumps({k: out[k] for k in ("torch", "generator")}, separators=(",", ":"))[:-1]
    OUT.write_text(f'{head},"cases":[\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
