"""Write layers.json: every fnn.nn layer's torch.nn counterpart run in training and eval mode,
the fixture of tests/test_reference_layers.py (which runs without torch).

Needs torch 2.13 (CPU) and numpy, not fnn or jax. From the repository root:

    /work/torch213/bin/python tests/torch_reference/layers.py

or, on a fresh machine:

    python -m venv v && v/bin/pip install numpy torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    v/bin/python tests/torch_reference/layers.py

Deterministic (numpy generators seeded from each case's name): rerunning rewrites the file
byte for byte. Everything is float64; JSON floats round-trip exactly (repr).

Layout: {"torch", "generator", "cases": [...]}, each case

    {"api": "fnn.nn.<Layer>", "name": unique id,
     "kwargs": the fnn constructor's arguments (every one, defaults included); for
               fnn.nn.Sequential {"layers": [{"api", "kwargs"}, ...]},
     "state_dict": the torch module's state_dict (parameters and buffers, torch's names and
               order) before the first step. Parameters and buffers are random values that
               float32 holds exactly, so fnn's load_state_dict (float32 layers) keeps them
               exactly and the test widens them to float64 without loss,
     "init_state_dict": (layers whose torch init is deterministic: BatchNorm1d, LayerNorm,
               PReLU) the state_dict of a freshly built torch module,
     "steps": [{"train": bool, "key": seed of jax.random.key or null,
                "input", "cotangent" (a random dL/d(output)), "output",
                "grad_input", "grad_params": {torch parameter name: gradient},
                "buffers": {buffer name: value after this step}}, ...]}.

Steps run in order on one module; parameters do not change between steps, buffers do
(BatchNorm1d's running_mean, running_var and num_batches_tracked after each training step).

Torch counterparts: the torch.nn module of the same name with the same arguments, except
- PReLU: fnn's init_value is torch's init.
- Abs: torch.nn has none; the reference is torch.abs.
- ScaledTanh(amplitude, slope): torch.nn has none; the reference is
  `amplitude * torch.tanh(slope * x)` (ACT-9).
- Maxout(pieces): torch.nn has none; the reference is `x.view(N, C // pieces, pieces, *rest)
  .max(dim=2).values` (the first maximal piece gets a tie's gradient, ACT-8).
- Dropout in training with 0 < p < 1: torch's generator differs from JAX's, so the step
  stores a random keep mask "mask" with torch's `x * mask / (1 - p)` ("output",
  "grad_input") and the same for the complementary mask ("output_complement",
  "grad_input_complement"); the test picks per element the one that fnn's mask for "key"
  (F.dropout_mask, which Dropout.apply draws with) selects. p = 0, p = 1 and eval run
  torch.nn.Dropout itself ("key" is set for p = 1 too: fnn's layer asks for one whenever it
  trains with p > 0, though no mask is drawn there).
"""

from __future__ import annotations

import json
import pathlib
import zlib

import numpy as np
import torch

T = torch.nn
OUT = pathlib.Path(__file__).with_suffix(".json")
SPECIALS = (0.0, 1000.0, -1000.0, 1.0, -1.0)
CASES: list[dict] = []


class Abs(T.Module):
    def forward(self, x):
        return torch.abs(x)


class ScaledTanh(T.Module):
    def __init__(self, amplitude, slope):
        super().__init__()
        self.amplitude, self.slope = amplitude, slope

    def forward(self, x):
        return self.amplitude * torch.tanh(self.slope * x)


class Maxout(T.Module):
    def __init__(self, pieces):
        super().__init__()
        self.pieces = pieces

    def forward(self, x):
        n, c = x.shape[:2]
        return x.view(n, c // self.pieces, self.pieces, *x.shape[2:]).max(dim=2).values


def torch_module(api, kw):
    """The torch module for an fnn layer spec (kw uses fnn's argument names)."""
    name = api.rsplit(".", 1)[1]
    if name == "Sequential":
        return T.Sequential(*(torch_module(layer["api"], layer["kwargs"]) for layer in kw["layers"]))
    if name == "Abs":
        return Abs()
    if name == "Maxout":
        return Maxout(kw["pieces"])
    if name == "ScaledTanh":
        return ScaledTanh(kw["amplitude"], kw["slope"])
    if name == "PReLU":
        return T.PReLU(kw["num_parameters"], init=kw["init_value"])
    return getattr(T, name)(**kw)


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def edge_normal(rng, shape, scale=2.0):
    x = rng.normal(size=shape) * scale
    flat = x.reshape(-1)
    k = min(len(SPECIALS), flat.size)
    flat[rng.choice(flat.size, k, replace=False)] = SPECIALS[:k]
    return flat.reshape(shape)


def f32_exact(a):
    """Values float32 holds exactly, so fnn's float32 load_state_dict keeps them."""
    return np.asarray(a, np.float32).astype(np.float64)


def t64(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def state_dict(module):
    return {k: v.detach().numpy().tolist() for k, v in module.state_dict().items()}


def layer(api, **kw):
    return {"api": f"fnn.nn.{api}", "kwargs": kw}


def add(spec, name, shape, modes, *, randomize=True, buffers=None, dropout_mask=False, specials=True):
    """Record a case: build the torch module, optionally set random (float32-exact)
    parameters and buffers, then run one step per entry of `modes` (True = train)."""
    rng = rng_for(name)
    torch.manual_seed(zlib.crc32(name.encode()))  # Linear's own init draws from torch's generator
    module = torch_module(spec["api"], spec["kwargs"]).double()
    init = state_dict(module)
    with torch.no_grad():
        if randomize:
            for p in module.parameters():
                p.copy_(t64(f32_exact(rng.normal(size=tuple(p.shape)) * 0.5 + p.detach().numpy())))
        for bname, value in (buffers or {}).items():
            module.get_buffer(bname).fill_(0).add_(
                torch.as_tensor(value, dtype=module.get_buffer(bname).dtype)
            )
    case = {
        "api": spec["api"],
        "kwargs": spec["kwargs"],
        "name": name,
        "state_dict": state_dict(module),
    }
    if spec["api"].endswith(("BatchNorm1d", "LayerNorm", "PReLU")):
        case["init_state_dict"] = init
    steps = []
    params = list(module.named_parameters())
    for i, train in enumerate(modes):
        module.train(train)
        x = edge_normal(rng, shape) if specials else rng.normal(size=shape) * 2
        p = spec["kwargs"].get("p")
        # fnn's Dropout layer takes a key whenever it trains with p > 0 (p = 1 included).
        step = {"train": train, "key": 10 + i if train and p else None, "input": x.tolist()}
        if dropout_mask and train and 0 < p < 1:
            mask = (rng.uniform(size=shape) >= p).astype(np.float64)
            mask.reshape(-1)[:2] = [0.0, 1.0]
            cot = rng.normal(size=shape)
            step.update(cotangent=cot.tolist(), mask=mask.tolist(), grad_params={}, buffers={})
            for suffix, m in (("", mask), ("_complement", 1 - mask)):
                xt = t64(x, True)
                y = xt * t64(m) / (1 - p)
                (gx,) = torch.autograd.grad(y, [xt], t64(cot))
                step["output" + suffix] = y.detach().numpy().tolist()
                step["grad_input" + suffix] = gx.numpy().tolist()
            steps.append(step)
            continue
        xt = t64(x, True)
        y = module(xt)
        cot = rng.normal(size=tuple(y.shape))
        grads = torch.autograd.grad(y, [xt] + [p for _, p in params], t64(cot))
        step.update(
            cotangent=cot.tolist(),
            output=y.detach().numpy().tolist(),
            grad_input=grads[0].numpy().tolist(),
            grad_params={n: g.numpy().tolist() for (n, _), g in zip(params, grads[1:], strict=True)},
            buffers={k: v.numpy().tolist() for k, v in module.named_buffers()},
        )
        steps.append(step)
    case["steps"] = steps
    CASES.append(case)


TRAIN_EVAL = (True, False)


def cases():
    # LIN-1, LIN-2 (no bias parameter), on 2-D and 3-D input.
    add(layer("Linear", in_features=5, out_features=3, bias=True), "Linear-bias", (4, 5), TRAIN_EVAL)
    add(
        layer("Linear", in_features=5, out_features=3, bias=False), "Linear-no-bias-3d", (2, 4, 5), TRAIN_EVAL
    )

    # BN-1..6: steps in training and eval; buffers after each (num_batches_tracked included).
    bn = dict(num_features=3, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
    tte = (True, True, False, True)
    add(layer("BatchNorm1d", **bn), "BatchNorm1d-2d", (6, 3), tte, specials=False)
    add(layer("BatchNorm1d", **bn), "BatchNorm1d-3d", (4, 3, 2), tte, specials=False)
    add(
        layer("BatchNorm1d", **{**bn, "momentum": None}),
        "BatchNorm1d-momentum-None-2d",
        (5, 3),
        tte,
        specials=False,
    )
    add(
        layer("BatchNorm1d", **{**bn, "momentum": None, "eps": 1e-3}),
        "BatchNorm1d-momentum-None-eval-first-3d",
        (3, 3, 4),
        (False, True, False),
        buffers={
            "running_mean": f32_exact([0.5, -1.0, 2.0]),
            "running_var": f32_exact([0.5, 2.0, 1.5]),
            "num_batches_tracked": 5,
        },
        specials=False,
    )
    add(
        layer("BatchNorm1d", **{**bn, "affine": False, "momentum": 0.3}),
        "BatchNorm1d-no-affine-3d",
        (4, 3, 2),
        tte,
        specials=False,
    )
    add(
        layer("BatchNorm1d", **{**bn, "track_running_stats": False}),
        "BatchNorm1d-no-running-stats-2d",
        (6, 3),
        (True, False),
        specials=False,
    )

    ln = dict(normalized_shape=5, eps=1e-5, elementwise_affine=True, bias=True)
    add(layer("LayerNorm", **ln), "LayerNorm", (3, 2, 5), TRAIN_EVAL)
    add(layer("LayerNorm", **{**ln, "bias": False}), "LayerNorm-no-bias", (4, 5), TRAIN_EVAL)
    add(layer("LayerNorm", **{**ln, "elementwise_affine": False}), "LayerNorm-no-affine", (4, 5), TRAIN_EVAL)
    add(
        layer("LayerNorm", **{**ln, "normalized_shape": [2, 5], "eps": 1e-3}),
        "LayerNorm-2-dims",
        (3, 2, 5),
        TRAIN_EVAL,
    )

    # DROP-1 (a given mask), DROP-2 (p = 0 identity, p = 1 zeros, eval identity).
    add(layer("Dropout", p=0.5), "Dropout-p0.5", (4, 5), TRAIN_EVAL, dropout_mask=True)
    add(layer("Dropout", p=0.0), "Dropout-p0", (4, 5), TRAIN_EVAL)
    add(layer("Dropout", p=1.0), "Dropout-p1", (4, 5), TRAIN_EVAL)

    # ACT-1..8, FLAT-1: each activation layer with its options.
    add(layer("ReLU"), "ReLU", (3, 4), TRAIN_EVAL)
    add(layer("LeakyReLU", negative_slope=0.2), "LeakyReLU-0.2", (3, 4), TRAIN_EVAL)
    add(layer("ELU", alpha=0.5), "ELU-0.5", (3, 4), TRAIN_EVAL)
    add(layer("Sigmoid"), "Sigmoid", (3, 4), TRAIN_EVAL)
    add(layer("Tanh"), "Tanh", (3, 4), TRAIN_EVAL)
    add(layer("Softplus", beta=2.0, threshold=1.0), "Softplus-2-1", (3, 4), TRAIN_EVAL)
    add(layer("Softmax", dim=1), "Softmax-dim1-3d", (2, 3, 4), TRAIN_EVAL)
    add(layer("LogSoftmax", dim=-1), "LogSoftmax", (3, 4), TRAIN_EVAL)
    add(layer("Abs"), "Abs", (3, 4), TRAIN_EVAL)
    add(layer("Maxout", pieces=3), "Maxout-3-3d", (2, 6, 2), TRAIN_EVAL)
    add(layer("PReLU", num_parameters=1, init_value=0.25), "PReLU-1", (3, 4), TRAIN_EVAL, randomize=False)
    add(layer("PReLU", num_parameters=3, init_value=0.1), "PReLU-3-3d", (2, 3, 4), TRAIN_EVAL)
    add(layer("Flatten", start_dim=1, end_dim=-1), "Flatten", (2, 3, 2), TRAIN_EVAL)
    add(layer("Flatten", start_dim=0, end_dim=-2), "Flatten-0-to-2", (2, 3, 2), TRAIN_EVAL)
    # ACT-9, FLAT-2
    add(layer("ScaledTanh", amplitude=1.7159, slope=2 / 3), "ScaledTanh", (3, 4), TRAIN_EVAL)
    add(layer("Unflatten", dim=1, unflattened_size=[1, 2, -1]), "Unflatten", (2, 6, 2), TRAIN_EVAL)

    # Whole networks (layers with their default options), in training and eval.
    mlp = layer(
        "Sequential",
        layers=[
            layer("Linear", in_features=6, out_features=8, bias=True),
            layer("BatchNorm1d", **{**bn, "num_features": 8}),
            layer("ReLU"),
            layer("Linear", in_features=8, out_features=5, bias=False),
            layer("PReLU", num_parameters=5, init_value=0.25),
            layer("LayerNorm", **{**ln, "normalized_shape": 5}),
            layer("Dropout", p=0.0),
            layer("Tanh"),
            layer("Linear", in_features=5, out_features=4, bias=True),
            layer("LogSoftmax", dim=-1),
        ],
    )
    add(mlp, "Sequential-mlp", (7, 6), TRAIN_EVAL, specials=False)
    conv = layer(
        "Sequential",
        layers=[
            layer("BatchNorm1d", **{**bn, "num_features": 4, "momentum": None}),
            layer("PReLU", num_parameters=4, init_value=0.25),
            layer("Maxout", pieces=2),
            layer("Abs"),
            layer("Flatten", start_dim=1, end_dim=-1),
            layer("Linear", in_features=6, out_features=3, bias=True),
            layer("Softmax", dim=-1),
        ],
    )
    add(conv, "Sequential-3d", (5, 4, 3), TRAIN_EVAL, specials=False)


def main():
    torch.set_num_threads(1)
    cases()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out = {"torch": torch.__version__, "generator": "tests/torch_reference/layers.py", "cases": CASES}
    OUT.write_text(json.dumps(out, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {len(CASES)} cases to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
