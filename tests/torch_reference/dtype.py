"""Write dtype.json: float64 torch modules built with the factory keyword
``dtype=torch.float64``, their state_dict, and forward / backward in train and eval mode,
the fixture of tests/test_dtype.py (which runs without torch).

Needs torch (checked with 2.13.0, CPU) and numpy, not fnn. From the repository root:

    /work/torch213/bin/python tests/torch_reference/dtype.py

Top level: {"torch": version, "generator": this script, "cases": [...]}. Each case:
"api" (the fnn callable that builds the spec: fnn.nn.Linear, ..., fnn.models.mlp),
"kwargs" (its keyword arguments, "dtype": "float64" always), "name", "state_dict" (the
torch module's, before the steps; num_batches_tracked as an int), and "steps": a list of
{"train", "input", "grad_output", "output", "grad_input", "grads" (parameter name ->
dL/dθ for L = Σ output·grad_output), "state_dict_after"}. The steps run in order on one
module (train, train, eval), so running statistics carry from one to the next; parameters
do not change. JSON floats round-trip exactly (repr).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).with_suffix(".json")
F64 = torch.float64
T = torch.nn


def modules():
    """(api, kwargs, name, torch module, input shape) per case."""
    yield "fnn.nn.Linear", {"in_features": 4, "out_features": 3}, "linear", T.Linear(4, 3, dtype=F64), (5, 4)
    yield (
        "fnn.nn.Linear",
        {"in_features": 4, "out_features": 3, "bias": False},
        "linear_no_bias",
        T.Linear(4, 3, bias=False, dtype=F64),
        (2, 5, 4),
    )
    yield "fnn.nn.BatchNorm1d", {"num_features": 3}, "batchnorm", T.BatchNorm1d(3, dtype=F64), (6, 3)
    yield (
        "fnn.nn.BatchNorm1d",
        {"num_features": 3, "momentum": None},
        "batchnorm_cumulative_3d",
        T.BatchNorm1d(3, momentum=None, dtype=F64),
        (4, 3, 2),
    )
    yield "fnn.nn.LayerNorm", {"normalized_shape": 4}, "layernorm", T.LayerNorm(4, dtype=F64), (3, 4)
    yield "fnn.nn.PReLU", {"num_parameters": 3}, "prelu", T.PReLU(3, dtype=F64), (5, 3)
    # fnn.models.mlp(4, (5,), 3, dropout=0): Flatten, Linear, BatchNorm1d, ReLU, Linear, so
    # the state_dict names ("1.weight", "2.running_mean", ...) are those of this Sequential.
    mlp = T.Sequential(
        T.Flatten(),
        T.Linear(4, 5, dtype=F64),
        T.BatchNorm1d(5, dtype=F64),
        T.ReLU(),
        T.Linear(5, 3, dtype=F64),
    )
    kwargs = {"in_features": 4, "hidden": [5], "num_classes": 3, "dropout": 0.0, "batch_norm": True}
    yield "fnn.models.mlp", kwargs, "mlp_linear_bn_relu_linear", mlp, (7, 4)


def perturb(module, rng):
    """Non-default BatchNorm / LayerNorm / PReLU parameters and running statistics, so that
    every entry of the state_dict matters."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (T.LayerNorm, T.PReLU)):  # constant at init
                for p in m.parameters():
                    p.add_(torch.tensor(rng.normal(size=tuple(p.shape)) * 0.3, dtype=F64))
        for m in module.modules():
            if isinstance(m, T.BatchNorm1d):
                m.weight.add_(torch.tensor(rng.normal(size=m.num_features) * 0.3, dtype=F64))
                m.bias.add_(torch.tensor(rng.normal(size=m.num_features) * 0.3, dtype=F64))
                m.running_mean.copy_(torch.tensor(rng.normal(size=m.num_features), dtype=F64))
                m.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, size=m.num_features), dtype=F64))
                m.num_batches_tracked.fill_(3)


def state_dict(module):
    out = {}
    for k, v in module.state_dict().items():
        out[k] = int(v) if v.dtype == torch.int64 else v.detach().numpy().tolist()
    return out


def case(api, kwargs, name, module, shape, rng):
    perturb(module, rng)
    for v in module.state_dict().values():  # the factory keyword made every float array float64
        assert v.dtype in (F64, torch.int64), (name, v.dtype)
    out = {
        "api": api,
        "kwargs": {**kwargs, "dtype": "float64"},
        "name": name,
        "state_dict": state_dict(module),
    }
    steps = []
    for train in (True, True, False):
        module.train(train)
        x = torch.tensor(rng.normal(size=shape) * 1.5, dtype=F64, requires_grad=True)
        y = module(x)
        g = torch.tensor(rng.normal(size=tuple(y.shape)), dtype=F64)
        names = [n for n, _ in module.named_parameters()]
        grads = torch.autograd.grad(y, [x, *module.parameters()], g)
        steps.append(
            {
                "train": train,
                "input": x.detach().numpy().tolist(),
                "grad_output": g.numpy().tolist(),
                "output": y.detach().numpy().tolist(),
                "grad_input": grads[0].numpy().tolist(),
                "grads": {n: gp.numpy().tolist() for n, gp in zip(names, grads[1:], strict=True)},
                "state_dict_after": state_dict(module),
            }
        )
    out["steps"] = steps
    return out


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cases = [case(*m, rng) for m in modules()]
    doc = {"torch": torch.__version__, "generator": "tests/torch_reference/dtype.py", "cases": cases}
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
